/* swin_units.c — Swin's units of block-wise reconstruction and where each reads and writes in the buffers;
 * and Swin's family table (vitq_family_swin), which gathers swin_params.c, swin_taps.c, swin_acts.c, swin.c,
 * swin_backward.c and swin_io.c.
 *
 * Units, in forward order: patch_embed (proj + norm), then per stage S: layers.S.downsample (S >= 1: the 2x2
 * gather, norm, reduction), layers.S.blocks.0 .. ; then head (final norm, mean over tokens, head.fc). Between
 * units a sample is its NHWC map (side, side, C); the input is the image (Cin, S, S), the output (K). Each unit
 * owns a contiguous run of the parameter table's rows and of the taps (the merge: its reduction input). */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

/* Rows of the parameter table whose names start with one of the prefixes, as [first, end) (contiguous). */
static void rows_with(const vitq_model *m, const char *const *prefixes, int np, int *first, int *end) {
    *first = *end = -1;
    for (int i = 0; i < m->n_table; i++)
        for (int k = 0; k < np; k++)
            if (!strncmp(m->table[i].name, prefixes[k], strlen(prefixes[k]))) {
                if (*first < 0) *first = i;
                *end = i + 1;
            }
}

static void map_shape(int64_t *shape, int *ndim, int64_t *numel, int64_t d0, int64_t d1, int64_t d2) {
    const int n = d1 ? 3 : 1;
    shape[0] = d0, shape[1] = d1, shape[2] = d2;
    *ndim = n;
    *numel = n == 3 ? d0 * d1 * d2 : d0;
}

static void set_unit(vitq_model *m, vitq_unit *t, vitq_unit_kind kind, int block, const char *const *pre, int np,
                     int tap_first, int tap_end) {
    t->kind = kind;
    t->block = block;
    rows_with(m, pre, np, &t->param_first, &t->param_end);
    t->tap_first = tap_first;
    t->tap_end = tap_end;
}

static int swin_units(vitq_model *m, vitq_err *e) {
    const vitq_arch *a = &m->arch;
    const vitq_swin_layout *l = vitq_swin_p(m)->lay;
    m->n_units = 2 + l->n_blocks + (l->n_stages - 1);
    m->units = calloc((size_t)m->n_units, sizeof *m->units);
    if (!m->units) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    char pre[48];
    const char *pp[2] = {pre, NULL};
    int u = 0, tap = vitq_tap_id(m, VITQ_SITE_PATCH_IN, -1);
    vitq_unit *t = &m->units[u++];
    pp[0] = "patch_embed.";
    snprintf(t->name, sizeof t->name, "patch_embed");
    set_unit(m, t, VITQ_UNIT_PATCH_EMBED, -1, pp, 1, tap, tap + 1);
    map_shape(t->in_shape, &t->in_ndim, &t->in_numel, a->in_chans, a->img_size, a->img_size);
    map_shape(t->out_shape, &t->out_ndim, &t->out_numel, l->grid, l->grid, a->embed_dim);
    pp[0] = pre;
    for (int s = 0; s < l->n_stages; s++) {
        const vitq_swin_stage_geom *st = &l->stage[s];
        if (s > 0) {
            t = &m->units[u++];
            snprintf(t->name, sizeof t->name, "layers.%d.downsample", s);
            snprintf(pre, sizeof pre, "layers.%d.downsample.", s);
            tap = vitq_tap_id(m, VITQ_SITE_REDUCTION_IN, st->first);
            set_unit(m, t, VITQ_UNIT_MERGE, -1, pp, 1, tap, tap + 1);
            map_shape(t->in_shape, &t->in_ndim, &t->in_numel, 2 * st->res, 2 * st->res, st->C / 2);
            map_shape(t->out_shape, &t->out_ndim, &t->out_numel, st->res, st->res, st->C);
        }
        for (int b = st->first; b < st->first + st->depth; b++) {
            t = &m->units[u++];
            snprintf(t->name, sizeof t->name, "layers.%d.blocks.%d", s, b - st->first);
            snprintf(pre, sizeof pre, "layers.%d.blocks.%d.", s, b - st->first);
            set_unit(m, t, VITQ_UNIT_BLOCK, b, pp, 1, vitq_tap_id(m, VITQ_SITE_QKV_IN, b),
                     vitq_tap_id(m, VITQ_SITE_FC2_IN, b) + 1);
            map_shape(t->in_shape, &t->in_ndim, &t->in_numel, st->res, st->res, st->C);
            map_shape(t->out_shape, &t->out_ndim, &t->out_numel, st->res, st->res, st->C);
        }
    }
    static const char *const head_pre[] = {"norm.", "head."};
    const vitq_swin_stage_geom *last = &l->stage[l->n_stages - 1];
    t = &m->units[u++];
    snprintf(t->name, sizeof t->name, "head");
    tap = vitq_tap_id(m, VITQ_SITE_HEAD_IN, -1);
    set_unit(m, t, VITQ_UNIT_HEAD, -1, head_pre, 2, tap, tap + 1);
    map_shape(t->in_shape, &t->in_ndim, &t->in_numel, last->res, last->res, last->C);
    map_shape(t->out_shape, &t->out_ndim, &t->out_numel, a->num_classes, 0, 0);
    return VITQ_OK;
}

static float *swin_unit_in(const vitq_model *m, vitq_acts *a, int u) {
    (void)m;
    return u == 0 ? a->images : ((vitq_swin_acts *)a->ext)->stream[u - 1];
}

static float *swin_unit_out(const vitq_model *m, vitq_acts *a, int u) {
    return u == m->n_units - 1 ? a->logits : ((vitq_swin_acts *)a->ext)->stream[u];
}

static float *swin_unit_din(const vitq_model *m, vitq_grad_acts *g, int u) {
    (void)m;
    return u == 0 ? NULL : ((vitq_swin_grads *)g->ext)->dstream[u - 1];
}

static float *swin_unit_dout(const vitq_model *m, vitq_grad_acts *g, int u) {
    return u == m->n_units - 1 ? g->dlogits : ((vitq_swin_grads *)g->ext)->dstream[u];
}

static int row_of(const vitq_model *m, const char *fmt, int s, int i) {
    char name[96];
    snprintf(name, sizeof name, fmt, s, i);
    const vitq_tensor_ref *r = vitq_model_param(m, name);
    return r ? (int)(r - m->table) : -1;
}

/* vitq_family.unit_ops: the linear layers and attention matmuls of unit u, in forward order. */
static int swin_unit_ops(const vitq_model *m, int u, vitq_op_desc *out, int max) {
    const vitq_unit *t = &m->units[u];
    const vitq_swin_layout *l = vitq_swin_p(m)->lay;
    vitq_op_desc ops[6];
    int n = 0;
#define LIN(SITE, BLOCK, W, B, S, I, P) \
    ops[n++] = (vitq_op_desc){VITQ_OP_LINEAR, vitq_tap_id(m, SITE, BLOCK), row_of(m, W, S, I), row_of(m, B, S, I), -1, P}
#define MM(KIND, A, BT, L) ops[n++] = (vitq_op_desc){KIND, vitq_tap_id(m, A, L), -1, -1, vitq_tap_id(m, BT, L), 0}
    if (t->kind == VITQ_UNIT_PATCH_EMBED) {
        LIN(VITQ_SITE_PATCH_IN, -1, "patch_embed.proj.weight", "patch_embed.proj.bias", 0, 0, m->arch.patch_size);
    } else if (t->kind == VITQ_UNIT_MERGE) {
        const int b = m->units[u + 1].block, s = l->blk[b].stage;
        LIN(VITQ_SITE_REDUCTION_IN, b, "layers.%d.downsample.reduction.weight", "(no bias)", s, 0, 0);
    } else if (t->kind == VITQ_UNIT_BLOCK) {
        const int b = t->block, s = l->blk[b].stage, i = l->blk[b].index;
        LIN(VITQ_SITE_QKV_IN, b, "layers.%d.blocks.%d.attn.qkv.weight", "layers.%d.blocks.%d.attn.qkv.bias", s, i, 0);
        MM(VITQ_OP_MATMUL_NT, VITQ_SITE_Q, VITQ_SITE_K, b);
        MM(VITQ_OP_MATMUL_NN, VITQ_SITE_PROBS, VITQ_SITE_V, b);
        LIN(VITQ_SITE_PROJ_IN, b, "layers.%d.blocks.%d.attn.proj.weight", "layers.%d.blocks.%d.attn.proj.bias", s, i, 0);
        LIN(VITQ_SITE_FC1_IN, b, "layers.%d.blocks.%d.mlp.fc1.weight", "layers.%d.blocks.%d.mlp.fc1.bias", s, i, 0);
        LIN(VITQ_SITE_FC2_IN, b, "layers.%d.blocks.%d.mlp.fc2.weight", "layers.%d.blocks.%d.mlp.fc2.bias", s, i, 0);
    } else {
        LIN(VITQ_SITE_HEAD_IN, -1, "head.fc.weight", "head.fc.bias", 0, 0, 0);
    }
#undef LIN
#undef MM
    for (int k = 0; k < n && k < max; k++) out[k] = ops[k];
    return n < max ? n : max;
}

const vitq_family vitq_family_swin = {
    .name = "swin",
    .params = vitq_swin_params_fn,
    .params_free = vitq_swin_params_free,
    .n_blocks = vitq_swin_n_blocks,
    .tap_rows = vitq_swin_tap_rows,
    .tap_name = vitq_swin_tap_name,
    .tap_size = vitq_swin_tap_size,
    .units = swin_units,
    .acts_create = vitq_swin_acts_create,
    .acts_free = vitq_swin_acts_free,
    .grad_acts_create = vitq_swin_grad_acts_create,
    .grad_acts_free = vitq_swin_grad_acts_free,
    .check = vitq_swin_check,
    .unit_in = swin_unit_in,
    .unit_out = swin_unit_out,
    .unit_din = swin_unit_din,
    .unit_dout = swin_unit_dout,
    .unit_forward = vitq_swin_unit_forward,
    .unit_backward = vitq_swin_unit_backward,
    .unit_ops = swin_unit_ops,
    .checkpoint = vitq_swin_checkpoint,
    .uses_tensor = vitq_swin_uses_tensor,
};
