/* session_data.c — the session's images and caches: the first n images of the cell's seeded order of the
 * calibration split, the teacher's chain of unit inputs/outputs (FP_IN, FP_OUT), the quantized student's
 * chain (Q_IN: every earlier unit as it stands, no QDrop), captures of the teacher's taps, and the
 * teacher's tail (the units after one, to the logits) forward and backward for Fisher- and APH-style
 * importance. Chains hold one unit at a time and move forward lazily (going back restarts from the
 * images), so memory is a few (images x largest unit) buffers, whatever the depth. */
#include "train/train.h"

#include <stdlib.h>
#include <string.h>

void vitq_session_chains_reset(vitq_session *s) {
    s->tc.ok = s->tc.out_ok = s->sc.ok = s->sc.out_ok = s->q_ok = 0;
}

static void chain_free(vitq_chain *c) {
    vitq_free(c->in);
    vitq_free(c->out);
    vitq_acts_free(c->acts);
    c->in = c->out = NULL;
    c->acts = NULL;
}

void vitq_session_data_free(vitq_session *s) {
    vitq_free(s->images);
    chain_free(&s->tc);
    chain_free(&s->sc);
    vitq_free(s->q_in);
    vitq_free(s->q_out);
    vitq_acts_free(s->qa_eval);
    vitq_acts_free(s->tail_a);
    vitq_grad_acts_free(s->tail_g);
    vitq_acts_free(s->tu_a);
    s->images = s->q_in = s->q_out = NULL;
    s->qa_eval = s->tail_a = s->tu_a = NULL;
    s->tail_g = NULL;
}

int vitq_ss_images(vitq_session *s, int n) {
    if (n < 1 || n > s->c.n_order)
        return vitq_ss_fail(s, VITQ_EINVAL, "images: %d requested, the calibration split holds %lld", n,
                            (long long)s->c.n_order);
    const vitq_model *m = s->tm;
    s->most = 0;
    for (int u = 0; u < vitq_unit_count(m); u++) {
        const vitq_unit *un = vitq_unit_get(m, u);
        s->most = un->in_numel > s->most ? un->in_numel : s->most;
        s->most = un->out_numel > s->most ? un->out_numel : s->most;
    }
    vitq_session_data_free(s);
    const int64_t per = vitq_unit_get(m, 0)->in_numel;
    s->images = vitq_alloc((size_t)(n * per) * sizeof(float));
    s->tc.in = vitq_alloc((size_t)(n * s->most) * sizeof(float));
    s->tc.out = vitq_alloc((size_t)(n * s->most) * sizeof(float));
    s->sc.in = vitq_alloc((size_t)(n * s->most) * sizeof(float));
    s->sc.out = vitq_alloc((size_t)(n * s->most) * sizeof(float));
    s->q_in = vitq_alloc((size_t)(n * s->most) * sizeof(float));
    s->q_out = vitq_alloc((size_t)(n * s->most) * sizeof(float));
    if (!s->images || !s->tc.in || !s->tc.out || !s->sc.in || !s->sc.out || !s->q_in || !s->q_out)
        return vitq_ss_fail(s, VITQ_ENOMEM, "images: out of memory for %d images' caches", n);
    vitq_err e;
    int rc = VITQ_OK;
    for (int64_t b0 = 0; !rc && b0 < n; b0 += 256) {
        int B = (int)(n - b0 < 256 ? n - b0 : 256);
        rc = vitq_dataset_load(s->c.data, s->c.order + b0, B, s->images + b0 * per, NULL, &e);
    }
    if (rc) return vitq_ss_fail(s, rc, "%s", e.msg);
    s->n = n;
    vitq_session_chains_reset(s);
    return VITQ_OK;
}

/* out (n, unit u's output) = unit u of model m (eval acts *a, made lazily) over in (n, unit u's input). */
static int run_unit(vitq_session *s, vitq_model *m, vitq_acts **a, int u, const float *in, float *out) {
    vitq_err e;
    const vitq_unit *un = vitq_unit_get(m, u);
    int rc = *a ? VITQ_OK : vitq_acts_create(m, s->c.batch, 0, a, &e);
    for (int64_t b0 = 0; !rc && b0 < s->n; b0 += s->c.batch) {
        int B = (int)(s->n - b0 < s->c.batch ? s->n - b0 : s->c.batch);
        memcpy(vitq_unit_in(m, *a, u), in + b0 * un->in_numel, (size_t)(B * un->in_numel) * sizeof(float));
        rc = vitq_forward_units(m, *a, u, u + 1, B, &e);
        if (!rc) memcpy(out + b0 * un->out_numel, vitq_unit_out(m, *a, u), (size_t)(B * un->out_numel) * sizeof(float));
    }
    return rc ? vitq_ss_fail(s, rc, "%s: %s", un->name, e.msg) : VITQ_OK;
}

/* Moves chain c to unit u: c->in = the input of unit u over the images. */
static int chain_to(vitq_session *s, vitq_chain *c, int u) {
    if (!s->images) return vitq_ss_fail(s, VITQ_EINVAL, "call images(n) before using the caches");
    if (!c->ok || u < c->unit) {
        memcpy(c->in, s->images, (size_t)(s->n * vitq_unit_get(c->m, 0)->in_numel) * sizeof(float));
        c->unit = 0, c->ok = 1, c->out_ok = 0;
    }
    while (c->unit < u) {
        if (!c->out_ok) {
            int rc = run_unit(s, c->m, &c->acts, c->unit, c->in, c->out);
            if (rc) return rc;
        }
        float *t = c->in;
        c->in = c->out, c->out = t;
        c->unit++, c->out_ok = 0;
    }
    return VITQ_OK;
}

/* Moves the quantized student's chain to unit u: q_in = Q_IN(u). */
static int student_to(vitq_session *s, int u) {
    if (!s->q) return vitq_ss_fail(s, VITQ_EINVAL, "Q_IN: there is no quantized model before calibration");
    vitq_model *m = vitq_qmodel_model(s->q);
    if (!s->q_ok || u < s->q_unit) {
        memcpy(s->q_in, s->images, (size_t)(s->n * vitq_unit_get(m, 0)->in_numel) * sizeof(float));
        s->q_unit = 0, s->q_ok = 1;
    }
    vitq_qmodel_stats_enable(s->q, 0);
    vitq_qmodel_set_drop_prob(s->q, 1);
    for (; s->q_unit < u; s->q_unit++) {
        int rc = run_unit(s, m, &s->qa_eval, s->q_unit, s->q_in, s->q_out);
        if (rc) return rc;
        float *t = s->q_in;
        s->q_in = s->q_out, s->q_out = t;
    }
    return VITQ_OK;
}

/* Samples [b0, b1) of an io gather: row idx[b] of src (per values each) to row b of out. */
typedef struct {
    const float *src;
    const int64_t *idx;
    float *out;
    int64_t per;
} gather_job;

static void gather_rows(void *ctx, int64_t b0, int64_t b1) {
    const gather_job *j = ctx;
    for (int64_t b = b0; b < b1; b++)
        memcpy(j->out + b * j->per, j->src + j->idx[b] * j->per, (size_t)j->per * sizeof(float));
}

int vitq_ss_io(vitq_session *s, int u, vitq_io_kind which, const int64_t *idx, int B, float *out) {
    const vitq_unit *un = vitq_unit_get(s->tm, u);
    if (!un) return vitq_ss_fail(s, VITQ_EINVAL, "io: unit %d out of range", u);
    int rc = which == VITQ_IO_Q_IN ? student_to(s, u) : chain_to(s, &s->tc, u);
    if (!rc && which == VITQ_IO_FP_OUT && !s->tc.out_ok) {
        rc = run_unit(s, s->tm, &s->tc.acts, u, s->tc.in, s->tc.out);
        s->tc.out_ok = rc == VITQ_OK;
    }
    if (rc) return rc;
    for (int b = 0; b < B; b++)
        if (idx[b] < 0 || idx[b] >= s->n) return vitq_ss_fail(s, VITQ_EINVAL, "io: sample %lld of %lld", (long long)idx[b], (long long)s->n);
    gather_job j = {which == VITQ_IO_Q_IN ? s->q_in : which == VITQ_IO_FP_IN ? s->tc.in : s->tc.out, idx, out,
                    which == VITQ_IO_FP_OUT ? un->out_numel : un->in_numel};
    vitq_parallel_for_work(B, j.per / 4, gather_rows, &j); /* a copy: ~1/4 of a flop's time per value */
    return VITQ_OK;
}

/* ---- captures of the teacher's taps --------------------------------------------------------------- */
typedef struct {
    int tap;
    float *out;
    int64_t per, row0;
} cap_ctx;

static int cap_hook(void *ctx, int tap, float *x, int ndim, const int64_t *shape) {
    cap_ctx *c = ctx;
    int64_t n = 1; /* the call's values: B images' worth (B * windows rows for Swin's window taps) */
    for (int d = 0; d < ndim; d++) n *= shape[d];
    if (tap == c->tap && c->out) memcpy(c->out + c->row0 * c->per, x, (size_t)n * sizeof(float));
    return 0;
}

int vitq_ss_capture(vitq_session *s, const char *tap, int student, float *out, int64_t *numel) {
    vitq_chain *ch = student ? &s->sc : &s->tc;
    vitq_model *m = ch->m;
    int id = -1, u = -1;
    char name[96];
    for (int t = 0; t < vitq_tap_count(m) && id < 0; t++)
        if (!strcmp(vitq_tap_name(m, t, name, sizeof name), tap)) id = t;
    for (int k = 0; k < vitq_unit_count(m); k++)
        if (id >= vitq_unit_get(m, k)->tap_first && id < vitq_unit_get(m, k)->tap_end) u = k;
    if (id < 0 || u < 0) return vitq_ss_fail(s, VITQ_EINVAL, "capture: no tap named '%s'", tap);
    cap_ctx c = {.tap = id, .out = out, .per = 1};
    c.per = vitq_tap_numel_per_image(m, id);
    if (numel) *numel = c.per;
    if (!out) return VITQ_OK;
    int rc = chain_to(s, ch, u);
    if (rc) return rc;
    vitq_tap_hooks h = {.act = cap_hook, .ctx = &c};
    const vitq_tap_hooks *saved = m->hooks;
    m->hooks = &h;
    c.row0 = 0;
    /* run_unit with the hook: rows advance by batch; the hook writes at row0 */
    const vitq_unit *un = vitq_unit_get(m, u);
    vitq_err e;
    rc = ch->acts ? VITQ_OK : vitq_acts_create(m, s->c.batch, 0, &ch->acts, &e);
    for (int64_t b0 = 0; !rc && b0 < s->n; b0 += s->c.batch) {
        int B = (int)(s->n - b0 < s->c.batch ? s->n - b0 : s->c.batch);
        c.row0 = b0;
        memcpy(vitq_unit_in(m, ch->acts, u), ch->in + b0 * un->in_numel, (size_t)(B * un->in_numel) * sizeof(float));
        rc = vitq_forward_units(m, ch->acts, u, u + 1, B, &e);
        if (!rc) memcpy(ch->out + b0 * un->out_numel, vitq_unit_out(m, ch->acts, u), (size_t)(B * un->out_numel) * sizeof(float));
    }
    m->hooks = saved;
    ch->out_ok = rc == VITQ_OK;
    return rc ? vitq_ss_fail(s, rc, "capture %s: %s", tap, e.msg) : VITQ_OK;
}

/* ---- the teacher's tail and single units ------------------------------------------------------------ */
static int tail_buffers(vitq_session *s, int B) {
    if (s->tail_a && B <= s->tail_b) return VITQ_OK;
    vitq_acts_free(s->tail_a);
    vitq_grad_acts_free(s->tail_g);
    s->tail_a = NULL, s->tail_g = NULL;
    vitq_err e;
    int rc = vitq_model_alloc_grads(s->tm, &e);
    if (!rc) rc = vitq_acts_create(s->tm, B, 1, &s->tail_a, &e);
    if (!rc) rc = vitq_grad_acts_create(s->tm, B, &s->tail_g, &e);
    s->tail_b = rc ? 0 : B;
    return rc ? vitq_ss_fail(s, rc, "tail: %s", e.msg) : VITQ_OK;
}

int vitq_ss_tail_forward(vitq_session *s, int u0, const float *x, int B, float *logits) {
    vitq_model *m = s->tm;
    const int U = vitq_unit_count(m);
    if (u0 < 0 || u0 >= U) return vitq_ss_fail(s, VITQ_EINVAL, "tail_forward: unit %d out of range", u0);
    int rc = tail_buffers(s, B);
    if (rc) return rc;
    vitq_err e;
    memcpy(vitq_unit_in(m, s->tail_a, u0), x, (size_t)(B * vitq_unit_get(m, u0)->in_numel) * sizeof(float));
    rc = vitq_forward_units(m, s->tail_a, u0, U, B, &e);
    if (rc) return vitq_ss_fail(s, rc, "tail_forward: %s", e.msg);
    memcpy(logits, vitq_unit_out(m, s->tail_a, U - 1), (size_t)(B * vitq_unit_get(m, U - 1)->out_numel) * sizeof(float));
    return VITQ_OK;
}

int vitq_ss_tail_backward(vitq_session *s, int u0, const float *dlogits, int B, float *dx) {
    vitq_model *m = s->tm;
    const int U = vitq_unit_count(m);
    if (!s->tail_a || B > s->tail_b || u0 < 0 || u0 >= U)
        return vitq_ss_fail(s, VITQ_EINVAL, "tail_backward: call tail_forward(%d) with the same batch first", u0);
    vitq_err e;
    memcpy(vitq_unit_dout(m, s->tail_g, U - 1), dlogits, (size_t)(B * vitq_unit_get(m, U - 1)->out_numel) * sizeof(float));
    m->grad_skip = VITQ_GRAD_SKIP_AUX | VITQ_GRAD_SKIP_WEIGHTS; /* only dx leaves: the teacher's grads are unread */
    int rc = vitq_backward_units(m, s->tail_a, s->tail_g, u0, U, B, &e);
    m->grad_skip = 0;
    if (rc) return vitq_ss_fail(s, rc, "tail_backward: %s", e.msg);
    const float *d = vitq_unit_din(m, s->tail_g, u0);
    if (dx && !d) return vitq_ss_fail(s, VITQ_EINVAL, "tail_backward: unit %d's input gets no gradient", u0);
    if (dx) memcpy(dx, d, (size_t)(B * vitq_unit_get(m, u0)->in_numel) * sizeof(float));
    return VITQ_OK;
}

int vitq_ss_teacher_forward(vitq_session *s, int u, const float *x, int B, float *y) {
    vitq_model *m = s->tm;
    if (u < 0 || u >= vitq_unit_count(m)) return vitq_ss_fail(s, VITQ_EINVAL, "teacher_forward: unit %d out of range", u);
    vitq_err e;
    int rc = VITQ_OK;
    if (!s->tu_a || B > s->tu_b) {
        vitq_acts_free(s->tu_a);
        s->tu_a = NULL;
        rc = vitq_acts_create(m, B, 0, &s->tu_a, &e);
        s->tu_b = rc ? 0 : B;
    }
    if (!rc) {
        memcpy(vitq_unit_in(m, s->tu_a, u), x, (size_t)(B * vitq_unit_get(m, u)->in_numel) * sizeof(float));
        rc = vitq_forward_units(m, s->tu_a, u, u + 1, B, &e);
    }
    if (rc) return vitq_ss_fail(s, rc, "teacher_forward: %s", e.msg);
    memcpy(y, vitq_unit_out(m, s->tu_a, u), (size_t)(B * vitq_unit_get(m, u)->out_numel) * sizeof(float));
    return VITQ_OK;
}
