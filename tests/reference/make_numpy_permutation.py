#!/usr/bin/env python3
"""tests/fixtures/numpy_permutation.txt: NumPy's legacy `np.random.seed(seed); np.random.permutation(n)`,
the calibration / reconstruction subset of the APHQ-ViT and AIQViT reference code, for vitq's
`[data] calib_sampler = numpy` (harness/data/calib.c). One line per case: seed n k, then the first k
entries. Needs only NumPy (any version since 1.17 keeps RandomState's stream).

    /usr/bin/python3 tests/reference/make_numpy_permutation.py
"""
import os

import numpy as np

CASES = [(3407, 60000, 128), (0, 10, 10), (1, 2, 2), (4294967295, 1000, 40), (7, 1, 1)]

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "..", "fixtures", "numpy_permutation.txt")
with open(out, "w") as f:
    f.write("# seed n k first-k-of-np.random.permutation(n) (NumPy %s)\n" % np.__version__)
    for seed, n, k in CASES:
        np.random.seed(seed)
        p = np.random.permutation(n)[:k]
        f.write("%d %d %d %s\n" % (seed, n, k, " ".join(str(int(v)) for v in p)))
print(out)
