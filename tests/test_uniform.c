/* test_uniform.c — plugins/uniform.c through its ops, against hand-derived values: rounding half to even,
 * clipping, zero point, symmetric levels, per-channel / per-token / per-head scales, percentile and mse
 * inits, the LSQ backward, state save/load. Scales are chosen as powers of two so every value is exact. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

/* A quantizer instance with its host and params, built from "key=value" strings. */
typedef struct {
    const vitq_plugin *p;
    void *params, *q;
    vitq_host host;
    vitq_host_ctx ctx;
    vitq_tap tap;
} inst;

static int make(inst *in, const char *plugin, const vitq_tap *tap, const char *const *kvs, int nkv) {
    memset(in, 0, sizeof *in);
    vitq_err e;
    if (vitq_plugin_load(plugin, NULL, &in->p, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return -1;
    }
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
    vitq_host_init(&in->host, &in->ctx, "test", in->tap.name, 1234);
    in->q = in->p->quantizer->create(in->params, &in->tap, &in->host);
    return in->q ? 0 : -1;
}

static void drop(inst *in) {
    if (in->p && in->q) in->p->quantizer->destroy(in->q);
    free(in->params);
}

static vitq_view view1(float *x, int64_t n) { return (vitq_view){.data = x, .ndim = 1, .shape = {n}}; }

static const vitq_tap act_tap = {.name = "blocks.0.mlp.fc2.input", .kind = VITQ_TAPK_ACT, .id = 9, .ndim = 1,
                                 .shape = {0}, .dims = {VITQ_DIM_CHANNEL}, .row_groups = 1};

/* Captures saved state: up to 4 named arrays. */
typedef struct {
    char name[4][32];
    float data[4][64];
    int64_t n[4];
    int count;
} mem_state;

static int ms_put(vitq_state_io *io, const char *name, const float *d, int64_t n) {
    mem_state *m = io->ctx;
    if (m->count == 4 || n > 64) return VITQ_EINVAL;
    snprintf(m->name[m->count], 32, "%s", name);
    memcpy(m->data[m->count], d, (size_t)n * sizeof(float));
    m->n[m->count++] = n;
    return 0;
}
static int ms_find(mem_state *m, const char *name) {
    for (int i = 0; i < m->count; i++)
        if (!strcmp(m->name[i], name)) return i;
    return -1;
}
static int64_t ms_size(vitq_state_io *io, const char *name) {
    mem_state *m = io->ctx;
    int i = ms_find(m, name);
    return i < 0 ? -1 : m->n[i];
}
static int ms_get(vitq_state_io *io, const char *name, float *d, int64_t n) {
    mem_state *m = io->ctx;
    int i = ms_find(m, name);
    if (i < 0 || m->n[i] != n) return VITQ_EFORMAT;
    memcpy(d, m->data[i], (size_t)n * sizeof(float));
    return 0;
}

static void save(inst *in, mem_state *m) {
    memset(m, 0, sizeof *m);
    vitq_state_io io = {m, ms_put, ms_size, ms_get};
    CHECK(in->p->quantizer->save(in->q, &io) == 0);
}

/* observe x, finalize */
static void calibrate(inst *in, float *x, int64_t n) {
    vitq_view v = view1(x, n);
    CHECK(in->p->quantizer->observe(in->q, &v) == 0);
    CHECK_MSG(in->p->quantizer->finalize(in->q) == 0, "%s", in->ctx.msg);
}

TEST(uniform_asym_rounding_clipping_zero_point) {
    inst in;
    const char *kv[] = {"bits=4"};
    if (make(&in, "uniform", &act_tap, kv, 1)) return;
    /* observed in two calls: the range accumulates to [-1, 2.75] -> s = 3.75/15 = 0.25, z = -round(-4) = 4 */
    float c1[] = {-1.0f, 0.5f}, c2[] = {2.75f};
    vitq_view v1 = view1(c1, 2), v2 = view1(c2, 1);
    CHECK_EQ(in.p->quantizer->observe(in.q, &v1), 0);
    CHECK_EQ(in.p->quantizer->observe(in.q, &v2), 0);
    CHECK(in.p->quantizer->finalize(in.q) == 0);
    mem_state m;
    save(&in, &m);
    CHECK(m.data[ms_find(&m, "scale")][0] == 0.25f);
    CHECK(m.data[ms_find(&m, "zero_point")][0] == 4.0f);
    /* 0.375/0.25 = 1.5 -> 2 (even); 0.625 -> 2.5 -> 2 (even); -0.125 -> -0.5 -> -0; 0.875 -> 3.5 -> 4;
     * 3 -> 12+4 = 16 > 15 -> 15 -> 2.75; -2 -> -8+4 < 0 -> 0 -> -1; -1.1 -> -4.4 -> -4 -> -1; 2.75 -> 15 */
    float x[] = {0.375f, 0.625f, -0.125f, 0.875f, 3.0f, -2.0f, -1.1f, 2.75f, 0.1f};
    float want[] = {0.5f, 0.5f, 0.0f, 1.0f, 2.75f, -1.0f, -1.0f, 2.75f, 0.0f};
    float y[9];
    vitq_view vx = view1(x, 9), vy = view1(y, 9);
    CHECK(in.p->quantizer->forward(in.q, &vx, &vy) == 0);
    CHECK_ALLCLOSE(y, want, 9, 0, 0);
    /* in place gives the same */
    CHECK(in.p->quantizer->forward(in.q, &vx, &vx) == 0);
    CHECK_ALLCLOSE(x, want, 9, 0, 0);
    drop(&in);
}

TEST(uniform_symmetric_levels) {
    inst in;
    const char *kv[] = {"bits=4", "symmetric=true"};
    if (make(&in, "uniform", &act_tap, kv, 2)) return;
    float c[] = {-1.75f, 0.5f, 1.0f}; /* amax 1.75 -> s = 1.75/7 = 0.25, levels -8..7 */
    calibrate(&in, c, 3);
    float x[] = {-2.5f, 1.9f, 0.375f, -0.375f, 0.125f, -1.9f, -2.0f};
    float want[] = {-2.0f, 1.75f, 0.5f, -0.5f, 0.0f, -2.0f, -2.0f};
    float y[7];
    vitq_view vx = view1(x, 7), vy = view1(y, 7);
    CHECK(in.p->quantizer->forward(in.q, &vx, &vy) == 0);
    CHECK_ALLCLOSE(y, want, 7, 0, 0);
    drop(&in);
}

TEST(uniform_per_channel_weights) {
    vitq_tap t = {.name = "blocks.0.attn.proj.weight", .kind = VITQ_TAPK_WEIGHT, .id = -1, .ndim = 2, .shape = {2, 4},
                  .dims = {VITQ_DIM_OUT, VITQ_DIM_IN}, .row_groups = 1};
    inst in;
    const char *kv[] = {"bits=2", "granularity=per_channel"};
    if (make(&in, "uniform", &t, kv, 2)) return;
    /* row 0 [0,3]: s = 1, z = 0. row 1 [-1,2]: s = 1, z = 1 -> -0.5 and 0.5 round to 0 */
    float w[] = {0, 1.4f, 2.6f, 3, -1, -0.5f, 0.5f, 2}, y[8];
    float want[] = {0, 1, 3, 3, -1, 0, 0, 2};
    vitq_view v = {.data = w, .ndim = 2, .shape = {2, 4}}, vy = v;
    vy.data = y;
    CHECK_EQ(in.p->quantizer->observe(in.q, &v), 0);
    CHECK_EQ(in.p->quantizer->finalize(in.q), 0);
    CHECK(in.p->quantizer->forward(in.q, &v, &vy) == 0);
    CHECK_ALLCLOSE(y, want, 8, 0, 0);
    mem_state m;
    save(&in, &m);
    int zi = ms_find(&m, "zero_point");
    CHECK_EQ(m.n[zi], 2);
    CHECK_EQ(m.data[zi][0], 0);
    CHECK_EQ(m.data[zi][1], 1);
    drop(&in);
    /* per_token is refused on weights */
    const char *kv2[] = {"granularity=per_token"};
    CHECK(make(&in, "uniform", &t, kv2, 1) == -1);
    CHECK_STR_CONTAINS(in.ctx.msg, "test: granularity per_token applies to activations");
    drop(&in);
}

TEST(uniform_per_channel_and_per_head_activations) {
    /* (B=2, N=1, C=2): channel 0 sees {0, 3.75}, channel 1 sees {-2, 1.75}; 4 bits -> both s = 0.25,
     * z = 0 and 8 */
    vitq_tap t = {.name = "x", .kind = VITQ_TAPK_ACT, .ndim = 3, .shape = {0, 1, 2},
                  .dims = {VITQ_DIM_BATCH, VITQ_DIM_TOKEN, VITQ_DIM_CHANNEL}};
    inst in;
    const char *kv[] = {"bits=4", "granularity=per_channel"};
    if (make(&in, "uniform", &t, kv, 2)) return;
    float c[] = {0, -2, 3.75f, 1.75f};
    vitq_view v = {.data = c, .ndim = 3, .shape = {2, 1, 2}};
    CHECK_EQ(in.p->quantizer->observe(in.q, &v), 0);
    CHECK_EQ(in.p->quantizer->finalize(in.q), 0);
    float x[] = {-1, -3, 4, 2, 0.375f, 0.375f}, want[] = {0, -2, 3.75f, 1.75f, 0.5f, 0.5f};
    vitq_view vx = {.data = x, .ndim = 3, .shape = {3, 1, 2}};
    CHECK(in.p->quantizer->forward(in.q, &vx, &vx) == 0);
    CHECK_ALLCLOSE(x, want, 6, 0, 0);
    drop(&in);
    /* per head: (B, H=2, N=1, D=2); head 0 range [0, 1.5] (2 bits: s = 0.5), head 1 range [0, 3] (s = 1) */
    vitq_tap th = {.name = "q", .kind = VITQ_TAPK_ACT, .ndim = 4, .shape = {0, 2, 1, 2},
                   .dims = {VITQ_DIM_BATCH, VITQ_DIM_HEAD, VITQ_DIM_TOKEN, VITQ_DIM_HEAD_CH}};
    const char *kvh[] = {"bits=2", "granularity=per_head"};
    if (make(&in, "uniform", &th, kvh, 2)) return;
    float ch[] = {0, 1.5f, 0, 3};
    vitq_view vh = {.data = ch, .ndim = 4, .shape = {1, 2, 1, 2}};
    CHECK_EQ(in.p->quantizer->observe(in.q, &vh), 0);
    CHECK_EQ(in.p->quantizer->finalize(in.q), 0);
    float xh[] = {0.7f, 0.8f, 1.4f, 1.6f}, wh[] = {0.5f, 1.0f, 1.0f, 2.0f};
    vh.data = xh;
    CHECK(in.p->quantizer->forward(in.q, &vh, &vh) == 0);
    CHECK_ALLCLOSE(xh, wh, 4, 0, 0);
    drop(&in);
    /* per_head on a token tap is refused */
    CHECK(make(&in, "uniform", &t, kvh, 2) == -1);
    CHECK_STR_CONTAINS(in.ctx.msg, "per_head needs an activation laid out (B, H, ...)");
    drop(&in);
}

TEST(uniform_per_token_dynamic) {
    vitq_tap t = {.name = "x", .kind = VITQ_TAPK_ACT, .ndim = 3, .shape = {0, 2, 4},
                  .dims = {VITQ_DIM_BATCH, VITQ_DIM_TOKEN, VITQ_DIM_CHANNEL}};
    inst in;
    const char *kv[] = {"bits=2", "granularity=per_token"};
    if (make(&in, "uniform", &t, kv, 2)) return;
    CHECK(in.p->quantizer->finalize(in.q) == 0); /* nothing to calibrate */
    float x[] = {0, 1.4f, 2.6f, 3, -1, -0.5f, 0.5f, 2}, want[] = {0, 1, 3, 3, -1, 0, 0, 2};
    vitq_view v = {.data = x, .ndim = 3, .shape = {1, 2, 4}};
    CHECK(in.p->quantizer->forward(in.q, &v, &v) == 0);
    CHECK_ALLCLOSE(x, want, 8, 0, 0);
    drop(&in);
}

TEST(uniform_percentile_init) {
    inst in;
    const char *kv[] = {"bits=8", "init=percentile", "pct=0.99"};
    if (make(&in, "uniform", &act_tap, kv, 3)) return;
    float x[1001];
    for (int i = 0; i <= 1000; i++) x[i] = (float)((i * 37) % 1001); /* 0..1000 shuffled */
    calibrate(&in, x, 1001);
    /* numpy-linear quantiles: P(0.01) = 10, P(0.99) = 990 -> s = 980/255, z = -round(10/s) = -3 */
    mem_state m;
    save(&in, &m);
    CHECK_NEAR(m.data[ms_find(&m, "scale")][0], 980.0 / 255.0, 1e-5);
    CHECK(m.data[ms_find(&m, "zero_point")][0] == -3.0f);
    drop(&in);
}

static double mse_q(const float *x, int n, float s, float z, float lo, float hi) {
    double acc = 0;
    for (int i = 0; i < n; i++) {
        float v = rintf(x[i] / s) + z;
        v = v < lo ? lo : v > hi ? hi : v;
        double d = (double)x[i] - (double)((v - z) * s);
        acc += d * d;
    }
    return acc / n;
}

TEST(uniform_mse_init_clips_outlier) {
    enum { n = 2001 };
    float x[n];
    for (int i = 0; i < n - 1; i++) x[i] = -1.0f + 2.0f * (float)i / (float)(n - 2); /* [-1, 1] */
    x[n - 1] = 8.0f;                                                                  /* outlier */
    inst a, b;
    const char *kva[] = {"bits=4", "init=mse", "search_steps=51", "search_lo=0.1", "symmetric=true"};
    const char *kvb[] = {"bits=4", "symmetric=true"};
    if (make(&a, "uniform", &act_tap, kva, 5) || make(&b, "uniform", &act_tap, kvb, 2)) return;
    calibrate(&a, x, n);
    calibrate(&b, x, n);
    mem_state ma, mb;
    save(&a, &ma);
    save(&b, &mb);
    float sa = ma.data[ms_find(&ma, "scale")][0], sb = mb.data[ms_find(&mb, "scale")][0];
    CHECK(sb == 8.0f / 7.0f);
    /* brute force over the same 51 ratios 0.1..1 of amax = 8 */
    double best = INFINITY;
    float bs = 0;
    for (int k = 0; k < 51; k++) {
        double r = 0.1 + 0.9 * k / 50.0;
        float s = (float)(8.0 * r / 7.0);
        double m = mse_q(x, n, s, 0, -8, 7);
        if (m < best) best = m, bs = s;
    }
    CHECK(sa == bs);
    CHECK(sa < sb);
    CHECK(mse_q(x, n, sa, 0, -8, 7) < mse_q(x, n, sb, 0, -8, 7));
    drop(&a);
    drop(&b);
}

TEST(uniform_backward_lsq) {
    inst in;
    const char *kv[] = {"bits=4", "learnable=true", "grad_scale=false"};
    if (make(&in, "uniform", &act_tap, kv, 3)) return;
    float c[] = {-1.0f, 2.75f}; /* s = 0.25, z = 4 */
    calibrate(&in, c, 2);
    vitq_qtensor l[2];
    CHECK(in.p->quantizer->tensors(in.q, l, 2) == 2);
    CHECK_STREQ(l[0].name, "scale");
    CHECK(l[0].grad == NULL); /* grads only between train and freeze */
    CHECK_STREQ(l[1].name, "zero_point");
    CHECK(l[1].grad == NULL);
    CHECK_EQ(in.p->quantizer->train(in.q, NULL), 0);
    CHECK(in.p->quantizer->tensors(in.q, l, 2) == 2);
    CHECK_EQ(l[0].n, 1);
    CHECK_EQ(l[0].value[0], 0.25f);
    if (!l[0].grad) return (void)test_failf(__FILE__, __LINE__, "no scale gradient after train");
    CHECK_EQ(l[0].grad[0], 0);
    CHECK(l[1].grad == NULL); /* the zero point never trains */
    /* x/s: 1.2 (inside: dx 1, ds = 1 - 1.2), 12 -> u 16 (above: ds = 15 - 4 = 11), -8 -> u -4 (below: ds = -4),
     * 4 (inside, exact: ds = 0), 2.75 -> u = 15 exactly (bound inclusive: dx 1, ds = 0) */
    float x[] = {0.3f, 3.0f, -2.0f, 1.0f, 2.75f}, dy[] = {1, 2, 3, 4, 5}, dx[] = {10, 10, 10, 10, 10};
    vitq_view vx = view1(x, 5), vdy = view1(dy, 5), vdx = view1(dx, 5);
    CHECK(in.p->quantizer->backward(in.q, &vx, &vdy, &vdx) == 0);
    float want_dx[] = {11, 10, 10, 14, 15};
    CHECK_ALLCLOSE(dx, want_dx, 5, 0, 0);
    double ds = 1 * (1.0 - 0.3 / 0.25) + 2 * 11 + 3 * -4.0;
    CHECK_NEAR(l[0].grad[0], ds, 1e-5);
    /* accumulates */
    CHECK(in.p->quantizer->backward(in.q, &vx, &vdy, NULL) == 0);
    CHECK_NEAR(l[0].grad[0], 2 * ds, 1e-5);
    drop(&in);
    /* LSQ gradient scale 1/sqrt(numel * Qp) = 1/sqrt(5 * 7) (symmetric Qp = 7); bounds: below -8, above 7 */
    const char *kv2[] = {"bits=4", "learnable=true", "symmetric=true"};
    if (make(&in, "uniform", &act_tap, kv2, 3)) return;
    float c2[] = {-1.75f, 1.75f}; /* s = 0.25 */
    calibrate(&in, c2, 2);
    CHECK_EQ(in.p->quantizer->train(in.q, NULL), 0);
    CHECK(in.p->quantizer->tensors(in.q, l, 2) == 2);
    float x2[] = {2.5f, -2.5f, 0.3f, 0.0f, 0.0f}, dy2[] = {1, 1, 1, 1, 1};
    vx = view1(x2, 5);
    vdy = view1(dy2, 5);
    CHECK(in.p->quantizer->backward(in.q, &vx, &vdy, NULL) == 0);
    double ds2 = (7 + -8 + (1.0 - 0.3 / 0.25)) / sqrt(5.0 * 7.0);
    CHECK_NEAR(l[0].grad[0], ds2, 1e-5);
    drop(&in);
}

/* Without a scale gradient (learnable = false) the backward runs in blocks of 8192 values over the pool: every
 * value of a tensor of several blocks (and a part block) gets the straight-through dx, once. */
TEST(uniform_backward_without_scale_gradient_covers_every_block) {
    inst in;
    const char *kv[] = {"bits=4"};
    if (make(&in, "uniform", &act_tap, kv, 1)) return;
    float c[] = {-1.0f, 2.75f}; /* s = 0.25, z = 4: x/s rounded + 4 inside [0, 15] passes dy */
    calibrate(&in, c, 2);
    CHECK_EQ(in.p->quantizer->train(in.q, NULL), 0);
    enum { NV = 3 * 8192 + 77 };
    float *x = malloc(sizeof(float) * NV), *dy = malloc(sizeof(float) * NV), *dx = malloc(sizeof(float) * NV);
    if (!x || !dy || !dx) return (void)test_failf(__FILE__, __LINE__, "out of memory");
    for (int i = 0; i < NV; i++) x[i] = -2.0f + 0.25f * (float)(i % 23), dy[i] = (float)(i % 7 + 1), dx[i] = 0.5f;
    vitq_view vx = view1(x, NV), vdy = view1(dy, NV), vdx = view1(dx, NV);
    CHECK(in.p->quantizer->backward(in.q, &vx, &vdy, &vdx) == 0);
    int wrong = 0, passed = 0;
    for (int i = 0; i < NV; i++) {
        const float u = rintf(x[i] / 0.25f) + 4.0f, want = u >= 0 && u <= 15 ? 0.5f + dy[i] : 0.5f;
        wrong += dx[i] != want, passed += dx[i] != 0.5f;
    }
    CHECK_MSG(wrong == 0, "%d of %d values have the wrong dx", wrong, (int)NV);
    CHECK_MSG(passed > NV / 2 && passed < NV, "%d of %d values pass the gradient", passed, (int)NV);
    free(x), free(dy), free(dx);
    drop(&in);
}

TEST(uniform_state_roundtrip_and_errors) {
    inst a, b;
    const char *kv[] = {"bits=3", "granularity=per_channel"};
    vitq_tap t = {.name = "w", .kind = VITQ_TAPK_WEIGHT, .id = -1, .ndim = 2, .shape = {3, 5},
                  .dims = {VITQ_DIM_OUT, VITQ_DIM_IN}};
    if (make(&a, "uniform", &t, kv, 2) || make(&b, "uniform", &t, kv, 2)) return;
    float w[15], ya[15], yb[15];
    for (int i = 0; i < 15; i++) w[i] = sinf((float)i * 1.7f) * (float)(1 + i / 5);
    vitq_view v = {.data = w, .ndim = 2, .shape = {3, 5}}, va = v, vb = v;
    va.data = ya;
    vb.data = yb;
    CHECK(b.p->quantizer->forward(b.q, &v, &vb) == VITQ_EINVAL); /* before calibration */
    CHECK_STR_CONTAINS(b.ctx.msg, "forward before finalize");
    CHECK_EQ(a.p->quantizer->observe(a.q, &v), 0);
    CHECK_EQ(a.p->quantizer->finalize(a.q), 0);
    CHECK(a.p->quantizer->forward(a.q, &v, &va) == 0);
    mem_state m;
    save(&a, &m);
    vitq_state_io io = {&m, ms_put, ms_size, ms_get};
    CHECK(b.p->quantizer->load(b.q, &io) == 0);
    CHECK(b.p->quantizer->forward(b.q, &v, &vb) == 0);
    CHECK_ALLCLOSE(yb, ya, 15, 0, 0);
    /* a wrong shape is refused */
    vitq_view bad = {.data = w, .ndim = 2, .shape = {2, 7}};
    CHECK(a.p->quantizer->forward(a.q, &bad, &bad) == VITQ_EINVAL);
    m.data[ms_find(&m, "state_version")][0] = 9;
    CHECK(b.p->quantizer->load(b.q, &io) == VITQ_EFORMAT);
    CHECK_STR_CONTAINS(b.ctx.msg, "state version 9, this plugin reads 1");
    drop(&a);
    drop(&b);
}

TEST(uniform_16_bits_close_to_float) {
    inst in;
    const char *kv[] = {"bits=16"};
    if (make(&in, "uniform", &act_tap, kv, 1)) return;
    enum { n = 100000 };
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    for (int i = 0; i < n; i++) x[i] = sinf((float)i * 0.01f) * 3.0f;
    calibrate(&in, x, n);
    vitq_view vx = view1(x, n), vy = view1(y, n);
    CHECK(in.p->quantizer->forward(in.q, &vx, &vy) == 0); /* threaded path */
    CHECK_ALLCLOSE(y, x, n, 0, 6.0 / 65535 / 2 * 1.01);
    free(x);
    free(y);
    drop(&in);
}

TEST(uniform_fast_path_bit_exact) {
    /* the vectorised path (runs of >= 16 values) against the scalar one (views of one value) */
    enum { n = 4099 };
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *w = malloc(n * sizeof *w);
    uint64_t r = 5;
    for (int i = 0; i < n; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(r >> 40) / (double)(1ull << 24) * 6.0 - 3.0);
    }
    for (int i = 0; i < 64; i++) x[i] = (float)(i - 32) * 0.125f; /* exact ties at 4 bits (s = 0.25) */
    x[64] = 1e30f, x[65] = -1e30f, x[66] = -0.0f;
    static const char *cfg[][3] = {{"bits=4", "symmetric=false", "init=minmax"},
                                   {"bits=4", "symmetric=true", "init=minmax"},
                                   {"bits=8", "symmetric=false", "init=percentile"},
                                   {"bits=16", "symmetric=true", "init=minmax"}};
    for (int c = 0; c < 4; c++) {
        inst in;
        if (make(&in, "uniform", &act_tap, cfg[c], 3)) return;
        float cal[] = {-1.0f, 2.75f};
        if (c == 2) {
            vitq_view v = view1(x + 67, n - 67);
            CHECK_EQ(in.p->quantizer->observe(in.q, &v), 0);
            CHECK_EQ(in.p->quantizer->finalize(in.q), 0);
        } else {
            calibrate(&in, cal, 2);
        }
        vitq_view vx = view1(x, n), vy = view1(y, n);
        CHECK(in.p->quantizer->forward(in.q, &vx, &vy) == 0);
        for (int i = 0; i < n; i++) {
            vitq_view a = view1(x + i, 1), b = view1(w + i, 1);
            in.p->quantizer->forward(in.q, &a, &b);
        }
        CHECK_MSG(memcmp(y, w, n * sizeof *y) == 0, "config %d: vector and scalar paths differ", c);
        drop(&in);
    }
    free(x);
    free(y);
    free(w);
}

TEST(uniform_reservoir_sample) {
    /* 200000 values 0..1 seen in 20 calls, 1000 kept: the percentile range is close to [0.01, 0.99] of the
     * data, and the same seed gives the same sample (the host rng is per instance) */
    enum { n = 10000 };
    float *x = malloc(n * sizeof *x);
    float sc[2], zp[2];
    for (int rep = 0; rep < 2; rep++) {
        inst in;
        const char *kv[] = {"bits=8", "init=percentile", "pct=0.99", "max_samples=1000"};
        if (make(&in, "uniform", &act_tap, kv, 4)) return;
        for (int c = 0; c < 20; c++) {
            for (int i = 0; i < n; i++) x[i] = (float)((i * 7919 + c * 104729) % n) / (float)(n - 1);
            vitq_view v = view1(x, n);
            CHECK(in.p->quantizer->observe(in.q, &v) == 0);
        }
        CHECK(in.p->quantizer->finalize(in.q) == 0);
        mem_state m;
        save(&in, &m);
        sc[rep] = m.data[ms_find(&m, "scale")][0];
        zp[rep] = m.data[ms_find(&m, "zero_point")][0];
        CHECK_NEAR(sc[rep] * 255, 0.98, 0.03);
        CHECK_NEAR(-zp[rep] * sc[rep], 0.01, 0.01);
        drop(&in);
    }
    CHECK_EQ(sc[0], sc[1]);
    CHECK_EQ(zp[0], zp[1]);
    free(x);
}
