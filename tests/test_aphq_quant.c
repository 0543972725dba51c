/* test_aphq_quant.c — uniform's APHQ-ViT side (plugins/uniform.c with init = aphq, rounding = adaround,
 * learnable scales) and plugins/aphq_grid.h, against the oracles of specs/aphq-vit.md §7: O1 (the
 * quantizer's numbers, half-even, z rounded at use), O2 (on-grid, idempotent), O3 (AdaRound's α and h),
 * O4 (the rounding term at β = 20 and 2), O6 (weight grid and self-search), O7 (matmul pairs), O12
 * (torch.quantile semantics, chunked means), O13 (candidates evaluated, counted through a fake vitq_search
 * whose error is a linear layer / matmul computed here in double). AdaRound: soft and hard rounding on
 * hand-made weights, dα against finite differences of forward + regulariser, freeze (h ∈ {0, 1}, α gone,
 * folded), state round trip, nearest rounding before train. */
#include "test.h"

#include "../plugins/aphq_grid.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Instances and state
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    const vitq_plugin *p;
    const vitq_quantizer_ops *o;
    void *params, *q;
    vitq_host host;
    vitq_host_ctx ctx;
    vitq_tap tap;
} inst;

/* A uniform instance on tap, parameters as "key=value" strings. Returns 0, or -1 (create's message in ctx). */
static int make(inst *in, const vitq_tap *tap, const char *const *kvs, int nkv) {
    memset(in, 0, sizeof *in);
    vitq_err e;
    if (vitq_plugin_load("uniform", NULL, &in->p, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return -1;
    }
    in->o = in->p->quantizer;
    vitq_kv kv[16];
    char keys[16][64];
    for (int i = 0; i < nkv; i++) {
        const char *eq = strchr(kvs[i], '=');
        snprintf(keys[i], sizeof keys[i], "%.*s", (int)(eq - kvs[i]), kvs[i]);
        kv[i] = (vitq_kv){keys[i], (char *)(eq + 1), "t.ini", i + 1};
    }
    in->params = calloc(1, in->p->params_size);
    if (vitq_plugin_params_parse(in->p, "quantizer t", kv, nkv, in->params, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return -1;
    }
    in->tap = *tap;
    vitq_host_init(&in->host, &in->ctx, "test", in->tap.name, 99);
    in->q = in->o->create(in->params, &in->tap, &in->host);
    return in->q ? 0 : -1;
}

/* make() that must succeed: a failure is reported with create's message. */
static int made(inst *in, const vitq_tap *tap, const char *const *kvs, int nkv) {
    if (make(in, tap, kvs, nkv) == 0) return 0;
    test_failf(__FILE__, __LINE__, "create failed: %s", in->ctx.msg);
    return -1;
}

static void drop(inst *in) {
    if (in->p && in->q) in->o->destroy(in->q);
    in->q = NULL;
    free(in->params);
    in->params = NULL;
}

/* Named float arrays in memory (any size). */
typedef struct {
    char name[8][32];
    float *data[8];
    int64_t n[8];
    int count;
} mem_state;

static int ms_find(mem_state *m, const char *name) {
    for (int i = 0; i < m->count; i++)
        if (!strcmp(m->name[i], name)) return i;
    return -1;
}
static int ms_put(vitq_state_io *io, const char *name, const float *d, int64_t n) {
    mem_state *m = io->ctx;
    if (m->count == 8) return VITQ_EINVAL;
    snprintf(m->name[m->count], 32, "%s", name);
    m->data[m->count] = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    memcpy(m->data[m->count], d, (size_t)n * sizeof(float));
    m->n[m->count++] = n;
    return 0;
}
static int64_t ms_size(vitq_state_io *io, const char *name) {
    int i = ms_find(io->ctx, name);
    return i < 0 ? -1 : ((mem_state *)io->ctx)->n[i];
}
static int ms_get(vitq_state_io *io, const char *name, float *d, int64_t n) {
    mem_state *m = io->ctx;
    int i = ms_find(m, name);
    if (i < 0 || m->n[i] != n) return VITQ_EFORMAT;
    memcpy(d, m->data[i], (size_t)n * sizeof(float));
    return 0;
}
static vitq_state_io ms_io(mem_state *m) { return (vitq_state_io){m, ms_put, ms_size, ms_get}; }
static void ms_free(mem_state *m) {
    for (int i = 0; i < m->count; i++) free(m->data[i]);
    memset(m, 0, sizeof *m);
}

/* Loads (scale, zero_point) [G] into an instance: the quantizer's parameters set by hand. */
static int load_sz(inst *in, const float *s, const float *z, int64_t G) {
    mem_state m = {0};
    vitq_state_io io = ms_io(&m);
    float ver = 2;
    ms_put(&io, "state_version", &ver, 1);
    ms_put(&io, "scale", s, G);
    ms_put(&io, "zero_point", z, G);
    int rc = in->o->load(in->q, &io);
    ms_free(&m);
    return rc;
}

/* The instance's tensor `name` (NULL if absent). */
static vitq_qtensor *tensor(inst *in, const char *name, vitq_qtensor *buf) {
    int n = in->o->tensors(in->q, buf, 4);
    for (int i = 0; i < n; i++)
        if (!strcmp(buf[i].name, name)) return &buf[i];
    return NULL;
}

static vitq_view view(float *d, int ndim, int64_t a, int64_t b, int64_t c, int64_t e) {
    return (vitq_view){.data = d, .ndim = ndim, .shape = {a, b, c, e}};
}

static const vitq_tap act_tap = {.name = "blocks.0.attn.proj.input", .kind = VITQ_TAPK_ACT, .id = 4, .ndim = 3,
                                 .shape = {0, 3, 4}, .dims = {VITQ_DIM_BATCH, VITQ_DIM_TOKEN, VITQ_DIM_CHANNEL},
                                 .row_groups = 1};

static vitq_tap weight_tap(int64_t oc, int64_t ic) {
    return (vitq_tap){.name = "blocks.0.attn.proj.weight", .kind = VITQ_TAPK_WEIGHT, .id = -1, .ndim = 2,
                      .shape = {oc, ic}, .dims = {VITQ_DIM_OUT, VITQ_DIM_IN}, .row_groups = 1};
}

/* ---------------------------------------------------------------------------------------------
 * O1, O2: the quantizer
 * ------------------------------------------------------------------------------------------- */
TEST(aphq_o1_asymmetric_quantizer_numbers) {
    float x[9] = {-2.0f, -1.6f, -0.25f, 0, 0.25f, 0.75f, 1.3f, 2.0f, 5.0f}, y[9], h[9];
    const float want3[9] = {-1.5f, -1.5f, 0, 0, 0, 1.0f, 1.5f, 2.0f, 2.0f};
    const float want4[9] = {-1.0f, -1.0f, 0, 0, 0, 1.0f, 1.5f, 2.0f, 5.0f};
    const char *kv3[] = {"bits=3"}, *kv4[] = {"bits=4"};
    inst in;
    if (made(&in, &act_tap, kv3, 1)) return;
    float s = 0.5f, z = 3.0f;
    CHECK_EQ(load_sz(&in, &s, &z, 1), 0);
    vitq_view vx = view(x, 1, 9, 0, 0, 0), vy = view(y, 1, 9, 0, 0, 0);
    CHECK_EQ(in.o->forward(in.q, &vx, &vy), 0);
    CHECK_ALLCLOSE(y, want3, 9, 0, 0);
    for (int i = 0; i < 9; i++) h[i] = aphq_fq(x[i], 0.5f, 3.0f, 7.0f);
    CHECK_ALLCLOSE(h, want3, 9, 0, 0);
    drop(&in);
    /* z = 2.5 is rounded (half to even: 2) at use */
    if (made(&in, &act_tap, kv4, 1)) return;
    z = 2.5f;
    CHECK_EQ(load_sz(&in, &s, &z, 1), 0);
    CHECK_EQ(in.o->forward(in.q, &vx, &vy), 0);
    CHECK_ALLCLOSE(y, want4, 9, 0, 0);
    drop(&in);
}

TEST(aphq_o2_on_grid_and_idempotent) {
    enum { n = 500 };
    float x[n], y[n], y2[n];
    uint64_t r = 17;
    for (int i = 0; i < n; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(r >> 40) / (double)(1ull << 24) * 9.0 - 4.0);
    }
    const float cases[3][3] = {{0.37f, 5, 3}, {0.013f, 200, 8}, {1.7f, 0, 2}}; /* s, z, bits */
    for (int c = 0; c < 3; c++) {
        char b[16];
        snprintf(b, sizeof b, "bits=%d", (int)cases[c][2]);
        const char *kv[] = {b};
        inst in;
        if (made(&in, &act_tap, kv, 1)) return;
        CHECK_EQ(load_sz(&in, &cases[c][0], &cases[c][1], 1), 0);
        vitq_view vx = view(x, 1, n, 0, 0, 0), vy = view(y, 1, n, 0, 0, 0), vy2 = view(y2, 1, n, 0, 0, 0);
        CHECK_EQ(in.o->forward(in.q, &vx, &vy), 0);
        CHECK_EQ(in.o->forward(in.q, &vy, &vy2), 0);
        CHECK_MSG(memcmp(y, y2, sizeof y) == 0, "case %d: Q(Q(x)) != Q(x)", c);
        float qmax = ldexpf(1, (int)cases[c][2]) - 1;
        int bad = 0;
        for (int i = 0; i < n; i++) {
            double code = (double)y[i] / cases[c][0] + cases[c][1];
            bad += fabs(code - rint(code)) > 1e-3 || rint(code) < 0 || rint(code) > qmax;
        }
        CHECK_EQ(bad, 0);
        drop(&in);
    }
}

/* ---------------------------------------------------------------------------------------------
 * O12: torch.quantile semantics and the chunked mean
 * ------------------------------------------------------------------------------------------- */
TEST(aphq_o12_quantile_semantics) {
    /* sorted v, pos = q(n-1), v[floor] + frac·(v[ceil] - v[floor]) */
    float v[5] = {1, 2, 4, 8, 16}, u[5] = {8, 1, 16, 4, 2}, out[3];
    CHECK_NEAR(aphq_quantile_sorted(v, 5, 0.5f), 4.0, 0);
    CHECK_NEAR(aphq_quantile_sorted(v, 5, 0.375f), 3.0, 1e-6);  /* pos 1.5 */
    CHECK_NEAR(aphq_quantile_sorted(v, 5, 0.9375f), 14.0, 1e-5); /* pos 3.75: 8 + 0.75·8 */
    CHECK_NEAR(aphq_quantile_sorted(v, 5, 1.0f), 16.0, 0);
    CHECK_NEAR(aphq_quantile_sorted(v, 5, 0.0f), 1.0, 0);
    const float q[3] = {0.9375f, 0.0f, 0.375f};
    aphq_quantiles(u, 5, q, 3, out); /* by selection, on unsorted data, levels in any order */
    CHECK_NEAR(out[0], 14.0, 1e-5);
    CHECK_NEAR(out[1], 1.0, 0);
    CHECK_NEAR(out[2], 3.0, 1e-6);
    /* the float32 levels of the reference: 1 - 0.9f = 0.100000024 -> rank 0.50000012 on 6 values */
    float w[6] = {2, -0.5f, 1, -1, 0.5f, 0}, lv[4], p[4];
    aphq_lgrid_levels(lv);
    CHECK_EQ(lv[2], 1.0f - 0.9f);
    aphq_quantiles(w, 6, lv, 4, p);
    CHECK_NEAR(p[0], 1.5, 1e-6);
    CHECK_NEAR(p[1], 2.0, 0);
    CHECK_NEAR(p[2], -0.75, 1e-6);
    CHECK_NEAR(p[3], -1.0, 0);
    /* K = the smallest power of two with chunks <= 2^24 that divides the size (spec §2.3 examples) */
    CHECK_EQ(aphq_chunk_count(128LL * 197 * 1536), 4); /* ViT-S fc2 input */
    CHECK_EQ(aphq_chunk_count(128LL * 197 * 768), 2);  /* ViT-B qkv */
    CHECK_EQ(aphq_chunk_count(128LL * 197 * 3072), 8); /* ViT-B fc2 */
    CHECK_EQ(aphq_chunk_count(1LL << 24), 1);
    CHECK_EQ(aphq_chunk_count(12345), 1);
    CHECK_EQ(aphq_chunk_count((1LL << 24) + 1), -1); /* odd: no view; the reference never ends */
}

TEST(aphq_o12_chunked_mean_of_percentiles) {
    /* 2^24 + 2 values: K = 2 chunks of 2^23 + 1. Chunk 0 = 0 .. m-1, chunk 1 = 1000 + 3·(0 .. m-1), each
     * shuffled: the result is the mean of the two chunks' quantiles, not the quantile of the whole. */
    const int64_t m = (1LL << 23) + 1, n = 2 * m;
    float *v = malloc((size_t)n * sizeof(float)), *srt = malloc((size_t)m * sizeof(float));
    if (!v || !srt) return (void)test_failf(__FILE__, __LINE__, "out of memory");
    float lv[4], want[4] = {0}, got[4];
    aphq_matmul_quantile_levels(lv);
    for (int c = 0; c < 2; c++) {
        for (int64_t i = 0; i < m; i++) srt[i] = c ? 1000.0f + 3.0f * (float)i : (float)i;
        for (int t = 0; t < 4; t++) want[t] += aphq_quantile_sorted(srt, m, lv[t]);
        uint64_t r = 12345 + (uint64_t)c;
        for (int64_t i = m - 1; i > 0; i--) { /* Fisher-Yates */
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            int64_t j = (int64_t)((r >> 33) % (uint64_t)(i + 1));
            float t = srt[i];
            srt[i] = srt[j];
            srt[j] = t;
        }
        memcpy(v + c * m, srt, (size_t)m * sizeof(float));
    }
    for (int t = 0; t < 4; t++) want[t] /= 2;
    CHECK_EQ(aphq_quantiles_chunked(v, n, lv, 4, got), 2);
    CHECK_ALLCLOSE(got, want, 4, 0, 0);
    /* P(0.99) of chunk 1 alone is 1000 + 3·0.99·2^23: the mean lies halfway between the chunks */
    CHECK_NEAR(got[0], (0.99 * 8388608 + 1000 + 3 * 0.99 * 8388608) / 2, 2.0);
    free(v);
    free(srt);
}

/* ---------------------------------------------------------------------------------------------
 * O6, O7: the candidate grids
 * ------------------------------------------------------------------------------------------- */
TEST(aphq_o6_weight_grid_and_self_search) {
    float row[6] = {-1, -0.5f, 0, 0.5f, 1, 2}, work[6];
    double err[APHQ_EQ_N];
    aphq_lgrid g;
    memcpy(work, row, sizeof row);
    int best = aphq_lgrid_search_self(&g, work, 6, 3, 0, err);
    CHECK_NEAR(g.dmin, 2.25, 1e-6);
    CHECK_NEAR(g.dmax, 3.0, 0);
    CHECK_EQ(g.nz, 8);
    CHECK_EQ(g.ns, 16);
    CHECK_EQ(aphq_lgrid_count(&g), 128);
    float s, z;
    aphq_lgrid_at(&g, 0, &s, &z);
    CHECK_NEAR(s, 0.3214286, 1e-6);
    CHECK_EQ(z, 0);
    aphq_lgrid_at(&g, 127, &s, &z);
    CHECK_NEAR(s, 0.4285714, 1e-6);
    CHECK_EQ(z, 7);
    CHECK_EQ(best, 47); /* z = 2, s = 3/7 */
    CHECK_NEAR(err[47], 0.0119048, 1e-6);
    CHECK_NEAR(err[46], 0.0122024, 1e-6);
    /* 4 bits: 16 zero points x 8 widths */
    aphq_lgrid g4;
    memcpy(work, row, sizeof row);
    aphq_lgrid_search_self(&g4, work, 6, 4, 0, err);
    CHECK_EQ(g4.nz, 16);
    CHECK_EQ(g4.ns, 8);
    /* the plugin's finalize on a weight row picks the same pair */
    vitq_tap t = weight_tap(1, 6);
    const char *kv[] = {"bits=3", "init=aphq"};
    inst in;
    if (made(&in, &t, kv, 2)) return;
    vitq_view vw = view(row, 2, 1, 6, 0, 0);
    float y[6];
    vitq_view vy = view(y, 2, 1, 6, 0, 0);
    CHECK_EQ(in.o->observe(in.q, &vw), 0);
    CHECK_MSG(in.o->finalize(in.q) == 0, "%s", in.ctx.msg);
    vitq_qtensor buf[4], *sc = tensor(&in, "scale", buf);
    if (!sc) return (void)test_failf(__FILE__, __LINE__, "no scale tensor");
    CHECK_NEAR(sc->value[0], 3.0 / 7.0, 1e-6);
    CHECK_EQ(tensor(&in, "zero_point", buf)->value[0], 2);
    CHECK_EQ(in.o->forward(in.q, &vw, &vy), 0);
    const float want[6] = {-0.857143f, -0.428571f, 0, 0.428571f, 0.857143f, 2.142857f};
    CHECK_ALLCLOSE(y, want, 6, 0, 1e-6);
    drop(&in);
}

/* aphq_lgrid_mse takes 8 candidates side by side; each error must be aphq_mse's, bit for bit (the same sum
 * in the same order), at 3 and 4 bits, over a length with a tail and values past the grid's ends. */
TEST(aphq_lgrid_mse_is_each_candidates_mse) {
    enum { N = 1001 };
    float x[N];
    for (int i = 0; i < N; i++) x[i] = (float)((i * 7919) % 2003) / 500.0f - 2.0f + (i % 13 == 0 ? 9.0f : 0.0f);
    for (int bits = 3; bits <= 4; bits++) {
        const float p[4] = {1.5f, 6.0f, -1.5f, -2.0f};
        aphq_lgrid g;
        aphq_lgrid_init(&g, bits, 1, p);
        double err[APHQ_EQ_N];
        aphq_lgrid_mse(&g, x, N, err);
        int bad = 0;
        for (int i = 0; i < aphq_lgrid_count(&g); i++) {
            float s, z;
            aphq_lgrid_at(&g, i, &s, &z);
            const double want = aphq_mse(x, N, s, z, g.qmax);
            bad += memcmp(&want, &err[i], sizeof want) != 0;
        }
        CHECK_MSG(bad == 0, "%d bits: %d of %d candidates differ from aphq_mse", bits, bad, aphq_lgrid_count(&g));
    }
}

TEST(aphq_activation_grid_clamps_scale) {
    /* activations' candidate scales are at least 1e-4; a 129th candidate is never made */
    const float p[4] = {1e-5f, 2e-5f, 0, 0};
    aphq_lgrid g;
    aphq_lgrid_init(&g, 4, 1, p);
    float s, z;
    aphq_lgrid_at(&g, 0, &s, &z);
    CHECK_EQ(s, 1e-4f);
    aphq_lgrid_init(&g, 4, 0, p);
    aphq_lgrid_at(&g, 0, &s, &z);
    CHECK_NEAR(s, 1e-5 / 15, 1e-12);
    /* torch.linspace(0, 1, 16) from both ends */
    CHECK_EQ(aphq_linspace01(0, 16), 0.0f);
    CHECK_EQ(aphq_linspace01(15, 16), 1.0f);
    CHECK_EQ(aphq_linspace01(7, 16), 7.0f * (1.0f / 15.0f));
    CHECK_EQ(aphq_linspace01(8, 16), 1.0f - 7.0f * (1.0f / 15.0f));
    /* a constant row: scale 1 rather than the reference's NaN */
    const float c[4] = {3, 3, 3, 3};
    aphq_lgrid_init(&g, 3, 0, c);
    aphq_lgrid_at(&g, 5, &s, &z);
    CHECK_EQ(s, 1.0f);
}

TEST(aphq_o7_matmul_pairs) {
    float v[101], p[4], lv[4], U[APHQ_PAIRS], L[APHQ_PAIRS], s, z;
    for (int i = 0; i <= 100; i++) v[(i * 37) % 101] = (float)(i / 100.0);
    aphq_matmul_quantile_levels(lv);
    CHECK_EQ(aphq_quantiles_chunked(v, 101, lv, 4, p), 1);
    CHECK_NEAR(p[0], 0.99, 1e-6);    /* U_lo */
    CHECK_NEAR(p[1], 0.99999, 1e-6); /* U_hi */
    CHECK_NEAR(p[2], 0.01, 1e-6);    /* L_hi */
    CHECK_NEAR(p[3], 1e-5, 1e-7);    /* L_lo (float32 level 1 - 0.99999f = 1.00136e-5) */
    aphq_matmul_levels(p, U, L);
    const int idx[3] = {0, 64, 127};
    const double wu[3] = {0.99, 0.994995, 0.999912}, wl[3] = {1e-5, 0.005005, 0.009922};
    for (int k = 0; k < 3; k++) {
        CHECK_NEAR(U[idx[k]], wu[k], 2e-6);
        CHECK_NEAR(L[idx[k]], wl[k], 2e-6);
        aphq_pair_at(U, L, idx[k], idx[k], 7, &s, &z);
        CHECK_NEAR(s, 0.1414271, 1e-6);
        CHECK_EQ(z, 0);
    }
    CHECK_NEAR(U[128], 0.99999, 1e-6); /* the pair never evaluated */
    CHECK_NEAR(L[128], 0.01, 1e-6);
    /* through the plugin: per head of a probs tap, finalize = pair 127 */
    vitq_tap t = {.name = "blocks.0.attn.probs", .kind = VITQ_TAPK_PROBS, .id = 6, .ndim = 4, .shape = {0, 2, 1, 101},
                  .dims = {VITQ_DIM_BATCH, VITQ_DIM_HEAD, VITQ_DIM_TOKEN, VITQ_DIM_KEY}};
    const char *kv[] = {"bits=3", "init=aphq"};
    inst in;
    if (made(&in, &t, kv, 2)) return;
    float x[202];
    for (int i = 0; i <= 100; i++) x[i] = (float)(i / 100.0), x[101 + i] = (float)(i / 50.0);
    vitq_view vx = view(x, 4, 1, 2, 1, 101);
    CHECK_EQ(in.o->observe(in.q, &vx), 0);
    CHECK_MSG(in.o->finalize(in.q) == 0, "%s", in.ctx.msg);
    vitq_qtensor buf[4], *sc = tensor(&in, "scale", buf);
    if (!sc) return (void)test_failf(__FILE__, __LINE__, "no scale tensor");
    CHECK_EQ(sc->n, 2);
    CHECK_NEAR(sc->value[0], 0.1414271, 1e-6);
    CHECK_NEAR(sc->value[1], 2 * 0.1414271, 2e-6);
    drop(&in);
}

TEST(aphq_conv_weight_levels) {
    CHECK_EQ(aphq_conv_level(0), 0.99f);
    CHECK_EQ(aphq_conv_level(127), 0.9999f);
    CHECK_EQ(aphq_conv_level(128), 1.0f);
    CHECK_NEAR(aphq_conv_level(32), 0.99 + 0.0099 * sqrt(32.0 / 127.0), 1e-7);
    /* per output channel of a (2, 1, 2, 2) patch-embedding weight; finalize = pair 127 */
    vitq_tap t = {.name = "patch_embed.proj.weight", .kind = VITQ_TAPK_WEIGHT, .id = -1, .ndim = 4,
                  .shape = {2, 1, 2, 2}, .dims = {VITQ_DIM_OUT, VITQ_DIM_IN, VITQ_DIM_SPATIAL, VITQ_DIM_SPATIAL}};
    const char *kv[] = {"bits=4", "init=aphq"};
    inst in;
    if (made(&in, &t, kv, 2)) return;
    float w[8] = {-1, 0, 1, 2, 0.5f, 0.25f, 0, 1};
    vitq_view vw = view(w, 4, 2, 1, 2, 2);
    CHECK_EQ(in.o->observe(in.q, &vw), 0);
    CHECK_MSG(in.o->finalize(in.q) == 0, "%s", in.ctx.msg);
    float srt[4] = {-1, 0, 1, 2}, U[APHQ_PAIRS], L[APHQ_PAIRS], s, z;
    aphq_conv_levels(srt, 4, U, L);
    aphq_pair_at(U, L, 127, 127, 15, &s, &z);
    vitq_qtensor buf[4];
    CHECK_EQ(tensor(&in, "scale", buf)->value[0], s);
    CHECK_EQ(tensor(&in, "zero_point", buf)->value[0], z);
    CHECK_NEAR(s, (1.9997 - -0.9997) / 15, 1e-6); /* P(0.9999) = 1 + 0.9997, P(0.0001) = -1 + 0.0003 */
    drop(&in);
}

TEST(aphq_create_errors) {
    vitq_tap w = weight_tap(2, 3);
    inst in;
    const char *k1[] = {"init=aphq", "symmetric=true"};
    CHECK(make(&in, &w, k1, 2) == -1);
    CHECK_STR_CONTAINS(in.ctx.msg, "init = aphq is asymmetric");
    drop(&in);
    const char *k2[] = {"init=aphq", "granularity=per_channel"};
    CHECK(make(&in, &act_tap, k2, 2) == -1);
    CHECK_STR_CONTAINS(in.ctx.msg, "init = aphq quantizes this tap per tensor");
    drop(&in);
    CHECK_EQ(make(&in, &w, k2, 2), 0); /* agrees with the tap */
    drop(&in);
    const char *k3[] = {"rounding=adaround"};
    CHECK(make(&in, &act_tap, k3, 1) == -1);
    CHECK_STR_CONTAINS(in.ctx.msg, "rounding = adaround applies to weight taps");
    drop(&in);
    /* every calibration value is kept: more than max_values is an error */
    const char *k4[] = {"init=aphq", "max_values=1000"};
    if (made(&in, &act_tap, k4, 2)) return;
    float x[1200] = {0};
    vitq_view vx = view(x, 3, 100, 3, 4, 0);
    CHECK_EQ(in.o->observe(in.q, &vx), VITQ_EINVAL);
    CHECK_STR_CONTAINS(in.ctx.msg, "more than max_values = 1000");
    drop(&in);
}

/* ---------------------------------------------------------------------------------------------
 * O13: the output-error search, through a fake vitq_search. A linear layer Y = X·Wᵀ (no bias) and a
 * matmul are computed here in double; error() counts its calls.
 * ------------------------------------------------------------------------------------------- */
enum { B = 2, N = 3, C = 4, O = 3 };

typedef struct {
    const float *X, *W;     /* float input (B·N, C) and weights (O, C) */
    const float *Xq, *Wq;   /* the other operand as currently quantized */
    int weight;             /* 1: candidates replace W; 0: X */
    int calls, per_group;
} lin_ctx;

/* err[o] (or err[0]) = Σ (Y − Ŷ)², Y = X·Wᵀ, Ŷ = Xq'·Wq'ᵀ with the candidate in place of one side. */
static int lin_error(const vitq_search *s, const vitq_view *xq, int per_group, double *err) {
    lin_ctx *c = s->ctx;
    c->calls++;
    c->per_group = per_group;
    const float *Xh = c->weight ? c->Xq : xq->data, *Wh = c->weight ? xq->data : c->Wq;
    double e[O] = {0}; /* err has s->groups entries with per_group, else one */
    for (int r = 0; r < B * N; r++)
        for (int o = 0; o < O; o++) {
            double y = 0, yh = 0;
            for (int k = 0; k < C; k++) {
                y += (double)c->X[r * C + k] * c->W[o * C + k];
                yh += (double)Xh[r * C + k] * Wh[o * C + k];
            }
            e[o] += (y - yh) * (y - yh);
        }
    if (per_group)
        memcpy(err, e, sizeof e);
    else
        err[0] = e[0] + e[1] + e[2];
    return 0;
}

static vitq_search lin_search(lin_ctx *c, const vitq_view *x, int round, int weight) {
    c->weight = weight;
    return (vitq_search){.size = sizeof(vitq_search), .round = round, .rounds = 3, .x = x,
                         .groups = weight ? O : 1, .group_dim = weight ? VITQ_DIM_OUT : VITQ_DIM_BATCH,
                         .error = lin_error, .ctx = c, .partner_changed = 1};
}

/* The expected choice, computed here: for each row (weights) or the tensor, the candidate of least
 * output error over the §2.3 grid built from that row's / tensor's own percentiles. */
static void expected_linear(const lin_ctx *c, int weight, float *s_out, float *z_out) {
    int G = weight ? O : 1;
    for (int g = 0; g < G; g++) {
        float tmp[B * N * C], lv[4], p[4];
        int64_t n = weight ? C : B * N * C;
        memcpy(tmp, weight ? c->W + g * C : c->X, (size_t)n * sizeof(float));
        aphq_lgrid_levels(lv);
        aphq_quantiles(tmp, n, lv, 4, p);
        aphq_lgrid grid;
        aphq_lgrid_init(&grid, 3, !weight, p);
        double best = INFINITY;
        for (int i = 0; i < 128; i++) {
            float s, z, cand[B * N * C];
            aphq_lgrid_at(&grid, i, &s, &z);
            double e = 0;
            if (weight) {
                for (int k = 0; k < C; k++) cand[k] = aphq_fq(c->W[g * C + k], s, z, 7);
                for (int r = 0; r < B * N; r++) {
                    double y = 0, yh = 0;
                    for (int k = 0; k < C; k++) y += (double)c->X[r * C + k] * c->W[g * C + k], yh += (double)c->Xq[r * C + k] * cand[k];
                    e += (y - yh) * (y - yh);
                }
            } else {
                for (int k = 0; k < B * N * C; k++) cand[k] = aphq_fq(c->X[k], s, z, 7);
                for (int r = 0; r < B * N; r++)
                    for (int o = 0; o < O; o++) {
                        double y = 0, yh = 0;
                        for (int k = 0; k < C; k++) y += (double)c->X[r * C + k] * c->W[o * C + k], yh += (double)cand[r * C + k] * c->Wq[o * C + k];
                        e += (y - yh) * (y - yh);
                    }
            }
            if (e < best) best = e, s_out[g] = s, z_out[g] = z;
        }
    }
}

static void lin_data(float *X, float *W) {
    uint64_t r = 3;
    for (int i = 0; i < B * N * C; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(r >> 40) / (double)(1ull << 24);
        X[i] = (float)((u * 2 - 0.7) * (i % C == 2 ? 6 : 1)); /* channel 2 is large: output error != tensor MSE */
    }
    for (int i = 0; i < O * C; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        W[i] = (float)((double)(r >> 40) / (double)(1ull << 24) * 2 - 1.2);
    }
}

TEST(aphq_o13_linear_search_counts_and_argmin) {
    float X[B * N * C], W[O * C], Xq[B * N * C], Wq[O * C];
    lin_data(X, W);
    vitq_tap wt = weight_tap(O, C);
    const char *kv[] = {"bits=3", "init=aphq"};
    inst wi, ai;
    if (made(&wi, &wt, kv, 2) || made(&ai, &act_tap, kv, 2)) return;
    vitq_view vw = view(W, 2, O, C, 0, 0), vx = view(X, 3, B, N, C, 0);
    vitq_view vwq = view(Wq, 2, O, C, 0, 0), vxq = view(Xq, 3, B, N, C, 0);
    CHECK_EQ(wi.o->observe(wi.q, &vw), 0);
    CHECK_EQ(wi.o->finalize(wi.q), 0);
    CHECK_EQ(ai.o->observe(ai.q, &vx), 0);
    CHECK_EQ(ai.o->finalize(ai.q), 0);
    float fin_s[O];
    vitq_qtensor buf[4];
    memcpy(fin_s, tensor(&wi, "scale", buf)->value, sizeof fin_s);
    /* finalize = the header's self-search (tensor MSE) of each row and of the input */
    for (int g = 0; g <= O; g++) {
        float tmp[B * N * C], es, ez;
        double err[APHQ_EQ_N];
        int64_t n = g < O ? C : B * N * C;
        memcpy(tmp, g < O ? W + g * C : X, (size_t)n * sizeof(float));
        aphq_lgrid grid;
        aphq_lgrid_at(&grid, aphq_lgrid_search_self(&grid, tmp, n, 3, g == O, err), &es, &ez);
        inst *in = g < O ? &wi : &ai;
        CHECK_EQ(tensor(in, "scale", buf)->value[g < O ? g : 0], es);
        CHECK_EQ(tensor(in, "zero_point", buf)->value[g < O ? g : 0], ez);
    }
    lin_ctx c = {.X = X, .W = W, .Xq = Xq, .Wq = Wq};
    int changed = 0;
    for (int round = 0; round <= 3; round++) {
        /* weights: per row against the input as currently quantized */
        CHECK_EQ(ai.o->forward(ai.q, &vx, &vxq), 0);
        float es[O], ez[O];
        expected_linear(&c, 1, es, ez);
        c.calls = 0;
        vitq_search s = lin_search(&c, &vw, round, 1);
        CHECK_MSG(wi.o->search(wi.q, &s) == 0, "%s", wi.ctx.msg);
        CHECK_EQ(c.calls, round == 0 ? 0 : 128);
        if (round > 0) {
            CHECK_EQ(c.per_group, 1);
            CHECK_ALLCLOSE(tensor(&wi, "scale", buf)->value, es, O, 0, 0);
            CHECK_ALLCLOSE(tensor(&wi, "zero_point", buf)->value, ez, O, 0, 0);
        }
        /* input: per tensor against the weights as currently quantized */
        CHECK_EQ(wi.o->forward(wi.q, &vw, &vwq), 0);
        expected_linear(&c, 0, es, ez);
        c.calls = 0;
        s = lin_search(&c, &vx, round, 0);
        CHECK_MSG(ai.o->search(ai.q, &s) == 0, "%s", ai.ctx.msg);
        CHECK_EQ(c.calls, round == 0 ? 0 : 128);
        if (round > 0) {
            CHECK_EQ(c.per_group, 0);
            CHECK_EQ(tensor(&ai, "scale", buf)->value[0], es[0]);
            CHECK_EQ(tensor(&ai, "zero_point", buf)->value[0], ez[0]);
        }
    }
    for (int o = 0; o < O; o++) changed += tensor(&wi, "scale", buf)->value[o] != fin_s[o];
    CHECK_MSG(changed > 0, "the output-error search chose finalize's tensor-MSE pairs everywhere: a weak test");
    drop(&wi);
    drop(&ai);
}

/* A matmul operand (B, H, R, K) against a fixed float right operand (B, H, K, R): err[h] = Σ over head h
 * of (A·M − Aq·M)². */
enum { MB = 2, MH = 2, MR = 5, MK = 4 };
typedef struct {
    const float *A, *M;
    int calls, per_group;
} mm_ctx;

static double mm_head_error(const float *A, const float *Aq, const float *M, int h) {
    double e = 0;
    for (int b = 0; b < MB; b++)
        for (int r = 0; r < MR; r++)
            for (int c = 0; c < MR; c++) {
                double y = 0, yh = 0;
                for (int k = 0; k < MK; k++) {
                    int64_t ia = (((int64_t)b * MH + h) * MR + r) * MK + k, im = (((int64_t)b * MH + h) * MK + k) * MR + c;
                    y += (double)A[ia] * M[im];
                    yh += (double)Aq[ia] * M[im];
                }
                e += (y - yh) * (y - yh);
            }
    return e;
}

static int mm_error(const vitq_search *s, const vitq_view *xq, int per_group, double *err) {
    mm_ctx *c = s->ctx;
    c->calls++;
    c->per_group = per_group;
    for (int h = 0; h < MH; h++) err[h] = mm_head_error(c->A, xq->data, c->M, h);
    return 0;
}

/* Head h's paired tables, built here from its values in (image, row, col) order. */
static void head_tables(const float *A, int h, float *U, float *L) {
    float v[MB * MR * MK], lv[4], p[4];
    for (int b = 0; b < MB; b++) memcpy(v + b * MR * MK, A + ((int64_t)b * MH + h) * MR * MK, MR * MK * sizeof(float));
    aphq_matmul_quantile_levels(lv);
    aphq_quantiles_chunked(v, MB * MR * MK, lv, 4, p);
    aphq_matmul_levels(p, U, L);
}

/* A left operand skewed towards its top (u² scaled, plus `wiggle`·sin i) and a right one, from seed. */
static void mm_operands(float *A, float *M, uint64_t r, double wiggle) {
    for (size_t i = 0; i < MB * MH * MR * MK; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(r >> 40) / (double)(1ull << 24);
        A[i] = (float)(u * u * 3 - 0.4 + wiggle * sin((double)i));
        M[i] = (float)(u - 0.5 + 0.1 * (double)(i % 7));
    }
}

/* An attention operand tap (B, MH, MR, MK), per head. */
static vitq_tap head_tap(const char *name) {
    return (vitq_tap){.name = name, .kind = VITQ_TAPK_ACT, .id = 2, .ndim = 4, .shape = {0, MH, MR, MK},
                      .dims = {VITQ_DIM_BATCH, VITQ_DIM_HEAD, VITQ_DIM_TOKEN, VITQ_DIM_HEAD_CH}};
}

TEST(aphq_o13_matmul_search_counts_and_pairs) {
    float A[MB * MH * MR * MK], M[MB * MH * MK * MR];
    mm_operands(A, M, 11, 0);
    vitq_tap t = head_tap("blocks.0.attn.q");
    const char *kv[] = {"bits=3", "init=aphq"};
    inst in;
    if (made(&in, &t, kv, 2)) return;
    vitq_view va = view(A, 4, MB, MH, MR, MK);
    CHECK_EQ(in.o->observe(in.q, &va), 0);
    CHECK_EQ(in.o->finalize(in.q), 0);
    mm_ctx c = {.A = A, .M = M};
    vitq_search s = {.size = sizeof(vitq_search), .rounds = 3, .x = &va, .groups = MH, .group_dim = VITQ_DIM_HEAD,
                     .error = mm_error, .ctx = &c, .partner_changed = 1};
    /* round 0: the paired search over 0..127, per head */
    CHECK_MSG(in.o->search(in.q, &s) == 0, "%s", in.ctx.msg);
    CHECK_EQ(c.calls, 128);
    CHECK_EQ(c.per_group, 1);
    int best_i[MH];
    float U[MH][APHQ_PAIRS], L[MH][APHQ_PAIRS], Aq[MB * MH * MR * MK];
    vitq_qtensor buf[4];
    for (int h = 0; h < MH; h++) {
        head_tables(A, h, U[h], L[h]);
        double best = INFINITY;
        for (int i = 0; i < 128; i++) {
            float sc, z;
            aphq_pair_at(U[h], L[h], i, i, 7, &sc, &z);
            memcpy(Aq, A, sizeof A);
            for (int b = 0; b < MB; b++)
                for (int k = 0; k < MR * MK; k++) {
                    int64_t ia = ((int64_t)b * MH + h) * MR * MK + k;
                    Aq[ia] = aphq_fq(A[ia], sc, z, 7);
                }
            double e = mm_head_error(A, Aq, M, h);
            if (e < best) best = e, best_i[h] = i;
        }
        float sc, z;
        aphq_pair_at(U[h], L[h], best_i[h], best_i[h], 7, &sc, &z);
        CHECK_EQ(tensor(&in, "scale", buf)->value[h], sc);
        CHECK_EQ(tensor(&in, "zero_point", buf)->value[h], z);
    }
    /* rounds 1..3: lower then upper, 128 each */
    for (int round = 1; round <= 3; round++) {
        c.calls = 0;
        s.round = round;
        CHECK_MSG(in.o->search(in.q, &s) == 0, "%s", in.ctx.msg);
        CHECK_EQ(c.calls, 256);
    }
    /* once a round changes nothing, a round with the same partner is skipped (it would choose the same) */
    for (int k = 0; k < 10; k++) { /* until a round settles */
        c.calls = 0;
        CHECK_EQ(in.o->search(in.q, &s), 0);
        float before = tensor(&in, "scale", buf)->value[0];
        CHECK_EQ(in.o->search(in.q, &s), 0);
        if (tensor(&in, "scale", buf)->value[0] == before) break;
    }
    s.partner_changed = 0;
    c.calls = 0;
    CHECK_EQ(in.o->search(in.q, &s), 0);
    CHECK_EQ(c.calls, 0);
    s.partner_changed = 1;
    CHECK_EQ(in.o->search(in.q, &s), 0);
    CHECK_EQ(c.calls, 256);
    /* coordinate descent never ends worse than the paired choice */
    vitq_view vq = view(Aq, 4, MB, MH, MR, MK);
    CHECK_EQ(in.o->forward(in.q, &va, &vq), 0);
    for (int h = 0; h < MH; h++) {
        float sc, z, Ap[MB * MH * MR * MK];
        aphq_pair_at(U[h], L[h], best_i[h], best_i[h], 7, &sc, &z);
        for (size_t k = 0; k < sizeof A / sizeof *A; k++) Ap[k] = aphq_fq(A[k], sc, z, 7);
        CHECK(mm_head_error(A, Aq, M, h) <= mm_head_error(A, Ap, M, h));
    }
    drop(&in);
}

/* error_below as the harness may do it: the exact error, or, where it exceeds the bound, a partial sum
 * above the bound (half-way, and at least the next double up). Counts calls whose bounds were all finite. */
static int mm_seen_finite;
static int mm_error_below(const vitq_search *s, const vitq_view *xq, int per_group, const double *bound, double *err) {
    int rc = mm_error(s, xq, per_group, err), finite = 1;
    for (int h = 0; bound && h < MH; h++) {
        finite &= isfinite(bound[h]);
        if (err[h] > bound[h]) err[h] = fmax(bound[h] + 0.5 * (err[h] - bound[h]), nextafter(bound[h], INFINITY));
    }
    mm_seen_finite += bound && finite;
    return rc;
}

TEST(aphq_search_with_stopping_picks_the_same) {
    /* the seeded bound (uniform.c, scan_seed): every scan starts from the error of the current pair, so a
     * harness may stop on any candidate from the first one on; the choices of every round must equal those
     * made with exact errors throughout */
    float A[MB * MH * MR * MK], M[MB * MH * MK * MR];
    mm_operands(A, M, 29, 0.3);
    vitq_tap t = head_tap("blocks.0.attn.k");
    const char *kv[] = {"bits=3", "init=aphq"};
    inst plain, stop;
    if (made(&plain, &t, kv, 2) || made(&stop, &t, kv, 2)) return;
    vitq_view va = view(A, 4, MB, MH, MR, MK);
    CHECK_EQ(plain.o->observe(plain.q, &va), 0);
    CHECK_EQ(plain.o->finalize(plain.q), 0);
    CHECK_EQ(stop.o->observe(stop.q, &va), 0);
    CHECK_EQ(stop.o->finalize(stop.q), 0);
    mm_ctx c = {.A = A, .M = M};
    int changed = 0;
    float first = 0;
    vitq_qtensor b1[4], b2[4];
    for (int round = 0; round <= 3; round++) {
        vitq_search s = {.size = sizeof(vitq_search), .round = round, .rounds = 3, .x = &va, .groups = MH,
                         .group_dim = VITQ_DIM_HEAD, .error = mm_error, .ctx = &c, .partner_changed = 1};
        CHECK_MSG(plain.o->search(plain.q, &s) == 0, "%s", plain.ctx.msg);
        s.error_below = mm_error_below;
        mm_seen_finite = 0;
        c.calls = 0;
        CHECK_MSG(stop.o->search(stop.q, &s) == 0, "%s", stop.ctx.msg);
        /* 128 candidates per scan (1 scan in round 0, 2 after), one seed each, every candidate bounded */
        CHECK_EQ(c.calls, round == 0 ? 129 : 258);
        CHECK_EQ(mm_seen_finite, round == 0 ? 128 : 256);
        for (const char *name = "scale";; name = "zero_point") {
            CHECK_ALLCLOSE(tensor(&stop, name, b2)->value, tensor(&plain, name, b1)->value, MH, 0, 0);
            if (name[0] == 'z') break;
        }
        if (round == 0) first = tensor(&plain, "scale", b1)->value[0];
        changed += round > 0 && tensor(&plain, "scale", b1)->value[0] != first;
    }
    CHECK_MSG(changed > 0, "the rounds after the first changed nothing: a weak test");
    drop(&plain);
    drop(&stop);
}

/* A weight-MSE stand-in for the conv's output error: err[o] = Σ over output channel o of (w − wq)². */
static int conv_row_error(const vitq_search *s, const vitq_view *xq, int per_group, double *err) {
    mm_ctx *c = s->ctx;
    c->calls++;
    c->per_group = per_group;
    for (int o = 0; o < 3; o++) {
        err[o] = 0;
        for (int k = 0; k < 8; k++) {
            double d = (double)s->x->data[o * 8 + k] - xq->data[o * 8 + k];
            err[o] += d * d;
        }
    }
    return 0;
}

TEST(aphq_o13_conv_search_rounds) {
    vitq_tap t = {.name = "patch_embed.proj.weight", .kind = VITQ_TAPK_WEIGHT, .id = -1, .ndim = 4,
                  .shape = {3, 2, 2, 2}, .dims = {VITQ_DIM_OUT, VITQ_DIM_IN, VITQ_DIM_SPATIAL, VITQ_DIM_SPATIAL}};
    const char *kv[] = {"bits=4", "init=aphq"};
    inst in;
    if (made(&in, &t, kv, 2)) return;
    float w[24];
    for (int i = 0; i < 24; i++) w[i] = sinf((float)i * 1.3f) * (1 + (float)(i % 5));
    vitq_view vw = view(w, 4, 3, 2, 2, 2);
    CHECK_EQ(in.o->observe(in.q, &vw), 0);
    CHECK_EQ(in.o->finalize(in.q), 0);
    mm_ctx c = {0};
    const int want[4] = {128, 256, 0, 0}; /* paired; one coordinate round (lower, upper); then nothing */
    for (int round = 0; round <= 3; round++) {
        c.calls = 0;
        vitq_search s = {.size = sizeof(vitq_search), .round = round, .rounds = 3, .x = &vw, .groups = 3,
                         .group_dim = VITQ_DIM_OUT, .error = conv_row_error, .ctx = &c, .partner_changed = 1};
        CHECK_MSG(in.o->search(in.q, &s) == 0, "%s", in.ctx.msg);
        CHECK_EQ(c.calls, want[round]);
    }
    /* a harness whose groups do not match is refused */
    vitq_search bad = {.size = sizeof(vitq_search), .round = 0, .rounds = 3, .x = &vw, .groups = 2,
                       .group_dim = VITQ_DIM_OUT, .error = conv_row_error, .ctx = &c};
    CHECK_EQ(in.o->search(in.q, &bad), VITQ_EINVAL);
    CHECK_STR_CONTAINS(in.ctx.msg, "the harness's error has 2 groups, this quantizer 3");
    drop(&in);
}

/* ---------------------------------------------------------------------------------------------
 * AdaRound (§2.7)
 * ------------------------------------------------------------------------------------------- */
/* A weight tap (rows, cols) with rounding = adaround at `bits`, scales and zero points set by hand. */
static int make_ada(inst *in, int64_t rows, int64_t cols, const char *bits, const float *s, const float *z,
                    int symmetric) {
    static vitq_tap t;
    t = weight_tap(rows, cols);
    const char *kv[] = {bits, "rounding=adaround", "granularity=per_channel",
                        symmetric ? "symmetric=true" : "symmetric=false"};
    if (made(in, &t, kv, 4)) return -1;
    if (load_sz(in, s, z, rows) == 0) return 0;
    test_failf(__FILE__, __LINE__, "load failed: %s", in->ctx.msg);
    return -1;
}

TEST(aphq_o3_adaround_init_soft_hard) {
    /* s = 0.5, z = 3 (4 bits): w = s·(k + frac) for the oracle's fractions */
    const float fr[6] = {0, 0.1f, 0.25f, 0.75f, 0.999f, 0.5f};
    const double alpha0[5] = {-2.397895, -1.609438, -0.887303, 0.887303, 2.387035};
    float s = 0.5f, z = 3, w[6], y[6];
    for (int i = 0; i < 6; i++) w[i] = 0.5f * ((float)(i - 2) + fr[i]);
    inst in;
    if (make_ada(&in, 1, 6, "bits=4", &s, &z, 0)) return;
    vitq_view vw = view(w, 2, 1, 6, 0, 0), vy = view(y, 2, 1, 6, 0, 0);
    /* before train: nearest rounding */
    CHECK_EQ(in.o->forward(in.q, &vw, &vy), 0);
    for (int i = 0; i < 6; i++) CHECK_EQ(y[i], aphq_fq(w[i], s, z, 15));
    vitq_qtensor buf[4];
    CHECK(tensor(&in, "alpha", buf) == NULL);
    CHECK_EQ(in.o->train(in.q, &vw), 0);
    vitq_qtensor *a = tensor(&in, "alpha", buf);
    if (!a) return (void)test_failf(__FILE__, __LINE__, "no alpha after train");
    CHECK_EQ(a->n, 6);
    CHECK(a->grad != NULL);
    for (int i = 0; i < 5; i++) CHECK_NEAR(a->value[i], alpha0[i], 2e-4);
    CHECK_NEAR(a->value[5], 0, 1e-5); /* the tie: sign from rounding, not tested */
    /* soft forward = the float weight (every code in range) */
    CHECK_EQ(in.o->forward(in.q, &vw, &vy), 0);
    CHECK_ALLCLOSE(y, w, 6, 0, 2e-6);
    a->value[5] = 0.25f; /* decide the tie: up */
    CHECK_EQ(in.o->freeze(in.q), 0);
    CHECK(tensor(&in, "alpha", buf) == NULL); /* α dropped */
    CHECK_EQ(in.o->forward(in.q, &vw, &vy), 0);
    const float hard[6] = {-1.0f, -0.5f, 0.0f, 1.0f, 1.5f, 2.0f}; /* ⌊w/s⌋ + [α ≥ 0]: -2+0, -1+0, 0+0, 1+1, 2+1, 3+1 */
    CHECK_ALLCLOSE(y, hard, 6, 0, 0);
    drop(&in);
}

TEST(aphq_adaround_clamps_and_symmetric) {
    /* 3 bits asymmetric, s = 1, z = 2: levels -2..5. w = -3.4 (below: clamps to -2), 5.6 (⌊⌋ 5 + h > 5: 5) */
    float s = 1, z = 2, w[3] = {-3.4f, 5.6f, 1.3f}, y[3];
    inst in;
    if (make_ada(&in, 1, 3, "bits=3", &s, &z, 0)) return;
    vitq_view vw = view(w, 2, 1, 3, 0, 0), vy = view(y, 2, 1, 3, 0, 0);
    CHECK_EQ(in.o->train(in.q, &vw), 0);
    CHECK_EQ(in.o->forward(in.q, &vw, &vy), 0);
    const float soft[3] = {-2.0f, 5.0f, 1.3f};
    CHECK_ALLCLOSE(y, soft, 3, 0, 2e-6);
    /* straight-through dx: 1 inside, 0 where the range clamps */
    float dy[3] = {1, 1, 1}, dx[3] = {0, 0, 0};
    vitq_view vdy = view(dy, 2, 1, 3, 0, 0), vdx = view(dx, 2, 1, 3, 0, 0);
    CHECK_EQ(in.o->backward(in.q, &vw, &vdy, &vdx), 0);
    const float wdx[3] = {0, 0, 1};
    CHECK_ALLCLOSE(dx, wdx, 3, 0, 0);
    vitq_qtensor buf[4], *a = tensor(&in, "alpha", buf);
    CHECK_EQ(a->grad[0], 0);
    CHECK_EQ(a->grad[1], 0);
    CHECK(a->grad[2] > 0);
    drop(&in);
    /* symmetric: clamp(⌊w/s⌋ + h, -4, 3)·s at 3 bits */
    z = 0;
    s = 0.5f;
    float ws[3] = {-2.6f, 1.8f, 0.7f};
    if (make_ada(&in, 1, 3, "bits=3", &s, &z, 1)) return;
    vw.data = ws;
    CHECK_EQ(in.o->train(in.q, &vw), 0);
    a = tensor(&in, "alpha", buf);
    a->value[0] = a->value[1] = a->value[2] = 1;
    CHECK_EQ(in.o->freeze(in.q), 0);
    CHECK_EQ(in.o->forward(in.q, &vw, &vy), 0);
    const float hs[3] = {-2.0f, 1.5f, 1.0f}; /* ⌊-5.2⌋+1 = -5 -> -4; ⌊3.6⌋+1 = 4 -> 3; ⌊1.4⌋+1 = 2 */
    CHECK_ALLCLOSE(y, hs, 3, 0, 0);
    drop(&in);
}

TEST(aphq_o4_rounding_regulariser) {
    float s = 1, z = 0, w[2] = {2.25f, 3.25f}; /* h = 0.25 for both */
    inst in;
    if (make_ada(&in, 1, 2, "bits=4", &s, &z, 0)) return;
    vitq_view vw = view(w, 2, 1, 2, 0, 0);
    CHECK_EQ(in.o->train(in.q, &vw), 0);
    double loss = 0;
    vitq_reg r = {.size = sizeof(vitq_reg), .t = 0.5, .weight = 1, .beta = 20};
    CHECK_EQ(in.o->regularize(in.q, &r, &loss), 0);
    CHECK_NEAR(loss, 2 * 0.999999046, 2e-6);
    loss = 0;
    r.beta = 2;
    r.weight = 0.01;
    CHECK_EQ(in.o->regularize(in.q, &r, &loss), 0);
    CHECK_NEAR(loss, 0.01 * 2 * 0.75, 1e-6);
    /* weight 0: off (warm-up), nothing added, no gradient */
    vitq_qtensor buf[4], *a = tensor(&in, "alpha", buf);
    float g0 = a->grad[0];
    loss = 5;
    r.weight = 0;
    CHECK_EQ(in.o->regularize(in.q, &r, &loss), 0);
    CHECK_EQ(loss, 5);
    CHECK_EQ(a->grad[0], g0);
    drop(&in);
}

/* L(α) = Σ c_i·Q_soft(w)_i + λ·Σ(1 − |2h − 1|^β), for finite differences. */
static double ada_objective(inst *in, vitq_view *vw, const float *c, int n, const vitq_reg *r) {
    float y[16];
    vitq_view vy = view(y, 2, vw->shape[0], vw->shape[1], 0, 0);
    in->o->forward(in->q, vw, &vy);
    double L = 0;
    for (int i = 0; i < n; i++) L += (double)c[i] * y[i];
    in->o->regularize(in->q, r, &L);
    return L;
}

TEST(aphq_adaround_dalpha_finite_differences) {
    /* 2 rows, per-row (s, z), 4 bits; weights inside the range, one clamped by the range, one whose h is
     * clamped (α set to 5: σ(5)·1.2 − 0.1 > 1) */
    float s[2] = {0.5f, 0.25f}, z[2] = {3, 8};
    float w[8] = {0.3f, -0.8f, 1.17f, 9.1f, 0.41f, -1.33f, 0.05f, 0.9f};
    const float c[8] = {1.5f, -0.7f, 2.0f, 1.0f, -1.1f, 0.6f, 0.9f, -2.0f};
    inst in;
    if (make_ada(&in, 2, 4, "bits=4", s, z, 0)) return;
    vitq_view vw = view(w, 2, 2, 4, 0, 0);
    CHECK_EQ(in.o->train(in.q, &vw), 0);
    vitq_qtensor buf[4], *a = tensor(&in, "alpha", buf);
    if (!a) return (void)test_failf(__FILE__, __LINE__, "no alpha after train");
    a->value[1] = 0.6f; /* move off the initial point so the regulariser's gradient is not symmetric */
    a->value[6] = 5.0f; /* h clamped at 1 */
    vitq_reg r = {.size = sizeof(vitq_reg), .t = 0.5, .weight = 0.3, .beta = 3};
    float dy[8], dx[8] = {0};
    memcpy(dy, c, sizeof dy);
    vitq_view vdy = view(dy, 2, 2, 4, 0, 0), vdx = view(dx, 2, 2, 4, 0, 0);
    memset(a->grad, 0, 8 * sizeof(float));
    CHECK_EQ(in.o->backward(in.q, &vw, &vdy, &vdx), 0);
    double dummy = 0;
    CHECK_EQ(in.o->regularize(in.q, &r, &dummy), 0);
    float g[8]; /* the objective below runs regularize, which accumulates again */
    memcpy(g, a->grad, sizeof g);
    for (int i = 0; i < 8; i++) {
        float a0 = a->value[i];
        const float eps = 1e-2f;
        a->value[i] = a0 + eps;
        double lp = ada_objective(&in, &vw, c, 8, &r);
        a->value[i] = a0 - eps;
        double lm = ada_objective(&in, &vw, c, 8, &r);
        a->value[i] = a0;
        double fd = (lp - lm) / (2.0 * (double)eps); 
        CHECK_MSG(fabs(fd - g[i]) <= 2e-3 * fabs(fd) + 2e-4, "dα[%d] = %.7g, finite differences %.7g", i,
                  (double)g[i], fd);
    }
    /* 9.1/0.5 = 18.2 + 3 > 15: the range clamps, only the rounding term's gradient is left */
    CHECK(g[3] != 0);
    CHECK_EQ(g[6], 0); /* h clamped: no gradient from either term */
    CHECK_EQ(dx[3], 0);
    CHECK_EQ(dx[0], c[0]);
    drop(&in);
}

TEST(aphq_adaround_freeze_state_round_trip) {
    enum { R = 3, K = 7 }; /* 21 weights: two packed words */
    float s[R] = {0.1f, 0.3f, 0.05f}, z[R] = {7, 4, 9}, w[R * K], y1[R * K], y2[R * K];
    for (int i = 0; i < R * K; i++) w[i] = sinf((float)i * 2.1f) * 0.6f;
    inst a, b;
    if (make_ada(&a, R, K, "bits=4", s, z, 0) || make_ada(&b, R, K, "bits=4", s, z, 0)) return;
    vitq_view vw = view(w, 2, R, K, 0, 0), v1 = view(y1, 2, R, K, 0, 0), v2 = view(y2, 2, R, K, 0, 0);
    CHECK_EQ(a.o->train(a.q, &vw), 0);
    vitq_qtensor buf[4], *al = tensor(&a, "alpha", buf);
    float alpha[R * K];
    for (int i = 0; i < R * K; i++) al->value[i] += (i % 3 == 0) ? 1.5f : (i % 3 == 1 ? -1.5f : 0.0f);
    memcpy(alpha, al->value, sizeof alpha);
    CHECK_EQ(a.o->freeze(a.q), 0);
    CHECK_EQ(a.o->forward(a.q, &vw, &v1), 0);
    /* the hard value: (clamp(⌊w/s⌋ + [α ≥ 0] + z, 0, 15) − z)·s, the reference's baked weight */
    for (int i = 0; i < R * K; i++) {
        int g = i / K;
        float v = floorf(w[i] / s[g]) + (alpha[i] >= 0) + z[g];
        v = v < 0 ? 0 : v > 15 ? 15 : v;
        CHECK_EQ(y1[i], (v - z[g]) * s[g]);
        float baked = (floorf(w[i] / s[g]) + (alpha[i] >= 0)) * s[g]; /* then nearest rounding */
        CHECK_EQ(y1[i], aphq_fq(baked, s[g], z[g], 15));
    }
    /* the state holds every decision, 0 or 1 */
    mem_state m = {0};
    vitq_state_io io = ms_io(&m);
    CHECK_EQ(a.o->save(a.q, &io), 0);
    int k = ms_find(&m, "round_up");
    if (k < 0) return (void)test_failf(__FILE__, __LINE__, "no round_up in the state");
    CHECK_EQ(m.n[k], 2);
    CHECK_EQ(m.data[ms_find(&m, "state_version")][0], 2);
    for (int i = 0; i < R * K; i++) CHECK_EQ(((unsigned)m.data[k][i / 16] >> (i % 16)) & 1u, (unsigned)(alpha[i] >= 0));
    /* load into a fresh instance (never trained): the same hard values */
    CHECK_EQ(b.o->load(b.q, &io), 0);
    CHECK_EQ(b.o->forward(b.q, &vw, &v2), 0);
    CHECK(memcmp(y1, y2, sizeof y1) == 0);
    /* a state for another shape is refused */
    m.n[k] = 1;
    CHECK_EQ(b.o->load(b.q, &io), VITQ_EFORMAT);
    CHECK_STR_CONTAINS(b.ctx.msg, "state holds 1 AdaRound words, this tap needs 2");
    ms_free(&m);
    drop(&a);
    drop(&b);
}

/* ---------------------------------------------------------------------------------------------
 * LSQ scale (§2.1): no gradient-scale factor under init = aphq (auto), grads only while training
 * ------------------------------------------------------------------------------------------- */
TEST(aphq_lsq_scale_gradient) {
    const char *kv[] = {"bits=4", "init=aphq", "learnable=true"};
    inst in;
    if (made(&in, &act_tap, kv, 3)) return;
    float s = 0.25f, z = 4;
    CHECK_EQ(load_sz(&in, &s, &z, 1), 0);
    vitq_qtensor buf[4];
    CHECK(tensor(&in, "scale", buf)->grad == NULL);
    CHECK_EQ(in.o->train(in.q, NULL), 0);
    vitq_qtensor *sc = tensor(&in, "scale", buf);
    if (!sc->grad) return (void)test_failf(__FILE__, __LINE__, "no scale gradient");
    CHECK(tensor(&in, "zero_point", buf)->grad == NULL);
    /* x/s: 1.2 inside (ds = 1 − 1.2), 12 + 4 > 15 (ds = 15 − 4), −8 + 4 < 0 (ds = 0 − 4) */
    float x[3] = {0.3f, 3.0f, -2.0f}, dy[3] = {1, 2, 3}, dx[3] = {0};
    vitq_view vx = view(x, 1, 3, 0, 0, 0), vdy = view(dy, 1, 3, 0, 0, 0), vdx = view(dx, 1, 3, 0, 0, 0);
    CHECK_EQ(in.o->backward(in.q, &vx, &vdy, &vdx), 0);
    CHECK_NEAR(sc->grad[0], 1 * (1 - 0.3 / 0.25) + 2 * 11.0 + 3 * -4.0, 1e-5); /* no 1/sqrt(numel·Qp) */
    const float wdx[3] = {1, 0, 0};
    CHECK_ALLCLOSE(dx, wdx, 3, 0, 0);
    CHECK_EQ(in.o->freeze(in.q), 0);
    CHECK(tensor(&in, "scale", buf)->grad == NULL);
    drop(&in);
    /* grad_scale = true restores LSQ's factor under aphq */
    const char *kv2[] = {"bits=4", "init=aphq", "learnable=true", "grad_scale=true"};
    if (made(&in, &act_tap, kv2, 4)) return;
    CHECK_EQ(load_sz(&in, &s, &z, 1), 0);
    CHECK_EQ(in.o->train(in.q, NULL), 0);
    CHECK_EQ(in.o->backward(in.q, &vx, &vdy, NULL), 0);
    CHECK_NEAR(tensor(&in, "scale", buf)->grad[0], (1 * (1 - 0.3 / 0.25) + 22.0 - 12.0) / sqrt(3.0 * 15.0), 1e-5);
    drop(&in);
}

/* 200000 values: the blocked, threaded backward gives the serial sum's scale gradient (to float) and the
 * same dx, at scale sc (a learned scale can cross zero: the fast loop must not depend on its sign). */
static void backward_blocks_case(float sc) {
    enum { n = 200000 };
    float *x = malloc(n * sizeof *x), *dy = malloc(n * sizeof *dy), *dx = calloc(n, sizeof *dx);
    double ds = 0;
    for (int i = 0; i < n; i++) {
        x[i] = sinf((float)i * 0.37f) * 5.0f;
        dy[i] = cosf((float)i * 0.11f);
        float v = x[i] / sc, r = rintf(v), u = r + 8;
        ds += (double)dy[i] * (u < 0 ? -8.0 : u > 15 ? 7.0 : (double)(r - v));
    }
    const char *kv[] = {"bits=4", "learnable=true", "grad_scale=false"};
    inst in;
    if (made(&in, &act_tap, kv, 3)) return;
    float s = sc, z = 8;
    CHECK_EQ(load_sz(&in, &s, &z, 1), 0);
    CHECK_EQ(in.o->train(in.q, NULL), 0);
    vitq_view vx = view(x, 1, n, 0, 0, 0), vdy = view(dy, 1, n, 0, 0, 0), vdx = view(dx, 1, n, 0, 0, 0);
    CHECK_EQ(in.o->backward(in.q, &vx, &vdy, &vdx), 0);
    vitq_qtensor buf[4];
    CHECK_NEAR(tensor(&in, "scale", buf)->grad[0], ds, 1e-6 * fabs(ds) + 1e-3);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        float u = rintf(x[i] / sc) + 8;
        bad += dx[i] != (u < 0 || u > 15 ? 0.0f : dy[i]);
    }
    CHECK_EQ(bad, 0);
    free(x), free(dy), free(dx);
    drop(&in);
}

TEST(aphq_backward_blocks_match_serial) {
    backward_blocks_case(0.25f);
    backward_blocks_case(-0.25f);
}
