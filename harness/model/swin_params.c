/* swin_params.c — Swin's parameter list in timm 0.9's state_dict order (SWIN_NOTES.md section 10), written
 * once: patch_embed.{proj, norm}; per stage S the downsample (S >= 1: norm, reduction without bias) then the
 * blocks (norm1, attn.relative_position_bias_table, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2); norm;
 * head.fc. Fills the rows of the model's parameter table and the pointers of vitq_swin_params (m->fam_p,
 * m->fam_g), and owns the model's geometry (vitq_swin_layout, built with the parameter pointers). The
 * relative position index and the shift masks are computed (swin_geom.c), never parameters. */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    char name[64];
    int ndim;
    int64_t shape[4];
    float **slot;   /* the pointer to set in vitq_swin_params */
    int tap_groups; /* 0: not a weight tap; fused qkv: 3 */
} spec;

typedef struct {
    spec *s;
    int n, max;
} specs;

static void add(specs *L, float **slot, int tap, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                const char *fmt, int s, int i) {
    if (L->n >= L->max) return;
    spec *p = &L->s[L->n++];
    snprintf(p->name, sizeof p->name, fmt, s, i);
    p->ndim = ndim;
    p->shape[0] = d0, p->shape[1] = d1, p->shape[2] = d2, p->shape[3] = d3;
    p->slot = slot;
    p->tap_groups = tap;
}

static void block_specs(specs *L, vitq_swin_block_params *b, const vitq_swin_block_geom *g, int qkv_bias) {
    const int s = g->stage, i = g->index;
    const int64_t C = g->C, F = g->F;
#define BL(FIELD, TAP, ND, D0, D1, SUFFIX) add(L, &b->FIELD, TAP, ND, D0, D1, 0, 0, "layers.%d.blocks.%d." SUFFIX, s, i)
    BL(norm1_w, 0, 1, C, 0, "norm1.weight");
    BL(norm1_b, 0, 1, C, 0, "norm1.bias");
    BL(rpb, 0, 2, g->T, g->heads, "attn.relative_position_bias_table");
    BL(qkv_w, 3, 2, 3 * C, C, "attn.qkv.weight"); /* rows: q, k, v */
    if (qkv_bias) BL(qkv_b, 0, 1, 3 * C, 0, "attn.qkv.bias");
    BL(proj_w, 1, 2, C, C, "attn.proj.weight");
    BL(proj_b, 0, 1, C, 0, "attn.proj.bias");
    BL(norm2_w, 0, 1, C, 0, "norm2.weight");
    BL(norm2_b, 0, 1, C, 0, "norm2.bias");
    BL(fc1_w, 1, 2, F, C, "mlp.fc1.weight");
    BL(fc1_b, 0, 1, F, 0, "mlp.fc1.bias");
    BL(fc2_w, 1, 2, C, F, "mlp.fc2.weight");
    BL(fc2_b, 0, 1, C, 0, "mlp.fc2.bias");
#undef BL
}

/* Every row of a Swin model in timm's order, with the pointer each one sets in p. */
static void all_specs(const vitq_arch *a, const vitq_swin_layout *l, vitq_swin_params *p, specs *L) {
    const int64_t C0 = a->embed_dim, P = a->patch_size, Cl = l->stage[l->n_stages - 1].C;
    add(L, &p->patch_w, 1, 4, C0, a->in_chans, P, P, "patch_embed.proj.weight", 0, 0);
    add(L, &p->patch_b, 0, 1, C0, 0, 0, 0, "patch_embed.proj.bias", 0, 0);
    add(L, &p->pe_norm_w, 0, 1, C0, 0, 0, 0, "patch_embed.norm.weight", 0, 0);
    add(L, &p->pe_norm_b, 0, 1, C0, 0, 0, 0, "patch_embed.norm.bias", 0, 0);
    for (int s = 0; s < l->n_stages; s++) {
        const vitq_swin_stage_geom *st = &l->stage[s];
        if (s > 0) {
            const int64_t M = 2 * (int64_t)st->C; /* 4 C' = 2 C */
            add(L, &p->ds_norm_w[s], 0, 1, M, 0, 0, 0, "layers.%d.downsample.norm.weight", s, 0);
            add(L, &p->ds_norm_b[s], 0, 1, M, 0, 0, 0, "layers.%d.downsample.norm.bias", s, 0);
            add(L, &p->ds_red_w[s], 1, 2, st->C, M, 0, 0, "layers.%d.downsample.reduction.weight", s, 0);
        }
        for (int b = st->first; b < st->first + st->depth; b++) block_specs(L, &p->blocks[b], &l->blk[b], a->qkv_bias);
    }
    add(L, &p->norm_w, 0, 1, Cl, 0, 0, 0, "norm.weight", 0, 0);
    add(L, &p->norm_b, 0, 1, Cl, 0, 0, 0, "norm.bias", 0, 0);
    add(L, &p->head_w, 1, 2, a->num_classes, Cl, 0, 0, "head.fc.weight", 0, 0);
    add(L, &p->head_b, 0, 1, a->num_classes, 0, 0, 0, "head.fc.bias", 0, 0);
}

/* The pointer struct of m (grads 0: fam_p with the geometry; 1: fam_g), allocated on first use. */
static vitq_swin_params *params_of(vitq_model *m, int grads, vitq_err *e) {
    void **slot = grads ? &m->fam_g : &m->fam_p;
    if (*slot) return *slot;
    vitq_swin_params *p = calloc(1, sizeof *p);
    if (p) p->blocks = calloc((size_t)m->n_blocks, sizeof *p->blocks);
    if (p && p->blocks && (grads || vitq_swin_layout_build(&m->arch, &p->lay, e) == VITQ_OK)) return *slot = p;
    if (p) free(p->blocks);
    free(p);
    vitq_fail(e, VITQ_ENOMEM, "out of memory");
    return NULL;
}

/* vitq_family.params for Swin: see model.h. */
int vitq_swin_params_fn(vitq_model *m, int grads, vitq_tensor_ref *table, int64_t *numel, vitq_err *e) {
    vitq_swin_params *p = params_of(m, grads, e);
    if (!p) return -1;
    const vitq_swin_layout *l = vitq_swin_p(m)->lay;
    specs L = {.max = 8 + 3 * VITQ_SWIN_MAX_STAGES + 13 * l->n_blocks};
    if (!(L.s = malloc(sizeof *L.s * (size_t)L.max))) {
        vitq_fail(e, VITQ_ENOMEM, "out of memory");
        return -1;
    }
    all_specs(&m->arch, l, p, &L);
    float *cur = grads ? m->grad_slab : m->slab;
    int64_t total = 0;
    for (int i = 0; i < L.n; i++) {
        int64_t k = 1;
        for (int d = 0; d < L.s[i].ndim; d++) k *= L.s[i].shape[d];
        if (cur) *L.s[i].slot = cur + total;
        if (table) {
            vitq_tensor_ref *r = &table[i];
            snprintf(r->name, sizeof r->name, "%s", L.s[i].name);
            r->data = cur ? cur + total : NULL;
            r->ndim = L.s[i].ndim;
            memcpy(r->shape, L.s[i].shape, sizeof r->shape);
            r->numel = k;
            r->tap_groups = L.s[i].tap_groups;
        }
        total += k;
    }
    const int n = L.n;
    free(L.s);
    if (numel) *numel = total;
    return n;
}

void vitq_swin_params_free(vitq_model *m) {
    vitq_swin_params *p = m->fam_p, *g = m->fam_g;
    if (p) vitq_swin_layout_free(p->lay), free(p->blocks), free(p);
    if (g) free(g->blocks), free(g);
    m->fam_p = m->fam_g = NULL;
}

int vitq_swin_n_blocks(const vitq_arch *a) { return a->depth; }
