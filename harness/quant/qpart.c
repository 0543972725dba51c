/* qpart.c — data-parallel training of one unit: the batch split into parts, each part's forward and
 * backward on its own thread, with no barrier between them.
 *
 * A part is a shallow copy of the quantized model q over a shadow of q's model (vitq_model_shadow: the
 * same fake-quant weights, gradients of its own). Its taps are q's, except that the unit's activation taps
 * hold clones of q's instances (vitq_quantizer_ops.clone: own gradients, told that they see 1/parts of the
 * batch) and their own training buffers (the saved input, the QDrop mask, whose stream is the part's). So
 * a part's forward and backward touch nothing another part touches. Each step: sync (q's tensor values ->
 * the clones), the parts' forward and backward, then reduce: q's gradients += each part's, in part order
 * (the weights' float gradients of the unit, then every clone's tensors), the parts' zeroed. q's weight
 * quantizers then run their backward once, on q, from the summed float gradients.
 *
 * Does not: split a unit whose activation quantizer has no clone, or a family other than ViT
 * (vitq_qpart_create says so; the caller keeps one batch at a time). */
#include "quant/quant.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vitq_qpart {
    vitq_qmodel q;     /* shallow copy of the original's struct: own taps, m, hooks, scratch, rng, err */
    vitq_qmodel *orig;
    int unit;
};

static int unit_act(const vitq_qtap *t, int unit) { return t->act >= 0 && t->unit == unit && t->plugin; }

static const vitq_quantizer_ops *clone_op(const vitq_qtap *t) {
    const vitq_quantizer_ops *o = t->plugin->quantizer;
    return o->size >= offsetof(vitq_quantizer_ops, clone) + sizeof o->clone && o->clone ? o : NULL;
}

int vitq_qpart_supported(const vitq_qmodel *q, int unit, char *why, size_t n) {
    if (!vitq_model_shadowable(q->m)) {
        if (why) snprintf(why, n, "%s models are not split", q->m->fam->name);
        return 0;
    }
    for (int i = 0; i < q->n_taps; i++) {
        const vitq_qtap *t = &q->taps[i];
        if (!unit_act(t, unit) || (t->training && clone_op(t))) continue;
        if (why && !t->training) snprintf(why, n, "'%s' is not in training", t->name);
        else if (why) snprintf(why, n, "plugin '%s' on '%s' has no clone", t->plugin->name, t->name);
        return 0;
    }
    return 1;
}

void vitq_qpart_free(vitq_qpart *p) {
    if (!p) return;
    for (int i = 0; p->q.taps && i < p->q.n_taps; i++) {
        vitq_qtap *t = &p->q.taps[i];
        if (unit_act(t, p->unit) && t->inst != p->orig->taps[i].inst) t->plugin->quantizer->destroy(t->inst);
        vitq_free(t->pre);
        free(t->mask);
    }
    free(p->q.taps);
    vitq_free(p->q.scratch);
    vitq_free(p->q.bscratch);
    vitq_model_shadow_free(p->q.m);
    free(p);
}

/* The part's copy of q's taps: the unit's activation taps on clones, nothing shared that training writes. */
static int copy_taps(vitq_qpart *p, int parts, vitq_err *e) {
    const vitq_qmodel *q = p->orig;
    p->q.taps = calloc((size_t)(q->n_taps > 0 ? q->n_taps : 1), sizeof *p->q.taps);
    if (!p->q.taps) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    memcpy(p->q.taps, q->taps, (size_t)q->n_taps * sizeof *q->taps);
    for (int i = 0; i < q->n_taps; i++) {
        vitq_qtap *t = &p->q.taps[i];
        t->pre = NULL, t->mask = NULL, t->pre_n = 0, t->w_src_grad = NULL, t->hist = -1;
        if (!unit_act(t, p->unit)) continue;
        t->inst = NULL;
        void *c = clone_op(t)->clone(q->taps[i].inst, parts);
        if (!c) return vitq_fail(e, VITQ_EPLUGIN, "tap '%s': clone failed: %s", t->name, q->taps[i].hctx.msg);
        t->inst = c;
    }
    return VITQ_OK;
}

int vitq_qpart_create(vitq_qmodel *q, int unit, int part, int parts, vitq_qpart **out, vitq_err *e) {
    *out = NULL;
    if (!vitq_qpart_supported(q, unit, NULL, 0))
        return vitq_fail(e, VITQ_EINVAL, "unit %d: an activation quantizer cannot be cloned", unit);
    vitq_qpart *p = calloc(1, sizeof *p);
    if (!p) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    p->q = *q;
    p->orig = q, p->unit = unit;
    p->q.taps = NULL, p->q.m = NULL, p->q.scratch = NULL, p->q.bscratch = NULL;
    p->q.scratch_n = p->q.bscratch_n = 0;
    p->q.stats_on = 0, p->q.hists = NULL, p->q.n_hists = 0, p->q.hist_part = NULL, p->q.err[0] = 0;
    int rc = vitq_model_shadow(q->m, &p->q.m, e);
    if (!rc) rc = copy_taps(p, parts, e);
    if (rc) {
        vitq_qpart_free(p);
        return rc;
    }
    p->q.hooks.ctx = &p->q;
    p->q.m->hooks = &p->q.hooks;
    uint64_t s = q->qdrop_rng ^ (0x9E3779B97F4A7C15ULL * (uint64_t)(part + 1)); /* the part's own stream */
    p->q.qdrop_rng = vitq_splitmix64(&s);
    *out = p;
    return VITQ_OK;
}

vitq_qmodel *vitq_qpart_qmodel(vitq_qpart *p) { return &p->q; }

/* Every tensor of the unit's activation taps: q's (orig) and the part's (clone), in the same order. */
static int pair_tensors(vitq_qpart *p, int i, vitq_qtensor *o, vitq_qtensor *c, int max) {
    const vitq_quantizer_ops *ops = p->orig->taps[i].plugin->quantizer;
    if (!ops->tensors) return 0;
    int n = ops->tensors(p->orig->taps[i].inst, o, max), m = ops->tensors(p->q.taps[i].inst, c, max);
    return n == m ? n : -1;
}

int vitq_qpart_sync(vitq_qpart *p, vitq_err *e) {
    p->q.drop_prob = p->orig->drop_prob;
    for (int i = 0; i < p->q.n_taps; i++) {
        if (!unit_act(&p->q.taps[i], p->unit)) continue;
        vitq_qtensor o[16], c[16];
        int n = pair_tensors(p, i, o, c, 16);
        if (n < 0) return vitq_fail(e, VITQ_EPLUGIN, "tap '%s': the clone lists other tensors", p->q.taps[i].name);
        for (int k = 0; k < n; k++)
            if (o[k].n == c[k].n && o[k].value != c[k].value)
                memcpy(c[k].value, o[k].value, (size_t)o[k].n * sizeof(float));
    }
    return VITQ_OK;
}

typedef struct {
    float *dst;
    float *src[VITQ_MAX_QPARTS];
    int n;
} add_job;

/* dst[k] += src[0][k], then += src[1][k], ... (part order: the same sums for any thread count); src zeroed. */
static void add_zero(void *ctx, int64_t b, int64_t e) {
    const add_job *j = ctx;
    for (int p = 0; p < j->n; p++) {
        float *restrict d = j->dst, *restrict s = j->src[p];
        for (int64_t k = b; k < e; k++) d[k] += s[k];
        memset(s + b, 0, (size_t)(e - b) * sizeof(float));
    }
}

void vitq_qpart_reduce(vitq_qpart *const *parts, int n) {
    if (n < 1) return;
    const vitq_qpart *p0 = parts[0];
    vitq_model *m = p0->orig->m;
    const vitq_unit *un = vitq_unit_get(m, p0->unit);
    /* the unit's rows of the gradient slab (one span from its first row to the end of its last) */
    int64_t lo = INT64_MAX, hi = 0;
    for (int r = un->param_first; r < un->param_end; r++) {
        const int64_t at = m->table[r].data - m->slab;
        lo = at < lo ? at : lo, hi = at + m->table[r].numel > hi ? at + m->table[r].numel : hi;
    }
    add_job j = {.dst = m->grad_slab + lo, .n = n};
    for (int k = 0; k < n; k++) j.src[k] = parts[k]->q.m->grad_slab + lo;
    if (hi > lo) vitq_parallel_for_work(hi - lo, 2 * n, add_zero, &j);
    for (int i = 0; i < p0->q.n_taps; i++) {
        if (!unit_act(&p0->q.taps[i], p0->unit)) continue;
        for (int k = 0; k < n; k++) {
            vitq_qtensor o[16], c[16];
            int nt = pair_tensors((vitq_qpart *)parts[k], i, o, c, 16);
            for (int t = 0; t < nt; t++)
                if (o[t].grad && c[t].grad && o[t].n == c[t].n)
                    add_zero(&(add_job){.dst = o[t].grad, .src = {c[t].grad}, .n = 1}, 0, o[t].n);
        }
    }
}
