/* vit.c — the activations of one batch shape (one slab, llm.c's ActivationTensors) and the ViT/DeiT
 * forward pass over them, with quantizer taps.
 *
 * Mirrors timm's VisionTransformer.forward in eval mode (no dropout, no drop-path):
 *   x = PatchEmbed(img)                  Conv2d(Cin, C, P, stride P) = im2col + linear
 *   x = cat(cls_token, x) + pos_embed      (the prefix-token variants: vit_embed.c)
 *   for each Block: x = x + attn(norm1(x)); x = x + mlp(norm2(x))     (pre-norm, LayerNorm eps 1e-6)
 *     with LayerScale (DeiT-III): x = x + ls1.gamma * attn(norm1(x)); x = x + ls2.gamma * mlp(norm2(x))
 *     attn: qkv(x).reshape(B,N,3,H,D).permute(2,0,3,1,4); softmax(q·k^T · D^-0.5); (att·v) merged; proj
 *     mlp:  fc2(act(fc1(x))), act = exact GELU (or ReLU after MLP reconstruction: m->mlp_act[l])
 *   logits = head(norm(x)[:, 0])          the final norm of the class token alone (same numbers); the
 *                                         pooling / fc_norm / pre_logits / distilled variants: vit_head.c
 *
 * Taps: when m->hooks is set, hooks->act is called on each tap buffer right before the next op reads
 * it, in forward order (patch_embed input; per block qkv input, q, k, v, probs, proj input, fc1 input,
 * fc2 input; head input: the sites of ViT's tap table, taps.c), skipping taps whose hooks->enabled[tap]
 * is 0. The hook may change the buffer
 * in place; backward then sees exactly what forward used. A hook's error aborts the forward.
 *
 * Layout: train = 1 keeps every block's buffers and the whole residual stream (depth+1 slots) for
 * backward (vit_backward.c); train = 0 shares one block's buffers and ping-pongs two residual slots.
 * All slot strides use the allocated batch; a smaller B uses the first B images of every buffer, and
 * qkvh is (3,B,H,N,D) for the B of the call.
 * Does not: run dropout / drop-path (eval mode), or keep patch embeddings
 * (their buffer is scratch, block 0's ln1). */
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static size_t block_floats(int64_t B, int64_t N, int64_t C, int64_t H, int64_t F, int ls) {
    int64_t R = B * N;
    return (size_t)(R * C      /* ln1 */
                    + 2 * R    /* ln1 mean, rstd */
                    + R * 3 * C /* qkv */
                    + 3 * R * C /* qkvh */
                    + B * H * N * N /* att */
                    + R * C    /* atty */
                    + R * C    /* res1 */
                    + R * C    /* ln2 */
                    + 2 * R    /* ln2 mean, rstd */
                    + R * F    /* fc1 */
                    + R * F    /* act */
                    + (ls ? 2 * R * C : 0)); /* proj_out, fc2_out */
}

/* Hands out 64-byte-aligned pieces of the slab. */
static float *take(float **cur, int64_t n) {
    float *p = *cur;
    *cur += (n + 15) & ~(int64_t)15;
    return p;
}

static void point_block(vitq_block_acts *b, float **cur, int64_t B, int64_t N, int64_t C, int64_t H, int64_t F,
                        int ls) {
    int64_t R = B * N;
    b->ln1 = take(cur, R * C);
    b->ln1_mean = take(cur, R);
    b->ln1_rstd = take(cur, R);
    b->qkv = take(cur, R * 3 * C);
    b->qkvh = take(cur, 3 * R * C);
    b->att = take(cur, B * H * N * N);
    b->atty = take(cur, R * C);
    b->res1 = take(cur, R * C);
    b->ln2 = take(cur, R * C);
    b->ln2_mean = take(cur, R);
    b->ln2_rstd = take(cur, R);
    b->fc1 = take(cur, R * F);
    b->act = take(cur, R * F);
    b->proj_out = ls ? take(cur, R * C) : NULL;
    b->fc2_out = ls ? take(cur, R * C) : NULL;
}

int vitq_vit_acts_create(const vitq_model *m, int B, int train, vitq_acts **out, vitq_err *e) {
    *out = NULL;
    const vitq_arch *ar = &m->arch;
    vitq_acts *a = calloc(1, sizeof *a);
    if (!a) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    const vitq_dims d = vitq_arch_dims(ar);
    a->B = B;
    a->train = train ? 1 : 0;
    a->N = d.N, a->C = d.C, a->H = d.H, a->D = d.D, a->F = d.F, a->K = d.K, a->Np = d.Np;
    a->patch_dim = (int64_t)ar->in_chans * ar->patch_size * ar->patch_size;
    const int64_t N = a->N, C = a->C, H = a->H, F = a->F, K = a->K;
    const int64_t S = ar->img_size, nblk = a->train ? ar->depth : 1, nres = a->train ? ar->depth + 1 : 2;
    /* every piece rounded up to 16 floats (64 bytes) */
    const int ls = ar->layerscale;
    size_t total = (size_t)(B * ar->in_chans * S * S) + (size_t)(B * a->Np * a->patch_dim) +
                   (size_t)(nres * B * N * C) + (size_t)nblk * block_floats(B, N, C, H, F, ls) + (size_t)(B * C) +
                   (size_t)(2 * B) + (size_t)(B * K) + vitq_vit_head_floats(ar, B) + 48 * 16;
    a->blk = calloc((size_t)nblk, sizeof *a->blk);
    a->slab = vitq_alloc(total * sizeof(float));
    if (!a->blk || !a->slab) {
        vitq_vit_acts_free(a);
        return vitq_fail(e, VITQ_ENOMEM, "out of memory allocating %zu MB of activations (batch %d%s)",
                         total * sizeof(float) >> 20, B, train ? ", train mode" : "");
    }
    a->bytes = total * sizeof(float);
    float *cur = a->slab;
    a->images = take(&cur, B * ar->in_chans * S * S);
    a->patches = take(&cur, B * a->Np * a->patch_dim);
    a->res = take(&cur, nres * B * N * C);
    for (int64_t l = 0; l < nblk; l++) point_block(&a->blk[l], &cur, B, N, C, H, F, ls);
    a->lnf = take(&cur, B * C);
    a->lnf_mean = take(&cur, B);
    a->lnf_rstd = take(&cur, B);
    a->logits = take(&cur, B * K);
    cur = vitq_vit_head_point(ar, &a->head, cur, B);
    *out = a;
    return VITQ_OK;
}

void vitq_vit_acts_free(vitq_acts *a) {
    if (!a) return;
    vitq_free(a->slab);
    free(a->blk);
    free(a);
}

vitq_block_acts *vitq_acts_block(vitq_acts *a, int l) { return &a->blk[a->train ? l : 0]; }

float *vitq_acts_res(vitq_acts *a, int l) {
    int64_t slot = a->train ? l : l % 2;
    return a->res + slot * a->B * a->N * a->C;
}

/* Checks that acts `a` were made for m's shapes and hold B images. */
int vitq_vit_check(const vitq_model *m, const vitq_acts *a, int B, vitq_err *e) {
    const vitq_arch *ar = &m->arch;
    if (a->N != vitq_arch_tokens(ar) || a->C != ar->embed_dim || a->H != ar->num_heads ||
        a->F != vitq_arch_hidden(ar) || a->K != ar->num_classes ||
        a->patch_dim != (int64_t)ar->in_chans * ar->patch_size * ar->patch_size ||
        !a->blk[0].proj_out != !ar->layerscale || !vitq_vit_head_fits(ar, a))
        return vitq_fail(e, VITQ_EINVAL, "%s: activations were made for another architecture",
                         m->source[0] ? m->source : ar->name);
    if (B <= 0 || B > a->B)
        return vitq_fail(e, VITQ_EINVAL, "forward: batch of %d does not fit activations made for %d", B, a->B);
    return VITQ_OK;
}

/* out = x + gamma * branch, gamma per channel (timm's LayerScale: x * gamma, then the residual add). */
static void layerscale_add(float *out, const float *x, const float *branch, const float *gamma, int64_t R, int64_t C) {
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) out[r * C + c] = x[r * C + c] + branch[r * C + c] * gamma[c];
}

static int block_forward(vitq_model *m, vitq_acts *a, int l, int B, vitq_err *e) {
    const int64_t N = a->N, C = a->C, H = a->H, D = a->D, F = a->F, R = (int64_t)B * N;
    const vitq_block_params *p = &m->p.blocks[l];
    vitq_block_acts *ba = vitq_acts_block(a, l);
    const float *x = vitq_acts_res(a, l);
    float *y = vitq_acts_res(a, l + 1);
    const int64_t rc_shape[3] = {B, N, C}, hd_shape[4] = {B, H, N, D}, pr_shape[4] = {B, H, N, N};
    const int64_t f_shape[3] = {B, N, F};
    const int64_t qkv_n = (int64_t)B * H * N * D; /* one of q, k, v in qkvh (3,B,H,N,D) */
    float *q = ba->qkvh, *k = ba->qkvh + qkv_n, *v = ba->qkvh + 2 * qkv_n;
    int rc;

    /* attention branch: res1 = x + proj(attn(norm1(x))) */
    vitq_layernorm_forward(ba->ln1, ba->ln1_mean, ba->ln1_rstd, x, p->norm1_w, p->norm1_b, R, C, 1e-6f);
    if ((rc = vitq_tap_call(m, VITQ_SITE_QKV_IN, l, ba->ln1, 3, rc_shape, e))) return rc;
    vitq_linear_forward(ba->qkv, ba->ln1, p->qkv_w, m->arch.qkv_bias ? p->qkv_b : NULL, R, C, 3 * C);
    vitq_qkv_split_forward(ba->qkvh, ba->qkv, B, N, C, H);
    if ((rc = vitq_tap_call(m, VITQ_SITE_Q, l, q, 4, hd_shape, e))) return rc;
    if ((rc = vitq_tap_call(m, VITQ_SITE_K, l, k, 4, hd_shape, e))) return rc;
    if ((rc = vitq_tap_call(m, VITQ_SITE_V, l, v, 4, hd_shape, e))) return rc;
    vitq_attn_softmax_forward(ba->att, q, k, B, H, N, D, 1.0f / sqrtf((float)D));
    if ((rc = vitq_tap_call(m, VITQ_SITE_PROBS, l, ba->att, 4, pr_shape, e))) return rc;
    vitq_attn_value_forward(ba->atty, ba->att, v, B, H, N, D);
    if ((rc = vitq_tap_call(m, VITQ_SITE_PROJ_IN, l, ba->atty, 3, rc_shape, e))) return rc;
    if (p->ls1) { /* LayerScale: res1 = x + gamma1 * proj(atty), the branch kept for backward */
        vitq_linear_forward(ba->proj_out, ba->atty, p->proj_w, p->proj_b, R, C, C);
        layerscale_add(ba->res1, x, ba->proj_out, p->ls1, R, C);
    } else {
        vitq_linear_forward(ba->res1, ba->atty, p->proj_w, p->proj_b, R, C, C);
        vitq_add_forward(ba->res1, ba->res1, x, R * C);
    }

    /* MLP branch: y = res1 + fc2(act(fc1(norm2(res1)))) */
    vitq_layernorm_forward(ba->ln2, ba->ln2_mean, ba->ln2_rstd, ba->res1, p->norm2_w, p->norm2_b, R, C, 1e-6f);
    if ((rc = vitq_tap_call(m, VITQ_SITE_FC1_IN, l, ba->ln2, 3, rc_shape, e))) return rc;
    vitq_linear_forward(ba->fc1, ba->ln2, p->fc1_w, p->fc1_b, R, C, F);
    if (m->mlp_act[l] == VITQ_ACT_RELU)
        vitq_relu_forward(ba->act, ba->fc1, R * F);
    else
        vitq_gelu_forward(ba->act, ba->fc1, R * F);
    if ((rc = vitq_tap_call(m, VITQ_SITE_FC2_IN, l, ba->act, 3, f_shape, e))) return rc;
    if (p->ls2) {
        vitq_linear_forward(ba->fc2_out, ba->act, p->fc2_w, p->fc2_b, R, F, C);
        layerscale_add(y, ba->res1, ba->fc2_out, p->ls2, R, C);
    } else {
        vitq_linear_forward(y, ba->act, p->fc2_w, p->fc2_b, R, F, C);
        vitq_add_forward(y, y, ba->res1, R * C);
    }
    return VITQ_OK;
}

/* Patch embedding: im2col + linear (the conv weight viewed as (C, Cin*P*P)) into scratch, then the class
 * token and the position embedding: a->images (B,Cin,S,S) -> res[0] (B,N,C). */
static int patch_forward(vitq_model *m, vitq_acts *a, int B, vitq_err *e) {
    const vitq_arch *ar = &m->arch;
    const int64_t N = a->N, C = a->C, Np = a->Np, S = ar->img_size, Cin = ar->in_chans;
    const int64_t img_shape[4] = {B, Cin, S, S};
    int rc;
    if ((rc = vitq_tap_call(m, VITQ_SITE_PATCH_IN, -1, a->images, 4, img_shape, e))) return rc;
    vitq_patchify_forward(a->patches, a->images, B, Cin, S, ar->patch_size);
    float *patch_out = vitq_acts_block(a, 0)->ln1; /* (B,Np,C) scratch, overwritten by block 0 */
    vitq_linear_forward(patch_out, a->patches, m->p.patch_w, m->p.patch_b, (int64_t)B * Np, a->patch_dim, C);
    vitq_vit_embed_forward(ar, &m->p, vitq_acts_res(a, 0), patch_out, B, N, C);
    return VITQ_OK;
}

/* vitq_family.unit_forward: unit 0 patch embedding, 1..depth the blocks, depth+1 the head. */
int vitq_vit_unit_forward(vitq_model *m, vitq_acts *a, int u, int B, vitq_err *e) {
    if (u == 0) return patch_forward(m, a, B, e);
    if (u <= m->arch.depth) return block_forward(m, a, u - 1, B, e);
    return vitq_vit_head_forward(m, a, B, e);
}
