/* model.c — a ViT/DeiT's parameters as one slab plus a table of (timm name, pointer, shape, weight tap)
 * rows. The table drives loading, saving, `vitq inspect`, the optimiser and weight taps, so the
 * architecture's parameter list is written exactly once, here (llm.c's fill_in_parameter_sizes).
 * The activation taps come from the architecture's tap table (taps.c), expanded on creation. */
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

/* Fills specs[] for arch a in timm's state_dict order; returns the count. */
static int param_specs(const vitq_arch *a, param_spec *s, int max) {
    int64_t C = a->embed_dim, K = a->num_classes, P = a->patch_size, F = vitq_arch_hidden(a);
    int64_t N = vitq_arch_tokens(a);
    int n = 0;
#define G(NAME, FIELD, TAP, ND, ...) \
    if (n < max) s[n++] = (param_spec){NAME, -1, ND, {__VA_ARGS__}, offsetof(vitq_params, FIELD), TAP}
#define BL(L, NAME, FIELD, TAP, ND, ...) \
    if (n < max) s[n++] = (param_spec){NAME, L, ND, {__VA_ARGS__}, offsetof(vitq_block_params, FIELD), TAP}
    G("cls_token", cls_token, 0, 3, 1, 1, C);
    G("pos_embed", pos_embed, 0, 3, 1, N, C);
    G("patch_embed.proj.weight", patch_w, 1, 4, C, a->in_chans, P, P);
    G("patch_embed.proj.bias", patch_b, 0, 1, C);
    for (int l = 0; l < a->depth; l++) {
        BL(l, "blocks.%d.norm1.weight", norm1_w, 0, 1, C);
        BL(l, "blocks.%d.norm1.bias", norm1_b, 0, 1, C);
        BL(l, "blocks.%d.attn.qkv.weight", qkv_w, 3, 2, 3 * C, C); /* rows: q, k, v */
        if (a->qkv_bias) BL(l, "blocks.%d.attn.qkv.bias", qkv_b, 0, 1, 3 * C);
        BL(l, "blocks.%d.attn.proj.weight", proj_w, 1, 2, C, C);
        BL(l, "blocks.%d.attn.proj.bias", proj_b, 0, 1, C);
        BL(l, "blocks.%d.norm2.weight", norm2_w, 0, 1, C);
        BL(l, "blocks.%d.norm2.bias", norm2_b, 0, 1, C);
        BL(l, "blocks.%d.mlp.fc1.weight", fc1_w, 1, 2, F, C);
        BL(l, "blocks.%d.mlp.fc1.bias", fc1_b, 0, 1, F);
        BL(l, "blocks.%d.mlp.fc2.weight", fc2_w, 1, 2, C, F);
        BL(l, "blocks.%d.mlp.fc2.bias", fc2_b, 0, 1, C);
    }
    G("norm.weight", norm_w, 0, 1, C);
    G("norm.bias", norm_b, 0, 1, C);
    G("head.weight", head_w, 1, 2, K, C);
    G("head.bias", head_b, 0, 1, K);
#undef G
#undef BL
    return n;
}

/* Points p (and its blocks) into slab following specs; fills the table when non-NULL. */
static void point_params(const vitq_arch *a, float *slab, vitq_params *p, vitq_tensor_ref *table) {
    int max = 8 + 12 * a->depth;
    param_spec *s = malloc(sizeof *s * (size_t)max);
    int n = param_specs(a, s, max);
    float *cur = slab;
    for (int i = 0; i < n; i++) {
        int64_t numel = 1;
        for (int d = 0; d < s[i].ndim; d++) numel *= s[i].shape[d];
        char *base = s[i].block < 0 ? (char *)p : (char *)&p->blocks[s[i].block];
        *(float **)(base + s[i].field) = cur;
        if (table) {
            vitq_tensor_ref *r = &table[i];
            snprintf(r->name, sizeof r->name, s[i].fmt, s[i].block);
            r->data = cur;
            r->ndim = s[i].ndim;
            memcpy(r->shape, s[i].shape, sizeof r->shape);
            r->numel = numel;
            r->tap_groups = s[i].tap_groups;
        }
        cur += numel;
    }
    free(s);
}

static int64_t count_params(const vitq_arch *a, int *n_tensors) {
    int max = 8 + 12 * a->depth;
    param_spec *s = malloc(sizeof *s * (size_t)max);
    int n = param_specs(a, s, max);
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        int64_t numel = 1;
        for (int d = 0; d < s[i].ndim; d++) numel *= s[i].shape[d];
        total += numel;
    }
    free(s);
    *n_tensors = n;
    return total;
}

int vitq_model_create(const vitq_arch *arch, vitq_model **out, vitq_err *e) {
    *out = NULL;
    int rc = vitq_arch_validate(arch, arch->name, e);
    if (rc) return rc;
    vitq_model *m = calloc(1, sizeof *m);
    if (!m) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    m->arch = *arch;
    m->n_params = count_params(arch, &m->n_table);
    m->slab = vitq_alloc((size_t)m->n_params * sizeof(float));
    m->table = calloc((size_t)m->n_table, sizeof *m->table);
    m->p.blocks = calloc((size_t)arch->depth, sizeof *m->p.blocks);
    m->mlp_act = calloc((size_t)arch->depth, sizeof *m->mlp_act);
    if (!m->slab || !m->table || !m->p.blocks || !m->mlp_act) {
        vitq_model_free(m);
        return vitq_fail(e, VITQ_ENOMEM, "out of memory allocating %lld parameters", (long long)m->n_params);
    }
    point_params(arch, m->slab, &m->p, m->table);
    if ((rc = vitq_taps_build(m, e))) {
        vitq_model_free(m);
        return rc;
    }
    *out = m;
    return VITQ_OK;
}

void vitq_model_free(vitq_model *m) {
    if (!m) return;
    vitq_free(m->slab);
    vitq_free(m->grad_slab);
    free(m->table);
    free(m->p.blocks);
    free(m->g.blocks);
    free(m->mlp_act);
    free(m->taps);
    free(m->tap_at);
    free(m);
}

int vitq_model_alloc_grads(vitq_model *m, vitq_err *e) {
    if (m->grad_slab) return VITQ_OK;
    m->grad_slab = vitq_alloc((size_t)m->n_params * sizeof(float));
    m->g.blocks = calloc((size_t)m->arch.depth, sizeof *m->g.blocks);
    if (!m->grad_slab || !m->g.blocks) return vitq_fail(e, VITQ_ENOMEM, "out of memory allocating gradients");
    point_params(&m->arch, m->grad_slab, &m->g, NULL);
    return VITQ_OK;
}

void vitq_model_zero_grads(vitq_model *m) {
    if (m->grad_slab) memset(m->grad_slab, 0, (size_t)m->n_params * sizeof(float));
}

int vitq_model_clone(const vitq_model *src, vitq_model **out, vitq_err *e) {
    int rc = vitq_model_create(&src->arch, out, e);
    if (rc) return rc;
    memcpy((*out)->slab, src->slab, (size_t)src->n_params * sizeof(float));
    memcpy((*out)->mlp_act, src->mlp_act, (size_t)src->arch.depth * sizeof *src->mlp_act);
    snprintf((*out)->source, sizeof (*out)->source, "%s", src->source);
    return VITQ_OK;
}

const vitq_tensor_ref *vitq_model_param(const vitq_model *m, const char *name) {
    for (int i = 0; i < m->n_table; i++)
        if (strcmp(m->table[i].name, name) == 0) return &m->table[i];
    return NULL;
}

float *vitq_model_grad_of(const vitq_model *m, const vitq_tensor_ref *r) {
    if (!m->grad_slab) return NULL;
    return m->grad_slab + (r->data - m->slab);
}
