/* qtrain.c — the quantizers of one unit in training, for block-wise reconstruction: the forward hook's
 * training path (the input kept for backward, QDrop masks), the backward hook (each quantizer's
 * straight-through backward where QDrop quantized, the identity elsewhere, then the input restored),
 * weights re-derived as W = Q(src) + post and their gradients carried back through the weight
 * quantizers, and the trainable tensors, regularisers and constraints the session's optimiser uses.
 * Does not: choose batches, compute losses or step an optimiser (train/session.c and the pass do). */
#include "quant/quant.h"

#include <stdlib.h>
#include <string.h>

static int in_unit(const vitq_qtap *t, int unit) { return unit < 0 || t->unit == unit; }

static vitq_view weight_view(const vitq_qtap *t, float *data) {
    vitq_view v = {.data = data, .ndim = t->w_fp->ndim};
    for (int d = 0; d < v.ndim && d < 4; d++) v.shape[d] = t->w_fp->shape[d];
    return v;
}

/* ---- forward and backward hooks ------------------------------------------------------------------- */

static inline uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* QDrop masks, in blocks of 4096 elements, each block's bits from its own splitmix64 stream seeded by the
 * call's seed and the block index: the same bits for any thread count. p = 1/2 takes one random bit per
 * element (64 per draw), any other p a 16-bit draw per element against round(p·2^16). */
#define MASK_BLOCK 4096
typedef struct {
    uint64_t *mask;
    int64_t n;
    uint64_t seed;
    uint32_t thr;
    int half;
} mask_job;

static void mask_blocks(void *ctx, int64_t b0, int64_t b1) {
    const mask_job *j = ctx;
    for (int64_t b = b0; b < b1; b++) {
        uint64_t st = j->seed ^ ((uint64_t)b * 0xd1342543de82ef95ULL);
        const int64_t i0 = b * MASK_BLOCK, i1 = i0 + MASK_BLOCK < j->n ? i0 + MASK_BLOCK : j->n;
        for (int64_t w = i0 / 64; w * 64 < i1; w++) { /* 64 elements per word; blocks are whole words */
            uint64_t bits = 0;
            if (j->half)
                bits = splitmix64(&st);
            else
                for (int k = 0; k < 64; k += 4) {
                    uint64_t r = splitmix64(&st);
                    for (int l = 0; l < 4; l++) bits |= (uint64_t)(((r >> (16 * l)) & 0xffff) < j->thr) << (k + l);
                }
            const int64_t left = i1 - w * 64;
            j->mask[w] = left >= 64 ? bits : bits & ((1ULL << left) - 1);
        }
    }
}

static void qdrop_mask(vitq_qmodel *q, uint64_t *mask, int64_t n, double p) {
    mask_job j = {mask, n, splitmix64(&q->qdrop_rng), (uint32_t)(p * 65536.0 + 0.5), p == 0.5};
    vitq_parallel_for_work((n + MASK_BLOCK - 1) / MASK_BLOCK, MASK_BLOCK, mask_blocks, &j);
}

/* Elementwise work of the hooks over the pool: keep (pre = x), mix (QDrop, one pass: on entry x holds
 * the float input and pre its quantized values; on exit x holds the quantized value where the mask bit is
 * set and the float one elsewhere, and pre the float input), split (dq = dx where quantized, 0 elsewhere;
 * dx = dx where kept float — the identity —, 0 elsewhere: the quantizer's backward then adds into dx). The
 * bit selects take 16 mask bits at a time as an AVX-512 lane mask (ew_bits16), else 4-lane masks from a
 * 16-entry table (SSE2). */
typedef enum { EW_KEEP, EW_MIX, EW_SPLIT } ew_kind;
typedef struct {
    ew_kind kind;
    float *x, *pre, *dx, *dq;
    const uint64_t *mask;
    int64_t n;
} ew_job;

#ifdef __SSE2__
#include <emmintrin.h>
static __m128 lane_mask(unsigned nib) {
    static const uint32_t k[16][4] __attribute__((aligned(16))) = {
#define L(b) ((b) ? 0xffffffffu : 0u)
#define ROW(n) {L((n) & 1), L((n) & 2), L((n) & 4), L((n) & 8)}
        ROW(0), ROW(1), ROW(2), ROW(3), ROW(4), ROW(5), ROW(6), ROW(7),
        ROW(8), ROW(9), ROW(10), ROW(11), ROW(12), ROW(13), ROW(14), ROW(15)};
#undef ROW
#undef L
    return _mm_load_ps((const float *)k[nib]);
}
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* ew_bits 16 values at a time, each mask bit an AVX-512 lane mask; a select moves bits, so the result is
 * the SSE2 loop's. Returns where it stopped (a multiple of 16 past i0). */
__attribute__((target("avx512f"))) static int64_t ew_bits16(const ew_job *j, int64_t i0, int64_t i1) {
    int64_t i = i0;
    for (; i + 16 <= i1; i += 16) {
        const __mmask16 m = (__mmask16)(j->mask[i >> 6] >> (i & 63));
        if (j->kind == EW_MIX) {
            const __m512 f = _mm512_loadu_ps(j->x + i);
            _mm512_storeu_ps(j->x + i, _mm512_mask_mov_ps(f, m, _mm512_loadu_ps(j->pre + i)));
            _mm512_storeu_ps(j->pre + i, f);
        } else {
            const __m512 d = _mm512_loadu_ps(j->dx + i);
            _mm512_storeu_ps(j->dq + i, _mm512_maskz_mov_ps(m, d));
            _mm512_storeu_ps(j->dx + i, _mm512_maskz_mov_ps((__mmask16)~m, d));
        }
    }
    return i;
}
#define HAVE_EW_BITS16 1
#endif

/* [i0, i1) with i0 a multiple of 64 (the pool splits by words: see ew). */
static void ew_bits(const ew_job *j, int64_t i0, int64_t i1) {
    int64_t i = i0;
#ifdef HAVE_EW_BITS16
    if (vitq_cpu_avx512f()) i = ew_bits16(j, i0, i1);
#endif
#ifdef __SSE2__
    for (; i + 4 <= i1; i += 4) {
        __m128 m = lane_mask((unsigned)(j->mask[i >> 6] >> (i & 63)) & 15u);
        if (j->kind == EW_MIX) {
            __m128 f = _mm_loadu_ps(j->x + i), qv = _mm_loadu_ps(j->pre + i);
            _mm_storeu_ps(j->x + i, _mm_or_ps(_mm_and_ps(m, qv), _mm_andnot_ps(m, f)));
            _mm_storeu_ps(j->pre + i, f);
        } else {
            __m128 d = _mm_loadu_ps(j->dx + i);
            _mm_storeu_ps(j->dq + i, _mm_and_ps(m, d));
            _mm_storeu_ps(j->dx + i, _mm_andnot_ps(m, d));
        }
    }
#endif
    for (; i < i1; i++) {
        int bit = (int)((j->mask[i >> 6] >> (i & 63)) & 1);
        if (j->kind == EW_MIX) {
            const float f = j->x[i];
            if (bit) j->x[i] = j->pre[i];
            j->pre[i] = f;
        } else {
            j->dq[i] = bit ? j->dx[i] : 0;
            if (bit) j->dx[i] = 0;
        }
    }
}

static void ew_range(void *ctx, int64_t w0, int64_t w1) { /* in words of 64 elements */
    const ew_job *j = ctx;
    const int64_t i0 = w0 * 64, i1 = w1 * 64 < j->n ? w1 * 64 : j->n;
    if (j->kind == EW_KEEP) memcpy(j->pre + i0, j->x + i0, (size_t)(i1 - i0) * sizeof(float));
    else ew_bits(j, i0, i1);
}

static void ew(ew_job *j, int64_t n) {
    j->n = n;
    vitq_parallel_for_work((n + 63) / 64, 64 * 4, ew_range, j);
}

static int grow(vitq_qtap *t, int64_t n) {
    if (n <= t->pre_n) return 0;
    vitq_free(t->pre);
    free(t->mask);
    t->pre = vitq_alloc((size_t)n * sizeof(float));
    t->mask = malloc((size_t)((n + 63) / 64) * sizeof *t->mask);
    t->pre_n = t->pre && t->mask ? n : 0;
    return t->pre_n ? 0 : VITQ_ENOMEM;
}

int vitq_qtrain_forward(vitq_qmodel *q, vitq_qtap *t, vitq_view *v) {
    int64_t n = vitq_view_numel(v);
    if (grow(t, n)) {
        snprintf(q->err, sizeof q->err, "tap '%s': out of memory for the training forward", t->name);
        return VITQ_ENOMEM;
    }
    if (q->drop_prob < 1) { /* QDrop: quantized into pre; one pass puts them in x where the mask is set and
                               * the float input into pre */
        vitq_view qv = *v;
        qv.data = t->pre;
        int rc = t->plugin->quantizer->forward(t->inst, v, &qv);
        if (rc) return vitq_qtap_failed(q, t, rc, "forward");
        qdrop_mask(q, t->mask, n, q->drop_prob);
        ew(&(ew_job){.kind = EW_MIX, .x = v->data, .pre = t->pre, .mask = t->mask}, n);
        return 0;
    }
    ew(&(ew_job){.kind = EW_KEEP, .x = v->data, .pre = t->pre}, n); /* pre = x */
    int rc = t->plugin->quantizer->forward(t->inst, v, v);
    if (rc) return vitq_qtap_failed(q, t, rc, "forward");
    return 0;
}

static float *bscratch(vitq_qmodel *q, int64_t n) {
    if (n > q->bscratch_n) {
        vitq_free(q->bscratch);
        q->bscratch = vitq_alloc((size_t)n * sizeof(float));
        q->bscratch_n = q->bscratch ? n : 0;
    }
    return q->bscratch;
}

int vitq_qmodel_hook_backward(void *ctx, int tap, float *x, float *dx, int ndim, const int64_t *shape) {
    vitq_qmodel *q = ctx;
    if (tap < 0 || tap >= q->n_act || q->by_act[tap] < 0) return 0;
    vitq_qtap *t = &q->taps[q->by_act[tap]];
    if (!t->plugin || !t->training) return 0; /* float, or not learning: straight through */
    vitq_view v = {.data = t->pre, .ndim = ndim};
    for (int d = 0; d < ndim && d < 4; d++) v.shape[d] = shape[d];
    const int64_t n = vitq_view_numel(&v);
    const vitq_quantizer_ops *ops = t->plugin->quantizer;
    if (ops->backward) {
        float *dq = bscratch(q, n);
        if (!dq) {
            snprintf(q->err, sizeof q->err, "tap '%s': out of memory for the backward", t->name);
            return VITQ_ENOMEM;
        }
        vitq_view vdy = v, vdx = v;
        vdx.data = dx;
        if (q->drop_prob < 1) { /* dq: the quantized elements' gradient; dx keeps the float ones' (identity) */
            ew(&(ew_job){.kind = EW_SPLIT, .dx = dx, .dq = dq, .mask = t->mask}, n);
            vdy.data = dq;
        } else { /* every element quantized: dq = dx, and dx starts from 0 */
            memcpy(dq, dx, (size_t)n * sizeof(float));
            memset(dx, 0, (size_t)n * sizeof(float));
            vdy.data = dq;
        }
        int rc = ops->backward(t->inst, &v, &vdy, &vdx);
        if (rc) return vitq_qtap_failed(q, t, rc, "backward");
    }
    if (vitq_tap_get(q->m, tap)->restore) /* x = pre: the op before reads it (elsewhere the copy is saved) */
        ew(&(ew_job){.kind = EW_KEEP, .x = t->pre, .pre = x}, n);
    return 0;
}

/* ---- weights ------------------------------------------------------------------------------------ */

/* W = Q(src) + post for weight tap t (float taps: W = src + post). */
static int requantize_one(vitq_qmodel *q, vitq_qtap *t) {
    const int64_t n = t->w_fp->numel;
    vitq_view v = weight_view(t, t->w_fp->data), y = weight_view(t, t->w_q);
    if (!t->plugin)
        memcpy(t->w_q, t->w_fp->data, (size_t)n * sizeof(float));
    else if (t->finalized) {
        int rc = t->plugin->quantizer->forward(t->inst, &v, &y);
        if (rc) return vitq_qtap_failed(q, t, rc, "weight forward");
    }
    if (t->w_post)
        for (int64_t i = 0; i < n; i++) t->w_q[i] += t->w_post[i];
    return 0;
}

static int fail_q(vitq_qmodel *q, int rc, vitq_err *e) {
    return vitq_fail(e, rc < 0 ? rc : VITQ_EPLUGIN, "%s", q->err[0] ? q->err : "quantizer failed");
}

int vitq_qmodel_requantize(vitq_qmodel *q, int unit, vitq_err *e) {
    for (int i = 0; i < q->n_taps; i++) {
        vitq_qtap *t = &q->taps[i];
        if (t->act >= 0 || !in_unit(t, unit)) continue;
        int rc = requantize_one(q, t);
        if (rc) return fail_q(q, rc, e);
    }
    return VITQ_OK;
}

int vitq_qmodel_sync(vitq_qmodel *q, vitq_err *e) {
    const vitq_model *s = q->src;
    for (int i = 0; i < s->n_table; i++)
        if (s->table[i].tap_groups <= 0)
            memcpy(q->m->table[i].data, s->table[i].data, (size_t)s->table[i].numel * sizeof(float));
    memcpy(q->m->mlp_act, s->mlp_act, (size_t)s->n_blocks * sizeof *s->mlp_act);
    /* weights no section binds stay float: the student's values */
    for (int i = 0; i < s->n_table; i++) {
        int bound = 0;
        for (int k = 0; k < q->n_taps && !bound; k++) bound = q->taps[k].row == i;
        if (s->table[i].tap_groups > 0 && !bound)
            memcpy(q->m->table[i].data, s->table[i].data, (size_t)s->table[i].numel * sizeof(float));
    }
    return vitq_qmodel_requantize(q, -1, e);
}

int vitq_qmodel_weight(vitq_qmodel *q, const char *name, int make_post, vitq_qweight *out, vitq_err *e) {
    for (int i = 0; i < q->n_taps; i++) {
        vitq_qtap *t = &q->taps[i];
        if (t->act >= 0 || strcmp(t->name, name)) continue;
        const int64_t n = t->w_fp->numel;
        if (make_post && !t->w_post && !(t->w_post = vitq_alloc((size_t)n * sizeof(float))))
            return vitq_fail(e, VITQ_ENOMEM, "out of memory");
        if (!t->w_src_grad && !(t->w_src_grad = vitq_alloc((size_t)n * sizeof(float))))
            return vitq_fail(e, VITQ_ENOMEM, "out of memory");
        *out = (vitq_qweight){.src = t->w_fp, .src_grad = t->w_src_grad, .post = t->w_post,
                              .used_grad = q->m->grad_slab ? q->m->grad_slab + (t->w_q - q->m->slab) : NULL,
                              .unit = t->unit, .quantized = t->plugin != NULL};
        return VITQ_OK;
    }
    return vitq_fail(e, VITQ_EINVAL, "'%s' is not a weight tap of the quantized model (no [quantizer] binds it)", name);
}

int vitq_qmodel_weights_backward(vitq_qmodel *q, int unit, vitq_err *e) {
    if (!q->m->grad_slab) return vitq_fail(e, VITQ_EINVAL, "weights backward: the model has no gradients");
    for (int i = 0; i < q->n_taps; i++) {
        vitq_qtap *t = &q->taps[i];
        if (t->act >= 0 || !in_unit(t, unit)) continue;
        const int64_t n = t->w_fp->numel;
        float *used = q->m->grad_slab + (t->w_q - q->m->slab);
        if (!t->w_src_grad && !(t->w_src_grad = vitq_alloc((size_t)n * sizeof(float))))
            return vitq_fail(e, VITQ_ENOMEM, "out of memory");
        if (!t->plugin || !t->training || !t->plugin->quantizer->backward) { /* straight through */
            for (int64_t k = 0; k < n; k++) t->w_src_grad[k] += used[k];
            continue;
        }
        vitq_view x = weight_view(t, t->w_fp->data), dy = weight_view(t, used), dx = weight_view(t, t->w_src_grad);
        int rc = t->plugin->quantizer->backward(t->inst, &x, &dy, &dx);
        if (rc) return fail_q(q, vitq_qtap_failed(q, t, rc, "weight backward"), e);
    }
    return VITQ_OK;
}

/* ---- training state ------------------------------------------------------------------------------ */

int vitq_qmodel_train(vitq_qmodel *q, int unit, vitq_err *e) {
    if (q->phase != VITQ_QPHASE_CALIBRATED) return vitq_fail(e, VITQ_EINVAL, "training needs a calibrated model");
    for (int i = 0; i < q->n_taps; i++) {
        vitq_qtap *t = &q->taps[i];
        if (!t->plugin || !in_unit(t, unit) || t->training) continue;
        const vitq_quantizer_ops *ops = t->plugin->quantizer;
        vitq_view w = t->act < 0 ? weight_view(t, t->w_fp->data) : (vitq_view){0};
        int rc = ops->train ? ops->train(t->inst, t->act < 0 ? &w : NULL) : 0;
        if (rc) return fail_q(q, vitq_qtap_failed(q, t, rc, "train"), e);
        t->training = 1;
    }
    return VITQ_OK;
}

int vitq_qmodel_freeze(vitq_qmodel *q, int unit, vitq_err *e) {
    for (int i = 0; i < q->n_taps; i++) {
        vitq_qtap *t = &q->taps[i];
        if (!t->plugin || !in_unit(t, unit) || !t->training) continue;
        const vitq_quantizer_ops *ops = t->plugin->quantizer;
        int rc = ops->freeze ? ops->freeze(t->inst) : 0;
        if (rc) return fail_q(q, vitq_qtap_failed(q, t, rc, "freeze"), e);
        t->training = 0;
    }
    return vitq_qmodel_requantize(q, unit, e);
}

void vitq_qmodel_set_drop_prob(vitq_qmodel *q, double drop_prob) {
    q->drop_prob = drop_prob < 0 ? 0 : drop_prob > 1 ? 1 : drop_prob;
}

void vitq_qmodel_set_qdrop(vitq_qmodel *q, double drop_prob, uint64_t seed) {
    vitq_qmodel_set_drop_prob(q, drop_prob);
    q->qdrop_rng = seed;
}

int vitq_qmodel_trainables(vitq_qmodel *q, int unit, const char *glob, vitq_qtensor *out, char (*names)[160],
                           int max) {
    int k = 0;
    for (int i = 0; i < q->n_taps && k < max; i++) {
        vitq_qtap *t = &q->taps[i];
        if (!t->plugin || !t->training || !in_unit(t, unit) || !t->plugin->quantizer->tensors) continue;
        vitq_qtensor ts[16];
        int n = t->plugin->quantizer->tensors(t->inst, ts, 16);
        for (int j = 0; j < n && k < max; j++) {
            char name[160];
            snprintf(name, sizeof name, "%s:%s", t->name, ts[j].name);
            if (!ts[j].grad || (glob && !vitq_glob_any((char *const *)&glob, 1, name))) continue;
            if (names) snprintf(names[k], sizeof names[k], "%s", name);
            out[k++] = ts[j];
        }
    }
    return k;
}

int vitq_qmodel_regularize(vitq_qmodel *q, int unit, const vitq_reg *r, double *loss, vitq_err *e) {
    for (int i = 0; i < q->n_taps; i++) {
        vitq_qtap *t = &q->taps[i];
        if (!t->plugin || !t->training || !in_unit(t, unit) || !t->plugin->quantizer->regularize) continue;
        int rc = t->plugin->quantizer->regularize(t->inst, r, loss);
        if (rc) return fail_q(q, vitq_qtap_failed(q, t, rc, "regularize"), e);
    }
    return VITQ_OK;
}

int vitq_qmodel_project(vitq_qmodel *q, int unit, vitq_err *e) {
    for (int i = 0; i < q->n_taps; i++) {
        vitq_qtap *t = &q->taps[i];
        if (!t->plugin || !t->training || !in_unit(t, unit) || !t->plugin->quantizer->project) continue;
        int rc = t->plugin->quantizer->project(t->inst);
        if (rc) return fail_q(q, vitq_qtap_failed(q, t, rc, "project"), e);
    }
    return VITQ_OK;
}

void vitq_qmodel_zero_grad(vitq_qmodel *q, int unit) {
    vitq_qtensor ts[256];
    int n = vitq_qmodel_trainables(q, unit, NULL, ts, NULL, 256);
    for (int i = 0; i < n; i++) memset(ts[i].grad, 0, (size_t)ts[i].n * sizeof(float));
    for (int i = 0; i < q->n_taps; i++) {
        vitq_qtap *t = &q->taps[i];
        if (t->act < 0 && in_unit(t, unit) && t->w_src_grad)
            memset(t->w_src_grad, 0, (size_t)t->w_fp->numel * sizeof(float));
    }
    if (!q->m->grad_slab) return;
    for (int u = 0; u < vitq_unit_count(q->m); u++) {
        if (unit >= 0 && u != unit) continue;
        const vitq_unit *un = vitq_unit_get(q->m, u);
        for (int r = un->param_first; r < un->param_end; r++)
            memset(vitq_model_grad_of(q->m, &q->m->table[r]), 0, (size_t)q->m->table[r].numel * sizeof(float));
    }
}
