/* uniform.c — the uniform fake-quantizer every method starts from (specs/ALGORITHMS.md §1, specs/aphq-vit.md §2.1).
 *
 *   asymmetric:  Q(x) = (clamp(⌊x/s⌉ + z, 0, 2^b−1) − z)·s,   s = (hi − lo)/(2^b − 1),  z = −⌊lo/s⌉ (not clamped)
 *   symmetric:   Q(x) = clamp(⌊x/s⌉, −2^(b−1), 2^(b−1)−1)·s,  s = max(|lo|, |hi|)/(2^(b−1) − 1)
 * ⌊·⌉ is round half to even (rintf in the default rounding mode, as torch.round); x/s is a true division.
 * z is stored as float and rounded at use (every init makes it an integer). (lo, hi) come from the data:
 *   minmax      the observed min and max;
 *   percentile  the pct and 1−pct quantiles (linear interpolation, numpy's default) of a bounded sample;
 *   mse         (lo, hi)·r for r in search_steps ratios evenly from search_lo to 1, the r with the least
 *               MSE of the sample itself (first minimum);
 *   aphq        APHQ-ViT's candidate grids and searches (specs/aphq-vit.md §2.3, §2.5, §2.6; the grid code is
 *               plugins/aphq_grid.h), chosen by the tap: a linear layer's weight per output row and its
 *               input per tensor (128 (s, z) pairs: min(16, 2^b) integer zero points × widths between
 *               P(0.9)−P(0.1) and P(1)−P(0); finalize takes the pair of least tensor MSE; search rounds
 *               1.. take the pair of least output error); an attention-matmul operand (a tap with a head
 *               dimension, or the probabilities) per head (129 paired percentile candidates, finalize =
 *               pair 127, search round 0 the paired search over 0..127, rounds 1.. coordinate descent:
 *               lower then upper); the patch-embedding conv weight (a 4-d weight) per output channel
 *               (levels 0.99 + 0.0099·sqrt(i/127): finalize = pair 127, round 0 paired, round 1 one
 *               coordinate round, then nothing). Every value observed is kept (max_values per tensor, more
 *               is an error) since the reference uses exact percentiles; granularity is implied by the tap.
 * Granularity: per_tensor; per_channel (weights: per output row; activations: per last-dim channel);
 * per_head (activations (B,H,...): per dim 1); per_token (activations: each row of the last dim gets its
 * own range at forward time from that row — dynamic, minmax or mse only, not learnable).
 * A degenerate range (hi == lo) is widened to include 0; an all-zero one gives s = 1.
 * Calibration samples (percentile, mse): a reservoir (Algorithm L, host rng) of up to max_samples values per
 * tensor (weights: all values); finalize frees it.
 *
 * Training (between train and freeze, block reconstruction):
 *   learnable = true   the scales train, LSQ-style: backward gives the straight-through dx (1 inside the
 *                      clamp range, bounds inclusive, 0 outside) and dQ/ds = ⌊x/s⌉ − x/s inside, (bound − z)
 *                      outside, times 1/sqrt(numel_per_scale · Qp) with the gradient-scale factor
 *                      (grad_scale = auto: off with init = aphq, as the reference's LSQ, §2.1; on otherwise).
 *                      z never trains.
 *   rounding = adaround  (weights, §2.7) train(w) sets α per weight so that h(α) = frac(w/s), h(α) =
 *                      clamp(σ(α)(ζ−γ)+γ, 0, 1), γ = −0.1, ζ = 1.1; the training forward is
 *                      s·(clamp(⌊w/s⌋ + h(α) + z, 0, Qmax) − z); backward: dα through h (0 where either clamp
 *                      is active), straight-through dx; regularize adds λ·Σ(1 − |2h(α) − 1|^β). freeze keeps
 *                      h = 1[α ≥ 0] per weight (α is dropped): the forward is then the hard AdaRound value,
 *                      the reference's baked weights. Before train, the forward rounds to nearest.
 * State (version 2): scale [G], zero_point [G]; round_up [⌈numel/16⌉] after AdaRound (16 decisions per float,
 * bit k of entry j = weight 16j+k rounds up). Version 1 (no round_up) still loads.
 * Departures of init = aphq from the reference (specs/aphq-vit.md): MSEs and the harness's errors are summed
 * in double (the reference: float32 on a GPU), so a near-tie may go the other way; a candidate scale that is
 * not positive (a constant row) is 1 (the reference: NaN); the matmul tables are U_lo + (i/128)(U_hi − U_lo)
 * in float32 (the reference's exact expression is not in the spec); the conv weight's finalize takes pair
 * 127 as the matmul operands do (the spec names no initial pair for it; search round 0 replaces it);
 * percentiles are never retried on fewer values after a memory error; more than max_values values is an error.
 * Does NOT: QDrop (the harness mixes float and quantized outputs), RepQ-ViT's per-channel search and folding
 * (a pass, with aphq_grid.h), `project` (nothing to constrain).
 */
#include "vitq_plugin.h"

#include "aphq_grid.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#include <immintrin.h>
#endif

enum { GRAN_TENSOR = 0, GRAN_CHANNEL, GRAN_TOKEN, GRAN_HEAD };
enum { INIT_MINMAX = 0, INIT_PERCENTILE, INIT_MSE, INIT_APHQ };
enum { GS_AUTO = 0, GS_TRUE, GS_FALSE };
enum { ROUND_NEAREST = 0, ROUND_ADAROUND };
/* What init = aphq does on this tap (from the tap's kind and dimensions). */
enum { APHQ_NONE = 0, APHQ_LINEAR_W, APHQ_LINEAR_A, APHQ_MATMUL, APHQ_CONV };
/* AdaRound state of a weight quantizer. */
enum { ADA_OFF = 0, ADA_SOFT, ADA_HARD };

typedef struct {
    int bits;          /* 2..16 */
    int symmetric;     /* 0: levels 0..2^b−1 with zero point; 1: −2^(b−1)..2^(b−1)−1 */
    int granularity;   /* GRAN_* */
    int init;          /* INIT_* */
    double pct;        /* percentile init: upper quantile (lower = 1 − pct) */
    int search_steps;  /* mse init: number of clipping ratios */
    double search_lo;  /* mse init: smallest ratio */
    int learnable;     /* scales train between train and freeze */
    int grad_scale;    /* GS_*: LSQ gradient scale 1/sqrt(numel·Qp) */
    int max_samples;   /* reservoir size for percentile / mse (activations) */
    int rounding;      /* ROUND_*: weights' rounding in training */
    int max_values;    /* init = aphq: values kept per tensor */
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
     .choices = "minmax|percentile|mse|aphq",
     .help = "how the range is found; aphq = APHQ-ViT's grids and output-error search by tap (departures: uniform.c's header)"},
    {.name = "pct", .type = VITQ_P_FLOAT, .offset = offsetof(uniform_params, pct), .def = "0.9999", .min = 0.5,
     .max = 1, .help = "percentile init: upper quantile (the lower one is 1 - pct)"},
    {.name = "search_steps", .type = VITQ_P_INT, .offset = offsetof(uniform_params, search_steps), .def = "100",
     .min = 2, .max = 10000, .help = "mse init: number of clipping ratios tried"},
    {.name = "search_lo", .type = VITQ_P_FLOAT, .offset = offsetof(uniform_params, search_lo), .def = "0.5",
     .min = 0.01, .max = 1, .help = "mse init: smallest clipping ratio (the largest is 1)"},
    {.name = "learnable", .type = VITQ_P_BOOL, .offset = offsetof(uniform_params, learnable), .def = "false",
     .help = "the scales train in reconstruction (LSQ gradient; zero points stay fixed)"},
    {.name = "grad_scale", .type = VITQ_P_ENUM, .offset = offsetof(uniform_params, grad_scale), .def = "auto",
     .choices = "auto|true|false",
     .help = "LSQ's 1/sqrt(numel * Qp) on the scale gradient; auto: off with init = aphq (the reference), else on"},
    {.name = "max_samples", .type = VITQ_P_INT, .offset = offsetof(uniform_params, max_samples), .def = "1000000",
     .min = 1000, .max = 100000000, .help = "percentile/mse: activation values kept for the search (reservoir)"},
    {.name = "rounding", .type = VITQ_P_ENUM, .offset = offsetof(uniform_params, rounding), .def = "nearest",
     .choices = "nearest|adaround",
     .help = "weights in reconstruction: nearest, or AdaRound (learned up/down per weight, hard after freeze)"},
    {.name = "max_values", .type = VITQ_P_INT, .offset = offsetof(uniform_params, max_values), .def = "268435456",
     .min = 1000, .max = 2147483647, .help = "init = aphq: calibration values kept per tensor (all; more is an error)"},
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
    /* init = aphq */
    int aphq;              /* APHQ_* */
    float **kept;          /* [G] every observed value of group g, in order (seen[g] of them) */
    int64_t *kept_cap, kept_total;
    aphq_lgrid *lgrid;     /* [G] linear taps' grids */
    float *U, *L;          /* [G * APHQ_PAIRS] paired taps' tables */
    int *iu, *il;          /* [G] chosen candidate (linear: iu) */
    int settled;           /* search: the last round's scan changed no choice (a next round with the same
                              partner would choose the same again) */
    /* training */
    int training;          /* between train and freeze */
    int parts;             /* a clone's share of the batch: its inputs are 1/parts of the tensor (else 1) */
    int ada;               /* ADA_* */
    int64_t nw;            /* weights: numel */
    float *alpha, *galpha; /* [nw] while ADA_SOFT */
    float *hraw, *afwd;    /* [nw] while ADA_SOFT: h before its clamp and the α it came from, as the last forward
                              computed them (backward and the regulariser reuse them while α is unchanged) */
    unsigned char *up;     /* [nw] AdaRound's decisions (ADA_HARD) */
    int finalized;
} uq;

#define ADA_GAMMA (-0.1f)
#define ADA_ZETA 1.1f
#define ADA_SPAN 1.2f /* ζ − γ as the reference's float32 scalar */

#include "adaround.h"
#include "uq_kernels.h"

/* ---------------------------------------------------------------------------------------------
 * Arithmetic
 * ------------------------------------------------------------------------------------------- */
/* Values in a row sharing one group: the whole tensor when there is a single group. */
static inline int64_t run_len(const uq *q) { return q->G == 1 ? INT64_MAX / 4 : q->inner; }

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

#ifdef HAVE_FQ_RUN16
/* mse_of's loop 16 values at a time, the same sums: t[r] gathers (x − fq(x))² of the values i ≡ r (mod 4) in
 * increasing i, as mse_of's two SSE2 accumulators do (so the result is bit-identical); the fake quant is
 * fq_run16's, 256 values at a time. Returns how many values it took. */
__attribute__((target("avx512f"))) static int64_t mse_run16(const float *x, int64_t n, float s, float z, float qlo,
                                                           float qhi, double t[4]) {
    float y[256];
    __m256d a = _mm256_loadu_pd(t);
    int64_t i = 0;
    while (i + 16 <= n) {
        const int64_t m = fq_run16(y, x + i, n - i < 256 ? n - i : 256, s, z, qlo, qhi); /* whole 16s */
        for (int64_t k = 0; k < m; k += 16) {
            __m512 xv = _mm512_loadu_ps(x + i + k), yv = _mm512_loadu_ps(y + k);
            __m512d d0 = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(xv)),
                                       _mm512_cvtps_pd(_mm512_castps512_ps256(yv)));
            __m512d d1 = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(xv), 1))),
                                       _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(yv), 1))));
            d0 = _mm512_mul_pd(d0, d0);
            d1 = _mm512_mul_pd(d1, d1);
            a = _mm256_add_pd(a, _mm512_castpd512_pd256(d0));
            a = _mm256_add_pd(a, _mm512_extractf64x4_pd(d0, 1));
            a = _mm256_add_pd(a, _mm512_castpd512_pd256(d1));
            a = _mm256_add_pd(a, _mm512_extractf64x4_pd(d1, 1));
        }
        i += m;
    }
    _mm256_storeu_pd(t, a);
    return i;
}
#endif

/* Mean of (x − fq(x))² over x[n] in double: aphq_mse's numbers up to the order of the sum. With SSE2 the
 * fake quant is fq_run's (bit-identical to fq) and the differences are taken and squared in double, in four
 * running sums by i mod 4 (AVX-512 first when the CPU has it: the same sums, see mse_run16). */
static double mse_of(const float *x, int64_t n, float s, float z, float qlo, float qhi) {
    double acc = 0;
    int64_t i = 0;
#ifdef __SSE2__
    if (fast_ok(z)) {
        double t[4] = {0, 0, 0, 0};
#ifdef HAVE_FQ_RUN16
        if (has_avx512()) i = mse_run16(x, n, s, z, qlo, qhi, t);
#endif
        const __m128 M = _mm_set1_ps(12582912.0f), S = _mm_set1_ps(s), Z = _mm_set1_ps(z);
        const __m128 VLO = _mm_set1_ps(qlo - z - 1), VHI = _mm_set1_ps(qhi - z + 1);
        const __m128 QLO = _mm_set1_ps(qlo), QHI = _mm_set1_ps(qhi);
        __m128d a0 = _mm_loadu_pd(t), a1 = _mm_loadu_pd(t + 2);
        for (; i + 4 <= n; i += 4) {
            __m128 xv = _mm_loadu_ps(x + i), v = _mm_div_ps(xv, S);
            v = _mm_min_ps(VHI, _mm_max_ps(VLO, v));
            v = _mm_add_ps(_mm_sub_ps(_mm_add_ps(v, M), M), Z);
            v = _mm_min_ps(QHI, _mm_max_ps(QLO, v));
            __m128 y = _mm_mul_ps(_mm_sub_ps(v, Z), S);
            __m128d d0 = _mm_sub_pd(_mm_cvtps_pd(xv), _mm_cvtps_pd(y));
            __m128d d1 = _mm_sub_pd(_mm_cvtps_pd(_mm_movehl_ps(xv, xv)), _mm_cvtps_pd(_mm_movehl_ps(y, y)));
            a0 = _mm_add_pd(a0, _mm_mul_pd(d0, d0));
            a1 = _mm_add_pd(a1, _mm_mul_pd(d1, d1));
        }
        _mm_storeu_pd(t, a0);
        _mm_storeu_pd(t + 2, a1);
        acc = (t[0] + t[1]) + (t[2] + t[3]);
    }
#endif
    for (; i < n; i++) {
        double d = (double)x[i] - (double)fq(x[i], s, z, qlo, qhi);
        acc += d * d;
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
static void free_kept(uq *q) {
    if (q->kept)
        for (int64_t g = 0; g < q->G; g++) free(q->kept[g]);
    free(q->kept);
    free(q->kept_cap);
    q->kept = NULL;
    q->kept_cap = NULL;
}

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
    free_kept(q);
    free(q->lgrid);
    free(q->U);
    free(q->L);
    free(q->iu);
    free(q->il);
    free(q->alpha);
    free(q->galpha);
    free(q->hraw);
    free(q->afwd);
    free(q->up);
    free(q);
}

/* init = aphq: the case of this tap and its groups (specs/aphq-vit.md §2.2). granularity per_tensor (the
 * default) lets the tap decide; any other value must agree with it. */
static int aphq_layout(const uniform_params *p, const vitq_tap *tap, const vitq_host *host, int *kind,
                       int64_t *G, int64_t *inner) {
    int64_t tail = 1;
    for (int d = 1; d < tap->ndim; d++) tail *= tap->shape[d];
    int has_head = tap->kind == VITQ_TAPK_PROBS, want;
    for (int d = 0; d < tap->ndim; d++) has_head |= tap->dims[d] == VITQ_DIM_HEAD;
    if (p->symmetric) return host->fail(host, VITQ_EINVAL, "init = aphq is asymmetric: set symmetric = false");
    if (tap->kind == VITQ_TAPK_WEIGHT) {
        *kind = tap->ndim == 4 ? APHQ_CONV : APHQ_LINEAR_W;
        *G = tap->shape[0];
        *inner = tail;
        want = GRAN_CHANNEL;
    } else if (has_head) {
        if (tap->ndim < 3 || tap->dims[1] != VITQ_DIM_HEAD)
            return host->fail(host, VITQ_EINVAL, "init = aphq: a head tap must be laid out (B, H, ...)");
        *kind = APHQ_MATMUL;
        *G = tap->shape[1];
        *inner = tail / (*G > 0 ? *G : 1);
        want = GRAN_HEAD;
    } else {
        *kind = APHQ_LINEAR_A;
        *G = 1;
        *inner = 1;
        want = GRAN_TENSOR;
    }
    if (p->granularity != GRAN_TENSOR && p->granularity != want)
        return host->fail(host, VITQ_EINVAL, "init = aphq quantizes this tap %s; granularity must be per_tensor (the "
                          "default) or that", want == GRAN_CHANNEL ? "per output channel (per_channel)"
                          : want == GRAN_HEAD ? "per head (per_head)" : "per tensor");
    return 0;
}

/* Groups of the tap under the chosen granularity: the tensor is (outer, G, inner). */
static int layout_of(const uniform_params *p, const vitq_tap *tap, const vitq_host *host, int *kind, int64_t *G,
                     int64_t *inner, int64_t *token_len) {
    int weight = tap->kind == VITQ_TAPK_WEIGHT;
    int64_t tail = 1; /* product of dims 1.. */
    for (int d = 1; d < tap->ndim; d++) tail *= tap->shape[d];
    *G = 1, *inner = 1, *token_len = 0, *kind = APHQ_NONE;
    if (p->rounding == ROUND_ADAROUND && !weight)
        return host->fail(host, VITQ_EINVAL, "rounding = adaround applies to weight taps");
    if (p->init == INIT_APHQ) return aphq_layout(p, tap, host, kind, G, inner);
    switch (p->granularity) {
    case GRAN_TENSOR: break;
    case GRAN_CHANNEL:
        *G = weight ? tap->shape[0] : tap->shape[tap->ndim - 1];
        *inner = weight ? tail : 1;
        break;
    case GRAN_HEAD:
        if (weight || tap->ndim < 3 || tap->dims[1] != VITQ_DIM_HEAD)
            return host->fail(host, VITQ_EINVAL, "granularity per_head needs an activation laid out (B, H, ...)");
        *G = tap->shape[1];
        *inner = tail / *G;
        break;
    case GRAN_TOKEN:
        if (weight)
            return host->fail(host, VITQ_EINVAL, "granularity per_token applies to activations (use per_channel for weights)");
        if (p->init == INIT_PERCENTILE || p->learnable)
            return host->fail(host, VITQ_EINVAL, "granularity per_token is dynamic: init must be minmax or mse and learnable false");
        *token_len = tap->shape[tap->ndim - 1];
        break;
    }
    return 0;
}

static int alloc_groups(uq *q) {
    int64_t G = q->G;
    q->scale = calloc((size_t)G, sizeof(float));
    q->zp = calloc((size_t)G, sizeof(float));
    q->gscale = calloc((size_t)G, sizeof(float));
    q->mn = malloc((size_t)G * sizeof(float));
    q->mx = malloc((size_t)G * sizeof(float));
    q->seen = calloc((size_t)G, sizeof(int64_t));
    if (!q->scale || !q->zp || !q->gscale || !q->mn || !q->mx || !q->seen) return -1;
    if (q->aphq) {
        q->iu = calloc((size_t)G, sizeof(int));
        q->il = calloc((size_t)G, sizeof(int));
        q->kept = calloc((size_t)G, sizeof(float *));
        q->kept_cap = calloc((size_t)G, sizeof(int64_t));
        if (!q->iu || !q->il || !q->kept || !q->kept_cap) return -1;
    }
    for (int64_t g = 0; g < G; g++) {
        q->mn[g] = INFINITY;
        q->mx[g] = -INFINITY;
        q->scale[g] = 1;
    }
    return 0;
}

static void *uq_create(const void *params, const vitq_tap *tap, const vitq_host *host) {
    const uniform_params *p = params;
    if (tap->ndim < 1 || tap->ndim > 4) {
        host->fail(host, VITQ_EINVAL, "tap has %d dimensions", tap->ndim);
        return NULL;
    }
    int kind;
    int64_t G, inner, token_len;
    if (layout_of(p, tap, host, &kind, &G, &inner, &token_len)) return NULL;
    if (G < 1 || inner < 1 || (p->granularity == GRAN_TOKEN && token_len < 1)) {
        host->fail(host, VITQ_EINVAL, "bad tap shape for granularity");
        return NULL;
    }
    uq *q = calloc(1, sizeof *q);
    if (!q) {
        host->fail(host, VITQ_ENOMEM, "out of memory");
        return NULL;
    }
    q->p = *p;
    q->tap = tap;
    q->host = host;
    q->G = G;
    q->inner = inner;
    q->token_len = token_len;
    q->aphq = kind;
    q->qlo = p->symmetric ? -ldexpf(1.0f, p->bits - 1) : 0;
    q->qhi = p->symmetric ? ldexpf(1.0f, p->bits - 1) - 1 : ldexpf(1.0f, p->bits) - 1;
    q->parts = 1;
    if (tap->kind == VITQ_TAPK_WEIGHT) {
        q->nw = 1;
        for (int d = 0; d < tap->ndim; d++) q->nw *= tap->shape[d];
        q->cap = q->nw / G;
    } else {
        q->cap = p->max_samples / G;
        if (q->cap < 1024) q->cap = 1024;
    }
    if (alloc_groups(q)) {
        uq_destroy(q);
        host->fail(host, VITQ_ENOMEM, "out of memory");
        return NULL;
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

/* init = aphq: appends v[len] to group g's kept values (grown by doubling). */
static int keep_values(uq *q, int64_t g, const float *v, int64_t len) {
    if (q->kept_total + len > q->p.max_values)
        return q->host->fail(q->host, VITQ_EINVAL, "init = aphq keeps every calibration value: more than "
                             "max_values = %d (raise it, or calibrate on fewer images)", q->p.max_values);
    int64_t need = q->seen[g] + len;
    if (need > q->kept_cap[g]) {
        int64_t cap = q->kept_cap[g] ? q->kept_cap[g] : 1024;
        while (cap < need) cap *= 2;
        float *p = realloc(q->kept[g], (size_t)cap * sizeof(float));
        if (!p) return q->host->fail(q->host, VITQ_ENOMEM, "out of memory for %lld calibration values", (long long)cap);
        q->kept[g] = p;
        q->kept_cap[g] = cap;
    }
    memcpy(q->kept[g] + q->seen[g], v, (size_t)len * sizeof(float));
    q->seen[g] += len;
    q->kept_total += len;
    return 0;
}

static int alloc_reservoir(uq *q) {
    if (q->samples) return 0;
    q->samples = malloc((size_t)(q->G * q->cap) * sizeof(float));
    q->res_w = calloc((size_t)q->G, sizeof(double));
    q->res_next = calloc((size_t)q->G, sizeof(int64_t));
    if (!q->samples || !q->res_w || !q->res_next)
        return q->host->fail(q->host, VITQ_ENOMEM, "out of memory for %lld calibration samples",
                             (long long)(q->G * q->cap));
    return 0;
}

static int uq_observe(void *qv, const vitq_view *x) {
    uq *q = qv;
    int rc = check_layout(q, x);
    if (rc) return rc;
    if (q->finalized) return q->host->fail(q->host, VITQ_EINVAL, "observe after finalize");
    if (q->p.granularity == GRAN_TOKEN && !q->aphq) return 0; /* dynamic: nothing to calibrate */
    int64_t n = vitq_view_numel(x);
    int sample = q->p.init == INIT_PERCENTILE || q->p.init == INIT_MSE;
    if (sample && (rc = alloc_reservoir(q))) return rc;
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
        if (q->aphq) {
            if ((rc = keep_values(q, g, v, len))) return rc;
        } else if (sample) {
            for (int64_t k = 0; k < len; k++) reservoir_add(q, g, v[k]);
        } else {
            q->seen[g] += len;
        }
        i += len;
        j = 0;
        g = g + 1 == q->G ? 0 : g + 1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * init = aphq: finalize (specs/aphq-vit.md §2.3 step 1-2, §2.5 step 3, §2.6)
 * ------------------------------------------------------------------------------------------- */

/* Candidate (s, z) of group g: linear taps index idx into the grid; paired taps (iu, il) into the tables. */
static void aphq_candidate(const uq *q, int64_t g, int iu, int il, float *s, float *z) {
    if (q->aphq == APHQ_LINEAR_W || q->aphq == APHQ_LINEAR_A)
        aphq_lgrid_at(&q->lgrid[g], iu, s, z);
    else
        aphq_pair_at(q->U + g * APHQ_PAIRS, q->L + g * APHQ_PAIRS, iu, il, q->qhi, s, z);
}

static void aphq_select_pair(uq *q, int64_t g, int iu, int il) {
    q->iu[g] = iu;
    q->il[g] = il;
    aphq_candidate(q, g, iu, il, &q->scale[g], &q->zp[g]);
}

typedef struct {
    uq *q;
    const aphq_lgrid *grid;
    const float *x;
    int64_t n;
    double *err;
    int bad;
} aphq_job;

/* MSE of the linear grid's candidates [begin, end) over one tensor (vectorised as the forward). */
static void aphq_mse_candidates(void *ctx, int64_t begin, int64_t end) {
    aphq_job *j = ctx;
    for (int64_t i = begin; i < end; i++) {
        float s, z;
        aphq_lgrid_at(j->grid, (int)i, &s, &z);
        j->err[i] = mse_of(j->x, j->n, s, z, 0, j->grid->qmax);
    }
}

/* Groups [begin, end) of a per-row or per-head tap: quantiles of the kept values, the grid or tables, and
 * the finalize choice (linear rows: least MSE; matmul heads and conv rows: pair 127). */
static void aphq_finalize_groups(void *ctx, int64_t begin, int64_t end) {
    aphq_job *j = ctx;
    uq *q = j->q;
    for (int64_t g = begin; g < end; g++) {
        float *v = q->kept[g], lv[4], p[4];
        int64_t n = q->seen[g];
        if (q->aphq == APHQ_LINEAR_W) {
            double err[APHQ_EQ_N];
            aphq_lgrid_levels(lv);
            aphq_quantiles(v, n, lv, 4, p);
            aphq_lgrid_init(&q->lgrid[g], q->p.bits, 0, p);
            aphq_job one = {q, &q->lgrid[g], v, n, err, 0};
            aphq_mse_candidates(&one, 0, aphq_lgrid_count(&q->lgrid[g]));
            aphq_select_pair(q, g, aphq_argmin(err, aphq_lgrid_count(&q->lgrid[g])), 0);
        } else if (q->aphq == APHQ_MATMUL) {
            aphq_matmul_quantile_levels(lv);
            if (aphq_quantiles_chunked(v, n, lv, 4, p) < 0) {
                j->bad = 1;
                continue;
            }
            aphq_matmul_levels(p, q->U + g * APHQ_PAIRS, q->L + g * APHQ_PAIRS);
            aphq_select_pair(q, g, APHQ_EQ_N - 1, APHQ_EQ_N - 1);
        } else { /* APHQ_CONV */
            qsort(v, (size_t)n, sizeof *v, cmp_float);
            aphq_conv_levels(v, n, q->U + g * APHQ_PAIRS, q->L + g * APHQ_PAIRS);
            aphq_select_pair(q, g, APHQ_EQ_N - 1, APHQ_EQ_N - 1);
        }
    }
}

/* The linear input (one tensor): mean of chunk percentiles, then the 128 candidates' MSE on the threads. */
static int aphq_finalize_tensor(uq *q) {
    float lv[4], p[4];
    double err[APHQ_EQ_N];
    int64_t n = q->seen[0];
    aphq_lgrid_levels(lv);
    if (aphq_quantiles_chunked(q->kept[0], n, lv, 4, p) < 0)
        return q->host->fail(q->host, VITQ_EINVAL, "init = aphq: %lld values cannot be split into chunks of at "
                             "most 2^24 (the reference's percentiles)", (long long)n);
    aphq_lgrid_init(&q->lgrid[0], q->p.bits, 1, p);
    aphq_job job = {q, &q->lgrid[0], q->kept[0], n, err, 0};
    if (n >= 4096)
        q->host->parallel_for(aphq_lgrid_count(&q->lgrid[0]), aphq_mse_candidates, &job);
    else
        aphq_mse_candidates(&job, 0, aphq_lgrid_count(&q->lgrid[0]));
    aphq_select_pair(q, 0, aphq_argmin(err, aphq_lgrid_count(&q->lgrid[0])), 0);
    return 0;
}

static int aphq_finalize(uq *q) {
    int linear = q->aphq == APHQ_LINEAR_W || q->aphq == APHQ_LINEAR_A;
    if (linear)
        q->lgrid = calloc((size_t)q->G, sizeof(aphq_lgrid));
    else {
        q->U = malloc((size_t)(q->G * APHQ_PAIRS) * sizeof(float));
        q->L = malloc((size_t)(q->G * APHQ_PAIRS) * sizeof(float));
    }
    if (linear ? !q->lgrid : !q->U || !q->L) return q->host->fail(q->host, VITQ_ENOMEM, "out of memory");
    int rc = 0;
    if (q->aphq == APHQ_LINEAR_A) {
        rc = aphq_finalize_tensor(q);
    } else {
        aphq_job job = {q, NULL, NULL, 0, NULL, 0};
        if (q->G > 1)
            q->host->parallel_for(q->G, aphq_finalize_groups, &job);
        else
            aphq_finalize_groups(&job, 0, 1);
        if (job.bad)
            rc = q->host->fail(q->host, VITQ_EINVAL, "init = aphq: a head's values cannot be split into chunks "
                               "of at most 2^24 (the reference's percentiles)");
    }
    free_kept(q);
    return rc;
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
    if (q->p.granularity == GRAN_TOKEN && !q->aphq) {
        q->finalized = 1;
        return 0;
    }
    for (int64_t g = 0; g < q->G; g++)
        if (q->seen[g] == 0)
            return q->host->fail(q->host, VITQ_EINVAL, "finalize: no calibration data was observed%s",
                                 q->G > 1 ? " for some channel" : "");
    int rc = 0;
    if (q->aphq) {
        rc = aphq_finalize(q);
    } else {
        fin_job job = {q};
        if (q->G > 1)
            q->host->parallel_for(q->G, finalize_groups, &job);
        else
            finalize_groups(&job, 0, 1);
    }
    free(q->samples);
    free(q->res_w);
    free(q->res_next);
    q->samples = NULL;
    q->res_w = NULL;
    q->res_next = NULL;
    if (!rc) q->finalized = 1;
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Forward: nearest rounding (evaluation, search candidates), AdaRound soft (training) and hard (frozen)
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    const uq *q;
    const float *x;
    float *y;
    const float *s, *z; /* [G] the scales and zero points to use */
} fwd_job;

static void fwd_range(void *ctx, int64_t begin, int64_t end) {
    const fwd_job *jb = ctx;
    const uq *q = jb->q;
    int64_t run = run_len(q), g = (begin / run) % q->G, j = begin % run;
    for (int64_t i = begin; i < end;) {
        int64_t len = run - j < end - i ? run - j : end - i;
        float s = jb->s[g], z = rintf(jb->z[g]), lo = q->qlo, hi = q->qhi; /* z rounded at use (§2.1) */
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

/* y = fq(x) over n values with per-group (s, z), on the threads when large. */
static void fq_groups(const uq *q, const float *x, float *y, int64_t n, const float *s, const float *z) {
    fwd_job job = {q, x, y, s, z};
    if (n >= 16384)
        q->host->parallel_for(n, fwd_range, &job);
    else
        fwd_range(&job, 0, n);
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

/* AdaRound's rectified sigmoid h(α) = clamp(σ(α)(ζ−γ) + γ, 0, 1); *raw gets the value before the clamp. */
static inline float ada_h(float a, float *raw) {
    float sg = 1.0f / (1.0f + ada_exp(0.0f - a)); /* as ada_fwd_soft */
    float h = sg * ADA_SPAN + ADA_GAMMA;
    if (raw) *raw = h;
    return h < 0 ? 0 : (h > 1 ? 1 : h);
}

/* ada_h of weight i, from the last forward's cache when α[i] has not changed since. */
static inline float ada_h_at(const uq *q, int64_t i, float *raw) {
    float r;
    if (q->afwd && q->afwd[i] == q->alpha[i]) r = q->hraw[i];
    else ada_h(q->alpha[i], &r);
    if (raw) *raw = r;
    return r < 0 ? 0 : (r > 1 ? 1 : r);
}

/* AdaRound forward of weights [begin, end): s·(clamp(⌊w/s⌋ + h + z, qlo, qhi) − z), h soft (α) or hard. */
static void ada_range(void *ctx, int64_t begin, int64_t end) {
    const fwd_job *jb = ctx;
    const uq *q = jb->q;
    int64_t run = run_len(q), g = (begin / run) % q->G, j = begin % run;
    for (int64_t i = begin; i < end;) {
        int64_t len = run - j < end - i ? run - j : end - i;
        float s = q->scale[g], z = q->zp[g];
        if (q->ada == ADA_SOFT && q->afwd) {
            ada_fwd_soft(jb->y + i, jb->x + i, q->alpha + i, q->hraw + i, q->afwd + i, len, s, z, q->qlo, q->qhi);
            i += len, j = 0, g = g + 1 == q->G ? 0 : g + 1;
            continue;
        }
        for (int64_t k = i; k < i + len; k++) {
            float h;
            if (q->ada == ADA_SOFT) {
                float raw;
                h = ada_h(q->alpha[k], &raw);
                if (q->afwd) q->hraw[k] = raw, q->afwd[k] = q->alpha[k];
            } else {
                h = (float)q->up[k];
            }
            float v = floorf(jb->x[k] / s) + h + z;
            v = v < q->qlo ? q->qlo : (v > q->qhi ? q->qhi : v);
            jb->y[k] = (v - z) * s;
        }
        i += len;
        j = 0;
        g = g + 1 == q->G ? 0 : g + 1;
    }
}

static int uq_forward(void *qv, const vitq_view *x, vitq_view *y) {
    uq *q = qv;
    int rc = check_layout(q, x);
    if (rc) return rc;
    if (!q->finalized) return q->host->fail(q->host, VITQ_EINVAL, "forward before finalize (no calibration)");
    int64_t n = vitq_view_numel(x);
    fwd_job job = {q, x->data, y->data, q->scale, q->zp};
    if (q->ada != ADA_OFF) {
        if (n != q->nw)
            return q->host->fail(q->host, VITQ_EINVAL, "AdaRound: %lld weights, expected %lld", (long long)n,
                                 (long long)q->nw);
        if (n >= 16384)
            q->host->parallel_for(n, ada_range, &job);
        else
            ada_range(&job, 0, n);
    } else if (q->p.granularity == GRAN_TOKEN && !q->aphq) {
        int64_t rows = n / q->token_len;
        if (n >= 16384)
            q->host->parallel_for(rows, fwd_tokens, &job);
        else
            fwd_tokens(&job, 0, rows);
    } else {
        fq_groups(q, x->data, y->data, n, q->scale, q->zp);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Search (init = aphq): candidates tried through the harness's output error (vitq_search)
 * ------------------------------------------------------------------------------------------- */
enum { SCAN_LINEAR = 0, SCAN_PAIRED, SCAN_LOWER, SCAN_UPPER };

/* Candidate j of a scan for group g: the linear grid's j; the pair (j, j); (fixed upper, j); (j, fixed lower). */
static void scan_indices(const uq *q, int mode, int64_t g, int j, int *iu, int *il) {
    *iu = mode == SCAN_LOWER ? q->iu[g] : j;
    *il = mode == SCAN_LINEAR ? 0 : mode == SCAN_UPPER ? q->il[g] : j;
}

/* The scan candidate j that group g's current pair is (-1: it is not one of the scan's candidates). */
static int scan_current(const uq *q, int mode, int64_t g) {
    switch (mode) {
    case SCAN_LINEAR: return q->il[g] == 0 ? q->iu[g] : -1;
    case SCAN_PAIRED: return q->iu[g] == q->il[g] ? q->iu[g] : -1;
    case SCAN_LOWER: return q->il[g];
    default: return q->iu[g];
    }
}

/* The error of every group's current pair, the first bound of a scan (INFINITY where the pair is not one
 * of the scan's candidates, so that a bound is always some candidate's error and the choice stays the
 * sweep's first least error). */
static int scan_seed(uq *q, const vitq_search *s, int mode, int per_group, vitq_view *xq, float *cs, float *cz,
                     double *err, double *bound) {
    int64_t G = q->G, seeded = 0;
    for (int64_t g = 0; g < G; g++) {
        bound[g] = INFINITY;
        seeded += scan_current(q, mode, g) >= 0;
        cs[g] = q->scale[g], cz[g] = q->zp[g];
    }
    if (seeded == 0 || (!per_group && seeded < G)) return 0;
    fq_groups(q, s->x->data, xq->data, vitq_view_numel(s->x), cs, cz);
    int rc = s->error(s, xq, per_group, err);
    for (int64_t g = 0; !rc && g < G; g++) {
        double e = err[per_group ? g : 0];
        bound[g] = scan_current(q, mode, g) >= 0 && !isnan(e) ? e : INFINITY;
    }
    return rc;
}

/* One scan over candidates 0..127: every group's candidate j fake-quantizes x at once, the harness's error
 * is read per group (per_group) or for the tensor, and each group keeps its first least error. The harness
 * may stop early on a candidate whose error exceeds the group's bound (its err is then a partial sum above
 * the bound, which a later exact error of at most the bound replaces); the bound starts at the current
 * pair's error (scan_seed): in the sweep's order the good candidates come late. */
static int aphq_scan(uq *q, const vitq_search *s, int mode, int per_group) {
    int64_t n = vitq_view_numel(s->x), G = q->G;
    float *y = malloc((size_t)n * sizeof(float)), *cs = malloc((size_t)G * sizeof(float));
    float *cz = malloc((size_t)G * sizeof(float));
    double *err = malloc((size_t)G * sizeof(double)), *best = malloc((size_t)G * sizeof(double));
    double *bound = malloc((size_t)G * sizeof(double));
    int *bj = malloc((size_t)G * sizeof(int)), rc = 0;
    if (!y || !cs || !cz || !err || !best || !bound || !bj)
        rc = q->host->fail(q->host, VITQ_ENOMEM, "search: out of memory");
    for (int64_t g = 0; !rc && g < G; g++) best[g] = bound[g] = INFINITY, bj[g] = -1;
    vitq_view xq = *s->x;
    xq.data = y;
    const int below = s->size >= offsetof(vitq_search, error_below) + sizeof s->error_below && s->error_below;
    if (!rc && below && (rc = scan_seed(q, s, mode, per_group, &xq, cs, cz, err, bound)))
        rc = q->host->fail(q->host, rc < 0 ? rc : VITQ_EPLUGIN, "search: the output error failed (code %d)", rc);
    for (int j = 0; !rc && j < APHQ_EQ_N; j++) {
        for (int64_t g = 0; g < G; g++) {
            int iu, il;
            scan_indices(q, mode, g, j, &iu, &il);
            aphq_candidate(q, g, iu, il, &cs[g], &cz[g]);
        }
        fq_groups(q, s->x->data, y, n, cs, cz);
        rc = below ? s->error_below(s, &xq, per_group, bound, err) : s->error(s, &xq, per_group, err);
        if (rc) {
            rc = q->host->fail(q->host, rc < 0 ? rc : VITQ_EPLUGIN, "search: the output error failed (code %d)", rc);
            break;
        }
        for (int64_t g = 0; g < G; g++) {
            double e = err[per_group ? g : 0];
            if (e < best[g]) best[g] = e, bj[g] = j;
            if (e < bound[g]) bound[g] = e;
        }
    }
    for (int64_t g = 0; !rc && g < G; g++) {
        if (bj[g] < 0) continue; /* every error NaN: keep the current pair */
        int iu, il;
        scan_indices(q, mode, g, bj[g], &iu, &il);
        aphq_select_pair(q, g, iu, il);
    }
    free(y), free(cs), free(cz), free(err), free(best), free(bound), free(bj);
    return rc;
}

/* Rounds (specs/aphq-vit.md §2.3 step 3, §2.5 steps 3-4, §2.6): linear taps search rounds 1.. (round 0 is
 * finalize's tensor-MSE choice); matmul operands round 0 paired, rounds 1.. lower then upper; the conv
 * weight round 0 paired, round 1 lower then upper, then nothing. */
static int uq_search(void *qv, const vitq_search *s) {
    uq *q = qv;
    if (!q->aphq || !q->finalized || (!q->lgrid && !q->U)) return 0; /* not aphq, or loaded: keep */
    if (q->training || q->ada != ADA_OFF)
        return q->host->fail(q->host, VITQ_EINVAL, "search after train: the scales are no longer searched");
    int rc = check_layout(q, s->x);
    if (rc) return rc;
    int per_group = q->aphq != APHQ_LINEAR_A;
    if (per_group && s->groups != q->G)
        return q->host->fail(q->host, VITQ_EINVAL, "search: the harness's error has %lld groups, this quantizer %lld",
                             (long long)s->groups, (long long)q->G);
    /* A round whose partner is exactly as last round's, from choices the last round left unchanged,
     * would make the same choices again: it is skipped (the reference computes it; the result is the same). */
    if (s->round >= 2 && !s->partner_changed && q->settled) return 0;
    int *before = malloc(sizeof(int) * 2 * (size_t)q->G);
    if (!before) return q->host->fail(q->host, VITQ_ENOMEM, "search: out of memory");
    memcpy(before, q->iu, sizeof(int) * (size_t)q->G);
    memcpy(before + q->G, q->il, sizeof(int) * (size_t)q->G);
    switch (q->aphq) {
    case APHQ_LINEAR_W:
    case APHQ_LINEAR_A: rc = s->round < 1 ? 0 : aphq_scan(q, s, SCAN_LINEAR, per_group); break;
    case APHQ_CONV:
        if (s->round > 1) break;
        /* fall through */
    case APHQ_MATMUL:
        if (s->round == 0) rc = aphq_scan(q, s, SCAN_PAIRED, 1);
        else if (!(rc = aphq_scan(q, s, SCAN_LOWER, 1))) rc = aphq_scan(q, s, SCAN_UPPER, 1);
        break;
    }
    q->settled = !memcmp(before, q->iu, sizeof(int) * (size_t)q->G) &&
                 !memcmp(before + q->G, q->il, sizeof(int) * (size_t)q->G);
    free(before);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Training: train, backward (straight-through dx, LSQ scale gradient, AdaRound's dα), regularize, freeze
 * ------------------------------------------------------------------------------------------- */
static int uq_train(void *qv, const vitq_view *w) {
    uq *q = qv;
    if (!q->finalized) return q->host->fail(q->host, VITQ_EINVAL, "train before finalize or load");
    memset(q->gscale, 0, (size_t)q->G * sizeof(float));
    if (q->p.rounding == ROUND_ADAROUND) {
        if (!w || vitq_view_numel(w) != q->nw)
            return q->host->fail(q->host, VITQ_EINVAL, "AdaRound: train needs the %lld float weights", (long long)q->nw);
        free(q->alpha), free(q->galpha), free(q->up);
        q->alpha = malloc((size_t)q->nw * sizeof(float));
        q->galpha = calloc((size_t)q->nw, sizeof(float));
        q->up = calloc((size_t)q->nw, 1);
        free(q->hraw), free(q->afwd);
        q->hraw = malloc((size_t)q->nw * sizeof(float));
        q->afwd = malloc((size_t)q->nw * sizeof(float));
        for (int64_t i = 0; q->afwd && i < q->nw; i++) q->afwd[i] = NAN; /* no forward yet: nothing cached */
        if (!q->alpha || !q->galpha || !q->up || !q->hraw || !q->afwd) {
            free(q->alpha), free(q->galpha), free(q->up), free(q->hraw), free(q->afwd);
            q->alpha = q->galpha = q->hraw = q->afwd = NULL, q->up = NULL, q->ada = ADA_OFF;
            return q->host->fail(q->host, VITQ_ENOMEM, "out of memory for AdaRound");
        }
        for (int64_t i = 0; i < q->nw; i++) { /* h(α) = frac(w/s): α = −ln((ζ−γ)/(frac − γ) − 1) */
            float s = q->scale[q->G == 1 ? 0 : (i / q->inner) % q->G], v = w->data[i] / s, frac = v - floorf(v);
            q->alpha[i] = -logf(ADA_SPAN / (frac - ADA_GAMMA) - 1.0f);
        }
        q->ada = ADA_SOFT;
    }
    q->training = 1;
    return 0;
}

/* Backward in blocks of BWD_BLOCK values: dx and dα are per element, the scale gradient is summed per block
 * and group in double and the blocks are added in order (the same numbers for any thread count). Without a
 * scale gradient nothing is summed, so the blocks are BWD_BLOCK_NOSUM values: a unit's weights (AdaRound's
 * dα, 10^4-10^5 values) then spread over the pool instead of one block on the calling thread. */
#define BWD_BLOCK 65536
#define BWD_BLOCK_NOSUM 8192

typedef struct {
    uq *q;
    const float *x, *dy;
    float *dx;
    double *part; /* [nb * G] or NULL (no scale gradient) */
    int64_t n, block;
    int ada_fast; /* soft AdaRound, scale not learned, h cached for the current α: ada_bwd_soft */
} bwd_job;

/* One element: adds to *dx and returns dQ/ds · 1 (the caller multiplies by dy); AdaRound also adds dα. */
static inline float bwd_one(const uq *q, int64_t i, float x, float dy, float s, float z, float *dx) {
    if (q->ada == ADA_OFF) /* nearest: z rounded at use; AdaRound below uses it as stored, as the reference */
        return uq_bwd_nearest_one(x, dy, dx, s, rintf(z), q->qlo, q->qhi);
    float raw = 0, h = q->ada == ADA_SOFT ? ada_h_at(q, i, &raw) : (float)q->up[i];
    float fl = floorf(x / s), u = fl + h + z, d = fl + h; /* dQ/ds = clamp(u) − z: ⌊w/s⌋ passes no gradient */
    if (u < q->qlo) return q->qlo - z;
    if (u > q->qhi) return q->qhi - z;
    if (dx) *dx += dy;
    if (q->ada == ADA_SOFT && q->training && raw >= 0 && raw <= 1) {
        float sg = (raw - ADA_GAMMA) / ADA_SPAN; /* the sigmoid ada_h computed: no second expf */
        q->galpha[i] += dy * s * ADA_SPAN * sg * (1.0f - sg);
    }
    return d;
}

static void bwd_blocks(void *ctx, int64_t b0, int64_t b1) {
    const bwd_job *j = ctx;
    const uq *q = j->q;
    int64_t run = run_len(q);
    for (int64_t b = b0; b < b1; b++) {
        int64_t begin = b * j->block, end = begin + j->block < j->n ? begin + j->block : j->n;
        int64_t g = (begin / run) % q->G, k = begin % run;
        double *ps = j->part ? j->part + b * q->G : NULL;
        for (int64_t i = begin; i < end;) {
            int64_t len = run - k < end - i ? run - k : end - i;
            float s = q->scale[g], z = q->zp[g];
            double acc = 0;
            if (j->ada_fast)
                ada_bwd_soft(j->x + i, j->dy + i, j->dx ? j->dx + i : NULL, q->hraw + i, q->galpha + i, len, s, z,
                             q->qlo, q->qhi);
            else if (q->ada == ADA_OFF && fast_ok(rintf(z))) /* any sign of s: bwd_one's arithmetic */
                acc = uq_bwd_nearest(j->x + i, j->dy + i, j->dx ? j->dx + i : NULL, len, s, z, q->qlo, q->qhi,
                                     has_avx512());
            else
                for (int64_t t = i; t < i + len; t++)
                    acc += (double)j->dy[t] * bwd_one(q, t, j->x[t], j->dy[t], s, z, j->dx ? j->dx + t : NULL);
            if (ps) ps[g] += acc;
            i += len;
            k = 0;
            g = g + 1 == q->G ? 0 : g + 1;
        }
    }
}

static int uq_backward(void *qv, const vitq_view *x, const vitq_view *dy, vitq_view *dx) {
    uq *q = qv;
    int64_t n = vitq_view_numel(x);
    if (q->p.granularity == GRAN_TOKEN && !q->aphq) {
        /* dynamic ranges: plain straight-through inside the row's range (which holds every value) */
        if (dx)
            for (int64_t i = 0; i < n; i++) dx->data[i] += dy->data[i];
        return 0;
    }
    int rc = check_layout(q, x);
    if (rc) return rc;
    if (q->ada != ADA_OFF && n != q->nw)
        return q->host->fail(q->host, VITQ_EINVAL, "AdaRound: %lld weights, expected %lld", (long long)n, (long long)q->nw);
    int grads = q->training && q->p.learnable;
    int64_t block = grads ? BWD_BLOCK : BWD_BLOCK_NOSUM, nb = (n + block - 1) / block;
    if (grads && nb * q->G > (1 << 22)) block = n > 0 ? n : 1, nb = 1;
    bwd_job job = {q, x->data, dy->data, dx ? dx->data : NULL, NULL, n, block, 0};
    job.ada_fast = q->ada == ADA_SOFT && q->training && !grads && q->afwd && ada_fresh(q->alpha, q->afwd, n);
    if (grads && !(job.part = calloc((size_t)(nb * q->G), sizeof(double))))
        return q->host->fail(q->host, VITQ_ENOMEM, "out of memory");
    if (nb > 1)
        q->host->parallel_for(nb, bwd_blocks, &job);
    else
        bwd_blocks(&job, 0, nb);
    if (grads) {
        int gs_on = q->p.grad_scale == GS_TRUE || (q->p.grad_scale == GS_AUTO && q->p.init != INIT_APHQ);
        double gs = gs_on ? 1.0 / sqrt((double)(n * q->parts / q->G) * (double)q->qhi) : 1.0; /* Qp = qhi */
        for (int64_t g = 0; g < q->G; g++) {
            double acc = 0;
            for (int64_t b = 0; b < nb; b++) acc += job.part[b * q->G + g];
            q->gscale[g] += (float)(acc * gs);
        }
        free(job.part);
    }
    return 0;
}

/* AdaRound's rounding term (§2.7, §3.3): loss += λ·Σ(1 − |2h(α) − 1|^β), dα += its gradient (0 where the
 * clamp of h is active, as torch's); ada_reg over fixed blocks of weights (the same sums for any thread
 * count), from h as cached by the last forward (recomputed first where α has changed since). */
#define REG_BLOCK 4096
typedef struct {
    uq *q;
    float beta, lam;
    double *part; /* per block */
} reg_job;

static void reg_blocks(void *ctx, int64_t b0, int64_t b1) {
    const reg_job *j = ctx;
    uq *q = j->q;
    for (int64_t b = b0; b < b1; b++) {
        const int64_t i0 = b * REG_BLOCK, i1 = i0 + REG_BLOCK < q->nw ? i0 + REG_BLOCK : q->nw;
        j->part[b] = ada_reg(q->hraw + i0, q->galpha + i0, i1 - i0, j->beta, j->lam);
    }
}

static int uq_regularize(void *qv, const vitq_reg *r, double *loss) {
    uq *q = qv;
    if (q->ada != ADA_SOFT || !q->training || !(r->weight != 0)) return 0;
    const int64_t nb = (q->nw + REG_BLOCK - 1) / REG_BLOCK;
    if (!ada_fresh(q->alpha, q->afwd, q->nw)) /* α changed since the last forward (or none yet): h again */
        for (int64_t i = 0; i < q->nw; i++)
            if (!(q->afwd[i] == q->alpha[i])) ada_h(q->alpha[i], &q->hraw[i]), q->afwd[i] = q->alpha[i];
    reg_job job = {q, (float)r->beta, (float)r->weight, calloc((size_t)(nb > 0 ? nb : 1), sizeof(double))};
    if (!job.part) return q->host->fail(q->host, VITQ_ENOMEM, "regularize: out of memory");
    if (nb > 1)
        q->host->parallel_for(nb, reg_blocks, &job);
    else
        reg_blocks(&job, 0, nb);
    double acc = 0;
    for (int64_t b = 0; b < nb; b++) acc += job.part[b];
    free(job.part);
    *loss += r->weight * acc;
    return 0;
}

static int uq_freeze(void *qv) {
    uq *q = qv;
    if (q->ada == ADA_SOFT) {
        for (int64_t i = 0; i < q->nw; i++) q->up[i] = q->alpha[i] >= 0;
        free(q->alpha);
        free(q->galpha);
        free(q->hraw);
        free(q->afwd);
        q->alpha = q->galpha = q->hraw = q->afwd = NULL;
        q->ada = ADA_HARD;
    }
    q->training = 0;
    return 0;
}

/* An activation tap's instance for one part of a data-parallel batch (vitq_quantizer_ops.clone): the layout,
 * scale and zero point, and a zeroed scale gradient; nothing of calibration or AdaRound (weights train on the
 * original only). */
static void *uq_clone(const void *qv, int parts) {
    const uq *q = qv;
    if (!q->training || q->ada != ADA_OFF || q->nw || parts < 1) {
        q->host->fail(q->host, VITQ_EINVAL, "clone: only an activation tap in training is cloned");
        return NULL;
    }
    uq *c = calloc(1, sizeof *c);
    if (!c || ((c->scale = malloc((size_t)q->G * sizeof(float))), (c->zp = malloc((size_t)q->G * sizeof(float))),
               (c->gscale = calloc((size_t)q->G, sizeof(float))), !c->scale || !c->zp || !c->gscale)) {
        uq_destroy(c);
        q->host->fail(q->host, VITQ_ENOMEM, "out of memory");
        return NULL;
    }
    c->p = q->p, c->tap = q->tap, c->host = q->host, c->qlo = q->qlo, c->qhi = q->qhi;
    c->G = q->G, c->inner = q->inner, c->token_len = q->token_len, c->aphq = q->aphq;
    c->training = 1, c->finalized = q->finalized, c->parts = parts;
    memcpy(c->scale, q->scale, (size_t)q->G * sizeof(float));
    memcpy(c->zp, q->zp, (size_t)q->G * sizeof(float));
    return c;
}

/* scale [G] (trains with learnable = true, between train and freeze), zero_point [G] (never trains), alpha
 * [numel] (AdaRound, between train and freeze). */
static int uq_tensors(void *qv, vitq_qtensor *out, int max) {
    uq *q = qv;
    int n = 0;
    if (q->p.granularity == GRAN_TOKEN && !q->aphq) return 0; /* dynamic: nothing stored */
    float *gs = q->training && q->p.learnable ? q->gscale : NULL;
    if (n < max) out[n++] = (vitq_qtensor){.name = "scale", .value = q->scale, .grad = gs, .n = q->G};
    if (n < max) out[n++] = (vitq_qtensor){.name = "zero_point", .value = q->zp, .n = q->G};
    if (n < max && q->ada == ADA_SOFT)
        out[n++] = (vitq_qtensor){.name = "alpha", .value = q->alpha, .grad = q->galpha, .n = q->nw};
    return n;
}

/* ---------------------------------------------------------------------------------------------
 * State: state_version [1] = 2, scale [G], zero_point [G], round_up [⌈nw/16⌉] after AdaRound
 * ------------------------------------------------------------------------------------------- */
#define UNIFORM_STATE_VERSION 2

static int save_round_up(const uq *q, vitq_state_io *io) {
    int64_t m = (q->nw + 15) / 16;
    float *packed = calloc((size_t)m, sizeof(float));
    if (!packed) return q->host->fail(q->host, VITQ_ENOMEM, "out of memory");
    for (int64_t j = 0; j < m; j++) {
        unsigned bits = 0;
        for (int k = 0; k < 16 && 16 * j + k < q->nw; k++) {
            int64_t i = 16 * j + k;
            int up = q->ada == ADA_SOFT ? q->alpha[i] >= 0 : q->up[i];
            bits |= (unsigned)up << k;
        }
        packed[j] = (float)bits; /* < 2^16: exact */
    }
    int rc = io->put(io, "round_up", packed, m);
    free(packed);
    return rc;
}

static int uq_save(const void *qv, vitq_state_io *io) {
    const uq *q = qv;
    float ver = UNIFORM_STATE_VERSION;
    int tok = q->p.granularity == GRAN_TOKEN && !q->aphq;
    int rc = io->put(io, "state_version", &ver, 1);
    if (!rc && !tok) rc = io->put(io, "scale", q->scale, q->G);
    if (!rc && !tok) rc = io->put(io, "zero_point", q->zp, q->G);
    if (!rc && q->ada != ADA_OFF) rc = save_round_up(q, io);
    return rc;
}

static int load_round_up(uq *q, vitq_state_io *io) {
    int64_t m = (q->nw + 15) / 16, have = io->size(io, "round_up");
    if (have != m)
        return q->host->fail(q->host, VITQ_EFORMAT, "state holds %lld AdaRound words, this tap needs %lld",
                             (long long)have, (long long)m);
    float *packed = malloc((size_t)m * sizeof(float));
    unsigned char *up = malloc((size_t)q->nw);
    int rc = packed && up ? io->get(io, "round_up", packed, m) : VITQ_ENOMEM;
    for (int64_t i = 0; !rc && i < q->nw; i++) {
        float w = packed[i / 16];
        if (!(w >= 0 && w < 65536 && w == floorf(w))) {
            rc = VITQ_EFORMAT;
            break;
        }
        up[i] = (unsigned)w >> (i % 16) & 1u;
    }
    free(packed);
    if (rc) {
        free(up);
        return q->host->fail(q->host, rc, "cannot read round_up (AdaRound decisions)");
    }
    free(q->alpha), free(q->galpha), free(q->up);
    q->alpha = q->galpha = NULL;
    q->up = up;
    q->ada = ADA_HARD;
    return 0;
}

static int uq_load(void *qv, vitq_state_io *io) {
    uq *q = qv;
    float ver = 0;
    int rc = io->get(io, "state_version", &ver, 1);
    if (rc) return q->host->fail(q->host, rc, "state has no state_version");
    if (ver != 1 && ver != UNIFORM_STATE_VERSION)
        return q->host->fail(q->host, VITQ_EFORMAT, "state version %g, this plugin reads 1 and %d", (double)ver,
                             UNIFORM_STATE_VERSION);
    if (!(q->p.granularity == GRAN_TOKEN && !q->aphq)) {
        if (io->size(io, "scale") != q->G || io->size(io, "zero_point") != q->G)
            return q->host->fail(q->host, VITQ_EFORMAT, "state holds %lld scales, this tap needs %lld",
                                 (long long)io->size(io, "scale"), (long long)q->G);
        if ((rc = io->get(io, "scale", q->scale, q->G)) || (rc = io->get(io, "zero_point", q->zp, q->G)))
            return q->host->fail(q->host, rc, "cannot read scale / zero_point");
    }
    if (io->size(io, "round_up") >= 0) {
        if (!q->nw) return q->host->fail(q->host, VITQ_EFORMAT, "state holds AdaRound decisions for an activation");
        if ((rc = load_round_up(q, io))) return rc;
    }
    q->training = 0;
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
    .train = uq_train,
    .regularize = uq_regularize,
    .freeze = uq_freeze,
    .search = uq_search,
    .save = uq_save,
    .load = uq_load,
    .destroy = uq_destroy,
    .clone = uq_clone,
};

static const vitq_plugin uniform_plugin = {
    .abi = VITQ_PLUGIN_ABI,
    .size = sizeof(vitq_plugin),
    .name = "uniform",
    .version = "1.0",
    .summary = "uniform fake-quant: symmetric/asymmetric, per tensor/channel/token/head, minmax/percentile/mse/aphq "
               "(APHQ-ViT grids + output-error search), LSQ scale, AdaRound",
    .kind = VITQ_PLUGIN_QUANTIZER,
    .params = uniform_param_table,
    .n_params = (int)(sizeof uniform_param_table / sizeof uniform_param_table[0]),
    .params_size = sizeof(uniform_params),
    .quantizer = &uniform_ops,
};

VITQ_PLUGIN_EXPORT const vitq_plugin *vitq_plugin_entry(void) { return &uniform_plugin; }
