/* qcalib.c — the forward's hook and calibration. In the hook a bound activation tap is observed and
 * finalized (sequential calibration: later taps see quantized inputs), only observed (float calibration),
 * or fake-quantized and measured (after calibration). vitq_qmodel_calibrate quantizes the weights into
 * the clone, then runs one forward of the calibration images through the hook.
 * Does not: choose the calibration images (the data layer does) or keep per-tap state beyond the qtap. */
#include "quant/quant.h"

#include <math.h>
#include <string.h>

int vitq_qtap_failed(vitq_qmodel *q, vitq_qtap *t, int rc, const char *op) {
    if (t->hctx.failed)
        snprintf(q->err, sizeof q->err, "%s", t->hctx.msg);
    else
        snprintf(q->err, sizeof q->err, "plugin '%s' on tap '%s': %s failed (code %d)", t->plugin->name, t->name, op, rc);
    return rc < 0 ? rc : VITQ_EPLUGIN;
}

int vitq_qmodel_hook(void *ctx, int tap, float *x, int ndim, const int64_t *shape) {
    vitq_qmodel *q = ctx;
    if (tap < 0 || tap >= q->n_act || q->by_act[tap] < 0) return 0;
    vitq_qtap *t = &q->taps[q->by_act[tap]];
    if (!t->plugin) return 0;
    const vitq_quantizer_ops *ops = t->plugin->quantizer;
    vitq_view v = {.data = x, .ndim = ndim};
    for (int d = 0; d < ndim && d < 4; d++) v.shape[d] = shape[d];
    int64_t n = vitq_view_numel(&v);
    int rc;
    switch (q->phase) {
    case VITQ_QPHASE_SEQUENTIAL:
        if (t->finalized) break; /* a tap seen twice: already quantized from the first time */
        vitq_qstats_minmax(t, x, n);
        if ((rc = ops->observe(t->inst, &v))) return vitq_qtap_failed(q, t, rc, "observe");
        if (ops->finalize && (rc = ops->finalize(t->inst))) return vitq_qtap_failed(q, t, rc, "finalize");
        t->finalized = 1;
        break;
    case VITQ_QPHASE_FLOAT:
        vitq_qstats_minmax(t, x, n);
        if ((rc = ops->observe(t->inst, &v))) return vitq_qtap_failed(q, t, rc, "observe");
        return 0; /* observe only: later taps see float values */
    case VITQ_QPHASE_CALIBRATED:
        if (t->training) return vitq_qtrain_forward(q, t, &v);
        break;
    default:
        snprintf(q->err, sizeof q->err, "tap '%s': the quantized model is used before vitq_qmodel_calibrate", t->name);
        return VITQ_EINVAL;
    }
    if (q->phase == VITQ_QPHASE_CALIBRATED && (q->stats_on || t->hist >= 0)) {
        if (n > q->scratch_n) {
            vitq_free(q->scratch);
            q->scratch = vitq_alloc((size_t)n * sizeof(float));
            q->scratch_n = q->scratch ? n : 0;
            if (!q->scratch) {
                snprintf(q->err, sizeof q->err, "tap '%s': out of memory", t->name);
                return VITQ_ENOMEM;
            }
        }
        vitq_view y = v;
        y.data = q->scratch;
        if ((rc = ops->forward(t->inst, &v, &y))) return vitq_qtap_failed(q, t, rc, "forward");
        vitq_qstats_measure(q, t, x, q->scratch, n, x); /* copies the quantized values back into x as it goes */
        return 0;
    }
    if ((rc = ops->forward(t->inst, &v, &v))) return vitq_qtap_failed(q, t, rc, "forward");
    return 0;
}

int vitq_qmodel_calibrate(vitq_qmodel *q, const float *images, int B, const char *mode, vitq_err *e) {
    int seq;
    if (!mode || strcmp(mode, "sequential") == 0)
        seq = 1;
    else if (strcmp(mode, "float") == 0)
        seq = 0;
    else if (strcmp(mode, "search") == 0)
        return vitq_qmodel_calibrate_search(q, images, B, 3, e);
    else
        return vitq_fail(e, VITQ_EINVAL, "calibration mode '%s': expected sequential, float or search", mode);
    if (q->phase != VITQ_QPHASE_CREATED) return vitq_fail(e, VITQ_EINVAL, "the quantized model is already calibrated");
    if (B < 1) return vitq_fail(e, VITQ_EINVAL, "calibration needs at least one image, got %d", B);
    int rc;
    /* Weights: observe, finalize, forward into the clone. */
    for (int i = 0; i < q->n_taps; i++) {
        vitq_qtap *t = &q->taps[i];
        if (t->act >= 0 || !t->plugin) continue;
        const vitq_quantizer_ops *ops = t->plugin->quantizer;
        vitq_view v = {.data = t->w_fp->data, .ndim = t->w_fp->ndim};
        for (int d = 0; d < v.ndim && d < 4; d++) v.shape[d] = t->w_fp->shape[d];
        vitq_view y = v;
        y.data = t->w_q;
        vitq_qstats_minmax(t, v.data, t->w_fp->numel);
        if ((rc = ops->observe(t->inst, &v)) || (ops->finalize && (rc = ops->finalize(t->inst))) ||
            (rc = ops->forward(t->inst, &v, &y))) {
            vitq_qtap_failed(q, t, rc, "weight quantization");
            return vitq_fail(e, rc < 0 ? rc : VITQ_EPLUGIN, "%s", q->err);
        }
        t->finalized = 1;
        int save_hist = t->hist;
        t->hist = -1;
        vitq_qstats_measure(q, t, v.data, y.data, t->w_fp->numel, NULL);
        t->hist = save_hist;
    }
    /* Activations: one forward of the B images through the hooks. */
    int any_act = 0;
    for (int i = 0; i < q->n_taps; i++) any_act |= q->taps[i].act >= 0 && q->taps[i].plugin != NULL;
    if (any_act) {
        vitq_acts *a = NULL;
        if ((rc = vitq_acts_create(q->m, B, 0, &a, e))) return rc;
        q->phase = seq ? VITQ_QPHASE_SEQUENTIAL : VITQ_QPHASE_FLOAT;
        q->err[0] = 0;
        rc = vitq_forward(q->m, a, images, B, e);
        vitq_acts_free(a);
        if (rc) {
            q->phase = VITQ_QPHASE_CREATED;
            if (q->err[0]) return vitq_fail(e, rc, "calibration: %s", q->err);
            return rc;
        }
        for (int i = 0; i < q->n_taps; i++) {
            vitq_qtap *t = &q->taps[i];
            if (t->act < 0 || !t->plugin) continue;
            if (!(t->cal_min <= t->cal_max)) {
                q->phase = VITQ_QPHASE_CREATED;
                return vitq_fail(e, VITQ_EINVAL, "calibration: tap '%s' was never reached by the forward pass", t->name);
            }
            if (!seq && t->plugin->quantizer->finalize && (rc = t->plugin->quantizer->finalize(t->inst))) {
                q->phase = VITQ_QPHASE_CREATED;
                vitq_qtap_failed(q, t, rc, "finalize");
                return vitq_fail(e, rc < 0 ? rc : VITQ_EPLUGIN, "calibration: %s", q->err);
            }
            t->finalized = 1;
        }
    }
    q->phase = VITQ_QPHASE_CALIBRATED;
    return VITQ_OK;
}
