/* test_session.c — the pass session (train/session*.c) driven directly through its services: caches,
 * a short reconstruction of one block with learnable activation scales lowering its loss, gradients
 * cleared by zero_grad, commit saving a state that a second session resumes from (same quantized
 * model, bit for bit), and refusals naming what is wrong. */
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    vitq_model *teacher, *student;
    vitq_dataset *data;
    int64_t *order;
    vitq_qmodel *q;
    vitq_session *s;
    const vitq_session_api *api;
} fixture;

static vitq_kv KV[3][6] = {
    {{"taps", "blocks.*.weight", "t.ini", 2}, {"plugin", "uniform", "t.ini", 3}, {"bits", "4", "t.ini", 4},
     {"granularity", "per_channel", "t.ini", 5}},
    {{"taps", "blocks.*.input", "t.ini", 7}, {"plugin", "uniform", "t.ini", 8}, {"bits", "4", "t.ini", 9},
     {"learnable", "true", "t.ini", 10}, {"grad_scale", "false", "t.ini", 11}},
};
static vitq_section SECS[2] = {{"quantizer w", KV[0], 4, "t.ini", 1}, {"quantizer a", KV[1], 5, "t.ini", 6}};

/* A 28x28 ViT (patch 7, dim 16, depth 2) with random weights, quantized at W4A4 and calibrated on 32
 * Fashion-MNIST training images; a session over the first 64 images of a seeded order. */
static int setup(fixture *f, const char *state_path) {
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
    if (!rc) rc = vitq_qmodel_create(f->student, SECS, 2, 5, &f->q, &e);
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

/* mean squared error of y against t (n values) and its gradient. */
static double mse(const float *y, const float *t, float *dy, int64_t n) {
    double l = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)y[i] - t[i];
        l += d * d;
        dy[i] = (float)(2 * d / (double)n);
    }
    return l / (double)n;
}

/* 60 Adam steps on block 0's activation scales (batch 16, cycling over the 64 images). */
static void reconstruct(fixture *f, int u, double *first, double *last) {
    vitq_session *s = f->s;
    const vitq_session_api *A = f->api;
    vitq_unit_info ui;
    CHECK(A->unit(s, u, &ui) == 0);
    const int B = 16;
    const int64_t n = B * ui.out_numel;
    float *x = malloc(sizeof(float) * (size_t)(B * ui.in_numel)), *t = malloc(sizeof(float) * (size_t)n);
    float *y = malloc(sizeof(float) * (size_t)n), *dy = malloc(sizeof(float) * (size_t)n);
    CHECK(A->begin(s, u, B) == 0);
    vitq_qtensor tr[32];
    int nt = A->trainables(s, u, "*:scale", tr, 32);
    CHECK_EQ(nt, 4); /* qkv, proj, fc1, fc2 inputs */
    vitq_adam_group g[32];
    double lr[32];
    for (int i = 0; i < nt; i++) g[i] = (vitq_adam_group){tr[i].value, tr[i].grad, tr[i].n, 0.9, 0.999, 1e-8, 0}, lr[i] = 2e-3;
    vitq_opt *o = A->adam_create(s, g, nt);
    for (int it = 0; it < 60; it++) {
        int64_t idx[16];
        for (int b = 0; b < B; b++) idx[b] = (it * B + b) % 64;
        CHECK(A->io(s, u, VITQ_IO_Q_IN, idx, B, x) == 0 && A->io(s, u, VITQ_IO_FP_OUT, idx, B, t) == 0);
        CHECK(A->forward(s, u, x, B, 1.0, y) == 0);
        double l = mse(y, t, dy, n);
        if (it == 0) *first = l;
        *last = l;
        A->zero_grad(s, u);
        CHECK(A->backward(s, u, dy, B, NULL) == 0);
        A->adam_step(o, lr);
        A->record(s, "blocks.0/loss", it, l);
    }
    A->adam_free(o);
    free(x), free(t), free(y), free(dy);
}

TEST(session_reconstruction_lowers_loss_and_resumes) {
    char path[600];
    snprintf(path, sizeof path, "%s/state.h5", test_tmpdir());
    fixture f;
    if (setup(&f, path)) {
        teardown(&f);
        return;
    }
    vitq_session *s = f.s;
    const vitq_session_api *A = f.api;
    CHECK_EQ(A->n_units(s), 4);
    CHECK_EQ(A->io(s, 1, VITQ_IO_FP_IN, (int64_t[]){0}, 1, NULL), VITQ_EINVAL); /* images() first */
    CHECK(A->images(s, 64) == 0);
    CHECK_EQ(A->images(s, 65), VITQ_EINVAL);
    CHECK(A->images(s, 64) == 0);
    CHECK_EQ(A->forward(s, 1, NULL, 1, 1.0, NULL), VITQ_EINVAL); /* not begun */
    int64_t per = 0;
    CHECK(A->capture(s, "blocks.1.mlp.fc1.input", 0, NULL, &per) == 0);
    CHECK_EQ(per, 17 * 16);
    float *ct = malloc(sizeof(float) * 64 * 17 * 16), *cs = malloc(sizeof(float) * 64 * 17 * 16);
    CHECK(A->capture(s, "blocks.1.mlp.fc1.input", 0, ct, NULL) == 0);
    CHECK(A->capture(s, "blocks.1.mlp.fc1.input", 1, cs, NULL) == 0); /* the student is still the teacher */
    CHECK_EQ(memcmp(ct, cs, sizeof(float) * 64 * 17 * 16), 0);
    f.student->mlp_act[0] = VITQ_ACT_RELU; /* a changed student: its block 1 sees other inputs */
    A->sync(s);
    CHECK(A->capture(s, "blocks.1.mlp.fc1.input", 1, cs, NULL) == 0);
    CHECK(memcmp(ct, cs, sizeof(float) * 64 * 17 * 16) != 0);
    f.student->mlp_act[0] = VITQ_ACT_GELU;
    A->sync(s);
    free(ct), free(cs);
    CHECK_EQ(A->capture(s, "blocks.9.attn.probs", 0, NULL, &per), VITQ_EINVAL);
    double first = 0, last = 0;
    reconstruct(&f, 1, &first, &last);
    printf("  block 0 reconstruction: mse %.6g -> %.6g\n", first, last);
    CHECK(last < 0.9 * first);
    vitq_qtensor tr[8];
    CHECK(A->trainables(s, 1, "blocks.0.mlp.fc2.input:scale", tr, 8) == 1);
    CHECK(tr[0].grad[0] != 0);
    A->zero_grad(s, 1);
    CHECK_EQ(tr[0].grad[0], 0.0f);
    CHECK_EQ(A->commit(s, 1), 0);
    CHECK_EQ(A->resume_unit(s), 2);
    CHECK_EQ(access(path, F_OK), 0);
    const vitq_curve *cv;
    int nc;
    vitq_session_curves(s, &cv, &nc);
    CHECK_EQ(nc, 1);
    CHECK_EQ(cv[0].n, 60);
    /* logits of the committed model, then a fresh cell resuming from the state: the same numbers */
    float img[4 * 784], l1[40], l2[40];
    vitq_err e;
    vitq_dataset_load(f.data, f.order, 4, img, NULL, &e);
    vitq_acts *a = NULL;
    CHECK(vitq_acts_create(vitq_qmodel_model(f.q), 4, 0, &a, &e) == 0);
    CHECK(vitq_forward(vitq_qmodel_model(f.q), a, img, 4, &e) == 0);
    memcpy(l1, a->logits, sizeof l1);
    vitq_acts_free(a);
    fixture g;
    if (!setup(&g, path)) {
        g.s->pass_name = "other";
        CHECK_EQ(vitq_session_resume(g.s, &e), 0); /* what vitq_session_run does first */
        CHECK_EQ(g.api->resume_unit(g.s), 0);      /* another pass name: not resumed */
        g.s->pass_name = NULL;
        CHECK_EQ(vitq_session_resume(g.s, &e), 0);
        CHECK_EQ(g.api->resume_unit(g.s), 2);
        CHECK(vitq_acts_create(vitq_qmodel_model(g.q), 4, 0, &a, &e) == 0);
        CHECK(vitq_forward(vitq_qmodel_model(g.q), a, img, 4, &e) == 0);
        memcpy(l2, a->logits, sizeof l2);
        vitq_acts_free(a);
        CHECK_EQ(memcmp(l1, l2, sizeof l1), 0);
    }
    teardown(&g);
    teardown(&f);
}

TEST(session_backward_computes_float_gradients_once_asked) {
    /* A reconstruction's backward leaves the biases' and LayerNorms' gradients out (no one reads them) until
     * the plugin holds a float tensor's gradient through tensor(); the weights' gradients are there either way. */
    fixture f;
    if (setup(&f, NULL)) {
        teardown(&f);
        return;
    }
    vitq_session *s = f.s;
    const vitq_session_api *A = f.api;
    vitq_unit_info ui;
    CHECK(A->images(s, 64) == 0 && A->unit(s, 1, &ui) == 0 && A->begin(s, 1, 16) == 0);
    const int B = 16;
    float *x = malloc(sizeof(float) * (size_t)(B * ui.in_numel));
    float *y = malloc(sizeof(float) * (size_t)(B * ui.out_numel));
    int64_t idx[16];
    for (int b = 0; b < B; b++) idx[b] = b;
    CHECK(A->io(s, 1, VITQ_IO_Q_IN, idx, B, x) == 0 && A->forward(s, 1, x, B, 1.0, y) == 0);
    for (int64_t i = 0; i < B * ui.out_numel; i++) y[i] = 1e-3f * (float)(i % 17 - 8); /* dy */
    vitq_model *qm = vitq_qmodel_model(f.q);
    const float *gb = qm->g.blocks[0].fc1_b, *gn = qm->g.blocks[0].norm1_w, *gw = qm->g.blocks[0].fc1_w;
    for (int pass = 0; pass < 2; pass++) {
        vitq_model_zero_grads(qm);
        CHECK(A->backward(s, 1, y, B, NULL) == 0);
        double sb = 0, sn = 0, sw = 0;
        for (int i = 0; i < 32; i++) sb += fabs(gb[i]), sw += fabs(gw[i]);
        for (int i = 0; i < 16; i++) sn += fabs(gn[i]);
        CHECK_MSG(sw > 0, "pass %d: no weight gradient", pass);
        CHECK_MSG(pass == 0 ? sb == 0 && sn == 0 : sb > 0 && sn > 0, "pass %d: |bias grad| %g, |norm grad| %g", pass,
                  sb, sn);
        vitq_tensor t;
        CHECK(A->tensor(s, "blocks.0.mlp.fc1.bias", &t) == 0 && t.grad == gb);
    }
    free(x), free(y);
    teardown(&f);
}

/* QDrop in the training hooks (quant/qtrain.c), on fc2's input of block 0: with drop_prob 0.5 each element
 * takes its quantized value where its mask bit is set and keeps its float value elsewhere (about half
 * each); backward gives the quantizer's straight-through gradient where quantized (what an all-quantized
 * pass gives there), the identity elsewhere, and leaves the buffer as it is (fc2's input: nothing reads it). */
TEST(session_qdrop_hooks_mix_and_split_by_the_mask) {
    fixture f;
    if (setup(&f, NULL)) return;
    vitq_err e;
    CHECK_MSG(vitq_qmodel_train(f.q, 1, &e) == 0, "%s", e.msg);
    const int tap = vitq_tap_id(f.q->m, VITQ_SITE_FC2_IN, 0);
    vitq_qtap *t = NULL;
    for (int i = 0; i < f.q->n_taps; i++)
        if (f.q->taps[i].act == tap) t = &f.q->taps[i];
    CHECK(t != NULL && t->training);
    if (!t) return teardown(&f);
    enum { B = 2, N = 17, F = 32, n = B * N * F };
    const int64_t shape[3] = {B, N, F};
    static float x[n], yq[n], qv[n], y[n], d0[n], dq[n], dx[n];
    for (int i = 0; i < n; i++)
        x[i] = (float)((i * 7919) % 201 - 60) / 40.0f, d0[i] = (float)((i * 31) % 17 - 8) / 8.0f;
    memcpy(yq, x, sizeof x), memcpy(y, x, sizeof x), memcpy(dq, d0, sizeof d0), memcpy(dx, d0, sizeof d0);
    vitq_qmodel_set_qdrop(f.q, 1.0, 9); /* every element quantized */
    CHECK(vitq_qmodel_hook(f.q, tap, yq, 3, shape) == 0);
    memcpy(qv, yq, sizeof yq);
    CHECK(vitq_qmodel_hook_backward(f.q, tap, yq, dq, 3, shape) == 0);
    vitq_qmodel_set_qdrop(f.q, 0.5, 9);
    CHECK(vitq_qmodel_hook(f.q, tap, y, 3, shape) == 0);
    int quantized = 0, bad_fwd = 0, changed = 0;
    for (int i = 0; i < n; i++) {
        const int bit = (int)((t->mask[i >> 6] >> (i & 63)) & 1);
        quantized += bit;
        bad_fwd += bit ? y[i] != qv[i] : y[i] != x[i];
        changed += bit && y[i] != x[i];
    }
    CHECK_EQ(bad_fwd, 0);
    CHECK_MSG(quantized > n / 2 - 80 && quantized < n / 2 + 80, "%d of %d quantized", quantized, n);
    CHECK(changed > n / 4); /* the quantized ones do move */
    float fwd[n];
    memcpy(fwd, y, sizeof fwd);
    CHECK(vitq_qmodel_hook_backward(f.q, tap, y, dx, 3, shape) == 0);
    int bad_bwd = 0;
    for (int i = 0; i < n; i++) {
        const int bit = (int)((t->mask[i >> 6] >> (i & 63)) & 1);
        bad_bwd += bit ? dx[i] != dq[i] : dx[i] != d0[i];
    }
    CHECK_EQ(bad_bwd, 0);
    /* GELU's backward reads its input, not this buffer: x is not restored (vitq_tap_desc.restore) */
    CHECK(!vitq_tap_get(f.q->m, tap)->restore);
    CHECK(memcmp(y, fwd, sizeof fwd) == 0);
    teardown(&f);
}

