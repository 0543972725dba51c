/* dynamic_focus.c — AIQViT's Dynamic Focusing Quantizer (DFQ) for post-Softmax probabilities, the left
 * operand of attn·V (specs/aiqvit.md §3, specs/ALGORITHMS.md §5). A reconstruction from the method description:
 * no reference code exists; every guess of the spec is a parameter.
 *
 * One interval [b1, b2] ⊂ [0, 1] per layer (granularity = layer, the literal reading) or per head
 * (granularity = head). n = 2^b − 1, s = (b2 − b1)/n.
 *   below = clamp (§3.2, default):  k = ⌊clamp((p − b1)/s, 0, n)⌉,  p̂ = b1 + s·k
 *                                   (clamp THEN round; below b1 → b1, above b2 → b2)
 *   below = zero  (§3.2 variant):   code 0 is the value 0, codes 1..n are b1 + s′·(k − 1), s′ = (b2 − b1)/(n − 1);
 *                                   the nearest representable value: p < b1/2 → 0, b1/2 ≤ p < b1 → b1,
 *                                   else b1 + s′·⌊clamp((p − b1)/s′, 0, n − 1)⌉
 * ⌊·⌉ rounds half to even (rintf); arithmetic in float32, in the order written; the top level is b2
 * exactly (b1 + s·n can round an ulp above it in float).
 *
 * Initialisation (§3.4):
 *   init = grid (default): under calib_mode = search, at round 0 (grid_rounds = every: at every round), the
 *     (b1, b2) pair with the least attn·V output error the harness returns (vitq_search.error: the error of
 *     the matmul with V as currently quantized) among b2 ∈ {quantiles 1 − (1 − b2_quantile_lo)/10^k,
 *     k = 0 .. b2_quantiles − 1} ∪ {max} of the layer's (or head's) calibration values, and
 *     b1 ∈ {0} ∪ {b2·2^−j, j = b1_shift_lo .. b1_shift_hi}: 5 × 9 = 45 pairs by default. Per head the
 *     error is asked per group (per_group = 1, groups = heads): the heads are independent (out_h = P_h·V_h),
 *     so one call per candidate serves every head, each head keeping its own argmin; per layer, one total
 *     (per_group = 0). First minimum wins, in the order b2 ascending (max last), b1 = 0 then b2·2^−j for
 *     j ascending. Quantiles are exact (numpy's 'linear' interpolation), computed in `search` from the
 *     calibration tensor the harness passes (vitq_search.x): nothing is kept at observe but per-group
 *     maxima, so there is no sample bound and no reservoir.
 *     Without calib_mode = search there is no output error: the interval stays at the minmax one and the
 *     first forward logs a warning. With grid_rounds = every, a round whose V is unchanged since the last is
 *     skipped (vitq_search.partner_changed = 0): it would pick the same.
 *   init = minmax: b1 = 0, b2 = the observed maximum, at finalize.
 * Every candidate and every finalized, learned or projected interval satisfies 0 ≤ b1 < b2 ≤ 1 and
 * b2 − b1 ≥ 1e-4 (see fix_interval).
 *
 * Learning (§3.3, learn = true): tensors "b1" and "b2" ([groups]) carry gradients between train and freeze.
 * backward gives the straight-through gradients of the spec's table (r = ⌊u⌉, u = (p − b1)/s):
 *     inside 0 ≤ u ≤ n:  ∂p̂/∂p = 1, ∂p̂/∂b1 = −(r − u)/n, ∂p̂/∂b2 = (r − u)/n
 *     u < 0:             ∂p̂/∂b1 = 1;   u > n: ∂p̂/∂b2 = 1   (∂p̂/∂p = 0 outside)
 * zero mode: p < b1/2 → all 0; b1/2 ≤ p < b1 → ∂p̂/∂b1 = 1; from b1 on the table with s′ and n − 1.
 * These are the derivatives of the STE surrogate b1 + s·(clamp(u) + (r − clamp(u))|frozen), as PyTorch's
 * x + (round(x) − x).detach() gives them, not of the piecewise-constant forward.
 * lsq_grad_scale multiplies the b1, b2 gradients by 1/√(numel·n), numel = the values of one group in the
 * backward call. project (after each optimiser step) and freeze re-impose the constraints.
 * The learning rate (4e-5 in the spec) is the pass's: the optimiser belongs to the reconstruction pass.
 *
 * State: state_version [1] = 1, b1 [groups], b2 [groups].
 * Does NOT: per-row (per-query) intervals, integer inference (§3.5), the curriculum (lowrank_nas's).
 */
#include "vitq_plugin.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DFQ_GAP 1e-4          /* least width b2 − b1 (§3.3) */
#define DFQ_STATE_VERSION 1
#define DFQ_MAX_B2 7          /* b2 candidates: up to 6 quantiles and the max */

enum { GRAN_LAYER = 0, GRAN_HEAD = 1 };
enum { BELOW_CLAMP = 0, BELOW_ZERO = 1 };
enum { INIT_GRID = 0, INIT_MINMAX = 1 };
enum { ROUNDS_FIRST = 0, ROUNDS_EVERY = 1 };

typedef struct {
    int bits;              /* 2..16 */
    int granularity;       /* GRAN_* */
    int below;             /* BELOW_* */
    int init;              /* INIT_* */
    double b2_quantile_lo; /* grid: the lowest b2 quantile */
    int b2_quantiles;      /* grid: how many quantiles (each one nine more), plus the max */
    int b1_shift_lo, b1_shift_hi; /* grid: b1 = b2·2^-j for j in [lo, hi], and 0 */
    int grid_rounds;       /* ROUNDS_*: search at round 0 only, or at every round */
    int learn;             /* b1, b2 get gradients in reconstruction */
    int lsq_grad_scale;    /* 1/sqrt(numel·n) on the b1, b2 gradients */
} dfq_params;

static const vitq_param dfq_param_table[] = {
    {.name = "bits", .type = VITQ_P_INT, .offset = offsetof(dfq_params, bits), .def = "4", .min = 2, .max = 16,
     .help = "bit-width b: 2^b codes on [b1, b2] (the activation bit-width)"},
    {.name = "granularity", .type = VITQ_P_ENUM, .offset = offsetof(dfq_params, granularity), .def = "layer",
     .choices = "layer|head", .help = "one interval per Softmax layer (the paper), or per head"},
    {.name = "below", .type = VITQ_P_ENUM, .offset = offsetof(dfq_params, below), .def = "clamp",
     .choices = "clamp|zero",
     .help = "clamp: p < b1 -> b1 (the literal reading); zero: code 0 is 0, the other 2^b-1 codes span [b1, b2]"},
    {.name = "init", .type = VITQ_P_ENUM, .offset = offsetof(dfq_params, init), .def = "grid", .choices = "grid|minmax",
     .help = "grid: 45 (b1, b2) pairs by the attn.V output error (needs calib_mode = search); minmax: [0, max]"},
    {.name = "b2_quantile_lo", .type = VITQ_P_FLOAT, .offset = offsetof(dfq_params, b2_quantile_lo), .def = "0.99",
     .min = 0.5, .max = 0.999999, .help = "grid: lowest b2 quantile q; the others 1-(1-q)/10^k"},
    {.name = "b2_quantiles", .type = VITQ_P_INT, .offset = offsetof(dfq_params, b2_quantiles), .def = "4", .min = 0,
     .max = DFQ_MAX_B2 - 1, .help = "grid: number of b2 quantiles (0.99 .. 0.99999 by default); the max is always a candidate"},
    {.name = "b1_shift_lo", .type = VITQ_P_INT, .offset = offsetof(dfq_params, b1_shift_lo), .def = "3", .min = 1,
     .max = 30, .help = "grid: b1 in {0} and b2*2^-j for j from this"},
    {.name = "b1_shift_hi", .type = VITQ_P_INT, .offset = offsetof(dfq_params, b1_shift_hi), .def = "10", .min = 1,
     .max = 30, .help = "grid: ... to this"},
    {.name = "grid_rounds", .type = VITQ_P_ENUM, .offset = offsetof(dfq_params, grid_rounds), .def = "first",
     .choices = "first|every", .help = "grid: search at round 0 only, or again at every search round (V re-searched between)"},
    {.name = "learn", .type = VITQ_P_BOOL, .offset = offsetof(dfq_params, learn), .def = "true",
     .help = "b1 and b2 train in reconstruction (STE gradients); the pass sets the learning rate"},
    {.name = "lsq_grad_scale", .type = VITQ_P_BOOL, .offset = offsetof(dfq_params, lsq_grad_scale), .def = "false",
     .help = "multiply the b1, b2 gradients by 1/sqrt(numel * (2^b - 1)) as LSQ does"},
};

typedef struct {
    dfq_params p;
    const vitq_host *host;
    const char *tap;
    int64_t G;          /* groups: 1 (layer) or heads */
    float n;            /* 2^b − 1 */
    float *b1, *b2;     /* [G] the intervals */
    float *g1, *g2;     /* [G] their gradients, between train and freeze with learn = true */
    float *mx;          /* [G] observed maxima */
    int64_t seen;
    int finalized, searched, training, warned;
} dfq;

/* ---------------------------------------------------------------------------------------------
 * The interval's constraints and the arithmetic
 * ------------------------------------------------------------------------------------------- */

/* Makes [b1, b2] feasible: each clamped to [0, 1]; when narrower than DFQ_GAP (or inverted), widened to
 * DFQ_GAP about its midpoint (the Euclidean projection onto b2 − b1 ≥ gap) and shifted back inside [0, 1];
 * finally nudged by float ulps so that the float values keep the gap. -1 when either is not finite. */
static int fix_interval(float *b1, float *b2) {
    double a = *b1, b = *b2;
    if (!isfinite(a) || !isfinite(b)) return -1;
    a = fmin(fmax(a, 0.0), 1.0);
    b = fmin(fmax(b, 0.0), 1.0);
    if (b - a < DFQ_GAP) {
        double m = 0.5 * (a + b);
        a = m - 0.5 * DFQ_GAP;
        b = m + 0.5 * DFQ_GAP;
        if (a < 0) a = 0, b = DFQ_GAP;
        if (b > 1) b = 1, a = 1 - DFQ_GAP;
    }
    float fa = (float)a, fb = (float)b;
    while ((double)fb - (double)fa < DFQ_GAP) {
        if (fb < 1.0f)
            fb = nextafterf(fb, 2.0f);
        else
            fa = nextafterf(fa, -1.0f);
    }
    *b1 = fa;
    *b2 = fb;
    return 0;
}

/* The levels are b1 + s·k, the top one b2 exactly (b1 + s·n may round one ulp above it). NaN stays NaN. */
static inline float fq_clamp(float p, float b1, float b2, float s, float n) {
    float u = (p - b1) / s;
    u = u < 0 ? 0 : (u > n ? n : u);
    float y = b1 + s * rintf(u);
    return y > b2 ? b2 : y;
}

static inline float fq_zero(float p, float b1, float b2, float s1, float n1) {
    if (p < 0.5f * b1) return 0;
    if (p < b1) return b1;
    float u = (p - b1) / s1;
    u = u > n1 ? n1 : u;
    float y = b1 + s1 * rintf(u);
    return y > b2 ? b2 : y;
}

/* Values per group run in x: the whole tensor (one group), or the (N, N) block of one (image, head). */
static int group_run(const dfq *q, const vitq_view *x, int64_t *run) {
    int64_t numel = vitq_view_numel(x);
    if (q->G == 1) {
        *run = numel > 0 ? numel : 1;
        return 0;
    }
    if (x->ndim < 3 || x->shape[1] != q->G || x->shape[0] < 1)
        return q->host->fail(q->host, VITQ_EINVAL, "granularity = head: expected (B, %lld, N, N), got %d dimensions with %lld heads",
                             (long long)q->G, x->ndim, (long long)(x->ndim > 1 ? x->shape[1] : 0));
    *run = numel / (x->shape[0] * q->G);
    return 0;
}

typedef struct {
    const dfq *q;
    const float *b1, *b2; /* [G] the intervals to apply */
    const float *x;
    float *y;
    int64_t run;
} fwd_job;

static void fwd_range(void *ctx, int64_t begin, int64_t end) {
    const fwd_job *j = ctx;
    const dfq *q = j->q;
    const float n = q->n;
    for (int64_t i = begin; i < end;) {
        int64_t g = (i / j->run) % q->G, stop = (i / j->run + 1) * j->run;
        if (stop > end) stop = end;
        const float b1 = j->b1[g], b2 = j->b2[g], w = b2 - b1;
        if (q->p.below == BELOW_CLAMP) {
            const float s = w / n;
            for (; i < stop; i++) j->y[i] = fq_clamp(j->x[i], b1, b2, s, n);
        } else {
            const float s1 = w / (n - 1);
            for (; i < stop; i++) j->y[i] = fq_zero(j->x[i], b1, b2, s1, n - 1);
        }
    }
}

/* y = the fake-quant of x under the intervals (b1, b2) [G] (y may equal x). */
static int quantize(const dfq *q, const float *b1, const float *b2, const vitq_view *x, float *y) {
    fwd_job job = {q, b1, b2, x->data, y, 0};
    int rc = group_run(q, x, &job.run);
    if (rc) return rc;
    int64_t numel = vitq_view_numel(x);
    if (numel >= 16384)
        q->host->parallel_for(numel, fwd_range, &job);
    else
        fwd_range(&job, 0, numel);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Lifecycle: create, observe (maxima), finalize (minmax)
 * ------------------------------------------------------------------------------------------- */
static void dfq_destroy(void *qv) {
    dfq *q = qv;
    if (!q) return;
    free(q->b1);
    free(q->b2);
    free(q->g1);
    free(q->g2);
    free(q->mx);
    free(q);
}

static void *dfq_create(const void *params, const vitq_tap *tap, const vitq_host *host) {
    const dfq_params *p = params;
    if (tap->kind != VITQ_TAPK_PROBS) {
        host->fail(host, VITQ_EINVAL, "dynamic_focus quantizes post-Softmax probabilities (a '*.attn.probs' tap), not '%s'",
                   tap->name);
        return NULL;
    }
    if (p->granularity == GRAN_HEAD && (tap->ndim < 3 || tap->dims[1] != VITQ_DIM_HEAD || tap->shape[1] < 1)) {
        host->fail(host, VITQ_EINVAL, "granularity = head needs a tap laid out (B, H, N, N)");
        return NULL;
    }
    if (p->b1_shift_lo > p->b1_shift_hi) {
        host->fail(host, VITQ_EINVAL, "b1_shift_lo = %d is above b1_shift_hi = %d", p->b1_shift_lo, p->b1_shift_hi);
        return NULL;
    }
    dfq *q = calloc(1, sizeof *q);
    if (!q) {
        host->fail(host, VITQ_ENOMEM, "out of memory");
        return NULL;
    }
    q->p = *p;
    q->host = host;
    q->tap = tap->name;
    q->G = p->granularity == GRAN_HEAD ? tap->shape[1] : 1;
    q->n = ldexpf(1.0f, p->bits) - 1;
    q->b1 = calloc((size_t)q->G, sizeof(float));
    q->b2 = calloc((size_t)q->G, sizeof(float));
    q->mx = calloc((size_t)q->G, sizeof(float));
    if (!q->b1 || !q->b2 || !q->mx) {
        dfq_destroy(q);
        host->fail(host, VITQ_ENOMEM, "out of memory");
        return NULL;
    }
    for (int64_t g = 0; g < q->G; g++) q->b2[g] = 1, q->mx[g] = -INFINITY;
    return q;
}

static int dfq_observe(void *qv, const vitq_view *x) {
    dfq *q = qv;
    int64_t run, numel = vitq_view_numel(x);
    if (q->finalized) return q->host->fail(q->host, VITQ_EINVAL, "observe after finalize");
    int rc = group_run(q, x, &run);
    if (rc) return rc;
    for (int64_t i = 0; i < numel; i += run) {
        int64_t g = (i / run) % q->G;
        float m = q->mx[g];
        for (int64_t k = i; k < i + run && k < numel; k++) m = x->data[k] > m ? x->data[k] : m;
        q->mx[g] = m;
    }
    q->seen += numel;
    return 0;
}

static int dfq_finalize(void *qv) {
    dfq *q = qv;
    if (q->seen == 0) return q->host->fail(q->host, VITQ_EINVAL, "finalize: no calibration data was observed");
    for (int64_t g = 0; g < q->G; g++) {
        q->b1[g] = 0;
        q->b2[g] = isfinite(q->mx[g]) ? q->mx[g] : 1;
        if (fix_interval(&q->b1[g], &q->b2[g]))
            return q->host->fail(q->host, VITQ_EINVAL, "finalize: the observed maximum is not finite");
    }
    q->finalized = 1;
    return 0;
}

static int dfq_forward(void *qv, const vitq_view *x, vitq_view *y) {
    dfq *q = qv;
    if (!q->finalized) return q->host->fail(q->host, VITQ_EINVAL, "forward before finalize (no calibration)");
    if (q->p.init == INIT_GRID && !q->searched && !q->warned) {
        q->warned = 1;
        q->host->log(q->host, VITQ_LOG_WARN,
                     "init = grid needs calib_mode = search (the attn.V output error); using the minmax interval [0, max]");
    }
    return quantize(q, q->b1, q->b2, x, y->data);
}

/* ---------------------------------------------------------------------------------------------
 * Grid initialisation through the harness's output error (§3.4)
 * ------------------------------------------------------------------------------------------- */

/* a[k] becomes the k-th smallest of a[0..n), smaller values before it, larger after (three-way
 * partition, median-of-three pivot: many equal values cost nothing). No NaN in a. */
static void select_kth(float *a, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        float x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi], t;
        float piv = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        int64_t lt = lo, i = lo, gt = hi;
        while (i <= gt) {
            if (a[i] < piv)
                t = a[lt], a[lt++] = a[i], a[i++] = t;
            else if (a[i] > piv)
                t = a[gt], a[gt--] = a[i], a[i] = t;
            else
                i++;
        }
        if (k < lt)
            hi = lt - 1;
        else if (k > gt)
            lo = gt + 1;
        else
            return;
    }
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The b2 candidates of group g: the quantiles qs[0..m) (ascending) of its values in x (numpy 'linear'),
 * then its maximum, into out[0..m]. buf holds numel/G floats. Exact: the rank of the lowest quantile is
 * selected, the values above it sorted. -1 on a NaN. */
static int b2_candidates(const dfq *q, const vitq_view *x, int64_t run, int64_t g, const double *qs, int m, float *buf,
                         float *out) {
    int64_t numel = vitq_view_numel(x), L = 0;
    for (int64_t i = g * run; i < numel; i += q->G * run)
        for (int64_t k = i; k < i + run && k < numel; k++) {
            if (isnan(x->data[k])) return -1;
            buf[L++] = x->data[k];
        }
    if (L == 0) return -1;
    int64_t k0 = m ? (int64_t)floor(qs[0] * (double)(L - 1)) : L - 1;
    select_kth(buf, L, k0);
    qsort(buf + k0, (size_t)(L - k0), sizeof(float), cmp_float);
    for (int i = 0; i < m; i++) {
        double pos = qs[i] * (double)(L - 1);
        int64_t j = (int64_t)floor(pos);
        double v = j >= L - 1 ? buf[L - 1] : buf[j] + ((double)buf[j + 1] - (double)buf[j]) * (pos - (double)j);
        out[i] = (float)v;
    }
    out[m] = buf[L - 1];
    return 0;
}

/* Candidate c of group g: b2 = cand2[g][c / nb1], b1 = 0 (c % nb1 == 0) or b2·2^-(lo + c % nb1 − 1), made feasible. */
static void candidate(const dfq *q, const float *cand2, int nb1, int c, float *b1, float *b2) {
    int j = c % nb1;
    *b2 = cand2[c / nb1];
    *b1 = j == 0 ? 0.0f : ldexpf(*b2, -(q->p.b1_shift_lo + j - 1));
    fix_interval(b1, b2);
}

typedef struct {
    float *cand2, *cb1, *cb2, *buf, *y;
    double *err, *best;
    int *pick;
} grid_mem;

static void grid_free(grid_mem *m) {
    free(m->cand2);
    free(m->cb1);
    free(m->cb2);
    free(m->buf);
    free(m->y);
    free(m->err);
    free(m->best);
    free(m->pick);
}

/* Runs the C candidates through the harness's error; pick[g] = the first argmin of group g (-1: none finite). */
static int grid_eval(dfq *q, const vitq_search *s, grid_mem *m, int nb2, int nb1) {
    const int per_group = q->G > 1, C = nb2 * nb1;
    vitq_view vy = *s->x;
    vy.data = m->y;
    for (int c = 0; c < C; c++) {
        for (int64_t g = 0; g < q->G; g++) candidate(q, m->cand2 + g * nb2, nb1, c, &m->cb1[g], &m->cb2[g]);
        int rc = quantize(q, m->cb1, m->cb2, s->x, m->y);
        if (rc) return rc;
        if ((rc = s->error(s, &vy, per_group, m->err)))
            return q->host->fail(q->host, rc < 0 ? rc : VITQ_EPLUGIN, "grid search: the harness's output error failed (code %d)", rc);
        for (int64_t g = 0; g < q->G; g++) {
            double e = m->err[per_group ? g : 0];
            if (e < m->best[g]) m->best[g] = e, m->pick[g] = c;
        }
        if (q->host->progress(q->host, c + 1, C, "dynamic_focus grid")) return VITQ_ECANCELLED;
    }
    return 0;
}

/* The op's other input (V, as quantized) is exactly what it was at this tap's previous search: a search
 * whose candidates and result depend only on it, on x and on the parameters would choose the same again
 * (partner_changed is read only from a harness whose vitq_search carries it). */
static int partner_same(const vitq_search *s) {
    return s->size >= offsetof(vitq_search, partner_changed) + sizeof(int) && !s->partner_changed;
}

static int dfq_search(void *qv, const vitq_search *s) {
    dfq *q = qv;
    if (q->p.init != INIT_GRID || (q->p.grid_rounds == ROUNDS_FIRST && s->round > 0)) return 0;
    if (q->searched && partner_same(s)) return 0;
    if (q->G > 1 && (s->group_dim != VITQ_DIM_HEAD || s->groups != q->G))
        return q->host->fail(q->host, VITQ_EINVAL, "granularity = head: the harness's error is per %lld groups, expected %lld heads",
                             (long long)s->groups, (long long)q->G);
    int64_t run, numel = vitq_view_numel(s->x);
    int rc = group_run(q, s->x, &run);
    if (rc) return rc;
    const int nq = q->p.b2_quantiles, nb2 = nq + 1, nb1 = 2 + q->p.b1_shift_hi - q->p.b1_shift_lo;
    double qs[DFQ_MAX_B2];
    for (int k = 0; k < nq; k++) qs[k] = 1.0 - (1.0 - q->p.b2_quantile_lo) / pow(10.0, k);
    const int64_t G = q->G, ng = s->groups > G ? s->groups : G;
    grid_mem m = {.cand2 = malloc(sizeof(float) * (size_t)(G * nb2)), .cb1 = malloc(sizeof(float) * (size_t)G),
                  .cb2 = malloc(sizeof(float) * (size_t)G), .buf = malloc(sizeof(float) * (size_t)(numel / G + 1)),
                  .y = malloc(sizeof(float) * (size_t)(numel > 0 ? numel : 1)), .err = malloc(sizeof(double) * (size_t)ng),
                  .best = malloc(sizeof(double) * (size_t)G), .pick = malloc(sizeof(int) * (size_t)G)};
    if (!m.cand2 || !m.cb1 || !m.cb2 || !m.buf || !m.y || !m.err || !m.best || !m.pick) {
        grid_free(&m);
        return q->host->fail(q->host, VITQ_ENOMEM, "grid search: out of memory for %lld values", (long long)numel);
    }
    for (int64_t g = 0; !rc && g < G; g++) {
        m.best[g] = INFINITY, m.pick[g] = -1;
        if (b2_candidates(q, s->x, run, g, qs, nq, m.buf, m.cand2 + g * nb2))
            rc = q->host->fail(q->host, VITQ_EINVAL, "grid search: no calibration values, or NaN among them");
    }
    if (!rc) rc = grid_eval(q, s, &m, nb2, nb1);
    for (int64_t g = 0; !rc && g < G; g++) {
        if (m.pick[g] < 0) {
            q->host->log(q->host, VITQ_LOG_WARN, "grid search: no candidate has a finite error%s; keeping [%g, %g]",
                         G > 1 ? " for a head" : "", (double)q->b1[g], (double)q->b2[g]);
            continue;
        }
        candidate(q, m.cand2 + g * nb2, nb1, m.pick[g], &q->b1[g], &q->b2[g]);
    }
    if (!rc) {
        q->searched = 1;
        q->host->log(q->host, VITQ_LOG_INFO, "grid (round %d): [b1, b2] = [%g, %g]%s", s->round, (double)q->b1[0],
                     (double)q->b2[0], G > 1 ? " for head 0" : "");
    }
    grid_free(&m);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Learning: train, backward (§3.3), tensors, project, freeze
 * ------------------------------------------------------------------------------------------- */
static int dfq_train(void *qv, const vitq_view *w) {
    dfq *q = qv;
    (void)w;
    if (!q->finalized) return q->host->fail(q->host, VITQ_EINVAL, "train before finalize");
    if (q->p.learn && !q->g1) {
        q->g1 = calloc((size_t)q->G, sizeof(float));
        q->g2 = calloc((size_t)q->G, sizeof(float));
        if (!q->g1 || !q->g2) return q->host->fail(q->host, VITQ_ENOMEM, "out of memory");
    }
    q->training = 1;
    return 0;
}

/* The three partial derivatives of p̂ at p for one interval (§3.3's table; zero mode's variant). */
static inline void grads_one(const dfq *q, float p, float b1, float b2, float *dp, float *d1, float *d2) {
    const int zero = q->p.below == BELOW_ZERO;
    const float n = zero ? q->n - 1 : q->n, s = (b2 - b1) / n;
    *dp = *d1 = *d2 = 0;
    if (zero && p < 0.5f * b1) return;
    if (zero && p < b1) {
        *d1 = 1;
        return;
    }
    float u = (p - b1) / s;
    if (u < 0) {
        *d1 = 1;
    } else if (u > n) {
        *d2 = 1;
    } else {
        float r = rintf(u);
        *dp = 1;
        *d1 = -(r - u) / n;
        *d2 = (r - u) / n;
    }
}

static int dfq_backward(void *qv, const vitq_view *x, const vitq_view *dy, vitq_view *dx) {
    dfq *q = qv;
    if (!q->training) return q->host->fail(q->host, VITQ_EINVAL, "backward outside train ... freeze");
    int64_t run, numel = vitq_view_numel(x);
    int rc = group_run(q, x, &run);
    if (rc) return rc;
    const double gs = q->p.lsq_grad_scale ? 1.0 / sqrt((double)(numel / q->G) * (double)q->n) : 1.0;
    for (int64_t i = 0; i < numel; i += run) {
        int64_t g = (i / run) % q->G;
        double a1 = 0, a2 = 0;
        for (int64_t k = i; k < i + run && k < numel; k++) {
            float dp, d1, d2;
            grads_one(q, x->data[k], q->b1[g], q->b2[g], &dp, &d1, &d2);
            a1 += (double)dy->data[k] * d1;
            a2 += (double)dy->data[k] * d2;
            if (dx) dx->data[k] += dy->data[k] * dp;
        }
        if (q->g1) q->g1[g] += (float)(a1 * gs), q->g2[g] += (float)(a2 * gs);
    }
    return 0;
}

static int dfq_tensors(void *qv, vitq_qtensor *out, int max) {
    dfq *q = qv;
    int k = 0;
    const int grads = q->training && q->g1;
    if (k < max) out[k++] = (vitq_qtensor){.name = "b1", .value = q->b1, .grad = grads ? q->g1 : NULL, .n = q->G};
    if (k < max) out[k++] = (vitq_qtensor){.name = "b2", .value = q->b2, .grad = grads ? q->g2 : NULL, .n = q->G};
    return k;
}

static int dfq_project(void *qv) {
    dfq *q = qv;
    for (int64_t g = 0; g < q->G; g++)
        if (fix_interval(&q->b1[g], &q->b2[g]))
            return q->host->fail(q->host, VITQ_EINVAL, "project: [b1, b2] = [%g, %g] is not finite (diverged optimiser?)",
                                 (double)q->b1[g], (double)q->b2[g]);
    return 0;
}

static int dfq_freeze(void *qv) {
    dfq *q = qv;
    int rc = dfq_project(q);
    free(q->g1);
    free(q->g2);
    q->g1 = q->g2 = NULL;
    q->training = 0;
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * State: state_version [1], b1 [G], b2 [G]
 * ------------------------------------------------------------------------------------------- */
static int dfq_save(const void *qv, vitq_state_io *io) {
    const dfq *q = qv;
    float ver = DFQ_STATE_VERSION;
    int rc = io->put(io, "state_version", &ver, 1);
    if (!rc) rc = io->put(io, "b1", q->b1, q->G);
    if (!rc) rc = io->put(io, "b2", q->b2, q->G);
    return rc;
}

static int dfq_load(void *qv, vitq_state_io *io) {
    dfq *q = qv;
    float ver = 0;
    if (io->get(io, "state_version", &ver, 1) || ver != DFQ_STATE_VERSION)
        return q->host->fail(q->host, VITQ_EFORMAT, "state version %g, this plugin reads %d", (double)ver, DFQ_STATE_VERSION);
    if (io->size(io, "b1") != q->G || io->size(io, "b2") != q->G)
        return q->host->fail(q->host, VITQ_EFORMAT, "state holds %lld intervals, this tap needs %lld (granularity?)",
                             (long long)io->size(io, "b1"), (long long)q->G);
    if (io->get(io, "b1", q->b1, q->G) || io->get(io, "b2", q->b2, q->G))
        return q->host->fail(q->host, VITQ_EFORMAT, "cannot read b1 / b2");
    for (int64_t g = 0; g < q->G; g++)
        if (!(q->b1[g] >= 0 && q->b2[g] <= 1 && (double)q->b2[g] - (double)q->b1[g] >= DFQ_GAP))
            return q->host->fail(q->host, VITQ_EFORMAT, "state interval [%g, %g] violates 0 <= b1 < b2 <= 1, b2 - b1 >= 1e-4",
                                 (double)q->b1[g], (double)q->b2[g]);
    q->finalized = q->searched = 1;
    return 0;
}

static const vitq_quantizer_ops dfq_ops = {
    .size = sizeof(vitq_quantizer_ops),
    .create = dfq_create,
    .observe = dfq_observe,
    .finalize = dfq_finalize,
    .forward = dfq_forward,
    .backward = dfq_backward,
    .tensors = dfq_tensors,
    .train = dfq_train,
    .project = dfq_project,
    .freeze = dfq_freeze,
    .search = dfq_search,
    .save = dfq_save,
    .load = dfq_load,
    .destroy = dfq_destroy,
};

static const vitq_plugin dfq_plugin = {
    .abi = VITQ_PLUGIN_ABI,
    .size = sizeof(vitq_plugin),
    .name = "dynamic_focus",
    .version = "1.0",
    .summary = "AIQViT's dynamic focusing quantizer for post-Softmax: uniform on a learned [b1, b2] per layer or head",
    .kind = VITQ_PLUGIN_QUANTIZER,
    .params = dfq_param_table,
    .n_params = (int)(sizeof dfq_param_table / sizeof dfq_param_table[0]),
    .params_size = sizeof(dfq_params),
    .quantizer = &dfq_ops,
};

VITQ_PLUGIN_EXPORT const vitq_plugin *vitq_plugin_entry(void) { return &dfq_plugin; }
