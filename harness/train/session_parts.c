/* session_parts.c — a reconstruction step's forward and backward split over the pool's threads by images:
 * part k of P takes images [B·k/P, B·(k+1)/P) through the unit on its own thread (qpart.c: a shadow of the
 * model, clones of the activation quantizers), so no barrier stands between the ops of a step. Split by
 * ops instead (one parallel_for per op), a 2-thread step waited at ~76 barriers and spent 14 % of its time
 * there. The parts' gradients are then added to the unit's in part order, so the numbers are fixed for a
 * given thread count (not equal to one batch's: a weight's gradient is summed over P groups of rows).
 *
 * On when the session's configuration says so ([run] data_parallel, off by default), the pool has 2 threads or
 * more, the batch has an image per thread, and every activation quantizer of the unit can be cloned
 * (vitq_qpart_supported); else steps run as one batch. */
#include "train/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct vitq_ss_parts {
    int n;                      /* parts of the unit in training; 0: one batch at a time */
    int n_acts, cap;            /* activation buffers made (kept across units, as the session's own), images each */
    vitq_qpart *q[VITQ_MAX_PARTS];
    vitq_acts *a[VITQ_MAX_PARTS];
    vitq_grad_acts *g[VITQ_MAX_PARTS];
    int rc[VITQ_MAX_PARTS];
    vitq_err e[VITQ_MAX_PARTS];
} ss_parts;

int vitq_ss_parts_active(const vitq_session *s) { return s->parts && s->parts->n > 0; }

void vitq_ss_parts_end(vitq_session *s) {
    ss_parts *p = s->parts;
    if (!p) return;
    for (int k = 0; k < p->n; k++) vitq_qpart_free(p->q[k]), p->q[k] = NULL;
    p->n = 0;
}

void vitq_ss_parts_free(vitq_session *s) {
    ss_parts *p = s->parts;
    if (!p) return;
    vitq_ss_parts_end(s);
    for (int k = 0; k < p->n_acts; k++) vitq_acts_free(p->a[k]), vitq_grad_acts_free(p->g[k]);
    free(p);
    s->parts = NULL;
}

/* P activation buffers of at least `images` images each (a page-faulted buffer is dear here: made once). */
static int part_acts(vitq_session *s, int P, int images, vitq_err *e) {
    ss_parts *p = s->parts;
    if (p->n_acts >= P && p->cap >= images) return VITQ_OK;
    for (int k = 0; k < p->n_acts; k++) {
        vitq_acts_free(p->a[k]), vitq_grad_acts_free(p->g[k]);
        p->a[k] = NULL, p->g[k] = NULL;
    }
    p->n_acts = 0;
    const vitq_model *m = vitq_qmodel_model(s->q);
    for (int k = 0; k < P; k++) {
        int rc = vitq_acts_create(m, images, 0, &p->a[k], e);
        if (!rc) rc = vitq_grad_acts_create(m, images, &p->g[k], e);
        p->n_acts = k + 1;
        if (rc) return rc;
    }
    p->cap = images;
    return VITQ_OK;
}

int vitq_ss_parts_begin(vitq_session *s, int u, int batch, vitq_err *e) {
    vitq_ss_parts_end(s);
    int P = vitq_threads_get();
    if (P > VITQ_MAX_PARTS) P = VITQ_MAX_PARTS;
    if (!s->c.data_parallel) return VITQ_OK;
    char why[sizeof s->dp_why] = "";
    if (P < 2) snprintf(why, sizeof why, "1 thread");
    else if (batch < P) snprintf(why, sizeof why, "batch %d < %d threads", batch, P);
    if (why[0] || !vitq_qpart_supported(s->q, u, why, sizeof why)) {
        if (!s->dp_whole++) snprintf(s->dp_why, sizeof s->dp_why, "%s", why);
        return VITQ_OK;
    }
    s->dp_parts++;
    if (!s->parts && !(s->parts = calloc(1, sizeof *s->parts))) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    ss_parts *p = s->parts;
    int rc = part_acts(s, P, (batch + P - 1) / P, e);
    for (int k = 0; !rc && k < P; k++) {
        rc = vitq_qpart_create(s->q, u, k, P, &p->q[k], e);
        p->n = k + (rc ? 0 : 1);
    }
    if (rc) vitq_ss_parts_end(s);
    return rc;
}

typedef struct {
    vitq_session *s;
    int u, B, backward;
    const float *x, *dy;
    float *y, *dx;
    unsigned skip;
} part_job;

/* Part k's images [B·k/P, B·(k+1)/P) through the unit: forward (x -> y) or backward (dy -> dx, its gradients). */
static void run_part(const part_job *j, ss_parts *p, int k) {
    vitq_model *m = vitq_qpart_qmodel(p->q[k])->m;
    const vitq_unit *un = vitq_unit_get(m, j->u);
    const int P = p->n, b0 = (int)((int64_t)j->B * k / P), nb = (int)((int64_t)j->B * (k + 1) / P) - b0;
    const size_t in = (size_t)(nb * un->in_numel) * sizeof(float), out = (size_t)(nb * un->out_numel) * sizeof(float);
    if (!j->backward) {
        memcpy(vitq_unit_in(m, p->a[k], j->u), j->x + b0 * un->in_numel, in);
        p->rc[k] = vitq_forward_units(m, p->a[k], j->u, j->u + 1, nb, &p->e[k]);
        if (!p->rc[k]) memcpy(j->y + b0 * un->out_numel, vitq_unit_out(m, p->a[k], j->u), out);
        return;
    }
    memcpy(vitq_unit_dout(m, p->g[k], j->u), j->dy + b0 * un->out_numel, out);
    m->grad_skip = j->skip;
    p->rc[k] = vitq_backward_units(m, p->a[k], p->g[k], j->u, j->u + 1, nb, &p->e[k]);
    m->grad_skip = 0;
    const float *d = vitq_unit_din(m, p->g[k], j->u);
    if (!p->rc[k] && j->dx && d) memcpy(j->dx + b0 * un->in_numel, d, in);
}

/* The pool task: parts [k0, k1) on this thread, their nested loops as one chunk each. */
static void parts_task(void *ctx, int64_t k0, int64_t k1) {
    const part_job *j = ctx;
    vitq_parallel_solo(1);
    for (int64_t k = k0; k < k1; k++) run_part(j, j->s->parts, (int)k);
    vitq_parallel_solo(0);
}

/* The first failed part's code, its message in e (the quantizer's, when it has one). */
static int first_failure(ss_parts *p, vitq_err *e) {
    for (int k = 0; k < p->n; k++) {
        if (!p->rc[k]) continue;
        const char *qe = vitq_qmodel_error(vitq_qpart_qmodel(p->q[k]));
        return vitq_fail(e, p->rc[k], "%s", qe[0] ? qe : p->e[k].msg);
    }
    return VITQ_OK;
}

int vitq_ss_parts_forward(vitq_session *s, int u, const float *x, int B, float *y, vitq_err *e) {
    ss_parts *p = s->parts;
    for (int k = 0; k < p->n; k++) {
        int rc = vitq_qpart_sync(p->q[k], e);
        if (rc) return rc;
        p->rc[k] = 0;
    }
    part_job j = {.s = s, .u = u, .B = B, .x = x, .y = y};
    vitq_parallel_for(p->n, parts_task, &j);
    return first_failure(p, e);
}

int vitq_ss_parts_backward(vitq_session *s, int u, const float *dy, int B, float *dx, unsigned skip, vitq_err *e) {
    ss_parts *p = s->parts;
    for (int k = 0; k < p->n; k++) p->rc[k] = 0;
    part_job j = {.s = s, .u = u, .B = B, .backward = 1, .dy = dy, .dx = dx, .skip = skip};
    vitq_parallel_for(p->n, parts_task, &j);
    int rc = first_failure(p, e);
    if (!rc) vitq_qpart_reduce(p->q, p->n);
    return rc;
}
