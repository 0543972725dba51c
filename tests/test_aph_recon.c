/* test_aph_recon.c — the aph_recon pass (plugins/aph_recon.c, aph_loss.h, aph_importance.h):
 *   its arithmetic against specs/aphq-vit.md §7 (O4 the rounding schedule, O5 the cosine rate), the QDrop
 *   input mix (drop_prob 1 → Q_IN exactly, 0 → FP_IN exactly, 0.5 → about half of each, every value one
 *   or the other), batches of distinct samples, the losses' gradients against finite differences;
 *   the Fisher map of a unit against finite differences of the teacher tail's KL;
 *   and the plugin run on a session over a tiny random ViT: a short reconstruction lowers each unit's
 *   loss and records its curves, only activation scales train by default, AdaRound's decisions are hard
 *   after commit, and a run stopped after unit k resumes at unit k + 1 and ends bit-identical to an
 *   uninterrupted one (quantizer tensors, quantized weights, curves). */
#include "test.h"

#include "../plugins/aph_importance.h"
#include "../plugins/aph_loss.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------
 * The arithmetic
 * ------------------------------------------------------------------------------------------- */
TEST(aph_recon_rounding_schedule_o4_and_cosine_o5) {
    const int64_t T = 20000;
    const int64_t t[] = {1, 3999, 4000, 8000, 12000, 16000, 20000};
    const double beta[] = {20, 20, 20, 15.5, 11, 6.5, 2}, weight[] = {0, 0, 0.01, 0.01, 0.01, 0.01, 0.01};
    for (int i = 0; i < 7; i++) {
        CHECK_NEAR(aph_beta(t[i], T, 0.2, 20, 2), beta[i], 1e-12);
        CHECK_EQ(aph_round_weight(t[i], T, 0.2, 0.01), weight[i]);
    }
    CHECK_EQ(aph_round_weight(399, 2000, 0.2, 0.01), 0.0); /* the INI's 2000: on from iteration 400 */
    CHECK_EQ(aph_round_weight(400, 2000, 0.2, 0.01), 0.01);
    CHECK_EQ(aph_beta(5, 5, 1.0, 20, 2), 2.0);             /* warm-up over everything: no 0/0 */
    /* O4's rounding term at h = 0.25 */
    CHECK_NEAR(1 - pow(fabs(2 * 0.25 - 1), aph_beta(4000, T, 0.2, 20, 2)), 0.999999046, 1e-9);
    CHECK_NEAR(1 - pow(fabs(2 * 0.25 - 1), aph_beta(20000, T, 0.2, 20, 2)), 0.75, 1e-12);
    /* O5 */
    CHECK_NEAR(aph_cosine_lr(0, T, 4e-5), 4e-5, 1e-18);
    CHECK_NEAR(aph_cosine_lr(5000, T, 4e-5), 3.41421e-5, 1e-10);
    CHECK_NEAR(aph_cosine_lr(10000, T, 4e-5), 2e-5, 1e-15);
    CHECK_NEAR(aph_cosine_lr(15000, T, 4e-5), 5.85786e-6, 1e-11);
    CHECK_NEAR(aph_cosine_lr(19999, T, 4e-5), 2.47e-13, 0.01e-13);
}

/* A stand-in for the pool: fn over uneven chunks of [0, n), the last chunk first. */
static void uneven_pool(int64_t n, vitq_plugin_range_fn fn, void *ctx) {
    const int64_t cut[4] = {0, n / 7, n / 2 + 3, n};
    for (int c = 2; c >= 0; c--) fn(ctx, cut[c], cut[c + 1]);
}

TEST(aph_recon_qdrop_input_mix) {
    enum { N = 100000 };
    float *q = malloc(sizeof(float) * N), *fp = malloc(sizeof(float) * N), *x = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++) q[i] = (float)i + 0.5f, fp[i] = -(float)i - 0.25f;
    aph_rng r = {42};
    aph_mix_input(&r, 1.0, q, fp, x, N, NULL);
    CHECK_EQ(memcmp(x, q, sizeof(float) * N), 0);
    aph_mix_input(&r, 0.0, q, fp, x, N, NULL);
    CHECK_EQ(memcmp(x, fp, sizeof(float) * N), 0);
    aph_mix_input(&r, 0.5, q, fp, x, N, NULL);
    int nq = 0, nf = 0;
    for (int i = 0; i < N; i++) nq += x[i] == q[i], nf += x[i] == fp[i];
    CHECK_EQ(nq + nf, N); /* every value is exactly one of the two */
    CHECK_NEAR((double)nq / N, 0.5, 0.01);
    aph_mix_input(&r, 0.9, q, fp, x, N, NULL);
    nq = 0;
    for (int i = 0; i < N; i++) nq += x[i] == q[i];
    CHECK_NEAR((double)nq / N, 0.9, 0.01); /* drop_prob is the probability of the QUANTIZED value */
    /* in chunks on a pool (here: uneven chunks, last first) the same bits, and the stream ends where one
     * thread leaves it: the next mix too is the same */
    float *y = malloc(sizeof(float) * N);
    aph_rng r1 = {99}, r2 = {99};
    for (int k = 0; k < 2; k++) {
        aph_mix_input(&r1, 0.5, q, fp, x, N, NULL);
        aph_mix_input(&r2, 0.5, q, fp, y, N, uneven_pool);
        CHECK_EQ(memcmp(x, y, sizeof(float) * N), 0);
        CHECK_EQ(r1.s, r2.s);
    }
    free(q), free(fp), free(x), free(y);
}

/* The mix's integer comparison (draw >> 11 < ⌈p·2^53⌉, in vector lanes) against the stream drawn one value
 * at a time as doubles, aph_rng_unit(r) < p, for p with p·2^53 whole (0.5, 0.25) and not (0.9, 1/3), and
 * for p one ulp either side of a drawn value in [1/4, 1/2), where a threshold rounded down would show. */
TEST(aph_recon_qdrop_mix_equals_draw_by_draw) {
    enum { N = 4099 };
    float q[N], fp[N], x[N];
    for (int i = 0; i < N; i++) q[i] = (float)i + 0.5f, fp[i] = -(float)i - 0.25f;
    aph_rng probe = {5};
    double u = 1;
    for (int i = 0; i < N && !(u >= 0.25 && u < 0.5); i++) u = aph_rng_unit(&probe);
    CHECK(u >= 0.25 && u < 0.5); /* a draw whose neighbours' p·2^53 are not whole (ulp 2^-54) */
    const double ps[] = {0.5, 0.25, 0.9, 1.0 / 3.0, u, nextafter(u, 0), nextafter(u, 1)};
    for (size_t k = 0; k < sizeof ps / sizeof *ps; k++) {
        aph_rng r = {5}, ref = {5};
        aph_mix_input(&r, ps[k], q, fp, x, N, NULL);
        int bad = 0;
        for (int i = 0; i < N; i++) bad += x[i] != (aph_rng_unit(&ref) < ps[k] ? q[i] : fp[i]);
        CHECK_EQ(bad, 0);
        CHECK_EQ(r.s, ref.s);
    }
}

TEST(aph_recon_batches_are_distinct_and_uniform) {
    enum { N = 50, B = 32, DRAWS = 2000 };
    int64_t perm[N], idx[B];
    int count[N] = {0};
    for (int i = 0; i < N; i++) perm[i] = i;
    aph_rng r = {7};
    for (int d = 0; d < DRAWS; d++) {
        aph_draw_batch(&r, perm, N, B, idx);
        int seen[N] = {0};
        for (int b = 0; b < B; b++) {
            CHECK(idx[b] >= 0 && idx[b] < N);
            CHECK_EQ(seen[idx[b]], 0);
            seen[idx[b]] = 1, count[idx[b]]++;
        }
    }
    for (int i = 0; i < N; i++) CHECK_NEAR(count[i], DRAWS * B / (double)N, 0.1 * DRAWS * B / N);
    aph_rng a = {9}, b = {9}; /* the same seed draws the same batches */
    int64_t p1[N], p2[N], i1[B], i2[B];
    for (int i = 0; i < N; i++) p1[i] = p2[i] = i;
    aph_draw_batch(&a, p1, N, B, i1);
    aph_draw_batch(&b, p2, N, B, i2);
    CHECK_EQ(memcmp(i1, i2, sizeof i1), 0);
}

/* KL(softmax(y) ‖ softmax(yh)) in double, for the finite differences below. */
static double kl_of(const float *yh, const float *y, int K) {
    float g[16];
    return aph_kl_sum(yh, y, 1, K, g);
}

TEST(aph_recon_losses_and_their_gradients) {
    const float y[5] = {0.3f, -1.2f, 2.0f, 0.1f, -0.4f}, yh0[5] = {0.1f, -0.7f, 1.6f, 0.5f, -0.9f};
    float g[5], yh[5];
    aph_kl_sum(yh0, y, 1, 5, g);
    for (int k = 0; k < 5; k++) {
        memcpy(yh, yh0, sizeof yh);
        yh[k] += 1e-3f;
        double up = kl_of(yh, y, 5);
        yh[k] -= 2e-3f;
        double down = kl_of(yh, y, 5);
        CHECK_NEAR(g[k], (up - down) / ((double)(yh0[k] + 1e-3f) - (double)(yh0[k] - 1e-3f)), 1e-5);
    }
    CHECK_NEAR(kl_of(y, y, 5), 0.0, 1e-12);
    /* weighted squared error and its gradient: d/dyh of k·Σ w (yh − y)² */
    const float w[5] = {1, 2, 0.5f, 0, 3};
    float dy[5];
    double s = aph_wse(yh0, y, w, 5);
    aph_wse_grad(yh0, y, w, 5, 0.25, dy);
    double want = 0;
    for (int i = 0; i < 5; i++) {
        want += w[i] * ((double)yh0[i] - y[i]) * ((double)yh0[i] - y[i]);
        CHECK_NEAR(dy[i], 0.25 * 2 * w[i] * ((double)yh0[i] - y[i]), 1e-7);
    }
    CHECK_NEAR(s, want, 1e-12);
    CHECK_NEAR(aph_wse(yh0, y, NULL, 5), aph_wse(yh0, y, (const float[]){1, 1, 1, 1, 1}, 5), 1e-15);
    { /* 4 samples side by side (one unweighted): each aph_wse's bits, over a long sample */
        enum { P = 4801 };
        float *buf = malloc(sizeof(float) * 12 * P);
        for (int i = 0; i < 12 * P; i++) buf[i] = (float)((i * 2654435761u) % 100003) / 7919.0f - 6.0f;
        const float *a4[4], *b4[4], *w4[4];
        for (int q = 0; q < 4; q++) a4[q] = buf + q * P, b4[q] = buf + (4 + q) * P, w4[q] = q == 2 ? NULL : buf + 8 * P;
        double got[4];
        aph_wse4(a4, b4, w4, P, got);
        for (int q = 0; q < 4; q++) {
            const double one = aph_wse(a4[q], b4[q], w4[q], P);
            CHECK_MSG(memcmp(&one, &got[q], sizeof one) == 0, "sample %d: %.17g != aph_wse's %.17g", q, got[q], one);
        }
        free(buf);
    }
    /* current: 2 at the first call, 2·rec/rec1 after; original: rec, no division */
    double rec1 = 0, k = 0;
    CHECK_EQ(aph_rec_term(APH_LOSS_CURRENT, 0.125, &rec1, &k), 2.0);
    CHECK_EQ(rec1, 0.125);
    CHECK_EQ(k, 16.0);
    CHECK_EQ(aph_rec_term(APH_LOSS_CURRENT, 0.0625, &rec1, &k), 1.0);
    CHECK_EQ(aph_rec_term(APH_LOSS_ORIGINAL, 0.0625, &rec1, &k), 0.0625);
    CHECK_EQ(k, 1.0);
    /* original = (1/10)·mean over (batch, channels) of the sum over tokens: (N/10)·mean */
    CHECK_NEAR(aph_rec_factor(APH_LOSS_ORIGINAL, 32, 50 * 96, 50), 50.0 / (10.0 * 32 * 50 * 96), 1e-20);
    CHECK_NEAR(aph_rec_factor(APH_LOSS_CURRENT, 32, 50 * 96, 50), 1.0 / (32.0 * 50 * 96), 1e-20);
}

/* ---------------------------------------------------------------------------------------------
 * A session over a tiny random ViT
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    vitq_model *teacher, *student;
    vitq_dataset *data;
    int64_t *order;
    vitq_qmodel *q;
    vitq_session *s;
    const vitq_session_api *api;
} fixture;

/* 1 if the uniform plugin has AdaRound (`rounding = adaround`, the uniform branch's ABI-2 upgrade). */
static int uniform_has_adaround(void) {
    const vitq_plugin *p;
    vitq_err e;
    if (vitq_plugin_load("uniform", NULL, &p, &e)) return 0;
    for (int i = 0; i < p->n_params; i++)
        if (!strcmp(p->params[i].name, "rounding")) return 1;
    return 0;
}

/* A 28x28 ViT (patch 7, dim 16, depth 2) with random weights at W4A4: every weight per channel (AdaRound
 * when uniform has it; learnable scales when w_learnable), the image, every block activation and the head
 * input per tensor with learnable scales; calibrated on 32 Fashion-MNIST training images; a session over the
 * first 64 images of a seeded order. */
static int setup(fixture *f, const char *state_path, int w_learnable) {
    static vitq_kv kw[8], ka[8];
    static vitq_section secs[2];
    int nw = 0, na = 0;
    kw[nw++] = (vitq_kv){"taps", "*.weight", "t.ini", 2};
    kw[nw++] = (vitq_kv){"plugin", "uniform", "t.ini", 3};
    kw[nw++] = (vitq_kv){"bits", "4", "t.ini", 4};
    kw[nw++] = (vitq_kv){"granularity", "per_channel", "t.ini", 5};
    if (uniform_has_adaround()) kw[nw++] = (vitq_kv){"rounding", "adaround", "t.ini", 6};
    if (w_learnable) kw[nw++] = (vitq_kv){"learnable", "true", "t.ini", 7};
    ka[na++] = (vitq_kv){"taps", "patch_embed.proj.input, blocks.*.input, blocks.*.attn.q, blocks.*.attn.k, "
                                 "blocks.*.attn.v, blocks.*.attn.probs, head.input", "t.ini", 9};
    ka[na++] = (vitq_kv){"plugin", "uniform", "t.ini", 10};
    ka[na++] = (vitq_kv){"bits", "4", "t.ini", 11};
    ka[na++] = (vitq_kv){"learnable", "true", "t.ini", 12};
    ka[na++] = (vitq_kv){"grad_scale", "false", "t.ini", 13};
    secs[0] = (vitq_section){"quantizer w", kw, nw, "t.ini", 1};
    secs[1] = (vitq_section){"quantizer a", ka, na, "t.ini", 8};
    memset(f, 0, sizeof *f);
    vitq_arch a = {.name = "t28", .img_size = 28, .patch_size = 7, .in_chans = 1, .num_classes = 10,
                   .embed_dim = 16, .depth = 2, .num_heads = 2, .mlp_ratio = 2, .qkv_bias = 1,
                   .mean = {0.2860f}, .std = {0.3530f}, .crop_pct = 1, .interpolation = "bicubic"};
    vitq_err e;
    vitq_data_opts o = {.img_size = 28, .in_chans = 1, .mean = {0.2860f}, .std = {0.3530f}, .crop_pct = 1};
    if (vitq_model_create(&a, &f->teacher, &e) || vitq_dataset_open("fashion-mnist", "train", &o, &f->data, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return -1;
    }
    vitq_model_init_train(f->teacher, 3, 0.2f);
    for (int64_t i = 0; i < f->teacher->n_params; i++) f->teacher->slab[i] += 0.02f * (float)((i * 7919) % 13 - 6);
    vitq_model_clone(f->teacher, &f->student, &e);
    f->order = vitq_calib_subset(11, vitq_dataset_size(f->data), 64);
    float *img = malloc(sizeof(float) * 32 * 784);
    int rc = vitq_dataset_load(f->data, f->order, 32, img, NULL, &e);
    if (!rc) rc = vitq_qmodel_create(f->student, secs, 2, 5, &f->q, &e);
    if (!rc) rc = vitq_qmodel_calibrate(f->q, img, 32, "float", &e);
    free(img);
    vitq_session_cfg c = {.teacher = f->teacher, .student = f->student, .data = f->data, .order = f->order,
                          .n_order = 64, .seed = 5, .batch = 16, .state_path = state_path, .state_key = "k1"};
    if (!rc) rc = vitq_session_create(&c, &f->s, &e);
    if (rc) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return -1;
    }
    vitq_session_set_qmodel(f->s, f->q);
    f->api = vitq_session_services();
    return 0;
}

static void teardown(fixture *f) {
    vitq_session_free(f->s);
    vitq_qmodel_free(f->q);
    vitq_model_free(f->student);
    vitq_model_free(f->teacher);
    vitq_dataset_free(f->data);
    free(f->order);
}

/* aph_recon's parameters from "key=value" strings (its defaults for the rest). */
static void *params_of(const vitq_plugin **p, const char *const *kvs, int n) {
    vitq_err e;
    if (vitq_plugin_load("aph_recon", NULL, p, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return NULL;
    }
    vitq_kv kv[24];
    char keys[24][64];
    for (int i = 0; i < n; i++) {
        const char *eq = strchr(kvs[i], '=');
        snprintf(keys[i], sizeof keys[i], "%.*s", (int)(eq - kvs[i]), kvs[i]);
        kv[i] = (vitq_kv){keys[i], (char *)(eq + 1), "t.ini", i + 1};
    }
    void *params = calloc(1, (*p)->params_size);
    if (vitq_plugin_params_parse(*p, "pass aph_recon", kv, n, params, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        free(params);
        return NULL;
    }
    return params;
}

/* Runs aph_recon on f's session through vitq_session_run (resume included); 0 or its code. */
static int run_pass(fixture *f, const char *const *kvs, int n) {
    const vitq_plugin *p;
    void *params = params_of(&p, kvs, n);
    if (!params) return -100;
    vitq_err e = {{0}};
    int rc = vitq_session_run(f->s, p, params, "test", &e);
    CHECK_MSG(rc == 0, "aph_recon: %s", e.msg);
    free(params);
    return rc;
}

static const vitq_curve *curve(const fixture *f, const char *name) {
    const vitq_curve *c;
    int n;
    vitq_session_curves(f->s, &c, &n);
    for (int i = 0; i < n; i++)
        if (!strcmp(c[i].name, name)) return &c[i];
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * The Fisher map
 * ------------------------------------------------------------------------------------------- */
/* KL(p ‖ softmax(logits/T)) of one sample in double. */
static double kl_t(const float *p, const float *z, int K, double T) {
    double q[16], kl = 0;
    aph_softmax_t(z, K, T, q);
    for (int k = 0; k < K; k++)
        if (p[k] > 0) kl += p[k] * (log((double)p[k]) - log(q[k]));
    return kl;
}

TEST(aph_recon_fisher_map_is_the_squared_kl_gradient) {
    fixture f;
    if (setup(&f, NULL, 0)) {
        teardown(&f);
        return;
    }
    vitq_session *s = f.s;
    const vitq_session_api *A = f.api;
    const int n = 64, u = 2, K = 10, j = 5; /* blocks.1, sample 5 */
    const double T = 20;
    CHECK(A->images(s, n) == 0);
    float *probs = malloc(sizeof(float) * n * K);
    CHECK(aph_teacher_probs(s, A, n, 16, T, probs) == 0);
    vitq_unit_info ui;
    A->unit(s, u, &ui);
    const int64_t P = ui.out_numel;
    vitq_host host;
    vitq_host_ctx hc;
    vitq_host_init(&host, &hc, "test", "test", 1);
    aph_imp m;
    CHECK(aph_fisher(s, A, &host, u, n, 16, 16, T, probs, 1, &m) == 0);
    CHECK_EQ(m.rows, n);
    /* g of sample j alone (batchmean over 1), by the tail's backward */
    float *x = malloc(sizeof(float) * ui.in_numel), *g = malloc(sizeof(float) * P), *O = malloc(sizeof(float) * P);
    float z[16];
    aph_kl_scratch w = {malloc(sizeof(float) * P), malloc(sizeof(float) * K), malloc(sizeof(double) * K), K};
    CHECK(A->io(s, u, VITQ_IO_Q_IN, (int64_t[]){j}, 1, x) == 0);
    CHECK(aph_kl_grad(s, A, u, x, 1, 1, T, probs + j * K, &w, g) == 0);
    CHECK(A->teacher_forward(s, u, x, 1, O) == 0);
    /* finite differences of the tail's KL at the 8 largest |g| and 8 spread elements */
    double gmax = 0;
    int64_t big = 0;
    for (int64_t i = 0; i < P; i++)
        if (fabs(g[i]) > gmax) gmax = fabs(g[i]), big = i;
    CHECK(gmax > 1e-7); /* the partly quantized input makes the student's logits differ from the teacher's */
    for (int k = 0; k < 16; k++) {
        int64_t i = k < 8 ? (big + k * 16) % P : (k * 977) % P; /* the big one's channel in other tokens */
        const float o = O[i], h = 1e-2f;
        O[i] = o + h;
        A->tail_forward(s, u + 1, O, 1, z);
        double up = kl_t(probs + j * K, z, K, T);
        O[i] = o - h;
        A->tail_forward(s, u + 1, O, 1, z);
        double down = kl_t(probs + j * K, z, K, T);
        O[i] = o;
        double fd = (up - down) / ((double)(o + h) - (double)(o - h));
        CHECK_MSG(fabs(fd - g[i]) <= 2e-3 * gmax, "element %lld: finite difference %.9g, backward %.9g (max %.3g)",
                  (long long)i, fd, (double)g[i], gmax);
    }
    /* the map's row j is g² (batchmean over 16: g/16) times the normalisation: a constant ratio */
    double ratio = m.map[j * P + big] / ((double)g[big] * g[big]), sum = 0;
    for (int64_t i = 0; i < P; i++) {
        if (fabs(g[i]) > 1e-3 * gmax) CHECK_NEAR(m.map[j * P + i] / ((double)g[i] * g[i]), ratio, 1e-3 * ratio);
        for (int b = 0; b < n; b++) sum += m.map[b * P + i];
    }
    CHECK_NEAR(sum / (double)(n * P), 1.0, 1e-5); /* mean 1 */
    aph_imp avg;
    CHECK(aph_fisher(s, A, &host, u, n, 16, 16, T, probs, 0, &avg) == 0); /* averaged: the mean of the rows */
    CHECK_EQ(avg.rows, 1);
    for (int64_t i = 0; i < P; i += 7) {
        double mean = 0;
        for (int b = 0; b < n; b++) mean += m.map[b * P + i];
        CHECK_NEAR(avg.map[i], mean / n, 1e-4 * (1 + mean / n));
    }
    aph_imp_free(&avg);
    aph_imp ragged; /* chunks of 24 (the last one 16): every sample weighed as in chunks of 16 */
    CHECK(aph_fisher(s, A, &host, u, n, 16, 24, T, probs, 1, &ragged) == 0);
    CHECK_ALLCLOSE(ragged.map, m.map, n * P, 1e-3, 1e-6); /* the GEMMs round differently per batch size */
    aph_imp_free(&ragged);
    aph_imp_free(&m);
    free(w.O), free(w.z), free(w.q), free(x), free(g), free(O), free(probs);
    teardown(&f);
}

/* ---------------------------------------------------------------------------------------------
 * The pass
 * ------------------------------------------------------------------------------------------- */
TEST(aph_recon_lowers_each_units_loss_and_records_curves) {
    fixture f;
    if (setup(&f, NULL, 0)) {
        teardown(&f);
        return;
    }
    const char *kv[] = {"images=64", "iters=120", "batch=16", "drop_prob=1", "lr_scale=1e-2", "record_every=20",
                        "importance=none"};
    if (run_pass(&f, kv, 7)) {
        teardown(&f);
        return;
    }
    const char *units[] = {"patch_embed", "blocks.0", "blocks.1", "head"};
    for (int k = 0; k < 4; k++) {
        char name[64];
        snprintf(name, sizeof name, "%s/loss", units[k]);
        const vitq_curve *c = curve(&f, name);
        CHECK_MSG(c != NULL, "no curve %s", name);
        if (!c) continue;
        CHECK_EQ(c->n, 6);
        CHECK_EQ(c->step[0], 20);
        CHECK_EQ(c->step[5], 120);
        printf("  %-12s loss %.4f -> %.4f\n", units[k], c->value[0], c->value[5]);
        if (k > 0) CHECK_MSG(c->value[5] < 0.95 * c->value[0], "%s: %g -> %g", name, c->value[0], c->value[5]);
        snprintf(name, sizeof name, "%s/round", units[k]);
        CHECK(curve(&f, name) != NULL);
    }
    CHECK_EQ(f.api->resume_unit(f.s), 4);
    teardown(&f);
}

/* Every scale of the quantizer on tap, concatenated into out (returns how many). */
static int64_t scales_of(vitq_qmodel *q, const char *tap, float *out) {
    vitq_qtensor t[8];
    vitq_err e;
    int n = vitq_qmodel_tensors(q, tap, t, 8, &e);
    int64_t k = 0;
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, "scale")) memcpy(out + k, t[i].value, sizeof(float) * (size_t)t[i].n), k += t[i].n;
    return k;
}

/* learn_scales = activations (default): with learnable weight quantizers, their scales stay as calibrated
 * while every activation scale moves; all: the weights' move too. */
static void scales_run(const char *mode, int want_weights_moved) {
    fixture f;
    if (setup(&f, NULL, 1)) {
        teardown(&f);
        return;
    }
    const char *taps[] = {"blocks.0.attn.qkv.weight", "blocks.0.mlp.fc2.weight", "blocks.0.attn.qkv.input",
                          "blocks.0.attn.probs", "blocks.0.mlp.fc2.input"};
    float before[5][64], after[5][64];
    int64_t n[5];
    for (int i = 0; i < 5; i++) n[i] = scales_of(f.q, taps[i], before[i]);
    char mode_kv[64];
    snprintf(mode_kv, sizeof mode_kv, "learn_scales=%s", mode);
    const char *kv[] = {"images=64", "iters=5", "batch=16", "lr_scale=1e-2", "lr_alpha=0", mode_kv};
    if (!run_pass(&f, kv, 6)) {
        for (int i = 0; i < 5; i++) {
            CHECK_EQ(scales_of(f.q, taps[i], after[i]), n[i]);
            int moved = memcmp(before[i], after[i], sizeof(float) * (size_t)n[i]) != 0;
            CHECK_MSG(moved == (i < 2 ? want_weights_moved : 1), "learn_scales=%s: %s's scales %s", mode, taps[i],
                      moved ? "moved" : "did not move");
        }
    }
    teardown(&f);
}

TEST(aph_recon_learns_activation_scales_only) {
    scales_run("activations", 0);
    scales_run("all", 1);
}

/* After commit every AdaRound decision is hard: each quantized weight is s·(clamp(⌊w/s⌋ + h + z) − z) with
 * h ∈ {0, 1}. */
TEST(aph_recon_adaround_is_hard_after_commit) {
    if (!uniform_has_adaround()) test_skip("uniform has no AdaRound yet (branch uniform)");
    fixture f;
    if (setup(&f, NULL, 0)) {
        teardown(&f);
        return;
    }
    const char *kv[] = {"images=64", "iters=40", "batch=16", "lr_alpha=5e-2", "warmup=0.2"};
    if (run_pass(&f, kv, 5)) {
        teardown(&f);
        return;
    }
    const char *w[] = {"patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.1.mlp.fc1.weight", "head.weight"};
    vitq_model *qm = vitq_qmodel_model(f.q);
    int64_t up = 0, total = 0;
    for (int k = 0; k < 4; k++) {
        vitq_qtensor t[8];
        vitq_err e;
        int nt = vitq_qmodel_tensors(f.q, w[k], t, 8, &e);
        const float *s = NULL, *z = NULL;
        int64_t G = 0;
        for (int i = 0; i < nt; i++) {
            if (!strcmp(t[i].name, "scale")) s = t[i].value, G = t[i].n;
            if (!strcmp(t[i].name, "zero_point")) z = t[i].value;
            CHECK_MSG(strcmp(t[i].name, "alpha"), "%s still has alpha after commit", w[k]);
        }
        const vitq_tensor_ref *src = vitq_model_param(f.student, w[k]), *dst = vitq_model_param(qm, w[k]);
        CHECK(s && z && src && dst && G == src->shape[0]);
        if (!s || !z || !src || !dst) continue;
        const int64_t per = src->numel / G;
        for (int64_t i = 0; i < src->numel; i++) {
            const float sc = s[i / per], zp = z[i / per], fl = floorf(src->data[i] / sc);
            float lo = (fminf(fmaxf(fl + zp, 0), 15) - zp) * sc, hi = (fminf(fmaxf(fl + 1 + zp, 0), 15) - zp) * sc;
            CHECK_MSG(dst->data[i] == lo || dst->data[i] == hi, "%s[%lld] = %.9g, neither %.9g nor %.9g", w[k],
                      (long long)i, dst->data[i], lo, hi);
            up += dst->data[i] == hi && hi != lo, total++;
        }
    }
    printf("  %lld of %lld weights rounded up\n", (long long)up, (long long)total);
    CHECK(up > 0 && up < total);
    teardown(&f);
}

/* ---------------------------------------------------------------------------------------------
 * Stopped after unit k, resumed: bit-identical to an uninterrupted run
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    float *slab;    /* the quantized model's parameters (the weights as used) */
    int64_t n;
    float vals[4096]; /* every quantizer tensor, in binding order */
    int64_t nv;
} snapshot;

static void snap(fixture *f, snapshot *out) {
    vitq_model *qm = vitq_qmodel_model(f->q);
    out->n = qm->n_params;
    out->slab = malloc(sizeof(float) * (size_t)out->n);
    memcpy(out->slab, qm->slab, sizeof(float) * (size_t)out->n);
    const vitq_qbinding *b;
    int nb;
    vitq_qmodel_bindings(f->q, &b, &nb);
    out->nv = 0;
    for (int i = 0; i < nb; i++) {
        vitq_qtensor t[8];
        vitq_err e;
        int nt = vitq_qmodel_tensors(f->q, b[i].tap, t, 8, &e);
        for (int k = 0; k < nt && out->nv + t[k].n <= 4096; k++) {
            memcpy(out->vals + out->nv, t[k].value, sizeof(float) * (size_t)t[k].n);
            out->nv += t[k].n;
        }
    }
}

static int stop_at_blocks1(const vitq_host *h, int64_t done, int64_t total, const char *label) {
    (void)h, (void)done, (void)total;
    return !strncmp(label, "blocks.1 ", 9); /* unit 2's first report: units 0 and 1 are committed */
}

TEST(aph_recon_stopped_after_unit_k_resumes_bit_identical) {
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/a.h5", test_tmpdir());
    snprintf(pb, sizeof pb, "%s/b.h5", test_tmpdir());
    const char *kv[] = {"images=64", "iters=12", "batch=16", "drop_prob=0.5", "importance=fisher", "record_every=1",
                        "lr_scale=1e-3"};
    fixture f;
    snapshot clean = {0}, resumed = {0};
    if (setup(&f, pa, 0) || run_pass(&f, kv, 7)) {
        teardown(&f);
        return;
    }
    snap(&f, &clean);
    const vitq_curve *c0;
    int nc0;
    vitq_session_curves(f.s, &c0, &nc0);
    /* stopped: the plugin run directly with a host that asks to stop at unit 2 */
    fixture g;
    if (!setup(&g, pb, 0)) {
        const vitq_plugin *p;
        void *params = params_of(&p, kv, 7);
        vitq_host host;
        vitq_host_ctx hc;
        vitq_host_init(&host, &hc, "test", "aph_recon", 5);
        host.progress = stop_at_blocks1;
        g.s->pass_name = "aph_recon";
        CHECK_EQ(p->pass->run(params, g.s, g.api, &host), VITQ_ECANCELLED);
        CHECK_EQ(g.api->resume_unit(g.s), 2);
        free(params);
    }
    teardown(&g); /* the process dies: only the state file remains */
    fixture h;
    if (!setup(&h, pb, 0)) {
        CHECK(run_pass(&h, kv, 7) == 0);
        snap(&h, &resumed);
        CHECK_EQ(resumed.n, clean.n);
        CHECK_EQ(resumed.nv, clean.nv);
        CHECK(clean.nv > 40);
        CHECK_EQ(memcmp(resumed.slab, clean.slab, sizeof(float) * (size_t)clean.n), 0);
        CHECK_EQ(memcmp(resumed.vals, clean.vals, sizeof(float) * (size_t)clean.nv), 0);
        const vitq_curve *c1;
        int nc1;
        vitq_session_curves(h.s, &c1, &nc1);
        CHECK_EQ(nc1, nc0); /* the committed units' curves came back with the state */
        for (int i = 0; i < nc0 && i < nc1; i++) {
            CHECK_STREQ(c1[i].name, c0[i].name);
            CHECK_EQ(c1[i].n, c0[i].n);
            CHECK(c1[i].n == c0[i].n && !memcmp(c1[i].value, c0[i].value, sizeof(double) * (size_t)c0[i].n));
        }
    }
    free(clean.slab), free(resumed.slab);
    teardown(&h);
    teardown(&f);
}
