/* vit_backward.c — backward through the ViT/DeiT forward of vit.c, in exactly the reverse order of
 * vitq_forward (llm.c's gpt2_backward): head, final norm on the class token, blocks depth-1..0
 * (MLP branch, norm2, attention branch, norm1), embedding, patch-embedding linear on the im2col patches.
 * It owns the gradient-activation buffers (vitq_grad_acts, one slab per batch shape).
 *
 * Does not: differentiate quantizer taps (they are straight-through here; a plugin that learns its
 * own parameters handles that itself) or compute the gradient of the input image.
 * Mirrors: torch.autograd on timm's VisionTransformer (checked by tests/test_grad.c against
 * tests/fixtures/grad_tiny.safetensors). */
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int vitq_grad_acts_create(const vitq_model *m, int B, vitq_grad_acts **out, vitq_err *e) {
    *out = NULL;
    if (B <= 0) return vitq_fail(e, VITQ_EINVAL, "gradient buffers: batch size must be positive, got %d", B);
    const vitq_arch *ar = &m->arch;
    vitq_grad_acts *g = calloc(1, sizeof *g);
    if (!g) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    const vitq_dims d = vitq_arch_dims(ar);
    g->B = B;
    g->N = d.N, g->C = d.C, g->H = d.H, g->D = d.D, g->F = d.F, g->K = d.K, g->Np = d.Np;
    g->depth = ar->depth;
    const int64_t BN = (int64_t)B * g->N, C = g->C, F = g->F, H = g->H, N = g->N;
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
        *bufs[i].p = cur;
        cur += ((size_t)bufs[i].n + 15) & ~(size_t)15;
    }
    *out = g;
    return VITQ_OK;
}

void vitq_grad_acts_free(vitq_grad_acts *g) {
    if (!g) return;
    vitq_free(g->slab);
    free(g);
}

float *vitq_grad_res(vitq_grad_acts *g, int l) { return g->dres + (int64_t)l * g->B * g->N * g->C; }

static void zero(float *p, int64_t n) { memset(p, 0, sizeof(float) * (size_t)n); }

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

static int check_shapes(const vitq_model *m, const vitq_acts *a, const vitq_grad_acts *g, int B, vitq_err *e) {
    if (!m->grad_slab)
        return vitq_fail(e, VITQ_EINVAL, "%s: backward needs parameter gradients (vitq_model_alloc_grads)",
                         m->source[0] ? m->source : "model");
    if (B <= 0 || B > a->B || B > g->B)
        return vitq_fail(e, VITQ_EINVAL, "backward: batch %d does not fit the buffers (acts %d, grads %d)", B,
                         a->B, g->B);
    if (g->depth != m->arch.depth || g->C != m->arch.embed_dim || a->C != g->C || a->N != g->N)
        return vitq_fail(e, VITQ_EINVAL, "backward: gradient buffers were made for another architecture");
    return VITQ_OK;
}

/* Block l: x = res[l]; res1 = x + proj(attn(norm1(x))); out = res1 + fc2(act(fc1(norm2(res1)))). */
static void block_backward(vitq_model *m, vitq_acts *a, vitq_grad_acts *g, int l, int B) {
    const int64_t N = g->N, C = g->C, H = g->H, D = g->D, F = g->F, R = (int64_t)B * N;
    const vitq_block_params *p = &m->p.blocks[l];
    vitq_block_params *gp = &m->g.blocks[l];
    vitq_block_acts *ba = vitq_acts_block(a, l);
    const float *x = vitq_acts_res(a, l);
    const float *dout = vitq_grad_res(g, l + 1);
    float *dx = vitq_grad_res(g, l);
    const int64_t qkv_n = (int64_t)B * H * N * D; // one of q, k, v in qkvh (3,B,H,N,D)

    // out = res1 + fc2(act): the residual passes dout to res1 unchanged. Buffers with one writer are
    // written by the *_to kernels (no zeroing pass); dres1 and dx gather two branches, so they accumulate.
    copy_par(g->dres1, dout, R * C);
    vitq_linear_backward_to(g->dact, gp->fc2_w, gp->fc2_b, dout, ba->act, p->fc2_w, R, F, C);
    if (m->mlp_act[l] == VITQ_ACT_RELU)
        vitq_relu_backward_to(g->dfc1, ba->fc1, g->dact, R * F);
    else
        vitq_gelu_backward_to(g->dfc1, ba->fc1, g->dact, R * F);
    vitq_linear_backward_to(g->dln2, gp->fc1_w, gp->fc1_b, g->dfc1, ba->ln2, p->fc1_w, R, C, F);
    vitq_layernorm_backward(g->dres1, gp->norm2_w, gp->norm2_b, g->dln2, ba->res1, p->norm2_w, ba->ln2_mean,
                            ba->ln2_rstd, R, C);

    // res1 = x + proj(atty)
    copy_par(dx, g->dres1, R * C);
    vitq_linear_backward_to(g->datty, gp->proj_w, gp->proj_b, g->dres1, ba->atty, p->proj_w, R, C, C);
    const float *q = ba->qkvh, *k = ba->qkvh + qkv_n, *v = ba->qkvh + 2 * qkv_n;
    float *dq = g->dqkvh, *dk = g->dqkvh + qkv_n, *dv = g->dqkvh + 2 * qkv_n;
    vitq_attn_value_backward_to(g->datt, dv, g->datty, ba->att, v, B, H, N, D);
    vitq_attn_softmax_backward_to(dq, dk, g->datt, ba->att, q, k, B, H, N, D, 1.0f / sqrtf((float)D));
    vitq_qkv_split_backward_to(g->dqkv, g->dqkvh, B, N, C, H);
    vitq_linear_backward_to(g->dln1, gp->qkv_w, m->arch.qkv_bias ? gp->qkv_b : NULL, g->dqkv, ba->ln1, p->qkv_w,
                            R, C, 3 * C);
    vitq_layernorm_backward(dx, gp->norm1_w, gp->norm1_b, g->dln1, x, p->norm1_w, ba->ln1_mean, ba->ln1_rstd,
                            R, C);
}

int vitq_block_backward(vitq_model *m, vitq_acts *a, vitq_grad_acts *g, int l, int B, vitq_err *e) {
    int rc = check_shapes(m, a, g, B, e);
    if (rc) return rc;
    if (l < 0 || l >= m->arch.depth)
        return vitq_fail(e, VITQ_EINVAL, "block backward: block %d out of range [0, %d)", l, m->arch.depth);
    block_backward(m, a, g, l, B);
    return VITQ_OK;
}

int vitq_backward(vitq_model *m, vitq_acts *a, vitq_grad_acts *g, const float *dlogits, int B, vitq_err *e) {
    int rc = check_shapes(m, a, g, B, e);
    if (rc) return rc;
    if (!a->train)
        return vitq_fail(e, VITQ_EINVAL, "backward: activations were made in eval mode (need train = 1)");
    const int64_t N = g->N, C = g->C, K = g->K, Np = g->Np, depth = g->depth;
    const int64_t patch_dim = a->patch_dim;
    float *dlast = vitq_grad_res(g, (int)depth);

    // head: logits = lnf · head_w^T + head_b
    zero(g->dlnf, (int64_t)B * C);
    vitq_linear_backward(g->dlnf, m->g.head_w, m->g.head_b, dlogits, a->lnf, m->p.head_w, B, C, K);
    // final norm on the class token only: gather x[:,0,:], backward, scatter into the last residual
    const float *xlast = vitq_acts_res(a, (int)depth);
    for (int b = 0; b < B; b++) memcpy(g->xcls + b * C, xlast + b * N * C, sizeof(float) * (size_t)C);
    zero(g->dxcls, (int64_t)B * C);
    vitq_layernorm_backward(g->dxcls, m->g.norm_w, m->g.norm_b, g->dlnf, g->xcls, m->p.norm_w, a->lnf_mean,
                            a->lnf_rstd, B, C);
    zero(dlast, (int64_t)B * N * C);
    for (int b = 0; b < B; b++) memcpy(dlast + b * N * C, g->dxcls + b * C, sizeof(float) * (size_t)C);

    for (int l = (int)depth - 1; l >= 0; l--) {
        if (vitq_interrupted) return vitq_fail(e, VITQ_ECANCELLED, "backward interrupted");
        block_backward(m, a, g, l, B);
    }

    // embedding: x = [cls; patch_out] + pos, then patch_out = patches · patch_w^T + patch_b
    zero(g->dpatch, (int64_t)B * Np * C);
    vitq_embed_backward(g->dpatch, m->g.cls_token, m->g.pos_embed, vitq_grad_res(g, 0), B, N, C);
    vitq_linear_backward(NULL, m->g.patch_w, m->g.patch_b, g->dpatch, a->patches, m->p.patch_w, (int64_t)B * Np,
                         patch_dim, C);
    return VITQ_OK;
}
