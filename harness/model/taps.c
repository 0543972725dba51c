/* taps.c — the tap table of each architecture and its expansion into a model's taps.
 *
 * A row says where a quantizer can sit in the forward code (site), what it sees (kind, shape in symbolic
 * sizes, the meaning of each dimension) and how it repeats (once, or per block). Expansion walks the rows
 * in order and expands each run of per-block rows block by block, so the ids (indices of m->taps) are the
 * forward order. The forward code asks vitq_tap_id(m, site, block). Swin has its own rows (swin_taps.c:
 * window attention, the patch-merging reduction input at the first block of a stage), a size resolver per
 * block and a name hook that also says at which blocks a row exists; nothing here computes an id.
 * Does not: call hooks (vit.c does) or bind quantizers (quant/ does). */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

#define B VITQ_SZ_BATCH
#define N VITQ_SZ_TOKENS
#define C VITQ_SZ_EMBED
#define H VITQ_SZ_HEADS
#define D VITQ_SZ_HEAD_DIM
#define F VITQ_SZ_HIDDEN
#define ROW3(PAT, SITE, LAST) \
    {PAT, SITE, VITQ_TAPK_ACT, VITQ_TAP_PER_BLOCK, 3, {B, N, LAST}, {VITQ_DIM_BATCH, VITQ_DIM_TOKEN, VITQ_DIM_CHANNEL}}
#define HEADS(PAT, SITE) \
    {PAT, SITE, VITQ_TAPK_ACT, VITQ_TAP_PER_BLOCK, 4, {B, H, N, D}, \
     {VITQ_DIM_BATCH, VITQ_DIM_HEAD, VITQ_DIM_TOKEN, VITQ_DIM_HEAD_CH}}

/* ViT / DeiT (timm's VisionTransformer), in forward order. Names and order are part of the results. The
 * head's rows depend on the variant: plain (head.input), representation layer (pre_logits.fc.input, then
 * head.input of width R), distilled (head.input, head_dist.input). */
#define VIT_BODY                                                                                          \
    {"patch_embed.proj.input", VITQ_SITE_PATCH_IN, VITQ_TAPK_ACT, VITQ_TAP_ONCE, 4,                        \
     {B, VITQ_SZ_IN_CHANS, VITQ_SZ_IMG, VITQ_SZ_IMG},                                                      \
     {VITQ_DIM_BATCH, VITQ_DIM_CHANNEL, VITQ_DIM_SPATIAL, VITQ_DIM_SPATIAL}},                               \
        ROW3("blocks.%d.attn.qkv.input", VITQ_SITE_QKV_IN, C), HEADS("blocks.%d.attn.q", VITQ_SITE_Q),      \
        HEADS("blocks.%d.attn.k", VITQ_SITE_K), HEADS("blocks.%d.attn.v", VITQ_SITE_V),                     \
        {"blocks.%d.attn.probs", VITQ_SITE_PROBS, VITQ_TAPK_PROBS, VITQ_TAP_PER_BLOCK, 4, {B, H, N, N},      \
         {VITQ_DIM_BATCH, VITQ_DIM_HEAD, VITQ_DIM_TOKEN, VITQ_DIM_KEY}},                                     \
        ROW3("blocks.%d.attn.proj.input", VITQ_SITE_PROJ_IN, C), ROW3("blocks.%d.mlp.fc1.input", VITQ_SITE_FC1_IN, C), \
        ROW3("blocks.%d.mlp.fc2.input", VITQ_SITE_FC2_IN, F)
#define ONCE2(NAME, SITE, WIDTH) \
    {NAME, SITE, VITQ_TAPK_ACT, VITQ_TAP_ONCE, 2, {B, WIDTH}, {VITQ_DIM_BATCH, VITQ_DIM_CHANNEL}}
static const vitq_tap_row vit_taps[] = {VIT_BODY, ONCE2("head.input", VITQ_SITE_HEAD_IN, C)};
static const vitq_tap_row vit_taps_pre_logits[] = {
    VIT_BODY,
    ONCE2("pre_logits.fc.input", VITQ_SITE_PRE_LOGITS_IN, C),
    ONCE2("head.input", VITQ_SITE_HEAD_IN, VITQ_SZ_FEATURES),
};
static const vitq_tap_row vit_taps_distilled[] = {
    VIT_BODY,
    ONCE2("head.input", VITQ_SITE_HEAD_IN, C),
    ONCE2("head_dist.input", VITQ_SITE_HEAD_DIST_IN, C),
};
#undef VIT_BODY
#undef ONCE2
#undef B
#undef N
#undef C
#undef H
#undef D
#undef F
#undef ROW3
#undef HEADS

/* ViT's tap table (vitq_family_vit.tap_rows). */
const vitq_tap_row *vitq_vit_tap_rows(const vitq_arch *a, int *n) {
#define ROWS(T) (*n = (int)(sizeof T / sizeof T[0]), T)
    if (a->representation_size > 0) return ROWS(vit_taps_pre_logits);
    if (a->distilled) return ROWS(vit_taps_distilled);
    return ROWS(vit_taps);
#undef ROWS
}

const vitq_tap_row *vitq_arch_tap_rows(const vitq_arch *a, int *n) {
    const vitq_family *f = vitq_family_of(a);
    if (!f) {
        *n = 0;
        return NULL;
    }
    return f->tap_rows(a, n);
}

/* ViT's symbolic sizes (the same at every block). */
int64_t vitq_vit_tap_size(const vitq_arch *a, vitq_size_sym s, int block) {
    (void)block;
    switch (s) {
    case VITQ_SZ_TOKENS: return vitq_arch_tokens(a);
    case VITQ_SZ_EMBED: return a->embed_dim;
    case VITQ_SZ_HEADS: return a->num_heads;
    case VITQ_SZ_HEAD_DIM: return a->embed_dim / a->num_heads;
    case VITQ_SZ_HIDDEN: return vitq_arch_hidden(a);
    case VITQ_SZ_IN_CHANS: return a->in_chans;
    case VITQ_SZ_IMG: return a->img_size;
    case VITQ_SZ_FEATURES: return vitq_arch_features(a);
    default: return 0; /* the batch: per call */
    }
}

/* Fills t from row r at block (0 for once-per-model rows); 0 if the family says the row has no tap there. */
static int fill(const vitq_arch *a, const vitq_tap_row *r, int block, vitq_tap_desc *t) {
    const vitq_family *f = vitq_family_of(a);
    memset(t, 0, sizeof *t);
    if (r->repeat != VITQ_TAP_ONCE && f->tap_name) {
        if (!f->tap_name(a, r, block, t->name, sizeof t->name)) return 0;
    } else {
        snprintf(t->name, sizeof t->name, r->pattern, block);
    }
    t->site = r->site;
    t->block = r->repeat == VITQ_TAP_ONCE ? -1 : block;
    t->kind = r->kind;
    t->ndim = r->ndim;
    for (int d = 0; d < r->ndim; d++) {
        t->shape[d] = f->tap_size(a, r->size[d], block);
        t->dims[d] = r->dims[d];
    }
    t->per_image = r->size[0] == VITQ_SZ_WIN_BATCH ? f->tap_size(a, VITQ_SZ_WINDOWS, block) : 1;
    /* the ops whose backward reads their own output: the softmax, and tanh (pre_logits) before the head;
     * every other tap's producer reads its input, or nothing (model.h, act_backward) */
    t->restore = r->site == VITQ_SITE_PROBS || (r->site == VITQ_SITE_HEAD_IN && a->representation_size > 0);
    return 1;
}

/* Expands the rows in forward order into taps (and tap_at) if non-NULL; returns the number of taps. */
static int expand(vitq_model *m, const vitq_tap_row *rows, int nr, vitq_tap_desc *taps) {
    const int depth = m->n_blocks;
    vitq_tap_desc scratch;
    int k = 0;
    for (int i = 0; i < nr;) {
        int j = i + 1; /* [i, j): a run of rows repeating alike */
        while (j < nr && rows[j].repeat == rows[i].repeat && rows[i].repeat != VITQ_TAP_ONCE) j++;
        int reps = rows[i].repeat == VITQ_TAP_ONCE ? 1 : depth;
        for (int l = 0; l < reps; l++)
            for (int r = i; r < j; r++) {
                vitq_tap_desc *t = taps ? &taps[k] : &scratch;
                if (!fill(&m->arch, &rows[r], l, t)) continue;
                if (taps) m->tap_at[(t->block + 1) * VITQ_SITE_COUNT + rows[r].site] = k;
                k++;
            }
        i = j;
    }
    return k;
}

int vitq_taps_build(vitq_model *m, vitq_err *e) {
    int nr = 0;
    const vitq_tap_row *rows = vitq_arch_tap_rows(&m->arch, &nr);
    const int depth = m->n_blocks, n = expand(m, rows, nr, NULL);
    free(m->taps);
    free(m->tap_at);
    m->taps = calloc((size_t)(n > 0 ? n : 1), sizeof *m->taps);
    m->tap_at = malloc(sizeof *m->tap_at * (size_t)(depth + 1) * VITQ_SITE_COUNT);
    if (!m->taps || !m->tap_at) return vitq_fail(e, VITQ_ENOMEM, "out of memory for %d taps", n);
    for (int i = 0; i < (depth + 1) * VITQ_SITE_COUNT; i++) m->tap_at[i] = -1;
    m->n_taps = expand(m, rows, nr, m->taps);
    return VITQ_OK;
}

int vitq_tap_count(const vitq_model *m) { return m->n_taps; }

const vitq_tap_desc *vitq_tap_get(const vitq_model *m, int id) {
    return id >= 0 && id < m->n_taps ? &m->taps[id] : NULL;
}

int vitq_tap_id(const vitq_model *m, vitq_tap_site site, int block) {
    if ((int)site < 0 || site >= VITQ_SITE_COUNT || block < -1 || block >= m->n_blocks) return -1;
    return m->tap_at[(block + 1) * VITQ_SITE_COUNT + site];
}

int64_t vitq_tap_rows_per_image(const vitq_model *m, int id) {
    const vitq_tap_desc *t = vitq_tap_get(m, id);
    return t ? t->per_image : 0;
}

int64_t vitq_tap_numel_per_image(const vitq_model *m, int id) {
    const vitq_tap_desc *t = vitq_tap_get(m, id);
    int64_t n = t ? t->per_image : 0;
    for (int d = 1; t && d < t->ndim; d++) n *= t->shape[d];
    return n;
}

const char *vitq_tap_name(const vitq_model *m, int tap, char *buf, size_t n) {
    const vitq_tap_desc *t = vitq_tap_get(m, tap);
    if (t) snprintf(buf, n, "%s", t->name);
    else snprintf(buf, n, "tap%d", tap);
    return buf;
}

void vitq_tap_describe(const vitq_model *m, int id, vitq_tap *t) {
    const vitq_tap_desc *d = vitq_tap_get(m, id);
    memset(t, 0, sizeof *t);
    if (!d) return;
    t->name = d->name;
    t->kind = d->kind;
    t->id = id;
    t->ndim = d->ndim;
    t->row_groups = 1;
    for (int i = 0; i < d->ndim; i++) t->shape[i] = d->shape[i], t->dims[i] = d->dims[i];
}

void vitq_weight_tap_describe(const vitq_tensor_ref *r, vitq_tap *t) {
    memset(t, 0, sizeof *t);
    t->name = r->name;
    t->kind = VITQ_TAPK_WEIGHT;
    t->id = -1;
    t->ndim = r->ndim;
    for (int d = 0; d < r->ndim && d < 4; d++) t->shape[d] = r->shape[d];
    t->dims[0] = VITQ_DIM_OUT;
    t->dims[1] = VITQ_DIM_IN;
    if (r->ndim == 4) t->dims[2] = t->dims[3] = VITQ_DIM_SPATIAL; /* conv (C, Cin, P, P) */
    t->row_groups = r->tap_groups > 0 ? r->tap_groups : 1;
}
