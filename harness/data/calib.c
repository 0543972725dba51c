/* calib.c — the seeded calibration subset: the first k entries of a partial Fisher-Yates shuffle of
 * [0, n) driven by splitmix64 (seed mixed with "calib"), each draw unbiased by rejection. The indices
 * are stored in every cell file (/calibration/indices), so a result says which images it saw. */
#include "data/data.h"

#include <stdlib.h>

int64_t *vitq_calib_subset(uint64_t seed, int64_t n, int k) {
    int64_t *perm = malloc((size_t)(n > 0 ? n : 1) * sizeof *perm);
    if (!perm) return NULL;
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    uint64_t s = seed ^ 0x63616c6962ULL; /* "calib" */
    for (int i = 0; i < k && i < n; i++) {
        uint64_t range = (uint64_t)(n - i), lim = UINT64_MAX - UINT64_MAX % range, r;
        do r = vitq_splitmix64(&s);
        while (r >= lim);
        int64_t j = i + (int64_t)(r % range);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    return perm;
}
