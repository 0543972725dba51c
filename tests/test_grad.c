/* test_grad.c — every backward kernel against central finite differences of a double-precision
 * reference forward written here (ggml test-backend-ops' grad mode), and the whole model's backward
 * against PyTorch autograd (tests/fixtures/grad_tiny.safetensors, tests/reference/make_grad_fixture.py).
 *
 * Each op test draws inputs and an upstream gradient G, defines L = sum(G * op(inputs)) in double, and
 * compares the float backward kernel's gradients with (L(x+h) - L(x-h)) / 2h, h = 1e-5, element by
 * element (tolerance: |a - fd| <= 2e-4 + 2e-3 |fd|; printed max error). Gradient buffers start at 1.0
 * and 1.0 is subtracted afterwards, which checks that kernels accumulate. */
#include "test.h"

#include <stdlib.h>
#include <string.h>


/* ---- helpers --------------------------------------------------------------------------------------- */
static uint64_t g_seed = 12345;
static double urand(void) { // [-1, 1)
    g_seed = g_seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(g_seed >> 11) * 0x1.0p-53 * 2.0 - 1.0;
}
static double *drand_vec(int64_t n, double scale) {
    double *v = malloc(sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++) v[i] = urand() * scale;
    return v;
}
static float *to_f(const double *d, int64_t n) {
    float *f = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) f[i] = (float)d[i];
    return f;
}
/* Rounds a double array to float precision in place, so the float kernels and the double reference
 * see the same numbers. */
static void round_f(double *d, int64_t n) {
    for (int64_t i = 0; i < n; i++) d[i] = (double)(float)d[i];
}
static float *ones(int64_t n) {
    float *f = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) f[i] = 1.0f;
    return f;
}
static void sub_one(float *f, int64_t n) {
    for (int64_t i = 0; i < n; i++) f[i] -= 1.0f;
}

typedef double (*loss_fn)(void *ctx);
#define FD_H 1e-5

/* Central differences of f with respect to x[0..n) (x is read by f through ctx). Only the first
 * g_fd_max elements are differentiated (large cases); the caller compares that many. */
static int64_t g_fd_max = INT64_MAX;
static float *fd(loss_fn f, void *ctx, double *x, int64_t n) {
    float *g = calloc((size_t)n, sizeof(float));
    for (int64_t i = 0; i < n && i < g_fd_max; i++) {
        double s = x[i];
        x[i] = s + FD_H;
        double lp = f(ctx);
        x[i] = s - FD_H;
        double lm = f(ctx);
        x[i] = s;
        g[i] = (float)((lp - lm) / (2 * FD_H));
    }
    return g;
}

static double max_err(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

#define CHECK_GRAD(what, got, want, n)                                                             \
    do {                                                                                           \
        int64_t n_ = (n) < g_fd_max ? (n) : g_fd_max;                                              \
        printf("    %-28s max |analytic - fd| = %.2e\n", what, max_err(got, want, n_));            \
        CHECK_ALLCLOSE(got, want, n_, 2e-3, 2e-4);                                                 \
    } while (0)

/* ---- linear ---------------------------------------------------------------------------------------- */
typedef struct {
    double *x, *w, *b, *G;
    int64_t R, IC, OC;
} lin_ref;

static double lin_loss(void *vc) {
    lin_ref *c = vc;
    double L = 0;
    for (int64_t r = 0; r < c->R; r++)
        for (int64_t o = 0; o < c->OC; o++) {
            double y = c->b[o];
            for (int64_t i = 0; i < c->IC; i++) y += c->x[r * c->IC + i] * c->w[o * c->IC + i];
            L += c->G[r * c->OC + o] * y;
        }
    return L;
}

static void linear_case(int64_t R, int64_t IC, int64_t OC) {
    lin_ref c = {drand_vec(R * IC, 1), drand_vec(OC * IC, 0.5), drand_vec(OC, 0.5), drand_vec(R * OC, 1), R, IC, OC};
    round_f(c.x, R * IC), round_f(c.w, OC * IC), round_f(c.b, OC), round_f(c.G, R * OC);
    float *x = to_f(c.x, R * IC), *w = to_f(c.w, OC * IC), *G = to_f(c.G, R * OC);
    float *dx = ones(R * IC), *dw = ones(OC * IC), *db = ones(OC);
    vitq_linear_backward(dx, dw, db, G, x, w, R, IC, OC);
    sub_one(dx, R * IC), sub_one(dw, OC * IC), sub_one(db, OC);
    float *fx = fd(lin_loss, &c, c.x, R * IC), *fw = fd(lin_loss, &c, c.w, OC * IC), *fb = fd(lin_loss, &c, c.b, OC);
    printf("  linear R=%lld IC=%lld OC=%lld\n", (long long)R, (long long)IC, (long long)OC);
    CHECK_GRAD("dinp", dx, fx, R * IC);
    CHECK_GRAD("dweight", dw, fw, OC * IC);
    CHECK_GRAD("dbias", db, fb, OC);
    free(c.x), free(c.w), free(c.b), free(c.G), free(x), free(w), free(G), free(dx), free(dw), free(db);
    free(fx), free(fw), free(fb);
}

TEST(grad_linear) {
    linear_case(5, 7, 4);
    vitq_threads_set(2);
    g_fd_max = 100; // big enough to split over threads; first 100 elements of each gradient checked
    linear_case(128, 24, 40);
    linear_case(128, 40, 24); // IC > OC: dweight split over columns; its first 100 elements span both halves
    g_fd_max = INT64_MAX;
    vitq_threads_set(1);
}

/* ---- layernorm ------------------------------------------------------------------------------------- */
typedef struct {
    double *x, *w, *b, *G;
    int64_t R, C;
} ln_ref;

static double ln_loss(void *vc) {
    ln_ref *c = vc;
    double L = 0;
    for (int64_t r = 0; r < c->R; r++) {
        const double *x = c->x + r * c->C;
        double mu = 0, var = 0;
        for (int64_t i = 0; i < c->C; i++) mu += x[i];
        mu /= (double)c->C;
        for (int64_t i = 0; i < c->C; i++) var += (x[i] - mu) * (x[i] - mu);
        var /= (double)c->C;
        double rs = 1.0 / sqrt(var + 1e-6);
        for (int64_t i = 0; i < c->C; i++) L += c->G[r * c->C + i] * ((x[i] - mu) * rs * c->w[i] + c->b[i]);
    }
    return L;
}

static void layernorm_case(int64_t R, int64_t C) {
    ln_ref c = {drand_vec(R * C, 2), drand_vec(C, 1), drand_vec(C, 1), drand_vec(R * C, 1), R, C};
    round_f(c.x, R * C), round_f(c.w, C), round_f(c.b, C), round_f(c.G, R * C);
    float *x = to_f(c.x, R * C), *w = to_f(c.w, C), *b = to_f(c.b, C), *G = to_f(c.G, R * C);
    float *out = malloc(sizeof(float) * (size_t)(R * C)), *mean = malloc(sizeof(float) * (size_t)R),
          *rstd = malloc(sizeof(float) * (size_t)R);
    vitq_layernorm_forward(out, mean, rstd, x, w, b, R, C, 1e-6f);
    float *dx = ones(R * C), *dw = ones(C), *db = ones(C);
    vitq_layernorm_backward(dx, dw, db, G, x, w, mean, rstd, R, C);
    sub_one(dx, R * C), sub_one(dw, C), sub_one(db, C);
    float *fx = fd(ln_loss, &c, c.x, R * C), *fw = fd(ln_loss, &c, c.w, C), *fb = fd(ln_loss, &c, c.b, C);
    printf("  layernorm R=%lld C=%lld\n", (long long)R, (long long)C);
    CHECK_GRAD("dinp", dx, fx, R * C);
    CHECK_GRAD("dweight", dw, fw, C);
    CHECK_GRAD("dbias", db, fb, C);
    free(c.x), free(c.w), free(c.b), free(c.G), free(x), free(w), free(b), free(G), free(out), free(mean);
    free(rstd), free(dx), free(dw), free(db), free(fx), free(fw), free(fb);
}

TEST(grad_layernorm) {
    layernorm_case(4, 9);
    vitq_threads_set(2);
    g_fd_max = 100;
    layernorm_case(400, 96);
    g_fd_max = INT64_MAX;
    vitq_threads_set(1);
}

/* ---- GELU / ReLU ----------------------------------------------------------------------------------- */
typedef struct {
    double *x, *G;
    int64_t n;
    int relu;
} act_ref;

static double act_loss(void *vc) {
    act_ref *c = vc;
    double L = 0;
    for (int64_t i = 0; i < c->n; i++) {
        double x = c->x[i];
        double y = c->relu ? (x > 0 ? x : 0) : 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
        L += c->G[i] * y;
    }
    return L;
}

static void act_case(int relu) {
    const int64_t n = 64;
    act_ref c = {drand_vec(n, 4), drand_vec(n, 1), n, relu};
    if (relu) {
        c.x[0] = 0.0;  // the kink: excluded below
        c.x[1] = 1e-7; // within FD_H of the kink: excluded below
    }
    round_f(c.x, n), round_f(c.G, n);
    float *x = to_f(c.x, n), *G = to_f(c.G, n), *dx = ones(n);
    if (relu) vitq_relu_backward(dx, x, G, n);
    else vitq_gelu_backward(dx, x, G, n);
    sub_one(dx, n);
    float *f = fd(act_loss, &c, c.x, n);
    if (relu) {
        // non-differentiable points (|x| < 2h): not compared; at exactly 0 PyTorch's convention is 0
        CHECK_NEAR(dx[0], 0.0, 0.0);
        for (int64_t i = 0; i < n; i++)
            if (fabs(c.x[i]) < 2 * FD_H) dx[i] = f[i] = 0;
    }
    printf("  %s n=%lld\n", relu ? "relu" : "gelu", (long long)n);
    CHECK_GRAD("dinp", dx, f, n);
    free(c.x), free(c.G), free(x), free(G), free(dx), free(f);
}

TEST(grad_gelu) { act_case(0); }
TEST(grad_relu) { act_case(1); }

/* ---- qkv split --------------------------------------------------------------------------------------- */
TEST(grad_qkv_split) {
    const int64_t B = 2, N = 3, C = 6, H = 2, n = B * N * 3 * C;
    float *qkv = malloc(sizeof(float) * n), *qkvh = malloc(sizeof(float) * n), *G = malloc(sizeof(float) * n);
    for (int64_t i = 0; i < n; i++) qkv[i] = (float)i, G[i] = (float)urand();
    vitq_qkv_split_forward(qkvh, qkv, B, N, C, H);
    float *dqkv = ones(n);
    vitq_qkv_split_backward(dqkv, G, B, N, C, H);
    sub_one(dqkv, n);
    // split is a permutation: L = sum G * qkvh, so dL/dqkv[qkvh[j]] = G[j]
    float *want = malloc(sizeof(float) * n);
    for (int64_t j = 0; j < n; j++) want[(int64_t)qkvh[j]] = G[j];
    CHECK_ALLCLOSE(dqkv, want, n, 0, 1e-6); // exact up to the +1 -1 of the accumulation check
    free(qkv), free(qkvh), free(G), free(dqkv), free(want);
}

/* ---- attention ------------------------------------------------------------------------------------- */
typedef struct {
    double *q, *k, *v, *att, *G; // att is used directly by the attn-value reference
    int64_t B, H, N, D;
    double scale;
} attn_ref;

static double smax_loss(void *vc) {
    attn_ref *c = vc;
    const int64_t N = c->N, D = c->D;
    double L = 0, *row = malloc(sizeof(double) * (size_t)N);
    for (int64_t bh = 0; bh < c->B * c->H; bh++)
        for (int64_t i = 0; i < N; i++) {
            double mx = -1e300, sum = 0;
            for (int64_t j = 0; j < N; j++) {
                double s = 0;
                for (int64_t d = 0; d < D; d++) s += c->q[(bh * N + i) * D + d] * c->k[(bh * N + j) * D + d];
                row[j] = s * c->scale;
                mx = fmax(mx, row[j]);
            }
            for (int64_t j = 0; j < N; j++) sum += (row[j] = exp(row[j] - mx));
            for (int64_t j = 0; j < N; j++) L += c->G[(bh * N + i) * N + j] * row[j] / sum;
        }
    free(row);
    return L;
}

TEST(grad_attn_softmax) {
    const int64_t B = 2, H = 2, N = 5, D = 3, nq = B * H * N * D, na = B * H * N * N;
    attn_ref c = {drand_vec(nq, 1.5), drand_vec(nq, 1.5), NULL, NULL, drand_vec(na, 1), B, H, N, D, 1 / sqrt(3.0)};
    round_f(c.q, nq), round_f(c.k, nq), round_f(c.G, na);
    float *q = to_f(c.q, nq), *k = to_f(c.k, nq), *G = to_f(c.G, na), *att = malloc(sizeof(float) * na);
    vitq_attn_softmax_forward(att, q, k, B, H, N, D, (float)c.scale);
    float *dq = ones(nq), *dk = ones(nq);
    vitq_attn_softmax_backward(dq, dk, G, att, q, k, B, H, N, D, (float)c.scale);
    sub_one(dq, nq), sub_one(dk, nq);
    float *fq = fd(smax_loss, &c, c.q, nq), *fk = fd(smax_loss, &c, c.k, nq);
    printf("  attn softmax B=%lld H=%lld N=%lld D=%lld\n", (long long)B, (long long)H, (long long)N, (long long)D);
    CHECK_GRAD("dq", dq, fq, nq);
    CHECK_GRAD("dk", dk, fk, nq);
    free(c.q), free(c.k), free(c.G), free(q), free(k), free(G), free(att), free(dq), free(dk), free(fq), free(fk);
}

static double av_loss(void *vc) {
    attn_ref *c = vc;
    const int64_t H = c->H, N = c->N, D = c->D, C = H * D;
    double L = 0;
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < N; i++)
                for (int64_t d = 0; d < D; d++) {
                    double y = 0;
                    for (int64_t j = 0; j < N; j++)
                        y += c->att[((b * H + h) * N + i) * N + j] * c->v[((b * H + h) * N + j) * D + d];
                    L += c->G[(b * N + i) * C + h * D + d] * y;
                }
    return L;
}

TEST(grad_attn_value) {
    const int64_t B = 2, H = 3, N = 4, D = 2, nv = B * H * N * D, na = B * H * N * N;
    attn_ref c = {NULL, NULL, drand_vec(nv, 1), drand_vec(na, 1), drand_vec(nv, 1), B, H, N, D, 0};
    round_f(c.v, nv), round_f(c.att, na), round_f(c.G, nv);
    float *v = to_f(c.v, nv), *att = to_f(c.att, na), *G = to_f(c.G, nv);
    float *out = malloc(sizeof(float) * nv);
    vitq_attn_value_forward(out, att, v, B, H, N, D);
    float *datt = ones(na), *dv = ones(nv);
    vitq_attn_value_backward(datt, dv, G, att, v, B, H, N, D);
    sub_one(datt, na), sub_one(dv, nv);
    float *fa = fd(av_loss, &c, c.att, na), *fv = fd(av_loss, &c, c.v, nv);
    printf("  attn value B=%lld H=%lld N=%lld D=%lld\n", (long long)B, (long long)H, (long long)N, (long long)D);
    CHECK_GRAD("datt", datt, fa, na);
    CHECK_GRAD("dv", dv, fv, nv);
    free(c.v), free(c.att), free(c.G), free(v), free(att), free(G), free(out), free(datt), free(dv), free(fa), free(fv);
}

/* ---- embedding ------------------------------------------------------------------------------------- */
typedef struct {
    double *patch, *cls, *pos, *G;
    int64_t B, N, C;
} emb_ref;

static double emb_loss(void *vc) {
    emb_ref *c = vc;
    const int64_t N = c->N, C = c->C;
    double L = 0;
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < C; i++) {
                double x = (n == 0 ? c->cls[i] : c->patch[(b * (N - 1) + n - 1) * C + i]) + c->pos[n * C + i];
                L += c->G[(b * N + n) * C + i] * x;
            }
    return L;
}

TEST(grad_embed) {
    const int64_t B = 3, N = 5, C = 4, np = B * (N - 1) * C;
    emb_ref c = {drand_vec(np, 1), drand_vec(C, 1), drand_vec(N * C, 1), drand_vec(B * N * C, 1), B, N, C};
    float *G = to_f(c.G, B * N * C);
    float *dp = ones(np), *dc = ones(C), *dpos = ones(N * C);
    vitq_embed_backward(dp, dc, dpos, G, B, N, C);
    sub_one(dp, np), sub_one(dc, C), sub_one(dpos, N * C);
    float *fp = fd(emb_loss, &c, c.patch, np), *fc = fd(emb_loss, &c, c.cls, C), *fpos = fd(emb_loss, &c, c.pos, N * C);
    printf("  embed B=%lld N=%lld C=%lld\n", (long long)B, (long long)N, (long long)C);
    CHECK_GRAD("dpatch_out", dp, fp, np);
    CHECK_GRAD("dcls", dc, fc, C);
    CHECK_GRAD("dpos", dpos, fpos, N * C);
    free(c.patch), free(c.cls), free(c.pos), free(c.G), free(G), free(dp), free(dc), free(dpos), free(fp), free(fc);
    free(fpos);
}

/* ---- cross-entropy with label smoothing -------------------------------------------------------------- */
typedef struct {
    double *z;
    const int *y;
    int64_t B, K;
    double eps;
} ce_ref;

static double ce_loss(void *vc) {
    ce_ref *c = vc;
    double L = 0;
    for (int64_t b = 0; b < c->B; b++) {
        const double *z = c->z + b * c->K;
        double mx = -1e300, s = 0;
        for (int64_t k = 0; k < c->K; k++) mx = fmax(mx, z[k]);
        for (int64_t k = 0; k < c->K; k++) s += exp(z[k] - mx);
        double lse = mx + log(s);
        for (int64_t k = 0; k < c->K; k++) {
            double q = c->eps / (double)c->K + (k == c->y[b] ? 1 - c->eps : 0);
            L += q * (lse - z[k]);
        }
    }
    return L / (double)c->B;
}

TEST(grad_crossentropy) {
    const int64_t B = 4, K = 5;
    const int y[4] = {0, 3, 4, 3};
    for (int s = 0; s < 2; s++) {
        ce_ref c = {drand_vec(B * K, 3), y, B, K, s ? 0.1 : 0.0};
        round_f(c.z, B * K);
        float *z = to_f(c.z, B * K), *probs = malloc(sizeof(float) * B * K), *dz = ones(B * K);
        float loss = vitq_crossentropy_forward(probs, z, y, B, K, (float)c.eps);
        CHECK_NEAR(loss, ce_loss(&c), 1e-5);
        vitq_crossentropy_backward(dz, probs, y, B, K, (float)c.eps);
        sub_one(dz, B * K);
        float *f = fd(ce_loss, &c, c.z, B * K);
        printf("  crossentropy B=%lld K=%lld smoothing %.1f\n", (long long)B, (long long)K, c.eps);
        CHECK_GRAD("dlogits", dz, f, B * K);
        free(c.z), free(z), free(probs), free(dz), free(f);
    }
}

/* ---- whole model: vitq_backward against finite differences of the float forward ---------------------
 * A coarse check (float forward, h = 1e-2 on O(1) weights, so |error| ~ 1e-3): it catches wiring bugs;
 * the PyTorch fixture below checks the numbers tightly. Every 7th parameter is perturbed. */
static int tiny_model(vitq_model **m, vitq_act_kind act) {
    vitq_arch a = {.name = "tiny", .img_size = 8, .patch_size = 4, .in_chans = 1, .num_classes = 5,
                   .embed_dim = 12, .depth = 2, .num_heads = 2, .mlp_ratio = 2.0f, .qkv_bias = 1,
                   .mean = {0.5f}, .std = {0.5f}, .crop_pct = 1.0f, .interpolation = "bicubic"};
    vitq_err e;
    if (vitq_model_create(&a, m, &e) || vitq_model_alloc_grads(*m, &e)) return -1;
    vitq_model_init_train(*m, 7, 0.3f);
    for (int64_t i = 0; i < (*m)->n_params; i++) (*m)->slab[i] += 0.1f * (float)urand(); // LN/bias non-trivial
    for (int l = 0; l < a.depth; l++) (*m)->mlp_act[l] = act;
    return 0;
}

static double model_loss(vitq_model *m, vitq_acts *a, vitq_grad_acts *g, const float *x, const int *y, int B) {
    vitq_err e;
    if (vitq_forward(m, a, x, B, &e)) return NAN;
    return vitq_crossentropy_forward(g->probs, a->logits, y, B, m->arch.num_classes, 0.1f);
}

static void model_fd_case(vitq_act_kind act) {
    vitq_model *m = NULL;
    vitq_acts *a = NULL;
    vitq_grad_acts *g = NULL;
    vitq_err e;
    const int B = 3;
    CHECK(tiny_model(&m, act) == 0);
    CHECK(vitq_acts_create(m, 4, 1, &a, &e) == 0);
    CHECK(vitq_grad_acts_create(m, 4, &g, &e) == 0);
    float x[3 * 64];
    int y[3] = {1, 4, 0};
    for (int i = 0; i < 3 * 64; i++) x[i] = (float)urand();
    model_loss(m, a, g, x, y, B);
    vitq_model_zero_grads(m);
    memset(g->dlogits, 0, sizeof(float) * 4 * 5);
    vitq_crossentropy_backward(g->dlogits, g->probs, y, B, 5, 0.1f);
    CHECK(vitq_backward(m, a, g, g->dlogits, B, &e) == 0);
    double worst = 0;
    int64_t n = 0;
    for (int64_t i = 0; i < m->n_params; i += 7, n++) {
        float s = m->slab[i];
        const float h = 1e-2f;
        m->slab[i] = s + h;
        double lp = model_loss(m, a, g, x, y, B);
        m->slab[i] = s - h;
        double lm = model_loss(m, a, g, x, y, B);
        m->slab[i] = s;
        double f = (lp - lm) / (2.0 * h), an = m->grad_slab[i];
        double err = fabs(an - f) / (2e-3 + 2e-2 * fabs(f));
        if (err > worst) worst = err;
        CHECK_MSG(err <= 1.0, "param %lld: analytic %.6g vs fd %.6g", (long long)i, an, f);
    }
    printf("  tiny ViT (%s): %lld parameters checked, worst error / tolerance %.2f\n",
           act == VITQ_ACT_RELU ? "relu" : "gelu", (long long)n, worst);
    vitq_grad_acts_free(g);
    vitq_acts_free(a);
    vitq_model_free(m);
}

/* GELU only: with h = 1e-2 differences straddle ReLU's kink; ReLU blocks are checked against PyTorch. */
TEST(grad_model_fd) { model_fd_case(VITQ_ACT_GELU); }

/* ---- whole model against PyTorch autograd --------------------------------------------------------------
 * tests/fixtures/grad_tiny.safetensors (tests/reference/make_grad_fixture.py): img 8, patch 4, 1 channel,
 * dim 12, depth 2, heads 2, MLP 48, 5 classes; block 0 GELU, block 1 ReLU; batch 3, label smoothing 0.1.
 * Tolerance for every gradient: |c - torch| <= 1e-5 + 1e-3 |torch| (float32 on both sides, different
 * summation orders); loss to 1e-5. */
#define GRAD_FIXTURE "tests/fixtures/grad_tiny.safetensors"
#define GRAD_RTOL 1e-3
#define GRAD_ATOL 1e-5

typedef struct {
    vitq_st_file *f;
    vitq_model *m;
    vitq_acts *a;
    vitq_grad_acts *g;
    float x[3 * 64];
    int y[3];
} torch_case;

/* Reads fixture tensor `name` (any shape) into a new float array. */
static float *fx_read(vitq_st_file *f, const char *name, int64_t *numel) {
    const vitq_st_tensor *t = vitq_st_find(f, name);
    if (!t) {
        test_failf(__FILE__, __LINE__, "%s: tensor '%s' missing (re-run tests/reference/make_grad_fixture.py)",
                   GRAD_FIXTURE, name);
        return NULL;
    }
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    float *v = malloc(sizeof(float) * (size_t)n);
    vitq_err e;
    if (vitq_st_read_f32(f, name, v, t->ndim, t->shape, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        free(v);
        return NULL;
    }
    if (numel) *numel = n;
    return v;
}

static int torch_setup(torch_case *c) {
    memset(c, 0, sizeof *c);
    vitq_err e;
    if (vitq_st_open(GRAD_FIXTURE, &c->f, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return -1;
    }
    const char *ver = vitq_st_meta(c->f, "fixture_version");
    if (!ver || strcmp(ver, "1")) {
        test_failf(__FILE__, __LINE__, "%s: fixture_version %s, expected 1 (re-run make_grad_fixture.py)",
                   GRAD_FIXTURE, ver ? ver : "missing");
        return -1;
    }
    vitq_arch a = {.name = "grad_tiny", .img_size = 8, .patch_size = 4, .in_chans = 1, .num_classes = 5,
                   .embed_dim = 12, .depth = 2, .num_heads = 2, .mlp_ratio = 4.0f, .qkv_bias = 1,
                   .mean = {0.5f}, .std = {0.5f}, .crop_pct = 1.0f, .interpolation = "bicubic"};
    if (vitq_model_create(&a, &c->m, &e) || vitq_model_alloc_grads(c->m, &e) ||
        vitq_acts_create(c->m, 3, 1, &c->a, &e) || vitq_grad_acts_create(c->m, 3, &c->g, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return -1;
    }
    for (int i = 0; i < c->m->n_table; i++) {
        vitq_tensor_ref *r = &c->m->table[i];
        if (vitq_st_read_f32(c->f, r->name, r->data, r->ndim, r->shape, &e)) {
            test_failf(__FILE__, __LINE__, "%s", e.msg);
            return -1;
        }
    }
    c->m->mlp_act[0] = VITQ_ACT_GELU;
    c->m->mlp_act[1] = VITQ_ACT_RELU;
    CHECK_STR_CONTAINS(vitq_st_meta(c->f, "mlp_act"), "gelu,relu");
    float *x = fx_read(c->f, "input", NULL), *y = fx_read(c->f, "labels", NULL);
    if (!x || !y) {
        free(x), free(y);
        return -1;
    }
    memcpy(c->x, x, sizeof c->x);
    for (int b = 0; b < 3; b++) c->y[b] = (int)y[b];
    free(x), free(y);
    return 0;
}

static void torch_teardown(torch_case *c) {
    vitq_grad_acts_free(c->g);
    vitq_acts_free(c->a);
    vitq_model_free(c->m);
    vitq_st_close(c->f);
}

/* Compares n floats at got with fixture tensor `name`; prints the max error. */
static void check_fx(vitq_st_file *f, const char *name, const float *got, int64_t n) {
    int64_t fn = 0;
    float *want = fx_read(f, name, &fn);
    if (!want) return;
    CHECK_MSG(fn == n, "%s: %lld values in the fixture, %lld computed", name, (long long)fn, (long long)n);
    if (fn == n) {
        double mx = 0, ref = 0;
        for (int64_t i = 0; i < n; i++) mx = fmax(mx, fabs(got[i] - want[i])), ref = fmax(ref, fabs(want[i]));
        printf("    %-36s max |c - torch| %.2e (max |torch| %.2e)\n", name, mx, ref);
        test_allclose(__FILE__, __LINE__, name, got, want, (long)n, GRAD_RTOL, GRAD_ATOL);
    }
    free(want);
}

TEST(grad_model_torch) {
    torch_case c;
    if (torch_setup(&c)) {
        torch_teardown(&c);
        return;
    }
    vitq_err e;
    CHECK(vitq_forward(c.m, c.a, c.x, 3, &e) == 0);
    float loss = vitq_crossentropy_forward(c.g->probs, c.a->logits, c.y, 3, 5, 0.1f);
    float *want_loss = fx_read(c.f, "loss", NULL);
    if (want_loss) CHECK_NEAR(loss, want_loss[0], 1e-5);
    free(want_loss);
    check_fx(c.f, "logits", c.a->logits, 3 * 5);
    vitq_model_zero_grads(c.m);
    memset(c.g->dlogits, 0, sizeof(float) * 15);
    vitq_crossentropy_backward(c.g->dlogits, c.g->probs, c.y, 3, 5, 0.1f);
    CHECK(vitq_backward(c.m, c.a, c.g, c.g->dlogits, 3, &e) == 0);
    for (int i = 0; i < c.m->n_table; i++) {
        char name[96];
        snprintf(name, sizeof name, "grad.%s", c.m->table[i].name);
        check_fx(c.f, name, vitq_model_grad_of(c.m, &c.m->table[i]), c.m->table[i].numel);
    }
    const int64_t bnc = 3 * c.g->N * c.g->C;
    check_fx(c.f, "grad.blocks.0.out", vitq_grad_res(c.g, 1), bnc);
    check_fx(c.f, "grad.blocks.1.out", vitq_grad_res(c.g, 2), bnc);
    check_fx(c.f, "grad.blocks.0.in", vitq_grad_res(c.g, 0), bnc);
    torch_teardown(&c);
}

/* vitq_block_backward alone, from eval-mode acts after vitq_block_forward (how block-wise reconstruction
 * uses it) and the fixture's gradient of the block output, equals the block's part of the full backward. */
TEST(grad_block_alone) {
    torch_case c;
    if (torch_setup(&c)) {
        torch_teardown(&c);
        return;
    }
    vitq_err e;
    vitq_acts *ev = NULL;
    CHECK(vitq_acts_create(c.m, 3, 0, &ev, &e) == 0);
    CHECK(vitq_forward(c.m, c.a, c.x, 3, &e) == 0); // train acts: the residual stream entering each block
    const int64_t bnc = 3 * c.g->N * c.g->C;
    for (int l = 1; l >= 0; l--) {
        memcpy(vitq_acts_res(ev, l), vitq_acts_res(c.a, l), sizeof(float) * (size_t)bnc);
        CHECK(vitq_block_forward(c.m, ev, l, 3, &e) == 0);
        CHECK_ALLCLOSE(vitq_acts_res(ev, l + 1), vitq_acts_res(c.a, l + 1), bnc, 0, 0); // same numbers
        char name[96];
        snprintf(name, sizeof name, "grad.blocks.%d.out", l);
        float *dout = fx_read(c.f, name, NULL);
        if (!dout) break;
        memcpy(vitq_grad_res(c.g, l + 1), dout, sizeof(float) * (size_t)bnc);
        free(dout);
        vitq_model_zero_grads(c.m);
        CHECK(vitq_block_backward(c.m, ev, c.g, l, 3, &e) == 0);
        printf("  block %d alone:\n", l);
        for (int i = 0; i < c.m->n_table; i++) {
            char pre[32];
            snprintf(pre, sizeof pre, "blocks.%d.", l);
            if (strncmp(c.m->table[i].name, pre, strlen(pre))) continue;
            snprintf(name, sizeof name, "grad.%s", c.m->table[i].name);
            check_fx(c.f, name, vitq_model_grad_of(c.m, &c.m->table[i]), c.m->table[i].numel);
        }
        if (l > 0) snprintf(name, sizeof name, "grad.blocks.%d.out", l - 1);
        else snprintf(name, sizeof name, "grad.blocks.0.in");
        check_fx(c.f, name, vitq_grad_res(c.g, l), bnc);
        // nothing outside block l was touched
        const vitq_tensor_ref *head = vitq_model_param(c.m, "head.weight");
        CHECK(head);
        if (head) {
            CHECK_EQ(vitq_model_grad_of(c.m, head)[0], 0.0f);
        }
    }
    CHECK(vitq_block_backward(c.m, ev, c.g, 2, 3, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "block 2 out of range");
    vitq_acts_free(ev);
    torch_teardown(&c);
}

/* ---- *_to variants ------------------------------------------------------------------------------------
 * Each writing variant must give the same bits as its accumulating twin run on a zeroed buffer, and must
 * not read what the buffer held before (it starts as NaN here). Sizes large enough for the threaded path. */
static float *filled(int64_t n, float v) {
    float *f = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) f[i] = v;
    return f;
}
static float *frand(int64_t n, double scale) {
    float *f = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) f[i] = (float)(urand() * scale);
    return f;
}
#define CHECK_SAME_BITS(a, b, n) CHECK_MSG(memcmp(a, b, sizeof(float) * (size_t)(n)) == 0, "%s != %s", #a, #b)

TEST(grad_write_variants) {
    const int64_t R = 400, IC = 48, OC = 80, n = R * OC;
    float *x = frand(R * IC, 2), *w = frand(OC * IC, 0.5), *G = frand(n, 1), *pre = frand(n, 6);
    float *acc = filled(R * IC, 0.0f), *set = filled(R * IC, NAN);
    float *dw1 = filled(OC * IC, 0.0f), *dw2 = filled(OC * IC, 0.0f), *db1 = filled(OC, 0.0f), *db2 = filled(OC, 0.0f);
    vitq_linear_backward(acc, dw1, db1, G, x, w, R, IC, OC);
    vitq_linear_backward_to(set, dw2, db2, G, x, w, R, IC, OC);
    CHECK_SAME_BITS(acc, set, R * IC);
    CHECK_SAME_BITS(dw1, dw2, OC * IC);
    CHECK_SAME_BITS(db1, db2, OC);
    free(acc), free(set);

    for (int relu = 0; relu <= 1; relu++) {
        acc = filled(n, 0.0f), set = filled(n, NAN);
        (relu ? vitq_relu_backward : vitq_gelu_backward)(acc, pre, G, n);
        (relu ? vitq_relu_backward_to : vitq_gelu_backward_to)(set, pre, G, n);
        CHECK_SAME_BITS(acc, set, n);
        free(acc), free(set);
    }

    const int64_t B = 6, H = 3, N = 17, D = 8, C = H * D, nq = B * H * N * D, na = B * H * N * N;
    float *q = frand(nq, 1), *k = frand(nq, 1), *v = frand(nq, 1), *att = malloc(sizeof(float) * na);
    float *datt = frand(na, 1), *dy = frand(B * N * C, 1);
    vitq_attn_softmax_forward(att, q, k, B, H, N, D, 0.35f);
    float *dq1 = filled(nq, 0.0f), *dk1 = filled(nq, 0.0f), *dq2 = filled(nq, NAN), *dk2 = filled(nq, NAN);
    vitq_attn_softmax_backward(dq1, dk1, datt, att, q, k, B, H, N, D, 0.35f);
    vitq_attn_softmax_backward_to(dq2, dk2, datt, att, q, k, B, H, N, D, 0.35f);
    CHECK_SAME_BITS(dq1, dq2, nq);
    CHECK_SAME_BITS(dk1, dk2, nq);
    float *da1 = filled(na, 0.0f), *da2 = filled(na, NAN), *dv1 = filled(nq, 0.0f), *dv2 = filled(nq, NAN);
    vitq_attn_value_backward(da1, dv1, dy, att, v, B, H, N, D);
    vitq_attn_value_backward_to(da2, dv2, dy, att, v, B, H, N, D);
    CHECK_SAME_BITS(da1, da2, na);
    CHECK_SAME_BITS(dv1, dv2, nq);
    float *s1 = filled(3 * nq, 0.0f), *s2 = filled(3 * nq, NAN), *dqkvh = frand(3 * nq, 1);
    vitq_qkv_split_backward(s1, dqkvh, B, N, C, H);
    vitq_qkv_split_backward_to(s2, dqkvh, B, N, C, H);
    CHECK_SAME_BITS(s1, s2, 3 * nq);
    free(x), free(w), free(G), free(pre), free(dw1), free(dw2), free(db1), free(db2);
    free(q), free(k), free(v), free(att), free(datt), free(dy), free(dq1), free(dk1), free(dq2), free(dk2);
    free(da1), free(da2), free(dv1), free(dv2), free(s1), free(s2), free(dqkvh);
}

/* ---- vectorised kernels keep the written order -------------------------------------------------------
 * LayerNorm's input and parameter gradients, the bias gradient and the softmax backward run vectorised and
 * K rows at a time (ops_backward.c); every sum must still be taken in the order one row alone, one element
 * at a time, takes. References here are that scalar code; sizes leave row tails (R mod 4, N mod 4) and
 * vector tails (C mod 16) and go through the threaded path. */
static void ln_backward_scalar(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                               const float *mean, const float *rstd, int64_t R, int64_t C) {
    for (int64_t r = 0; r < R; r++) {
        float m1 = 0.0f, m2 = 0.0f;
        for (int64_t i = 0; i < C; i++) {
            float norm = (x[r * C + i] - mean[r]) * rstd[r], dnorm = w[i] * dy[r * C + i];
            m1 += dnorm;
            m2 += dnorm * norm;
        }
        m1 /= (float)C, m2 /= (float)C;
        for (int64_t i = 0; i < C; i++) {
            float norm = (x[r * C + i] - mean[r]) * rstd[r], dnorm = w[i] * dy[r * C + i];
            dx[r * C + i] += (dnorm - m1 - norm * m2) * rstd[r];
            dw[i] += dy[r * C + i] * norm;
            db[i] += dy[r * C + i];
        }
    }
}

TEST(grad_vectorised_kernels_keep_scalar_order) {
    const int64_t Cs[] = {96, 37};
    for (int t = 0; t < 2; t++) {
        const int64_t R = 203, C = Cs[t];
        float *x = frand(R * C, 3), *w = frand(C, 1), *dy = frand(R * C, 1), *mean = frand(R, 1), *rstd = frand(R, 1);
        float *y = malloc(sizeof(float) * (size_t)(R * C)), *b = frand(C, 1);
        vitq_layernorm_forward(y, mean, rstd, x, w, b, R, C, 1e-6f);
        float *dx1 = frand(R * C, 1), *dw1 = frand(C, 1), *db1 = frand(C, 1);
        float *dx2 = malloc(sizeof(float) * (size_t)(R * C)), *dw2 = malloc(sizeof(float) * (size_t)C);
        float *db2 = malloc(sizeof(float) * (size_t)C);
        memcpy(dx2, dx1, sizeof(float) * (size_t)(R * C)), memcpy(dw2, dw1, sizeof(float) * (size_t)C);
        memcpy(db2, db1, sizeof(float) * (size_t)C);
        vitq_layernorm_backward(dx1, dw1, db1, dy, x, w, mean, rstd, R, C);
        ln_backward_scalar(dx2, dw2, db2, dy, x, w, mean, rstd, R, C);
        CHECK_SAME_BITS(dx1, dx2, R * C);
        CHECK_SAME_BITS(dw1, dw2, C);
        CHECK_SAME_BITS(db1, db2, C);
        /* the bias gradient of a linear layer: column sums of dout over rows in order */
        float *bw = frand(C * 8, 1), *bx = frand(R * 8, 1), *dbias = filled(C, 0.5f), *dbref = filled(C, 0.5f);
        vitq_linear_backward(NULL, NULL, dbias, dy, bx, bw, R, 8, C);
        for (int64_t r = 0; r < R; r++)
            for (int64_t o = 0; o < C; o++) dbref[o] += dy[r * C + o];
        CHECK_SAME_BITS(dbias, dbref, C);
        free(x), free(w), free(dy), free(mean), free(rstd), free(y), free(b), free(dx1), free(dw1), free(db1);
        free(dx2), free(dw2), free(db2), free(bw), free(bx), free(dbias), free(dbref);
    }
    /* softmax backward: dq = dpre · k with dpre = scale · a ⊙ (da − Σ_j a da), per row in order */
    const int64_t B = 4, H = 3, N = 50, D = 16, nq = B * H * N * D, na = B * H * N * N;
    float *q = frand(nq, 1), *k = frand(nq, 1), *att = malloc(sizeof(float) * (size_t)na), *datt = frand(na, 1);
    vitq_attn_softmax_forward(att, q, k, B, H, N, D, 0.25f);
    float *dq = filled(nq, 0.0f), *dk = filled(nq, 0.0f), *dqr = filled(nq, 0.0f), *dkr = filled(nq, 0.0f);
    float *dpre = malloc(sizeof(float) * (size_t)(N * N));
    vitq_attn_softmax_backward(dq, dk, datt, att, q, k, B, H, N, D, 0.25f);
    for (int64_t bh = 0; bh < B * H; bh++) {
        for (int64_t i = 0; i < N; i++) {
            const float *a = att + (bh * N + i) * N, *da = datt + (bh * N + i) * N;
            float dot = 0.0f;
            for (int64_t j = 0; j < N; j++) dot += a[j] * da[j];
            for (int64_t j = 0; j < N; j++) dpre[i * N + j] = 0.25f * a[j] * (da[j] - dot);
        }
        /* the kernel's own products on its dpre: what differs would be dpre */
        vitq_gemm_serial(0, 0, N, D, N, 1.0f, dpre, k + bh * N * D, 1.0f, dqr + bh * N * D);
        vitq_gemm_serial(1, 0, N, D, N, 1.0f, dpre, q + bh * N * D, 1.0f, dkr + bh * N * D);
    }
    CHECK_SAME_BITS(dq, dqr, nq);
    CHECK_SAME_BITS(dk, dkr, nq);
    free(q), free(k), free(att), free(datt), free(dq), free(dk), free(dqr), free(dkr), free(dpre);
}
