/* test_dfq_session.c — dynamic_focus in a block reconstruction through the pass session (what
 * lowrank_nas and aph_recon drive): b1 and b2 of blocks.0.attn.probs are the unit's trainables (per head),
 * the session's backward reaches the plugin's (non-zero gradients), Adam steps and the session's project
 * keep every interval inside 0 <= b1 < b2 <= 1 with b2 - b1 >= 1e-4, the block's loss goes down, and
 * commit freezes them (no gradients left, the committed values are the quantizer's). Zero mode at 3 bits,
 * as the spec expects learned b1 to matter there. */
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

static vitq_kv KV[2][6] = {
    {{"taps", "blocks.*.weight", "t.ini", 2}, {"plugin", "uniform", "t.ini", 3}, {"bits", "4", "t.ini", 4},
     {"granularity", "per_channel", "t.ini", 5}},
    {{"taps", "blocks.*.attn.probs", "t.ini", 7}, {"plugin", "dynamic_focus", "t.ini", 8}, {"bits", "3", "t.ini", 9},
     {"granularity", "head", "t.ini", 10}, {"init", "minmax", "t.ini", 11}, {"below", "zero", "t.ini", 12}},
};
static vitq_section SECS[2] = {{"quantizer w", KV[0], 4, "t.ini", 1}, {"quantizer p", KV[1], 6, "t.ini", 6}};

/* test_session.c's fixture: a 28x28 ViT (patch 7, dim 16, 2 heads, depth 2), random weights, calibrated on
 * 32 Fashion-MNIST training images; a session over 64 images. */
static int setup(fixture *f) {
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
    for (int64_t i = 0; i < f->teacher->n_params; i++) f->teacher->slab[i] += 0.05f * (float)((i * 7919) % 13 - 6);
    vitq_model_clone(f->teacher, &f->student, &e);
    f->order = vitq_calib_subset(11, vitq_dataset_size(f->data), 64);
    float *img = malloc(sizeof(float) * 32 * 784);
    int rc = vitq_dataset_load(f->data, f->order, 32, img, NULL, &e);
    if (!rc) rc = vitq_qmodel_create(f->student, SECS, 2, 5, &f->q, &e);
    if (!rc) rc = vitq_qmodel_calibrate(f->q, img, 32, "float", &e);
    free(img);
    vitq_session_cfg c = {.teacher = f->teacher, .student = f->student, .data = f->data, .order = f->order,
                          .n_order = 64, .seed = 5, .batch = 16, .state_key = "k1"};
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

static double mse(const float *y, const float *t, float *dy, int64_t n) {
    double l = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)y[i] - t[i];
        l += d * d;
        dy[i] = (float)(2 * d / (double)n);
    }
    return l / (double)n;
}

static int feasible(const float *b1, const float *b2, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!(b1[i] >= 0 && b2[i] <= 1 && (double)b2[i] - (double)b1[i] >= 1e-4)) return 0;
    return 1;
}

TEST(dfq_session_reconstruction) {
    fixture f;
    if (setup(&f)) {
        teardown(&f);
        return;
    }
    vitq_session *s = f.s;
    const vitq_session_api *A = f.api;
    const int u = 1, B = 16; /* unit 1: blocks.0 */
    vitq_unit_info ui;
    CHECK(A->images(s, 64) == 0 && A->unit(s, u, &ui) == 0);
    const int64_t n = B * ui.out_numel;
    float *x = malloc(sizeof(float) * (size_t)(B * ui.in_numel)), *t = malloc(sizeof(float) * (size_t)n);
    float *y = malloc(sizeof(float) * (size_t)n), *dy = malloc(sizeof(float) * (size_t)n);
    CHECK(A->begin(s, u, B) == 0);
    vitq_qtensor tr[4];
    CHECK_EQ(A->trainables(s, u, "*.attn.probs:b*", tr, 4), 2);
    CHECK_EQ(tr[0].n, 2); /* one interval per head */
    float start[4] = {tr[0].value[0], tr[0].value[1], tr[1].value[0], tr[1].value[1]};
    vitq_adam_group g[2] = {{tr[0].value, tr[0].grad, 2, 0.9, 0.999, 1e-8, 0}, {tr[1].value, tr[1].grad, 2, 0.9, 0.999, 1e-8, 0}};
    double lr[2] = {3e-3, 3e-3}, first = 0, last = 0;
    vitq_opt *o = A->adam_create(s, g, 2);
    int infeasible = 0, moved_grad = 0;
    for (int it = 0; it < 60 && o; it++) {
        int64_t idx[16];
        for (int b = 0; b < B; b++) idx[b] = (it * B + b) % 64;
        CHECK(A->io(s, u, VITQ_IO_Q_IN, idx, B, x) == 0 && A->io(s, u, VITQ_IO_FP_OUT, idx, B, t) == 0);
        CHECK(A->forward(s, u, x, B, 1.0, y) == 0);
        double l = mse(y, t, dy, n);
        if (it < 5) first += l / 5;
        if (it >= 55) last += l / 5;
        A->zero_grad(s, u);
        CHECK(A->backward(s, u, dy, B, NULL) == 0);
        moved_grad += tr[0].grad[0] != 0 || tr[1].grad[0] != 0;
        A->adam_step(o, lr);
        CHECK(A->project(s, u) == 0);
        infeasible += !feasible(tr[0].value, tr[1].value, 2);
    }
    A->adam_free(o);
    printf("  blocks.0 with dynamic_focus b1, b2: mse %.6g -> %.6g; head 0 [%g, %g] -> [%g, %g]\n", first, last,
           (double)start[0], (double)start[2], (double)tr[0].value[0], (double)tr[1].value[0]);
    CHECK(moved_grad > 50);
    CHECK_EQ(infeasible, 0);
    CHECK(tr[0].value[0] != start[0] || tr[1].value[0] != start[2]);
    CHECK(last < first);
    float b1[2] = {tr[0].value[0], tr[0].value[1]}, b2[2] = {tr[1].value[0], tr[1].value[1]};
    CHECK_EQ(A->commit(s, u), 0);
    vitq_err e;
    vitq_qtensor qt[2];
    CHECK(vitq_qmodel_tensors(f.q, "blocks.0.attn.probs", qt, 2, &e) == 2);
    CHECK(qt[0].grad == NULL); /* frozen: no gradients */
    CHECK(memcmp(qt[0].value, b1, sizeof b1) == 0 && memcmp(qt[1].value, b2, sizeof b2) == 0);
    free(x), free(t), free(y), free(dy);
    teardown(&f);
}
