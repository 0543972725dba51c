/* swin_taps.c — Swin's tap table (vitq_family_swin.tap_rows), its sizes per block and its names.
 *
 * One run of per-block rows, expanded block by block in forward order: the patch-merging reduction input
 * exists only at the first block of stages 1.. (the merge runs just before it), the eight attention and
 * MLP taps at every block. Names are timm's module paths: layers.S.downsample.reduction.input,
 * layers.S.blocks.I.attn.qkv.input, ... (model.h "Swin" lists every tap with its shape and layout). The
 * window-layout taps (qkv input, q, k, v, probs, proj input) have B * windows rows in their batch
 * dimension (vitq_tap_desc.per_image = windows per image); the token-layout ones (fc1, fc2 inputs, the
 * reduction input) B. */
#include "model/model.h"

#define B VITQ_SZ_BATCH
#define BW VITQ_SZ_WIN_BATCH /* B * windows per image */
#define W VITQ_SZ_WIN_TOKENS
#define C VITQ_SZ_EMBED
#define H VITQ_SZ_HEADS
#define D VITQ_SZ_HEAD_DIM
#define ROW3(PAT, SITE, B0, MID, LAST) \
    {PAT, SITE, VITQ_TAPK_ACT, VITQ_TAP_PER_BLOCK, 3, {B0, MID, LAST}, {VITQ_DIM_BATCH, VITQ_DIM_TOKEN, VITQ_DIM_CHANNEL}}
#define HEADS(PAT, SITE) \
    {PAT, SITE, VITQ_TAPK_ACT, VITQ_TAP_PER_BLOCK, 4, {BW, H, W, D}, \
     {VITQ_DIM_BATCH, VITQ_DIM_HEAD, VITQ_DIM_TOKEN, VITQ_DIM_HEAD_CH}}

/* timm's SwinTransformer, in forward order. Names and order are part of the results. */
static const vitq_tap_row swin_taps[] = {
    {"patch_embed.proj.input", VITQ_SITE_PATCH_IN, VITQ_TAPK_ACT, VITQ_TAP_ONCE, 4,
     {B, VITQ_SZ_IN_CHANS, VITQ_SZ_IMG, VITQ_SZ_IMG},
     {VITQ_DIM_BATCH, VITQ_DIM_CHANNEL, VITQ_DIM_SPATIAL, VITQ_DIM_SPATIAL}},
    ROW3("layers.%d.downsample.reduction.input", VITQ_SITE_REDUCTION_IN, B, VITQ_SZ_TOKENS, VITQ_SZ_MERGED),
    ROW3("layers.%d.blocks.%d.attn.qkv.input", VITQ_SITE_QKV_IN, BW, W, C),
    HEADS("layers.%d.blocks.%d.attn.q", VITQ_SITE_Q),
    HEADS("layers.%d.blocks.%d.attn.k", VITQ_SITE_K),
    HEADS("layers.%d.blocks.%d.attn.v", VITQ_SITE_V),
    {"layers.%d.blocks.%d.attn.probs", VITQ_SITE_PROBS, VITQ_TAPK_PROBS, VITQ_TAP_PER_BLOCK, 4, {BW, H, W, W},
     {VITQ_DIM_BATCH, VITQ_DIM_HEAD, VITQ_DIM_TOKEN, VITQ_DIM_KEY}},
    ROW3("layers.%d.blocks.%d.attn.proj.input", VITQ_SITE_PROJ_IN, BW, W, C),
    ROW3("layers.%d.blocks.%d.mlp.fc1.input", VITQ_SITE_FC1_IN, B, VITQ_SZ_TOKENS, C),
    ROW3("layers.%d.blocks.%d.mlp.fc2.input", VITQ_SITE_FC2_IN, B, VITQ_SZ_TOKENS, VITQ_SZ_HIDDEN),
    {"head.input", VITQ_SITE_HEAD_IN, VITQ_TAPK_ACT, VITQ_TAP_ONCE, 2, {B, VITQ_SZ_FEATURES},
     {VITQ_DIM_BATCH, VITQ_DIM_CHANNEL}},
};
#undef B
#undef BW
#undef W
#undef C
#undef H
#undef D
#undef ROW3
#undef HEADS

const vitq_tap_row *vitq_swin_tap_rows(const vitq_arch *a, int *n) {
    (void)a;
    *n = (int)(sizeof swin_taps / sizeof swin_taps[0]);
    return swin_taps;
}

/* Stage and index within it of block b (the last stage for b out of range). */
static int stage_of(const vitq_arch *a, int b, int *index) {
    int s = 0;
    while (s < a->n_stages - 1 && b >= a->depths[s]) b -= a->depths[s++];
    *index = b;
    return s;
}

int64_t vitq_swin_tap_size(const vitq_arch *a, vitq_size_sym sym, int block) {
    int i;
    const int s = stage_of(a, block < 0 ? 0 : block, &i), res = (a->img_size / a->patch_size) >> s;
    const int64_t C = (int64_t)a->embed_dim << s, win = res <= a->window_size ? res : a->window_size;
    switch (sym) {
    case VITQ_SZ_TOKENS: return (int64_t)res * res;
    case VITQ_SZ_EMBED: return C;
    case VITQ_SZ_HEADS: return a->stage_heads[s];
    case VITQ_SZ_HEAD_DIM: return C / a->stage_heads[s];
    case VITQ_SZ_HIDDEN: return vitq_swin_mlp_hidden((int)C, a->mlp_ratio);
    case VITQ_SZ_IN_CHANS: return a->in_chans;
    case VITQ_SZ_IMG: return a->img_size;
    case VITQ_SZ_WIN_TOKENS: return win * win;
    case VITQ_SZ_WINDOWS: return ((res + win - 1) / win) * ((res + win - 1) / win);
    case VITQ_SZ_MERGED: return 2 * C;
    case VITQ_SZ_FEATURES: return (int64_t)a->embed_dim << (a->n_stages - 1);
    default: return 0; /* the batch: per call */
    }
}

int vitq_swin_tap_name(const vitq_arch *a, const vitq_tap_row *r, int block, char *buf, size_t n) {
    int i;
    const int s = stage_of(a, block, &i);
    if (r->site == VITQ_SITE_REDUCTION_IN && (s == 0 || i != 0)) return 0;
    snprintf(buf, n, r->pattern, s, i);
    return 1;
}
