/* test_lowrank.c — the lowrank_nas pass (plugins/lowrank_nas.c, lowrank_branch.h, lowrank_cl.h;
 * specs/aiqvit.md §4):
 *   the rank mixture's gates for hand-set α (shared mask, τ = 1 and 2) and ΔW = B·diag(g)·A;
 *   the gradients of A, B and α against central finite differences (shared mask, independent pairs, one
 *   rank), and the discretisation keeping the kept components' ΔW exactly (gates folded into B);
 *   a search where more rank can only lower the loss (a full-rank target) picks the largest rank on the
 *   single-level objective;
 *   the curriculum's order (ascending loss, ties by index, NaN last), share schedule and draws on a hand-made
 *   set;
 *   the pass on a tiny random ViT: with float weights a pre_quant run and an fp_branch run evaluate equal
 *   (the merged model = the model with the branch beside the weights) while only pre_quant changed the float
 *   weights; a quantized run searches, stores per branch the rank and α's entropy, records the curves, and
 *   lowers each block's loss; a run stopped after unit k resumes bit-identical. */
#include "test.h"

#include "../plugins/lowrank_branch.h"
#include "../plugins/lowrank_cl.h"

#include <stdlib.h>
#include <string.h>

/* Row-major C (M,N) = alpha·op(A)·op(B) + beta·C, in double: the reference GEMM of these tests. */
static void naive_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, const float *B,
                       float beta, float *C) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += (double)(ta ? A[k * M + i] : A[i * K + k]) * (tb ? B[j * K + k] : B[k * N + j]);
            C[i * N + j] = (float)(alpha * s + (beta == 0 ? 0.0 : (double)beta * C[i * N + j]));
        }
}

/* ---------------------------------------------------------------------------------------------
 * The mixture
 * ------------------------------------------------------------------------------------------- */
TEST(lowrank_gates_for_hand_set_alpha) {
    lr_branch b;
    aph_rng r = {1};
    const int ranks[] = {2, 4, 6};
    CHECK_EQ(lr_branch_init(&b, 5, 7, ranks, 3, LR_SHARED, 1.0, &r), 0);
    CHECK_EQ(b.searching, 1);
    CHECK_EQ(b.r, 6);
    /* p = (1, 2, 3)/6 */
    b.alpha[0] = 0, b.alpha[1] = (float)log(2.0), b.alpha[2] = (float)log(3.0);
    float g[6];
    lr_gates(&b, g);
    const double want[] = {1, 1, 5.0 / 6, 5.0 / 6, 0.5, 0.5};
    for (int j = 0; j < 6; j++) CHECK_NEAR(g[j], want[j], 1e-6);
    double p[3];
    lr_probs(&b, p);
    CHECK_NEAR(lr_entropy(p, 3), -(1 / 6.0 * log(1 / 6.0) + 2 / 6.0 * log(2 / 6.0) + 3 / 6.0 * log(3 / 6.0)), 1e-6);
    CHECK_NEAR(lr_expected_rank(&b), (2 * 1 + 4 * 2 + 6 * 3) / 6.0, 1e-6);
    /* τ = 2: p ∝ (1, √2, √3) */
    b.tau = 2;
    lr_gates(&b, g);
    const double z = 1 + sqrt(2) + sqrt(3);
    CHECK_NEAR(g[0], 1.0, 1e-6);
    CHECK_NEAR(g[2], (sqrt(2) + sqrt(3)) / z, 1e-6);
    CHECK_NEAR(g[5], sqrt(3) / z, 1e-6);
    /* uniform α = 0: gates 1, 2/3, 1/3 */
    b.tau = 1;
    memset(b.alpha, 0, sizeof b.alpha);
    lr_gates(&b, g);
    CHECK_NEAR(g[1], 1.0, 1e-6);
    CHECK_NEAR(g[3], 2.0 / 3, 1e-6);
    CHECK_NEAR(g[4], 1.0 / 3, 1e-6);
    /* A Kaiming-uniform within 1/√n, B = 0: ΔW = 0; then ΔW = B·diag(g)·A by hand */
    float amax = 0;
    for (int64_t i = 0; i < b.nA; i++) amax = fmaxf(amax, fabsf(b.A[i]));
    CHECK(amax <= 1 / sqrtf(7.0f) && amax > 0.5f / sqrtf(7.0f));
    float dw[35];
    lr_delta(&b, naive_gemm, dw);
    for (int i = 0; i < 35; i++) CHECK_EQ(dw[i], 0.0f);
    for (int64_t i = 0; i < b.nB; i++) b.B[i] = (float)((i * 37) % 11 - 5) / 5.0f;
    lr_delta(&b, naive_gemm, dw);
    for (int i = 0; i < 5; i++)
        for (int c = 0; c < 7; c++) {
            double s = 0;
            for (int j = 0; j < 6; j++) s += (double)b.B[i * 6 + j] * (j < 2 ? 1 : j < 4 ? 2.0 / 3 : 1.0 / 3) * b.A[j * 7 + c];
            CHECK_NEAR(dw[i * 7 + c], s, 1e-5);
        }
    lr_branch_free(&b);
    /* candidates: clipped to min(m, n), sorted, duplicates dropped */
    int out[8];
    const int req[] = {100, 20, 60, 0, 20};
    CHECK_EQ(lr_candidates(req, 5, 48, 64, out), 3); /* 60 and 100 both clip to 48: one candidate */
    CHECK_EQ(out[0], 0);
    CHECK_EQ(out[1], 20);
    CHECK_EQ(out[2], 48);
    char why[200];
    int rr[4];
    CHECK_EQ(lr_parse_ranks("8, 16,32", rr, 4, why, sizeof why), 3);
    CHECK_EQ(rr[2], 32);
    CHECK_EQ(lr_parse_ranks("8,x", rr, 4, why, sizeof why), -1);
    CHECK_EQ(lr_parse_ranks("1,2,3,4,5", rr, 4, why, sizeof why), -1);
}

/* L(ΔW) = Σ C⊙ΔW + ½ Σ ΔW² in double; G = C + ΔW. */
static double quad_loss(lr_branch *b, const float *C, float *dw, float *G) {
    const int64_t mn = b->m * b->n;
    lr_delta(b, naive_gemm, dw);
    double l = 0;
    for (int64_t i = 0; i < mn; i++) {
        l += (double)C[i] * dw[i] + 0.5 * (double)dw[i] * dw[i];
        if (G) G[i] = C[i] + dw[i];
    }
    return l;
}

/* Central differences of quad_loss at n entries of v against g (tolerance relative to the largest |g|). */
static void fd_check(lr_branch *b, const float *C, float *v, const float *g, int64_t n, float h, const char *what) {
    float dw[256];
    double gmax = 1e-12;
    for (int64_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(g[i]));
    for (int64_t i = 0; i < n; i++) {
        const float o = v[i];
        v[i] = o + h;
        double up = quad_loss(b, C, dw, NULL);
        v[i] = o - h;
        double down = quad_loss(b, C, dw, NULL);
        v[i] = o;
        double fd = (up - down) / ((double)(o + h) - (double)(o - h));
        CHECK_MSG(fabs(fd - g[i]) <= 2e-3 * gmax, "%s[%lld]: finite difference %.7g, backward %.7g (max %.3g)", what,
                  (long long)i, fd, (double)g[i], gmax);
    }
}

static void grad_case(int relax, int K) {
    const int64_t m = 6, n = 9;
    const int ranks[] = {1, 3, 5};
    lr_branch b;
    aph_rng r = {7};
    CHECK_EQ(lr_branch_init(&b, m, n, K == 1 ? ranks + 1 : ranks, K, relax, relax ? 1.0 : 1.5, &r), 0);
    for (int64_t i = 0; i < b.nB; i++) b.B[i] = (float)(2 * aph_rng_unit(&r) - 1);
    for (int k = 0; k < K; k++) b.alpha[k] = (float)(0.3 * k - 0.2 * (k == 1));
    float C[54], dw[54], G[54];
    for (int i = 0; i < 54; i++) C[i] = (float)(2 * aph_rng_unit(&r) - 1);
    quad_loss(&b, C, dw, G);
    lr_zero_grad(&b);
    lr_backward(&b, naive_gemm, G, 1, 1);
    char what[64];
    snprintf(what, sizeof what, "relax %d K %d: A", relax, K);
    fd_check(&b, C, b.A, b.gA, b.nA, 1e-2f, what);
    snprintf(what, sizeof what, "relax %d K %d: B", relax, K);
    fd_check(&b, C, b.B, b.gB, b.nB, 1e-2f, what);
    if (K > 1) {
        snprintf(what, sizeof what, "relax %d K %d: alpha", relax, K);
        fd_check(&b, C, b.alpha, b.galpha, K, 1e-2f, what);
        double s = 0;
        for (int k = 0; k < K; k++) s += b.galpha[k];
        CHECK_NEAR(s, 0.0, 1e-6); /* softmax: shifting every α changes nothing */
        /* want_ab = 0: α's gradient alone, A and B's untouched */
        float ga[LR_MAX_CAND];
        memcpy(ga, b.galpha, sizeof ga);
        lr_zero_grad(&b);
        lr_backward(&b, naive_gemm, G, 0, 1);
        for (int k = 0; k < K; k++) CHECK_NEAR(b.galpha[k], ga[k], 1e-6);
        for (int64_t i = 0; i < b.nA; i++) CHECK_EQ(b.gA[i], 0.0f);
        /* the rank penalty's gradient: λ·E[r]/r_max */
        lr_zero_grad(&b);
        double e = lr_penalty(&b, 0.5), e2;
        CHECK_NEAR(e, 0.5 * lr_expected_rank(&b) / 5.0, 1e-6);
        const float a0 = b.alpha[0];
        b.alpha[0] = a0 + 1e-3f, e2 = 0.5 * lr_expected_rank(&b) / 5.0;
        b.alpha[0] = a0 - 1e-3f;
        double fd = (e2 - 0.5 * lr_expected_rank(&b) / 5.0) / 2e-3;
        b.alpha[0] = a0;
        CHECK_NEAR(b.galpha[0], fd, 1e-3);
    }
    lr_branch_free(&b);
}

TEST(lowrank_gradients_of_a_b_alpha_match_finite_differences) {
    grad_case(LR_SHARED, 3);
    grad_case(LR_INDEPENDENT, 3);
    grad_case(LR_SHARED, 1);
}

/* Discretising keeps the argmax candidate's components with the gates folded in: ΔW after equals the kept
 * part of the mixture, Σ_{j < r} g_j B_j A_j, exactly (to float rounding). */
TEST(lowrank_discretise_folds_the_gates_into_b) {
    const int ranks[] = {2, 3, 5};
    for (int relax = 0; relax < 2; relax++) {
        lr_branch b;
        aph_rng r = {3};
        CHECK_EQ(lr_branch_init(&b, 4, 6, ranks, 3, relax, 1.0, &r), 0);
        for (int64_t i = 0; i < b.nB; i++) b.B[i] = (float)(2 * aph_rng_unit(&r) - 1);
        b.alpha[0] = 0.1f, b.alpha[1] = 0.9f, b.alpha[2] = 0.2f; /* argmax: rank 3 */
        double p[3];
        lr_probs(&b, p);
        float g[5], want[24] = {0}, got[24];
        lr_gates(&b, g);
        for (int i = 0; i < 4; i++)
            for (int c = 0; c < 6; c++)
                for (int j = 0; j < 3; j++)
                    want[i * 6 + c] += relax == LR_SHARED ? b.B[i * 5 + j] * g[j] * b.A[j * 6 + c]
                                                          : (float)p[1] * b.B[b.offB[1] + i * 3 + j] * b.A[b.offA[1] + j * 6 + c];
        double q[3];
        CHECK_EQ(lr_discretise(&b, q), 0);
        CHECK_EQ(b.searching, 0);
        CHECK_EQ(b.chosen, 1);
        CHECK_EQ(b.r, 3);
        CHECK_NEAR(q[1], p[1], 1e-12);
        lr_delta(&b, naive_gemm, got);
        CHECK_ALLCLOSE(got, want, 24, 1e-5, 1e-6);
        lr_branch_free(&b);
    }
}

/* A full-rank target: every extra component can only lower ½‖ΔW − T‖², so the single-level search (A, B and
 * α jointly on the one objective, α frozen for the first 20 %) must end on the largest candidate. */
TEST(lowrank_single_level_search_picks_the_largest_rank_when_rank_only_helps) {
    const int64_t m = 12, n = 10;
    const int ranks[] = {2, 4, 8};
    lr_branch b;
    aph_rng r = {11};
    CHECK_EQ(lr_branch_init(&b, m, n, ranks, 3, LR_SHARED, 1.0, &r), 0);
    float T[120], dw[120], G[120];
    for (int i = 0; i < 120; i++) T[i] = (float)(2 * aph_rng_unit(&r) - 1);
    vitq_adamw oa, ob, oal;
    vitq_err e;
    CHECK(!vitq_adamw_init(&oa, b.nA, 0.9f, 0.999f, 1e-8f, 0, &e) && !vitq_adamw_init(&ob, b.nB, 0.9f, 0.999f, 1e-8f, 0, &e) &&
          !vitq_adamw_init(&oal, 3, 0.5f, 0.999f, 1e-8f, 0, &e));
    double first = 0, last = 0;
    const int S = 800;
    for (int t = 1; t <= S; t++) {
        lr_delta(&b, naive_gemm, dw);
        double l = 0;
        for (int i = 0; i < 120; i++) l += 0.5 * ((double)dw[i] - T[i]) * ((double)dw[i] - T[i]), G[i] = dw[i] - T[i];
        if (t == 1) first = l;
        last = l;
        const int alpha_on = t > 0.2 * S;
        lr_zero_grad(&b);
        lr_backward(&b, naive_gemm, G, 1, alpha_on);
        vitq_adamw_update(&oa, b.A, b.gA, 0, b.nA, 1e-2f, 0, t);
        vitq_adamw_update(&ob, b.B, b.gB, 0, b.nB, 1e-2f, 0, t);
        if (alpha_on) vitq_adamw_update(&oal, b.alpha, b.galpha, 0, 3, 5e-2f, 0, t);
    }
    double p[3];
    lr_probs(&b, p);
    printf("  loss %.4f -> %.4f, p = (%.3f, %.3f, %.3f)\n", first, last, p[0], p[1], p[2]);
    CHECK(last < 0.5 * first);
    CHECK(p[2] > p[1] + 0.01 && p[1] > p[0]); /* the mass moved up the ranks, monotonically */
    CHECK_EQ(lr_discretise(&b, NULL), 0);
    CHECK_EQ(b.r, 8);
    vitq_adamw_release(&oa), vitq_adamw_release(&ob), vitq_adamw_release(&oal);
    lr_branch_free(&b);
}

/* ---------------------------------------------------------------------------------------------
 * The curriculum
 * ------------------------------------------------------------------------------------------- */
TEST(lowrank_curriculum_order_share_and_draws) {
    const double loss[] = {0.5, 0.1, NAN, 0.3, 0.1, 0.05, 0.9, 0.2, 0.3, 0.0};
    int64_t order[10];
    CHECK_EQ(lr_cl_order(loss, 10, order), 0);
    const int64_t want[] = {9, 5, 1, 4, 7, 3, 8, 0, 6, 2}; /* ascending; 0.1 and 0.3 tie by index; NaN last */
    for (int i = 0; i < 10; i++) CHECK_EQ(order[i], want[i]);
    /* f(t) = min(1, 0.3 + 0.7·t/(0.5·T)), T = 10: 0.3, 0.44, 0.58, 0.72, 0.86, 1, 1, ... */
    const double f[] = {0.3, 0.44, 0.58, 0.72, 0.86, 1.0, 1.0};
    for (int t = 0; t < 7; t++) CHECK_NEAR(lr_cl_share(t, 10, 0.3, 0.5), f[t], 1e-12);
    CHECK_EQ(lr_cl_share(0, 10, 0.3, 0.0), 1.0); /* no ramp: everything from the start */
    const int64_t cnt[] = {3, 5, 6, 8, 9, 10, 10};
    for (int t = 0; t < 7; t++) CHECK_EQ(lr_cl_count(f[t], 10, 2), cnt[t]);
    CHECK_EQ(lr_cl_count(0.05, 10, 2), 2); /* at least a batch */
    /* draws: distinct, and only from the first count samples of the order; every one of them drawn */
    int64_t perm[10], idx[2];
    for (int i = 0; i < 10; i++) perm[i] = i;
    aph_rng r = {5};
    int seen[10] = {0};
    for (int t = 0; t < 7; t++)
        for (int rep = 0; rep < 50; rep++) {
            lr_cl_draw(&r, perm, cnt[t], 2, order, idx);
            CHECK(idx[0] != idx[1]);
            for (int b = 0; b < 2; b++) {
                int pos = -1;
                for (int k = 0; k < 10; k++)
                    if (order[k] == idx[b]) pos = k;
                CHECK_MSG(pos >= 0 && pos < cnt[t], "step %d: sample %lld at position %d, count %lld", t,
                          (long long)idx[b], pos, (long long)cnt[t]);
                if (t == 0) seen[pos]++;
            }
            int sorted[10] = {0};
            for (int k = 0; k < 10; k++) sorted[perm[k]]++;
            for (int k = 0; k < 10; k++) CHECK_EQ(sorted[k], 1); /* perm stays a permutation */
        }
    CHECK(seen[0] > 15 && seen[1] > 15 && seen[2] > 15); /* the easiest three: about 100/3 each */
    /* without an order (cl = off): positions are the samples */
    lr_cl_draw(&r, perm, 10, 2, NULL, idx);
    CHECK(idx[0] >= 0 && idx[0] < 10 && idx[1] != idx[0]);
}

/* ---------------------------------------------------------------------------------------------
 * The pass
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    vitq_model *teacher, *student;
    vitq_dataset *data;
    int64_t *order;
    vitq_qmodel *q;
    vitq_session *s;
    const vitq_session_api *api;
} fixture;

/* A 28x28 ViT (patch 7, dim 16, 2 heads, depth 2) with random weights: weights per channel at 4 bits
 * (wplugin "uniform") or float (wplugin "float"); every block activation and the head input uniform at 4
 * bits with learnable scales, the attention probabilities through dynamic_focus (3 bits, zero mode);
 * calibrated on 32 Fashion-MNIST training images; a session over 64 images. */
static int setup(fixture *f, const char *wplugin, const char *state_path) {
    static vitq_kv kw[4], ka[5], kp[5];
    static vitq_section secs[3];
    kw[0] = (vitq_kv){"taps", "*.weight", "t.ini", 2};
    kw[1] = (vitq_kv){"plugin", (char *)wplugin, "t.ini", 3};
    kw[2] = (vitq_kv){"bits", "4", "t.ini", 4};
    kw[3] = (vitq_kv){"granularity", "per_channel", "t.ini", 5};
    ka[0] = (vitq_kv){"taps", "blocks.*.input, blocks.*.attn.q, blocks.*.attn.k, blocks.*.attn.v, head.input", "t.ini", 7};
    ka[1] = (vitq_kv){"plugin", "uniform", "t.ini", 8};
    ka[2] = (vitq_kv){"bits", "4", "t.ini", 9};
    ka[3] = (vitq_kv){"learnable", "true", "t.ini", 10};
    ka[4] = (vitq_kv){"grad_scale", "false", "t.ini", 11};
    kp[0] = (vitq_kv){"taps", "blocks.*.attn.probs", "t.ini", 13};
    kp[1] = (vitq_kv){"plugin", "dynamic_focus", "t.ini", 14};
    kp[2] = (vitq_kv){"bits", "3", "t.ini", 15};
    kp[3] = (vitq_kv){"below", "zero", "t.ini", 16};
    kp[4] = (vitq_kv){"init", "minmax", "t.ini", 17};
    secs[0] = (vitq_section){"quantizer w", kw, strcmp(wplugin, "float") ? 4 : 2, "t.ini", 1};
    secs[1] = (vitq_section){"quantizer a", ka, 5, "t.ini", 6};
    secs[2] = (vitq_section){"quantizer p", kp, 5, "t.ini", 12};
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
    if (!rc) rc = vitq_qmodel_create(f->student, secs, 3, 5, &f->q, &e);
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

/* lowrank_nas's parameters from "key=value" strings (its defaults for the rest). */
static void *params_of(const vitq_plugin **p, const char *const *kvs, int n) {
    vitq_err e;
    if (vitq_plugin_load("lowrank_nas", NULL, p, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return NULL;
    }
    vitq_kv kv[32];
    char keys[32][64];
    for (int i = 0; i < n; i++) {
        const char *eq = strchr(kvs[i], '=');
        snprintf(keys[i], sizeof keys[i], "%.*s", (int)(eq - kvs[i]), kvs[i]);
        kv[i] = (vitq_kv){keys[i], (char *)(eq + 1), "t.ini", i + 1};
    }
    void *params = calloc(1, (*p)->params_size);
    if (vitq_plugin_params_parse(*p, "pass lowrank_nas", kv, n, params, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        free(params);
        return NULL;
    }
    return params;
}

static int run_pass(fixture *f, const char *const *kvs, int n) {
    const vitq_plugin *p;
    void *params = params_of(&p, kvs, n);
    if (!params) return -100;
    vitq_err e = {{0}};
    int rc = vitq_session_run(f->s, p, params, "test", &e);
    CHECK_MSG(rc == 0, "lowrank_nas: %s", e.msg);
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

static const vitq_stored *stored(const fixture *f, const char *name) {
    const vitq_stored *st;
    int n;
    vitq_session_stored(f->s, &st, &n);
    for (int i = 0; i < n; i++)
        if (!strcmp(st[i].name, name)) return &st[i];
    return NULL;
}

/* Logits of the quantized model on the first 16 images of f's order. */
static void logits(fixture *f, float *out) {
    float *img = malloc(sizeof(float) * 16 * 784);
    vitq_err e;
    vitq_acts *a = NULL;
    CHECK(vitq_dataset_load(f->data, f->order, 16, img, NULL, &e) == 0);
    CHECK(vitq_acts_create(vitq_qmodel_model(f->q), 16, 0, &a, &e) == 0);
    CHECK(vitq_forward(vitq_qmodel_model(f->q), a, img, 16, &e) == 0);
    memcpy(out, a->logits, sizeof(float) * 160);
    vitq_acts_free(a);
    free(img);
}

/* Before weight quantization (weights float), merging the branch into W (pre_quant) and keeping it beside
 * W (fp_branch: W + post) are the same model: the two runs evaluate equal, while only pre_quant changed the
 * float weights, by exactly fp_branch's branch. */
TEST(lowrank_pre_quant_equals_the_unmerged_branch_before_quantization) {
    const char *kv[] = {"images=64", "batch=16", "rank_candidates=2,4,8", "search_iters=8", "recon_iters=8",
                        "ab_lr=1e-2", "alpha_lr=1e-2", "merge=pre_quant"};
    fixture a, b;
    float la[160], lb[160];
    if (setup(&a, "float", NULL) || run_pass(&a, kv, 8)) {
        teardown(&a);
        return;
    }
    kv[7] = "merge=fp_branch";
    if (setup(&b, "float", NULL) || run_pass(&b, kv, 8)) {
        teardown(&a), teardown(&b);
        return;
    }
    logits(&a, la), logits(&b, lb);
    CHECK_ALLCLOSE(la, lb, 160, 1e-5, 1e-5);
    const char *w[] = {"blocks.0.attn.qkv.weight", "blocks.1.mlp.fc2.weight"};
    for (int k = 0; k < 2; k++) {
        const vitq_tensor_ref *t = vitq_model_param(a.teacher, w[k]), *sa = vitq_model_param(a.student, w[k]),
                              *sb = vitq_model_param(b.student, w[k]);
        vitq_weight wb[8];
        int nw = b.api->weights(b.s, k ? 2 : 1, wb, 8), hit = -1;
        for (int i = 0; i < nw; i++)
            if (!strcmp(wb[i].name, w[k])) hit = i;
        CHECK(hit >= 0 && wb[hit].post);
        if (hit < 0 || !wb[hit].post) continue;
        CHECK_EQ(memcmp(sb->data, t->data, sizeof(float) * (size_t)t->numel), 0); /* fp_branch: W untouched */
        double moved = 0, post = 0;
        for (int64_t i = 0; i < t->numel; i++) {
            moved = fmax(moved, fabs((double)sa->data[i] - t->data[i]));
            post = fmax(post, fabs(wb[hit].post[i]));
            CHECK_NEAR(sa->data[i], t->data[i] + wb[hit].post[i], 1e-5);
        }
        printf("  %s: |dW| up to %.3g (pre_quant), %.3g (fp_branch's post)\n", w[k], moved, post);
        CHECK(moved > 1e-4 && post > 1e-4);
    }
    teardown(&a), teardown(&b);
}

/* The searched run at W4 (per channel) A4, DFQ on the probabilities: every block branch stores its rank
 * (one of the candidates), α's entropy (≤ ln 3) and probabilities; the entropy curve exists; the
 * reconstruction lowers each block's loss; the block's DFQ intervals moved and stay valid. */
TEST(lowrank_pass_searches_stores_ranks_and_lowers_the_loss) {
    fixture f;
    if (setup(&f, "uniform", NULL)) {
        teardown(&f);
        return;
    }
    const char *kv[] = {"images=64", "batch=16", "rank_candidates=2,4,8", "search_iters=20", "recon_iters=60",
                        "ab_lr=1e-2", "alpha_lr=5e-2", "lr_act=1e-3", "lr_interval=1e-3", "record_every=10", "cl=off"};
    if (run_pass(&f, kv, 11)) {
        teardown(&f);
        return;
    }
    const char *br[] = {"blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.fc1", "blocks.1.mlp.fc2"};
    for (int k = 0; k < 4; k++) {
        char name[200];
        snprintf(name, sizeof name, "lowrank_nas/%s/rank", br[k]);
        const vitq_stored *r = stored(&f, name);
        CHECK_MSG(r && r->n == 1, "no %s", name);
        if (!r) continue;
        CHECK_MSG(r->data[0] == 2 || r->data[0] == 4 || r->data[0] == 8, "%s = %g", name, r->data[0]);
        snprintf(name, sizeof name, "lowrank_nas/%s/alpha_entropy", br[k]);
        const vitq_stored *h = stored(&f, name);
        CHECK_MSG(h && h->data[0] > 0 && h->data[0] <= log(3.0) + 1e-6, "%s", name);
        snprintf(name, sizeof name, "lowrank_nas/%s/alpha_probs", br[k]);
        const vitq_stored *p = stored(&f, name);
        CHECK(p && p->n == 3 && fabs(p->data[0] + p->data[1] + p->data[2] - 1) < 1e-5);
        snprintf(name, sizeof name, "%s/alpha_entropy", br[k]);
        const vitq_curve *c = curve(&f, name);
        CHECK_MSG(c && c->n == 2, "no curve %s", name);
        printf("  %-20s rank %g, entropy %.4f\n", br[k], r->data[0], h ? h->data[0] : -1.0);
    }
    CHECK(stored(&f, "lowrank_nas/patch_embed.proj/rank") == NULL); /* not a block: no branch, not reconstructed */
    const char *types[] = {"qkv", "proj", "fc1", "fc2"};
    for (int k = 0; k < 4; k++) { /* by depth and type: <type>/rank_by_depth at steps 0, 1 = the stored ranks */
        char name[64], st[200];
        snprintf(name, sizeof name, "%s/rank_by_depth", types[k]);
        const vitq_curve *c = curve(&f, name);
        CHECK_MSG(c && c->n == 2, "no curve %s", name);
        for (int d = 0; c && d < c->n && d < 2; d++) {
            CHECK_EQ(c->step[d], (int64_t)d);
            snprintf(st, sizeof st, "lowrank_nas/blocks.%d.%s/rank", d, k < 2 ? (k ? "attn.proj" : "attn.qkv") : (k == 2 ? "mlp.fc1" : "mlp.fc2"));
            const vitq_stored *r = stored(&f, st);
            CHECK_MSG(r && r->data[0] == c->value[d], "%s at depth %d", name, d);
        }
        snprintf(name, sizeof name, "%s/alpha_entropy_by_depth", types[k]);
        CHECK(curve(&f, name) != NULL);
    }
    for (int u = 0; u < 2; u++) {
        char name[64];
        snprintf(name, sizeof name, "blocks.%d/loss", u);
        const vitq_curve *c = curve(&f, name);
        CHECK_MSG(c && c->n == 6, "no curve %s", name);
        if (c) CHECK_MSG(c->value[5] < 0.9 * c->value[0], "%s: %g -> %g", name, c->value[0], c->value[5]);
        if (c) printf("  %s loss %.5f -> %.5f\n", name, c->value[0], c->value[5]);
        snprintf(name, sizeof name, "blocks.%d/cl_share", u);
        CHECK(curve(&f, name) == NULL); /* cl = off */
    }
    CHECK(curve(&f, "head/loss") == NULL);
    vitq_qtensor t[8];
    vitq_err e;
    int nt = vitq_qmodel_tensors(f.q, "blocks.1.attn.probs", t, 8, &e);
    for (int i = 0; i < nt; i++)
        if (!strcmp(t[i].name, "b1") || !strcmp(t[i].name, "b2")) CHECK(t[i].grad == NULL); /* frozen */
    teardown(&f);
}

/* ---------------------------------------------------------------------------------------------
 * Stopped after unit k, resumed: bit-identical to an uninterrupted run (curriculum on, bi-level search,
 * QDrop loss, fp_branch so that the post terms must come back too)
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    float *slab, *post;
    int64_t n, npost;
    float vals[4096];
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
    return !strncmp(label, "blocks.1 ", 9); /* blocks.1's first report: blocks.0 is committed */
}

TEST(lowrank_stopped_after_unit_k_resumes_bit_identical) {
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/a.h5", test_tmpdir());
    snprintf(pb, sizeof pb, "%s/b.h5", test_tmpdir());
    const char *kv[] = {"images=64", "batch=16", "rank_candidates=2,4,8", "search_iters=6", "recon_iters=10",
                        "ab_lr=1e-2", "alpha_lr=5e-2", "loss=qdrop", "merge=fp_branch", "record_every=1"};
    fixture f;
    snapshot clean = {0}, resumed = {0};
    if (setup(&f, "uniform", pa) || run_pass(&f, kv, 10)) {
        teardown(&f);
        return;
    }
    snap(&f, &clean);
    const vitq_curve *c0;
    int nc0, ns0;
    vitq_session_curves(f.s, &c0, &nc0);
    const vitq_stored *s0;
    vitq_session_stored(f.s, &s0, &ns0);
    const vitq_curve *cl = curve(&f, "blocks.0/cl_share");
    CHECK(cl && cl->n == 10); /* f(t) = 0.3 + 0.7·t/5 for the steps t = 0..9 of 10: 0.3, ..., 0.86, then 1 */
    if (cl && cl->n == 10) {
        CHECK_NEAR(cl->value[0], 0.3, 1e-12);
        CHECK_NEAR(cl->value[4], 0.86, 1e-12);
        CHECK_EQ(cl->value[5], 1.0);
    }
    fixture g;
    if (!setup(&g, "uniform", pb)) {
        const vitq_plugin *p;
        void *params = params_of(&p, kv, 10);
        vitq_host host;
        vitq_host_ctx hc;
        vitq_host_init(&host, &hc, "test", "lowrank_nas", 5);
        host.progress = stop_at_blocks1;
        g.s->pass_name = "lowrank_nas";
        CHECK_EQ(p->pass->run(params, g.s, g.api, &host), VITQ_ECANCELLED);
        CHECK_EQ(g.api->resume_unit(g.s), 2);
        free(params);
    }
    teardown(&g); /* the process dies: only the state file remains */
    fixture h;
    if (!setup(&h, "uniform", pb)) {
        CHECK(run_pass(&h, kv, 10) == 0);
        snap(&h, &resumed);
        CHECK_EQ(resumed.n, clean.n);
        CHECK_EQ(resumed.nv, clean.nv);
        CHECK_EQ(memcmp(resumed.slab, clean.slab, sizeof(float) * (size_t)clean.n), 0);
        CHECK_EQ(memcmp(resumed.vals, clean.vals, sizeof(float) * (size_t)clean.nv), 0);
        const vitq_curve *c1;
        const vitq_stored *s1;
        int nc1, ns1;
        vitq_session_curves(h.s, &c1, &nc1);
        vitq_session_stored(h.s, &s1, &ns1);
        CHECK_EQ(nc1, nc0);
        CHECK_EQ(ns1, ns0); /* blocks.0's ranks and entropies came back with the state */
        for (int i = 0; i < ns0 && i < ns1; i++) {
            CHECK_STREQ(s1[i].name, s0[i].name);
            CHECK(s1[i].n == s0[i].n && !memcmp(s1[i].data, s0[i].data, sizeof(float) * (size_t)s0[i].n));
        }
    }
    free(clean.slab), free(resumed.slab);
    teardown(&h);
    teardown(&f);
}

/* The switches: split_qkv gives three branches (q, k, v rows, each 16 x 16 here), include_head and
 * include_patch_embed put branches on the head (10 x 16: ranks clipped to 10) and on the patch-embedding conv
 * (16 x 49) and reconstruct those units (the head on its KL); relax = independent; rank_penalty. */
TEST(lowrank_switches_split_qkv_head_patch_embed_independent) {
    fixture f;
    if (setup(&f, "uniform", NULL)) {
        teardown(&f);
        return;
    }
    const char *kv[] = {"images=64", "batch=16", "rank_candidates=4,12,40", "search_iters=6", "recon_iters=6",
                        "split_qkv=true", "include_head=true", "include_patch_embed=true", "relax=independent",
                        "rank_penalty=0.1", "layers=qkv,fc2", "record_every=2"};
    if (run_pass(&f, kv, 12)) {
        teardown(&f);
        return;
    }
    const char *br[] = {"blocks.0.attn.qkv.q", "blocks.0.attn.qkv.k", "blocks.1.attn.qkv.v", "blocks.1.mlp.fc2",
                        "head", "patch_embed.proj"};
    const float cap[] = {16, 16, 16, 16, 10, 16};
    for (int k = 0; k < 6; k++) {
        char name[200];
        snprintf(name, sizeof name, "lowrank_nas/%s/rank", br[k]);
        const vitq_stored *r = stored(&f, name);
        CHECK_MSG(r != NULL, "no %s", name);
        if (r) CHECK_MSG(r->data[0] == 4 || r->data[0] == 12 || r->data[0] == cap[k], "%s = %g", name, r->data[0]);
        snprintf(name, sizeof name, "lowrank_nas/%s/candidates", br[k]);
        const vitq_stored *c = stored(&f, name);
        const int K = k == 4 ? 2 : 3; /* the head: 12 and 40 both clip to 10, one candidate */
        CHECK_MSG(c && c->n == K && c->data[K - 1] == cap[k], "%s", name); /* 40 clipped to min(m, n) */
    }
    CHECK(stored(&f, "lowrank_nas/blocks.0.attn.proj/rank") == NULL); /* layers = qkv, fc2 */
    CHECK(stored(&f, "lowrank_nas/blocks.0.attn.qkv/rank") == NULL);  /* split */
    CHECK(curve(&f, "qkv.k/rank_by_depth") != NULL);
    CHECK(curve(&f, "head/loss") != NULL);
    CHECK(curve(&f, "patch_embed/loss") != NULL);
    teardown(&f);
}
