/* aph_importance.h — the importance map H that weights the reconstruction error of aph_recon (block
 * reconstruction) and mlp_relu (MLP reconstruction) (specs/aphq-vit.md §3, §4), header-only so that tests
 * check it against independent computations. Every map is of a perturbation site O (a unit's output, or an
 * MLP's output inside a block) and is built on the TEACHER's tail f (the units after O's unit, to the logits)
 * with the loss KL(p ‖ softmax(f(O)/T)), "batchmean" over M = `batch` samples (p = the teacher's own
 * probabilities at T, aph_teacher_probs):
 *   none      H ≡ 1 (plain MSE: QDrop's, the BRECQ baselines').
 *   fisher    BRECQ's (§3.4, `optim_metric = hessian_brecq`): g² with g = ∂KL/∂O, at O = the unit's FLOAT
 *             output on the partly quantized input (the teacher's unit on Q_IN). After calibration only.
 *   aph       the reference code's "average perturbation Hessian" (§3.2), made deterministic as §3.5 (a)
 *             asks. The reference adds fl32(1e-6) to every element of O in float32, backpropagates the KL
 *             at O⁺ = fl32(O + ε) and at O⁻ = fl32(O − ε) and keeps |g⁺ − g⁻|. In exact arithmetic that is 0
 *             (every consumer of O is a LayerNorm or a residual stream ending in one, and LayerNorm ignores
 *             a per-token constant: §3.5); what it measures is the float32 rounding of the perturbation,
 *             v = O⁺ − O⁻ (oracle O9: 2.03e-6 for 0.25 ≤ |O| < 1, 1.91e-6 for 1 ≤ |O| < 16, 3.81e-6 for
 *             16 ≤ |O| < 32, 0 from 32 up), through g⁺ − g⁻ = H·v + O(ε²) + float32 noise in the passes. Here
 *             v is computed explicitly, in float32, from O's values (or from another tensor's: MLP
 *             reconstruction takes v from the MLP output, §3.2's last line, while the perturbation acts on
 *             the block output, whose tail gradient is the MLP output's through the residual add), and
 *                 H·v ≈ (g(O + h·v) − g(O − h·v)) / (2h),   h = η·rms(O) / max|v|   (η = APH_STEP, 1e-3),
 *             a central difference of the tail's float32 gradients along v with a step large enough that
 *             the float32 noise of the two passes (§3.5 item 3) is ~1e-4 of the signal (the reference's
 *             1e-6 step leaves it comparable): H_map = |H·v|, per sample or averaged. To leading order this
 *             is the reference's |g⁺ − g⁻| element for element, with no 1/(2ε) factor (the reference has
 *             none either; the normalisation below removes constants anyway).
 *   aph_diag  the paper's stated intent (§3.5 b): the diagonal of the Hessian of the KL at the teacher,
 *             where the residual q − p vanishes and the Hessian is the Gauss-Newton term
 *             Jᵀ(diag(p) − ppᵀ)J/(M·T²), J = ∂logits/∂O. Its diagonal is E_{y∼p}[g_y²]/M with
 *             g_y = ∂(−log q_y)/∂O = Jᵀ(q − e_y)/T: `labels` labels per image drawn from the teacher's p
 *             (one backward each, squared, averaged; a stream seeded per site), or with labels = 0 the
 *             expectation exactly, Σ_y p_y g_y² (one backward per class: small heads, tests).
 * Per sample (rows = images) or averaged over the images (rows = 1); then normalised: to mean 1 over every
 * entry for block reconstruction (the reference's H·numel/ΣH, §3.2 step 5, in both loss forms), to RMS 1 for
 * MLP reconstruction (H·sqrt(numel/ΣH²)). The loss reads H through aph_imp_row only.
 * Departures: aph's v and central difference instead of two float32 passes at O ± ε (deterministic, and
 * without the passes' own rounding noise); vitq's patch-embedding unit ends after the class token and the
 * position embedding, so its O (and v) is the reference's plus pos_embed, with the class-token row. */
#ifndef APH_IMPORTANCE_H
#define APH_IMPORTANCE_H

#include "vitq_plugin.h"

#include "aph_loss.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { APH_IMP_NONE = 0, APH_IMP_FISHER = 1, APH_IMP_APH = 2, APH_IMP_APH_DIAG = 3 };
#define APH_IMP_CHOICES "none|fisher|aph|aph_diag"
enum { APH_NORM_MEAN = 0, APH_NORM_RMS = 1 };

#define APH_EPS 1e-6f       /* the reference's perturbation, as the float32 constant it adds (9.99999997e-7) */
#define APH_STEP 1e-3       /* η of aph's central difference: h·max|v| = η·rms(O) */
#define APH_IMP_CHUNK 16 /* samples per gradient computation: the tail keeps every unit's activations for 2 x 16 images
                           (~2.5 GB for a DeiT-S; 32 saved ~1.7 s of ~8 on vit-fmnist but doubles that) */
#define APH_DIAG_ROWS 32    /* aph_diag: (sample, label) rows per tail pass */

/* Whether importance `imp` is per sample when the user leaves per_sample = auto: the reference's choice
 * (fisher: per sample, §3.4; APH: averaged, use_mean_hessian = True; aph_diag as APH). */
static inline int aph_imp_auto_per_sample(int imp) { return imp == APH_IMP_FISHER; }

/* A site's map: rows = the images (per sample) or 1 (averaged), P = the site's values per sample. */
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

/* v = fl32(o + ε) − fl32(o − ε) in float32 (oracle O9): the reference's effective perturbation of o. */
static inline float aph_fl32_residual(float o) {
    volatile float up = o + APH_EPS, down = o - APH_EPS; /* stored: each sum rounded to float32 */
    return up - down;
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

/* g (B x P) = ∂/∂O of KL(p ‖ softmax(f(O)/T)) / M (torch's kl_div "batchmean" over a batch of M), f = the
 * teacher's units from u_tail on, O (B x unit u_tail's input). p: the B samples' teacher probabilities
 * (B x K). dKL/dlogits = (softmax(logits/T) − p) / (T·M); the tail carries it back to O. Samples do not
 * interact, so each row is that sample's gradient whatever B is. */
static inline int aph_kl_grad_at(vitq_session *s, const vitq_session_api *api, int u_tail, const float *O, int B,
                                 int M, double T, const float *p, aph_kl_scratch *w, float *g) {
    int rc = api->tail_forward(s, u_tail, O, B, w->z);
    if (rc) return rc;
    const int64_t K = w->K;
    for (int b = 0; b < B; b++) {
        aph_softmax_t(w->z + b * K, K, T, w->q);
        for (int64_t k = 0; k < K; k++) w->z[b * K + k] = (float)((w->q[k] - (double)p[b * K + k]) / (T * M));
    }
    return api->tail_backward(s, u_tail, w->z, B, g);
}

/* The same at O = the teacher's unit u on the B unit inputs x (u is not the head). */
static inline int aph_kl_grad(vitq_session *s, const vitq_session_api *api, int u, const float *x, int B, int M,
                              double T, const float *p, aph_kl_scratch *w, float *g) {
    int rc = api->teacher_forward(s, u, x, B, w->O);
    return rc ? rc : aph_kl_grad_at(s, api, u + 1, w->O, B, M, T, p, w, g);
}

/* Normalises to mean 1 (APH_NORM_MEAN, §3.2 step 5) or RMS 1 (APH_NORM_RMS, §4) over every entry. A map
 * that is all zeros (nothing to weigh: e.g. Fisher where the partly quantized input equals the float one
 * and the student the teacher) is dropped: H ≡ 1, with a warning. */
static inline void aph_imp_normalise(aph_imp *m, const vitq_host *host, const char *site, int norm) {
    const int64_t n = m->rows * m->P;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += norm == APH_NORM_RMS ? (double)m->map[i] * m->map[i] : m->map[i];
    if (!(sum > 0) || !isfinite(sum)) {
        host->log(host, VITQ_LOG_WARN, "%s: the importance map sums to %g; using H = 1", site, sum);
        aph_imp_free(m);
        return;
    }
    const double f = norm == APH_NORM_RMS ? sqrt((double)n / sum) : (double)n / sum;
    for (int64_t i = 0; i < n; i++) m->map[i] = (float)(m->map[i] * f);
}

/* ---- one map over the images, from any per-sample computation ------------------------------------- */
/* Writes B samples' map rows (B x P) for the images idx[0..B) (consecutive). */
typedef int (*aph_rows_fn)(void *ctx, const int64_t *idx, int B, float *rows);

/* The map over n images from fn, `chunk` samples at a time: per sample (rows = n) or their mean (rows = 1),
 * not normalised. Progress as `label`; VITQ_ECANCELLED on Ctrl-C. */
static inline int aph_map_build(const vitq_host *host, const char *label, int n, int chunk, int64_t P,
                                int per_sample, aph_rows_fn fn, void *ctx, aph_imp *out) {
    *out = (aph_imp){.rows = per_sample ? n : 1, .P = P};
    out->map = calloc((size_t)(out->rows * P), sizeof *out->map);
    double *acc = per_sample ? NULL : calloc((size_t)P, sizeof *acc);
    float *rows = per_sample ? NULL : malloc(sizeof *rows * (size_t)(chunk * P));
    int64_t *idx = malloc(sizeof *idx * (size_t)chunk);
    int rc = VITQ_OK;
    if (!out->map || (!per_sample && (!acc || !rows)) || !idx)
        rc = host->fail(host, VITQ_ENOMEM, "%s: out of memory for the importance map (%d x %lld)", label, n,
                        (long long)P);
    for (int b0 = 0; !rc && b0 < n; b0 += chunk) {
        int B = n - b0 < chunk ? n - b0 : chunk;
        for (int b = 0; b < B; b++) idx[b] = b0 + b;
        float *dst = per_sample ? out->map + (int64_t)b0 * P : rows;
        rc = fn(ctx, idx, B, dst);
        for (int64_t i = 0; !rc && !per_sample && i < B * P; i++) acc[i % P] += dst[i];
        if (!rc && host->progress(host, b0 + B, n, label)) rc = VITQ_ECANCELLED;
    }
    for (int64_t i = 0; !rc && !per_sample && i < P; i++) out->map[i] = (float)(acc[i] / n);
    free(acc), free(rows), free(idx);
    if (rc) aph_imp_free(out);
    return rc;
}

/* ---- fisher ------------------------------------------------------------------------------------------ */
typedef struct {
    vitq_session *s;
    const vitq_session_api *api;
    int u, M;
    double T;
    const float *probs;
    int64_t K, P;
    float *x;
    aph_kl_scratch w;
} aph_fisher_ctx;

static inline int aph_fisher_rows(void *ctx, const int64_t *idx, int B, float *rows) {
    aph_fisher_ctx *c = ctx;
    int rc = c->api->io(c->s, c->u, VITQ_IO_Q_IN, idx, B, c->x);
    if (!rc) rc = aph_kl_grad(c->s, c->api, c->u, c->x, B, c->M, c->T, c->probs + idx[0] * c->K, &c->w, rows);
    for (int64_t i = 0; !rc && i < B * c->P; i++) rows[i] = (float)((double)rows[i] * rows[i]);
    return rc;
}

/* BRECQ's Fisher map of unit u over the n images (§3.4): the KL's "batchmean" divides by `batch` (the
 * reference's loader batch), computed `chunk` samples at a time (the teacher tail keeps every unit's
 * activations for its backward: chunks smaller than the batch bound that memory without changing a
 * sample's gradient); per sample g² (rows = n), or averaged over the images (rows = 1); normalised to
 * mean 1. probs: the teacher's probabilities (aph_teacher_probs). Progress as "<unit> fisher". */
static inline int aph_fisher(vitq_session *s, const vitq_session_api *api, const vitq_host *host, int u, int n,
                             int batch, int chunk, double T, const float *probs, int per_sample, aph_imp *out) {
    vitq_unit_info ui, hi;
    int rc = api->unit(s, u, &ui);
    if (!rc) rc = api->unit(s, api->n_units(s) - 1, &hi);
    *out = (aph_imp){0};
    if (rc) return rc;
    const int64_t P = ui.out_numel, K = hi.out_numel;
    aph_fisher_ctx c = {s, api, u, batch, T, probs, K, P, malloc(sizeof(float) * (size_t)(chunk * ui.in_numel)),
                        {malloc(sizeof(float) * (size_t)(chunk * P)), malloc(sizeof(float) * (size_t)(chunk * K)),
                         malloc(sizeof(double) * (size_t)K), K}};
    char label[160];
    snprintf(label, sizeof label, "%s fisher", ui.name);
    if (!c.x || !c.w.O || !c.w.z || !c.w.q) rc = host->fail(host, VITQ_ENOMEM, "%s: out of memory", label);
    if (!rc) rc = aph_map_build(host, label, n, chunk, P, per_sample, aph_fisher_rows, &c, out);
    free(c.x), free(c.w.O), free(c.w.z), free(c.w.q);
    if (!rc) aph_imp_normalise(out, host, ui.name, APH_NORM_MEAN);
    return rc;
}

/* ---- aph: |H·v| along the float32 perturbation residual (§3.2, §3.5 a) ------------------------------- */
typedef struct {
    vitq_session *s;
    const vitq_session_api *api;
    int u_out, u_tail, M;      /* O = FP_OUT(u_out), the tail from u_tail on, batchmean over M */
    double T, eta;
    const float *probs, *vsrc; /* the teacher's probabilities (n x K); v's source (n x P), NULL: O itself */
    int64_t K, P;
    int chunk;                 /* samples the scratch holds */
    double *h;                 /* chunk: each sample's step */
    float *O, *v;              /* chunk x P */
    float *X, *G, *pp;         /* 2·chunk x P, 2·chunk x P, 2·chunk x K */
    aph_kl_scratch w;          /* for 2·chunk rows */
} aph_pert;

static inline void aph_pert_free(aph_pert *c) {
    free(c->O), free(c->v), free(c->X), free(c->G), free(c->pp), free(c->w.z), free(c->w.q), free(c->h);
    c->O = c->v = c->X = c->G = c->pp = c->w.z = NULL;
    c->w.q = c->h = NULL;
}

/* Scratch for up to `chunk` samples (VITQ_ENOMEM, nothing held, if it cannot); c's other fields set by the
 * caller. */
static inline int aph_pert_alloc(aph_pert *c, int chunk) {
    const size_t P = (size_t)c->P, K = (size_t)c->K, r = (size_t)chunk;
    c->chunk = chunk, c->h = malloc(sizeof(double) * r);
    c->O = malloc(sizeof(float) * r * P), c->v = malloc(sizeof(float) * r * P);
    c->X = malloc(sizeof(float) * 2 * r * P), c->G = malloc(sizeof(float) * 2 * r * P);
    c->pp = malloc(sizeof(float) * 2 * r * K);
    c->w = (aph_kl_scratch){NULL, malloc(sizeof(float) * 2 * r * K), malloc(sizeof(double) * K), c->K};
    if (c->h && c->O && c->v && c->X && c->G && c->pp && c->w.z && c->w.q) return VITQ_OK;
    aph_pert_free(c);
    return VITQ_ENOMEM;
}

/* hv (B x P) = H·v for B samples, signed: H the Hessian of the batchmean KL at O (B x P), by the central
 * difference (g(O + h·v) − g(O − h·v)) / (2h) with h = η·rms(O_b)/max|v_b| per sample (η·1 when O_b is 0); a
 * sample whose v is 0 gets 0. p: the B samples' teacher probabilities (B x K). Both points go through the
 * tail as one batch of 2B. */
static inline int aph_hv(aph_pert *c, const float *O, const float *v, const float *p, int B, float *hv) {
    const int64_t P = c->P, K = c->K;
    double *h = c->h;
    if (B > c->chunk) return VITQ_EINVAL;
    for (int b = 0; b < B; b++) {
        double ss = 0, vmax = 0;
        for (int64_t i = 0; i < P; i++) ss += (double)O[b * P + i] * O[b * P + i], vmax = fmax(vmax, fabs(v[b * P + i]));
        const double rms = sqrt(ss / (double)P);
        h[b] = vmax > 0 ? c->eta * (rms > 0 ? rms : 1.0) / vmax : 0;
        for (int64_t i = 0; i < P; i++) {
            c->X[b * P + i] = (float)(O[b * P + i] + h[b] * v[b * P + i]);
            c->X[(B + b) * P + i] = (float)(O[b * P + i] - h[b] * v[b * P + i]);
        }
    }
    memcpy(c->pp, p, sizeof(float) * (size_t)(B * K));
    memcpy(c->pp + B * K, p, sizeof(float) * (size_t)(B * K));
    int rc = aph_kl_grad_at(c->s, c->api, c->u_tail, c->X, 2 * B, c->M, c->T, c->pp, &c->w, c->G);
    for (int b = 0; !rc && b < B; b++)
        for (int64_t i = 0; i < P; i++)
            hv[b * P + i] = h[b] > 0 ? (float)(((double)c->G[b * P + i] - c->G[(B + b) * P + i]) / (2 * h[b])) : 0.0f;
    return rc;
}

static inline int aph_pert_rows(void *ctx, const int64_t *idx, int B, float *rows) {
    aph_pert *c = ctx;
    const int64_t P = c->P;
    int rc = c->api->io(c->s, c->u_out, VITQ_IO_FP_OUT, idx, B, c->O);
    if (rc) return rc;
    for (int b = 0; b < B; b++) {
        const float *src = c->vsrc ? c->vsrc + idx[b] * P : c->O + b * P;
        for (int64_t i = 0; i < P; i++) c->v[b * P + i] = aph_fl32_residual(src[i]);
    }
    rc = aph_hv(c, c->O, c->v, c->probs + idx[0] * c->K, B, rows);
    for (int64_t i = 0; !rc && i < B * P; i++) rows[i] = fabsf(rows[i]);
    return rc;
}

/* ---- aph_diag: the Gauss-Newton diagonal with labels from the teacher (§3.5 b) -------------------------- */
typedef struct {
    vitq_session *s;
    const vitq_session_api *api;
    int u_out, u_tail, M, labels; /* labels per image; 0: the exact expectation over every class */
    double T;
    const float *probs;
    int64_t K, P;
    aph_rng rng;
    float *O, *X, *G, *dz;        /* chunk x P; APH_DIAG_ROWS x P (twice); APH_DIAG_ROWS x K */
    double *q;                    /* K */
    int rb[APH_DIAG_ROWS], ry[APH_DIAG_ROWS], nr;
    double rw[APH_DIAG_ROWS];     /* the pending rows: sample (in the chunk), label, weight */
} aph_diag_ctx;

/* The pending rows through the tail: X = their samples' O, g_y = Jᵀ(q − e_y)/T, rows[b] += w·g_y²/M. */
static inline int aph_diag_flush(aph_diag_ctx *c, float *rows) {
    const int64_t P = c->P, K = c->K;
    const int R = c->nr;
    c->nr = 0;
    if (R == 0) return VITQ_OK;
    for (int r = 0; r < R; r++) memcpy(c->X + r * P, c->O + c->rb[r] * P, sizeof(float) * (size_t)P);
    int rc = c->api->tail_forward(c->s, c->u_tail, c->X, R, c->dz);
    for (int r = 0; !rc && r < R; r++) {
        aph_softmax_t(c->dz + r * K, K, c->T, c->q);
        for (int64_t k = 0; k < K; k++) c->dz[r * K + k] = (float)((c->q[k] - (k == c->ry[r])) / c->T);
    }
    if (!rc) rc = c->api->tail_backward(c->s, c->u_tail, c->dz, R, c->G);
    for (int r = 0; !rc && r < R; r++) {
        const double f = c->rw[r] / c->M;
        for (int64_t i = 0; i < P; i++) rows[c->rb[r] * P + i] += (float)(f * c->G[r * P + i] * c->G[r * P + i]);
    }
    return rc;
}

static inline int aph_diag_push(aph_diag_ctx *c, int b, int y, double w, float *rows) {
    c->rb[c->nr] = b, c->ry[c->nr] = y, c->rw[c->nr] = w;
    return ++c->nr == APH_DIAG_ROWS ? aph_diag_flush(c, rows) : VITQ_OK;
}

static inline int aph_diag_rows(void *ctx, const int64_t *idx, int B, float *rows) {
    aph_diag_ctx *c = ctx;
    const int64_t K = c->K;
    int rc = c->api->io(c->s, c->u_out, VITQ_IO_FP_OUT, idx, B, c->O);
    memset(rows, 0, sizeof(float) * (size_t)(B * c->P));
    for (int b = 0; !rc && b < B; b++) {
        const float *p = c->probs + idx[b] * K;
        for (int l = 0; !rc && l < (c->labels > 0 ? c->labels : K); l++) {
            int y = l;
            if (c->labels > 0) { /* y ~ p */
                double u = aph_rng_unit(&c->rng), cum = 0;
                for (y = 0; y < K - 1 && (cum += p[y]) <= u; y++) {}
            }
            rc = aph_diag_push(c, b, y, c->labels > 0 ? 1.0 / c->labels : (double)p[y], rows);
        }
    }
    return rc ? rc : aph_diag_flush(c, rows);
}

/* ---- the map of one site ------------------------------------------------------------------------------ */
typedef struct {
    int imp;             /* APH_IMP_* */
    int n, batch;        /* images; the KL's batchmean M (the reference's loader batch) */
    double T;            /* temperature */
    const float *probs;  /* the teacher's probabilities at T over the n images (n x K) */
    int per_sample;
    int labels;          /* aph_diag: labels per image, 0: the exact expectation */
    int norm;            /* APH_NORM_MEAN (block reconstruction) or APH_NORM_RMS (MLP reconstruction) */
    const float *vsrc;   /* aph: v's source (n x P), NULL: the unit's output (MLP reconstruction: the MLP's) */
    const char *site;    /* the site's name for progress, warnings and the label stream; NULL: the unit's */
} aph_imp_cfg;

/* aph or aph_diag at unit u's output (the tail: units u + 1 ...). */
static inline int aph_perturbation_map(vitq_session *s, const vitq_session_api *api, const vitq_host *host,
                                       const aph_imp_cfg *cf, const vitq_unit_info *ui, int u, const char *label,
                                       aph_imp *out) {
    vitq_unit_info hi;
    int rc = api->unit(s, api->n_units(s) - 1, &hi);
    if (rc) return rc;
    const int64_t P = ui->out_numel, K = hi.out_numel;
    const int chunk = cf->batch < APH_IMP_CHUNK ? cf->batch : APH_IMP_CHUNK;
    if (cf->imp == APH_IMP_APH) {
        aph_pert c = {.s = s, .api = api, .u_out = u, .u_tail = u + 1, .M = cf->batch, .T = cf->T, .eta = APH_STEP,
                      .probs = cf->probs, .vsrc = cf->vsrc, .K = K, .P = P};
        if (aph_pert_alloc(&c, chunk)) return host->fail(host, VITQ_ENOMEM, "%s: out of memory", label);
        rc = aph_map_build(host, label, cf->n, chunk, P, cf->per_sample, aph_pert_rows, &c, out);
        aph_pert_free(&c);
        return rc;
    }
    char key[200];
    snprintf(key, sizeof key, "%s/aph_diag", cf->site ? cf->site : ui->name);
    aph_diag_ctx *c = calloc(1, sizeof *c);
    if (c) {
        *c = (aph_diag_ctx){.s = s, .api = api, .u_out = u, .u_tail = u + 1, .M = cf->batch, .labels = cf->labels,
                            .T = cf->T, .probs = cf->probs, .K = K, .P = P, .rng = {api->seed(s, key)}};
        c->O = malloc(sizeof(float) * (size_t)(chunk * P)), c->X = malloc(sizeof(float) * APH_DIAG_ROWS * (size_t)P);
        c->G = malloc(sizeof(float) * APH_DIAG_ROWS * (size_t)P), c->dz = malloc(sizeof(float) * APH_DIAG_ROWS * (size_t)K);
        c->q = malloc(sizeof(double) * (size_t)K);
    }
    if (!c || !c->O || !c->X || !c->G || !c->dz || !c->q) rc = host->fail(host, VITQ_ENOMEM, "%s: out of memory", label);
    if (!rc) rc = aph_map_build(host, label, cf->n, chunk, P, cf->per_sample, aph_diag_rows, c, out);
    if (c) free(c->O), free(c->X), free(c->G), free(c->dz), free(c->q);
    free(c);
    return rc;
}

/* The map of unit u's output for cf->imp, normalised (none: H ≡ 1; the head never has one: it is
 * reconstructed with KL). */
static inline int aph_imp_compute(vitq_session *s, const vitq_session_api *api, const vitq_host *host,
                                  const aph_imp_cfg *cf, int u, aph_imp *out) {
    vitq_unit_info ui;
    int rc = api->unit(s, u, &ui);
    *out = (aph_imp){0};
    if (rc || ui.kind == VITQ_UNITK_HEAD || cf->imp == APH_IMP_NONE) return rc;
    const int chunk = cf->batch < APH_IMP_CHUNK ? cf->batch : APH_IMP_CHUNK;
    const char *site = cf->site ? cf->site : ui.name;
    if (cf->imp == APH_IMP_FISHER)
        return aph_fisher(s, api, host, u, cf->n, cf->batch, chunk, cf->T, cf->probs, cf->per_sample, out);
    if (cf->imp != APH_IMP_APH && cf->imp != APH_IMP_APH_DIAG)
        return host->fail(host, VITQ_EINVAL, "importance %d is not implemented", cf->imp);
    char label[200];
    snprintf(label, sizeof label, "%s %s", site, cf->imp == APH_IMP_APH ? "aph" : "aph_diag");
    rc = aph_perturbation_map(s, api, host, cf, &ui, u, label, out);
    if (!rc) aph_imp_normalise(out, host, site, cf->norm);
    return rc;
}

#endif
