/* log2.c — logarithmic fake-quantizer for post-Softmax probabilities (ALGORITHMS.md §3,
 * specs/aiqvit.md §2.1–2.2): FQ-ViT / AdaLog's base 2 and RepQ-ViT's base √2.
 *
 *   base 2:   q = ⌊−log2(p/S)⌉;    q ≥ 2^b → 0, else S·2^(−clamp(q, 0, 2^b−1))
 *   base √2:  q = ⌊−2·log2(p/S)⌉;  q ≥ 2^b → 0, else S·2^(−⌈q/2⌉)·(√2 if q is odd), RepQ-ViT's parity form
 * ⌊·⌉ rounds half to even (rintf); p ≤ 0 (and NaN) gives 0. S = 1 (scale = one), or (scale = search)
 * the one of the 0.999 / 0.9999 / 0.99999 quantiles of the calibration values (a reservoir of up to
 * max_samples, host rng) whose fake-quant has the least tensor MSE on those values (first minimum).
 * Per tensor only. ABI 2: `tensors` lists "scale" [1] (no gradient); a pass may rewrite it between ops,
 * the level table follows at the next forward. Does NOT: FQ-ViT's integer LIS rounding, AdaLog's adaptive
 * base, gradients (no backward: the harness passes them straight through).
 */
#include "vitq_plugin.h"

#include <math.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

#define LEVELS_MAX 320 /* codes beyond this give 2^-160 or less: 0 in float */

enum { BASE_2 = 0, BASE_SQRT2 = 1 };
enum { SCALE_ONE = 0, SCALE_SEARCH = 1 };

typedef struct {
    int bits;        /* 2..16 */
    int base;        /* BASE_2 | BASE_SQRT2 */
    int scale;       /* SCALE_ONE | SCALE_SEARCH */
    int max_samples; /* reservoir size for the scale search */
} log2_params;

static const vitq_param log2_param_table[] = {
    {.name = "bits", .type = VITQ_P_INT, .offset = offsetof(log2_params, bits), .def = "4", .min = 2, .max = 16,
     .help = "bit-width: 2^b levels below S, and 0"},
    {.name = "base", .type = VITQ_P_ENUM, .offset = offsetof(log2_params, base), .def = "2", .choices = "2|sqrt2",
     .help = "2 (FQ-ViT, AdaLog) or sqrt2 (RepQ-ViT)"},
    {.name = "scale", .type = VITQ_P_ENUM, .offset = offsetof(log2_params, scale), .def = "one",
     .choices = "one|search",
     .help = "S = 1, or S among the 0.999/0.9999/0.99999 quantiles by tensor MSE (RepQ-ViT)"},
    {.name = "max_samples", .type = VITQ_P_INT, .offset = offsetof(log2_params, max_samples), .def = "1000000",
     .min = 1000, .max = 100000000, .help = "scale search: calibration values kept (reservoir)"},
};

typedef struct {
    log2_params p;
    const vitq_host *host;
    float S;
    float S_level;           /* the S level[] was filled for (a pass may rewrite S through tensors) */
    float level[LEVELS_MAX]; /* level[q] = the output for code q (forward's table, from log_fq) */
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
    lq *q = calloc(1, sizeof *q);
    if (!q) {
        host->fail(host, VITQ_ENOMEM, "out of memory");
        return NULL;
    }
    q->p = *(const log2_params *)params;
    q->host = host;
    q->S = 1;
    q->cap = q->p.max_samples;
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
    float cut = ldexpf(1.0f, q->p.bits);
    double best = INFINITY;
    for (int k = 0; k < 3; k++) {
        double pos = pcts[k] * (double)(n - 1);
        int64_t i = (int64_t)floor(pos);
        double S = i >= n - 1 ? sorted[n - 1] : sorted[i] + (sorted[i + 1] - (double)sorted[i]) * (pos - (double)i);
        if (!(S > 0)) continue;
        double err = 0;
        for (int64_t j = 0; j < n; j++) {
            double d = (double)q->samples[j] - (double)log_fq(q->samples[j], (float)S, q->p.base == BASE_SQRT2, cut);
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

static int lq_forward(void *qv, const vitq_view *x, vitq_view *y) {
    lq *q = qv;
    if (!q->finalized) return q->host->fail(q->host, VITQ_EINVAL, "forward before finalize (no calibration)");
    if (q->S != q->S_level) fill_levels(q);
    int64_t n = vitq_view_numel(x);
    fwd_job job = {q, x->data, y->data};
    if (n >= 16384)
        q->host->parallel_for(n, fwd_range, &job);
    else
        fwd_range(&job, 0, n);
    return 0;
}

#define LOG2_STATE_VERSION 1

static int lq_save(const void *qv, vitq_state_io *io) {
    const lq *q = qv;
    float ver = LOG2_STATE_VERSION;
    int rc = io->put(io, "state_version", &ver, 1);
    return rc ? rc : io->put(io, "scale", &q->S, 1);
}

static int lq_load(void *qv, vitq_state_io *io) {
    lq *q = qv;
    float ver = 0;
    if (io->get(io, "state_version", &ver, 1) || ver != LOG2_STATE_VERSION)
        return q->host->fail(q->host, VITQ_EFORMAT, "state version %g, this plugin reads %d", (double)ver,
                             LOG2_STATE_VERSION);
    if (io->get(io, "scale", &q->S, 1)) return q->host->fail(q->host, VITQ_EFORMAT, "state has no scale");
    fill_levels(q);
    q->finalized = 1;
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
    .save = lq_save,
    .load = lq_load,
    .destroy = lq_destroy,
};

static const vitq_plugin log2_plugin = {
    .abi = VITQ_PLUGIN_ABI,
    .size = sizeof(vitq_plugin),
    .name = "log2",
    .version = "1.0",
    .summary = "log2 / log-sqrt2 fake-quant for post-Softmax probabilities (FQ-ViT, RepQ-ViT)",
    .kind = VITQ_PLUGIN_QUANTIZER,
    .params = log2_param_table,
    .n_params = (int)(sizeof log2_param_table / sizeof log2_param_table[0]),
    .params_size = sizeof(log2_params),
    .quantizer = &log2_ops,
};

VITQ_PLUGIN_EXPORT const vitq_plugin *vitq_plugin_entry(void) { return &log2_plugin; }
