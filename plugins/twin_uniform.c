/* twin_uniform.c — PTQ4ViT's twin uniform quantizer for post-Softmax probabilities (specs/aiqvit.md §2.4,
 * the baseline AIQViT compares against; PTQ4ViT does not use log2 for softmax). Its own plugin rather than a
 * mode of log2 or dynamic_focus: it is neither a log quantizer nor one interval, and its one parameter (the
 * split) has its own search.
 *
 * Two unsigned uniform ranges of m = 2^(b−1) levels each (b bits in all: one bit picks the range):
 *   low   Δl = split/(m − 1) on [0, split]       k_l = clamp(⌊p/Δl⌉, 0, m − 1)
 *   high  Δh = 1/(m − 1)     on [0, 1]           k_h = clamp(⌊p/Δh⌉, 0, m − 1)     (PTQ4ViT's code: ⌊p·(m−1)⌉)
 *   quirk = none (default, the paper's definition): p̂ = Δl·k_l when p < m·Δl (the paper's R1 = [0, 2^(b−1)Δ_R1)),
 *                 else Δh·k_h;
 *   quirk = ptq4vit (the released code, `quant_input_A`): p̂ = Δh·k_h(clamp(p, split, 1)) + Δl·k_l(clamp(p, 0, split)),
 *                 the SUM of both ranges' results: p ≥ split gets `split` added (1 becomes 1 + split), p < split
 *                 gets the high range's rounding of split added. Reproduced only here, for the baseline numbers.
 * ⌊·⌉ rounds half to even (rintf, as torch.round); float32 arithmetic in PTQ4ViT's order.
 *
 * The split: split_init (PTQ4ViT starts at 0.01) until, under calib_mode = search (search = true), it is
 * chosen at EVERY search round (PTQ4ViT alternates three rounds with V's interval search) among 2^−i,
 * i = split_i_lo .. split_i_hi (0 .. 19), by the attn·V output error the harness returns (per tensor:
 * per_group = 0; first minimum, i ascending; a round whose V is unchanged since the last is skipped: it would
 * pick the same). PTQ4ViT ranks the candidates by its Hessian-guided metric
 * (the output error weighted by the squared gradient of the task loss); vitq uses the harness's plain
 * output error instead — a departure.
 * Per tensor only. Does NOT: the post-GELU twin (negative range), PTQ4ViT's Hessian metric, gradients.
 * State: state_version [1] = 1, split [1].
 */
#include "vitq_plugin.h"

#include <math.h>
#include <stdlib.h>

#define TWIN_STATE_VERSION 1

enum { QUIRK_NONE = 0, QUIRK_PTQ4VIT = 1 };

typedef struct {
    int bits;          /* 2..16: 2^(b-1) levels per range */
    int quirk;         /* QUIRK_* */
    double split_init; /* the split before, or without, the search */
    int search;        /* choose the split by the harness's output error */
    int split_i_lo;    /* candidates 2^-i, i in [lo, hi] */
    int split_i_hi;
} twin_params;

static const vitq_param twin_param_table[] = {
    {.name = "bits", .type = VITQ_P_INT, .offset = offsetof(twin_params, bits), .def = "4", .min = 2, .max = 16,
     .help = "bit-width b: two ranges of 2^(b-1) levels"},
    {.name = "quirk", .type = VITQ_P_ENUM, .offset = offsetof(twin_params, quirk), .def = "none", .choices = "none|ptq4vit",
     .help = "none: the paper's twin uniform; ptq4vit: the released code's sum of both ranges (1 -> 1 + split)"},
    {.name = "split_init", .type = VITQ_P_FLOAT, .offset = offsetof(twin_params, split_init), .def = "0.01",
     .min = 1e-9, .max = 1, .help = "the split between the ranges before (or without) the search (PTQ4ViT: 0.01)"},
    {.name = "search", .type = VITQ_P_BOOL, .offset = offsetof(twin_params, search), .def = "true",
     .help = "calib_mode = search: split among 2^-i by the harness's attn.V output error (not PTQ4ViT's Hessian metric)"},
    {.name = "split_i_lo", .type = VITQ_P_INT, .offset = offsetof(twin_params, split_i_lo), .def = "0", .min = 0,
     .max = 60, .help = "search: split candidates 2^-i from i = this"},
    {.name = "split_i_hi", .type = VITQ_P_INT, .offset = offsetof(twin_params, split_i_hi), .def = "19", .min = 0,
     .max = 60, .help = "search: ... to i = this"},
};

typedef struct {
    twin_params p;
    const vitq_host *host;
    float split;
    int64_t seen;
    int finalized, searched, warned;
} twin;

static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* One value under split sp; m1 = 2^(b−1) − 1. */
static inline float twin_one(int quirk, float p, float sp, float m1) {
    const float dl = sp / m1;
    if (quirk == QUIRK_PTQ4VIT) {
        float hi = clampf(rintf(clampf(p, sp, 1.0f) * m1), 0, m1) / m1;
        float lo = clampf(rintf(clampf(p, 0, sp) / dl), 0, m1) * dl;
        return hi + lo;
    }
    if (p < (m1 + 1) * dl) return clampf(rintf(p / dl), 0, m1) * dl;
    return clampf(rintf(p * m1), 0, m1) / m1;
}

typedef struct {
    const twin *q;
    const float *x;
    float *y;
    float split;
} fwd_job;

static void fwd_range(void *ctx, int64_t begin, int64_t end) {
    const fwd_job *j = ctx;
    const float m1 = ldexpf(1.0f, j->q->p.bits - 1) - 1;
    const int quirk = j->q->p.quirk;
    for (int64_t i = begin; i < end; i++) j->y[i] = twin_one(quirk, j->x[i], j->split, m1);
}

static void quantize(const twin *q, const float *x, float *y, int64_t n, float split) {
    fwd_job job = {q, x, y, split};
    if (n >= 16384)
        q->host->parallel_for(n, fwd_range, &job);
    else
        fwd_range(&job, 0, n);
}

static void *twin_create(const void *params, const vitq_tap *tap, const vitq_host *host) {
    const twin_params *p = params;
    (void)tap;
    if (p->split_i_lo > p->split_i_hi) {
        host->fail(host, VITQ_EINVAL, "split_i_lo = %d is above split_i_hi = %d", p->split_i_lo, p->split_i_hi);
        return NULL;
    }
    twin *q = calloc(1, sizeof *q);
    if (!q) {
        host->fail(host, VITQ_ENOMEM, "out of memory");
        return NULL;
    }
    q->p = *p;
    q->host = host;
    q->split = (float)p->split_init;
    return q;
}

static void twin_destroy(void *q) { free(q); }

static int twin_observe(void *qv, const vitq_view *x) {
    twin *q = qv;
    if (q->finalized) return q->host->fail(q->host, VITQ_EINVAL, "observe after finalize");
    q->seen += vitq_view_numel(x);
    return 0;
}

static int twin_finalize(void *qv) {
    twin *q = qv;
    q->finalized = 1;
    return 0;
}

static int twin_forward(void *qv, const vitq_view *x, vitq_view *y) {
    twin *q = qv;
    if (!q->finalized) return q->host->fail(q->host, VITQ_EINVAL, "forward before finalize (no calibration)");
    if (q->p.search && !q->searched && !q->warned) {
        q->warned = 1;
        q->host->log(q->host, VITQ_LOG_WARN, "the split is searched under calib_mode = search; using split = %g", (double)q->split);
    }
    quantize(q, x->data, y->data, vitq_view_numel(x), q->split);
    return 0;
}

/* The op's other input (V, as quantized) is exactly what it was at this tap's previous search: a search
 * whose candidates and result depend only on it, on x and on the parameters would choose the same again
 * (partner_changed is read only from a harness whose vitq_search carries it). */
static int partner_same(const vitq_search *s) {
    return s->size >= offsetof(vitq_search, partner_changed) + sizeof(int) && !s->partner_changed;
}

static int twin_search(void *qv, const vitq_search *s) {
    twin *q = qv;
    if (!q->p.search) return 0;
    if (q->searched && partner_same(s)) return 0;
    const int64_t n = vitq_view_numel(s->x);
    float *y = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    double *err = malloc(sizeof(double) * (size_t)(s->groups > 1 ? s->groups : 1)), best = INFINITY;
    int rc = y && err ? 0 : q->host->fail(q->host, VITQ_ENOMEM, "split search: out of memory for %lld values", (long long)n);
    float pick = -1;
    vitq_view vy = *s->x;
    vy.data = y;
    for (int i = q->p.split_i_lo; !rc && i <= q->p.split_i_hi; i++) {
        const float sp = ldexpf(1.0f, -i);
        quantize(q, s->x->data, y, n, sp);
        if ((rc = s->error(s, &vy, 0, err)))
            rc = q->host->fail(q->host, rc < 0 ? rc : VITQ_EPLUGIN, "split search: the harness's output error failed (code %d)", rc);
        else if (err[0] < best)
            best = err[0], pick = sp;
        if (!rc && q->host->progress(q->host, i - q->p.split_i_lo + 1, q->p.split_i_hi - q->p.split_i_lo + 1, "twin split"))
            rc = VITQ_ECANCELLED;
    }
    if (!rc && pick < 0)
        q->host->log(q->host, VITQ_LOG_WARN, "split search: no candidate has a finite error; keeping split = %g", (double)q->split);
    if (!rc && pick > 0) {
        q->split = pick;
        q->searched = 1;
        q->host->log(q->host, VITQ_LOG_INFO, "round %d: split = %g", s->round, (double)pick);
    }
    free(y);
    free(err);
    return rc;
}

static int twin_save(const void *qv, vitq_state_io *io) {
    const twin *q = qv;
    float ver = TWIN_STATE_VERSION;
    int rc = io->put(io, "state_version", &ver, 1);
    return rc ? rc : io->put(io, "split", &q->split, 1);
}

static int twin_load(void *qv, vitq_state_io *io) {
    twin *q = qv;
    float ver = 0, sp = 0;
    if (io->get(io, "state_version", &ver, 1) || ver != TWIN_STATE_VERSION)
        return q->host->fail(q->host, VITQ_EFORMAT, "state version %g, this plugin reads %d", (double)ver, TWIN_STATE_VERSION);
    if (io->get(io, "split", &sp, 1) || !(sp > 0 && sp <= 1))
        return q->host->fail(q->host, VITQ_EFORMAT, "state has no split in (0, 1]");
    q->split = sp;
    q->finalized = q->searched = 1;
    return 0;
}

static const vitq_quantizer_ops twin_ops = {
    .size = sizeof(vitq_quantizer_ops),
    .create = twin_create,
    .observe = twin_observe,
    .finalize = twin_finalize,
    .forward = twin_forward,
    .search = twin_search,
    .save = twin_save,
    .load = twin_load,
    .destroy = twin_destroy,
};

static const vitq_plugin twin_plugin = {
    .abi = VITQ_PLUGIN_ABI,
    .size = sizeof(vitq_plugin),
    .name = "twin_uniform",
    .version = "1.0",
    .summary = "PTQ4ViT's twin uniform for post-Softmax: two 2^(b-1)-level ranges split at a searched 2^-i",
    .kind = VITQ_PLUGIN_QUANTIZER,
    .params = twin_param_table,
    .n_params = (int)(sizeof twin_param_table / sizeof twin_param_table[0]),
    .params_size = sizeof(twin_params),
    .quantizer = &twin_ops,
};

VITQ_PLUGIN_EXPORT const vitq_plugin *vitq_plugin_entry(void) { return &twin_plugin; }
