/* aph_importance.h — the importance map H that weights aph_recon's reconstruction error (specs/aphq-vit.md
 * §3), header-only so that tests check it against an independent computation:
 *   none     H ≡ 1 (plain MSE: QDrop's, the BRECQ baselines');
 *   fisher   BRECQ's (§3.4, `optim_metric = hessian_brecq`): the squared gradient of
 *            KL(p_teacher ‖ softmax(f(O)/T)) ("batchmean" over `batch` samples) with respect to the
 *            unit output O, at O = the unit's FLOAT output on the partly quantized input (the teacher's
 *            unit on Q_IN), f = the teacher's units after it; per sample, or averaged over the images.
 * The APHQ-ViT issue adds `aph` (§3.2, the reference's perturbation) and `aph_diag` (§3.5 b) here: a new
 * APH_IMP_* value, its choice in APH_IMP_CHOICES, and a branch in aph_imp_compute; the loss reads H
 * through aph_imp_row only. Maps are normalised to mean 1 over all their entries (the reference's
 * H·numel/ΣH, §3.2 step 5; a constant factor, which the `current` loss form's first-iteration division
 * cancels anyway). */
#ifndef APH_IMPORTANCE_H
#define APH_IMPORTANCE_H

#include "vitq_plugin.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { APH_IMP_NONE = 0, APH_IMP_FISHER = 1 }; /* next: APH_IMP_APH, APH_IMP_APH_DIAG (the APHQ-ViT issue) */
#define APH_IMP_CHOICES "none|fisher"

/* Whether importance `imp` is per sample when the user leaves per_sample = auto: the reference's choice
 * (fisher: per sample, §3.4; APH: averaged, use_mean_hessian = True). */
static inline int aph_imp_auto_per_sample(int imp) { return imp == APH_IMP_FISHER; }

/* A unit's map: rows = the images (per sample) or 1 (averaged), P = the unit's output per sample. */
typedef struct {
    float *map; /* NULL: H ≡ 1 */
    int64_t rows, P;
} aph_imp;

/* H for sample `sample` (an index into the pass's images), NULL for H ≡ 1. */
static inline const float *aph_imp_row(const aph_imp *m, int64_t sample) {
    return m->map ? m->map + (m->rows == 1 ? 0 : sample) * m->P : NULL;
}

static inline void aph_imp_free(aph_imp *m) {
    free(m->map);
    m->map = NULL;
}

/* Softmax of one row of K logits divided by T, in double, into p. */
static inline void aph_softmax_t(const float *z, int64_t K, double T, double *p) {
    double mx = z[0] / T, sum = 0;
    for (int64_t k = 1; k < K; k++) mx = fmax(mx, z[k] / T);
    for (int64_t k = 0; k < K; k++) sum += (p[k] = exp(z[k] / T - mx));
    for (int64_t k = 0; k < K; k++) p[k] /= sum;
}

/* probs (n x K) = softmax(teacher logits / T) over the pass's n images (the head unit's FP_OUT: the
 * reference's raw_pred_softmaxs, §2.9). */
static inline int aph_teacher_probs(vitq_session *s, const vitq_session_api *api, int n, int batch, double T,
                                    float *probs) {
    const int U = api->n_units(s);
    vitq_unit_info hi;
    int rc = api->unit(s, U - 1, &hi);
    const int64_t K = hi.out_numel;
    float *z = malloc(sizeof *z * (size_t)(batch * K));
    double *p = malloc(sizeof *p * (size_t)K);
    int64_t *idx = malloc(sizeof *idx * (size_t)batch);
    if (!rc && (!z || !p || !idx)) rc = VITQ_ENOMEM;
    for (int b0 = 0; !rc && b0 < n; b0 += batch) {
        int B = n - b0 < batch ? n - b0 : batch;
        for (int b = 0; b < B; b++) idx[b] = b0 + b;
        rc = api->io(s, U - 1, VITQ_IO_FP_OUT, idx, B, z);
        for (int b = 0; !rc && b < B; b++) {
            aph_softmax_t(z + b * K, K, T, p);
            for (int64_t k = 0; k < K; k++) probs[(b0 + b) * K + k] = (float)p[k];
        }
    }
    free(z), free(p), free(idx);
    return rc;
}

/* Scratch of aph_kl_grad for batches up to B. */
typedef struct {
    float *O, *z;
    double *q;
    int64_t K;
} aph_kl_scratch;

/* g (B x P) = ∂/∂O of KL(p ‖ softmax(f(O)/T)) / M (torch's kl_div "batchmean" over a batch of M), O = the
 * teacher's unit u on the B unit inputs x, f = the teacher's units after u (u is not the head). p: the B
 * samples' teacher probabilities (B x K). dKL/dlogits = (softmax(logits/T) − p) / (T·M); the tail carries
 * it back to O. Samples do not interact, so each row is that sample's gradient whatever B is. */
static inline int aph_kl_grad(vitq_session *s, const vitq_session_api *api, int u, const float *x, int B, int M,
                              double T, const float *p, aph_kl_scratch *w, float *g) {
    int rc = api->teacher_forward(s, u, x, B, w->O);
    if (!rc) rc = api->tail_forward(s, u + 1, w->O, B, w->z);
    if (rc) return rc;
    const int64_t K = w->K;
    for (int b = 0; b < B; b++) {
        aph_softmax_t(w->z + b * K, K, T, w->q);
        for (int64_t k = 0; k < K; k++) w->z[b * K + k] = (float)((w->q[k] - (double)p[b * K + k]) / (T * M));
    }
    return api->tail_backward(s, u + 1, w->z, B, g);
}

/* Mean 1 over every entry (§3.2 step 5). A map that is all zeros (the partly quantized input equals the
 * float one and the student the teacher: nothing to weigh) is dropped: H ≡ 1, with a warning. */
static inline void aph_imp_normalise(aph_imp *m, const vitq_host *host, const char *unit) {
    const int64_t n = m->rows * m->P;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += m->map[i];
    if (!(sum > 0) || !isfinite(sum)) {
        host->log(host, VITQ_LOG_WARN, "%s: the importance map sums to %g; using H = 1", unit, sum);
        aph_imp_free(m);
        return;
    }
    const double f = (double)n / sum;
    for (int64_t i = 0; i < n; i++) m->map[i] = (float)(m->map[i] * f);
}

/* BRECQ's Fisher map of unit u over the n images (§3.4): the KL's "batchmean" divides by `batch` (the
 * reference's loader batch), computed `chunk` samples at a time (the teacher tail keeps every unit's
 * activations for its backward: chunks smaller than the batch bound that memory without changing a
 * sample's gradient); per sample g² (rows = n), or averaged over the images (rows = 1); normalised to
 * mean 1. probs: the teacher's probabilities (aph_teacher_probs). Progress as "<unit> fisher";
 * VITQ_ECANCELLED on Ctrl-C. */
static inline int aph_fisher(vitq_session *s, const vitq_session_api *api, const vitq_host *host, int u, int n,
                             int batch, int chunk, double T, const float *probs, int per_sample, aph_imp *out) {
    vitq_unit_info ui, hi;
    int rc = api->unit(s, u, &ui);
    if (!rc) rc = api->unit(s, api->n_units(s) - 1, &hi);
    if (rc) return rc;
    const int64_t P = ui.out_numel, K = hi.out_numel;
    *out = (aph_imp){.rows = per_sample ? n : 1, .P = P};
    out->map = calloc((size_t)(out->rows * P), sizeof *out->map);
    double *acc = per_sample ? NULL : calloc((size_t)P, sizeof *acc);
    float *x = malloc(sizeof *x * (size_t)(chunk * ui.in_numel)), *g = malloc(sizeof *g * (size_t)(chunk * P));
    int64_t *idx = malloc(sizeof *idx * (size_t)chunk);
    aph_kl_scratch w = {malloc(sizeof(float) * (size_t)(chunk * P)), malloc(sizeof(float) * (size_t)(chunk * K)),
                        malloc(sizeof(double) * (size_t)K), K};
    if (!out->map || (!per_sample && !acc) || !x || !g || !idx || !w.O || !w.z || !w.q)
        rc = host->fail(host, VITQ_ENOMEM, "%s: out of memory for the Fisher map (%d x %lld)", ui.name, n,
                        (long long)P);
    char label[96];
    snprintf(label, sizeof label, "%s fisher", ui.name);
    for (int b0 = 0; !rc && b0 < n; b0 += chunk) {
        int B = n - b0 < chunk ? n - b0 : chunk;
        for (int b = 0; b < B; b++) idx[b] = b0 + b;
        rc = api->io(s, u, VITQ_IO_Q_IN, idx, B, x);
        if (!rc) rc = aph_kl_grad(s, api, u, x, B, batch, T, probs + (int64_t)b0 * K, &w, g);
        for (int64_t i = 0; !rc && i < B * P; i++) {
            double v = (double)g[i] * (double)g[i];
            if (per_sample) out->map[b0 * P + i] = (float)v;
            else acc[i % P] += v;
        }
        if (!rc && host->progress(host, b0 + B, n, label)) rc = VITQ_ECANCELLED;
    }
    for (int64_t i = 0; !rc && !per_sample && i < P; i++) out->map[i] = (float)(acc[i] / n);
    free(acc), free(x), free(g), free(idx), free(w.O), free(w.z), free(w.q);
    if (rc) aph_imp_free(out);
    else aph_imp_normalise(out, host, ui.name);
    return rc;
}

/* The map of unit u for importance `imp` (none: H ≡ 1; the head never has one: it is reconstructed with KL),
 * its gradients computed APH_IMP_CHUNK samples at a time. */
#define APH_IMP_CHUNK 8
static inline int aph_imp_compute(vitq_session *s, const vitq_session_api *api, const vitq_host *host, int imp, int u,
                                  int n, int batch, double T, const float *probs, int per_sample, aph_imp *out) {
    vitq_unit_info ui;
    int rc = api->unit(s, u, &ui);
    *out = (aph_imp){0};
    if (rc || ui.kind == VITQ_UNITK_HEAD || imp == APH_IMP_NONE) return rc;
    const int chunk = batch < APH_IMP_CHUNK ? batch : APH_IMP_CHUNK;
    if (imp == APH_IMP_FISHER) return aph_fisher(s, api, host, u, n, batch, chunk, T, probs, per_sample, out);
    return host->fail(host, VITQ_EINVAL, "importance %d is not implemented", imp);
}

#endif
