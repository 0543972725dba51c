/* test_session_parts.c — data-parallel reconstruction steps (train/session_parts.c, quant/qpart.c): the batch
 * split over 2 threads, each part through the unit on its own thread, must give one batch's forward output
 * and, up to float rounding of sums over the parts, its gradients: the unit's input gradient, every
 * activation scale's (with LSQ's gradient scale, which depends on the tensor's size) and AdaRound's α (the
 * weights' float gradients summed over the parts, then the weight quantizers' backward once). A unit with
 * a quantizer that cannot be cloned runs as one batch. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    vitq_model *teacher, *student;
    vitq_dataset *data;
    int64_t *order;
    vitq_qmodel *q;
    vitq_session *s;
    const vitq_session_api *api;
} fixture;

/* Weights per channel with AdaRound; linear inputs per tensor and attention operands per head, learnable
 * with LSQ's gradient scale; probs_plugin on the attention probabilities. */
static vitq_kv KV[3][7] = {
    {{"taps", "blocks.*.weight", "t.ini", 2}, {"plugin", "uniform", "t.ini", 3}, {"bits", "4", "t.ini", 4},
     {"granularity", "per_channel", "t.ini", 5}, {"rounding", "adaround", "t.ini", 6}},
    {{"taps", "blocks.*.input, blocks.*.attn.q, blocks.*.attn.k, blocks.*.attn.v", "t.ini", 8},
     {"plugin", "uniform", "t.ini", 9}, {"bits", "4", "t.ini", 10}, {"learnable", "true", "t.ini", 11},
     {"grad_scale", "true", "t.ini", 12}},
    {{"taps", "blocks.*.attn.probs", "t.ini", 14}, {"plugin", "uniform", "t.ini", 15}, {"bits", "4", "t.ini", 16},
     {"granularity", "per_head", "t.ini", 17}, {"learnable", "true", "t.ini", 18}, {"grad_scale", "true", "t.ini", 19}},
};

static int setup(fixture *f, int data_parallel, const char *probs_plugin) {
    memset(f, 0, sizeof *f);
    vitq_section secs[3] = {{"quantizer w", KV[0], 5, "t.ini", 1}, {"quantizer a", KV[1], 5, "t.ini", 7},
                            {"quantizer p", KV[2], 6, "t.ini", 13}};
    KV[2][1].value = (char *)probs_plugin; /* a static string, only read */
    secs[2].n_kv = strcmp(probs_plugin, "uniform") ? 3 : 6; /* log2: bits only */
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
    vitq_model_clone(f->teacher, &f->student, &e);
    f->order = vitq_calib_subset(11, vitq_dataset_size(f->data), 64);
    float *img = malloc(sizeof(float) * 32 * 784);
    int rc = vitq_dataset_load(f->data, f->order, 32, img, NULL, &e);
    if (!rc) rc = vitq_qmodel_create(f->student, secs, 3, 5, &f->q, &e);
    if (!rc) rc = vitq_qmodel_calibrate(f->q, img, 32, "float", &e);
    free(img);
    vitq_session_cfg c = {.teacher = f->teacher, .student = f->student, .data = f->data, .order = f->order,
                          .n_order = 64, .seed = 5, .batch = 16, .data_parallel = data_parallel};
    if (!rc) rc = vitq_session_create(&c, &f->s, &e);
    if (rc) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return -1;
    }
    vitq_session_set_qmodel(f->s, f->q);
    f->api = vitq_session_services();
    if (f->api->images(f->s, 64)) {
        test_failf(__FILE__, __LINE__, "images: %s", f->s->err);
        return -1;
    }
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

enum { B = 10, MAXT = 64 };

/* One step of block 0 (unit 1) on images 0..B-1: its output, input gradient and trainables' gradients. */
typedef struct {
    float *y, *dx;
    vitq_qtensor t[MAXT];
    int nt, parts;
} step_out;

static void unit_step(fixture *f, int u, step_out *o) {
    const vitq_session_api *A = f->api;
    vitq_unit_info ui;
    CHECK(A->unit(f->s, u, &ui) == 0);
    const int64_t n = B * ui.out_numel;
    float *x = malloc(sizeof(float) * (size_t)(B * ui.in_numel)), *dy = malloc(sizeof(float) * (size_t)n);
    o->y = malloc(sizeof(float) * (size_t)n), o->dx = malloc(sizeof(float) * (size_t)(B * ui.in_numel));
    int64_t idx[B];
    for (int b = 0; b < B; b++) idx[b] = b;
    CHECK(A->begin(f->s, u, B) == 0);
    o->parts = vitq_ss_parts_active(f->s);
    CHECK(A->io(f->s, u, VITQ_IO_Q_IN, idx, B, x) == 0);
    CHECK(A->zero_grad(f->s, u) == 0);
    CHECK(A->forward(f->s, u, x, B, 1.0, o->y) == 0);
    for (int64_t i = 0; i < n; i++) dy[i] = o->y[i] * (float)((i % 7) - 3) * 0.01f; /* d of a fixed toy loss */
    CHECK(A->backward(f->s, u, dy, B, o->dx) == 0);
    o->nt = A->trainables(f->s, u, "*", o->t, MAXT);
    free(x), free(dy);
}

static void one_step(fixture *f, step_out *o) { unit_step(f, 1, o); }

TEST(session_parts_give_one_batch_output_and_gradients) {
    const int threads = vitq_threads_get();
    vitq_threads_set(2);
    fixture one, dp;
    if (setup(&one, 0, "uniform") || setup(&dp, 1, "uniform")) return;
    step_out a, b;
    one_step(&one, &a);
    one_step(&dp, &b);
    CHECK_EQ(a.parts, 0);
    CHECK_EQ(b.parts, 1);
    vitq_unit_info ui;
    CHECK(one.api->unit(one.s, 1, &ui) == 0);
    /* the forward is row by row: the same numbers */
    CHECK_ALLCLOSE(b.y, a.y, B * ui.out_numel, 0, 0);
    CHECK_ALLCLOSE(b.dx, a.dx, B * ui.in_numel, 0, 0);
    /* gradients summed over 2 parts: float rounding only */
    CHECK_EQ(b.nt, a.nt);
    int scales = 0, alphas = 0;
    for (int i = 0; i < a.nt && i < b.nt; i++) {
        CHECK_STREQ(b.t[i].name, a.t[i].name);
        CHECK_EQ(b.t[i].n, a.t[i].n);
        scales += strstr(a.t[i].name, ":scale") != NULL, alphas += strstr(a.t[i].name, ":alpha") != NULL;
        CHECK_ALLCLOSE(b.t[i].grad, a.t[i].grad, a.t[i].n, 1e-4, 1e-7);
    }
    CHECK_EQ(scales, 8); /* qkv, proj, fc1, fc2 inputs; q, k, v, probs */
    CHECK_EQ(alphas, 4);
    free(a.y), free(a.dx), free(b.y), free(b.dx);
    teardown(&one);
    teardown(&dp);
    vitq_threads_set(threads);
}

/* A second step after an update: the parts see the new scales (sync), and their gradients were cleared. */
TEST(session_parts_follow_updates_between_steps) {
    const int threads = vitq_threads_get();
    vitq_threads_set(2);
    fixture one, dp;
    if (setup(&one, 0, "uniform") || setup(&dp, 1, "uniform")) return;
    step_out a, b;
    one_step(&one, &a);
    one_step(&dp, &b);
    for (int i = 0; i < a.nt; i++) /* the same update of both: value -= 0.1 * (one batch's gradient) */
        for (int64_t k = 0; k < a.t[i].n; k++) {
            a.t[i].value[k] -= 0.1f * a.t[i].grad[k];
            b.t[i].value[k] = a.t[i].value[k];
        }
    free(a.y), free(a.dx), free(b.y), free(b.dx);
    vitq_unit_info ui;
    CHECK(one.api->unit(one.s, 1, &ui) == 0);
    int64_t idx[B];
    for (int k = 0; k < B; k++) idx[k] = 20 + k;
    const int64_t n = B * ui.out_numel;
    float *x = malloc(sizeof(float) * (size_t)(B * ui.in_numel)), *ya = malloc(sizeof(float) * (size_t)n),
          *yb = malloc(sizeof(float) * (size_t)n);
    CHECK(one.api->io(one.s, 1, VITQ_IO_Q_IN, idx, B, x) == 0);
    CHECK(one.api->zero_grad(one.s, 1) == 0 && dp.api->zero_grad(dp.s, 1) == 0);
    CHECK(one.api->forward(one.s, 1, x, B, 1.0, ya) == 0);
    CHECK(dp.api->forward(dp.s, 1, x, B, 1.0, yb) == 0);
    CHECK_ALLCLOSE(yb, ya, n, 0, 0);
    CHECK(one.api->backward(one.s, 1, ya, B, NULL) == 0);
    CHECK(dp.api->backward(dp.s, 1, yb, B, NULL) == 0);
    for (int i = 0; i < a.nt; i++) CHECK_ALLCLOSE(b.t[i].grad, a.t[i].grad, a.t[i].n, 1e-4, 1e-7);
    free(x), free(ya), free(yb);
    teardown(&one);
    teardown(&dp);
    vitq_threads_set(threads);
}

TEST(session_parts_fall_back_to_one_batch_without_clone) {
    const int threads = vitq_threads_get();
    vitq_threads_set(2);
    fixture f;
    if (setup(&f, 1, "log2")) return; /* log2 has no clone */
    step_out o;
    one_step(&f, &o);
    CHECK_EQ(o.parts, 0);
    char why[200] = "";
    CHECK_EQ(vitq_qpart_supported(f.q, 1, why, sizeof why), 0);
    CHECK_STREQ(why, "plugin 'log2' on 'blocks.0.attn.probs' has no clone");
    CHECK_EQ(f.s->dp_whole, 1);
    CHECK_STREQ(f.s->dp_why, why);
    free(o.y), free(o.dx);
    teardown(&f);
    vitq_threads_set(threads);
}

TEST(session_parts_stay_off_at_one_thread) {
    const int threads = vitq_threads_get();
    vitq_threads_set(1);
    fixture f;
    if (setup(&f, 1, "uniform")) return;
    step_out o;
    one_step(&f, &o);
    CHECK_EQ(vitq_qpart_supported(f.q, 1, NULL, 0), 1); /* in training now: it could, but one thread has no second part */
    CHECK_EQ(f.s->dp_whole, 1);
    CHECK_STREQ(f.s->dp_why, "1 thread");
    CHECK_EQ(o.parts, 0);
    free(o.y), free(o.dx);
    teardown(&f);
    vitq_threads_set(threads);
}

/* The head (its pooled input's per-tensor scale, its weight's α): the same gradients from 2 parts. */
TEST(session_parts_head_gradients) {
    const int threads = vitq_threads_get();
    vitq_threads_set(2);
    fixture one, dp;
    if (setup(&one, 0, "uniform") || setup(&dp, 1, "uniform")) return;
    const int u = vitq_unit_count(vitq_qmodel_model(one.q)) - 1;
    for (int k = 0; k < u; k++) CHECK(one.api->begin(one.s, k, B) == 0 && one.api->commit(one.s, k) == 0 &&
                                      dp.api->begin(dp.s, k, B) == 0 && dp.api->commit(dp.s, k) == 0);
    step_out a, b;
    unit_step(&one, u, &a);
    unit_step(&dp, u, &b);
    CHECK_EQ(b.parts, 1);
    vitq_unit_info ui;
    CHECK(one.api->unit(one.s, u, &ui) == 0);
    CHECK_ALLCLOSE(b.y, a.y, B * ui.out_numel, 1e-6, 1e-7); /* 5-row and 10-row sgemms may round differently */
    CHECK_EQ(b.nt, a.nt);
    for (int i = 0; i < a.nt && i < b.nt; i++) CHECK_ALLCLOSE(b.t[i].grad, a.t[i].grad, a.t[i].n, 1e-4, 1e-7);
    free(a.y), free(a.dx), free(b.y), free(b.dx);
    teardown(&one);
    teardown(&dp);
    vitq_threads_set(threads);
}
