/* search_probe.c — a test quantizer for calib_mode = search: y = rint(x / s_k) · s_k with one of 8 step
 * candidates s_k = 0.01 · 2^(k/2) per group, the group being what the harness's error is reported per
 * (a weight's rows, a matmul operand's heads, or the whole tensor). `search` tries every candidate
 * through vitq_search.error and keeps each group's best; tensor "choice" holds the picks, "calls" the
 * number of error() calls, so a test can compare both with a brute force. Every candidate is also checked
 * against error_below: with no bound (INFINITY) it equals error() exactly; with even groups bounded at half
 * their error and odd groups at twice it, the even ones come back above their bound and the odd ones exact;
 * tensor "below_bad" counts violations. */
#include "vitq_plugin.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define NK 8
#define MAXG 4096

typedef struct { int unused; } probe_params;
typedef struct {
    float choice[MAXG], calls, below_bad;
    int G;        /* groups after a search (1 before) */
    vitq_dim dim; /* what they run along */
} probe;

static float step(int k) { return 0.01f * powf(2.0f, 0.5f * (float)k); }

static void *p_create(const void *pp, const vitq_tap *t, const vitq_host *h) {
    (void)pp, (void)t, (void)h;
    probe *q = calloc(1, sizeof *q);
    if (q) q->G = 1, q->dim = VITQ_DIM_BATCH;
    return q;
}
static int p_observe(void *q, const vitq_view *x) { (void)q, (void)x; return 0; }
static void p_destroy(void *q) { free(q); }

static int64_t group_of(const probe *q, const vitq_view *x, int64_t i) {
    if (q->dim == VITQ_DIM_OUT) return i / (vitq_view_numel(x) / x->shape[0]);
    if (q->dim == VITQ_DIM_HEAD) return (i / (vitq_view_numel(x) / (x->shape[0] * x->shape[1]))) % x->shape[1];
    return 0;
}

static void quantize(const probe *q, const float *choice, const vitq_view *x, float *y) {
    for (int64_t i = 0; i < vitq_view_numel(x); i++) {
        float s = step((int)choice[group_of(q, x, i)]);
        y[i] = rintf(x->data[i] / s) * s;
    }
}

static int p_forward(void *qv, const vitq_view *x, vitq_view *y) {
    probe *q = qv;
    quantize(q, q->choice, x, y->data);
    return 0;
}

/* error_below against error()'s values err (see the header). */
static int check_below(probe *q, const vitq_search *s, const vitq_view *v, const double *err) {
    if (s->size < offsetof(vitq_search, error_below) + sizeof s->error_below || !s->error_below) {
        q->below_bad++; /* this harness always offers it */
        return 0;
    }
    double bound[MAXG], got[MAXG];
    for (int g = 0; g < q->G; g++) bound[g] = INFINITY;
    int rc = s->error_below(s, v, q->G > 1, bound, got);
    for (int g = 0; !rc && g < q->G; g++) q->below_bad += got[g] != err[g];
    for (int g = 0; g < q->G; g++) bound[g] = g % 2 ? 2 * err[g] : 0.5 * err[g];
    if (!rc) rc = s->error_below(s, v, q->G > 1, bound, got);
    for (int g = 0; !rc && g < q->G; g++) q->below_bad += g % 2 ? got[g] != err[g] : err[g] > 0 && !(got[g] > bound[g]);
    return rc;
}

static int p_search(void *qv, const vitq_search *s) {
    probe *q = qv;
    q->dim = s->group_dim;
    q->G = s->group_dim == VITQ_DIM_BATCH ? 1 : (int)s->groups;
    if (q->G > MAXG) return VITQ_EINVAL;
    int64_t n = vitq_view_numel(s->x);
    float *y = malloc(sizeof(float) * (size_t)n), cand[MAXG];
    double *err = malloc(sizeof(double) * (size_t)s->groups), best[MAXG];
    if (!y || !err) return VITQ_ENOMEM;
    for (int k = 0; k < NK; k++) {
        for (int g = 0; g < q->G; g++) cand[g] = (float)k;
        quantize(q, cand, s->x, y);
        vitq_view v = *s->x;
        v.data = y;
        int rc = s->error(s, &v, q->G > 1, err);
        q->calls++;
        if (rc) return rc;
        if ((rc = check_below(q, s, &v, err))) return rc;
        for (int g = 0; g < q->G; g++)
            if (k == 0 || err[g] < best[g]) best[g] = err[g], q->choice[g] = (float)k;
    }
    free(y);
    free(err);
    return 0;
}

static int p_tensors(void *qv, vitq_qtensor *out, int max) {
    probe *q = qv;
    int n = 0;
    if (n < max) out[n++] = (vitq_qtensor){.name = "choice", .value = q->choice, .n = q->G};
    if (n < max) out[n++] = (vitq_qtensor){.name = "calls", .value = &q->calls, .n = 1};
    if (n < max) out[n++] = (vitq_qtensor){.name = "below_bad", .value = &q->below_bad, .n = 1};
    return n;
}

static const vitq_param probe_table[] = {
    {.name = "unused", .type = VITQ_P_INT, .offset = 0, .def = "0", .min = 0, .max = 1, .help = "nothing"},
};
static const vitq_quantizer_ops probe_ops = {.size = sizeof(vitq_quantizer_ops), .create = p_create,
                                             .observe = p_observe, .forward = p_forward, .tensors = p_tensors,
                                             .search = p_search, .destroy = p_destroy};
static const vitq_plugin probe_plugin = {.abi = VITQ_PLUGIN_ABI, .size = sizeof(vitq_plugin), .name = "search_probe",
                                         .version = "1", .summary = "test: output-error search over 8 steps",
                                         .kind = VITQ_PLUGIN_QUANTIZER, .params = probe_table, .n_params = 1,
                                         .params_size = sizeof(probe_params), .quantizer = &probe_ops};
VITQ_PLUGIN_EXPORT const vitq_plugin *vitq_plugin_entry(void) { return &probe_plugin; }
