/* test_dfq.c — plugins/dynamic_focus.c (AIQViT's DFQ, specs/aiqvit.md §3) through its ops:
 *   the worked oracle of §3.6 (3 and 4 bits, clamp and zero modes, values and the 3-bit gradients);
 *   the sanity checks of §3.7 (a: b1 = 0, b2 = 1 is the uniform plugin with scale 1/n, zero point 0, bit for
 *   bit; b: clamp mode never leaves [b1, b2], zero mode gives 0 or a value in [b1, b2]);
 *   the b1, b2 (and p) gradients against central finite differences of the STE surrogate
 *   b1 + s·(clamp(u, 0, n) + δ), δ = ⌊clamp(u)⌉ − clamp(u) frozen at the point (PyTorch's
 *   x + (round(x) − x).detach()), on inputs away from the region boundaries (u = 0, u = n, b1/2, b1),
 *   per head, with and without the LSQ scale — the forward itself is piecewise constant;
 *   project after an optimiser-like step out of the box, freeze, a diverged (NaN) interval;
 *   the grid initialisation against the true argmin of an attn·V error computed here in double (per head
 *   and per layer), and through the harness's real search on a tiny model;
 *   minmax init, state round trips and refusals. */
#include "qplug.h"

static const float P6[6] = {0.9f, 0.66f, 0.32f, 0.13f, 0.03f, 0.0f};

/* Sets the intervals of a finalized instance through its tensors (as a pass may). */
static void set_interval(qp_inst *in, const float *b1, const float *b2, int64_t G) {
    vitq_qtensor t[2];
    CHECK_EQ(in->p->quantizer->tensors(in->q, t, 2), 2);
    CHECK_STREQ(t[0].name, "b1");
    CHECK_STREQ(t[1].name, "b2");
    CHECK_EQ(t[0].n, G);
    for (int64_t g = 0; g < G; g++) t[0].value[g] = b1[g], t[1].value[g] = b2[g];
}

static void get_interval(qp_inst *in, float *b1, float *b2, int64_t G) {
    vitq_qtensor t[2];
    if (in->p->quantizer->tensors(in->q, t, 2) != 2 || t[0].n != G) {
        test_failf(__FILE__, __LINE__, "tensors: expected b1, b2 of %lld", (long long)G);
        return;
    }
    for (int64_t g = 0; g < G; g++) b1[g] = t[0].value[g], b2[g] = t[1].value[g];
}

/* An instance on a (B, H, 1, N) probs tap, calibrated (minmax on x), then set to [b1, b2]. */
static int dfq_at(qp_inst *in, const char *bits, const char *below, float b1, float b2) {
    const char *kv[] = {bits, below, "init=minmax"};
    vitq_tap tap = qp_probs_tap(1, 6);
    if (qp_make(in, "dynamic_focus", &tap, kv, 3)) return -1;
    float x[6] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 1.0f};
    vitq_view v = qp_view4(x, 1, 1, 6);
    v.shape[2] = 1;
    CHECK(in->p->quantizer->observe(in->q, &v) == 0);
    CHECK_MSG(in->p->quantizer->finalize(in->q) == 0, "%s", in->ctx.msg);
    set_interval(in, &b1, &b2, 1);
    return 0;
}

static void fwd(qp_inst *in, const float *x, float *y, int n) {
    vitq_view vx = {.data = (float *)x, .ndim = 1, .shape = {n}}, vy = {.data = y, .ndim = 1, .shape = {n}};
    CHECK_MSG(in->p->quantizer->forward(in->q, &vx, &vy) == 0, "%s", in->ctx.msg);
}

TEST(dfq_worked_oracle_clamp) {
    /* §3.6: b1 = 0.05, b2 = 0.75; 3 bits s = 0.1, 4 bits s = 0.046667 */
    qp_inst in;
    float y[6];
    if (dfq_at(&in, "bits=3", "below=clamp", 0.05f, 0.75f)) return;
    fwd(&in, P6, y, 6);
    const float w3[6] = {0.75f, 0.65f, 0.35f, 0.15f, 0.05f, 0.05f};
    CHECK_ALLCLOSE(y, w3, 6, 0, 1e-6);
    qp_drop(&in);
    if (dfq_at(&in, "bits=4", "below=clamp", 0.05f, 0.75f)) return;
    fwd(&in, P6, y, 6);
    const float w4[6] = {0.75f, 0.656667f, 0.33f, 0.143333f, 0.05f, 0.05f};
    CHECK_ALLCLOSE(y, w4, 6, 0, 1e-6);
    CHECK_EQ(y[0], 0.75f); /* the top level is b2 itself */
    qp_drop(&in);
}

TEST(dfq_worked_oracle_zero) {
    /* §3.6 zero mode, 3 bits: s' = 0.7/6 = 0.116667, grid 0.05, 0.16667, ..., 0.75; 0.32 -> 0.283333,
     * 0.03 -> 0.05 (nearer than 0), 0.02 -> 0, 0 -> 0. 4 bits: s' = 0.7/14 = 0.05. */
    qp_inst in;
    const float x[9] = {0.9f, 0.66f, 0.32f, 0.13f, 0.03f, 0.0f, 0.02f, 0.025f, 0.024f};
    float y[9];
    if (dfq_at(&in, "bits=3", "below=zero", 0.05f, 0.75f)) return;
    fwd(&in, x, y, 9);
    const float w3[9] = {0.75f, 0.633333f, 0.283333f, 0.166667f, 0.05f, 0, 0, 0.05f, 0}; /* b1/2 itself -> b1 */
    CHECK_ALLCLOSE(y, w3, 9, 0, 1e-6);
    qp_drop(&in);
    if (dfq_at(&in, "bits=4", "below=zero", 0.05f, 0.75f)) return;
    fwd(&in, x, y, 9);
    const float w4[9] = {0.75f, 0.65f, 0.3f, 0.15f, 0.05f, 0, 0, 0.05f, 0}; /* 0.66: u = 12.2; 0.32: 5.4; 0.13: 1.6 */
    CHECK_ALLCLOSE(y, w4, 9, 0, 1e-6);
    qp_drop(&in);
}

TEST(dfq_worked_gradients) {
    /* §3.6's last column (3 bits, clamp): dp̂/db1, dp̂/db2; and dp̂/dp = 1 inside, 0 outside */
    qp_inst in;
    if (dfq_at(&in, "bits=3", "below=clamp", 0.05f, 0.75f)) return;
    CHECK_EQ(in.p->quantizer->train(in.q, NULL), 0);
    const float w1[6] = {0, 0.014286f, -0.042857f, -0.028571f, 1, 1};
    const float w2[6] = {1, -0.014286f, 0.042857f, 0.028571f, 0, 0};
    const float wdx[6] = {0.5f, 1.5f, 1.5f, 1.5f, 0.5f, 0.5f};
    vitq_qtensor t[2];
    CHECK_EQ(in.p->quantizer->tensors(in.q, t, 2), 2);
    CHECK(t[0].grad != NULL && t[1].grad != NULL);
    for (int i = 0; i < 6 && t[0].grad; i++) {
        float x = P6[i], dy = 1, dx = 0.5f; /* dx accumulates */
        vitq_view vx = {.data = &x, .ndim = 1, .shape = {1}}, vdy = {.data = &dy, .ndim = 1, .shape = {1}},
                  vdx = {.data = &dx, .ndim = 1, .shape = {1}};
        t[0].grad[0] = t[1].grad[0] = 0;
        CHECK_EQ(in.p->quantizer->backward(in.q, &vx, &vdy, &vdx), 0);
        CHECK_NEAR(t[0].grad[0], w1[i], 1e-6);
        CHECK_NEAR(t[1].grad[0], w2[i], 1e-6);
        CHECK_NEAR(dx, wdx[i], 0);
    }
    CHECK_EQ(in.p->quantizer->freeze(in.q), 0);
    CHECK_EQ(in.p->quantizer->tensors(in.q, t, 2), 2);
    CHECK(t[0].grad == NULL); /* gradients only between train and freeze */
    qp_drop(&in);
}

TEST(dfq_equals_uniform_at_unit_interval) {
    /* §3.7 (a): b1 = 0, b2 = 1 (minmax on values reaching 1) is the uniform plugin with s = 1/n, z = 0 */
    enum { n = 5000 };
    float *x = malloc(n * sizeof *x), *yd = malloc(n * sizeof *yd), *yu = malloc(n * sizeof *yu);
    uint64_t s = 5;
    for (int i = 0; i < n; i++) x[i] = (float)(1.3 * qp_unif(&s) - 0.15);
    x[0] = 0, x[1] = 1, x[2] = 1.5f / 7, x[3] = 0.5f;
    vitq_tap tap = qp_probs_tap(1, n);
    static const char *bits[] = {"bits=2", "bits=3", "bits=4", "bits=6", "bits=8"};
    for (int b = 0; b < 5; b++) {
        qp_inst d, u;
        const char *kd[] = {bits[b], "init=minmax"}, *ku[] = {bits[b], "init=minmax"};
        if (qp_make(&d, "dynamic_focus", &tap, kd, 2) || qp_make(&u, "uniform", &tap, ku, 2)) break;
        float cal[2] = {0, 1};
        vitq_view vc = {.data = cal, .ndim = 1, .shape = {2}}, vx = {.data = x, .ndim = 1, .shape = {n}}, vy = vx;
        CHECK(d.p->quantizer->observe(d.q, &vc) == 0 && d.p->quantizer->finalize(d.q) == 0);
        CHECK(u.p->quantizer->observe(u.q, &vc) == 0 && u.p->quantizer->finalize(u.q) == 0);
        float b1 = -1, b2 = -1;
        get_interval(&d, &b1, &b2, 1);
        CHECK_EQ(b1, 0.0f);
        CHECK_EQ(b2, 1.0f);
        vy.data = yd;
        CHECK(d.p->quantizer->forward(d.q, &vx, &vy) == 0);
        vy.data = yu;
        CHECK(u.p->quantizer->forward(u.q, &vx, &vy) == 0);
        int diff = 0;
        for (int i = 0; i < n; i++) diff += yd[i] != yu[i];
        CHECK_MSG(diff == 0, "%s: %d values differ from uniform", bits[b], diff);
        qp_drop(&d);
        qp_drop(&u);
    }
    free(x);
    free(yd);
    free(yu);
}

TEST(dfq_outputs_stay_in_interval) {
    /* §3.7 (b), on random intervals (per head) and inputs beyond [0, 1] */
    enum { B = 3, H = 4, N = 40 };
    float *x = malloc(B * H * N * N * sizeof *x), *y = malloc(B * H * N * N * sizeof *y);
    uint64_t s = 11;
    for (int i = 0; i < B * H * N * N; i++) x[i] = (float)(1.4 * qp_unif(&s) - 0.2);
    vitq_tap tap = qp_probs_tap(H, N);
    for (int zero = 0; zero < 2; zero++)
        for (int bits = 2; bits <= 8; bits += 3) {
            char kb[32];
            snprintf(kb, sizeof kb, "bits=%d", bits);
            const char *kv[] = {kb, zero ? "below=zero" : "below=clamp", "granularity=head", "init=minmax"};
            qp_inst in;
            if (qp_make(&in, "dynamic_focus", &tap, kv, 4)) break;
            vitq_view v = qp_view4(x, B, H, N), vy = qp_view4(y, B, H, N);
            CHECK(in.p->quantizer->observe(in.q, &v) == 0 && in.p->quantizer->finalize(in.q) == 0);
            float b1[H], b2[H];
            for (int h = 0; h < H; h++) {
                b1[h] = (float)(0.3 * qp_unif(&s)) * (h > 0);
                b2[h] = b1[h] + (float)(0.0002 + 0.7 * qp_unif(&s));
            }
            set_interval(&in, b1, b2, H);
            CHECK(in.p->quantizer->forward(in.q, &v, &vy) == 0);
            int bad = 0, zeros = 0;
            for (int i = 0; i < B * H * N * N; i++) {
                int h = (i / (N * N)) % H;
                int inside = y[i] >= b1[h] && y[i] <= b2[h];
                bad += zero ? !(inside || y[i] == 0) : !inside;
                zeros += y[i] == 0;
            }
            CHECK_MSG(bad == 0, "below=%s bits=%d: %d outputs outside", zero ? "zero" : "clamp", bits, bad);
            CHECK(!zero || zeros > 0);
            qp_drop(&in);
        }
    /* an interval where b1 + s·n rounds above b2 in float (n = 3 and 7): the top level is still b2 */
    for (int bits = 2; bits <= 3; bits++) {
        qp_inst in;
        if (dfq_at(&in, bits == 2 ? "bits=2" : "bits=3", "below=clamp", 0.015581646f, 0.126246646f)) break;
        float one = 1.0f, top;
        fwd(&in, &one, &top, 1);
        CHECK_EQ(top, 0.126246646f);
        qp_drop(&in);
    }
    free(x);
    free(y);
}

/* The STE surrogate of one value (see the file header), in double, and whether p is at least `m` (in
 * units of the step) away from every region boundary at (b1, b2). */
static double surrogate(double p, double b1, double b2, int bits, int zero, double delta) {
    double n = ldexp(1, bits) - 1;
    if (zero) {
        if (p < 0.5 * b1) return 0;
        if (p < b1) return b1;
        n -= 1;
    }
    double s = (b2 - b1) / n, u = (p - b1) / s, c = u < 0 ? 0 : (u > n ? n : u);
    return b1 + s * (c + delta);
}

static double frozen_delta(double p, double b1, double b2, int bits, int zero) {
    double n = ldexp(1, bits) - 1 - zero;
    double s = (b2 - b1) / n, u = (p - b1) / s, c = u < 0 ? 0 : (u > n ? n : u);
    return (zero && p < b1) ? 0 : rint(c) - c;
}

static int far_from_edges(double p, double b1, double b2, int bits, int zero) {
    double n = ldexp(1, bits) - 1 - zero, s = (b2 - b1) / n, u = (p - b1) / s;
    if (zero && (fabs(p - 0.5 * b1) < 0.01 || fabs(p - b1) < 0.01)) return 0;
    return fabs(u) > 0.05 && fabs(u - n) > 0.05;
}

static void fd_check(int bits, int zero, int lsq) {
    enum { B = 2, H = 2, N = 12 };
    const int64_t M = B * H * N * N;
    float *x = malloc(M * sizeof *x), *dy = malloc(M * sizeof *dy), *dx = calloc(M, sizeof *dx);
    double *delta = malloc(M * sizeof *delta);
    const float b1[H] = {0.04f, 0.0125f}, b2[H] = {0.61f, 0.83f};
    uint64_t s = 77 + bits + 10 * zero;
    int64_t kept = 0;
    for (int64_t i = 0; i < M; i++) {
        int h = (int)((i / (N * N)) % H);
        do x[i] = (float)qp_unif(&s);
        while (!far_from_edges(x[i], b1[h], b2[h], bits, zero));
        dy[i] = (float)(qp_unif(&s) - 0.5);
        delta[i] = frozen_delta(x[i], b1[h], b2[h], bits, zero);
        kept++;
    }
    char kb[32];
    snprintf(kb, sizeof kb, "bits=%d", bits);
    const char *kv[] = {kb, zero ? "below=zero" : "below=clamp", "granularity=head", "init=minmax",
                        lsq ? "lsq_grad_scale=true" : "lsq_grad_scale=false"};
    vitq_tap tap = qp_probs_tap(H, N);
    qp_inst in;
    if (qp_make(&in, "dynamic_focus", &tap, kv, 5)) goto out;
    vitq_view v = qp_view4(x, B, H, N), vdy = qp_view4(dy, B, H, N), vdx = qp_view4(dx, B, H, N);
    CHECK(in.p->quantizer->observe(in.q, &v) == 0 && in.p->quantizer->finalize(in.q) == 0);
    set_interval(&in, b1, b2, H);
    CHECK_EQ(in.p->quantizer->train(in.q, NULL), 0);
    CHECK_EQ(in.p->quantizer->backward(in.q, &v, &vdy, &vdx), 0);
    vitq_qtensor t[2];
    CHECK_EQ(in.p->quantizer->tensors(in.q, t, 2), 2);
    const double n = ldexp(1, bits) - 1, gs = lsq ? 1.0 / sqrt((double)(M / H) * n) : 1.0, hstep = 1e-6;
    for (int h = 0; h < H && t[0].grad; h++) {
        double fd[2];
        for (int which = 0; which < 2; which++) {
            double L[2] = {0, 0};
            for (int sg = 0; sg < 2; sg++) {
                double a = b1[h] + (which == 0 ? (sg ? hstep : -hstep) : 0), b = b2[h] + (which == 1 ? (sg ? hstep : -hstep) : 0);
                for (int64_t i = 0; i < M; i++)
                    if ((i / (N * N)) % H == h) L[sg] += dy[i] * surrogate(x[i], a, b, bits, zero, delta[i]);
            }
            fd[which] = (L[1] - L[0]) / (2 * hstep) * gs;
        }
        CHECK_MSG(fabs(t[0].grad[h] - fd[0]) <= 2e-4 * (1 + fabs(fd[0])), "bits %d zero %d lsq %d head %d: db1 %.7g, fd %.7g",
                  bits, zero, lsq, h, (double)t[0].grad[h], fd[0]);
        CHECK_MSG(fabs(t[1].grad[h] - fd[1]) <= 2e-4 * (1 + fabs(fd[1])), "bits %d zero %d lsq %d head %d: db2 %.7g, fd %.7g",
                  bits, zero, lsq, h, (double)t[1].grad[h], fd[1]);
    }
    /* dx against the surrogate's derivative in p (1 inside the grid, 0 outside), one value at a time */
    int bad = 0;
    for (int64_t i = 0; i < M; i++) {
        int h = (int)((i / (N * N)) % H);
        double e = 1e-6, d = (surrogate(x[i] + e, b1[h], b2[h], bits, zero, delta[i]) -
                              surrogate(x[i] - e, b1[h], b2[h], bits, zero, delta[i])) / (2 * e);
        bad += fabs(dx[i] - d * dy[i]) > 1e-5;
    }
    CHECK_MSG(bad == 0, "bits %d zero %d: %d of %lld dx differ from finite differences", bits, zero, bad, (long long)kept);
    qp_drop(&in);
out:
    free(x);
    free(dy);
    free(dx);
    free(delta);
}

TEST(dfq_gradients_match_finite_differences) {
    for (int zero = 0; zero < 2; zero++)
        for (int bits = 3; bits <= 4; bits++) fd_check(bits, zero, 0);
    fd_check(3, 0, 1);
    fd_check(4, 1, 1);
}

static int feasible(float b1, float b2) { return b1 >= 0 && b2 <= 1 && (double)b2 - (double)b1 >= 1e-4; }

TEST(dfq_project_after_step) {
    enum { H = 3, N = 4 };
    vitq_tap tap = qp_probs_tap(H, N);
    const char *kv[] = {"bits=4", "granularity=head", "init=minmax"};
    qp_inst in;
    if (qp_make(&in, "dynamic_focus", &tap, kv, 3)) return;
    float x[H * N * N];
    for (int i = 0; i < H * N * N; i++) x[i] = (float)(i % 7) / 7.0f;
    vitq_view v = qp_view4(x, 1, H, N);
    CHECK(in.p->quantizer->observe(in.q, &v) == 0 && in.p->quantizer->finalize(in.q) == 0);
    CHECK_EQ(in.p->quantizer->train(in.q, NULL), 0);
    /* an optimiser-like step b <- b - lr * grad with a large learning rate, out of the box */
    float dy[H * N * N];
    for (int i = 0; i < H * N * N; i++) dy[i] = 1.0f;
    vitq_view vdy = qp_view4(dy, 1, H, N);
    CHECK_EQ(in.p->quantizer->backward(in.q, &v, &vdy, NULL), 0);
    vitq_qtensor t[2];
    CHECK_EQ(in.p->quantizer->tensors(in.q, t, 2), 2);
    for (int h = 0; h < H && t[0].grad; h++) {
        t[0].value[h] -= 50.0f * t[0].grad[h] + 0.3f; /* pushes b1 below 0 */
        t[1].value[h] += 0.5f;                        /* and b2 above 1 */
    }
    CHECK_EQ(in.p->quantizer->project(in.q), 0);
    for (int h = 0; h < H; h++) CHECK_MSG(feasible(t[0].value[h], t[1].value[h]), "head %d: [%g, %g]", h, (double)t[0].value[h], (double)t[1].value[h]);
    CHECK_EQ(t[0].value[0], 0.0f);
    CHECK_EQ(t[1].value[0], 1.0f);
    /* hand cases: inverted, too narrow at either end, both below 0 */
    const float in1[H] = {0.5f, 0.99999f, -0.1f}, in2[H] = {0.4f, 1.2f, -0.05f};
    const double w1[H] = {0.45 - 5e-5, 1 - 1e-4, 0}, w2[H] = {0.45 + 5e-5, 1, 1e-4};
    for (int h = 0; h < H; h++) t[0].value[h] = in1[h], t[1].value[h] = in2[h];
    CHECK_EQ(in.p->quantizer->project(in.q), 0);
    for (int h = 0; h < H; h++) {
        CHECK_MSG(feasible(t[0].value[h], t[1].value[h]), "head %d: [%.9g, %.9g]", h, (double)t[0].value[h], (double)t[1].value[h]);
        CHECK_NEAR(t[0].value[h], w1[h], 1e-7);
        CHECK_NEAR(t[1].value[h], w2[h], 1e-7);
    }
    /* freeze projects too */
    t[0].value[1] = 0.7f, t[1].value[1] = 0.2f;
    CHECK_EQ(in.p->quantizer->freeze(in.q), 0);
    float b1[H] = {0}, b2[H] = {0};
    get_interval(&in, b1, b2, H);
    CHECK(feasible(b1[1], b2[1]));
    CHECK_NEAR(b1[1], 0.45 - 5e-5, 1e-7);
    /* a diverged optimiser: NaN is an error, not a silent clamp */
    CHECK_EQ(in.p->quantizer->train(in.q, NULL), 0);
    CHECK_EQ(in.p->quantizer->tensors(in.q, t, 2), 2);
    t[0].value[2] = NAN;
    CHECK(in.p->quantizer->project(in.q) < 0);
    CHECK_STR_CONTAINS(in.ctx.msg, "not finite");
    qp_drop(&in);
}

/* ---- grid initialisation ------------------------------------------------------------------------- */

static int cmpf(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The spec's 45 candidates of one group's values v[L] (sorted here), in the plugin's documented order:
 * b2 over the 0.99, 0.999, 0.9999, 0.99999 quantiles (numpy 'linear') then the max; for each, b1 = 0 then
 * b2·2^-j, j = 3..10. */
static void grid_candidates(float *v, int64_t L, float *c1, float *c2) {
    static const double qs[4] = {0.99, 0.999, 0.9999, 0.99999};
    qsort(v, (size_t)L, sizeof *v, cmpf);
    for (int k = 0; k < 5; k++) {
        float b2 = v[L - 1];
        if (k < 4) {
            double pos = qs[k] * (double)(L - 1);
            int64_t i = (int64_t)floor(pos);
            b2 = (float)(i >= L - 1 ? v[L - 1] : v[i] + ((double)v[i + 1] - (double)v[i]) * (pos - (double)i));
        }
        for (int j = 0; j < 9; j++) c2[k * 9 + j] = b2, c1[k * 9 + j] = j == 0 ? 0.0f : ldexpf(b2, -(j + 2));
    }
}

/* The spec's formula, written out (float32, as the plugin documents its arithmetic). */
static float ref_dfq(float p, float b1, float b2, int bits, int zero) {
    float n = ldexpf(1.0f, bits) - 1, y;
    if (!zero) {
        float s = (b2 - b1) / n, u = (p - b1) / s;
        u = u < 0 ? 0 : (u > n ? n : u);
        y = b1 + s * rintf(u);
    } else {
        float n1 = n - 1, s1 = (b2 - b1) / n1;
        if (p < 0.5f * b1) return 0;
        if (p < b1) return b1;
        float u = (p - b1) / s1;
        u = u > n1 ? n1 : u;
        y = b1 + s1 * rintf(u);
    }
    return y > b2 ? b2 : y;
}

enum { GB = 3, GH = 2, GN = 10, GD = 4 };

/* The true argmin per group (head, or the whole layer) of the attn·V error over the 45 candidates;
 * c1/c2 [G x 45]. */
static void grid_truth(const float *P, const float *V, int per_head, int bits, int zero, float *c1, float *c2, int *pick) {
    const int64_t M = GB * GH * GN * GN, G = per_head ? GH : 1;
    float *v = malloc(M * sizeof *v), *Pq = malloc(M * sizeof *Pq);
    for (int64_t g = 0; g < G; g++) {
        int64_t L = 0;
        for (int64_t i = 0; i < M; i++)
            if (!per_head || (i / (GN * GN)) % GH == g) v[L++] = P[i];
        grid_candidates(v, L, c1 + g * 45, c2 + g * 45);
    }
    double best[GH] = {INFINITY, INFINITY};
    for (int c = 0; c < 45; c++) {
        for (int64_t i = 0; i < M; i++) {
            int64_t g = per_head ? (i / (GN * GN)) % GH : 0;
            Pq[i] = ref_dfq(P[i], c1[g * 45 + c], c2[g * 45 + c], bits, zero);
        }
        double e[GH];
        for (int h = 0; h < GH; h++) e[h] = qp_head_error(P, Pq, V, GB, GH, GN, GD, h);
        if (!per_head) e[0] += e[1];
        for (int64_t g = 0; g < G; g++)
            if (e[g] < best[g]) best[g] = e[g], pick[g] = c;
    }
    free(v);
    free(Pq);
}

static void grid_case(int per_head, int bits, int zero, int *nontrivial) {
    const int64_t M = GB * GH * GN * GN;
    float *P = malloc(M * sizeof *P), *V = malloc(GB * GH * GN * GD * sizeof *V);
    qp_softmax_rows(P, GB * GH * GN, GN, 1000 + bits);
    uint64_t s = 3;
    for (int i = 0; i < GB * GH * GN * GD; i++) V[i] = (float)(2 * qp_unif(&s) - 1);
    float c1[GH * 45], c2[GH * 45];
    int pick[GH];
    grid_truth(P, V, per_head, bits, zero, c1, c2, pick);
    char kb[32];
    snprintf(kb, sizeof kb, "bits=%d", bits);
    const char *kv[] = {kb, per_head ? "granularity=head" : "granularity=layer", zero ? "below=zero" : "below=clamp"};
    vitq_tap tap = qp_probs_tap(GH, GN);
    qp_inst in;
    if (qp_make(&in, "dynamic_focus", &tap, kv, 3)) goto out;
    vitq_view x = qp_view4(P, GB, GH, GN);
    CHECK(in.p->quantizer->observe(in.q, &x) == 0 && in.p->quantizer->finalize(in.q) == 0);
    qp_search f;
    qp_search_init(&f, &x, V, GD, 0, 2);
    CHECK_MSG(in.p->quantizer->search(in.q, &f.s) == 0, "%s", in.ctx.msg);
    CHECK_EQ(f.calls, 45);
    CHECK_EQ(f.per_group_seen[per_head], 45); /* per head: per_group = 1; per layer: 0 */
    float b1[GH] = {0}, b2[GH] = {0};
    get_interval(&in, b1, b2, per_head ? GH : 1);
    for (int g = 0; g < (per_head ? GH : 1); g++) {
        CHECK_MSG(b1[g] == c1[g * 45 + pick[g]] && b2[g] == c2[g * 45 + pick[g]],
                  "head %d: picked [%.9g, %.9g], the argmin is candidate %d [%.9g, %.9g]", g, (double)b1[g], (double)b2[g],
                  pick[g], (double)c1[g * 45 + pick[g]], (double)c2[g * 45 + pick[g]]);
        *nontrivial += pick[g] != 36; /* 36: b1 = 0, b2 = max (what minmax gives) */
    }
    /* grid_rounds = first: a later round keeps the result without calling error */
    qp_search_init(&f, &x, V, GD, 1, 2);
    CHECK_EQ(in.p->quantizer->search(in.q, &f.s), 0);
    CHECK_EQ(f.calls, 0);
    qp_drop(&in);
out:
    free(P);
    free(V);
}

TEST(dfq_grid_picks_argmin) {
    int nontrivial = 0;
    for (int per_head = 0; per_head < 2; per_head++)
        for (int bits = 3; bits <= 4; bits++)
            for (int zero = 0; zero < 2; zero++) grid_case(per_head, bits, zero, &nontrivial);
    CHECK(nontrivial > 0); /* the search does pick something else than the minmax interval */
}

/* An error that records the interval each candidate applies to head 0: with a 0 and the maximum among
 * the values (clamp mode), min(P̂) = b1 and max(P̂) = b2. */
typedef struct {
    qp_search f;
    float lo[64], hi[64];
} rec_search;

static int rec_error(const vitq_search *s, const vitq_view *xq, int per_group, double *err) {
    rec_search *r = (rec_search *)s;
    if (r->f.calls < 64) {
        float lo = INFINITY, hi = -INFINITY;
        for (int64_t i = 0; i < vitq_view_numel(xq); i++)
            if ((i / (r->f.N * r->f.N)) % r->f.H == 0) lo = fminf(lo, xq->data[i]), hi = fmaxf(hi, xq->data[i]);
        r->lo[r->f.calls] = lo, r->hi[r->f.calls] = hi;
    }
    return qp_error(s, xq, per_group, err);
}

TEST(dfq_grid_candidates_in_order) {
    const int64_t M = GB * GH * GN * GN;
    float *P = malloc(M * sizeof *P), *V = malloc(GB * GH * GN * GD * sizeof *V), *v = malloc(M * sizeof *v);
    qp_softmax_rows(P, GB * GH * GN, GN, 77);
    P[3] = 0; /* head 0 holds a 0 */
    for (int i = 0; i < GB * GH * GN * GD; i++) V[i] = (float)((i * 29) % 13) / 6.0f - 1.0f;
    float c1[45], c2[45];
    int64_t L = 0;
    for (int64_t i = 0; i < M; i++)
        if ((i / (GN * GN)) % GH == 0) v[L++] = P[i];
    grid_candidates(v, L, c1, c2);
    vitq_tap tap = qp_probs_tap(GH, GN);
    const char *kv[] = {"granularity=head"};
    qp_inst in;
    if (qp_make(&in, "dynamic_focus", &tap, kv, 1) == 0) {
        vitq_view x = qp_view4(P, GB, GH, GN);
        CHECK(in.p->quantizer->observe(in.q, &x) == 0 && in.p->quantizer->finalize(in.q) == 0);
        rec_search r;
        qp_search_init(&r.f, &x, V, GD, 0, 0);
        r.f.s.error = rec_error;
        CHECK_EQ(in.p->quantizer->search(in.q, &r.f.s), 0);
        CHECK_EQ(r.f.calls, 45);
        int bad = 0;
        for (int c = 0; c < 45 && c < r.f.calls; c++) bad += r.lo[c] != c1[c] || r.hi[c] != c2[c];
        CHECK_MSG(bad == 0, "%d of 45 candidates differ from the spec's grid (first: [%g, %g] vs [%g, %g])", bad,
                  (double)r.lo[0], (double)r.hi[0], (double)c1[0], (double)c2[0]);
        qp_drop(&in);
    }
    free(P);
    free(V);
    free(v);
}

TEST(dfq_grid_every_round_and_minmax) {
    const int64_t M = GB * GH * GN * GN;
    float *P = malloc(M * sizeof *P), *V = malloc(GB * GH * GN * GD * sizeof *V);
    qp_softmax_rows(P, GB * GH * GN, GN, 42);
    for (int i = 0; i < GB * GH * GN * GD; i++) V[i] = (float)((i * 37) % 11) / 5.0f - 1.0f;
    vitq_tap tap = qp_probs_tap(GH, GN);
    vitq_view x = qp_view4(P, GB, GH, GN);
    qp_search f;
    qp_inst in;
    const char *ke[] = {"grid_rounds=every"};
    if (qp_make(&in, "dynamic_focus", &tap, ke, 1) == 0) {
        CHECK(in.p->quantizer->observe(in.q, &x) == 0 && in.p->quantizer->finalize(in.q) == 0);
        qp_search_init(&f, &x, V, GD, 1, 2);
        CHECK_EQ(in.p->quantizer->search(in.q, &f.s), 0);
        CHECK_EQ(f.calls, 45);
        qp_search_init(&f, &x, V, GD, 2, 2);
        f.s.partner_changed = 0; /* V as at round 1: the same pick, skipped */
        CHECK_EQ(in.p->quantizer->search(in.q, &f.s), 0);
        CHECK_EQ(f.calls, 0);
        qp_drop(&in);
    }
    /* minmax: b1 = 0, b2 = the max per head; search never asks the error */
    const char *km[] = {"init=minmax", "granularity=head"};
    if (qp_make(&in, "dynamic_focus", &tap, km, 2) == 0) {
        CHECK(in.p->quantizer->observe(in.q, &x) == 0 && in.p->quantizer->finalize(in.q) == 0);
        qp_search_init(&f, &x, V, GD, 0, 2);
        CHECK_EQ(in.p->quantizer->search(in.q, &f.s), 0);
        CHECK_EQ(f.calls, 0);
        float b1[GH] = {0}, b2[GH] = {0}, mx[GH] = {0, 0};
        for (int64_t i = 0; i < M; i++) mx[(i / (GN * GN)) % GH] = fmaxf(mx[(i / (GN * GN)) % GH], P[i]);
        get_interval(&in, b1, b2, GH);
        for (int h = 0; h < GH; h++) {
            CHECK_EQ(b1[h], 0.0f);
            CHECK_EQ(b2[h], mx[h]);
        }
        qp_drop(&in);
    }
    free(P);
    free(V);
}

TEST(dfq_save_load_round_trip) {
    enum { H = 3, N = 5 };
    vitq_tap tap = qp_probs_tap(H, N);
    const char *kv[] = {"bits=3", "granularity=head", "below=zero", "init=minmax"};
    qp_inst a, b;
    if (qp_make(&a, "dynamic_focus", &tap, kv, 4) || qp_make(&b, "dynamic_focus", &tap, kv, 4)) return;
    float x[2 * H * N * N], ya[2 * H * N * N], yb[2 * H * N * N];
    qp_softmax_rows(x, 2 * H * N, N, 9);
    vitq_view v = qp_view4(x, 2, H, N), va = qp_view4(ya, 2, H, N), vb = qp_view4(yb, 2, H, N);
    CHECK(a.p->quantizer->observe(a.q, &v) == 0 && a.p->quantizer->finalize(a.q) == 0);
    const float b1[H] = {0.01f, 0.02f, 0.0f}, b2[H] = {0.5f, 0.9f, 0.3f};
    set_interval(&a, b1, b2, H);
    qp_state st = {0};
    vitq_state_io io = qp_io(&st);
    CHECK_EQ(a.p->quantizer->save(a.q, &io), 0);
    CHECK_EQ(st.n[qp_find(&st, "b1")], (int64_t)H);
    CHECK_EQ(st.data[qp_find(&st, "state_version")][0], 1.0f);
    CHECK_MSG(b.p->quantizer->load(b.q, &io) == 0, "%s", b.ctx.msg);
    CHECK(a.p->quantizer->forward(a.q, &v, &va) == 0);
    CHECK(b.p->quantizer->forward(b.q, &v, &vb) == 0); /* loaded: no observe, no finalize */
    CHECK(memcmp(ya, yb, sizeof ya) == 0);
    /* refusals: another version, another number of heads, an infeasible interval */
    st.data[qp_find(&st, "state_version")][0] = 2;
    CHECK(b.p->quantizer->load(b.q, &io) < 0);
    CHECK_STR_CONTAINS(b.ctx.msg, "state version 2");
    st.data[qp_find(&st, "state_version")][0] = 1;
    st.data[qp_find(&st, "b1")][1] = 0.95f;
    CHECK(b.p->quantizer->load(b.q, &io) < 0);
    CHECK_STR_CONTAINS(b.ctx.msg, "violates");
    qp_drop(&b);
    const char *kl[] = {"bits=3", "init=minmax"};
    if (qp_make(&b, "dynamic_focus", &tap, kl, 2) == 0) {
        CHECK(b.p->quantizer->load(b.q, &io) < 0);
        CHECK_STR_CONTAINS(b.ctx.msg, "needs 1");
        qp_drop(&b);
    }
    qp_drop(&a);
}

TEST(dfq_refuses_bad_configurations) {
    qp_inst in;
    vitq_tap act = {.name = "blocks.0.mlp.fc2.input", .kind = VITQ_TAPK_ACT, .ndim = 3, .shape = {0, 5, 8},
                    .dims = {VITQ_DIM_BATCH, VITQ_DIM_TOKEN, VITQ_DIM_CHANNEL}};
    CHECK(qp_make(&in, "dynamic_focus", &act, NULL, 0) < 0);
    CHECK_STR_CONTAINS(in.ctx.msg, "post-Softmax");
    qp_drop(&in);
    vitq_tap tap = qp_probs_tap(2, 4);
    const char *kv[] = {"b1_shift_lo=6", "b1_shift_hi=4"};
    CHECK(qp_make(&in, "dynamic_focus", &tap, kv, 2) < 0);
    CHECK_STR_CONTAINS(in.ctx.msg, "b1_shift_lo");
    qp_drop(&in);
    /* forward before calibration, backward outside training, a head count that does not match */
    const char *kh[] = {"granularity=head", "init=minmax"};
    if (qp_make(&in, "dynamic_focus", &tap, kh, 2)) return;
    float x[3 * 4 * 4] = {0}, y[3 * 4 * 4];
    vitq_view v = qp_view4(x, 1, 3, 4), vy = qp_view4(y, 1, 3, 4), v2 = qp_view4(x, 1, 2, 4);
    CHECK(in.p->quantizer->forward(in.q, &v2, &vy) < 0);
    CHECK(in.p->quantizer->observe(in.q, &v) < 0);
    CHECK_STR_CONTAINS(in.ctx.msg, "granularity = head");
    CHECK(in.p->quantizer->observe(in.q, &v2) == 0 && in.p->quantizer->finalize(in.q) == 0);
    CHECK(in.p->quantizer->backward(in.q, &v2, &v2, NULL) < 0);
    qp_drop(&in);
}

/* ---- through the harness: calib_mode = search on a tiny model ------------------------------------ */

static vitq_model *tiny(void) {
    vitq_arch a = {.name = "tiny", .img_size = 8, .patch_size = 4, .in_chans = 1, .num_classes = 3,
                   .embed_dim = 8, .depth = 2, .num_heads = 2, .mlp_ratio = 2, .qkv_bias = 1,
                   .mean = {0.5f}, .std = {0.5f}, .crop_pct = 1, .interpolation = "bicubic"};
    vitq_model *m = NULL;
    vitq_err e;
    if (vitq_model_create(&a, &m, &e)) return NULL;
    uint64_t s = 7;
    for (int64_t i = 0; i < m->n_params; i++) m->slab[i] = (float)(4.0 * (qp_unif(&s) - 0.5)); /* peaky attention */
    for (int l = 0; l < 2; l++)
        for (int c = 0; c < 8; c++) m->p.blocks[l].norm1_w[c] += 1, m->p.blocks[l].norm2_w[c] += 1;
    return m;
}

typedef struct {
    int id[2];
    float *buf[2];
} grab2;

static int grab2_hook(void *ctx, int tap, float *x, int ndim, const int64_t *shape) {
    grab2 *g = ctx;
    for (int i = 0; i < 2; i++)
        if (g->id[i] == tap) {
            int64_t n = 1;
            for (int d = 0; d < ndim; d++) n *= shape[d];
            g->buf[i] = malloc(sizeof(float) * (size_t)n);
            memcpy(g->buf[i], x, sizeof(float) * (size_t)n);
        }
    return 0;
}

TEST(dfq_search_in_harness) {
    vitq_model *m = tiny();
    if (!m) return;
    enum { B = 6, H = 2, N = 5, D = 4 };
    float x[B * 64];
    for (int i = 0; i < B * 64; i++) x[i] = sinf((float)i * 0.37f) * 1.7f;
    vitq_err e;
    grab2 g = {.id = {vitq_tap_id(m, VITQ_SITE_PROBS, 1), vitq_tap_id(m, VITQ_SITE_V, 1)}};
    vitq_tap_hooks hk = {.act = grab2_hook, .ctx = &g};
    m->hooks = &hk;
    vitq_acts *a = NULL;
    CHECK(vitq_acts_create(m, B, 0, &a, &e) == 0 && vitq_forward(m, a, x, B, &e) == 0);
    vitq_acts_free(a);
    m->hooks = NULL;
    vitq_kv kv[4] = {{"taps", "blocks.1.attn.probs", "s.ini", 2}, {"plugin", "dynamic_focus", "s.ini", 3},
                     {"granularity", "head", "s.ini", 4}, {"bits", "3", "s.ini", 5}};
    vitq_section sec = {"quantizer p", kv, 4, "s.ini", 1};
    vitq_qmodel *q = NULL;
    CHECK_MSG(vitq_qmodel_create(m, &sec, 1, 1, &q, &e) == 0, "%s", e.msg);
    if (q && g.buf[0] && g.buf[1]) {
        CHECK_MSG(vitq_qmodel_calibrate_search(q, x, B, 1, &e) == 0, "%s", e.msg);
        /* brute force on the captured float P and V (V in float: no quantizer on it) */
        float c1[H * 45], c2[H * 45], *v = malloc(sizeof(float) * B * N * N), *Pq = malloc(sizeof(float) * B * H * N * N);
        vitq_qtensor t[2];
        CHECK(vitq_qmodel_tensors(q, "blocks.1.attn.probs", t, 2, &e) == 2);
        for (int h = 0; h < H; h++) {
            int64_t L = 0;
            for (int64_t i = 0; i < B * H * N * N; i++)
                if ((i / (N * N)) % H == h) v[L++] = g.buf[0][i];
            grid_candidates(v, L, c1 + h * 45, c2 + h * 45);
            double best = INFINITY, mine = INFINITY;
            for (int c = 0; c < 45; c++) {
                for (int64_t i = 0; i < B * H * N * N; i++) Pq[i] = ref_dfq(g.buf[0][i], c1[h * 45 + c], c2[h * 45 + c], 3, 0);
                double err = qp_head_error(g.buf[0], Pq, g.buf[1], B, H, N, D, h);
                best = fmin(best, err);
                if (c1[h * 45 + c] == t[0].value[h] && c2[h * 45 + c] == t[1].value[h]) mine = fmin(mine, err);
            }
            /* the harness sums float GEMM outputs: accept the pick when its error equals the minimum within rounding */
            CHECK_MSG(mine <= best * (1 + 1e-5) + 1e-12, "head %d: picked [%g, %g] with error %.9g, the least is %.9g", h,
                      (double)t[0].value[h], (double)t[1].value[h], mine, best);
        }
        free(v);
        free(Pq);
    }
    vitq_qmodel_free(q);
    free(g.buf[0]);
    free(g.buf[1]);
    vitq_model_free(m);
}
