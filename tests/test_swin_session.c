/* test_swin_session.c — a Swin model through the pass session (train/session*.c) the reconstruction plugins
 * will drive: a window-layout tap captured per image (windows x tokens x channels each) equals the teacher's
 * own values, and a short reconstruction of the shifted block (learnable activation scales, Adam) lowers its
 * loss — the unit forward and backward of a Swin block under fake quantization (W8A4), end to end. */
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

static vitq_kv KV[2][5] = {
    {{"taps", "layers.*.weight", "t.ini", 2}, {"plugin", "uniform", "t.ini", 3}, {"bits", "8", "t.ini", 4},
     {"granularity", "per_channel", "t.ini", 5}},
    {{"taps", "layers.*.input", "t.ini", 7}, {"plugin", "uniform", "t.ini", 8}, {"bits", "4", "t.ini", 9},
     {"learnable", "true", "t.ini", 10}, {"grad_scale", "false", "t.ini", 11}},
};
static vitq_section SECS[2] = {{"quantizer w", KV[0], 4, "t.ini", 1}, {"quantizer a", KV[1], 5, "t.ini", 6}};

/* A 28x28x1 Swin (patch 2: 14x14 tokens, window 7: 2x2 windows, block 1 shifted; then 7x7, one window),
 * random timm-like weights, W8A4 (the 4-bit activations, whose scales are trained, dominate the error),
 * calibrated on 32 Fashion-MNIST training images; 64 images in the session. */
static int setup(fixture *f) {
    memset(f, 0, sizeof *f);
    vitq_arch a = {.family = VITQ_FAMILY_SWIN, .name = "swin28", .img_size = 28, .patch_size = 2, .in_chans = 1,
                   .num_classes = 10, .embed_dim = 8, .depth = 4, .num_heads = 2, .mlp_ratio = 2, .qkv_bias = 1,
                   .mean = {0.2860f}, .std = {0.3530f}, .crop_pct = 1, .interpolation = "bicubic", .n_stages = 2,
                   .depths = {2, 2}, .stage_heads = {2, 4}, .window_size = 7};
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
    if (!rc) rc = vitq_qmodel_create(f->student, SECS, 2, 5, &f->q, &e);
    if (!rc) rc = vitq_qmodel_calibrate(f->q, img, 32, "float", &e);
    free(img);
    vitq_session_cfg c = {.teacher = f->teacher, .student = f->student, .data = f->data, .order = f->order,
                          .n_order = 64, .seed = 5, .batch = 16, .state_key = "swin"};
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

typedef struct {
    int id;
    float *buf;
    int64_t n;
} grab;

static int grab_hook(void *ctx, int tap, float *x, int ndim, const int64_t *shape) {
    grab *g = ctx;
    if (tap != g->id) return 0;
    g->n = 1;
    for (int d = 0; d < ndim; d++) g->n *= shape[d];
    g->buf = malloc(sizeof(float) * (size_t)g->n);
    memcpy(g->buf, x, sizeof(float) * (size_t)g->n);
    return 0;
}

TEST(swin_session_capture_window_tap) {
    fixture f;
    if (setup(&f)) {
        teardown(&f);
        return;
    }
    const vitq_session_api *A = f.api;
    CHECK_EQ(A->images(f.s, 64), 0);
    int64_t per = 0;
    CHECK_EQ(A->capture(f.s, "layers.0.blocks.1.attn.probs", 0, NULL, &per), 0);
    CHECK_EQ(per, 4 * 2 * 49 * 49); /* 4 windows x heads x N x N per image */
    float *cap = malloc(sizeof(float) * (size_t)(64 * per));
    CHECK_EQ(A->capture(f.s, "layers.0.blocks.1.attn.probs", 0, cap, &per), 0);
    /* the same 64 images through the teacher in one batch, read by a hook */
    vitq_err e;
    float *img = malloc(sizeof(float) * 64 * 784);
    grab g = {.id = vitq_tap_id(f.teacher, VITQ_SITE_PROBS, 1)};
    vitq_tap_hooks h = {.act = grab_hook, .ctx = &g};
    vitq_acts *a = NULL;
    CHECK(vitq_dataset_load(f.data, f.order, 64, img, NULL, &e) == 0);
    f.teacher->hooks = &h;
    CHECK(vitq_acts_create(f.teacher, 64, 0, &a, &e) == 0 && vitq_forward(f.teacher, a, img, 64, &e) == 0);
    f.teacher->hooks = NULL;
    CHECK_EQ(g.n, 64 * per);
    if (g.buf && g.n == 64 * per) CHECK_ALLCLOSE(cap, g.buf, 64 * per, 1e-5, 1e-7);
    vitq_acts_free(a);
    free(g.buf), free(img), free(cap);
    teardown(&f);
}

static double mse(const float *y, const float *t, float *dy, int64_t n) {
    double l = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = (double)y[i] - t[i];
        l += d * d;
        dy[i] = (float)(2 * d / (double)n);
    }
    return l / (double)n;
}

/* 60 Adam steps on the activation scales of layers.0.blocks.1 (shifted windows, the -100 mask). */
TEST(swin_session_block_reconstruction_lowers_loss) {
    fixture f;
    if (setup(&f)) {
        teardown(&f);
        return;
    }
    vitq_session *s = f.s;
    const vitq_session_api *A = f.api;
    const int u = 2, B = 16;
    vitq_unit_info ui;
    CHECK(A->images(s, 64) == 0 && A->unit(s, u, &ui) == 0);
    CHECK_STREQ(ui.name, "layers.0.blocks.1");
    const int64_t n = B * ui.out_numel;
    float *x = malloc(sizeof(float) * (size_t)(B * ui.in_numel)), *t = malloc(sizeof(float) * (size_t)n);
    float *y = malloc(sizeof(float) * (size_t)n), *dy = malloc(sizeof(float) * (size_t)n);
    CHECK(A->begin(s, u, B) == 0);
    vitq_qtensor tr[32];
    const int nt = A->trainables(s, u, "*:scale", tr, 32);
    CHECK_EQ(nt, 4); /* qkv, proj, fc1, fc2 inputs */
    vitq_adam_group grp[32];
    double lr[32];
    for (int i = 0; i < nt; i++) grp[i] = (vitq_adam_group){tr[i].value, tr[i].grad, tr[i].n, 0.9, 0.999, 1e-8, 0}, lr[i] = 2e-3;
    vitq_opt *o = A->adam_create(s, grp, nt);
    double first = 0, last = 0;
    for (int it = 0; it < 60; it++) {
        int64_t idx[16];
        for (int b = 0; b < B; b++) idx[b] = (it * B + b) % 64;
        CHECK(A->io(s, u, VITQ_IO_Q_IN, idx, B, x) == 0 && A->io(s, u, VITQ_IO_FP_OUT, idx, B, t) == 0);
        CHECK(A->forward(s, u, x, B, 1.0, y) == 0);
        const double l = mse(y, t, dy, n);
        if (it == 0) first = l;
        last = l;
        A->zero_grad(s, u);
        CHECK(A->backward(s, u, dy, B, NULL) == 0);
        A->adam_step(o, lr);
    }
    A->adam_free(o);
    printf("  layers.0.blocks.1 reconstruction: loss %.4g -> %.4g\n", first, last);
    CHECK(last < 0.9 * first);
    free(x), free(t), free(y), free(dy);
    teardown(&f);
}
