/* log2.c — logarithmic fake-quantizers for post-Softmax probabilities (specs/ALGORITHMS.md §3, specs/aiqvit.md
 * §2.1–2.3): FQ-ViT / AdaLog's base 2, RepQ-ViT's base √2 and AdaLog's adaptive base, as modes of one
 * plugin because they share everything but the code → level map: S, the zero cut-off (a code ≥ 2^b
 * gives 0), the clamp of codes below 0 (p > S gives S), the state.
 *
 *   base 2:        q = ⌊−log2(p/S)⌉;         q ≥ 2^b → 0, else S·2^(−clamp(q, 0, 2^b−1))
 *   base √2:       q = ⌊−2·log2(p/S)⌉;       q ≥ 2^b → 0, else S·2^(−⌈q/2⌉)·(√2 if q is odd), RepQ-ViT's parity form
 *   base adaptive: i = ⌊(−log2(p/S)·r)/q_b⌉; i ≥ 2^b → 0, else, with i clamped to [0, 2^b−1] (AdaLog §2.3),
 *                  adalog_lut = true:  S·2^(−⌊i·q_b/r⌋)·T[(i·q_b) mod r], T[j] = ⌊2^(−j/r)·L⌉/L, L = 2^(b+1) − 2
 *                                      (AdaLog's shift-and-table form, what its calibration search and its
 *                                      evaluation compute);
 *                  adalog_lut = false: S·2^(−i·q_b/r) (its training-mode value).
 *                  r = adalog_r (37). q_b starts at adalog_q (37: base 2, AdaLog's own start); under
 *                  calib_mode = search (adalog_search = true) it is chosen at EVERY search round, as AdaLog
 *                  alternates it with V's search, among adalog_q_lo .. adalog_q_lo + adalog_q_n − 1
 *                  (10 .. 137) by the attn·V output error the harness returns (per tensor: per_group = 0),
 *                  first minimum; a round whose V is unchanged since the last is skipped (it would pick the
 *                  same). AdaLog keeps S = 1 for post-Softmax (scale = one).
 *   rounding = fqvit_lis (base 2, S = 1): FQ-ViT's integer path (QIntSoftmax.log_round): v = ⌊1/p⌉, then
 *                  q = ⌊log2 v⌋ + 1 if v − 2^⌊log2 v⌋ ≥ 2^(⌊log2 v⌋−1), else ⌊log2 v⌋; q ≥ 2^b → 0, else
 *                  2^(−clamp(q, 0, 2^b−1)). ⌊log2 v⌋ is exact here (FQ-ViT's float32 log2 can round up
 *                  within 1e-7 of a power of two, for v > 2^24, p < 6e-8); p is the float softmax, not
 *                  FQ-ViT's integer exp approximation.
 * ⌊·⌉ rounds half to even (rintf); p ≤ 0 (and NaN) gives 0 (AdaLog clamps p/S to 1e-15 first, which at
 * 4 bits and q_b ≥ 105 maps p = 0 to about 3e-15 instead). S = 1 (scale = one), or (scale = search) the one
 * of the 0.999 / 0.9999 / 0.99999 quantiles of the calibration values (a reservoir of up to max_samples,
 * host rng) whose fake-quant has the least tensor MSE on those values (first minimum).
 * Per tensor only. `tensors` lists "scale" [1] (no gradient); a pass may rewrite it between ops, the level
 * table follows at the next forward. Does NOT: gradients (no backward: the harness passes them straight
 * through), per-head scales or bases.
 * State: state_version [1] = 2, scale [1], base_q [1] (version 1, without base_q, loads for bases 2, √2).
 */
#include "vitq_plugin.h"

#include <math.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

#define LEVELS_MAX 320 /* codes beyond this give 2^-160 or less: 0 in float */

#define ADALOG_R_MAX 1024
#define LOG2_STATE_VERSION 2

enum { BASE_2 = 0, BASE_SQRT2 = 1, BASE_ADAPTIVE = 2 };
enum { SCALE_ONE = 0, SCALE_SEARCH = 1 };
enum { ROUND_NEAREST = 0, ROUND_FQVIT_LIS = 1 };

typedef struct {
    int bits;          /* 2..16 */
    int base;          /* BASE_* */
    int scale;         /* SCALE_ONE | SCALE_SEARCH */
    int max_samples;   /* reservoir size for the scale search */
    int rounding;      /* ROUND_*: base 2's code (FQ-ViT's LIS) */
    int adalog_r;      /* adaptive base 2^(q_b/r): r */
    int adalog_q;      /* q_b before (or without) the search */
    int adalog_q_lo;   /* search: first q_b */
    int adalog_q_n;    /* search: number of q_b tried */
    int adalog_lut;    /* the shift-and-table level (1) or the exact 2^(-i q_b / r) (0) */
    int adalog_search; /* choose q_b by the harness's output error (calib_mode = search) */
} log2_params;

static const vitq_param log2_param_table[] = {
    {.name = "bits", .type = VITQ_P_INT, .offset = offsetof(log2_params, bits), .def = "4", .min = 2, .max = 16,
     .help = "bit-width: 2^b levels below S, and 0"},
    {.name = "base", .type = VITQ_P_ENUM, .offset = offsetof(log2_params, base), .def = "2",
     .choices = "2|sqrt2|adaptive", .help = "2 (FQ-ViT, AdaLog's Log2), sqrt2 (RepQ-ViT) or adaptive 2^(q_b/r) (AdaLog)"},
    {.name = "scale", .type = VITQ_P_ENUM, .offset = offsetof(log2_params, scale), .def = "one",
     .choices = "one|search",
     .help = "S = 1, or S among the 0.999/0.9999/0.99999 quantiles by tensor MSE (RepQ-ViT)"},
    {.name = "max_samples", .type = VITQ_P_INT, .offset = offsetof(log2_params, max_samples), .def = "1000000",
     .min = 1000, .max = 100000000, .help = "scale search: calibration values kept (reservoir)"},
    {.name = "rounding", .type = VITQ_P_ENUM, .offset = offsetof(log2_params, rounding), .def = "nearest",
     .choices = "nearest|fqvit_lis",
     .help = "base 2's code: round(-log2 p), or FQ-ViT's LIS log_round(round(1/p)) (base 2, scale one)"},
    {.name = "adalog_r", .type = VITQ_P_INT, .offset = offsetof(log2_params, adalog_r), .def = "37", .min = 2,
     .max = ADALOG_R_MAX, .help = "adaptive: base 2^(q_b/r), r fixed (AdaLog: 37)"},
    {.name = "adalog_q", .type = VITQ_P_INT, .offset = offsetof(log2_params, adalog_q), .def = "37", .min = 1,
     .max = 100000, .help = "adaptive: q_b before, or without, the search (AdaLog starts at q_b = r, base 2)"},
    {.name = "adalog_q_lo", .type = VITQ_P_INT, .offset = offsetof(log2_params, adalog_q_lo), .def = "10", .min = 1,
     .max = 100000, .help = "adaptive search: first q_b tried"},
    {.name = "adalog_q_n", .type = VITQ_P_INT, .offset = offsetof(log2_params, adalog_q_n), .def = "128", .min = 1,
     .max = 100000, .help = "adaptive search: number of q_b tried (10..137 by default)"},
    {.name = "adalog_lut", .type = VITQ_P_BOOL, .offset = offsetof(log2_params, adalog_lut), .def = "true",
     .help = "adaptive: AdaLog's shift + table level (its search and evaluation), else exact 2^(-i q_b / r)"},
    {.name = "adalog_search", .type = VITQ_P_BOOL, .offset = offsetof(log2_params, adalog_search), .def = "true",
     .help = "adaptive: choose q_b at every round of calib_mode = search by the attn.V output error"},
};

typedef struct {
    log2_params p;
    const vitq_host *host;
    float S;
    float S_level;           /* the S level[] was filled for (a pass may rewrite S through tensors) */
    float level[LEVELS_MAX]; /* level[q] = the output for code q (forward's table, from log_fq) */
    float lut[ADALOG_R_MAX]; /* adaptive: T[j] = round(2^(-j/r) L) / L */
    int qb;                  /* adaptive: the base's q_b */
    int searched, warned;
    float *samples;
    int64_t cap, seen, next;
    double w;
    int finalized;
} lq;

/* The reference formula (used by finalize's scale search and to fill the level table). */
static inline float log_fq(float p, float S, int sqrt2, float cut) {
    if (!(p > 0)) return 0;
    float l = log2f(p / S);
    float q = sqrt2 ? rintf(-2.0f * l) : rintf(-l);
    if (q >= cut) return 0;
    if (q < 0) q = 0;
    if (!sqrt2) return exp2f(-q) * S;
    float h = ceilf(q * 0.5f);
    float odd = fmodf(q, 2.0f) != 0 ? (float)(M_SQRT2 - 1.0) + 1.0f : 1.0f;
    return exp2f(-h) * odd * S;
}

static void lq_destroy(void *qv) {
    lq *q = qv;
    if (!q) return;
    free(q->samples);
    free(q);
}

static void *lq_create(const void *params, const vitq_tap *tap, const vitq_host *host) {
    (void)tap;
    const log2_params *p = params;
    if (p->rounding == ROUND_FQVIT_LIS && (p->base != BASE_2 || p->scale != SCALE_ONE)) {
        host->fail(host, VITQ_EINVAL, "rounding = fqvit_lis is FQ-ViT's base-2 integer path: needs base = 2, scale = one");
        return NULL;
    }
    lq *q = calloc(1, sizeof *q);
    if (!q) {
        host->fail(host, VITQ_ENOMEM, "out of memory");
        return NULL;
    }
    q->p = *p;
    q->host = host;
    q->S = 1;
    q->cap = q->p.max_samples;
    q->qb = p->adalog_q;
    const double L = ldexp(1.0, p->bits + 1) - 2; /* AdaLog: 4·2^(b−1) − 2 */
    for (int j = 0; j < p->adalog_r; j++) q->lut[j] = (float)(rint(exp2(-(double)j / p->adalog_r) * L) / L);
    return q;
}

static double uniform01(const vitq_host *h) { return ((double)(h->rng(h) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

static int lq_observe(void *qv, const vitq_view *x) {
    lq *q = qv;
    int64_t n = vitq_view_numel(x);
    if (q->finalized) return q->host->fail(q->host, VITQ_EINVAL, "observe after finalize");
    if (q->p.scale == SCALE_ONE) {
        q->seen += n;
        return 0;
    }
    if (!q->samples && !(q->samples = malloc((size_t)q->cap * sizeof(float))))
        return q->host->fail(q->host, VITQ_ENOMEM, "out of memory for %lld samples", (long long)q->cap);
    for (int64_t i = 0; i < n; i++) { /* reservoir, Algorithm L */
        int64_t t = ++q->seen;
        if (t <= q->cap) {
            q->samples[t - 1] = x->data[i];
            if (t == q->cap) {
                q->w = exp(log(uniform01(q->host)) / (double)q->cap);
                q->next = t + (int64_t)floor(log(uniform01(q->host)) / log1p(-q->w)) + 1;
            }
        } else if (t == q->next) {
            q->samples[q->host->rng(q->host) % (uint64_t)q->cap] = x->data[i];
            q->w *= exp(log(uniform01(q->host)) / (double)q->cap);
            q->next = t + (int64_t)floor(log(uniform01(q->host)) / log1p(-q->w)) + 1;
        }
    }
    return 0;
}

/* level[q] for every code q < min(2^b, LEVELS_MAX), computed by log_fq itself at p = S·2^(-q) or 2^(-q/2). */
static void fill_levels(lq *q) {
    int sqrt2 = q->p.base == BASE_SQRT2;
    for (int k = 0; k < LEVELS_MAX; k++) {
        float h = sqrt2 ? ceilf(k * 0.5f) : (float)k;
        float odd = sqrt2 && (k % 2) ? (float)(M_SQRT2 - 1.0) + 1.0f : 1.0f;
        q->level[k] = k < ldexpf(1.0f, q->p.bits) ? exp2f(-h) * odd * q->S : 0;
    }
    q->S_level = q->S;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The adaptive base's level of p at scale S and q_b (AdaLog §2.3; see the file header). cut = 2^b. */
static inline float ada_one(const lq *q, float p, float S, int qb, float cut) {
    if (!(p > 0)) return 0;
    const int r = q->p.adalog_r;
    float i = rintf((-log2f(p / S) * (float)r) / (float)qb);
    if (i >= cut) return 0;
    if (i < 0) i = 0;
    if (!q->p.adalog_lut) return exp2f(-(i * (float)qb) / (float)r) * S;
    const int64_t k = (int64_t)i * qb, shift = k / r;
    return shift > 300 ? 0 : ldexpf(q->lut[k % r], -(int)shift) * S;
}

/* FQ-ViT's LIS code (QIntSoftmax.log_round of round(1/p)) and level, S = 1. cut = 2^b. */
static inline float lis_one(float p, float cut) {
    if (!(p > 0)) return 0;
    float v = rintf(1.0f / p);
    if (!(v < INFINITY)) return 0; /* 1/p overflows: a code far beyond 2^b */
    if (v < 1) return 1;           /* p > 2: round(1/p) = 0, log2 -> -inf, clamped to code 0 */
    int e = ilogbf(v);             /* exact floor(log2 v) */
    float c = (float)e + (v - ldexpf(1.0f, e) >= ldexpf(1.0f, e - 1));
    return c >= cut ? 0 : ldexpf(1.0f, -(int)c);
}

/* The reference level of p at scale S under this instance's mode (the scale search's). */
static float ref_one(const lq *q, float p, float S) {
    float cut = ldexpf(1.0f, q->p.bits);
    if (q->p.base == BASE_ADAPTIVE) return ada_one(q, p, S, q->qb, cut);
    return log_fq(p, S, q->p.base == BASE_SQRT2, cut);
}

static int lq_finalize(void *qv) {
    lq *q = qv;
    q->finalized = 1;
    if (q->p.scale == SCALE_ONE) {
        fill_levels(q);
        return 0;
    }
    int64_t n = q->seen < q->cap ? q->seen : q->cap;
    if (n == 0) return q->host->fail(q->host, VITQ_EINVAL, "finalize: no calibration data was observed");
    float *sorted = malloc((size_t)n * sizeof(float));
    if (!sorted) return q->host->fail(q->host, VITQ_ENOMEM, "out of memory");
    memcpy(sorted, q->samples, (size_t)n * sizeof(float));
    qsort(sorted, (size_t)n, sizeof(float), cmp_float);
    static const double pcts[3] = {0.999, 0.9999, 0.99999};
    double best = INFINITY;
    for (int k = 0; k < 3; k++) {
        double pos = pcts[k] * (double)(n - 1);
        int64_t i = (int64_t)floor(pos);
        double S = i >= n - 1 ? sorted[n - 1] : sorted[i] + (sorted[i + 1] - (double)sorted[i]) * (pos - (double)i);
        if (!(S > 0)) continue;
        double err = 0;
        for (int64_t j = 0; j < n; j++) {
            double d = (double)q->samples[j] - (double)ref_one(q, q->samples[j], (float)S);
            err += d * d;
        }
        if (err < best) {
            best = err;
            q->S = (float)S;
        }
    }
    free(sorted);
    free(q->samples);
    q->samples = NULL;
    fill_levels(q);
    return 0;
}

typedef struct {
    const lq *q;
    const float *x;
    float *y;
    int qb; /* adaptive: the q_b to apply */
} fwd_job;

/* Forward: q = round(-log2(p/S)) (or 2x for base sqrt2) rounded half to even by the 1.5·2^23 trick
 * (|q| < 2^22 always: float log2 lies in [-150, 128]), then a table look-up; same numbers as log_fq.
 * Fast path, same numbers without log2f: for r = p/S = m·2^e normal (1 <= m < 2), -log2(r) = -e - log2(m)
 * rounds to -e - 1 exactly when log2(m) > 1/2, i.e. m > √2 (base √2: -2e - k, k counting the thresholds
 * 2^(1/4), 2^(3/4) below m). Only within ±2^11 mantissa units (2.4e-4 relative, 30x log2f's rounding
 * and error at |log2| ~ 128) of a threshold, or for r not normal, is the reference formula used. */
#define LQ_WIN 2048
static inline int lq_near(uint32_t m, uint32_t t) { return m + LQ_WIN - t < 2 * LQ_WIN; }

/* The level of one value p (r = p / S): the fast path, or the reference formula near a threshold. */
static inline float lq_one(const lq *q, float p, float r, float cut) {
    if (!(p > 0)) return 0;
    const int sqrt2 = q->p.base == BASE_SQRT2;
    uint32_t u;
    memcpy(&u, &r, sizeof u);
    uint32_t ex = u >> 23, m = u & 0x7FFFFFu; /* ex >= 255: negative, inf or NaN; 0: subnormal or 0 */
    float c;
    if (ex - 1u < 254u && !(sqrt2 ? lq_near(m, 0x1837F0u) || lq_near(m, 0x5744FDu) : lq_near(m, 0x3504F3u))) {
        int e = (int)ex - 127;
        c = (float)(sqrt2 ? -2 * e - (m > 0x1837F0u) - (m > 0x5744FDu) : -e - (m > 0x3504F3u));
    } else {
        const float M = 12582912.0f;
        c = (((sqrt2 ? -2.0f : -1.0f) * log2f(r)) + M) - M;
    }
    return c >= cut ? 0 : q->level[c < 0 ? 0 : (int)c];
}

/* The adaptive base and FQ-ViT's LIS: the formula per value (no fast path). */
static void fwd_range_other(void *ctx, int64_t begin, int64_t end) {
    const fwd_job *j = ctx;
    const lq *q = j->q;
    const float cut = ldexpf(1.0f, q->p.bits);
    if (q->p.base == BASE_ADAPTIVE)
        for (int64_t i = begin; i < end; i++) j->y[i] = ada_one(q, j->x[i], q->S, j->qb, cut);
    else
        for (int64_t i = begin; i < end; i++) j->y[i] = lis_one(j->x[i], cut);
}

static void fwd_range(void *ctx, int64_t begin, int64_t end) {
    const fwd_job *j = ctx;
    const lq *q = j->q;
    const float S = q->S;
    float cut = ldexpf(1.0f, q->p.bits);
    if (cut > LEVELS_MAX) cut = LEVELS_MAX;
    int64_t i = begin;
#ifdef __SSE2__
    /* 4 values at a time: the fast path's codes in integer lanes; a lane that is not positive, not
     * normal after the division, or near a threshold takes lq_one. */
    const int sqrt2 = q->p.base == BASE_SQRT2, icut = (int)cut, one = S == 1.0f; /* p / 1 is p */
    const __m128 S4 = _mm_set1_ps(S), Z = _mm_setzero_ps();
    const __m128i MM = _mm_set1_epi32(0x7FFFFF), E1 = _mm_set1_epi32(1), E254 = _mm_set1_epi32(254);
    const __m128i TA = _mm_set1_epi32(sqrt2 ? 0x1837F0 : 0x3504F3), TB = _mm_set1_epi32(0x5744FD);
    const __m128i LA = _mm_set1_epi32((sqrt2 ? 0x1837F0 : 0x3504F3) - LQ_WIN - 1), HA = _mm_set1_epi32((sqrt2 ? 0x1837F0 : 0x3504F3) + LQ_WIN);
    const __m128i LB = _mm_set1_epi32(0x5744FD - LQ_WIN - 1), HB = _mm_set1_epi32(0x5744FD + LQ_WIN);
    const __m128i BIAS = _mm_set1_epi32(sqrt2 ? 254 : 127);
    for (; i + 4 <= end; i += 4) {
        __m128 p = _mm_loadu_ps(j->x + i), r = one ? p : _mm_div_ps(p, S4);
        __m128i u = _mm_castps_si128(r), ex = _mm_srli_epi32(u, 23), m = _mm_and_si128(u, MM);
        __m128i bad = _mm_or_si128(_mm_cmplt_epi32(ex, E1), _mm_cmpgt_epi32(ex, E254));
        bad = _mm_or_si128(bad, _mm_and_si128(_mm_cmpgt_epi32(m, LA), _mm_cmplt_epi32(m, HA)));
        __m128i code;
        if (sqrt2) {
            bad = _mm_or_si128(bad, _mm_and_si128(_mm_cmpgt_epi32(m, LB), _mm_cmplt_epi32(m, HB)));
            code = _mm_sub_epi32(BIAS, _mm_add_epi32(ex, ex));
            code = _mm_add_epi32(code, _mm_add_epi32(_mm_cmpgt_epi32(m, TA), _mm_cmpgt_epi32(m, TB)));
        } else {
            code = _mm_add_epi32(_mm_sub_epi32(BIAS, ex), _mm_cmpgt_epi32(m, TA));
        }
        int slow = _mm_movemask_ps(_mm_or_ps(_mm_castsi128_ps(bad), _mm_cmpngt_ps(p, Z)));
        int c4[4];
        float p4[4], r4[4];
        _mm_storeu_si128((__m128i *)c4, code);
        if (slow) _mm_storeu_ps(p4, p), _mm_storeu_ps(r4, r);
        for (int k = 0; k < 4; k++)
            j->y[i + k] = slow >> k & 1 ? lq_one(q, p4[k], r4[k], cut)
                          : c4[k] >= icut ? 0 : q->level[c4[k] < 0 ? 0 : c4[k]];
    }
#endif
    for (; i < end; i++) {
        float p = j->x[i];
        j->y[i] = lq_one(q, p, p / S, cut);
    }
}

/* y = the fake-quant of x[n], the adaptive base at q_b = qb. */
static void quantize(const lq *q, const float *x, float *y, int64_t n, int qb) {
    fwd_job job = {q, x, y, qb};
    vitq_plugin_range_fn fn = q->p.base == BASE_ADAPTIVE || q->p.rounding == ROUND_FQVIT_LIS ? fwd_range_other : fwd_range;
    if (n >= 16384)
        q->host->parallel_for(n, fn, &job);
    else
        fn(&job, 0, n);
}

static int lq_forward(void *qv, const vitq_view *x, vitq_view *y) {
    lq *q = qv;
    if (!q->finalized) return q->host->fail(q->host, VITQ_EINVAL, "forward before finalize (no calibration)");
    if (q->S != q->S_level) fill_levels(q);
    if (q->p.base == BASE_ADAPTIVE && q->p.adalog_search && !q->searched && !q->warned) {
        q->warned = 1;
        q->host->log(q->host, VITQ_LOG_WARN, "base = adaptive: q_b is chosen under calib_mode = search; using q_b = %d", q->qb);
    }
    quantize(q, x->data, y->data, vitq_view_numel(x), q->qb);
    return 0;
}

/* AdaLog's base search: q_b in [adalog_q_lo, adalog_q_lo + adalog_q_n) by the harness's output error of
 * attn·V (per tensor), first minimum; at every round (AdaLog alternates it with V's search). */
/* The op's other input (V, as quantized) is exactly what it was at this tap's previous search: a search
 * whose candidates and result depend only on it, on x and on the parameters would choose the same again
 * (partner_changed is read only from a harness whose vitq_search carries it). */
static int partner_same(const vitq_search *s) {
    return s->size >= offsetof(vitq_search, partner_changed) + sizeof(int) && !s->partner_changed;
}

static int lq_search(void *qv, const vitq_search *s) {
    lq *q = qv;
    if (q->p.base != BASE_ADAPTIVE || !q->p.adalog_search) return 0;
    if (q->searched && partner_same(s)) return 0;
    if (!q->finalized) return q->host->fail(q->host, VITQ_EINVAL, "search before finalize");
    const int64_t n = vitq_view_numel(s->x);
    float *y = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    double *err = malloc(sizeof(double) * (size_t)(s->groups > 1 ? s->groups : 1)), best = INFINITY;
    int rc = y && err ? 0 : q->host->fail(q->host, VITQ_ENOMEM, "base search: out of memory for %lld values", (long long)n);
    int pick = -1;
    vitq_view vy = *s->x;
    vy.data = y;
    for (int k = 0; !rc && k < q->p.adalog_q_n; k++) {
        const int qb = q->p.adalog_q_lo + k;
        quantize(q, s->x->data, y, n, qb);
        if ((rc = s->error(s, &vy, 0, err)))
            rc = q->host->fail(q->host, rc < 0 ? rc : VITQ_EPLUGIN, "base search: the harness's output error failed (code %d)", rc);
        else if (err[0] < best)
            best = err[0], pick = qb;
        if (!rc && q->host->progress(q->host, k + 1, q->p.adalog_q_n, "adaptive log base")) rc = VITQ_ECANCELLED;
    }
    if (!rc && pick < 0)
        q->host->log(q->host, VITQ_LOG_WARN, "base search: no q_b has a finite error; keeping q_b = %d", q->qb);
    if (!rc && pick >= 0) {
        q->qb = pick;
        q->searched = 1;
        q->host->log(q->host, VITQ_LOG_INFO, "round %d: q_b = %d (base 2^(%d/%d))", s->round, pick, pick, q->p.adalog_r);
    }
    free(y);
    free(err);
    return rc;
}

static int lq_save(const void *qv, vitq_state_io *io) {
    const lq *q = qv;
    float ver = LOG2_STATE_VERSION, qb = (float)q->qb;
    int rc = io->put(io, "state_version", &ver, 1);
    if (!rc) rc = io->put(io, "scale", &q->S, 1);
    return rc ? rc : io->put(io, "base_q", &qb, 1);
}

/* Version 2; version 1 (no base_q) is read for the bases it could have been written with (2, √2). */
static int lq_load(void *qv, vitq_state_io *io) {
    lq *q = qv;
    float ver = 0, qb = (float)q->p.adalog_q;
    if (io->get(io, "state_version", &ver, 1) || (ver != 1 && ver != LOG2_STATE_VERSION))
        return q->host->fail(q->host, VITQ_EFORMAT, "state version %g, this plugin reads 1 and %d", (double)ver,
                             LOG2_STATE_VERSION);
    if (ver == 1 && q->p.base == BASE_ADAPTIVE)
        return q->host->fail(q->host, VITQ_EFORMAT, "a version-1 state has no adaptive base (written with base = 2 or sqrt2)");
    if (io->get(io, "scale", &q->S, 1)) return q->host->fail(q->host, VITQ_EFORMAT, "state has no scale");
    if (ver == LOG2_STATE_VERSION && io->get(io, "base_q", &qb, 1))
        return q->host->fail(q->host, VITQ_EFORMAT, "state has no base_q");
    if (!(qb >= 1 && qb <= 1e5 && qb == rintf(qb)))
        return q->host->fail(q->host, VITQ_EFORMAT, "state base_q = %g is not an integer in [1, 100000]", (double)qb);
    q->qb = (int)qb;
    fill_levels(q);
    q->finalized = q->searched = 1;
    return 0;
}

/* scale [1]: S (1 with scale = one), no gradient. */
static int lq_tensors(void *qv, vitq_qtensor *out, int max) {
    lq *q = qv;
    if (max < 1) return 0;
    out[0] = (vitq_qtensor){.name = "scale", .value = &q->S, .grad = NULL, .n = 1};
    return 1;
}

static const vitq_quantizer_ops log2_ops = {
    .size = sizeof(vitq_quantizer_ops),
    .create = lq_create,
    .observe = lq_observe,
    .finalize = lq_finalize,
    .forward = lq_forward,
    .tensors = lq_tensors,
    .search = lq_search,
    .save = lq_save,
    .load = lq_load,
    .destroy = lq_destroy,
};

static const vitq_plugin log2_plugin = {
    .abi = VITQ_PLUGIN_ABI,
    .size = sizeof(vitq_plugin),
    .name = "log2",
    .version = "1.1",
    .summary = "log fake-quant for post-Softmax probabilities: base 2 (FQ-ViT, with its LIS), sqrt2 (RepQ-ViT), adaptive (AdaLog)",
    .kind = VITQ_PLUGIN_QUANTIZER,
    .params = log2_param_table,
    .n_params = (int)(sizeof log2_param_table / sizeof log2_param_table[0]),
    .params_size = sizeof(log2_params),
    .quantizer = &log2_ops,
};

VITQ_PLUGIN_EXPORT const vitq_plugin *vitq_plugin_entry(void) { return &log2_plugin; }
