/* swin_backward.c — backward through swin.c's units, each in exactly the reverse order of its forward (llm.c's
 * gpt2_backward): head (head.fc, mean over tokens, final norm), blocks (MLP branch, norm2, window reverse, proj,
 * attention values, the probabilities' tap, window attention with the bias-table gradient, q k v, qkv, the
 * partition, norm1), patch merging (reduction, norm, the 2x2 gather), patch embedding (norm, conv as linear).
 *
 * Every unit WRITES the gradient of its input (vitq_unit_din) and ACCUMULATES its parameters' gradients into
 * m->fam_g. Quantizer taps are reached through the hooks' act_backward at their places (model.h,
 * vitq_tap_hooks); the image gets no gradient. Mirrors: torch.autograd on timm's SwinTransformer (checked by
 * tests/test_swin.c against tests/fixtures/swin_tiny56_grad.safetensors). */
#include "model/model.h"

#include <math.h>
#include <string.h>

static void zero(float *p, int64_t n) { memset(p, 0, sizeof(float) * (size_t)n); }

/* The MLP half of block l: dout -> dres1 (= dout + norm2's backward). */
static int mlp_backward(vitq_model *m, vitq_swin_block_acts *ba, vitq_swin_grads *gx, const vitq_swin_block_geom *g,
                        int l, const float *dout, int B, vitq_err *e) {
    const vitq_swin_block_params *p = &vitq_swin_p(m)->blocks[l];
    vitq_swin_block_params *gp = &vitq_swin_g(m)->blocks[l];
    const int64_t L = (int64_t)g->res * g->res, C = g->C, F = g->F, R = (int64_t)B * L;
    const int64_t tok3[3] = {B, L, C}, f3[3] = {B, L, F};
    int rc;
    memcpy(gx->dres1, dout, sizeof(float) * (size_t)(R * C));
    vitq_linear_backward_to(gx->dact, gp->fc2_w, gp->fc2_b, dout, ba->act, p->fc2_w, R, F, C);
    if ((rc = vitq_tap_call_backward(m, VITQ_SITE_FC2_IN, l, ba->act, gx->dact, 3, f3, e))) return rc;
    if (m->mlp_act[l] == VITQ_ACT_RELU) vitq_relu_backward_to(gx->dfc1, ba->fc1, gx->dact, R * F);
    else vitq_gelu_backward_to(gx->dfc1, ba->fc1, gx->dact, R * F);
    vitq_linear_backward_to(gx->dln2, gp->fc1_w, gp->fc1_b, gx->dfc1, ba->ln2, p->fc1_w, R, C, F);
    if ((rc = vitq_tap_call_backward(m, VITQ_SITE_FC1_IN, l, ba->ln2, gx->dln2, 3, tok3, e))) return rc;
    vitq_layernorm_backward(gx->dres1, gp->norm2_w, gp->norm2_b, gx->dln2, ba->res1, p->norm2_w, ba->ln2_mean,
                            ba->ln2_rstd, R, C);
    return VITQ_OK;
}

/* Block l (unit u): dstream[u] -> dstream[u-1]. */
static int block_backward(vitq_model *m, vitq_acts *a, vitq_swin_grads *gx, int u, int l, int B, vitq_err *e) {
    vitq_swin_acts *x = a->ext;
    const vitq_swin_block_geom *g = &vitq_swin_p(m)->lay->blk[l];
    const vitq_swin_block_params *p = &vitq_swin_p(m)->blocks[l];
    vitq_swin_block_params *gp = &vitq_swin_g(m)->blocks[l];
    vitq_swin_block_acts *ba = &x->blk[l];
    const int64_t L = (int64_t)g->res * g->res, C = g->C, H = g->heads, N = g->N, D = g->D;
    const int64_t Bw = (int64_t)B * g->nw, Mw = (int64_t)g->nw * N, R = (int64_t)B * L, Rw = Bw * N;
    const int64_t win3[3] = {Bw, N, C}, hd4[4] = {Bw, H, N, D}, pr4[4] = {Bw, H, N, N};
    const float *in = x->stream[u - 1];
    float *dx = gx->dstream[u - 1];
    float *q = ba->qkvh, *k = q + Rw * C, *v = k + Rw * C;
    float *dq = gx->dqkvh, *dk = dq + Rw * C, *dv = dk + Rw * C;
    int rc = mlp_backward(m, ba, gx, g, l, gx->dstream[u], B, e);
    if (rc) return rc;

    /* res1 = x + reverse(proj(atty)): the residual passes dres1 to x; the reverse's backward is the partition */
    memcpy(dx, gx->dres1, sizeof(float) * (size_t)(R * C));
    vitq_gather_rows_forward(gx->dprojw, gx->dres1, g->widx, B, L, Mw, C);
    vitq_linear_backward_to(gx->datty, gp->proj_w, gp->proj_b, gx->dprojw, ba->atty, p->proj_w, Rw, C, C);
    if ((rc = vitq_tap_call_backward(m, VITQ_SITE_PROJ_IN, l, ba->atty, gx->datty, 3, win3, e))) return rc;
    vitq_attn_value_backward_to(gx->datt, dv, gx->datty, ba->att, v, Bw, H, N, D);
    /* the probabilities' tap first: the softmax backward reads the probabilities the softmax produced */
    if ((rc = vitq_tap_call_backward(m, VITQ_SITE_PROBS, l, ba->att, gx->datt, 4, pr4, e))) return rc;
    vitq_window_attn_backward_to(dq, dk, gp->rpb, gx->datt, ba->att, q, k, g->rpi, g->T, Bw, H, N, D, 1.0f);
    if ((rc = vitq_tap_call_backward(m, VITQ_SITE_V, l, v, dv, 4, hd4, e)) ||
        (rc = vitq_tap_call_backward(m, VITQ_SITE_K, l, k, dk, 4, hd4, e)) ||
        (rc = vitq_tap_call_backward(m, VITQ_SITE_Q, l, q, dq, 4, hd4, e)))
        return rc;
    vitq_scale_forward(dq, dq, 1.0f / sqrtf((float)D), Rw * C); /* through q = q * scale */
    vitq_qkv_split_backward_to(gx->dqkv, gx->dqkvh, Bw, N, C, H);
    vitq_linear_backward_to(gx->dxw, gp->qkv_w, m->arch.qkv_bias ? gp->qkv_b : NULL, gx->dqkv, ba->xw, p->qkv_w,
                            Rw, C, 3 * C);
    if ((rc = vitq_tap_call_backward(m, VITQ_SITE_QKV_IN, l, ba->xw, gx->dxw, 3, win3, e))) return rc;
    vitq_gather_rows_forward(gx->dln1, gx->dxw, g->winv, B, Mw, L, C); /* padding rows get nothing */
    vitq_layernorm_backward(dx, gp->norm1_w, gp->norm1_b, gx->dln1, in, p->norm1_w, ba->ln1_mean, ba->ln1_rstd, R,
                            C);
    return VITQ_OK;
}

/* Patch merging at the start of stage s (unit u). */
static int merge_backward(vitq_model *m, vitq_acts *a, vitq_swin_grads *gx, int u, int s, int B, vitq_err *e) {
    vitq_swin_acts *x = a->ext;
    const vitq_swin_params *p = vitq_swin_p(m);
    vitq_swin_params *gp = vitq_swin_g(m);
    const vitq_swin_stage_geom *st = &p->lay->stage[s];
    vitq_swin_merge_acts *ma = &x->mrg[s];
    const int64_t L = (int64_t)st->res * st->res, C = st->C, M = 2 * C, shape[3] = {B, L, M};
    vitq_linear_backward_to(gx->dmgn, gp->ds_red_w[s], NULL, gx->dstream[u], ma->mgn, p->ds_red_w[s], B * L, M, C);
    int rc = vitq_tap_call_backward(m, VITQ_SITE_REDUCTION_IN, st->first, ma->mgn, gx->dmgn, 3, shape, e);
    if (rc) return rc;
    zero(gx->dmg, B * L * M);
    vitq_layernorm_backward(gx->dmg, gp->ds_norm_w[s], gp->ds_norm_b[s], gx->dmgn, ma->mg, p->ds_norm_w[s], ma->mean,
                            ma->rstd, B * L, M);
    vitq_gather_rows_forward(gx->dstream[u - 1], gx->dmg, st->minv, B, 4 * L, 4 * L, C / 2);
    return VITQ_OK;
}

/* Head: logits = head.fc(mean_tokens(norm(x))); writes the whole gradient of its input. */
static int head_backward(vitq_model *m, vitq_acts *a, vitq_grad_acts *g, vitq_swin_grads *gx, int u, int B,
                         vitq_err *e) {
    vitq_swin_acts *x = a->ext;
    const vitq_swin_params *p = vitq_swin_p(m);
    vitq_swin_params *gp = vitq_swin_g(m);
    const vitq_swin_stage_geom *st = &p->lay->stage[p->lay->n_stages - 1];
    const int64_t L = (int64_t)st->res * st->res, C = st->C, K = m->arch.num_classes, shape[2] = {B, C};
    vitq_linear_backward_to(gx->dpooled, gp->head_w, gp->head_b, g->dlogits, x->pooled, p->head_w, B, C, K);
    int rc = vitq_tap_call_backward(m, VITQ_SITE_HEAD_IN, -1, x->pooled, gx->dpooled, 2, shape, e);
    if (rc) return rc;
    zero(gx->dlnf, B * L * C);
    vitq_token_mean_backward(gx->dlnf, gx->dpooled, B, L, C);
    float *dx = gx->dstream[u - 1];
    zero(dx, B * L * C);
    vitq_layernorm_backward(dx, gp->norm_w, gp->norm_b, gx->dlnf, x->stream[u - 1], p->norm_w, x->lnf_mean,
                            x->lnf_rstd, B * L, C);
    return VITQ_OK;
}

/* Patch embedding: norm, then the conv as a linear on the im2col patches (no gradient for the image). */
static void patch_backward(vitq_model *m, vitq_acts *a, vitq_swin_grads *gx, int B) {
    vitq_swin_acts *x = a->ext;
    const vitq_arch *ar = &m->arch;
    const vitq_swin_params *p = vitq_swin_p(m);
    vitq_swin_params *gp = vitq_swin_g(m);
    const int64_t Np = (int64_t)p->lay->grid * p->lay->grid, C = ar->embed_dim, R = B * Np;
    zero(gx->dpe, R * C);
    vitq_layernorm_backward(gx->dpe, gp->pe_norm_w, gp->pe_norm_b, gx->dstream[0], x->pe, p->pe_norm_w, x->pe_mean,
                            x->pe_rstd, R, C);
    vitq_linear_backward(NULL, gp->patch_w, gp->patch_b, gx->dpe, x->patches, p->patch_w, R,
                         (int64_t)ar->in_chans * ar->patch_size * ar->patch_size, C);
}

/* vitq_family.unit_backward for Swin (units as in vitq_swin_unit_forward). */
int vitq_swin_unit_backward(vitq_model *m, vitq_acts *a, vitq_grad_acts *g, int u, int B, vitq_err *e) {
    vitq_swin_grads *gx = g->ext;
    if (!gx || gx->sig != vitq_swin_signature(m))
        return vitq_fail(e, VITQ_EINVAL, "backward: gradient buffers were made for another architecture");
    const vitq_unit *t = &m->units[u];
    switch (t->kind) {
    case VITQ_UNIT_PATCH_EMBED: patch_backward(m, a, gx, B); return VITQ_OK;
    case VITQ_UNIT_BLOCK: return block_backward(m, a, gx, u, t->block, B, e);
    case VITQ_UNIT_MERGE: return merge_backward(m, a, gx, u, vitq_swin_p(m)->lay->blk[m->units[u + 1].block].stage, B, e);
    default: return head_backward(m, a, g, gx, u, B, e);
    }
}
