/* vit_head.c — the head unit of ViT/DeiT with timm's variants, forward and backward: the final LayerNorm,
 * pooling, the representation layer, the classifier(s). Input res[depth] (B,N,C), output logits (B,K).
 *
 * Mirrors timm 0.9 vision_transformer.py VisionTransformer.forward_head (+ deit.py
 * VisionTransformerDistilled and timm <= 0.5's pre_logits), eval mode:
 *   global_pool token:        f = norm(x[:, 0])            (norm.* or fc_norm.*: per token, the same numbers)
 *   global_pool avg, norm:    f = mean(norm(x)[:, P:])     every token normalised, prefix tokens left out
 *   global_pool avg, fc_norm: f = fc_norm(mean(x[:, P:]))
 *   representation_size R:    f = tanh(pre_logits.fc(f))   (B,R); tap pre_logits.fc.input before it
 *   logits = head(f)                                       tap head.input on f
 *   distilled:                logits = (head(f) + head_dist(norm(x[:, 1]))) / 2   tap head_dist.input
 * The mean is summed in float in token order, then divided by the count, as torch's mean of 16-odd rows.
 * Backward is the exact reverse, with the taps' act_backward at their places (the hooks restore each tap's
 * input, so tanh's backward reads the tanh output). Parameter gradients accumulate into m->g. */
#include "model/model.h"

#include <math.h>
#include <string.h>

static int avg_norm(const vitq_arch *a) { return a->global_pool == VITQ_POOL_AVG && !a->fc_norm; }
static int avg_fc(const vitq_arch *a) { return a->global_pool == VITQ_POOL_AVG && a->fc_norm; }

/* Floats of each extra buffer for batch B (0: the variant has none), in the order vitq_vit_head_point uses. */
static void sizes(const vitq_arch *a, int64_t B, int64_t n[8]) {
    const int64_t C = a->embed_dim, N = vitq_arch_tokens(a), R = a->representation_size, K = a->num_classes;
    const int64_t d = a->distilled ? 1 : 0;
    const int64_t v[8] = {avg_fc(a) ? B * C : 0, avg_norm(a) ? B * N * C : 0, avg_norm(a) ? 2 * B * N : 0,
                          R > 0 ? B * R : 0,    R > 0 ? B * R : 0,         d * B * C,
                          d * 2 * B,            d * B * K};
    memcpy(n, v, sizeof v);
}

size_t vitq_vit_head_floats(const vitq_arch *a, int64_t B) {
    int64_t n[8];
    sizes(a, B, n);
    size_t t = 0;
    for (int i = 0; i < 8; i++) t += ((size_t)n[i] + 15) & ~(size_t)15;
    return t;
}

float *vitq_vit_head_point(const vitq_arch *a, vitq_head_acts *h, float *cur, int64_t B) {
    int64_t n[8];
    sizes(a, B, n);
    float **dst[8] = {&h->pool, &h->lnall, &h->lnall_mean, &h->pre, &h->feat, &h->lnd, &h->lnd_mean, &h->logits_dist};
    memset(h, 0, sizeof *h);
    for (int i = 0; i < 8; i++) {
        *dst[i] = n[i] ? cur : NULL;
        cur += (n[i] + 15) & ~(int64_t)15;
    }
    if (h->lnall_mean) h->lnall_rstd = h->lnall_mean + B * vitq_arch_tokens(a);
    if (h->lnd_mean) h->lnd_rstd = h->lnd_mean + B;
    return cur;
}

int vitq_vit_head_fits(const vitq_arch *a, const vitq_acts *acts) {
    const vitq_head_acts *h = &acts->head;
    return !h->pool == !avg_fc(a) && !h->lnall == !avg_norm(a) && !h->feat == !(a->representation_size > 0) &&
           !h->lnd == !a->distilled;
}

/* out[b] = mean of x[b, P..N) (B,C). */
static void mean_tokens(float *out, const float *x, int64_t B, int64_t N, int64_t P, int64_t C) {
    for (int64_t b = 0; b < B; b++) {
        float *o = out + b * C;
        for (int64_t c = 0; c < C; c++) o[c] = 0.0f;
        for (int64_t t = P; t < N; t++)
            for (int64_t c = 0; c < C; c++) o[c] += x[(b * N + t) * C + c];
        for (int64_t c = 0; c < C; c++) o[c] /= (float)(N - P);
    }
}

/* dst[b] = x[b, t] (B,C). */
static void gather(float *dst, const float *x, int64_t B, int64_t N, int64_t t, int64_t C) {
    for (int64_t b = 0; b < B; b++) memcpy(dst + b * C, x + (b * N + t) * C, sizeof(float) * (size_t)C);
}

/* The pooled, normalised features into a->lnf (and the dist token's into head.lnd). */
static void pool_forward(const vitq_model *m, vitq_acts *a, int B) {
    const vitq_arch *ar = &m->arch;
    const vitq_params *p = &m->p;
    vitq_head_acts *h = &a->head;
    const int64_t N = a->N, C = a->C, P = vitq_arch_prefix(ar);
    const float *x = vitq_acts_res(a, ar->depth);
    if (avg_norm(ar)) {
        vitq_layernorm_forward(h->lnall, h->lnall_mean, h->lnall_rstd, x, p->norm_w, p->norm_b, B * N, C, 1e-6f);
        mean_tokens(a->lnf, h->lnall, B, N, P, C);
    } else if (avg_fc(ar)) {
        mean_tokens(h->pool, x, B, N, P, C);
        vitq_layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, h->pool, p->norm_w, p->norm_b, B, C, 1e-6f);
    } else {
        gather(a->lnf, x, B, N, 0, C);
        vitq_layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, a->lnf, p->norm_w, p->norm_b, B, C, 1e-6f);
    }
    if (ar->distilled) {
        gather(h->lnd, x, B, N, 1, C);
        vitq_layernorm_forward(h->lnd, h->lnd_mean, h->lnd_rstd, h->lnd, p->norm_w, p->norm_b, B, C, 1e-6f);
    }
}

int vitq_vit_head_forward(vitq_model *m, vitq_acts *a, int B, vitq_err *e) {
    const vitq_arch *ar = &m->arch;
    const vitq_params *p = &m->p;
    vitq_head_acts *h = &a->head;
    const int64_t C = a->C, K = a->K, R = ar->representation_size;
    const int64_t c_shape[2] = {B, C}, r_shape[2] = {B, R};
    int rc;
    pool_forward(m, a, B);
    float *in = a->lnf;
    if (R > 0) {
        if ((rc = vitq_tap_call(m, VITQ_SITE_PRE_LOGITS_IN, -1, a->lnf, 2, c_shape, e))) return rc;
        vitq_linear_forward(h->pre, a->lnf, p->pre_w, p->pre_b, B, C, R);
        for (int64_t i = 0; i < B * R; i++) h->feat[i] = tanhf(h->pre[i]);
        in = h->feat;
    }
    if ((rc = vitq_tap_call(m, VITQ_SITE_HEAD_IN, -1, in, 2, R > 0 ? r_shape : c_shape, e))) return rc;
    vitq_linear_forward(a->logits, in, p->head_w, p->head_b, B, R > 0 ? R : C, K);
    if (ar->distilled) {
        if ((rc = vitq_tap_call(m, VITQ_SITE_HEAD_DIST_IN, -1, h->lnd, 2, c_shape, e))) return rc;
        vitq_linear_forward(h->logits_dist, h->lnd, p->head_dist_w, p->head_dist_b, B, C, K);
        for (int64_t i = 0; i < B * K; i++) a->logits[i] = (a->logits[i] + h->logits_dist[i]) / 2.0f;
    }
    return VITQ_OK;
}

/* ---- backward ------------------------------------------------------------------------------------------ */

/* The final norm and pooling, backward: g->dlnf (and g->dlnd) -> dlast (B,N,C), written whole. */
static void pool_backward(vitq_model *m, vitq_acts *a, vitq_grad_acts *g, int B, float *dlast) {
    const vitq_arch *ar = &m->arch;
    vitq_head_acts *h = &a->head;
    const int64_t N = g->N, C = g->C, P = vitq_arch_prefix(ar), BC = (int64_t)B * C;
    const float *x = vitq_acts_res(a, ar->depth), inv = (float)(N - P);
    memset(dlast, 0, sizeof(float) * (size_t)(B * N * C));
    if (avg_norm(ar)) { /* d lnall[b, t] = dlnf[b] / Np on the patch tokens */
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < N; t++)
                for (int64_t c = 0; c < C; c++) g->dlnall[(b * N + t) * C + c] = t < P ? 0.0f : g->dlnf[b * C + c] / inv;
        vitq_layernorm_backward(dlast, m->g.norm_w, m->g.norm_b, g->dlnall, x, m->p.norm_w, h->lnall_mean,
                                h->lnall_rstd, B * N, C);
    } else if (avg_fc(ar)) {
        memset(g->dpool, 0, sizeof(float) * (size_t)BC);
        vitq_layernorm_backward(g->dpool, m->g.norm_w, m->g.norm_b, g->dlnf, h->pool, m->p.norm_w, a->lnf_mean,
                                a->lnf_rstd, B, C);
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = P; t < N; t++)
                for (int64_t c = 0; c < C; c++) dlast[(b * N + t) * C + c] = g->dpool[b * C + c] / inv;
    } else { /* token 0 only: gather it, backward, scatter */
        gather(g->xcls, x, B, N, 0, C);
        memset(g->dxcls, 0, sizeof(float) * (size_t)BC);
        vitq_layernorm_backward(g->dxcls, m->g.norm_w, m->g.norm_b, g->dlnf, g->xcls, m->p.norm_w, a->lnf_mean,
                                a->lnf_rstd, B, C);
        for (int64_t b = 0; b < B; b++) memcpy(dlast + b * N * C, g->dxcls + b * C, sizeof(float) * (size_t)C);
    }
    if (ar->distilled) {
        gather(g->xdist, x, B, N, 1, C);
        memset(g->dxdist, 0, sizeof(float) * (size_t)BC);
        vitq_layernorm_backward(g->dxdist, m->g.norm_w, m->g.norm_b, g->dlnd, g->xdist, m->p.norm_w, h->lnd_mean,
                                h->lnd_rstd, B, C);
        for (int64_t b = 0; b < B; b++)
            memcpy(dlast + (b * N + 1) * C, g->dxdist + b * C, sizeof(float) * (size_t)C);
    }
}

int vitq_vit_head_backward(vitq_model *m, vitq_acts *a, vitq_grad_acts *g, int B, vitq_err *e) {
    const vitq_arch *ar = &m->arch;
    vitq_head_acts *h = &a->head;
    const int64_t C = g->C, K = g->K, R = ar->representation_size;
    const int64_t c_shape[2] = {B, C}, r_shape[2] = {B, R};
    const float *dy = g->dlogits;
    int rc;
    if (ar->distilled) { /* logits = (head + head_dist) / 2: each head gets half */
        for (int64_t i = 0; i < B * K; i++) g->dhalf[i] = g->dlogits[i] / 2.0f;
        dy = g->dhalf;
        memset(g->dlnd, 0, sizeof(float) * (size_t)(B * C));
        vitq_linear_backward(g->dlnd, m->g.head_dist_w, m->g.head_dist_b, dy, h->lnd, m->p.head_dist_w, B, C, K);
        if ((rc = vitq_tap_call_backward(m, VITQ_SITE_HEAD_DIST_IN, -1, h->lnd, g->dlnd, 2, c_shape, e))) return rc;
    }
    float *in = R > 0 ? h->feat : a->lnf, *din = R > 0 ? g->dfeat : g->dlnf;
    memset(din, 0, sizeof(float) * (size_t)(B * (R > 0 ? R : C)));
    vitq_linear_backward(din, m->g.head_w, m->g.head_b, dy, in, m->p.head_w, B, R > 0 ? R : C, K);
    if ((rc = vitq_tap_call_backward(m, VITQ_SITE_HEAD_IN, -1, in, din, 2, R > 0 ? r_shape : c_shape, e))) return rc;
    if (R > 0) { /* tanh' = 1 - tanh^2, from the (restored) tanh output */
        for (int64_t i = 0; i < B * R; i++) g->dpre[i] = g->dfeat[i] * (1.0f - h->feat[i] * h->feat[i]);
        memset(g->dlnf, 0, sizeof(float) * (size_t)(B * C));
        vitq_linear_backward(g->dlnf, m->g.pre_w, m->g.pre_b, g->dpre, a->lnf, m->p.pre_w, B, C, R);
        if ((rc = vitq_tap_call_backward(m, VITQ_SITE_PRE_LOGITS_IN, -1, a->lnf, g->dlnf, 2, c_shape, e))) return rc;
    }
    pool_backward(m, a, g, B, vitq_grad_res(g, ar->depth));
    return VITQ_OK;
}
