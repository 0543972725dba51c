/* test_calib_numpy.c — `[data] calib_sampler = numpy` (data/calib.c): vitq_calib_subset_numpy against
 * NumPy's own `np.random.seed(seed); np.random.permutation(n)` (tests/fixtures/numpy_permutation.txt, made by
 * tests/reference/make_numpy_permutation.py): APHQ-ViT's calibration images (seed 3407, 60,000 training
 * images, the first 128), the seed 2^32 − 1, and n = 1, 2, 10; then that the result is a permutation. */
#include "test.h"

#include <stdlib.h>

#define FIX "tests/fixtures/numpy_permutation.txt"

TEST(calib_numpy_matches_numpy_permutation) {
    FILE *f = fopen(FIX, "r");
    CHECK_MSG(f != NULL, "cannot open %s", FIX);
    if (!f) return;
    char line[8192];
    int cases = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        char *p = line, *end;
        unsigned long long seed = strtoull(p, &end, 10);
        long long n = strtoll(end, &end, 10), k = strtoll(end, &end, 10);
        int64_t *perm = vitq_calib_subset_numpy((uint32_t)seed, n);
        CHECK(perm != NULL);
        if (!perm) break;
        int bad = 0;
        for (long long i = 0; i < k; i++) {
            long long want = strtoll(end, &end, 10);
            if (perm[i] != want && bad++ == 0)
                test_failf(__FILE__, __LINE__, "seed %llu n %lld: entry %lld is %lld, NumPy's %lld", seed, n, i,
                           (long long)perm[i], want);
        }
        char *seen = calloc((size_t)n, 1);
        int dup = 0;
        for (long long i = 0; seen && i < n; i++) dup += perm[i] < 0 || perm[i] >= n || seen[perm[i]]++;
        CHECK_EQ(dup, 0);
        free(seen);
        free(perm);
        cases++;
    }
    fclose(f);
    CHECK_EQ(cases, 5);
}
