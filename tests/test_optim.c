/* test_optim.c — AdamW, the cosine schedule with warm-up, gradient clipping, the parameter decay rule and
 * the PRNG (optim.c), against hand-computed values.
 * The two AdamW steps were worked through by hand (double) and agree with torch.optim.AdamW:
 *   p0 = [1, -2, 0.5], lr 0.01, betas (0.9, 0.999), eps 1e-8, weight_decay 0.1
 *   g1 = [0.1, -0.2, 0.3]: step 1 moves every weight by -lr*sign(g) after decay: [0.989, -1.988, 0.4895]
 *   g2 = [0.05, 0.1, -0.1]: [0.97868920579, -1.98334863027, 0.485008314792]  (torch float32: 0.978689253,
 *   -1.98334873, 0.485008329) */
#include "test.h"

#include <string.h>


TEST(optim_adamw_two_steps) {
    vitq_adamw o;
    vitq_err e;
    CHECK(vitq_adamw_init(&o, 3, 0.9f, 0.999f, 1e-8f, 0.1f, &e) == 0);
    float p[3] = {1.0f, -2.0f, 0.5f};
    const float g1[3] = {0.1f, -0.2f, 0.3f}, g2[3] = {0.05f, 0.1f, -0.1f};
    vitq_adamw_update(&o, p, g1, 0, 3, 0.01f, 0.1f, 1);
    CHECK_NEAR(p[0], 0.989, 2e-7);
    CHECK_NEAR(p[1], -1.988, 2e-7);
    CHECK_NEAR(p[2], 0.4895, 2e-7);
    CHECK_NEAR(o.m[0], 0.01, 1e-8); // float state: (1 - 0.9f) * 0.1f
    CHECK_NEAR(o.v[2], 9e-5, 2e-9);  // (1 - 0.999f) is not exactly 1e-3 in float
    vitq_adamw_update(&o, p, g2, 0, 3, 0.01f, 0.1f, 2);
    CHECK_NEAR(p[0], 0.97868920579, 3e-7);
    CHECK_NEAR(p[1], -1.98334863027, 3e-7);
    CHECK_NEAR(p[2], 0.485008314792, 3e-7);
    vitq_adamw_release(&o);
}

/* Updated 16 at a time (the AVX-512 loop, where the CPU has it) or one element per call (the scalar loop:
 * a call of one element never takes the vector path): the same bits, over three steps with decay. */
TEST(optim_adamw_vector_loop_same_bits) {
    enum { N = 37 };
    vitq_adamw a, b;
    vitq_err e;
    CHECK(vitq_adamw_init(&a, N, 0.9f, 0.999f, 1e-8f, 0.1f, &e) == 0);
    CHECK(vitq_adamw_init(&b, N, 0.9f, 0.999f, 1e-8f, 0.1f, &e) == 0);
    float pa[N], pb[N], g[N];
    for (int i = 0; i < N; i++) pa[i] = pb[i] = (float)(i % 9 - 4) * 0.37f;
    for (int t = 1; t <= 3; t++) {
        for (int i = 0; i < N; i++) g[i] = i % 5 == 0 ? 0.0f : (float)((i * 7 + t * 13) % 23 - 11) * 1e-3f;
        vitq_adamw_update(&a, pa, g, 0, N, 0.01f, 0.1f, t);
        for (int i = 0; i < N; i++) vitq_adamw_update(&b, pb + i, g + i, i, 1, 0.01f, 0.1f, t);
    }
    CHECK(memcmp(pa, pb, sizeof pa) == 0);
    CHECK(memcmp(a.m, b.m, sizeof(float) * N) == 0 && memcmp(a.v, b.v, sizeof(float) * N) == 0);
    vitq_adamw_release(&a), vitq_adamw_release(&b);
}

TEST(optim_adamw_no_decay_and_offsets) {
    // wd = 0: step 1 is exactly -lr * sign(g) (|m_hat / sqrt(v_hat)| = 1), whatever the gradient's size
    vitq_adamw o;
    vitq_err e;
    CHECK(vitq_adamw_init(&o, 5, 0.9f, 0.999f, 1e-8f, 0.05f, &e) == 0);
    float p[2] = {3.0f, -1.0f};
    const float g[2] = {-1e-3f, 42.0f};
    vitq_adamw_update(&o, p, g, 3, 2, 0.5f, 0.0f, 1);
    CHECK_NEAR(p[0], 3.5, 1e-5);
    CHECK_NEAR(p[1], -1.5, 1e-6);
    // state at the offset only
    CHECK_EQ(o.m[0], 0.0f);
    CHECK(o.m[3] != 0.0f);
    CHECK(o.v[4] != 0.0f);
    vitq_adamw_release(&o);
}

TEST(optim_decay_rule) {
    vitq_arch a = {.name = "t", .img_size = 8, .patch_size = 4, .in_chans = 1, .num_classes = 3, .embed_dim = 4,
                   .depth = 1, .num_heads = 2, .mlp_ratio = 2.0f, .qkv_bias = 1, .mean = {0.5f}, .std = {0.5f},
                   .crop_pct = 1.0f, .interpolation = "bicubic"};
    vitq_model *m = NULL;
    vitq_err e;
    CHECK(vitq_model_create(&a, &m, &e) == 0);
    if (!m) return;
    const char *decay[] = {"patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.0.attn.proj.weight",
                           "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.weight", "head.weight"};
    const char *keep[] = {"cls_token", "pos_embed", "patch_embed.proj.bias", "blocks.0.norm1.weight",
                          "blocks.0.attn.qkv.bias", "blocks.0.mlp.fc2.bias", "norm.weight", "head.bias"};
    for (size_t i = 0; i < sizeof decay / sizeof *decay; i++)
        CHECK_MSG(vitq_param_decays(vitq_model_param(m, decay[i])) == 1, "%s should decay", decay[i]);
    for (size_t i = 0; i < sizeof keep / sizeof *keep; i++)
        CHECK_MSG(vitq_param_decays(vitq_model_param(m, keep[i])) == 0, "%s should not decay", keep[i]);
    vitq_model_free(m);
}

TEST(optim_cosine_schedule) {
    // warm-up of 4 steps to 1e-3, then cosine to 1e-5 over steps 4..13 (total 14)
    CHECK_NEAR(vitq_lr_cosine(0, 4, 14, 1e-3, 1e-5), 0.25e-3, 1e-15);
    CHECK_NEAR(vitq_lr_cosine(3, 4, 14, 1e-3, 1e-5), 1e-3, 1e-15);
    CHECK_NEAR(vitq_lr_cosine(4, 4, 14, 1e-3, 1e-5), 1e-3, 1e-15);
    CHECK_NEAR(vitq_lr_cosine(9, 4, 14, 1e-3, 1e-5), 1e-5 + 0.5 * (1e-3 - 1e-5), 1e-15); // half-way: cos = 0
    CHECK_NEAR(vitq_lr_cosine(14, 4, 14, 1e-3, 1e-5), 1e-5, 1e-15);
    CHECK_NEAR(vitq_lr_cosine(6, 4, 14, 1e-3, 0.0), 0.5e-3 * (1 + cos(M_PI * 0.2)), 1e-15);
    CHECK_NEAR(vitq_lr_cosine(5, 0, 0, 2e-3, 0.0), 2e-3, 0); // no schedule
}

TEST(optim_grad_clip) {
    float g[2] = {3.0f, 4.0f};
    CHECK_NEAR(vitq_grad_clip(g, 2, 10.0), 5.0, 1e-12); // below the limit: untouched
    CHECK_EQ(g[0], 3.0f);
    CHECK_EQ(g[1], 4.0f);
    CHECK_NEAR(vitq_grad_clip(g, 2, 1.0), 5.0, 1e-12);
    CHECK_NEAR(g[0], 0.6 * 5.0 / (5.0 + 1e-6), 1e-7);
    CHECK_NEAR(g[1], 0.8 * 5.0 / (5.0 + 1e-6), 1e-7);
    CHECK_NEAR(vitq_grad_clip(g, 2, 0.0), 1.0, 1e-6); // 0 = off
}

TEST(optim_rng) {
    vitq_rng a, b;
    vitq_rng_seed(&a, 42);
    vitq_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++) CHECK(vitq_rng_next(&a) == vitq_rng_next(&b));
    vitq_rng_seed(&b, 43);
    CHECK(vitq_rng_next(&a) != vitq_rng_next(&b));
    // splitmix64(0) as the first state word, the published reference value
    vitq_rng_seed(&a, 0);
    CHECK(a.s[0] == 0xe220a8397b1dcdafULL);
    CHECK(vitq_rng_derive(1, 2) != vitq_rng_derive(2, 1));
    // permutation is a permutation; uniform / normal moments are sane
    int64_t perm[1000];
    int seen[1000] = {0};
    vitq_rng_permutation(&a, perm, 1000);
    int ok = 1;
    for (int i = 0; i < 1000; i++) ok &= perm[i] >= 0 && perm[i] < 1000 && !seen[perm[i]]++;
    CHECK(ok);
    double s = 0, s2 = 0, tmax = 0;
    for (int i = 0; i < 20000; i++) {
        double z = vitq_rng_normal(&a);
        s += z, s2 += z * z;
        tmax = fmax(tmax, fabs(vitq_rng_trunc_normal(&a, 0.02f)));
    }
    CHECK_NEAR(s / 20000, 0.0, 0.03);
    CHECK_NEAR(s2 / 20000, 1.0, 0.05);
    CHECK(tmax <= 0.04 + 1e-7);
    CHECK(tmax > 0.035);
    for (int i = 0; i < 1000; i++) {
        int64_t k = vitq_rng_below(&a, 9);
        ok &= k >= 0 && k < 9;
    }
    CHECK(ok);
}
