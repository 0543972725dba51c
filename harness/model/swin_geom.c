/* swin_geom.c — the fixed geometry of a Swin model: per stage its side, width and heads; per block its
 * window and shift (timm's _calc_window_shift), the index maps of its cyclic shift + padding + window
 * partition, its relative position index and its shift mask; per patch merging the map of its 2x2 gather.
 * Everything the forward needs besides the parameters, built once per model (vitq_swin_layout).
 *
 * Sources (tests/reference/SWIN_NOTES.md): section 3 steps 3-5 and 15-16 (roll(-s), pad bottom/right, window
 * order w = wy*nWw + wx, token p = i*ww + j), section 4 (index (Δi + w-1)(2w-1) + (Δj + w-1)), section 5
 * (window = side if side <= window else window; shift = 0 if side <= window), section 6 (region bands
 * [0, Hp-w), [Hp-w, Hp-s), [Hp-s, Hp) of the padded frame, -100 where ids differ), section 7 (merged channel
 * block 2*dx + dy). Does not: allocate anything per batch (the acts do). */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

int vitq_swin_mlp_hidden(int C, float mlp_ratio) { return (int)((double)C * (double)mlp_ratio); }

/* Region band of frame row r (SWIN_NOTES.md section 6) on a padded side pres with window w and shift s. */
static int band(int r, int pres, int w, int s) { return r < pres - w ? 0 : r < pres - s ? 1 : 2; }

/* widx/winv: window-layout row (wy*nww + wx)*N + i*win + j holds frame position (r, c) = (wy*win + i,
 * wx*win + j) of the shifted, padded frame, i.e. token ((r + s) mod res, (c + s) mod res) if r, c < res. */
static void window_maps(vitq_swin_block_geom *g) {
    const int res = g->res, win = g->win, s = g->shift;
    for (int t = 0; t < res * res; t++) g->winv[t] = -1;
    for (int wy = 0; wy < g->nww; wy++)
        for (int wx = 0; wx < g->nww; wx++)
            for (int i = 0; i < win; i++)
                for (int j = 0; j < win; j++) {
                    const int row = (wy * g->nww + wx) * g->N + i * win + j, r = wy * win + i, c = wx * win + j;
                    int t = -1;
                    if (r < res && c < res) t = ((r + s) % res) * res + (c + s) % res;
                    g->widx[row] = t;
                    if (t >= 0) g->winv[t] = row;
                }
}

static void rel_index(vitq_swin_block_geom *g) {
    const int w = g->win;
    for (int p = 0; p < g->N; p++)
        for (int q = 0; q < g->N; q++)
            g->rpi[p * g->N + q] = (p / w - q / w + w - 1) * (2 * w - 1) + (p % w - q % w + w - 1);
}

static void shift_mask(vitq_swin_block_geom *g) {
    const int w = g->win, N = g->N;
    for (int win = 0; win < g->nw; win++) {
        const int wy = win / g->nww, wx = win % g->nww;
        for (int p = 0; p < N; p++) {
            const int idp = 3 * band(wy * w + p / w, g->pres, w, g->shift) + band(wx * w + p % w, g->pres, w, g->shift);
            for (int q = 0; q < N; q++) {
                const int idq = 3 * band(wy * w + q / w, g->pres, w, g->shift) +
                                band(wx * w + q % w, g->pres, w, g->shift);
                g->mask[((size_t)win * N + p) * N + q] = idp == idq ? 0.0f : -100.0f;
            }
        }
    }
}

/* merge row (y*res + x)*4 + 2*dx + dy of stage S holds token (2y + dy, 2x + dx) of stage S-1. */
static void merge_maps(vitq_swin_stage_geom *st) {
    const int res = st->res, prev = 2 * res;
    for (int y = 0; y < res; y++)
        for (int x = 0; x < res; x++)
            for (int dx = 0; dx < 2; dx++)
                for (int dy = 0; dy < 2; dy++) {
                    const int row = (y * res + x) * 4 + 2 * dx + dy, t = (2 * y + dy) * prev + 2 * x + dx;
                    st->midx[row] = t;
                    st->minv[t] = row;
                }
}

/* Fills the scalar fields of every stage and block; returns the int32 and float counts the maps need. */
static void sizes(const vitq_arch *a, vitq_swin_layout *l, size_t *n_int, size_t *n_float) {
    l->n_stages = a->n_stages;
    l->grid = a->img_size / a->patch_size;
    l->window = a->window_size;
    *n_int = *n_float = 0;
    int b = 0;
    for (int s = 0; s < a->n_stages; s++) {
        vitq_swin_stage_geom *st = &l->stage[s];
        *st = (vitq_swin_stage_geom){.res = l->grid >> s, .C = a->embed_dim << s, .heads = a->stage_heads[s],
                                     .depth = a->depths[s], .first = b};
        if (s > 0) *n_int += 8 * (size_t)st->res * st->res;
        for (int i = 0; i < st->depth; i++, b++) {
            vitq_swin_block_geom *g = l->blk ? &l->blk[b] : &(vitq_swin_block_geom){0};
            *g = (vitq_swin_block_geom){.stage = s, .index = i, .res = st->res, .C = st->C, .heads = st->heads};
            g->D = g->C / g->heads;
            g->F = vitq_swin_mlp_hidden(g->C, a->mlp_ratio);
            g->win = st->res <= a->window_size ? st->res : a->window_size;
            g->shift = (i % 2 == 1 && st->res > g->win) ? a->window_size / 2 : 0;
            g->nww = (st->res + g->win - 1) / g->win;
            g->pres = g->nww * g->win;
            g->nw = g->nww * g->nww;
            g->N = g->win * g->win;
            g->T = (2 * g->win - 1) * (2 * g->win - 1);
            *n_int += (size_t)g->nw * g->N + (size_t)st->res * st->res + (size_t)g->N * g->N;
            if (g->shift) *n_float += (size_t)g->nw * g->N * g->N;
        }
    }
    l->n_blocks = b;
}

int vitq_swin_layout_build(const vitq_arch *a, vitq_swin_layout **out, vitq_err *e) {
    *out = NULL;
    vitq_swin_layout *l = calloc(1, sizeof *l);
    size_t n_int = 0, n_float = 0;
    if (l) sizes(a, l, &n_int, &n_float);
    if (l) l->blk = calloc((size_t)l->n_blocks, sizeof *l->blk);
    if (l && l->blk) l->mem = malloc(sizeof(float) * n_float + sizeof(int32_t) * n_int + 64);
    if (!l || !l->blk || !l->mem) {
        vitq_swin_layout_free(l);
        return vitq_fail(e, VITQ_ENOMEM, "%s: out of memory for the window tables", a->name);
    }
    sizes(a, l, &n_int, &n_float); /* again, now into l->blk */
    float *fp = l->mem;
    int32_t *ip = (int32_t *)(fp + n_float);
    for (int s = 1; s < l->n_stages; s++) {
        vitq_swin_stage_geom *st = &l->stage[s];
        st->midx = ip, ip += 4 * (size_t)st->res * st->res;
        st->minv = ip, ip += 4 * (size_t)st->res * st->res;
        merge_maps(st);
    }
    for (int b = 0; b < l->n_blocks; b++) {
        vitq_swin_block_geom *g = &l->blk[b];
        g->widx = ip, ip += (size_t)g->nw * g->N;
        g->winv = ip, ip += (size_t)g->res * g->res;
        g->rpi = ip, ip += (size_t)g->N * g->N;
        window_maps(g);
        rel_index(g);
        if (g->shift) {
            g->mask = fp, fp += (size_t)g->nw * g->N * g->N;
            shift_mask(g);
        }
    }
    *out = l;
    return VITQ_OK;
}

void vitq_swin_layout_free(vitq_swin_layout *l) {
    if (!l) return;
    free(l->mem);
    free(l->blk);
    free(l);
}
