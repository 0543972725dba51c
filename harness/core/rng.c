/* rng.c — the one random-number generator: splitmix64 (Steele, Lea and Flood 2014) as the mixer and seeder,
 * xoshiro256** (Blackman and Vigna) as the stream generator for initialisation, shuffling and augmentation.
 * Every stream is a pure function of its seed: results are reproducible on any machine.
 * Does not: read the clock or /dev/urandom. */
#include "core/core.h"

#include <math.h>
#include <stdint.h>

uint64_t vitq_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void vitq_rng_seed(vitq_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = vitq_splitmix64(&x);
}

uint64_t vitq_rng_derive(uint64_t seed, uint64_t k) {
    uint64_t x = seed ^ 0x5851f42d4c957f2dULL;
    uint64_t a = vitq_splitmix64(&x);
    x = a ^ (k * 0xd1342543de82ef95ULL + 1);
    return vitq_splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t vitq_rng_next(vitq_rng *r) {
    uint64_t *s = r->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double vitq_rng_uniform(vitq_rng *r) { return (double)(vitq_rng_next(r) >> 11) * 0x1.0p-53; }

int64_t vitq_rng_below(vitq_rng *r, int64_t n) {
    if (n <= 1) return 0;
    uint64_t un = (uint64_t)n, lim = UINT64_MAX - UINT64_MAX % un; // reject the uneven tail
    uint64_t x;
    do x = vitq_rng_next(r);
    while (x >= lim);
    return (int64_t)(x % un);
}

double vitq_rng_normal(vitq_rng *r) {
    double u1 = vitq_rng_uniform(r), u2 = vitq_rng_uniform(r);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2); // 1 - u1 in (0, 1]
}

float vitq_rng_trunc_normal(vitq_rng *r, float std) {
    double z;
    do z = vitq_rng_normal(r);
    while (z < -2.0 || z > 2.0);
    return (float)(z * std);
}

void vitq_rng_permutation(vitq_rng *r, int64_t *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = vitq_rng_below(r, i + 1);
        int64_t t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
}
