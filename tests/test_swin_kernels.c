/* test_swin_kernels.c — the Swin kernels (kernels/swin_ops.c) and the window geometry (model/swin_geom.c):
 * each backward against central finite differences of a double-precision reference forward written here
 * (as tests/test_grad.c: L = sum(G * op(x)), h = 1e-5, |a - fd| <= 2e-4 + 2e-3 |fd|; gradient buffers start
 * at 1 so accumulation is checked), the forward against that reference, the gathers against the explicit
 * roll / pad / partition of SWIN_NOTES.md, and 1 vs 2 threads giving the same bits. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

static uint64_t g_seed = 4242;
static double urand(void) { /* [-1, 1) */
    g_seed = g_seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(g_seed >> 11) * 0x1.0p-53 * 2.0 - 1.0;
}
/* n random values, rounded to float, as doubles and floats. */
static double *dvec(int64_t n, double scale, float **f) {
    double *d = malloc(sizeof(double) * (size_t)n);
    *f = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) (*f)[i] = (float)(urand() * scale), d[i] = (*f)[i];
    return d;
}
static float *fill(int64_t n, float v) {
    float *f = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) f[i] = v;
    return f;
}

typedef double (*loss_fn)(void *ctx);
static float *fd(loss_fn f, void *ctx, double *x, int64_t n) {
    float *g = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        const double s = x[i], h = 1e-5;
        x[i] = s + h;
        double lp = f(ctx);
        x[i] = s - h;
        double lm = f(ctx);
        x[i] = s;
        g[i] = (float)((lp - lm) / (2 * h));
    }
    return g;
}

/* got - 1 (buffers started at 1) against fd. */
static void check_grad(const char *what, float *got, const float *want, int64_t n) {
    double mx = 0;
    for (int64_t i = 0; i < n; i++) got[i] -= 1.0f, mx = fmax(mx, fabs((double)got[i] - want[i]));
    printf("    %-24s max |analytic - fd| = %.2e\n", what, mx);
    test_allclose(__FILE__, __LINE__, what, got, want, (long)n, 2e-3, 2e-4);
}

/* A Swin architecture whose stage 0 is padded and shifted: 10x10 tokens, window 4 (12x12 frame, 9 windows,
 * shift 2), stage 1 5x5 (window 4, padded to 8, shifted in block 1). */
static const vitq_arch small_swin = {.family = VITQ_FAMILY_SWIN, .name = "small", .img_size = 20, .patch_size = 2,
                                     .in_chans = 3, .num_classes = 5, .embed_dim = 4, .depth = 4, .num_heads = 2,
                                     .mlp_ratio = 2.0f, .qkv_bias = 1, .mean = {0.5f, 0.5f, 0.5f},
                                     .std = {0.5f, 0.5f, 0.5f}, .crop_pct = 1.0f, .interpolation = "bicubic",
                                     .n_stages = 2, .depths = {2, 2}, .stage_heads = {2, 2}, .window_size = 4};

/* The maps against SWIN_NOTES.md's explicit arithmetic: roll(-s), pad, window order, tokens row-major. */
TEST(swin_geom_window_maps) {
    vitq_swin_layout *l = NULL;
    vitq_err e;
    CHECK_MSG(vitq_swin_layout_build(&small_swin, &l, &e) == 0, "%s", e.msg);
    if (!l) return;
    const vitq_swin_block_geom *g = &l->blk[1];
    CHECK_EQ(g->res, 10);
    CHECK_EQ(g->win, 4);
    CHECK_EQ(g->shift, 2);
    CHECK_EQ(g->pres, 12);
    CHECK_EQ(g->nw, 9);
    CHECK_EQ(g->T, 49);
    int bad = 0, pads = 0;
    for (int w = 0; w < 9; w++)
        for (int p = 0; p < 16; p++) {
            const int r = (w / 3) * 4 + p / 4, c = (w % 3) * 4 + p % 4;
            const int want = r < 10 && c < 10 ? ((r + 2) % 10) * 10 + (c + 2) % 10 : -1;
            bad += g->widx[w * 16 + p] != want;
            pads += want < 0;
            if (want >= 0) bad += g->winv[want] != w * 16 + p;
        }
    CHECK_EQ(bad, 0);
    CHECK_EQ(pads, 144 - 100);
    /* mask: window 0 lies in band 0 only (no -100); bands of the padded frame [0,8), [8,10), [10,12) */
    int neg0 = 0, neg8 = 0;
    for (int i = 0; i < 256; i++) neg0 += g->mask[i] != 0, neg8 += g->mask[8 * 256 + i] != 0;
    CHECK_EQ(neg0, 0);
    CHECK_EQ(neg8, 256 - (4 * 4 + 4 * 4 + 4 * 4 + 4 * 4)); /* window 8: four 2x2 regions of 4 tokens each */
    CHECK_EQ(l->blk[0].shift, 0);
    CHECK(l->blk[0].mask == NULL);
    CHECK_EQ(l->blk[2].res, 5);
    CHECK_EQ(l->blk[3].shift, 2);
    /* merge map: row (y*5 + x)*4 + 2dx + dy holds token (2y + dy, 2x + dx) of the 10x10 stage */
    const vitq_swin_stage_geom *st = &l->stage[1];
    CHECK_EQ(st->midx[(1 * 5 + 2) * 4 + 2 * 1 + 0], (2 * 1 + 0) * 10 + 2 * 2 + 1);
    CHECK_EQ(st->minv[st->midx[37]], 37);
    vitq_swin_layout_free(l);
}

/* ---- gathers ------------------------------------------------------------------------------------------- */
typedef struct {
    double *x, *G;
    const int32_t *idx;
    int64_t B, rin, rout, C;
} gather_ref;

static double gather_loss(void *vc) {
    gather_ref *c = vc;
    double L = 0;
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t i = 0; i < c->rout; i++)
            for (int64_t k = 0; c->idx[i] >= 0 && k < c->C; k++)
                L += c->G[(b * c->rout + i) * c->C + k] * c->x[(b * c->rin + c->idx[i]) * c->C + k];
    return L;
}

TEST(swin_grad_gather_rows) {
    vitq_swin_layout *l = NULL;
    vitq_err e;
    if (vitq_swin_layout_build(&small_swin, &l, &e)) return;
    const vitq_swin_block_geom *g = &l->blk[1];
    const int64_t B = 2, L = 100, Mw = (int64_t)g->nw * g->N, C = 3;
    float *x, *G;
    gather_ref c = {dvec(B * L * C, 1, &x), dvec(B * Mw * C, 1, &G), g->widx, B, L, Mw, C};
    float *out = fill(B * Mw * C, NAN), *back = fill(B * L * C, NAN), *dx = fill(B * L * C, 1.0f);
    vitq_gather_rows_forward(out, x, g->widx, B, L, Mw, C);
    vitq_gather_rows_forward(back, out, g->winv, B, Mw, L, C); /* reverse(partition(x)) == x */
    CHECK_EQ(memcmp(back, x, sizeof(float) * (size_t)(B * L * C)), 0);
    int zeros = 1;
    for (int64_t i = 0; i < Mw; i++)
        for (int64_t k = 0; g->widx[i] < 0 && k < C; k++) zeros &= out[i * C + k] == 0.0f; /* padding rows */
    CHECK(zeros);
    vitq_gather_rows_backward(dx, G, g->winv, B, L, Mw, C);
    float *want = fd(gather_loss, &c, c.x, B * L * C);
    check_grad("gather dinp", dx, want, B * L * C);
    free(c.x), free(c.G), free(x), free(G), free(out), free(back), free(dx), free(want);
    vitq_swin_layout_free(l);
}

/* ---- window attention ------------------------------------------------------------------------------------ */
typedef struct {
    double *q, *k, *table, *G;
    const int32_t *rpi;
    const float *mask;
    int64_t Bw, nW, H, N, D;
    double scale;
    double *att; /* out: the probabilities */
} wa_ref;

static double wa_loss(void *vc) {
    wa_ref *c = vc;
    const int64_t N = c->N, D = c->D, H = c->H;
    double L = 0, *s = malloc(sizeof(double) * (size_t)N);
    for (int64_t p = 0; p < c->Bw * H; p++) {
        const int64_t w = p / H, h = p % H;
        for (int64_t i = 0; i < N; i++) {
            double mx = -1e300, sum = 0;
            for (int64_t j = 0; j < N; j++) {
                double d = 0;
                for (int64_t t = 0; t < D; t++) d += c->q[(p * N + i) * D + t] * c->k[(p * N + j) * D + t];
                s[j] = c->scale * d + c->table[c->rpi[i * N + j] * H + h];
                if (c->mask) s[j] += c->mask[((w % c->nW) * N + i) * N + j];
                mx = fmax(mx, s[j]);
            }
            for (int64_t j = 0; j < N; j++) sum += exp(s[j] - mx);
            for (int64_t j = 0; j < N; j++) {
                const double a = exp(s[j] - mx) / sum;
                if (c->att) c->att[(p * N + i) * N + j] = a;
                L += c->G[(p * N + i) * N + j] * a;
            }
        }
    }
    free(s);
    return L;
}

TEST(swin_grad_window_attention) {
    vitq_swin_layout *l = NULL;
    vitq_err e;
    if (vitq_swin_layout_build(&small_swin, &l, &e)) return;
    const vitq_swin_block_geom *g = &l->blk[1]; /* shifted: 9 windows of 16 tokens, mask */
    const int64_t B = 2, H = 2, N = g->N, D = 3, Bw = B * g->nw, T = g->T, nq = Bw * H * N * D, na = Bw * H * N * N;
    float *q, *k, *tab, *G;
    wa_ref c = {dvec(nq, 1, &q), dvec(nq, 1, &k), dvec(T * H, 1, &tab), dvec(na, 1, &G), g->rpi, g->mask, Bw,
                g->nw, H, N, D, 0.577, NULL};
    c.att = malloc(sizeof(double) * (size_t)na);
    wa_loss(&c);
    float *att = fill(na, NAN), *want_att = malloc(sizeof(float) * (size_t)na);
    for (int64_t i = 0; i < na; i++) want_att[i] = (float)c.att[i];
    vitq_window_attn_forward(att, q, k, tab, g->rpi, g->mask, Bw, g->nw, H, N, D, 0.577f);
    printf("  window attention, %lld windows, masked\n", (long long)Bw);
    CHECK_ALLCLOSE(att, want_att, na, 1e-5, 1e-6);
    free(c.att), c.att = NULL;
    float *dq = fill(nq, NAN), *dk = fill(nq, NAN), *dtab = fill(T * H, 1.0f), *datt = malloc(sizeof(float) * na);
    memcpy(datt, G, sizeof(float) * (size_t)na);
    vitq_window_attn_backward_to(dq, dk, dtab, datt, att, q, k, g->rpi, T, Bw, H, N, D, 0.577f);
    float *fq = fd(wa_loss, &c, c.q, nq), *fk = fd(wa_loss, &c, c.k, nq), *ft = fd(wa_loss, &c, c.table, T * H);
    for (int64_t i = 0; i < nq; i++) dq[i] += 1.0f, dk[i] += 1.0f; /* written, not accumulated */
    check_grad("dq", dq, fq, nq);
    check_grad("dk", dk, fk, nq);
    check_grad("drelative_position_bias", dtab, ft, T * H);
    free(c.q), free(c.k), free(c.table), free(c.G), free(q), free(k), free(tab), free(G), free(att), free(want_att);
    free(dq), free(dk), free(dtab), free(datt), free(fq), free(fk), free(ft);
    vitq_swin_layout_free(l);
}

/* Same bits at 1 and 2 threads (each output reduced by one thread in a fixed order), Swin-T stage-0 sizes. */
TEST(swin_window_attention_threads) {
    const int64_t Bw = 64, H = 3, N = 49, D = 32, T = 169, nq = Bw * H * N * D, na = Bw * H * N * N;
    float *q, *k, *tab, *G;
    double *dq_ = dvec(nq, 1, &q), *dk_ = dvec(nq, 1, &k), *dt_ = dvec(T * H, 1, &tab), *dg_ = dvec(na, 1, &G);
    vitq_swin_layout *l = NULL;
    vitq_err e;
    vitq_arch a = small_swin;
    a.window_size = 7, a.img_size = 28, a.patch_size = 1, a.embed_dim = 6; /* 28x28 stage, 16 windows of 7x7 */
    CHECK_MSG(vitq_swin_layout_build(&a, &l, &e) == 0, "%s", e.msg);
    if (!l) return;
    float *out[2][4];
    for (int th = 1; th <= 2; th++) {
        vitq_threads_set(th);
        float *att = fill(na, 0), *dq = fill(nq, 0), *dk = fill(nq, 0), *dt = fill(T * H, 0), *datt = fill(na, 0);
        vitq_window_attn_forward(att, q, k, tab, l->blk[1].rpi, l->blk[1].mask, Bw, l->blk[1].nw, H, N, D, 0.17f);
        memcpy(datt, G, sizeof(float) * (size_t)na);
        vitq_window_attn_backward_to(dq, dk, dt, datt, att, q, k, l->blk[1].rpi, T, Bw, H, N, D, 0.17f);
        out[th - 1][0] = att, out[th - 1][1] = dq, out[th - 1][2] = dk, out[th - 1][3] = dt;
        free(datt);
    }
    vitq_threads_set(1);
    CHECK_EQ(memcmp(out[0][0], out[1][0], sizeof(float) * (size_t)na), 0);
    CHECK_EQ(memcmp(out[0][1], out[1][1], sizeof(float) * (size_t)nq), 0);
    CHECK_EQ(memcmp(out[0][2], out[1][2], sizeof(float) * (size_t)nq), 0);
    CHECK_EQ(memcmp(out[0][3], out[1][3], sizeof(float) * (size_t)(T * H)), 0);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++) free(out[i][j]);
    free(dq_), free(dk_), free(dt_), free(dg_), free(q), free(k), free(tab), free(G);
    vitq_swin_layout_free(l);
}

/* ---- mean over tokens ------------------------------------------------------------------------------------ */
typedef struct {
    double *x, *G;
    int64_t B, L, C;
} mean_ref;

static double mean_loss(void *vc) {
    mean_ref *c = vc;
    double Ls = 0;
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t k = 0; k < c->C; k++) {
            double s = 0;
            for (int64_t l = 0; l < c->L; l++) s += c->x[(b * c->L + l) * c->C + k];
            Ls += c->G[b * c->C + k] * s / (double)c->L;
        }
    return Ls;
}

TEST(swin_grad_token_mean) {
    const int64_t B = 3, L = 7, C = 5;
    float *x, *G;
    mean_ref c = {dvec(B * L * C, 1, &x), dvec(B * C, 1, &G), B, L, C};
    float *out = fill(B * C, NAN), *want = fill(B * C, 0), *dx = fill(B * L * C, 1.0f);
    vitq_token_mean_forward(out, x, B, L, C);
    for (int64_t b = 0; b < B; b++)
        for (int64_t k = 0; k < C; k++) {
            double s = 0;
            for (int64_t l = 0; l < L; l++) s += c.x[(b * L + l) * C + k];
            want[b * C + k] = (float)(s / L);
        }
    CHECK_ALLCLOSE(out, want, B * C, 1e-7, 0);
    vitq_token_mean_backward(dx, G, B, L, C);
    float *f = fd(mean_loss, &c, c.x, B * L * C);
    check_grad("token mean dinp", dx, f, B * L * C);
    free(c.x), free(c.G), free(x), free(G), free(out), free(want), free(dx), free(f);
}
