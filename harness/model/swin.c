/* swin.c — the Swin Transformer forward, one unit at a time (swin_units.c lists the units), with quantizer
 * taps. Mirrors timm 0.9's SwinTransformer in eval mode (tests/reference/SWIN_NOTES.md, op for op):
 *
 *   patch_embed  x = LayerNorm(Conv2d(Cin, C0, P, stride P)(img) as NHWC)        im2col + linear, eps 1e-5
 *   block        t = norm1(x); roll(-s, -s); pad; window_partition               one row gather (swin_geom.c)
 *                qkv = Linear(t); q, k, v per head; q *= D^-0.5; attn = softmax(q·k^T + bias[rpi] (+ mask))
 *                o = proj(attn·v); window_reverse; crop; roll(+s, +s)             one row gather back
 *                x = x + o; x = x + fc2(gelu(fc1(norm2(x))))
 *   downsample   merged[y, x, (2dx+dy)C + c] = x[2y+dy, 2x+dx, c]; LayerNorm(4C); Linear(4C -> 2C, no bias)
 *   head         LayerNorm per token; mean over tokens; head.fc
 *
 * Taps (model.h "Swin") are called on the buffer the next op reads, in forward order, exactly as vit.c does;
 * backward (swin_backward.c) sees what forward used. The window-layout buffers hold B * nW windows of N
 * tokens; padding rows (a stage side not a multiple of the window) are zero after the norm, as timm pads
 * after norm1, so their k and v are the qkv biases and unshifted blocks attend to them as timm does.
 * Does not: run dropout / drop-path (identity in eval), or keep norm1's NHWC output, the qkv output or the
 * proj output (scratch; backward needs none of them). */
#include "model/model.h"

#include <math.h>

#define LN_EPS 1e-5f /* nn.LayerNorm's default, every norm of timm's Swin */

static int patch_forward(vitq_model *m, vitq_acts *a, int B, vitq_err *e) {
    const vitq_arch *ar = &m->arch;
    const vitq_swin_params *p = vitq_swin_p(m);
    vitq_swin_acts *x = a->ext;
    const int64_t S = ar->img_size, Cin = ar->in_chans, C = ar->embed_dim, Np = (int64_t)p->lay->grid * p->lay->grid;
    const int64_t img_shape[4] = {B, Cin, S, S};
    int rc = vitq_tap_call(m, VITQ_SITE_PATCH_IN, -1, a->images, 4, img_shape, e);
    if (rc) return rc;
    vitq_patchify_forward(x->patches, a->images, B, Cin, S, ar->patch_size);
    vitq_linear_forward(x->pe, x->patches, p->patch_w, p->patch_b, B * Np, Cin * ar->patch_size * ar->patch_size, C);
    vitq_layernorm_forward(x->stream[0], x->pe_mean, x->pe_rstd, x->pe, p->pe_norm_w, p->pe_norm_b, B * Np, C, LN_EPS);
    return VITQ_OK;
}

/* Block l (unit u): stream[u-1] (B, L, C) -> stream[u]. */
static int block_forward(vitq_model *m, vitq_acts *a, int u, int l, int B, vitq_err *e) {
    vitq_swin_acts *x = a->ext;
    const vitq_swin_block_geom *g = &vitq_swin_p(m)->lay->blk[l];
    const vitq_swin_block_params *p = &vitq_swin_p(m)->blocks[l];
    vitq_swin_block_acts *ba = &x->blk[l];
    const int64_t L = (int64_t)g->res * g->res, C = g->C, H = g->heads, N = g->N, D = g->D, F = g->F;
    const int64_t Bw = (int64_t)B * g->nw, Mw = (int64_t)g->nw * N, R = (int64_t)B * L, Rw = Bw * N;
    const int64_t win3[3] = {Bw, N, C}, hd4[4] = {Bw, H, N, D}, pr4[4] = {Bw, H, N, N};
    const int64_t tok3[3] = {B, L, C}, f3[3] = {B, L, F};
    const float *in = x->stream[u - 1];
    float *out = x->stream[u], *q = ba->qkvh, *k = q + Rw * C, *v = k + Rw * C;
    int rc;

    /* attention branch: res1 = x + reverse(proj(window_attention(partition(norm1(x))))) */
    vitq_layernorm_forward(x->scratch, ba->ln1_mean, ba->ln1_rstd, in, p->norm1_w, p->norm1_b, R, C, LN_EPS);
    vitq_gather_rows_forward(ba->xw, x->scratch, g->widx, B, L, Mw, C);
    if ((rc = vitq_tap_call(m, VITQ_SITE_QKV_IN, l, ba->xw, 3, win3, e))) return rc;
    vitq_linear_forward(x->scratch, ba->xw, p->qkv_w, m->arch.qkv_bias ? p->qkv_b : NULL, Rw, C, 3 * C);
    vitq_qkv_split_forward(ba->qkvh, x->scratch, Bw, N, C, H);
    vitq_scale_forward(q, q, 1.0f / sqrtf((float)D), Rw * C); /* q = q * scale before the matmul (and its tap) */
    if ((rc = vitq_tap_call(m, VITQ_SITE_Q, l, q, 4, hd4, e))) return rc;
    if ((rc = vitq_tap_call(m, VITQ_SITE_K, l, k, 4, hd4, e))) return rc;
    if ((rc = vitq_tap_call(m, VITQ_SITE_V, l, v, 4, hd4, e))) return rc;
    vitq_window_attn_forward(ba->att, q, k, p->rpb, g->rpi, g->mask, Bw, g->nw, H, N, D, 1.0f);
    if ((rc = vitq_tap_call(m, VITQ_SITE_PROBS, l, ba->att, 4, pr4, e))) return rc;
    vitq_attn_value_forward(ba->atty, ba->att, v, Bw, H, N, D);
    if ((rc = vitq_tap_call(m, VITQ_SITE_PROJ_IN, l, ba->atty, 3, win3, e))) return rc;
    vitq_linear_forward(x->scratch, ba->atty, p->proj_w, p->proj_b, Rw, C, C);
    vitq_gather_rows_forward(ba->res1, x->scratch, g->winv, B, Mw, L, C);
    vitq_add_forward(ba->res1, ba->res1, in, R * C);

    /* MLP branch: out = res1 + fc2(act(fc1(norm2(res1)))) */
    vitq_layernorm_forward(ba->ln2, ba->ln2_mean, ba->ln2_rstd, ba->res1, p->norm2_w, p->norm2_b, R, C, LN_EPS);
    if ((rc = vitq_tap_call(m, VITQ_SITE_FC1_IN, l, ba->ln2, 3, tok3, e))) return rc;
    vitq_linear_forward(ba->fc1, ba->ln2, p->fc1_w, p->fc1_b, R, C, F);
    if (m->mlp_act[l] == VITQ_ACT_RELU) vitq_relu_forward(ba->act, ba->fc1, R * F);
    else vitq_gelu_forward(ba->act, ba->fc1, R * F);
    if ((rc = vitq_tap_call(m, VITQ_SITE_FC2_IN, l, ba->act, 3, f3, e))) return rc;
    vitq_linear_forward(out, ba->act, p->fc2_w, p->fc2_b, R, F, C);
    vitq_add_forward(out, out, ba->res1, R * C);
    return VITQ_OK;
}

/* Patch merging at the start of stage s (unit u): stream[u-1] (B, 2r, 2r, C/2) -> stream[u] (B, r, r, C). */
static int merge_forward(vitq_model *m, vitq_acts *a, int u, int s, int B, vitq_err *e) {
    vitq_swin_acts *x = a->ext;
    const vitq_swin_params *p = vitq_swin_p(m);
    const vitq_swin_stage_geom *st = &p->lay->stage[s];
    vitq_swin_merge_acts *ma = &x->mrg[s];
    const int64_t L = (int64_t)st->res * st->res, C = st->C, M = 2 * C, shape[3] = {B, L, M};
    vitq_gather_rows_forward(ma->mg, x->stream[u - 1], st->midx, B, 4 * L, 4 * L, C / 2);
    vitq_layernorm_forward(ma->mgn, ma->mean, ma->rstd, ma->mg, p->ds_norm_w[s], p->ds_norm_b[s], B * L, M, LN_EPS);
    int rc = vitq_tap_call(m, VITQ_SITE_REDUCTION_IN, st->first, ma->mgn, 3, shape, e);
    if (rc) return rc;
    vitq_linear_forward(x->stream[u], ma->mgn, p->ds_red_w[s], NULL, B * L, M, C);
    return VITQ_OK;
}

/* Final norm per token, mean over tokens, head.fc: stream[u-1] (B, L, C) -> logits (B, K). */
static int head_forward(vitq_model *m, vitq_acts *a, int u, int B, vitq_err *e) {
    vitq_swin_acts *x = a->ext;
    const vitq_swin_params *p = vitq_swin_p(m);
    const vitq_swin_stage_geom *st = &p->lay->stage[p->lay->n_stages - 1];
    const int64_t L = (int64_t)st->res * st->res, C = st->C, K = m->arch.num_classes, shape[2] = {B, C};
    vitq_layernorm_forward(x->lnf, x->lnf_mean, x->lnf_rstd, x->stream[u - 1], p->norm_w, p->norm_b, B * L, C, LN_EPS);
    vitq_token_mean_forward(x->pooled, x->lnf, B, L, C);
    int rc = vitq_tap_call(m, VITQ_SITE_HEAD_IN, -1, x->pooled, 2, shape, e);
    if (rc) return rc;
    vitq_linear_forward(a->logits, x->pooled, p->head_w, p->head_b, B, C, K);
    return VITQ_OK;
}

/* The stage a merge unit u starts: that of the block unit after it. */
static int merge_stage(const vitq_model *m, int u) { return vitq_swin_p(m)->lay->blk[m->units[u + 1].block].stage; }

/* vitq_family.unit_forward for Swin. */
int vitq_swin_unit_forward(vitq_model *m, vitq_acts *a, int u, int B, vitq_err *e) {
    switch (m->units[u].kind) {
    case VITQ_UNIT_PATCH_EMBED: return patch_forward(m, a, B, e);
    case VITQ_UNIT_BLOCK: return block_forward(m, a, u, m->units[u].block, B, e);
    case VITQ_UNIT_MERGE: return merge_forward(m, a, u, merge_stage(m, u), B, e);
    default: return head_forward(m, a, u, B, e);
    }
}
