/* test_aph_importance.c — the perturbation maps of aph_importance.h (specs/aphq-vit.md §3.2, §3.5, §7):
 *   O9, the float32 residual of the reference's ±1e-6;
 *   O10, the cancellation, on a float64 toy written here (3 tokens, 4 channels, one pre-LN residual MLP block,
 *   final LN, mean over tokens, 5-class head, KL at T = 20; exact gradients by forward-mode dual numbers):
 *   the published estimate |g(O + ε·1) − g(O − ε·1)| collapses to rounding in float64 while the float32
 *   perturbation's residual v gives |H·v|, and aph's central difference along v reproduces the reference's
 *   two-pass difference to leading order;
 *   the plugin code's float32 map on a tiny ViT: clearly non-zero, and ~0 when v is what exact arithmetic
 *   gives (a per-token constant); H·v symmetric and linear; per-sample and averaged maps agree;
 *   aph_diag against the Gauss-Newton diagonal Jᵀ(diag p − ppᵀ)J/(M·T²) of the tiny ViT (J by one backward
 *   per class, checked against finite differences of the logits): the exact expectation over labels to 1e-6,
 *   and the sampled estimate's error as large as its variance predicts. */
#include "test.h"

#include "../plugins/aph_importance.h"

#include <stdlib.h>
#include <string.h>

TEST(aph_importance_o9_float32_residual) {
    const float x[] = {0.3f, 0.7f, 1.5f, 3, 6, 12, 20, 40, 100, -0.7f, -20};
    const double want[] = {1.0133, 1.0133, 0.9537, 0.9537, 0.9537, 0.9537, 1.9073, 0, 0, 1.0133, 1.9073};
    for (int i = 0; i < 11; i++) {
        const double ratio = aph_fl32_residual(x[i]) / 2e-6;
        CHECK_MSG(fabs(ratio - want[i]) < 1e-4, "x = %g: ratio %.6f, expected %.4f", x[i], ratio, want[i]);
    }
    CHECK_EQ(APH_EPS, 9.99999997e-7f); /* fl32(1e-6), the constant the reference adds */
}

/* ---------------------------------------------------------------------------------------------
 * O10 on a float64 toy, exact derivatives by dual numbers
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    double v, d;
} dual;

static dual d_add(dual a, dual b) { return (dual){a.v + b.v, a.d + b.d}; }
static dual d_sub(dual a, dual b) { return (dual){a.v - b.v, a.d - b.d}; }
static dual d_mul(dual a, dual b) { return (dual){a.v * b.v, a.d * b.v + a.v * b.d}; }
static dual d_scale(dual a, double k) { return (dual){a.v * k, a.d * k}; }
static dual d_rsqrt(dual a) { const double r = 1 / sqrt(a.v); return (dual){r, -0.5 * a.d * r * r * r}; }
static dual d_exp(dual a) { const double e = exp(a.v); return (dual){e, a.d * e}; }
static dual d_log(dual a) { return (dual){log(a.v), a.d / a.v}; }
static dual d_gelu(dual a) {
    const double cdf = 0.5 * (1 + erf(a.v / sqrt(2.0))), pdf = exp(-0.5 * a.v * a.v) / sqrt(2 * M_PI);
    return (dual){a.v * cdf, a.d * (cdf + a.v * pdf)};
}

enum { TN = 3, TC = 4, TF = 8, TK = 5 };
typedef struct {
    double g1[TC], b1[TC], W1[TF][TC], c1[TF], W2[TC][TF], c2[TC], gf[TC], bf[TC], Wh[TK][TC], bh[TK];
} toy;

static void toy_init(toy *t) {
    uint64_t s = 12345;
    double *p = (double *)t;
    for (size_t i = 0; i < sizeof *t / sizeof(double); i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        p[i] = ((double)(s >> 11) * 0x1p-53 - 0.5) * 2; /* [-1, 1) */
    }
    for (int c = 0; c < TC; c++) t->g1[c] += 1.5, t->gf[c] += 1.5;
}

/* LayerNorm of one token (eps 1e-6). */
static void toy_ln(const dual *x, const double *g, const double *b, dual *y) {
    dual mean = {0, 0}, var = {0, 0};
    for (int c = 0; c < TC; c++) mean = d_add(mean, x[c]);
    mean = d_scale(mean, 1.0 / TC);
    for (int c = 0; c < TC; c++) var = d_add(var, d_mul(d_sub(x[c], mean), d_sub(x[c], mean)));
    const dual r = d_rsqrt(d_add(d_scale(var, 1.0 / TC), (dual){1e-6, 0}));
    for (int c = 0; c < TC; c++) y[c] = d_add(d_scale(d_mul(d_sub(x[c], mean), r), g[c]), (dual){b[c], 0});
}

/* The toy's logits / T at O (TN x TC): z = head(mean_n LN_f(O_n + MLP(LN(O_n)))) / 20. */
static void toy_logits(const toy *t, const dual *O, dual *z) {
    dual pool[TC] = {{0, 0}};
    for (int n = 0; n < TN; n++) {
        dual ln[TC], h[TF], r[TC], lf[TC];
        toy_ln(O + n * TC, t->g1, t->b1, ln);
        for (int f = 0; f < TF; f++) {
            dual a = {t->c1[f], 0};
            for (int c = 0; c < TC; c++) a = d_add(a, d_scale(ln[c], t->W1[f][c]));
            h[f] = d_gelu(a);
        }
        for (int c = 0; c < TC; c++) {
            dual m = {t->c2[c], 0};
            for (int f = 0; f < TF; f++) m = d_add(m, d_scale(h[f], t->W2[c][f]));
            r[c] = d_add(O[n * TC + c], m);
        }
        toy_ln(r, t->gf, t->bf, lf);
        for (int c = 0; c < TC; c++) pool[c] = d_add(pool[c], d_scale(lf[c], 1.0 / TN));
    }
    for (int k = 0; k < TK; k++) {
        z[k] = (dual){t->bh[k], 0};
        for (int c = 0; c < TC; c++) z[k] = d_add(z[k], d_scale(pool[c], t->Wh[k][c]));
        z[k] = d_scale(z[k], 1.0 / 20);
    }
}

/* KL(p ‖ softmax(z/T)) at O. */
static dual toy_kl(const toy *t, const dual *O, const double *p) {
    dual z[TK], mx = {-1e300, 0}, sum = {0, 0}, kl = {0, 0};
    toy_logits(t, O, z);
    for (int k = 0; k < TK; k++)
        if (z[k].v > mx.v) mx = z[k];
    for (int k = 0; k < TK; k++) sum = d_add(sum, d_exp(d_sub(z[k], mx)));
    const dual lse = d_add(mx, d_log(sum));
    for (int k = 0; k < TK; k++) kl = d_add(kl, d_scale(d_sub((dual){log(p[k]), 0}, d_sub(z[k], lse)), p[k]));
    return kl;
}

/* The teacher's probabilities softmax(z/T) at O0. */
static void toy_probs(const toy *t, const double *O0, double *p) {
    dual O[TN * TC], z[TK];
    for (int i = 0; i < TN * TC; i++) O[i] = (dual){O0[i], 0};
    toy_logits(t, O, z);
    double mx = z[0].v, sum = 0;
    for (int k = 1; k < TK; k++) mx = fmax(mx, z[k].v);
    for (int k = 0; k < TK; k++) sum += (p[k] = exp(z[k].v - mx));
    for (int k = 0; k < TK; k++) p[k] /= sum;
}

/* g = ∂KL/∂O at O, exactly (one dual pass per element). */
static void toy_grad(const toy *t, const double *Ov, const double *p, double *g) {
    dual O[TN * TC];
    for (int j = 0; j < TN * TC; j++) {
        for (int i = 0; i < TN * TC; i++) O[i] = (dual){Ov[i], i == j};
        g[j] = toy_kl(t, O, p).d;
    }
}

/* max_i |g(O0 + d) − g(O0 − d)| (diff NULL) and the signed differences into diff. */
static double toy_grad_diff(const toy *t, const double *O0, const double *dir, double k, const double *p, double *diff) {
    double up[TN * TC], dn[TN * TC], a[TN * TC], b[TN * TC], mx = 0;
    for (int i = 0; i < TN * TC; i++) a[i] = O0[i] + k * dir[i], b[i] = O0[i] - k * dir[i];
    toy_grad(t, a, p, up);
    toy_grad(t, b, p, dn);
    for (int i = 0; i < TN * TC; i++) {
        if (diff) diff[i] = up[i] - dn[i];
        mx = fmax(mx, fabs(up[i] - dn[i]));
    }
    return mx;
}

TEST(aph_importance_o10_exact_arithmetic_cancels_the_published_estimate) {
    toy t;
    toy_init(&t);
    /* float32-representable values over several binades: < 0.25, [0.25, 1), [1, 16), [16, 32), >= 32 */
    const float o32[TN * TC] = {0.3f, -1.7f, 5.2f, 18.5f, -0.12f, 2.4f, -33.0f, 0.8f, 7.1f, -0.6f, 1.2f, -22.0f};
    double O0[TN * TC], ones[TN * TC], rnd[TN * TC], p[TK];
    for (int i = 0; i < TN * TC; i++) O0[i] = o32[i], ones[i] = 1, rnd[i] = (i * 7 % 5) < 2 ? -1 : 1;
    toy_probs(&t, O0, p);
    double psum = 0;
    for (int k = 0; k < TK; k++) psum += p[k];
    CHECK_NEAR(psum, 1.0, 1e-12);
    /* the spec's check (ε = 1e-3): the all-ones perturbation vs a random ±ε direction */
    const double d_ones = toy_grad_diff(&t, O0, ones, 1e-3, p, NULL), d_rand = toy_grad_diff(&t, O0, rnd, 1e-3, p, NULL);
    printf("  eps 1e-3: |g(O+e1) - g(O-e1)| %.3g, random +-e direction %.3g\n", d_ones, d_rand);
    CHECK_MSG(d_ones < 1e-9 * d_rand, "all-ones %.3g vs random %.3g", d_ones, d_rand);
    /* the published estimate in float64 (O ± 1e-6 in double) against the float32 perturbation */
    double v64[TN * TC], v32[TN * TC], map64[TN * TC], ref32[TN * TC], hv[TN * TC];
    for (int i = 0; i < TN * TC; i++) v64[i] = (O0[i] + 1e-6) - (O0[i] - 1e-6), v32[i] = aph_fl32_residual(o32[i]);
    double up[TN * TC], dn[TN * TC], a[TN * TC], b[TN * TC];
    for (int i = 0; i < TN * TC; i++) a[i] = O0[i] + 1e-6, b[i] = O0[i] - 1e-6;
    toy_grad(&t, a, p, up), toy_grad(&t, b, p, dn);
    for (int i = 0; i < TN * TC; i++) map64[i] = up[i] - dn[i];
    for (int i = 0; i < TN * TC; i++) a[i] = (float)(o32[i] + APH_EPS), b[i] = (float)(o32[i] - APH_EPS);
    toy_grad(&t, a, p, up), toy_grad(&t, b, p, dn);
    for (int i = 0; i < TN * TC; i++) ref32[i] = up[i] - dn[i]; /* the reference: float32 O±, exact passes */
    /* aph's central difference along v32: h·max|v| = 1e-3·rms(O) */
    double ss = 0, vmax = 0, m64 = 0, m32 = 0, err = 0;
    for (int i = 0; i < TN * TC; i++) ss += O0[i] * O0[i], vmax = fmax(vmax, fabs(v32[i]));
    const double h = APH_STEP * sqrt(ss / (TN * TC)) / vmax;
    toy_grad_diff(&t, O0, v32, h, p, hv);
    for (int i = 0; i < TN * TC; i++) {
        hv[i] /= 2 * h;
        m64 = fmax(m64, fabs(map64[i])), m32 = fmax(m32, fabs(ref32[i])), err = fmax(err, fabs(hv[i] - ref32[i]));
    }
    printf("  float64 map max %.3g (v = 2e-6 everywhere), float32 map max %.3g; aph's H.v vs it: max error %.3g\n",
           m64, m32, err);
    CHECK_MSG(m32 > 0, "the float32 map is %.3g", m32);
    CHECK_MSG(m64 < 1e-6 * m32, "float64 %.3g does not collapse against float32 %.3g", m64, m32);
    CHECK_MSG(err < 1e-4 * m32, "central difference along v: error %.3g of %.3g", err, m32);
    (void)v64;
}

/* ---------------------------------------------------------------------------------------------
 * The plugin code on a tiny ViT (float32)
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    vitq_model *teacher, *student;
    vitq_dataset *data;
    int64_t *order;
    vitq_session *s;
    const vitq_session_api *api;
    vitq_host host;
    vitq_host_ctx hc;
    float *probs;
} fixture;

enum { NIMG = 64, KCLS = 10, MB = 16 };

/* The t28 ViT of test_aph_recon.c (patch 7, dim 16, depth 2, random weights), float only; a session over
 * the first 64 images of a seeded order of Fashion-MNIST's training split, the teacher's probabilities. */
static int setup(fixture *f) {
    memset(f, 0, sizeof *f);
    vitq_arch a = {.name = "t28", .img_size = 28, .patch_size = 7, .in_chans = 1, .num_classes = KCLS,
                   .embed_dim = 16, .depth = 2, .num_heads = 2, .mlp_ratio = 2, .qkv_bias = 1,
                   .mean = {0.2860f}, .std = {0.3530f}, .crop_pct = 1, .interpolation = "bicubic"};
    vitq_err e;
    vitq_data_opts o = {.img_size = 28, .in_chans = 1, .mean = {0.2860f}, .std = {0.3530f}, .crop_pct = 1};
    int rc = vitq_model_create(&a, &f->teacher, &e);
    if (!rc) rc = vitq_dataset_open("fashion-mnist", "train", &o, &f->data, &e);
    if (!rc) {
        vitq_model_init_train(f->teacher, 3, 0.2f);
        for (int64_t i = 0; i < f->teacher->n_params; i++) f->teacher->slab[i] += 0.05f * (float)((i * 7919) % 13 - 6);
        rc = vitq_model_clone(f->teacher, &f->student, &e);
    }
    if (!rc) {
        f->order = vitq_calib_subset(11, vitq_dataset_size(f->data), NIMG);
        vitq_session_cfg c = {.teacher = f->teacher, .student = f->student, .data = f->data, .order = f->order,
                              .n_order = NIMG, .seed = 5, .batch = 16};
        rc = vitq_session_create(&c, &f->s, &e);
    }
    if (rc) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return -1;
    }
    f->api = vitq_session_services();
    vitq_host_init(&f->host, &f->hc, "test", "test", 1);
    f->probs = malloc(sizeof(float) * NIMG * KCLS);
    rc = f->api->images(f->s, NIMG);
    if (!rc) rc = aph_teacher_probs(f->s, f->api, NIMG, 16, 20, f->probs);
    CHECK(rc == 0);
    return rc;
}

static void teardown(fixture *f) {
    vitq_session_free(f->s);
    vitq_model_free(f->student);
    vitq_model_free(f->teacher);
    vitq_dataset_free(f->data);
    free(f->order);
    free(f->probs);
}

static double max_abs(const float *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

static double dot(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* aph at blocks.0's output on 8 samples: v = the float32 residual gives a clearly non-zero H·v; v = 2e-6
 * everywhere (what (O + 1e-6) − (O − 1e-6) is in exact arithmetic) gives ~0; a random ±2e-6 direction
 * gives H·v of the float32 residual's order. H·v is symmetric (wᵀHv = vᵀHw) and linear, and does not
 * depend on the step. */
TEST(aph_importance_aph_map_float32_nonzero_exact_v_collapses) {
    fixture f;
    if (setup(&f)) {
        teardown(&f);
        return;
    }
    vitq_unit_info ui;
    f.api->unit(f.s, 1, &ui);
    const int64_t P = ui.out_numel;
    const int B = 8;
    aph_pert c = {.s = f.s, .api = f.api, .u_out = 1, .u_tail = 2, .M = MB, .T = 20, .eta = APH_STEP,
                  .probs = f.probs, .K = KCLS, .P = P};
    CHECK(aph_pert_alloc(&c, B) == 0);
    float *O = malloc(sizeof(float) * B * P), *v = malloc(sizeof(float) * B * P), *w = malloc(sizeof(float) * B * P);
    float *hv = malloc(sizeof(float) * B * P), *hc = malloc(sizeof(float) * B * P), *hr = malloc(sizeof(float) * B * P);
    float *hw = malloc(sizeof(float) * B * P), *hs = malloc(sizeof(float) * B * P), *ref = malloc(sizeof(float) * 2 * B * P);
    int64_t idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    CHECK(f.api->io(f.s, 1, VITQ_IO_FP_OUT, idx, B, O) == 0);
    aph_rng r = {99};
    for (int64_t i = 0; i < B * P; i++) {
        v[i] = aph_fl32_residual(O[i]);
        w[i] = aph_rng_unit(&r) < 0.5 ? -2e-6f : 2e-6f;
    }
    CHECK(aph_hv(&c, O, v, f.probs, B, hv) == 0);
    CHECK(aph_hv(&c, O, w, f.probs, B, hr) == 0);
    for (int64_t i = 0; i < B * P; i++) w[i] = 2e-6f; /* exact arithmetic's v */
    CHECK(aph_hv(&c, O, w, f.probs, B, hc) == 0);
    const double m32 = max_abs(hv, B * P), mc = max_abs(hc, B * P), mr = max_abs(hr, B * P);
    printf("  |H.v| max: float32 residual %.3g, exact-arithmetic v (2e-6 everywhere) %.3g, random +-2e-6 %.3g\n", m32,
           mc, mr);
    CHECK_MSG(m32 > 0, "the float32 map is %.3g", m32);
    CHECK_MSG(mc < 1e-2 * m32, "exact v: %.3g vs float32 %.3g", mc, m32);
    CHECK_MSG(mr > m32, "random direction %.3g vs float32 residual %.3g", mr, m32);
    /* symmetry and linearity, per sample: wᵀ(Hv) = vᵀ(Hw), H(v + w) = Hv + Hw; another step */
    for (int64_t i = 0; i < B * P; i++) w[i] = (float)((aph_rng_unit(&r) - 0.5) * 4e-6);
    CHECK(aph_hv(&c, O, w, f.probs, B, hw) == 0);
    for (int b = 0; b < B; b++) { /* to 1 % of the sum of the products' magnitudes (the sums cancel) */
        const double a1 = dot(w + b * P, hv + b * P, P), a2 = dot(v + b * P, hw + b * P, P);
        double scale = 0;
        for (int64_t i = 0; i < P; i++) scale += fabs((double)w[b * P + i] * hv[b * P + i]) + fabs((double)v[b * P + i] * hw[b * P + i]);
        CHECK_MSG(fabs(a1 - a2) <= 1e-2 * scale, "sample %d: w.Hv %.6g, v.Hw %.6g (scale %.3g)", b, a1, a2, scale);
    }
    for (int64_t i = 0; i < B * P; i++) w[i] += v[i];
    CHECK(aph_hv(&c, O, w, f.probs, B, hs) == 0);
    double lin = 0;
    for (int64_t i = 0; i < B * P; i++) lin = fmax(lin, fabs(hs[i] - hw[i] - hv[i]));
    CHECK_MSG(lin < 2e-3 * max_abs(hs, B * P), "H(v + w) - Hv - Hw: %.3g of %.3g", lin, max_abs(hs, B * P));
    c.eta = 1e-2;
    CHECK(aph_hv(&c, O, v, f.probs, B, hs) == 0);
    double dstep = 0;
    for (int64_t i = 0; i < B * P; i++) dstep = fmax(dstep, fabs(hs[i] - hv[i]));
    printf("  step 1e-2 vs 1e-3: max difference %.3g of %.3g\n", dstep, m32);
    CHECK_MSG(dstep < 1e-2 * m32, "step dependence %.3g of %.3g", dstep, m32);
    /* the reference's two float32 passes at fl32(O ± 1e-6): the same map to leading order, plus noise */
    float *Xr = malloc(sizeof(float) * 2 * B * P), *pp = malloc(sizeof(float) * 2 * B * KCLS);
    for (int64_t i = 0; i < B * P; i++) Xr[i] = O[i] + APH_EPS, Xr[B * P + i] = O[i] - APH_EPS;
    memcpy(pp, f.probs, sizeof(float) * B * KCLS), memcpy(pp + B * KCLS, f.probs, sizeof(float) * B * KCLS);
    CHECK(aph_kl_grad_at(f.s, f.api, 2, Xr, 2 * B, MB, 20, pp, &c.w, ref) == 0);
    double num = 0, den = 0, sr = 0, sh = 0;
    for (int64_t i = 0; i < B * P; i++) {
        const double d = (double)ref[i] - ref[B * P + i];
        num += (d - hv[i]) * (d - hv[i]), den += (double)hv[i] * hv[i], sr += fabs(d), sh += fabs(hv[i]);
    }
    printf("  reference two-pass float32 |g+ - g-| vs |H.v|: sums %.4g vs %.4g, relative L2 difference %.3g\n", sr, sh,
           sqrt(num / den));
    free(Xr), free(pp);
    aph_pert_free(&c);
    free(O), free(v), free(w), free(hv), free(hc), free(hr), free(hw), free(hs), free(ref);
    teardown(&f);
}

/* The whole map through aph_imp_compute: averaged (rows 1) and per sample (rows n), each normalised to mean
 * 1; the averaged map is the mean of the per-sample rows up to that normalisation. */
TEST(aph_importance_aph_map_per_sample_and_averaged) {
    fixture f;
    if (setup(&f)) {
        teardown(&f);
        return;
    }
    aph_imp avg, per;
    aph_imp_cfg cf = {.imp = APH_IMP_APH, .n = NIMG, .batch = MB, .T = 20, .probs = f.probs, .per_sample = 0,
                      .norm = APH_NORM_MEAN};
    CHECK(aph_imp_compute(f.s, f.api, &f.host, &cf, 1, &avg) == 0);
    cf.per_sample = 1;
    CHECK(aph_imp_compute(f.s, f.api, &f.host, &cf, 1, &per) == 0);
    CHECK_EQ(avg.rows, 1);
    CHECK_EQ(per.rows, NIMG);
    if (avg.map && per.map) {
        const int64_t P = avg.P;
        double s = 0;
        for (int64_t i = 0; i < P; i++) s += avg.map[i];
        CHECK_NEAR(s / P, 1.0, 1e-5);
        for (int64_t i = 0; i < P; i++) {
            double m = 0;
            for (int b = 0; b < NIMG; b++) m += per.map[b * P + i];
            CHECK_NEAR(avg.map[i], m / NIMG, 1e-4 * (1 + avg.map[i]));
        }
    }
    aph_imp_free(&avg), aph_imp_free(&per);
    cf.norm = APH_NORM_RMS, cf.per_sample = 0;
    CHECK(aph_imp_compute(f.s, f.api, &f.host, &cf, 1, &avg) == 0);
    double ss = 0;
    for (int64_t i = 0; avg.map && i < avg.P; i++) ss += (double)avg.map[i] * avg.map[i];
    CHECK_NEAR(sqrt(ss / (double)avg.P), 1.0, 1e-5);
    aph_imp_free(&avg);
    cf.imp = APH_IMP_APH; /* the head unit has no map */
    CHECK(aph_imp_compute(f.s, f.api, &f.host, &cf, 3, &avg) == 0);
    CHECK(avg.map == NULL);
    teardown(&f);
}

/* ---------------------------------------------------------------------------------------------
 * aph_diag against the exact Gauss-Newton diagonal
 * ------------------------------------------------------------------------------------------- */
/* J (K x P) = ∂logits/∂O of sample O (P) through the tail from unit u_tail: one backward per class. */
static int jacobian(fixture *f, int u_tail, const float *O, int64_t P, float *J) {
    float *X = malloc(sizeof(float) * KCLS * P), z[KCLS * KCLS], e[KCLS * KCLS];
    for (int k = 0; k < KCLS; k++) memcpy(X + k * P, O, sizeof(float) * P);
    for (int k = 0; k < KCLS * KCLS; k++) e[k] = k / KCLS == k % KCLS;
    int rc = f->api->tail_forward(f->s, u_tail, X, KCLS, z);
    if (!rc) rc = f->api->tail_backward(f->s, u_tail, e, KCLS, J);
    free(X);
    return rc;
}

/* For sample b: the exact diagonal gn (P), and var (P) = Var_{y∼p}(g_y²)/M² (one label's variance). */
static void gauss_newton(const float *J, const float *p, int64_t P, double *gn, double *var) {
    const double T = 20, M = MB;
    for (int64_t i = 0; i < P; i++) {
        double s1 = 0, sp = 0, m4 = 0;
        for (int k = 0; k < KCLS; k++) s1 += p[k] * (double)J[k * P + i] * J[k * P + i], sp += p[k] * (double)J[k * P + i];
        gn[i] = (s1 - sp * sp) / (M * T * T);
        for (int y = 0; y < KCLS; y++) { /* g_y = Jᵀ(p − e_y)/T */
            const double g = (sp - J[y * P + i]) / T;
            m4 += p[y] * g * g * g * g;
        }
        var[i] = m4 / (M * M) - gn[i] * gn[i];
    }
}

TEST(aph_importance_aph_diag_is_the_gauss_newton_diagonal) {
    fixture f;
    if (setup(&f)) {
        teardown(&f);
        return;
    }
    vitq_unit_info ui;
    f.api->unit(f.s, 1, &ui);
    const int64_t P = ui.out_numel;
    float *O = malloc(sizeof(float) * NIMG * P), *J = malloc(sizeof(float) * KCLS * P), z[2 * KCLS];
    double *gn = malloc(sizeof(double) * NIMG * P), *var = malloc(sizeof(double) * NIMG * P);
    int64_t all[NIMG];
    for (int b = 0; b < NIMG; b++) all[b] = b;
    CHECK(f.api->io(f.s, 1, VITQ_IO_FP_OUT, all, NIMG, O) == 0);
    double jerr = 0, jmax = 0;
    for (int b = 0; b < NIMG; b++) {
        CHECK(jacobian(&f, 2, O + b * P, P, J) == 0);
        gauss_newton(J, f.probs + b * KCLS, P, gn + b * P, var + b * P);
        for (int t = 0; b < 2 && t < 6; t++) { /* J against finite differences of the logits */
            const int64_t i = (t * 53 + b * 11) % P;
            float X[2 * 4096];
            memcpy(X, O + b * P, sizeof(float) * P), memcpy(X + P, O + b * P, sizeof(float) * P);
            const float h = 1e-2f;
            X[i] += h, X[P + i] -= h;
            CHECK(f.api->tail_forward(f.s, 2, X, 2, z) == 0);
            for (int k = 0; k < KCLS; k++) {
                jerr = fmax(jerr, fabs((z[k] - z[KCLS + k]) / ((double)X[i] - X[P + i]) - J[k * P + i]));
                jmax = fmax(jmax, fabs(J[k * P + i]));
            }
        }
    }
    printf("  J vs finite differences of the logits: max error %.3g of %.3g\n", jerr, jmax);
    CHECK_MSG(jerr < 1e-2 * jmax, "J: %.3g of %.3g", jerr, jmax);
    /* the exact expectation over labels (labels = 0): the diagonal to 1e-6 of its largest entry */
    aph_imp_cfg cf = {.imp = APH_IMP_APH_DIAG, .n = NIMG, .batch = MB, .T = 20, .probs = f.probs, .per_sample = 1,
                      .labels = 0, .norm = APH_NORM_MEAN};
    vitq_unit_info hi;
    f.api->unit(f.s, 3, &hi);
    aph_imp ex = {0}, sm = {0};
    CHECK(aph_perturbation_map(f.s, f.api, &f.host, &cf, &ui, 1, "diag exact", &ex) == 0);
    double gmax = 0, e1 = 0;
    for (int64_t i = 0; i < NIMG * P; i++) gmax = fmax(gmax, gn[i]);
    for (int64_t i = 0; ex.map && i < NIMG * P; i++) e1 = fmax(e1, fabs(ex.map[i] - gn[i]));
    printf("  aph_diag, exact expectation: max error %.3g of %.3g (relative %.2g)\n", e1, gmax, e1 / gmax);
    CHECK_MSG(e1 <= 1e-6 * gmax, "exact: %.3g of %.3g", e1, gmax);
    /* L sampled labels per image: Σ (est − gn)² over every image and element against its expectation
     * Σ var/L (64 images × ~9 independent label directions: the ratio's spread is ~±10 %) */
    const int L = 64;
    cf.labels = L;
    CHECK(aph_perturbation_map(f.s, f.api, &f.host, &cf, &ui, 1, "diag sampled", &sm) == 0);
    double se = 0, ev = 0, ae = 0, an = 0;
    for (int64_t i = 0; sm.map && i < NIMG * P; i++) se += (sm.map[i] - gn[i]) * (sm.map[i] - gn[i]), ev += var[i] / L;
    for (int64_t i = 0; sm.map && i < P; i++) { /* the averaged map's relative error */
        double a = 0, g = 0;
        for (int b = 0; b < NIMG; b++) a += sm.map[b * P + i], g += gn[b * P + i];
        ae += (a - g) * (a - g), an += g * g;
    }
    printf("  aph_diag, %d labels: squared error %.3g, its expectation %.3g (ratio %.3f); averaged map relative "
           "error %.3g\n", L, se, ev, se / ev, sqrt(ae / an));
    CHECK_MSG(se > 0.6 * ev && se < 1.6 * ev, "sampled: squared error %.3g, expected %.3g", se, ev);
    aph_imp_free(&ex), aph_imp_free(&sm);
    free(O), free(J), free(gn), free(var);
    teardown(&f);
}
