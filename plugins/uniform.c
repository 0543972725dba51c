/* uniform.c — the uniform fake-quantizer every method starts from (ALGORITHMS.md §1, specs/aphq-vit.md §2.1).
 *
 *   asymmetric:  Q(x) = (clamp(⌊x/s⌉ + z, 0, 2^b−1) − z)·s,   s = (hi − lo)/(2^b − 1),  z = −⌊lo/s⌉ (not clamped)
 *   symmetric:   Q(x) = clamp(⌊x/s⌉, −2^(b−1), 2^(b−1)−1)·s,  s = max(|lo|, |hi|)/(2^(b−1) − 1)
 * ⌊·⌉ is round half to even (rintf in the default rounding mode, as torch.round); x/s is a true division.
 * z is an integer stored as float. (lo, hi) come from the observed data:
 *   minmax      the observed min and max;
 *   percentile  the pct and 1−pct quantiles (linear interpolation, numpy's default) of a bounded sample;
 *   mse         (lo, hi)·r for r in search_steps ratios evenly from search_lo to 1, the r with the least
 *               MSE of the sample itself (first minimum).
 * Granularity: per_tensor; per_channel (weights: per output row; activations: per last-dim channel);
 * per_head (activations (B,H,...): per dim 1); per_token (activations: each row of the last dim gets its
 * own range at forward time from that row — dynamic, minmax or mse only, not learnable).
 * A degenerate range (hi == lo) is widened to include 0; an all-zero one gives s = 1.
 * Calibration samples: observe keeps min/max per group and, for percentile/mse, a reservoir (Algorithm L,
 * host rng) of up to max_samples values per tensor (weights: all values); finalize frees it.
 * Learnable scale (learnable = true): backward gives the straight-through dx (1 inside the clamp range,
 * bounds inclusive, 0 outside) and LSQ's scale gradient dQ/ds = ⌊x/s⌉ − x/s inside, (bound − z) outside,
 * times 1/sqrt(numel_per_scale · Qp) when grad_scale is on (Qp = 2^b−1 asymmetric, 2^(b−1)−1 symmetric).
 * z never gets a gradient. Does NOT: APHQ's candidate grid of (scale, zero-point) pairs or output-MSE
 * searches (those are passes), QDrop.
 */
#include "vitq_plugin.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum { GRAN_TENSOR = 0, GRAN_CHANNEL, GRAN_TOKEN, GRAN_HEAD };
enum { INIT_MINMAX = 0, INIT_PERCENTILE, INIT_MSE };

typedef struct {
    int bits;          /* 2..16 */
    int symmetric;     /* 0: levels 0..2^b−1 with zero point; 1: −2^(b−1)..2^(b−1)−1 */
    int granularity;   /* GRAN_* */
    int init;          /* INIT_* */
    double pct;        /* percentile init: upper quantile (lower = 1 − pct) */
    int search_steps;  /* mse init: number of clipping ratios */
    double search_lo;  /* mse init: smallest ratio */
    int learnable;     /* scales exposed to an optimiser */
    int grad_scale;    /* LSQ gradient scale 1/sqrt(numel·Qp) */
    int max_samples;   /* reservoir size for percentile / mse (activations) */
} uniform_params;

static const vitq_param uniform_param_table[] = {
    {.name = "bits", .type = VITQ_P_INT, .offset = offsetof(uniform_params, bits), .def = "8", .min = 2, .max = 16,
     .help = "bit-width"},
    {.name = "symmetric", .type = VITQ_P_BOOL, .offset = offsetof(uniform_params, symmetric), .def = "false",
     .help = "signed levels around 0 without zero point (else asymmetric with a zero point)"},
    {.name = "granularity", .type = VITQ_P_ENUM, .offset = offsetof(uniform_params, granularity),
     .def = "per_tensor", .choices = "per_tensor|per_channel|per_token|per_head",
     .help = "one scale per tensor, per output row (weights) / last-dim channel, per token row (dynamic), per head"},
    {.name = "init", .type = VITQ_P_ENUM, .offset = offsetof(uniform_params, init), .def = "minmax",
     .choices = "minmax|percentile|mse", .help = "how the range is found from the calibration data"},
    {.name = "pct", .type = VITQ_P_FLOAT, .offset = offsetof(uniform_params, pct), .def = "0.9999", .min = 0.5,
     .max = 1, .help = "percentile init: upper quantile (the lower one is 1 - pct)"},
    {.name = "search_steps", .type = VITQ_P_INT, .offset = offsetof(uniform_params, search_steps), .def = "100",
     .min = 2, .max = 10000, .help = "mse init: number of clipping ratios tried"},
    {.name = "search_lo", .type = VITQ_P_FLOAT, .offset = offsetof(uniform_params, search_lo), .def = "0.5",
     .min = 0.01, .max = 1, .help = "mse init: smallest clipping ratio (the largest is 1)"},
    {.name = "learnable", .type = VITQ_P_BOOL, .offset = offsetof(uniform_params, learnable), .def = "false",
     .help = "expose the scales to reconstruction (LSQ gradient)"},
    {.name = "grad_scale", .type = VITQ_P_BOOL, .offset = offsetof(uniform_params, grad_scale), .def = "true",
     .help = "multiply the scale gradient by 1/sqrt(numel * Qp) as LSQ does"},
    {.name = "max_samples", .type = VITQ_P_INT, .offset = offsetof(uniform_params, max_samples), .def = "1000000",
     .min = 1000, .max = 100000000, .help = "percentile/mse: activation values kept for the search (reservoir)"},
};

typedef struct {
    uniform_params p;
    const vitq_tap *tap;
    const vitq_host *host;
    float qlo, qhi;        /* integer level range: [0, 2^b−1] or [−2^(b−1), 2^(b−1)−1] */
    /* layout: the tensor is (outer, G, inner); group g holds scale[g], zp[g] */
    int64_t G, inner;
    int64_t token_len;     /* per_token: row length (last dim) */
    float *scale, *zp, *gscale; /* [G] */
    float *mn, *mx;        /* [G] observed */
    int64_t *seen;         /* [G] values observed */
    /* reservoir per group (Algorithm L) */
    int64_t cap;           /* per group */
    float *samples;        /* [G * cap] */
    double *res_w;         /* [G] */
    int64_t *res_next;     /* [G] 1-based index of the next replaced value */
    int finalized;
} uq;

/* ---------------------------------------------------------------------------------------------
 * Arithmetic
 * ------------------------------------------------------------------------------------------- */
static inline float fq(float x, float s, float z, float qlo, float qhi) {
    float v = rintf(x / s) + z;
    v = v < qlo ? qlo : (v > qhi ? qhi : v);
    return (v - z) * s;
}

/* y[i] = fq(x[i]) for n values, bit-identical to fq: x/s is first clamped to one level beyond the range
 * (which changes nothing after the final clamp), then rounded half to even by adding and subtracting
 * 1.5·2^23, exact for |v| < 2^22. SSE2 does 4 values at a time; MAXPS/MINPS with the bound as FIRST
 * operand return the second (x's value) when it is NaN, so NaN propagates as in fq. y may equal x.
 * The caller checks |z| + 2^16 + 2 < 2^22 (fast_ok). */
static void fq_run(float *y, const float *x, int64_t n, float s, float z, float qlo, float qhi) {
    int64_t i = 0;
#ifdef __SSE2__
    const __m128 M = _mm_set1_ps(12582912.0f), S = _mm_set1_ps(s), Z = _mm_set1_ps(z);
    const __m128 VLO = _mm_set1_ps(qlo - z - 1), VHI = _mm_set1_ps(qhi - z + 1);
    const __m128 QLO = _mm_set1_ps(qlo), QHI = _mm_set1_ps(qhi);
    for (; i + 4 <= n; i += 4) {
        __m128 v = _mm_div_ps(_mm_loadu_ps(x + i), S);
        v = _mm_min_ps(VHI, _mm_max_ps(VLO, v));
        v = _mm_add_ps(_mm_sub_ps(_mm_add_ps(v, M), M), Z);
        v = _mm_min_ps(QHI, _mm_max_ps(QLO, v));
        _mm_storeu_ps(y + i, _mm_mul_ps(_mm_sub_ps(v, Z), S));
    }
#endif
    for (; i < n; i++) y[i] = fq(x[i], s, z, qlo, qhi);
}

/* Values in a row sharing one group: the whole tensor when there is a single group. */
static inline int64_t run_len(const uq *q) { return q->G == 1 ? INT64_MAX / 4 : q->inner; }

static inline int fast_ok(float z) { return fabsf(z) + 65538.0f < 4194304.0f; }

/* Scale and zero point of the range [lo, hi]. */
static void range_to_sz(const uq *q, double lo, double hi, float *s, float *z) {
    if (q->p.symmetric) {
        double amax = fmax(fabs(lo), fabs(hi));
        double sv = amax > 0 ? amax / (double)q->qhi : 1.0;
        *s = (float)sv;
        *z = 0;
        return;
    }
    if (!(hi > lo)) {
        lo = fmin(lo, 0);
        hi = fmax(hi, 0);
    }
    if (!(hi > lo)) {
        *s = 1;
        *z = 0;
        return;
    }
    *s = (float)((hi - lo) / (double)q->qhi);
    *z = -rintf((float)lo / *s);
}

static double uniform01(const vitq_host *h) { return ((double)(h->rng(h) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* numpy 'linear' quantile of sorted a[n]. */
static double quantile_sorted(const float *a, int64_t n, double qq) {
    if (n == 1) return a[0];
    double pos = qq * (double)(n - 1);
    int64_t i = (int64_t)floor(pos);
    if (i >= n - 1) return a[n - 1];
    double f = pos - (double)i;
    return (double)a[i] + ((double)a[i + 1] - (double)a[i]) * f;
}

static double mse_of(const float *x, int64_t n, float s, float z, float qlo, float qhi) {
    double acc = 0;
    float buf[256];
    for (int64_t i = 0; i < n; i += 256) {
        int64_t m = n - i < 256 ? n - i : 256;
        if (fast_ok(z))
            fq_run(buf, x + i, m, s, z, qlo, qhi);
        else
            for (int64_t k = 0; k < m; k++) buf[k] = fq(x[i + k], s, z, qlo, qhi);
        for (int64_t k = 0; k < m; k++) {
            double d = (double)x[i + k] - (double)buf[k];
            acc += d * d;
        }
    }
    return n ? acc / (double)n : 0;
}

/* Candidate k of the mse init: the range (lo, hi) shrunk by ratio r_k. */
static void mse_candidate(const uq *q, int k, double lo, double hi, float *s, float *z) {
    int steps = q->p.search_steps;
    double r = q->p.search_lo + (1.0 - q->p.search_lo) * (double)k / (double)(steps - 1);
    range_to_sz(q, lo * r, hi * r, s, z);
}

typedef struct {
    const uq *q;
    const float *x;
    int64_t n;
    double lo, hi, *err;
} mse_job;

static void mse_candidates(void *ctx, int64_t begin, int64_t end) {
    const mse_job *j = ctx;
    for (int64_t k = begin; k < end; k++) {
        float cs, cz;
        mse_candidate(j->q, (int)k, j->lo, j->hi, &cs, &cz);
        j->err[k] = mse_of(j->x, j->n, cs, cz, j->q->qlo, j->q->qhi);
    }
}

/* The mse init on one group: best ratio for values x[n] with observed range [lo, hi] (first minimum).
 * par: spread the candidates over the host's threads (per-tensor finalize). */
static void mse_search(const uq *q, const float *x, int64_t n, double lo, double hi, float *s, float *z, int par) {
    int steps = q->p.search_steps;
    double *err = par && n >= 4096 ? malloc((size_t)steps * sizeof(double)) : NULL;
    if (err) {
        mse_job job = {q, x, n, lo, hi, err};
        q->host->parallel_for(steps, mse_candidates, &job);
    }
    double best = INFINITY;
    for (int k = 0; k < steps; k++) {
        float cs, cz;
        mse_candidate(q, k, lo, hi, &cs, &cz);
        double m = err ? err[k] : mse_of(x, n, cs, cz, q->qlo, q->qhi);
        if (m < best) {
            best = m;
            *s = cs;
            *z = cz;
        }
    }
    free(err);
}

/* ---------------------------------------------------------------------------------------------
 * Lifecycle
 * ------------------------------------------------------------------------------------------- */
static void uq_destroy(void *qv) {
    uq *q = qv;
    if (!q) return;
    free(q->scale);
    free(q->zp);
    free(q->gscale);
    free(q->mn);
    free(q->mx);
    free(q->seen);
    free(q->samples);
    free(q->res_w);
    free(q->res_next);
    free(q);
}

static void *uq_create(const void *params, const vitq_tap *tap, const vitq_host *host) {
    const uniform_params *p = params;
    int weight = tap->kind == VITQ_TAPK_WEIGHT;
    int64_t G = 1, inner = 1, token_len = 0;
    if (tap->ndim < 1 || tap->ndim > 4) {
        host->fail(host, VITQ_EINVAL, "tap has %d dimensions", tap->ndim);
        return NULL;
    }
    int64_t tail = 1; /* product of dims 1.. */
    for (int d = 1; d < tap->ndim; d++) tail *= tap->shape[d];
    switch (p->granularity) {
    case GRAN_TENSOR: break;
    case GRAN_CHANNEL:
        if (weight) {
            G = tap->shape[0];
            inner = tail;
        } else {
            G = tap->shape[tap->ndim - 1];
            inner = 1;
        }
        break;
    case GRAN_HEAD:
        if (weight || tap->ndim < 3 || tap->dims[1] != VITQ_DIM_HEAD) {
            host->fail(host, VITQ_EINVAL, "granularity per_head needs an activation laid out (B, H, ...)");
            return NULL;
        }
        G = tap->shape[1];
        inner = tail / G;
        break;
    case GRAN_TOKEN:
        if (weight) {
            host->fail(host, VITQ_EINVAL, "granularity per_token applies to activations (use per_channel for weights)");
            return NULL;
        }
        if (p->init == INIT_PERCENTILE || p->learnable) {
            host->fail(host, VITQ_EINVAL, "granularity per_token is dynamic: init must be minmax or mse and learnable false");
            return NULL;
        }
        token_len = tap->shape[tap->ndim - 1];
        break;
    }
    if (G < 1 || inner < 1 || (p->granularity == GRAN_TOKEN && token_len < 1)) {
        host->fail(host, VITQ_EINVAL, "bad tap shape for granularity");
        return NULL;
    }
    uq *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->p = *p;
    q->tap = tap;
    q->host = host;
    q->G = G;
    q->inner = inner;
    q->token_len = token_len;
    if (p->symmetric) {
        q->qlo = -ldexpf(1.0f, p->bits - 1);
        q->qhi = ldexpf(1.0f, p->bits - 1) - 1;
    } else {
        q->qlo = 0;
        q->qhi = ldexpf(1.0f, p->bits) - 1;
    }
    if (weight) {
        int64_t numel = tap->shape[0] * tail;
        q->cap = numel / G;
    } else {
        q->cap = p->max_samples / G;
        if (q->cap < 1024) q->cap = 1024;
    }
    q->scale = calloc((size_t)G, sizeof(float));
    q->zp = calloc((size_t)G, sizeof(float));
    q->gscale = calloc((size_t)G, sizeof(float));
    q->mn = malloc((size_t)G * sizeof(float));
    q->mx = malloc((size_t)G * sizeof(float));
    q->seen = calloc((size_t)G, sizeof(int64_t));
    if (!q->scale || !q->zp || !q->gscale || !q->mn || !q->mx || !q->seen) {
        uq_destroy(q);
        host->fail(host, VITQ_ENOMEM, "out of memory");
        return NULL;
    }
    for (int64_t g = 0; g < G; g++) {
        q->mn[g] = INFINITY;
        q->mx[g] = -INFINITY;
        q->scale[g] = 1;
    }
    return q;
}

/* Checks that x's layout matches the groups fixed at create. */
static int check_layout(uq *q, const vitq_view *x) {
    int64_t n = vitq_view_numel(x);
    if (q->p.granularity == GRAN_TOKEN) {
        if (x->ndim < 1 || x->shape[x->ndim - 1] != q->token_len)
            return q->host->fail(q->host, VITQ_EINVAL, "per_token: last dimension %lld, expected %lld",
                                 (long long)(x->ndim ? x->shape[x->ndim - 1] : 0), (long long)q->token_len);
        return 0;
    }
    if (n % (q->G * q->inner) != 0)
        return q->host->fail(q->host, VITQ_EINVAL, "tensor of %lld values does not split into %lld groups of %lld",
                             (long long)n, (long long)q->G, (long long)q->inner);
    return 0;
}

static void reservoir_add(uq *q, int64_t g, float v) {
    int64_t k = q->cap, t = ++q->seen[g]; /* t: 1-based index of this value in group g */
    float *res = q->samples + g * k;
    if (t <= k) {
        res[t - 1] = v;
        if (t == k) { /* start Algorithm L */
            q->res_w[g] = exp(log(uniform01(q->host)) / (double)k);
            q->res_next[g] = t + (int64_t)floor(log(uniform01(q->host)) / log1p(-q->res_w[g])) + 1;
        }
        return;
    }
    if (t == q->res_next[g]) {
        res[q->host->rng(q->host) % (uint64_t)k] = v;
        q->res_w[g] *= exp(log(uniform01(q->host)) / (double)k);
        q->res_next[g] = t + (int64_t)floor(log(uniform01(q->host)) / log1p(-q->res_w[g])) + 1;
    }
}

static int uq_observe(void *qv, const vitq_view *x) {
    uq *q = qv;
    int rc = check_layout(q, x);
    if (rc) return rc;
    if (q->finalized) return q->host->fail(q->host, VITQ_EINVAL, "observe after finalize");
    if (q->p.granularity == GRAN_TOKEN) return 0; /* dynamic: nothing to calibrate */
    int64_t n = vitq_view_numel(x);
    int sample = q->p.init != INIT_MINMAX;
    if (sample && !q->samples) {
        q->samples = malloc((size_t)(q->G * q->cap) * sizeof(float));
        q->res_w = calloc((size_t)q->G, sizeof(double));
        q->res_next = calloc((size_t)q->G, sizeof(int64_t));
        if (!q->samples || !q->res_w || !q->res_next)
            return q->host->fail(q->host, VITQ_ENOMEM, "out of memory for %lld calibration samples",
                                 (long long)(q->G * q->cap));
    }
    int64_t g = 0, j = 0, run = run_len(q);
    for (int64_t i = 0; i < n;) {
        int64_t len = run - j < n - i ? run - j : n - i;
        const float *v = x->data + i;
        float mn = q->mn[g], mx = q->mx[g];
        for (int64_t k = 0; k < len; k++) {
            mn = v[k] < mn ? v[k] : mn;
            mx = v[k] > mx ? v[k] : mx;
        }
        q->mn[g] = mn;
        q->mx[g] = mx;
        if (sample)
            for (int64_t k = 0; k < len; k++) reservoir_add(q, g, v[k]);
        else
            q->seen[g] += len;
        i += len;
        j = 0;
        g = g + 1 == q->G ? 0 : g + 1;
    }
    return 0;
}

typedef struct {
    uq *q;
} fin_job;

static void finalize_groups(void *ctx, int64_t begin, int64_t end) {
    uq *q = ((fin_job *)ctx)->q;
    for (int64_t g = begin; g < end; g++) {
        double lo = q->mn[g], hi = q->mx[g];
        int64_t n = q->seen[g] < q->cap ? q->seen[g] : q->cap;
        float *x = q->samples ? q->samples + g * q->cap : NULL;
        if (q->p.init == INIT_PERCENTILE) {
            qsort(x, (size_t)n, sizeof *x, cmp_float);
            lo = quantile_sorted(x, n, 1.0 - q->p.pct);
            hi = quantile_sorted(x, n, q->p.pct);
            range_to_sz(q, lo, hi, &q->scale[g], &q->zp[g]);
        } else if (q->p.init == INIT_MSE) {
            mse_search(q, x, n, lo, hi, &q->scale[g], &q->zp[g], q->G == 1);
        } else {
            range_to_sz(q, lo, hi, &q->scale[g], &q->zp[g]);
        }
    }
}

static int uq_finalize(void *qv) {
    uq *q = qv;
    if (q->p.granularity == GRAN_TOKEN) {
        q->finalized = 1;
        return 0;
    }
    for (int64_t g = 0; g < q->G; g++)
        if (q->seen[g] == 0)
            return q->host->fail(q->host, VITQ_EINVAL, "finalize: no calibration data was observed%s",
                                 q->G > 1 ? " for some channel" : "");
    fin_job job = {q};
    if (q->G > 1)
        q->host->parallel_for(q->G, finalize_groups, &job);
    else
        finalize_groups(&job, 0, 1);
    free(q->samples);
    free(q->res_w);
    free(q->res_next);
    q->samples = NULL;
    q->res_w = NULL;
    q->res_next = NULL;
    q->finalized = 1;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Forward
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    const uq *q;
    const float *x;
    float *y;
} fwd_job;

static void fwd_range(void *ctx, int64_t begin, int64_t end) {
    const fwd_job *jb = ctx;
    const uq *q = jb->q;
    int64_t run = run_len(q), g = (begin / run) % q->G, j = begin % run;
    for (int64_t i = begin; i < end;) {
        int64_t len = run - j < end - i ? run - j : end - i;
        float s = q->scale[g], z = q->zp[g], lo = q->qlo, hi = q->qhi;
        const float *x = jb->x + i;
        float *y = jb->y + i;
        if (len >= 16 && fast_ok(z))
            fq_run(y, x, len, s, z, lo, hi);
        else
            for (int64_t k = 0; k < len; k++) y[k] = fq(x[k], s, z, lo, hi);
        i += len;
        j = 0;
        g = g + 1 == q->G ? 0 : g + 1;
    }
}

/* per_token: rows [begin, end) of token_len values. */
static void fwd_tokens(void *ctx, int64_t begin, int64_t end) {
    const fwd_job *jb = ctx;
    const uq *q = jb->q;
    int64_t C = q->token_len;
    for (int64_t r = begin; r < end; r++) {
        const float *x = jb->x + r * C;
        float *y = jb->y + r * C;
        float mn = INFINITY, mx = -INFINITY;
        for (int64_t c = 0; c < C; c++) {
            mn = x[c] < mn ? x[c] : mn;
            mx = x[c] > mx ? x[c] : mx;
        }
        float s, z;
        if (q->p.init == INIT_MSE)
            mse_search(q, x, C, mn, mx, &s, &z, 0);
        else
            range_to_sz(q, mn, mx, &s, &z);
        if (fast_ok(z))
            fq_run(y, x, C, s, z, q->qlo, q->qhi);
        else
            for (int64_t c = 0; c < C; c++) y[c] = fq(x[c], s, z, q->qlo, q->qhi);
    }
}

static int uq_forward(void *qv, const vitq_view *x, vitq_view *y) {
    uq *q = qv;
    int rc = check_layout(q, x);
    if (rc) return rc;
    if (!q->finalized) return q->host->fail(q->host, VITQ_EINVAL, "forward before finalize (no calibration)");
    int64_t n = vitq_view_numel(x);
    fwd_job job = {q, x->data, y->data};
    if (q->p.granularity == GRAN_TOKEN) {
        int64_t rows = n / q->token_len;
        if (n >= 16384)
            q->host->parallel_for(rows, fwd_tokens, &job);
        else
            fwd_tokens(&job, 0, rows);
    } else if (n >= 16384) {
        q->host->parallel_for(n, fwd_range, &job);
    } else {
        fwd_range(&job, 0, n);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Backward: straight-through dx, LSQ scale gradient (serial: used by reconstruction only)
 * ------------------------------------------------------------------------------------------- */
static int uq_backward(void *qv, const vitq_view *x, const vitq_view *dy, vitq_view *dx) {
    uq *q = qv;
    if (q->p.granularity == GRAN_TOKEN) {
        /* dynamic ranges: plain straight-through inside the row's range (which holds every value) */
        int64_t n = vitq_view_numel(x);
        if (dx)
            for (int64_t i = 0; i < n; i++) dx->data[i] += dy->data[i];
        return 0;
    }
    int rc = check_layout(q, x);
    if (rc) return rc;
    int64_t n = vitq_view_numel(x);
    double qp = (double)q->qhi; /* Qp: 2^b-1 asymmetric, 2^(b-1)-1 symmetric */
    float gs = q->p.grad_scale ? (float)(1.0 / sqrt((double)(n / q->G) * qp)) : 1.0f;
    int64_t g = 0, j = 0, run = run_len(q);
    for (int64_t i = 0; i < n;) {
        int64_t len = run - j < n - i ? run - j : n - i;
        float s = q->scale[g], z = q->zp[g];
        double acc = 0;
        for (int64_t k = i; k < i + len; k++) {
            float v = x->data[k] / s, r = rintf(v), u = r + z, d;
            if (u < q->qlo) {
                d = q->qlo - z;
            } else if (u > q->qhi) {
                d = q->qhi - z;
            } else {
                d = r - v;
                if (dx) dx->data[k] += dy->data[k];
            }
            acc += (double)dy->data[k] * d;
        }
        if (q->p.learnable) q->gscale[g] += (float)acc * gs;
        i += len;
        j = 0;
        g = g + 1 == q->G ? 0 : g + 1;
    }
    return 0;
}

/* scale [G] (trainable with learnable = true), zero_point [G] (never trains). */
static int uq_tensors(void *qv, vitq_qtensor *out, int max) {
    uq *q = qv;
    int n = 0;
    if (q->p.granularity == GRAN_TOKEN) return 0; /* dynamic: nothing stored */
    if (n < max) out[n++] = (vitq_qtensor){.name = "scale", .value = q->scale, .grad = q->p.learnable ? q->gscale : NULL, .n = q->G};
    if (n < max) out[n++] = (vitq_qtensor){.name = "zero_point", .value = q->zp, .n = q->G};
    return n;
}

/* ---------------------------------------------------------------------------------------------
 * State: state_version [1], scale [G], zero_point [G]
 * ------------------------------------------------------------------------------------------- */
#define UNIFORM_STATE_VERSION 1

static int uq_save(const void *qv, vitq_state_io *io) {
    const uq *q = qv;
    float ver = UNIFORM_STATE_VERSION;
    int rc = io->put(io, "state_version", &ver, 1);
    if (!rc && q->p.granularity != GRAN_TOKEN) rc = io->put(io, "scale", q->scale, q->G);
    if (!rc && q->p.granularity != GRAN_TOKEN) rc = io->put(io, "zero_point", q->zp, q->G);
    return rc;
}

static int uq_load(void *qv, vitq_state_io *io) {
    uq *q = qv;
    float ver = 0;
    int rc = io->get(io, "state_version", &ver, 1);
    if (rc) return q->host->fail(q->host, rc, "state has no state_version");
    if (ver != UNIFORM_STATE_VERSION)
        return q->host->fail(q->host, VITQ_EFORMAT, "state version %g, this plugin reads %d", (double)ver,
                             UNIFORM_STATE_VERSION);
    if (q->p.granularity != GRAN_TOKEN) {
        if (io->size(io, "scale") != q->G || io->size(io, "zero_point") != q->G)
            return q->host->fail(q->host, VITQ_EFORMAT, "state holds %lld scales, this tap needs %lld",
                                 (long long)io->size(io, "scale"), (long long)q->G);
        if ((rc = io->get(io, "scale", q->scale, q->G)) || (rc = io->get(io, "zero_point", q->zp, q->G)))
            return q->host->fail(q->host, rc, "cannot read scale / zero_point");
    }
    q->finalized = 1;
    return 0;
}

static const vitq_quantizer_ops uniform_ops = {
    .size = sizeof(vitq_quantizer_ops),
    .create = uq_create,
    .observe = uq_observe,
    .finalize = uq_finalize,
    .forward = uq_forward,
    .backward = uq_backward,
    .tensors = uq_tensors,
    .save = uq_save,
    .load = uq_load,
    .destroy = uq_destroy,
};

static const vitq_plugin uniform_plugin = {
    .abi = VITQ_PLUGIN_ABI,
    .size = sizeof(vitq_plugin),
    .name = "uniform",
    .version = "1.0",
    .summary = "uniform fake-quant: symmetric/asymmetric, per tensor/channel/token/head, minmax/percentile/mse, LSQ scale",
    .kind = VITQ_PLUGIN_QUANTIZER,
    .params = uniform_param_table,
    .n_params = (int)(sizeof uniform_param_table / sizeof uniform_param_table[0]),
    .params_size = sizeof(uniform_params),
    .quantizer = &uniform_ops,
};

VITQ_PLUGIN_EXPORT const vitq_plugin *vitq_plugin_entry(void) { return &uniform_plugin; }
