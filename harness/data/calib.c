/* calib.c — the seeded calibration subset: the first k entries of a partial Fisher-Yates shuffle of
 * [0, n) driven by splitmix64 (seed mixed with "calib"), each draw unbiased by rejection; or, for
 * `[data] calib_sampler = numpy`, NumPy's `np.random.seed(seed); np.random.permutation(n)` exactly, the
 * subset the APHQ-ViT and AIQViT reference code draws (specs/aphq-vit.md: calibration and
 * reconstruction images are prefixes of that one permutation). The indices are stored in every cell
 * file (/calibration/indices), so a result says which images it saw. */
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

/* ---- NumPy's legacy RandomState: MT19937 (Matsumoto & Nishimura 1998) as numpy/random/src/mt19937 ----- */
enum { MT_N = 624, MT_M = 397 };
typedef struct {
    uint32_t key[MT_N];
    int pos;
} mt19937;

/* RandomState.seed(int): _legacy_seeding -> mt19937_seed (Knuth's initialisation, init_genrand). */
static void mt_seed(mt19937 *m, uint32_t seed) {
    for (int i = 0; i < MT_N; i++) {
        m->key[i] = seed;
        seed = 1812433253u * (seed ^ (seed >> 30)) + (uint32_t)i + 1u;
    }
    m->pos = MT_N;
}

static void mt_regenerate(mt19937 *m) {
    for (int i = 0; i < MT_N; i++) {
        uint32_t y = (m->key[i] & 0x80000000u) | (m->key[(i + 1) % MT_N] & 0x7fffffffu);
        m->key[i] = m->key[(i + MT_M) % MT_N] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    m->pos = 0;
}

static uint32_t mt_next32(mt19937 *m) {
    if (m->pos == MT_N) mt_regenerate(m);
    uint32_t y = m->key[m->pos++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    return y ^ (y >> 18);
}

/* random_interval(max) for max < 2^32: masked draws, rejected above max (numpy/random/src/distributions). */
static uint32_t mt_interval(mt19937 *m, uint32_t max) {
    if (max == 0) return 0;
    uint32_t mask = max, v;
    mask |= mask >> 1, mask |= mask >> 2, mask |= mask >> 4, mask |= mask >> 8, mask |= mask >> 16;
    while ((v = mt_next32(m) & mask) > max) {}
    return v;
}

int64_t *vitq_calib_subset_numpy(uint32_t seed, int64_t n) {
    if (n < 0 || n > (int64_t)UINT32_MAX) return NULL;
    int64_t *perm = malloc((size_t)(n > 0 ? n : 1) * sizeof *perm);
    mt19937 *m = malloc(sizeof *m);
    if (!perm || !m) {
        free(perm), free(m);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    mt_seed(m, seed);
    for (int64_t i = n - 1; i >= 1; i--) { /* RandomState.shuffle's _shuffle_raw: from the end */
        int64_t j = mt_interval(m, (uint32_t)i), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    free(m);
    return perm;
}
