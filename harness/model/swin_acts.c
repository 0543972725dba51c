/* swin_acts.c — the activation and gradient buffers of a Swin model for one batch size, each set in one
 * 64-byte-aligned slab allocated once (as vit.c's): vitq_swin_acts in vitq_acts.ext, vitq_swin_grads in
 * vitq_grad_acts.ext; images and logits (and dlogits, probs) in the common fields.
 *
 * train = 1: every block and merge keeps its buffers and every unit its output (backward over many units).
 * train = 0: blocks share one set of buffers sized for the largest block (merges likewise), and unit outputs
 * ping-pong between two slots, so one unit's backward still works right after its forward. The gradient
 * buffers keep the gradient of every unit's output; the rest is scratch for one unit at a time. Buffers are
 * laid out for the allocated batch; a smaller B uses their first B images. */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    float *base; /* NULL while counting */
    size_t off;  /* floats handed out */
} cursor;

static float *take(cursor *c, int64_t n) {
    float *p = c->base ? c->base + c->off : NULL;
    c->off += ((size_t)n + 15) & ~(size_t)15;
    return p;
}

enum { NBF = 12 }; /* buffers of a block, in vitq_swin_block_acts order */

static void block_sizes(const vitq_swin_block_geom *g, int64_t B, int64_t *s) {
    const int64_t L = (int64_t)g->res * g->res, Mw = (int64_t)g->nw * g->N, C = g->C;
    const int64_t v[NBF] = {B * L, B * L, B * Mw * C, 3 * B * Mw * C, B * g->nw * g->heads * g->N * g->N,
                            B * Mw * C, B * L * C, B * L * C, B * L, B * L, B * L * g->F, B * L * g->F};
    memcpy(s, v, sizeof v);
}

static void block_fields(vitq_swin_block_acts *b, float **f[NBF]) {
    float **v[NBF] = {&b->ln1_mean, &b->ln1_rstd, &b->xw, &b->qkvh, &b->att, &b->atty,
                      &b->res1, &b->ln2, &b->ln2_mean, &b->ln2_rstd, &b->fc1, &b->act};
    memcpy(f, v, sizeof v);
}

/* Blocks and merges: own buffers each (train) or one shared set of the largest sizes. */
static void point_blocks(const vitq_swin_layout *l, vitq_swin_acts *x, int64_t B, int train, cursor *c) {
    int64_t s[NBF], mx[NBF] = {0};
    float **f[NBF];
    for (int b = 0; b < l->n_blocks; b++) {
        block_sizes(&l->blk[b], B, s);
        block_fields(&x->blk[b], f);
        for (int i = 0; i < NBF; i++) {
            if (train) *f[i] = take(c, s[i]);
            mx[i] = s[i] > mx[i] ? s[i] : mx[i];
        }
    }
    if (!train) {
        block_fields(&x->blk[0], f);
        for (int i = 0; i < NBF; i++) *f[i] = take(c, mx[i]);
        for (int b = 1; b < l->n_blocks; b++) x->blk[b] = x->blk[0];
    }
    int64_t nl = 0, nm = 0; /* eval: the largest merge */
    for (int st = 1; st < l->n_stages; st++) {
        const int64_t L = B * l->stage[st].res * l->stage[st].res, M = 2 * (int64_t)l->stage[st].C;
        nl = L > nl ? L : nl, nm = L * M > nm ? L * M : nm;
    }
    for (int st = 1; st < l->n_stages; st++) {
        const int64_t L = B * l->stage[st].res * l->stage[st].res, M = 2 * (int64_t)l->stage[st].C;
        vitq_swin_merge_acts *ma = &x->mrg[st];
        if (!train && st > 1) {
            *ma = x->mrg[1];
            continue;
        }
        ma->mg = take(c, train ? L * M : nm), ma->mgn = take(c, train ? L * M : nm);
        ma->mean = take(c, train ? L : nl), ma->rstd = take(c, train ? L : nl);
    }
}

/* A fingerprint of everything the buffer sizes depend on (acts and gradients of another model are refused). */
uint64_t vitq_swin_signature(const vitq_model *m) {
    const vitq_arch *a = &m->arch;
    const int v[] = {a->img_size, a->patch_size, a->in_chans, a->num_classes, a->embed_dim, a->n_stages,
                     a->window_size, vitq_swin_mlp_hidden(a->embed_dim, a->mlp_ratio)};
    uint64_t h = vitq_fnv1a64(v, sizeof v, VITQ_FNV1A64_INIT);
    h = vitq_fnv1a64(a->depths, sizeof a->depths, h);
    return vitq_fnv1a64(a->stage_heads, sizeof a->stage_heads, h);
}

/* Everything of one acts set; returns the floats it needs (pointers set when c->base is non-NULL). */
static size_t point_acts(const vitq_model *m, vitq_acts *a, vitq_swin_acts *x, int64_t B, cursor *c) {
    const vitq_arch *ar = &m->arch;
    const vitq_swin_layout *l = vitq_swin_p(m)->lay;
    const int64_t Np = (int64_t)l->grid * l->grid, C0 = ar->embed_dim, S = ar->img_size, U = m->n_units;
    const int64_t Ll = (int64_t)l->stage[l->n_stages - 1].res * l->stage[l->n_stages - 1].res;
    const int64_t Cl = l->stage[l->n_stages - 1].C;
    a->images = take(c, B * ar->in_chans * S * S);
    x->patches = take(c, B * Np * ar->in_chans * ar->patch_size * ar->patch_size);
    x->pe = take(c, B * Np * C0), x->pe_mean = take(c, B * Np), x->pe_rstd = take(c, B * Np);
    int64_t smax = 0, scr = 0;
    for (int u = 0; u < U - 1; u++) smax = m->units[u].out_numel > smax ? m->units[u].out_numel : smax;
    float *slot[2] = {NULL, NULL};
    if (!a->train) slot[0] = take(c, B * smax), slot[1] = take(c, B * smax);
    for (int u = 0; u < U - 1; u++) x->stream[u] = a->train ? take(c, B * m->units[u].out_numel) : slot[u % 2];
    point_blocks(l, x, B, a->train, c);
    for (int b = 0; b < l->n_blocks; b++) {
        const vitq_swin_block_geom *g = &l->blk[b];
        const int64_t n1 = B * g->res * g->res * g->C, n2 = 3 * B * g->nw * g->N * g->C;
        scr = n1 > scr ? n1 : scr, scr = n2 > scr ? n2 : scr;
    }
    x->scratch = take(c, scr);
    x->lnf = take(c, B * Ll * Cl), x->lnf_mean = take(c, B * Ll), x->lnf_rstd = take(c, B * Ll);
    x->pooled = take(c, B * Cl);
    a->logits = take(c, B * ar->num_classes);
    return c->off;
}

void vitq_swin_acts_free(vitq_acts *a) {
    if (!a) return;
    vitq_swin_acts *x = a->ext;
    if (x) free(x->stream), free(x->blk), free(x);
    vitq_free(a->slab);
    free(a);
}

int vitq_swin_acts_create(const vitq_model *m, int B, int train, vitq_acts **out, vitq_err *e) {
    *out = NULL;
    vitq_acts *a = calloc(1, sizeof *a);
    vitq_swin_acts *x = calloc(1, sizeof *x);
    if (a) a->ext = x;
    if (x) x->stream = calloc((size_t)m->n_units, sizeof *x->stream), x->blk = calloc((size_t)m->n_blocks, sizeof *x->blk);
    if (!a || !x || !x->stream || !x->blk) {
        vitq_swin_acts_free(a);
        if (!a) free(x);
        return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    }
    a->B = B;
    a->train = train ? 1 : 0;
    a->C = m->arch.embed_dim, a->K = m->arch.num_classes;
    x->sig = vitq_swin_signature(m);
    cursor c = {0};
    size_t total = point_acts(m, a, x, B, &c);
    a->slab = vitq_alloc(total * sizeof(float));
    if (!a->slab) {
        vitq_swin_acts_free(a);
        return vitq_fail(e, VITQ_ENOMEM, "out of memory allocating %zu MB of activations (batch %d%s)",
                         total * sizeof(float) >> 20, B, train ? ", train mode" : "");
    }
    a->bytes = total * sizeof(float);
    c = (cursor){.base = a->slab};
    point_acts(m, a, x, B, &c);
    *out = a;
    return VITQ_OK;
}

/* Acts made for m's shapes (the same signature) and holding B images. */
int vitq_swin_check(const vitq_model *m, const vitq_acts *a, int B, vitq_err *e) {
    const vitq_swin_acts *x = a->ext;
    if (a->family != VITQ_FAMILY_SWIN || !x || x->sig != vitq_swin_signature(m))
        return vitq_fail(e, VITQ_EINVAL, "%s: activations were made for another architecture",
                         m->source[0] ? m->source : m->arch.name);
    if (B <= 0 || B > a->B)
        return vitq_fail(e, VITQ_EINVAL, "forward: batch of %d does not fit activations made for %d", B, a->B);
    return VITQ_OK;
}

/* ---- gradient buffers ------------------------------------------------------------------------------------ */

static size_t point_grads(const vitq_model *m, vitq_grad_acts *g, vitq_swin_grads *x, int64_t B, cursor *c) {
    const vitq_swin_layout *l = vitq_swin_p(m)->lay;
    const int64_t Np = (int64_t)l->grid * l->grid, U = m->n_units;
    const vitq_swin_stage_geom *last = &l->stage[l->n_stages - 1];
    int64_t s[NBF], mx[NBF] = {0}, mm = 0;
    for (int b = 0; b < l->n_blocks; b++) {
        block_sizes(&l->blk[b], B, s);
        for (int i = 0; i < NBF; i++) mx[i] = s[i] > mx[i] ? s[i] : mx[i];
    }
    for (int st = 1; st < l->n_stages; st++) {
        const int64_t n = B * l->stage[st].res * l->stage[st].res * 2 * l->stage[st].C;
        mm = n > mm ? n : mm;
    }
    for (int u = 0; u < U - 1; u++) x->dstream[u] = take(c, B * m->units[u].out_numel);
    g->dlogits = take(c, B * m->arch.num_classes), g->probs = take(c, B * m->arch.num_classes);
    x->dpe = take(c, B * Np * m->arch.embed_dim);
    /* block scratch, by the sizes of block_sizes: [2] B*Mw*C, [3] 3*B*Mw*C, [4] att, [6] B*L*C, [10] B*L*F */
    x->dln1 = take(c, mx[6]), x->dxw = take(c, mx[2]), x->dqkv = take(c, mx[3]), x->dqkvh = take(c, mx[3]);
    x->datt = take(c, mx[4]), x->datty = take(c, mx[2]), x->dprojw = take(c, mx[2]), x->dres1 = take(c, mx[6]);
    x->dln2 = take(c, mx[6]), x->dfc1 = take(c, mx[10]), x->dact = take(c, mx[10]);
    x->dmg = take(c, mm), x->dmgn = take(c, mm);
    x->dlnf = take(c, B * last->res * last->res * last->C), x->dpooled = take(c, B * last->C);
    return c->off;
}

void vitq_swin_grad_acts_free(vitq_grad_acts *g) {
    if (!g) return;
    vitq_swin_grads *x = g->ext;
    if (x) free(x->dstream), free(x);
    vitq_free(g->slab);
    free(g);
}

int vitq_swin_grad_acts_create(const vitq_model *m, int B, vitq_grad_acts **out, vitq_err *e) {
    *out = NULL;
    vitq_grad_acts *g = calloc(1, sizeof *g);
    vitq_swin_grads *x = calloc(1, sizeof *x);
    if (g) g->ext = x;
    if (x) x->dstream = calloc((size_t)m->n_units, sizeof *x->dstream);
    if (!g || !x || !x->dstream) {
        vitq_swin_grad_acts_free(g);
        if (!g) free(x);
        return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    }
    g->B = B;
    g->C = m->arch.embed_dim, g->K = m->arch.num_classes, g->depth = m->n_blocks;
    x->sig = vitq_swin_signature(m);
    cursor c = {0};
    size_t total = point_grads(m, g, x, B, &c);
    g->slab = vitq_alloc(total * sizeof(float));
    if (!g->slab) {
        vitq_swin_grad_acts_free(g);
        return vitq_fail(e, VITQ_ENOMEM, "out of memory allocating %zu MB of gradient buffers (batch %d)",
                         total * sizeof(float) >> 20, B);
    }
    g->bytes = total * sizeof(float);
    c = (cursor){.base = g->slab};
    point_grads(m, g, x, B, &c);
    *out = g;
    return VITQ_OK;
}
