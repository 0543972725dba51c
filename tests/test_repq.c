/* test_repq.c — the `repq` pass (RepQ-ViT's reparameterisation, specs/aphq-vit.md §2.4): the fold's
 * arithmetic on the spec's oracle O8, and the pass on a model: the float function unchanged (logits to
 * 1e-5) with the LayerNorms and linear layers changed. */
#include "test.h"

#include "../plugins/repq_fold.h"

#include <stdlib.h>
#include <string.h>

TEST(repq_fold_oracle_o8) {
    const float s[2] = {0.1f, 0.3f}, z[2] = {2, 5};
    float r[2], b[2], zbar;
    float sbar = repq_factors(s, z, 2, r, b, &zbar);
    CHECK_NEAR(sbar, 0.2, 1e-7);
    CHECK_EQ(zbar, 4.0f); /* round(3.5) half to even */
    CHECK_NEAR(r[0], 0.5, 1e-6);
    CHECK_NEAR(r[1], 1.5, 1e-6);
    CHECK_NEAR(b[0], 0.4, 1e-6);
    CHECK_NEAR(b[1], -0.2, 1e-6);
    /* Linear'(LN'(x)) = Linear(LN(x)) for the post-LN value y = γ·n + β: W'(y'/1) + bias' = W y + bias */
    float g[2] = {1.3f, -0.7f}, be[2] = {0.2f, 0.5f}, W[6] = {0.5f, -1, 2, 0.25f, -0.3f, 0.8f}, bias[3] = {0.1f, 0, -0.2f};
    float g2[2], be2[2], W2[6], bias2[3];
    memcpy(g2, g, sizeof g), memcpy(be2, be, sizeof be), memcpy(W2, W, sizeof W), memcpy(bias2, bias, sizeof bias);
    repq_fold(g2, be2, W2, bias2, 3, 2, r, b);
    const float n[2] = {0.9f, -1.4f}; /* a normalised token */
    for (int o = 0; o < 3; o++) {
        double y = bias[o], y2 = bias2[o];
        for (int c = 0; c < 2; c++) y += (double)W[o * 2 + c] * (g[c] * n[c] + be[c]), y2 += (double)W2[o * 2 + c] * (g2[c] * n[c] + be2[c]);
        CHECK_NEAR(y2, y, 1e-6);
    }
}

static vitq_model *model28(void) {
    vitq_arch a = {.name = "t28", .img_size = 28, .patch_size = 7, .in_chans = 1, .num_classes = 10,
                   .embed_dim = 16, .depth = 2, .num_heads = 2, .mlp_ratio = 2, .qkv_bias = 1,
                   .mean = {0.2860f}, .std = {0.3530f}, .crop_pct = 1, .interpolation = "bicubic"};
    vitq_model *m = NULL;
    vitq_err e;
    if (vitq_model_create(&a, &m, &e)) return NULL;
    vitq_model_init_train(m, 3, 0.2f);
    for (int64_t i = 0; i < m->n_params; i++) m->slab[i] += 0.05f * (float)((i * 7919) % 13 - 6);
    return m;
}

static void logits(vitq_model *m, const float *img, int B, float *out) {
    vitq_acts *a = NULL;
    vitq_err e;
    if (vitq_acts_create(m, B, 0, &a, &e) || vitq_forward(m, a, img, B, &e)) test_failf(__FILE__, __LINE__, "%s", e.msg);
    else memcpy(out, a->logits, sizeof(float) * (size_t)(B * 10));
    vitq_acts_free(a);
}

TEST(repq_pass_keeps_the_function) {
    vitq_model *t = model28(), *s = NULL;
    vitq_dataset *d = NULL;
    vitq_err e;
    vitq_data_opts o = {.img_size = 28, .in_chans = 1, .mean = {0.2860f}, .std = {0.3530f}, .crop_pct = 1};
    if (!t || vitq_dataset_open("fashion-mnist", "train", &o, &d, &e) || vitq_model_clone(t, &s, &e)) {
        test_failf(__FILE__, __LINE__, "setup failed");
        return;
    }
    int64_t *order = vitq_calib_subset(4, vitq_dataset_size(d), 32);
    vitq_session_cfg c = {.teacher = t, .student = s, .data = d, .order = order, .n_order = 32, .seed = 4, .batch = 16};
    vitq_session *ss = NULL;
    const vitq_plugin *p = NULL;
    CHECK(vitq_session_create(&c, &ss, &e) == 0);
    CHECK_MSG(vitq_plugin_load("repq", NULL, &p, &e) == 0, "%s", e.msg);
    if (!ss || !p) goto out;
    vitq_kv kv[2] = {{"bits", "4", "t.ini", 2}, {"images", "32", "t.ini", 3}};
    void *params = calloc(1, p->params_size);
    CHECK(vitq_plugin_params_parse(p, "pass repq", kv, 2, params, &e) == 0);
    CHECK_MSG(vitq_session_run(ss, p, params, "test", &e) == 0, "%s", e.msg);
    free(params);
    float img[8 * 784], lt[80], ls[80];
    vitq_dataset_load(d, order, 8, img, NULL, &e);
    logits(t, img, 8, lt);
    logits(s, img, 8, ls);
    CHECK_ALLCLOSE(ls, lt, 80, 1e-5, 1e-5);
    /* the LayerNorms and the linear layers after them did change */
    int changed = 0;
    for (int cc = 0; cc < 16; cc++) {
        changed += s->p.blocks[1].norm2_w[cc] != t->p.blocks[1].norm2_w[cc];
        changed += s->p.blocks[0].qkv_w[cc] != t->p.blocks[0].qkv_w[cc];
    }
    CHECK(changed > 16);
out:
    vitq_session_free(ss);
    vitq_model_free(s);
    vitq_model_free(t);
    vitq_dataset_free(d);
    free(order);
}
