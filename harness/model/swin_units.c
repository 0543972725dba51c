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
    .checkpoint = vitq_swin_checkpoint,
};
