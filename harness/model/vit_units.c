/* vit_units.c — ViT/DeiT's units (patch_embed, blocks.0 .., head) and where each reads and writes in the
 * activation and gradient buffers; and ViT's family table, which gathers vit_params.c, taps.c, vit.c and
 * vit_backward.c. */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

/* Rows of the parameter table whose name starts with prefix p, as [first, end) (they are contiguous). */
static void rows_with(const vitq_model *m, const char *const *prefixes, int np, int *first, int *end) {
    *first = *end = -1;
    for (int i = 0; i < m->n_table; i++)
        for (int k = 0; k < np; k++)
            if (!strncmp(m->table[i].name, prefixes[k], strlen(prefixes[k]))) {
                if (*first < 0) *first = i;
                *end = i + 1;
            }
}

static void set_shape(int64_t *shape, int *ndim, int64_t *numel, int n, int64_t a, int64_t b, int64_t c) {
    const int64_t v[3] = {a, b, c};
    *ndim = n;
    *numel = 1;
    for (int d = 0; d < n; d++) shape[d] = v[d], *numel *= v[d];
}

static int vit_units(vitq_model *m, vitq_err *e) {
    const vitq_arch *a = &m->arch;
    const int depth = a->depth;
    const int64_t N = vitq_arch_tokens(a), C = a->embed_dim;
    m->n_units = depth + 2;
    m->units = calloc((size_t)m->n_units, sizeof *m->units);
    if (!m->units) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    for (int u = 0; u < m->n_units; u++) {
        vitq_unit *t = &m->units[u];
        t->block = -1;
        set_shape(t->out_shape, &t->out_ndim, &t->out_numel, 2, N, C, 0);
        set_shape(t->in_shape, &t->in_ndim, &t->in_numel, 2, N, C, 0);
        if (u == 0) {
            static const char *const pre[] = {"cls_token", "pos_embed", "dist_token", "patch_embed."};
            snprintf(t->name, sizeof t->name, "patch_embed");
            t->kind = VITQ_UNIT_PATCH_EMBED;
            set_shape(t->in_shape, &t->in_ndim, &t->in_numel, 3, a->in_chans, a->img_size, a->img_size);
            rows_with(m, pre, 4, &t->param_first, &t->param_end);
            t->tap_first = vitq_tap_id(m, VITQ_SITE_PATCH_IN, -1);
            t->tap_end = t->tap_first + 1;
        } else if (u <= depth) {
            char pre[32];
            const char *pp[1] = {pre};
            snprintf(pre, sizeof pre, "blocks.%d.", u - 1);
            snprintf(t->name, sizeof t->name, "blocks.%d", u - 1);
            t->kind = VITQ_UNIT_BLOCK;
            t->block = u - 1;
            rows_with(m, pp, 1, &t->param_first, &t->param_end);
            t->tap_first = vitq_tap_id(m, VITQ_SITE_QKV_IN, u - 1);
            t->tap_end = vitq_tap_id(m, VITQ_SITE_FC2_IN, u - 1) + 1;
        } else {
            /* final norm / fc_norm, pooling, pre_logits, head and head_dist: every tap after the blocks' */
            static const char *const pre[] = {"norm.", "fc_norm.", "pre_logits.", "head.", "head_dist."};
            snprintf(t->name, sizeof t->name, "head");
            t->kind = VITQ_UNIT_HEAD;
            set_shape(t->out_shape, &t->out_ndim, &t->out_numel, 1, a->num_classes, 0, 0);
            rows_with(m, pre, 5, &t->param_first, &t->param_end);
            t->tap_first = vitq_tap_id(m, VITQ_SITE_FC2_IN, depth - 1) + 1;
            t->tap_end = vitq_tap_count(m);
        }
    }
    return VITQ_OK;
}

static float *vit_unit_in(const vitq_model *m, vitq_acts *a, int u) {
    (void)m;
    return u == 0 ? a->images : vitq_acts_res(a, u - 1);
}

static float *vit_unit_out(const vitq_model *m, vitq_acts *a, int u) {
    return u <= m->arch.depth ? vitq_acts_res(a, u) : a->logits;
}

static float *vit_unit_din(const vitq_model *m, vitq_grad_acts *g, int u) {
    (void)m;
    return u == 0 ? NULL : vitq_grad_res(g, u - 1);
}

static float *vit_unit_dout(const vitq_model *m, vitq_grad_acts *g, int u) {
    return u <= m->arch.depth ? vitq_grad_res(g, u) : g->dlogits;
}

static int row_of(const vitq_model *m, const char *fmt, int l) {
    char name[64];
    snprintf(name, sizeof name, fmt, l);
    const vitq_tensor_ref *r = vitq_model_param(m, name);
    return r ? (int)(r - m->table) : -1;
}

static int vit_unit_ops(const vitq_model *m, int u, vitq_op_desc *out, int max) {
    vitq_op_desc ops[6];
    int n = 0;
#define LIN(SITE, BLOCK, W, B, P) \
    ops[n++] = (vitq_op_desc){VITQ_OP_LINEAR, vitq_tap_id(m, SITE, BLOCK), row_of(m, W, BLOCK), row_of(m, B, BLOCK), -1, P}
#define MM(KIND, A, BT, L) ops[n++] = (vitq_op_desc){KIND, vitq_tap_id(m, A, L), -1, -1, vitq_tap_id(m, BT, L), 0}
    if (u == 0) {
        LIN(VITQ_SITE_PATCH_IN, -1, "patch_embed.proj.weight", "patch_embed.proj.bias", m->arch.patch_size);
    } else if (u <= m->arch.depth) {
        const int l = u - 1;
        LIN(VITQ_SITE_QKV_IN, l, "blocks.%d.attn.qkv.weight", "blocks.%d.attn.qkv.bias", 0);
        MM(VITQ_OP_MATMUL_NT, VITQ_SITE_Q, VITQ_SITE_K, l);
        MM(VITQ_OP_MATMUL_NN, VITQ_SITE_PROBS, VITQ_SITE_V, l);
        LIN(VITQ_SITE_PROJ_IN, l, "blocks.%d.attn.proj.weight", "blocks.%d.attn.proj.bias", 0);
        LIN(VITQ_SITE_FC1_IN, l, "blocks.%d.mlp.fc1.weight", "blocks.%d.mlp.fc1.bias", 0);
        LIN(VITQ_SITE_FC2_IN, l, "blocks.%d.mlp.fc2.weight", "blocks.%d.mlp.fc2.bias", 0);
    } else { /* the head's linear layers in forward order: pre_logits.fc, head, head_dist */
        if (m->arch.representation_size > 0)
            LIN(VITQ_SITE_PRE_LOGITS_IN, -1, "pre_logits.fc.weight", "pre_logits.fc.bias", 0);
        LIN(VITQ_SITE_HEAD_IN, -1, "head.weight", "head.bias", 0);
        if (m->arch.distilled) LIN(VITQ_SITE_HEAD_DIST_IN, -1, "head_dist.weight", "head_dist.bias", 0);
    }
#undef LIN
#undef MM
    for (int i = 0; i < n && i < max; i++) out[i] = ops[i];
    return n < max ? n : max;
}

const vitq_family vitq_family_vit = {
    .name = "vit",
    .params = vitq_vit_params,
    .params_free = vitq_vit_params_free,
    .n_blocks = vitq_vit_n_blocks,
    .tap_rows = vitq_vit_tap_rows,
    .tap_size = vitq_vit_tap_size,
    .units = vit_units,
    .acts_create = vitq_vit_acts_create,
    .acts_free = vitq_vit_acts_free,
    .grad_acts_create = vitq_vit_grad_acts_create,
    .grad_acts_free = vitq_vit_grad_acts_free,
    .check = vitq_vit_check,
    .unit_in = vit_unit_in,
    .unit_out = vit_unit_out,
    .unit_din = vit_unit_din,
    .unit_dout = vit_unit_dout,
    .unit_forward = vitq_vit_unit_forward,
    .unit_backward = vitq_vit_unit_backward,
    .unit_ops = vit_unit_ops,
};
