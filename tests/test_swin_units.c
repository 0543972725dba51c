/* test_swin_units.c — Swin through the unit API block-wise reconstruction uses (model/family.c,
 * swin_units.c): the units and taps of a small Swin whose first stage is padded and shifted (10x10 tokens,
 * window 4: a 12x12 frame of 9 windows, shift 2) and whose second is padded and shifted too (5x5 in 8x8);
 * unit-by-unit forward and backward equal to the whole model's; every tap's backward hook reached in exactly
 * the reverse forward order with the restore contract, checked against finite differences of the hooked
 * forward (as tests/test_units.c does for ViT). */
#include "test.h"

#include <stdlib.h>
#include <string.h>

static uint64_t g_seed = 991;
static double urand(void) { /* [-1, 1) */
    g_seed = g_seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(g_seed >> 11) * 0x1.0p-53 * 2.0 - 1.0;
}

static vitq_model *small(void) {
    vitq_arch a = {.family = VITQ_FAMILY_SWIN, .name = "small", .img_size = 20, .patch_size = 2, .in_chans = 3,
                   .num_classes = 5, .embed_dim = 4, .depth = 4, .num_heads = 2, .mlp_ratio = 2.0f, .qkv_bias = 1,
                   .mean = {0.5f, 0.5f, 0.5f}, .std = {0.5f, 0.5f, 0.5f}, .crop_pct = 1.0f,
                   .interpolation = "bicubic", .n_stages = 2, .depths = {2, 2}, .stage_heads = {2, 2},
                   .window_size = 4};
    vitq_model *m = NULL;
    vitq_err e;
    if (vitq_model_create(&a, &m, &e) || vitq_model_alloc_grads(m, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return NULL;
    }
    for (int i = 0; i < m->n_table; i++) {
        vitq_tensor_ref *r = &m->table[i];
        const int ln_w = strstr(r->name, "norm") && strstr(r->name, ".weight");
        const float s = strstr(r->name, "relative_position") ? 1.0f : 0.4f;
        for (int64_t k = 0; k < r->numel; k++) r->data[k] = (ln_w ? 1.0f : 0.0f) + s * (float)urand();
    }
    m->mlp_act[2] = VITQ_ACT_RELU;
    return m;
}

TEST(swin_units_layout) {
    vitq_model *m = small();
    if (!m) return;
    const char *names[7] = {"patch_embed", "layers.0.blocks.0", "layers.0.blocks.1", "layers.1.downsample",
                            "layers.1.blocks.0", "layers.1.blocks.1", "head"};
    const vitq_unit_kind kinds[7] = {VITQ_UNIT_PATCH_EMBED, VITQ_UNIT_BLOCK, VITQ_UNIT_BLOCK, VITQ_UNIT_MERGE,
                                     VITQ_UNIT_BLOCK, VITQ_UNIT_BLOCK, VITQ_UNIT_HEAD};
    CHECK_EQ(vitq_unit_count(m), 7);
    int next_param = 0, next_tap = 0;
    for (int u = 0; u < 7 && u < vitq_unit_count(m); u++) {
        const vitq_unit *t = vitq_unit_get(m, u);
        CHECK_STREQ(t->name, names[u]);
        CHECK_EQ(t->kind, kinds[u]);
        CHECK_EQ(t->param_first, next_param); /* the units partition the parameter table and the taps, in order */
        CHECK_EQ(t->tap_first, next_tap);
        CHECK(t->param_end > t->param_first);
        next_param = t->param_end, next_tap = t->tap_end;
        if (u > 0) CHECK_EQ(t->in_numel, vitq_unit_get(m, u - 1)->out_numel);
    }
    CHECK_EQ(next_param, m->n_table);
    CHECK_EQ(next_tap, vitq_tap_count(m));
    CHECK_EQ(vitq_unit_get(m, 0)->in_numel, 3 * 20 * 20);
    CHECK_EQ(vitq_unit_get(m, 3)->in_numel, 10 * 10 * 4);
    CHECK_EQ(vitq_unit_get(m, 3)->out_numel, 5 * 5 * 8);
    CHECK_EQ(vitq_unit_get(m, 6)->out_numel, 5);
    CHECK_EQ(vitq_unit_get(m, 4)->block, 2);
    CHECK_EQ(vitq_unit_of_param(m, vitq_model_param(m, "layers.1.downsample.reduction.weight") - m->table), 3);
    CHECK_STREQ(m->table[vitq_unit_get(m, 3)->param_first].name, "layers.1.downsample.norm.weight");
    vitq_err e;
    vitq_model *vit = NULL;
    vitq_acts *va = NULL;
    vitq_arch va_arch;
    CHECK(vitq_arch_builtin("deit_tiny_patch16_224", &va_arch, &e) == 0);
    va_arch.img_size = 32, va_arch.depth = 1;
    CHECK(vitq_model_create(&va_arch, &vit, &e) == 0 && vitq_acts_create(vit, 1, 0, &va, &e) == 0);
    float img[3 * 20 * 20] = {0};
    CHECK_EQ(vitq_forward(m, va, img, 1, &e), VITQ_EINVAL); /* a ViT's buffers */
    CHECK_STR_CONTAINS(e.msg, "activations were made for another architecture");
    vitq_acts_free(va);
    vitq_model_free(vit);
    vitq_model_free(m);
}

/* Every tap in forward order with its shape: window layout (B*windows first) inside attention, tokens
 * elsewhere; the reduction input once, before the first block of stage 1. */
TEST(swin_taps_names_and_shapes) {
    vitq_model *m = small();
    if (!m) return;
    CHECK_EQ(vitq_tap_count(m), 1 + 4 * 8 + 1 + 1);
    const char *blk[8] = {"attn.qkv.input", "attn.q", "attn.k", "attn.v", "attn.probs", "attn.proj.input",
                          "mlp.fc1.input", "mlp.fc2.input"};
    int id = 0;
    char want[96];
    CHECK_STREQ(vitq_tap_get(m, id++)->name, "patch_embed.proj.input");
    for (int b = 0; b < 4; b++) {
        if (b == 2) {
            const vitq_tap_desc *t = vitq_tap_get(m, id++);
            CHECK_STREQ(t->name, "layers.1.downsample.reduction.input");
            CHECK_EQ(t->site, VITQ_SITE_REDUCTION_IN);
            CHECK_EQ(t->shape[1], 25);
            CHECK_EQ(t->shape[2], 16);
            CHECK_EQ(vitq_tap_id(m, VITQ_SITE_REDUCTION_IN, 2), id - 1);
        }
        for (int k = 0; k < 8; k++) {
            snprintf(want, sizeof want, "layers.%d.blocks.%d.%s", b / 2, b % 2, blk[k]);
            CHECK_STREQ(vitq_tap_get(m, id++)->name, want);
        }
    }
    CHECK_STREQ(vitq_tap_get(m, id)->name, "head.input");
    CHECK_EQ(vitq_tap_get(m, id)->shape[1], 8);
    const vitq_tap_desc *p = vitq_tap_get(m, vitq_tap_id(m, VITQ_SITE_PROBS, 1));
    CHECK_EQ(p->kind, VITQ_TAPK_PROBS);
    CHECK_EQ(p->shape[1], 2);
    CHECK_EQ(p->shape[2], 16);
    CHECK_EQ(p->shape[3], 16);
    const vitq_tap_desc *f2 = vitq_tap_get(m, vitq_tap_id(m, VITQ_SITE_FC2_IN, 3));
    CHECK_EQ(f2->shape[1], 25);
    CHECK_EQ(f2->shape[2], 16);
    CHECK_EQ(vitq_tap_id(m, VITQ_SITE_REDUCTION_IN, 0), -1);
    CHECK_EQ(vitq_tap_id(m, VITQ_SITE_REDUCTION_IN, 3), -1);
    vitq_model_free(m);
}

/* Units one at a time (each from a copy of its input, in eval-mode acts) give the whole forward's numbers bit
 * for bit, and their backward one at a time the whole backward's gradients. */
TEST(swin_units_one_by_one_equal_whole_model) {
    vitq_model *m = small();
    if (!m) return;
    vitq_err e;
    vitq_acts *tr = NULL, *ev = NULL;
    vitq_grad_acts *g = NULL;
    const int B = 3, U = vitq_unit_count(m);
    CHECK(vitq_acts_create(m, B, 1, &tr, &e) == 0 && vitq_acts_create(m, B, 0, &ev, &e) == 0);
    CHECK(vitq_grad_acts_create(m, B, &g, &e) == 0);
    float x[3 * 1200], w[3 * 5];
    for (int i = 0; i < 3 * 1200; i++) x[i] = (float)urand();
    for (int i = 0; i < 15; i++) w[i] = (float)urand();
    CHECK(vitq_forward(m, tr, x, B, &e) == 0);
    vitq_model_zero_grads(m);
    CHECK(vitq_backward(m, tr, g, w, B, &e) == 0);
    float *whole = malloc(sizeof(float) * (size_t)m->n_params), *dout[7];
    memcpy(whole, m->grad_slab, sizeof(float) * (size_t)m->n_params);
    for (int u = 0; u < U; u++) {
        const int64_t n = B * vitq_unit_get(m, u)->out_numel;
        dout[u] = malloc(sizeof(float) * (size_t)n);
        memcpy(dout[u], vitq_unit_dout(m, g, u), sizeof(float) * (size_t)n);
    }
    vitq_model_zero_grads(m);
    for (int u = U - 1; u >= 0; u--) {
        const vitq_unit *t = vitq_unit_get(m, u);
        memcpy(vitq_unit_in(m, ev, u), vitq_unit_in(m, tr, u), sizeof(float) * (size_t)(B * t->in_numel));
        CHECK(vitq_forward_units(m, ev, u, u + 1, B, &e) == 0);
        CHECK_EQ(memcmp(vitq_unit_out(m, ev, u), vitq_unit_out(m, tr, u), sizeof(float) * (size_t)(B * t->out_numel)),
                 0);
        memcpy(vitq_unit_dout(m, g, u), dout[u], sizeof(float) * (size_t)(B * t->out_numel));
        CHECK_MSG(vitq_backward_units(m, ev, g, u, u + 1, B, &e) == 0, "%s", e.msg);
        if (u > 0) CHECK_ALLCLOSE(vitq_unit_din(m, g, u), dout[u - 1], B * t->in_numel, 1e-6, 1e-7);
    }
    CHECK_ALLCLOSE(m->grad_slab, whole, (long)m->n_params, 1e-6, 1e-7);
    for (int u = 0; u < U; u++) free(dout[u]);
    free(whole);
    vitq_grad_acts_free(g);
    vitq_acts_free(tr);
    vitq_acts_free(ev);
    vitq_model_free(m);
}

/* ---- tap backward: each tap scales its buffer by its own factor; backward restores it where the tap asks,
 * poisons it with NaN elsewhere (nothing may read it then) -------------------------------------------- */
typedef struct {
    const vitq_model *m;
    float *saved[64];
    int64_t n[64];
    int order[64], n_calls, bad_x;
} scale_hook;

static float factor(int tap) { return 1.2f + 0.05f * (float)(tap % 4); }

static int64_t numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    return n;
}

static int scale_fwd(void *ctx, int tap, float *x, int ndim, const int64_t *shape) {
    scale_hook *h = ctx;
    const int64_t n = numel(ndim, shape);
    h->saved[tap] = realloc(h->saved[tap], sizeof(float) * (size_t)n);
    h->n[tap] = n;
    memcpy(h->saved[tap], x, sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] *= factor(tap);
    return 0;
}

static int scale_bwd(void *ctx, int tap, float *x, float *dx, int ndim, const int64_t *shape) {
    scale_hook *h = ctx;
    const int64_t n = numel(ndim, shape);
    if (h->n_calls < 64) h->order[h->n_calls++] = tap;
    for (int64_t i = 0; i < n; i++) {
        h->bad_x += x[i] != h->saved[tap][i] * factor(tap);
        dx[i] *= factor(tap);
    }
    /* x restored only where the op before reads it; elsewhere poisoned, so that a read shows as NaN */
    if (vitq_tap_get(h->m, tap)->restore) memcpy(x, h->saved[tap], sizeof(float) * (size_t)n);
    else
        for (int64_t i = 0; i < n; i++) x[i] = NAN;
    return 0;
}

static double hooked_loss(vitq_model *m, vitq_acts *a, const float *x, const float *w) {
    vitq_err e;
    if (vitq_forward(m, a, x, 2, &e)) return NAN;
    double l = 0;
    for (int i = 0; i < 10; i++) l += (double)a->logits[i] * w[i];
    return l;
}

TEST(swin_units_tap_backward_reached_in_order) {
    vitq_model *m = small();
    if (!m) return;
    m->mlp_act[2] = VITQ_ACT_GELU; /* smooth, for finite differences */
    scale_hook h = {.m = m};
    vitq_tap_hooks hooks = {.act = scale_fwd, .act_backward = scale_bwd, .ctx = &h};
    m->hooks = &hooks;
    vitq_err e;
    vitq_acts *a = NULL;
    vitq_grad_acts *g = NULL;
    CHECK(vitq_acts_create(m, 2, 1, &a, &e) == 0 && vitq_grad_acts_create(m, 2, &g, &e) == 0);
    float x[2 * 1200], w[10];
    for (int i = 0; i < 2400; i++) x[i] = (float)urand();
    for (int i = 0; i < 10; i++) w[i] = (float)urand();
    hooked_loss(m, a, x, w);
    vitq_model_zero_grads(m);
    CHECK(vitq_backward(m, a, g, w, 2, &e) == 0);
    const int T = vitq_tap_count(m); /* every tap but the image's, in exactly the reverse forward order */
    CHECK_EQ(h.n_calls, T - 1);
    for (int i = 0; i < h.n_calls && i < T - 1; i++) CHECK_EQ(h.order[i], T - 1 - i);
    CHECK_EQ(h.bad_x, 0);
    double worst = 0;
    for (int64_t i = 0; i < m->n_params; i += 3) {
        const float s = m->slab[i], hh = 1e-2f;
        m->slab[i] = s + hh;
        const double lp = hooked_loss(m, a, x, w);
        m->slab[i] = s - hh;
        const double lm = hooked_loss(m, a, x, w);
        m->slab[i] = s;
        const double f = (lp - lm) / (2.0 * hh), an = m->grad_slab[i];
        const double err = fabs(an - f) / (2e-3 + 2e-2 * fabs(f));
        worst = err > worst ? err : worst;
        CHECK_MSG(err <= 1.0, "param %lld: analytic %.6g vs fd %.6g", (long long)i, an, f);
    }
    printf("  hooked small Swin (%lld parameters): worst gradient error / tolerance %.2f\n", (long long)m->n_params,
           worst);
    for (int t = 0; t < 64; t++) free(h.saved[t]);
    m->hooks = NULL;
    vitq_grad_acts_free(g);
    vitq_acts_free(a);
    vitq_model_free(m);
}
