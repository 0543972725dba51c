/* vit_backward.c — backward through the ViT/DeiT forward of vit.c, in exactly the reverse order of
 * vitq_forward (llm.c's gpt2_backward): head, final norm on the class token, blocks depth-1..0
 * (MLP branch, norm2, attention branch, norm1; LayerScale gammas), embedding (vit_embed.c), patch-embedding
 * linear on the im2col patches. The head's variants are in vit_head.c.
 * It owns the gradient-activation buffers (vitq_grad_acts, one slab per batch shape).
 *
 * Quantizer taps are reached through the hooks' act_backward (the identity without one); the input
 * image gets no gradient.
 * Mirrors: torch.autograd on timm's VisionTransformer (checked by tests/test_grad.c against
 * tests/fixtures/grad_tiny.safetensors). */
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int vitq_vit_grad_acts_create(const vitq_model *m, int B, vitq_grad_acts **out, vitq_err *e) {
    *out = NULL;
    const vitq_arch *ar = &m->arch;
    vitq_grad_acts *g = calloc(1, sizeof *g);
    if (!g) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    const vitq_dims d = vitq_arch_dims(ar);
    g->B = B;
    g->N = d.N, g->C = d.C, g->H = d.H, g->D = d.D, g->F = d.F, g->K = d.K, g->Np = d.Np;
    g->depth = ar->depth;
    const int64_t BN = (int64_t)B * g->N, C = g->C, F = g->F, H = g->H, N = g->N;
    const int64_t R = ar->representation_size, dist = ar->distilled ? 1 : 0;
    const int avg_norm = ar->global_pool == VITQ_POOL_AVG && !ar->fc_norm;
    struct {
        float **p;
        int64_t n;
    } bufs[] = {
        {&g->dres, (g->depth + 1) * BN * C},
        {&g->dlogits, (int64_t)B * g->K},
        {&g->probs, (int64_t)B * g->K},
        {&g->dlnf, (int64_t)B * C},
        {&g->xcls, (int64_t)B * C},
        {&g->dxcls, (int64_t)B * C},
        {&g->dpatch, (int64_t)B * g->Np * C},
        {&g->dln1, BN * C},
        {&g->dqkv, BN * 3 * C},
        {&g->dqkvh, BN * 3 * C},
        {&g->datt, (int64_t)B * H * N * N},
        {&g->datty, BN * C},
        {&g->dres1, BN * C},
        {&g->dln2, BN * C},
        {&g->dfc1, BN * F},
        {&g->dact, BN * F},
        {&g->dpool, (int64_t)B * C},
        {&g->dlnd, dist * B * C},
        {&g->xdist, dist * B * C},
        {&g->dxdist, dist * B * C},
        {&g->dlnall, avg_norm ? BN * C : 0},
        {&g->dfeat, (int64_t)B * R},
        {&g->dpre, (int64_t)B * R},
        {&g->dhalf, dist * B * g->K},
        {&g->dls, ar->layerscale ? BN * C : 0},
    };
    const int nb = (int)(sizeof bufs / sizeof bufs[0]);
    size_t total = 0;
    for (int i = 0; i < nb; i++) total += ((size_t)bufs[i].n + 15) & ~(size_t)15; // 64-byte aligned pieces
    g->slab = vitq_alloc(total * sizeof(float));
    if (!g->slab) {
        free(g);
        return vitq_fail(e, VITQ_ENOMEM, "out of memory allocating %zu MB of gradient buffers (batch %d)",
                         total * sizeof(float) >> 20, B);
    }
    g->bytes = total * sizeof(float);
    float *cur = g->slab;
    for (int i = 0; i < nb; i++) {
        *bufs[i].p = bufs[i].n ? cur : NULL;
        cur += ((size_t)bufs[i].n + 15) & ~(size_t)15;
    }
    *out = g;
    return VITQ_OK;
}

void vitq_vit_grad_acts_free(vitq_grad_acts *g) {
    if (!g) return;
    vitq_free(g->slab);
    free(g);
}

float *vitq_grad_res(vitq_grad_acts *g, int l) { return g->dres + (int64_t)l * g->B * g->N * g->C; }

/* dst = src over the pool: the residual copies are ~2.4 MB each at batch 128, and a serial copy leaves the
 * other threads idle. */
typedef struct {
    float *dst;
    const float *src;
} copy_ctx;

static void copy_range(void *vctx, int64_t i0, int64_t i1) {
    const copy_ctx *c = vctx;
    memcpy(c->dst + i0, c->src + i0, sizeof(float) * (size_t)(i1 - i0));
}

static void copy_par(float *dst, const float *src, int64_t n) {
    copy_ctx c = {dst, src};
    vitq_parallel_for_work(n, 1, copy_range, &c);
}

/* LayerScale's backward (out = x + branch * gamma): dgamma (C; NULL: not wanted) += sum over rows of
 * dout * branch; returns dbranch (R,C) = dout * gamma, written into scratch. */
static const float *layerscale_backward(float *dbranch, float *dgamma, const float *dout, const float *branch,
                                        const float *gamma, int64_t R, int64_t C) {
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) {
            if (dgamma) dgamma[c] += dout[r * C + c] * branch[r * C + c];
            dbranch[r * C + c] = dout[r * C + c] * gamma[c];
        }
    return dbranch;
}

/* Block l: x = res[l]; res1 = x + proj(attn(norm1(x))); out = res1 + fc2(act(fc1(norm2(res1)))).
 * Each tap's backward hook runs at its place (see vitq_tap_hooks.act_backward): after the backward of
 * the op that consumed the tap's output, before the backward of the op that produced its input. */
static int block_backward(vitq_model *m, vitq_acts *a, vitq_grad_acts *g, int l, int B, vitq_err *e) {
    const int64_t N = g->N, C = g->C, H = g->H, D = g->D, F = g->F, R = (int64_t)B * N;
    const vitq_block_params *p = &m->p.blocks[l];
    vitq_block_params *gp = &m->g.blocks[l];
    vitq_block_acts *ba = vitq_acts_block(a, l);
    const float *x = vitq_acts_res(a, l);
    const float *dout = vitq_grad_res(g, l + 1);
    float *dx = vitq_grad_res(g, l);
    const int64_t qkv_n = (int64_t)B * H * N * D; // one of q, k, v in qkvh (3,B,H,N,D)
    const int64_t rc_shape[3] = {B, N, C}, hd_shape[4] = {B, H, N, D}, pr_shape[4] = {B, H, N, N};
    const int64_t f_shape[3] = {B, N, F};
    const int aux = !(m->grad_skip & VITQ_GRAD_SKIP_AUX), din = !(m->grad_skip & VITQ_GRAD_SKIP_INPUT);
    const int wgt = !(m->grad_skip & VITQ_GRAD_SKIP_WEIGHTS);
#define AUX(p) (aux ? (p) : NULL) /* a bias', LayerNorm's or LayerScale's gradient, unless skipped */
#define WGT(p) (wgt ? (p) : NULL) /* a weight matrix's gradient, unless skipped */
    int rc;

    // out = res1 + fc2(act): the residual passes dout to res1 unchanged. Buffers with one writer are
    // written by the *_to kernels (no zeroing pass); dres1 and dx gather two branches, so they accumulate.
    // With LayerScale the branch is gamma * fc2(act): dgamma += sum_r dout * fc2(act), the branch gets dout * gamma.
    copy_par(g->dres1, dout, R * C);
    const float *dfc2 = p->ls2 ? layerscale_backward(g->dls, AUX(gp->ls2), dout, ba->fc2_out, p->ls2, R, C) : dout;
    vitq_linear_backward_to(g->dact, WGT(gp->fc2_w), AUX(gp->fc2_b), dfc2, ba->act, p->fc2_w, R, F, C);
    if ((rc = vitq_tap_call_backward(m, VITQ_SITE_FC2_IN, l, ba->act, g->dact, 3, f_shape, e))) return rc;
    if (m->mlp_act[l] == VITQ_ACT_RELU)
        vitq_relu_backward_to(g->dfc1, ba->fc1, g->dact, R * F);
    else
        vitq_gelu_backward_to(g->dfc1, ba->fc1, g->dact, R * F);
    vitq_linear_backward_to(g->dln2, WGT(gp->fc1_w), AUX(gp->fc1_b), g->dfc1, ba->ln2, p->fc1_w, R, C, F);
    if ((rc = vitq_tap_call_backward(m, VITQ_SITE_FC1_IN, l, ba->ln2, g->dln2, 3, rc_shape, e))) return rc;
    vitq_layernorm_backward(g->dres1, AUX(gp->norm2_w), AUX(gp->norm2_b), g->dln2, ba->res1, p->norm2_w, ba->ln2_mean,
                            ba->ln2_rstd, R, C);

    // res1 = x + proj(atty)
    if (din) copy_par(dx, g->dres1, R * C);
    const float *dproj =
        p->ls1 ? layerscale_backward(g->dls, AUX(gp->ls1), g->dres1, ba->proj_out, p->ls1, R, C) : g->dres1;
    vitq_linear_backward_to(g->datty, WGT(gp->proj_w), AUX(gp->proj_b), dproj, ba->atty, p->proj_w, R, C, C);
    if ((rc = vitq_tap_call_backward(m, VITQ_SITE_PROJ_IN, l, ba->atty, g->datty, 3, rc_shape, e))) return rc;
    float *q = ba->qkvh, *k = ba->qkvh + qkv_n, *v = ba->qkvh + 2 * qkv_n;
    float *dq = g->dqkvh, *dk = g->dqkvh + qkv_n, *dv = g->dqkvh + 2 * qkv_n;
    vitq_attn_value_backward_to(g->datt, dv, g->datty, ba->att, v, B, H, N, D);
    // the probabilities' tap first: softmax backward reads the probabilities the softmax produced
    if ((rc = vitq_tap_call_backward(m, VITQ_SITE_PROBS, l, ba->att, g->datt, 4, pr_shape, e))) return rc;
    vitq_attn_softmax_backward_to(dq, dk, g->datt, ba->att, q, k, B, H, N, D, 1.0f / sqrtf((float)D));
    if ((rc = vitq_tap_call_backward(m, VITQ_SITE_V, l, v, dv, 4, hd_shape, e)) ||
        (rc = vitq_tap_call_backward(m, VITQ_SITE_K, l, k, dk, 4, hd_shape, e)) ||
        (rc = vitq_tap_call_backward(m, VITQ_SITE_Q, l, q, dq, 4, hd_shape, e)))
        return rc;
    vitq_qkv_split_backward_to(g->dqkv, g->dqkvh, B, N, C, H);
    vitq_linear_backward_to(g->dln1, WGT(gp->qkv_w), m->arch.qkv_bias ? AUX(gp->qkv_b) : NULL, g->dqkv, ba->ln1,
                            p->qkv_w, R, C, 3 * C);
    if ((rc = vitq_tap_call_backward(m, VITQ_SITE_QKV_IN, l, ba->ln1, g->dln1, 3, rc_shape, e))) return rc;
    vitq_layernorm_backward(din ? dx : NULL, AUX(gp->norm1_w), AUX(gp->norm1_b), g->dln1, x, p->norm1_w,
                            ba->ln1_mean, ba->ln1_rstd, R, C);
#undef AUX
#undef WGT
    return VITQ_OK;
}

/* Embedding: x = prefix tokens and patch_out + pos (vit_embed.c), then patch_out = patches · patch_w^T +
 * patch_b. The image gets no gradient, so a quantizer on patch_embed.proj.input is not reached by backward. */
static void patch_backward(vitq_model *m, vitq_acts *a, vitq_grad_acts *g, int B) {
    const int64_t N = g->N, C = g->C, Np = g->Np;
    vitq_vit_embed_backward(&m->arch, &m->g, g->dpatch, vitq_grad_res(g, 0), B, N, C);
    vitq_linear_backward(NULL, m->g.patch_w, m->g.patch_b, g->dpatch, a->patches, m->p.patch_w, (int64_t)B * Np,
                         a->patch_dim, C);
}

/* vitq_family.unit_backward (units as in vitq_vit_unit_forward). */
int vitq_vit_unit_backward(vitq_model *m, vitq_acts *a, vitq_grad_acts *g, int u, int B, vitq_err *e) {
    if (g->depth != m->arch.depth || g->C != m->arch.embed_dim || a->C != g->C || a->N != g->N)
        return vitq_fail(e, VITQ_EINVAL, "backward: gradient buffers were made for another architecture");
    if (u == 0) {
        patch_backward(m, a, g, B);
        return VITQ_OK;
    }
    if (u <= m->arch.depth) return block_backward(m, a, g, u - 1, B, e);
    return vitq_vit_head_backward(m, a, g, B, e);
}
