/* aphq_grid.h — APHQ-ViT's calibration candidates in the reference's float32 arithmetic, header-only so
 * that any plugin can include it (uniform's `init = aphq`, the repq pass's per-channel search):
 *
 *   aphq_fq                  asymmetric fake quant ((x/s).round() + z).clamp(0, Qmax), (v − z)·s (§2.1)
 *   aphq_quantile_sorted     torch.quantile (linear) of a sorted array; aphq_quantiles the same on an
 *                            unsorted one by selection (reorders it); aphq_quantiles_chunked the mean of
 *                            the quantiles of K contiguous chunks, K = the smallest power of two with
 *                            chunks of at most 2^24 values that divides the size (§2.3, §6.7, O12)
 *   aphq_lgrid_*             the linear-layer grid: nz = min(16, 2n) integer zero points × ns = 128/nz
 *                            widths between P(0.9) − P(0.1) and P(1) − P(0), pair i = j·ns + k (§2.3, O6)
 *   aphq_matmul_levels,      paired (upper, lower) tables of 129 entries: the matmul operands' interpolated
 *   aphq_conv_levels,        percentiles (§2.5, O7) and the patch-embedding conv's p_i = 0.99 +
 *   aphq_pair_at             0.0099·sqrt(i/127), p_128 = 1 (§2.6); s = (u − l)/Qmax, z = −round(l/s)
 *   aphq_mse, aphq_lgrid_mse tensor MSE of one candidate / of all 128 linear candidates
 *
 * Reference arithmetic (GoatWu/APHQ-ViT quant_layers/{linear,matmul,conv}.py, torch 1.10): percentile
 * levels are float32 (1 − 0.9f = 0.100000024, 1 − 0.99999f = 1.00136e-5, §6.19); torch.quantile ranks
 * are fl32(q·(n−1)) and interpolate with torch.lerp; torch.linspace(0, 1, ns) is computed from both ends;
 * scales and zero points are float32. Departure: a candidate scale that is not positive and finite (a
 * constant row: P(1) = P(0)) becomes 1, where the reference would produce NaN. Errors are summed in double.
 * Only <math.h>, <stdint.h> and <stdlib.h>; no state; every function is static inline. */
#ifndef VITQ_APHQ_GRID_H
#define VITQ_APHQ_GRID_H

#include "vectorize.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define APHQ_EQ_N 128                        /* candidates searched (the reference's eq_n) */
#define APHQ_PAIRS (APHQ_EQ_N + 1)           /* entries of a paired table; the last is never evaluated */
#define APHQ_CHUNK_MAX ((int64_t)1 << 24)    /* torch.quantile's limit on the reduced dimension */
#define APHQ_ACT_SCALE_MIN 1e-4f             /* activations' candidate scales are clamped to >= 1e-4 */

/* Asymmetric fake quant with levels 0..qmax, round half to even (torch.round), z as given (an integer). */
static inline float aphq_fq(float x, float s, float z, float qmax) {
    float v = rintf(x / s) + z;
    v = v < 0 ? 0 : (v > qmax ? qmax : v);
    return (v - z) * s;
}

/* torch.lerp: a + w·(b − a) for |w| < 0.5, else b − (b − a)·(1 − w), in float32. */
static inline float aphq_lerp(float a, float b, float w) {
    return fabsf(w) < 0.5f ? a + w * (b - a) : b - (b - a) * (1.0f - w);
}

/* torch.quantile's rank of level q over n values: r = fl32(q·(n−1)), below = ⌊r⌋, above = ⌈r⌉ (kept in
 * range), weight = r − below. */
static inline void aphq_rank(float q, int64_t n, int64_t *below, int64_t *above, float *w) {
    float r = q * (float)(n - 1);
    int64_t lo = (int64_t)r, hi = (int64_t)ceilf(r);
    *w = r - (float)lo;
    *below = lo < 0 ? 0 : (lo > n - 1 ? n - 1 : lo);
    *above = hi < 0 ? 0 : (hi > n - 1 ? n - 1 : hi);
}

/* torch.quantile(v, q) of sorted v[n], linear interpolation (numpy's default method). */
static inline float aphq_quantile_sorted(const float *v, int64_t n, float q) {
    int64_t lo, hi;
    float w;
    aphq_rank(q, n, &lo, &hi, &w);
    return aphq_lerp(v[lo], v[hi], w);
}

/* Rearranges v[n] so that v[k] is the k-th smallest, v[< k] <= v[k] <= v[> k] (Hoare selection,
 * median of three; terminates on NaN, with an unspecified order). */
static inline void aphq_select(float *v, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (hi > lo) {
        int64_t mid = lo + (hi - lo) / 2;
        float a = v[lo], b = v[mid], c = v[hi];
        float p = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < p) i++;
            while (p < v[j]) j--;
            if (i <= j) {
                float t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return;
    }
}

/* out[t] = torch.quantile(v, q[t]) for nq levels of unsorted v[n] (n >= 1), by selection: v is reordered
 * (the multiset is kept). q[] in any order. */
static inline void aphq_quantiles(float *v, int64_t n, const float *q, int nq, float *out) {
    for (int t = 0; t < nq; t++) {
        int64_t lo, hi;
        float w;
        aphq_rank(q[t], n, &lo, &hi, &w);
        aphq_select(v, n, lo);
        float a = v[lo], b = a;
        if (hi > lo) { /* the next order statistic: the least value right of lo */
            b = v[lo + 1];
            for (int64_t i = lo + 2; i < n; i++) b = v[i] < b ? v[i] : b;
        }
        out[t] = aphq_lerp(a, b, w);
    }
}

/* Chunks the reference splits n values into: the smallest power of two K such that n/K <= 2^24 and K
 * divides n (the view must exist); 1 when n <= 2^24. -1 when there is none (an odd n above 2^24: the
 * reference loops forever there). */
static inline int64_t aphq_chunk_count(int64_t n) {
    if (n <= APHQ_CHUNK_MAX) return 1;
    for (int64_t k = 2; k <= n; k *= 2) {
        if (n % k) return -1; /* k divides n only if k/2 did */
        if (n / k <= APHQ_CHUNK_MAX) return k;
    }
    return -1;
}

/* The mean over K contiguous chunks of each chunk's quantiles (K = aphq_chunk_count(n); the reference's
 * per-tensor and per-head percentiles, §2.3 and §2.5): float32 sum in chunk order, divided by K. v is
 * reordered within each chunk. Returns K, or -1 (nothing written) when n cannot be chunked. */
static inline int64_t aphq_quantiles_chunked(float *v, int64_t n, const float *q, int nq, float *out) {
    int64_t K = aphq_chunk_count(n), len = n / (K > 0 ? K : 1);
    if (K < 1 || nq > 16) return -1;
    float acc[16] = {0}, part[16];
    for (int64_t c = 0; c < K; c++) {
        aphq_quantiles(v + c * len, len, q, nq, part);
        for (int t = 0; t < nq; t++) acc[t] += part[t];
    }
    for (int t = 0; t < nq; t++) out[t] = acc[t] / (float)K;
    return K;
}

/* torch.linspace(0, 1, steps)[k] in float32: the first half from 0, the second from 1. */
static inline float aphq_linspace01(int k, int steps) {
    if (steps < 2) return 0.0f;
    float step = 1.0f / (float)(steps - 1);
    return k < steps / 2 ? step * (float)k : 1.0f - step * (float)(steps - 1 - k);
}

/* A scale the fake quant can use: not positive or not finite (a constant tensor) gives 1. */
static inline float aphq_safe_scale(float s) { return s > 0 && s <= 3.4e38f ? s : 1.0f; }

/* ---------------------------------------------------------------------------------------------
 * §2.3: the linear layers' grid, shared by weights (per output row) and activations (per tensor)
 * ------------------------------------------------------------------------------------------- */
typedef struct aphq_lgrid {
    float dmin, dmax; /* P(0.9) − P(0.1), P(1) − P(0) */
    float qmax;       /* 2n − 1 */
    int nz, ns, zmin; /* zero points zmin .. zmin+nz−1, ns widths; nz·ns = 128 for bits <= 4 and above */
    int act;          /* activations: scales clamped to >= 1e-4 */
} aphq_lgrid;

/* The four levels of the grid, in float32 as the reference computes them: torch.tensor([0.9, 1.0]) for
 * the uppers and 1 − that tensor for the lowers. */
static inline void aphq_lgrid_levels(float q[4]) {
    q[0] = 0.9f;        /* upper of the narrow span */
    q[1] = 1.0f;        /* upper of the wide span */
    q[2] = 1.0f - 0.9f; /* 0.100000024 */
    q[3] = 1.0f - 1.0f;
}

/* Grid from the quantiles p[4] at aphq_lgrid_levels (P(0.9), P(1), P(0.1), P(0)); bits >= 2. */
static inline void aphq_lgrid_init(aphq_lgrid *g, int bits, int act, const float p[4]) {
    int n = 1 << (bits - 1);
    g->qmax = (float)(2 * n - 1);
    g->nz = 2 * n < 16 ? 2 * n : 16;
    g->ns = APHQ_EQ_N / g->nz;
    g->zmin = n - g->nz / 2;
    g->dmin = p[0] - p[2];
    g->dmax = p[1] - p[3];
    g->act = act;
}

/* Candidate i = j·ns + k (0 <= i < nz·ns): s = (Δmin + linspace(0,1,ns)[k]·(Δmax − Δmin)) / Qmax
 * (activations: at least 1e-4), z = zmin + j. */
static inline void aphq_lgrid_at(const aphq_lgrid *g, int i, float *s, float *z) {
    int j = i / g->ns, k = i % g->ns;
    float split = aphq_linspace01(k, g->ns) * (g->dmax - g->dmin);
    float sc = (g->dmin + split) / g->qmax;
    if (g->act && sc < APHQ_ACT_SCALE_MIN) sc = APHQ_ACT_SCALE_MIN;
    *s = aphq_safe_scale(sc);
    *z = (float)(g->zmin + j);
}

/* Number of candidates of the grid (128 for every bit-width from 2 to 16). */
static inline int aphq_lgrid_count(const aphq_lgrid *g) { return g->nz * g->ns; }

/* Mean of (x − Q(x))² over x[n] for one candidate, in double. */
static inline double aphq_mse(const float *x, int64_t n, float s, float z, float qmax) {
    double acc = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)x[i] - (double)aphq_fq(x[i], s, z, qmax);
        acc += d * d;
    }
    return n > 0 ? acc / (double)n : 0;
}

/* aphq_mse of 8 candidates (s[k], z[k]) over the same x[n], into err[0..7]: each candidate's sum is
 * aphq_mse's, in the same order, but the 8 run side by side (independent add chains; the AVX-512 clone
 * takes the 8 as one vector, with rintf as one instruction instead of a libm call per value). */
PLUGIN_VECTORIZE static void aphq_mse8(const float *x, int64_t n, const float *s, const float *z, float qmax,
                                       double *err) {
    double acc[8] = {0};
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < 8; k++) {
            const double d = (double)x[i] - (double)aphq_fq(x[i], s[k], z[k], qmax);
            acc[k] += d * d;
        }
    for (int k = 0; k < 8; k++) err[k] = n > 0 ? acc[k] / (double)n : 0;
}

/* err[i] = tensor MSE of candidate i of g over x[n] (aphq_mse), for every candidate, 8 at a time. */
static inline void aphq_lgrid_mse(const aphq_lgrid *g, const float *x, int64_t n, double *err) {
    const int count = aphq_lgrid_count(g);
    for (int i0 = 0; i0 < count; i0 += 8) {
        float s[8], z[8];
        double e[8];
        for (int k = 0; k < 8; k++) aphq_lgrid_at(g, i0 + k < count ? i0 + k : count - 1, &s[k], &z[k]);
        aphq_mse8(x, n, s, z, g->qmax, e);
        for (int k = 0; k < 8 && i0 + k < count; k++) err[i0 + k] = e[k];
    }
}

/* Index of the first least entry of err[n] (NaN never wins); 0 if all are NaN. */
static inline int aphq_argmin(const double *err, int n) {
    int best = 0;
    double b = INFINITY;
    for (int i = 0; i < n; i++)
        if (err[i] < b) b = err[i], best = i;
    return best;
}

/* The §2.3 self-search of one contiguous tensor (a weight row, a channel's values): quantiles, grid, the
 * candidate of least MSE. x is reordered. Returns the index; *g gets the grid. */
static inline int aphq_lgrid_search_self(aphq_lgrid *g, float *x, int64_t n, int bits, int act, double *err128) {
    float lv[4], p[4];
    aphq_lgrid_levels(lv);
    aphq_quantiles(x, n, lv, 4, p);
    aphq_lgrid_init(g, bits, act, p);
    aphq_lgrid_mse(g, x, n, err128);
    return aphq_argmin(err128, aphq_lgrid_count(g));
}

/* ---------------------------------------------------------------------------------------------
 * §2.5 and §2.6: paired tables of (upper, lower) values, 129 entries, the last never evaluated
 * ------------------------------------------------------------------------------------------- */

/* The percentile levels of a matmul operand, float32: P(0.99), P(0.99999), P(1 − 0.99f), P(1 − 0.99999f). */
static inline void aphq_matmul_quantile_levels(float q[4]) {
    q[0] = 0.99f;
    q[1] = 0.99999f;
    q[2] = 1.0f - 0.99f;    /* 0.00999999 */
    q[3] = 1.0f - 0.99999f; /* 1.00136e-5 */
}

/* U[i] = U_lo + (i/128)(U_hi − U_lo), L[i] = L_lo + (i/128)(L_hi − L_lo), i = 0..128, from the quantiles
 * p[4] at aphq_matmul_quantile_levels (U_lo, U_hi, L_hi, L_lo). */
static inline void aphq_matmul_levels(const float p[4], float *U, float *L) {
    for (int i = 0; i < APHQ_PAIRS; i++) {
        float t = (float)i / (float)APHQ_EQ_N;
        U[i] = p[0] + t * (p[1] - p[0]);
        L[i] = p[3] + t * (p[2] - p[3]);
    }
}

/* Level i of the conv weights' table: p_i = 0.99 + 0.0099·sqrt(i/127) for i < 128 (0.99 .. 0.9999), p_128 = 1. */
static inline float aphq_conv_level(int i) {
    return i >= APHQ_EQ_N ? 1.0f : (float)(0.99 + 0.0099 * sqrt((double)i / (double)(APHQ_EQ_N - 1)));
}

/* U[i] = P(p_i), L[i] = P(1 − p_i) of sorted v[n] (one output channel's weights). */
static inline void aphq_conv_levels(const float *sorted, int64_t n, float *U, float *L) {
    for (int i = 0; i < APHQ_PAIRS; i++) {
        float p = aphq_conv_level(i);
        U[i] = aphq_quantile_sorted(sorted, n, p);
        L[i] = aphq_quantile_sorted(sorted, n, 1.0f - p);
    }
}

/* Candidate (upper index iu, lower index il): s = (U[iu] − L[il]) / Qmax, z = −round(L[il] / s), not clamped. */
static inline void aphq_pair_at(const float *U, const float *L, int iu, int il, float qmax, float *s, float *z) {
    float sc = aphq_safe_scale((U[iu] - L[il]) / qmax);
    *s = sc;
    *z = -rintf(L[il] / sc);
}

#endif
