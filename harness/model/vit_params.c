/* vit_params.c — ViT/DeiT's parameter list, written once in timm's state_dict order (llm.c's
 * fill_in_parameter_sizes): the rows of the model's parameter table and the pointers of vitq_params. */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *fmt; /* name, with %d for the block index */
    int block;       /* -1 = global */
    int ndim;
    int64_t shape[4];
    size_t field;    /* offsetof into vitq_params or vitq_block_params */
    int tap_groups;  /* 0: not a weight tap; else its row groups (fused qkv: 3) */
} param_spec;

/* Fills specs[] for arch a in timm's state_dict order (the variants' rows where timm registers them, except
 * dist_token, which sits with the other prefix tokens so that the patch_embed unit holds it); returns the
 * count. Source: timm vision_transformer.py VisionTransformer.__init__ / Block, deit.py
 * VisionTransformerDistilled, timm <= 0.5's representation layer (pre_logits.fc). */
static int param_specs(const vitq_arch *a, param_spec *s, int max) {
    int64_t C = a->embed_dim, K = a->num_classes, P = a->patch_size, F = vitq_arch_hidden(a);
    int64_t R = a->representation_size, Np = vitq_arch_tokens(a) - vitq_arch_prefix(a);
    int64_t pos_rows = a->no_embed_class ? Np : vitq_arch_tokens(a);
    int n = 0;
#define G(NAME, FIELD, TAP, ND, ...) \
    if (n < max) s[n++] = (param_spec){NAME, -1, ND, {__VA_ARGS__}, offsetof(vitq_params, FIELD), TAP}
#define BL(L, NAME, FIELD, TAP, ND, ...) \
    if (n < max) s[n++] = (param_spec){NAME, L, ND, {__VA_ARGS__}, offsetof(vitq_block_params, FIELD), TAP}
    if (!a->no_class_token) G("cls_token", cls_token, 0, 3, 1, 1, C);
    G("pos_embed", pos_embed, 0, 3, 1, pos_rows, C);
    if (a->distilled) G("dist_token", dist_token, 0, 3, 1, 1, C);
    G("patch_embed.proj.weight", patch_w, 1, 4, C, a->in_chans, P, P);
    G("patch_embed.proj.bias", patch_b, 0, 1, C);
    for (int l = 0; l < a->depth; l++) {
        BL(l, "blocks.%d.norm1.weight", norm1_w, 0, 1, C);
        BL(l, "blocks.%d.norm1.bias", norm1_b, 0, 1, C);
        BL(l, "blocks.%d.attn.qkv.weight", qkv_w, 3, 2, 3 * C, C); /* rows: q, k, v */
        if (a->qkv_bias) BL(l, "blocks.%d.attn.qkv.bias", qkv_b, 0, 1, 3 * C);
        BL(l, "blocks.%d.attn.proj.weight", proj_w, 1, 2, C, C);
        BL(l, "blocks.%d.attn.proj.bias", proj_b, 0, 1, C);
        if (a->layerscale) BL(l, "blocks.%d.ls1.gamma", ls1, 0, 1, C);
        BL(l, "blocks.%d.norm2.weight", norm2_w, 0, 1, C);
        BL(l, "blocks.%d.norm2.bias", norm2_b, 0, 1, C);
        BL(l, "blocks.%d.mlp.fc1.weight", fc1_w, 1, 2, F, C);
        BL(l, "blocks.%d.mlp.fc1.bias", fc1_b, 0, 1, F);
        BL(l, "blocks.%d.mlp.fc2.weight", fc2_w, 1, 2, C, F);
        BL(l, "blocks.%d.mlp.fc2.bias", fc2_b, 0, 1, C);
        if (a->layerscale) BL(l, "blocks.%d.ls2.gamma", ls2, 0, 1, C);
    }
    G(a->fc_norm ? "fc_norm.weight" : "norm.weight", norm_w, 0, 1, C);
    G(a->fc_norm ? "fc_norm.bias" : "norm.bias", norm_b, 0, 1, C);
    if (R > 0) {
        G("pre_logits.fc.weight", pre_w, 1, 2, R, C);
        G("pre_logits.fc.bias", pre_b, 0, 1, R);
    }
    G("head.weight", head_w, 1, 2, K, R > 0 ? R : C);
    G("head.bias", head_b, 0, 1, K);
    if (a->distilled) {
        G("head_dist.weight", head_dist_w, 1, 2, K, C);
        G("head_dist.bias", head_dist_b, 0, 1, K);
    }
#undef G
#undef BL
    return n;
}

/* vitq_family.params for ViT: see model.h. */
int vitq_vit_params(vitq_model *m, int grads, vitq_tensor_ref *table, int64_t *numel, vitq_err *e) {
    const vitq_arch *a = &m->arch;
    int max = 16 + 14 * a->depth;
    param_spec *s = malloc(sizeof *s * (size_t)max);
    vitq_params *p = grads ? &m->g : &m->p;
    if (!s || (!p->blocks && !(p->blocks = calloc((size_t)a->depth, sizeof *p->blocks)))) {
        free(s);
        vitq_fail(e, VITQ_ENOMEM, "out of memory");
        return -1;
    }
    int n = param_specs(a, s, max);
    float *cur = grads ? m->grad_slab : m->slab;
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        int64_t k = 1;
        for (int d = 0; d < s[i].ndim; d++) k *= s[i].shape[d];
        if (cur) {
            char *base = s[i].block < 0 ? (char *)p : (char *)&p->blocks[s[i].block];
            *(float **)(base + s[i].field) = cur + total;
        }
        if (table) {
            vitq_tensor_ref *r = &table[i];
            snprintf(r->name, sizeof r->name, s[i].fmt, s[i].block);
            r->data = cur ? cur + total : NULL;
            r->ndim = s[i].ndim;
            memcpy(r->shape, s[i].shape, sizeof r->shape);
            r->numel = k;
            r->tap_groups = s[i].tap_groups;
        }
        total += k;
    }
    free(s);
    if (numel) *numel = total;
    return n;
}

void vitq_vit_params_free(vitq_model *m) {
    free(m->p.blocks);
    free(m->g.blocks);
}

int vitq_vit_n_blocks(const vitq_arch *a) { return a->depth; }
