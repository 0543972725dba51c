/* test_log2.c — plugins/log2.c against the worked numbers of specs/aiqvit.md §2.7 (base 2 and base √2 at
 * 3 and 4 bits: levels, the zero cut-off q >= 2^b), edge values, and the RepQ-ViT quantile scale search. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const vitq_plugin *p;
    void *params, *q;
    vitq_host host;
    vitq_host_ctx ctx;
} inst;

static const vitq_tap probs_tap = {.name = "blocks.0.attn.probs", .kind = VITQ_TAPK_PROBS, .id = 6, .ndim = 4,
                                   .shape = {0, 1, 1, 7},
                                   .dims = {VITQ_DIM_BATCH, VITQ_DIM_HEAD, VITQ_DIM_TOKEN, VITQ_DIM_KEY}};

static int make(inst *in, const char *bits, const char *base, const char *scale) {
    memset(in, 0, sizeof *in);
    vitq_err e;
    if (vitq_plugin_load("log2", NULL, &in->p, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return -1;
    }
    vitq_kv kv[3] = {{"bits", (char *)bits, "t.ini", 1}, {"base", (char *)base, "t.ini", 2},
                     {"scale", (char *)scale, "t.ini", 3}};
    in->params = calloc(1, in->p->params_size);
    if (vitq_plugin_params_parse(in->p, "quantizer t", kv, 3, in->params, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return -1;
    }
    vitq_host_init(&in->host, &in->ctx, "test", "probs", 7);
    in->q = in->p->quantizer->create(in->params, &probs_tap, &in->host);
    return in->q ? 0 : -1;
}

static void drop(inst *in) {
    if (in->q) in->p->quantizer->destroy(in->q);
    free(in->params);
}

/* quantizes x[n] (S = 1: finalize without observing) */
static void run(const char *bits, const char *base, const float *x, float *y, int n) {
    inst in;
    if (make(&in, bits, base, "one")) return;
    CHECK(in.p->quantizer->finalize(in.q) == 0);
    vitq_view vx = {.data = (float *)x, .ndim = 1, .shape = {n}}, vy = {.data = y, .ndim = 1, .shape = {n}};
    CHECK(in.p->quantizer->forward(in.q, &vx, &vy) == 0);
    drop(&in);
}

/* specs/aiqvit.md §2.7 */
static const float P[7] = {0.9f, 0.66f, 0.32f, 0.13f, 0.1f, 0.03f, 0.004f};

TEST(log2_base2_worked_numbers) {
    float y[7];
    float want3[7] = {1, 0.5f, 0.25f, 0.125f, 0.125f, 0.03125f, 0}; /* 0.004: q = 8 >= 8 -> 0 */
    run("3", "2", P, y, 7);
    CHECK_ALLCLOSE(y, want3, 7, 0, 0);
    float want4[7] = {1, 0.5f, 0.25f, 0.125f, 0.125f, 0.03125f, 0.00390625f};
    run("4", "2", P, y, 7);
    CHECK_ALLCLOSE(y, want4, 7, 0, 0);
}

TEST(log2_sqrt2_worked_numbers) {
    float y[7];
    float want3[7] = {1, 0.707107f, 0.353553f, 0.125f, 0.088388f, 0, 0}; /* 0.03: q = 10 >= 8 -> 0 */
    run("3", "sqrt2", P, y, 7);
    CHECK_ALLCLOSE(y, want3, 7, 0, 1e-6);
    float want4[7] = {1, 0.707107f, 0.353553f, 0.125f, 0.088388f, 0.03125f, 0}; /* 0.004: q = 16 -> 0 */
    run("4", "sqrt2", P, y, 7);
    CHECK_ALLCLOSE(y, want4, 7, 0, 1e-6);
}

TEST(log2_edges_and_cutoffs) {
    /* base 2, 3 bits: levels 2^0..2^-7; cut-off p < 2^-7.5 = 0.00552 -> 0 */
    float x[] = {0, -0.1f, 1, 1.5f, 0.0056f, 0.0055f, 0.75f, 0.7f};
    float want[] = {0, 0, 1, 1, 0.0078125f, 0, 1, 0.5f}; /* 1.5 > S clamps to S; 0.75: q = round(0.415) = 0 */
    float y[8];
    run("3", "2", x, y, 8);
    CHECK_ALLCLOSE(y, want, 8, 0, 0);
    /* base sqrt2, 3 bits: cut-off p < 2^-3.75 = 0.0743 */
    float xs[] = {0.075f, 0.074f, 1};
    float ws[] = {0.088388f, 0, 1};
    run("3", "sqrt2", xs, y, 3);
    CHECK_ALLCLOSE(y, ws, 3, 0, 1e-6);
}

TEST(log2_scale_search) {
    inst in;
    if (make(&in, "4", "2", "search")) return;
    /* every value 0.3: all three quantiles are 0.3, so S = 0.3 and 0.3 is exact, 0.15 = S/2 too */
    float *x = malloc(20000 * sizeof *x);
    for (int i = 0; i < 20000; i++) x[i] = 0.3f;
    vitq_view v = {.data = x, .ndim = 1, .shape = {20000}};
    CHECK(in.p->quantizer->observe(in.q, &v) == 0);
    CHECK(in.p->quantizer->finalize(in.q) == 0);
    float t[] = {0.3f, 0.15f, 0.6f}, y[3], w[] = {0.3f, 0.15f, 0.3f};
    vitq_view vt = {.data = t, .ndim = 1, .shape = {3}}, vy = {.data = y, .ndim = 1, .shape = {3}};
    CHECK(in.p->quantizer->forward(in.q, &vt, &vy) == 0);
    CHECK_ALLCLOSE(y, w, 3, 1e-7, 0);
    drop(&in);
    /* 99990 values 0.25 and 10 values 1.0: quantiles 0.999 -> 0.25, 0.9999 -> 0.250075, 0.99999 -> 1.0;
     * S = 1 represents both values exactly (MSE 0), the others clip 1.0 -> wins */
    if (make(&in, "4", "2", "search")) return;
    float *z = malloc(100000 * sizeof *z);
    for (int i = 0; i < 100000; i++) z[i] = i % 10000 == 17 ? 1.0f : 0.25f;
    vitq_view vz = {.data = z, .ndim = 1, .shape = {100000}};
    CHECK(in.p->quantizer->observe(in.q, &vz) == 0);
    CHECK(in.p->quantizer->finalize(in.q) == 0);
    float t2[] = {1.0f, 0.25f, 0.5f}, w2[] = {1.0f, 0.25f, 0.5f};
    vt.data = t2;
    CHECK(in.p->quantizer->forward(in.q, &vt, &vy) == 0);
    CHECK_ALLCLOSE(y, w2, 3, 0, 0);
    drop(&in);
    free(x);
    free(z);
}

/* The spec's formula written out plainly (float32, as torch computes it). */
static float ref_log2(float p, int bits, int sqrt2) {
    if (!(p > 0)) return 0;
    float q = rintf(sqrt2 ? -2.0f * log2f(p) : -log2f(p));
    if (q >= ldexpf(1.0f, bits)) return 0;
    if (q < 0) q = 0;
    if (!sqrt2) return exp2f(-q);
    return exp2f(-ceilf(q / 2)) * (fmodf(q, 2) != 0 ? (float)(M_SQRT2 - 1.0) + 1.0f : 1.0f);
}

TEST(log2_forward_matches_formula) {
    enum { n = 20000 };
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *w = malloc(n * sizeof *w);
    uint64_t s = 99;
    for (int i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(s >> 11) / 9007199254740992.0;
        x[i] = (float)exp2(-24.0 * u); /* log-uniform in [2^-24, 1] */
    }
    x[0] = 0, x[1] = 1, x[2] = 2, x[3] = 1e-30f, x[4] = exp2f(-7.5f), x[5] = exp2f(-3.75f);
    static const char *bits[] = {"2", "3", "4", "8", "16"};
    for (int b = 0; b < 5; b++)
        for (int sq = 0; sq < 2; sq++) {
            run(bits[b], sq ? "sqrt2" : "2", x, y, n); /* threaded forward (n >= 16384) */
            for (int i = 0; i < n; i++) w[i] = ref_log2(x[i], atoi(bits[b]), sq);
            CHECK_MSG(memcmp(y, w, n * sizeof *y) == 0, "bits %s base %s differs from the formula", bits[b],
                      sq ? "sqrt2" : "2");
        }
    free(x);
    free(y);
    free(w);
}

TEST(log2_scale_tensor) {
    /* ABI 2: "scale" [1] is S, without a gradient; a pass may rewrite it and the levels follow */
    inst in;
    if (make(&in, "3", "2", "one")) return;
    CHECK(in.p->quantizer->finalize(in.q) == 0);
    vitq_qtensor t[2];
    CHECK_EQ(in.p->quantizer->tensors(in.q, t, 2), 1);
    CHECK_STREQ(t[0].name, "scale");
    CHECK_EQ(t[0].n, 1);
    CHECK(t[0].grad == NULL);
    CHECK_EQ(t[0].value[0], 1.0f);
    CHECK_EQ(in.p->quantizer->tensors(in.q, t, 0), 0);
    float x[3] = {0.9f, 0.3f, 0.1f}, y[3];
    vitq_view vx = {.data = x, .ndim = 1, .shape = {3}}, vy = {.data = y, .ndim = 1, .shape = {3}};
    t[0].value[0] = 0.5f; /* S = 0.5: levels 0.5·2^-q, q = round(-log2(p/0.5)) clamped at 0 */
    CHECK(in.p->quantizer->forward(in.q, &vx, &vy) == 0);
    const float want[3] = {0.5f, 0.25f, 0.125f}; /* 0.3/0.5 = 0.6 -> q 1; 0.1/0.5 = 0.2 -> q 2 */
    CHECK_ALLCLOSE(y, want, 3, 0, 0);
    drop(&in);
}
