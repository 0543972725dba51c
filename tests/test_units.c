/* test_units.c — the units of block-wise reconstruction (model/family.c, vit_units.c): their layout,
 * unit-by-unit forward and backward equal to the whole model's, and the tap hooks' backward reached at
 * every tap with the restore contract (a test that fails when a tap's backward is skipped or misplaced),
 * and the gradients a backward may leave out (vitq_model.grad_skip). */
#include "test.h"

#include <stdlib.h>
#include <string.h>

static uint64_t g_seed = 777;
static double urand(void) { /* [-1, 1) */
    g_seed = g_seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(g_seed >> 11) * 0x1.0p-53 * 2.0 - 1.0;
}

/* A tiny ViT (8x8x1, patch 4: 5 tokens, dim 12, 2 heads, depth 2) with O(0.3) random parameters. */
static vitq_model *tiny(void) {
    vitq_arch a = {.name = "tiny", .img_size = 8, .patch_size = 4, .in_chans = 1, .num_classes = 5,
                   .embed_dim = 12, .depth = 2, .num_heads = 2, .mlp_ratio = 2.0f, .qkv_bias = 1,
                   .mean = {0.5f}, .std = {0.5f}, .crop_pct = 1.0f, .interpolation = "bicubic"};
    vitq_model *m = NULL;
    vitq_err e;
    if (vitq_model_create(&a, &m, &e) || vitq_model_alloc_grads(m, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return NULL;
    }
    for (int64_t i = 0; i < m->n_params; i++) m->slab[i] = (float)(0.3 * urand());
    for (int c = 0; c < 12; c++) /* LayerNorm weights around 1 */
        for (int l = 0; l < 2; l++) m->p.blocks[l].norm1_w[c] += 1, m->p.blocks[l].norm2_w[c] += 1;
    m->mlp_act[1] = VITQ_ACT_RELU;
    return m;
}

TEST(units_vit_layout) {
    vitq_model *m = tiny();
    if (!m) return;
    CHECK_EQ(vitq_unit_count(m), 4);
    const char *names[4] = {"patch_embed", "blocks.0", "blocks.1", "head"};
    int next_param = 0, next_tap = 0;
    for (int u = 0; u < 4; u++) {
        const vitq_unit *t = vitq_unit_get(m, u);
        CHECK_STREQ(t->name, names[u]);
        CHECK_EQ(t->param_first, next_param); /* the units partition the parameter table in order */
        CHECK_EQ(t->tap_first, next_tap);     /* and the taps */
        CHECK(t->param_end > t->param_first);
        next_param = t->param_end, next_tap = t->tap_end;
        if (u > 0) CHECK_EQ(t->in_numel, vitq_unit_get(m, u - 1)->out_numel);
    }
    CHECK_EQ(next_param, m->n_table);
    CHECK_EQ(next_tap, vitq_tap_count(m));
    CHECK_EQ(vitq_unit_get(m, 0)->in_numel, 64);
    CHECK_EQ(vitq_unit_get(m, 1)->in_numel, 5 * 12);
    CHECK_EQ(vitq_unit_get(m, 3)->out_numel, 5);
    CHECK_EQ(vitq_unit_get(m, 1)->tap_end - vitq_unit_get(m, 1)->tap_first, 8);
    CHECK_EQ(vitq_unit_get(m, 2)->block, 1);
    CHECK_EQ(vitq_unit_of_param(m, m->n_table - 1), 3);
    CHECK(vitq_unit_get(m, 4) == NULL);
    vitq_err e;
    vitq_acts *a = NULL;
    CHECK(vitq_acts_create(m, 2, 0, &a, &e) == 0);
    CHECK_EQ(vitq_forward_units(m, a, 2, 2, 1, &e), VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "out of range");
    vitq_acts_free(a);
    vitq_model_free(m);
}

/* Running the units one at a time (each from a copy of its input) gives the whole forward's numbers, bit
 * for bit; and the units' backward one at a time accumulates the whole backward's gradients. */
TEST(units_one_by_one_equal_whole_model) {
    vitq_model *m = tiny();
    if (!m) return;
    vitq_err e;
    vitq_acts *tr = NULL, *ev = NULL;
    vitq_grad_acts *g = NULL;
    CHECK(vitq_acts_create(m, 3, 1, &tr, &e) == 0 && vitq_acts_create(m, 3, 0, &ev, &e) == 0);
    CHECK(vitq_grad_acts_create(m, 3, &g, &e) == 0);
    float x[3 * 64], w[3 * 5];
    for (int i = 0; i < 3 * 64; i++) x[i] = (float)urand();
    for (int i = 0; i < 15; i++) w[i] = (float)urand();
    CHECK(vitq_forward(m, tr, x, 3, &e) == 0);
    vitq_model_zero_grads(m);
    CHECK(vitq_backward(m, tr, g, w, 3, &e) == 0);
    float *whole = malloc(sizeof(float) * (size_t)m->n_params);
    memcpy(whole, m->grad_slab, sizeof(float) * (size_t)m->n_params);

    /* dout of each unit from the whole backward, kept before the unit-wise pass overwrites g */
    const int U = vitq_unit_count(m);
    float *dout[4];
    for (int u = 0; u < U; u++) {
        int64_t n = 3 * vitq_unit_get(m, u)->out_numel;
        dout[u] = malloc(sizeof(float) * (size_t)n);
        memcpy(dout[u], vitq_unit_dout(m, g, u), sizeof(float) * (size_t)n);
    }
    vitq_model_zero_grads(m);
    for (int u = U - 1; u >= 0; u--) {
        const vitq_unit *t = vitq_unit_get(m, u);
        memcpy(vitq_unit_in(m, ev, u), vitq_unit_in(m, tr, u), sizeof(float) * (size_t)(3 * t->in_numel));
        CHECK(vitq_forward_units(m, ev, u, u + 1, 3, &e) == 0);
        CHECK_EQ(memcmp(vitq_unit_out(m, ev, u), vitq_unit_out(m, tr, u), sizeof(float) * (size_t)(3 * t->out_numel)),
                 0);
        memcpy(vitq_unit_dout(m, g, u), dout[u], sizeof(float) * (size_t)(3 * t->out_numel));
        CHECK_MSG(vitq_backward_units(m, ev, g, u, u + 1, 3, &e) == 0, "%s", e.msg);
    }
    CHECK_ALLCLOSE(m->grad_slab, whole, (long)m->n_params, 1e-6, 1e-7);
    CHECK_EQ(vitq_backward_units(m, ev, g, 0, 2, 3, &e), VITQ_EINVAL); /* two units need train-mode acts */
    CHECK_STR_CONTAINS(e.msg, "eval mode");
    for (int u = 0; u < U; u++) free(dout[u]);
    free(whole);
    vitq_grad_acts_free(g);
    vitq_acts_free(tr);
    vitq_acts_free(ev);
    vitq_model_free(m);
}

/* ---- tap backward ------------------------------------------------------------------------------------
 * A hook that scales each tap by its own factor s_t in place (1.2 .. 1.35) and keeps the input. The
 * backward hook checks that x still holds what the forward left there, multiplies dx by s_t, restores x
 * where the tap asks (vitq_tap_desc.restore: the softmax's probabilities) and fills it with NaN elsewhere.
 * Gradients of the hooked model then match finite differences of the hooked forward only if every tap's
 * backward runs at its place (dx scaled) and no op reads a tap's buffer after its backward but those. */
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
    int64_t n = numel(ndim, shape);
    h->saved[tap] = realloc(h->saved[tap], sizeof(float) * (size_t)n);
    h->n[tap] = n;
    memcpy(h->saved[tap], x, sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] *= factor(tap);
    return 0;
}

static int scale_bwd(void *ctx, int tap, float *x, float *dx, int ndim, const int64_t *shape) {
    scale_hook *h = ctx;
    int64_t n = numel(ndim, shape);
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

TEST(units_tap_backward_reached_in_order) {
    vitq_model *m = tiny();
    if (!m) return;
    m->mlp_act[1] = VITQ_ACT_GELU; /* smooth, for finite differences */
    scale_hook h = {.m = m};
    vitq_tap_hooks hooks = {.act = scale_fwd, .act_backward = scale_bwd, .ctx = &h};
    m->hooks = &hooks;
    vitq_err e;
    vitq_acts *a = NULL;
    vitq_grad_acts *g = NULL;
    CHECK(vitq_acts_create(m, 2, 1, &a, &e) == 0 && vitq_grad_acts_create(m, 2, &g, &e) == 0);
    float x[2 * 64], w[10];
    for (int i = 0; i < 128; i++) x[i] = (float)urand();
    for (int i = 0; i < 10; i++) w[i] = (float)urand();
    hooked_loss(m, a, x, w);
    vitq_model_zero_grads(m);
    CHECK(vitq_backward(m, a, g, w, 2, &e) == 0);
    /* every tap but the image's, in exactly the reverse of the forward order */
    const int T = vitq_tap_count(m);
    CHECK_EQ(h.n_calls, T - 1);
    for (int i = 0; i < h.n_calls && i < T - 1; i++) CHECK_EQ(h.order[i], T - 1 - i);
    CHECK_EQ(h.bad_x, 0);
    double worst = 0;
    for (int64_t i = 0; i < m->n_params; i += 5) {
        float s = m->slab[i];
        const float hh = 1e-2f;
        m->slab[i] = s + hh;
        double lp = hooked_loss(m, a, x, w);
        m->slab[i] = s - hh;
        double lm = hooked_loss(m, a, x, w);
        m->slab[i] = s;
        double f = (lp - lm) / (2.0 * hh), an = m->grad_slab[i];
        double err = fabs(an - f) / (2e-3 + 2e-2 * fabs(f));
        worst = err > worst ? err : worst;
        CHECK_MSG(err <= 1.0, "param %lld: analytic %.6g vs fd %.6g", (long long)i, an, f);
    }
    printf("  hooked tiny ViT: worst gradient error / tolerance %.2f\n", worst);
    for (int t = 0; t < 64; t++) free(h.saved[t]);
    m->hooks = NULL;
    vitq_grad_acts_free(g);
    vitq_acts_free(a);
    vitq_model_free(m);
}

/* ---- grad_skip -------------------------------------------------------------------------------------
 * VITQ_GRAD_SKIP_AUX | INPUT on a block: the weight matrices' gradients are those of the full backward
 * bit for bit, the biases' and LayerNorms' are left untouched, and so is the unit's input gradient; over
 * two units the later unit's input gradient (the earlier one's dout) is still computed. */
static int64_t off_of(const vitq_model *m, const float *p) { return (int64_t)(p - m->grad_slab); }

TEST(units_grad_skip_leaves_out_only_what_it_says) {
    vitq_model *m = tiny();
    if (!m) return;
    vitq_err e;
    vitq_acts *tr = NULL;
    vitq_grad_acts *g = NULL;
    CHECK(vitq_acts_create(m, 3, 1, &tr, &e) == 0 && vitq_grad_acts_create(m, 3, &g, &e) == 0);
    float x[3 * 64];
    for (int i = 0; i < 3 * 64; i++) x[i] = (float)urand();
    CHECK(vitq_forward(m, tr, x, 3, &e) == 0);
    const int64_t nout = 3 * vitq_unit_get(m, 2)->out_numel, nin = 3 * vitq_unit_get(m, 1)->in_numel;
    float *dout = malloc(sizeof(float) * (size_t)nout), *full = malloc(sizeof(float) * (size_t)m->n_params);
    float *din_full = malloc(sizeof(float) * (size_t)nin);
    for (int64_t i = 0; i < nout; i++) dout[i] = (float)urand();
    for (int pass = 0; pass < 2; pass++) { /* units 1..2 (blocks 0 and 1), then unit 2 (block 1) alone */
        const int u0 = pass == 0 ? 1 : 2;
        vitq_model_zero_grads(m);
        memcpy(vitq_unit_dout(m, g, 2), dout, sizeof(float) * (size_t)nout);
        CHECK_MSG(vitq_backward_units(m, tr, g, u0, 3, 3, &e) == 0, "%s", e.msg);
        memcpy(full, m->grad_slab, sizeof(float) * (size_t)m->n_params);
        memcpy(din_full, vitq_unit_din(m, g, u0), sizeof(float) * (size_t)nin);
        vitq_model_zero_grads(m);
        float *din = vitq_unit_din(m, g, u0);
        for (int64_t i = 0; i < nin; i++) din[i] = 7.0f; /* must stay */
        memcpy(vitq_unit_dout(m, g, 2), dout, sizeof(float) * (size_t)nout);
        m->grad_skip = VITQ_GRAD_SKIP_AUX | VITQ_GRAD_SKIP_INPUT;
        CHECK_MSG(vitq_backward_units(m, tr, g, u0, 3, 3, &e) == 0, "%s", e.msg);
        m->grad_skip = 0;
        int kept = 1;
        for (int64_t i = 0; i < nin; i++) kept &= din[i] == 7.0f;
        CHECK_MSG(kept, "unit %d: the input gradient was computed", u0);
        CHECK(memcmp(din_full, din, sizeof(float) * (size_t)nin) != 0);
        for (int l = u0 - 1; l < 2; l++) {
            const vitq_block_params *b = &m->g.blocks[l];
            const float *w[4] = {b->qkv_w, b->proj_w, b->fc1_w, b->fc2_w};
            const int64_t wn[4] = {36 * 12, 12 * 12, 24 * 12, 12 * 24};
            for (int k = 0; k < 4; k++)
                CHECK_MSG(memcmp(w[k], full + off_of(m, w[k]), sizeof(float) * (size_t)wn[k]) == 0,
                          "block %d weight %d differs from the full backward", l, k);
            const float *aux[6] = {b->qkv_b, b->proj_b, b->fc1_b, b->fc2_b, b->norm1_w, b->norm2_b};
            const int64_t an[6] = {36, 12, 24, 12, 12, 12};
            for (int k = 0; k < 6; k++) {
                int zero = 1, nonzero_full = 0;
                for (int64_t i = 0; i < an[k]; i++)
                    zero &= aux[k][i] == 0, nonzero_full |= full[off_of(m, aux[k]) + i] != 0;
                CHECK_MSG(zero && nonzero_full, "block %d aux %d: skipped %d, computed in full %d", l, k, zero,
                          nonzero_full);
            }
        }
        /* the teacher's tail (tail_backward): only the input gradient, the full backward's bit for bit */
        vitq_model_zero_grads(m);
        memcpy(vitq_unit_dout(m, g, 2), dout, sizeof(float) * (size_t)nout);
        m->grad_skip = VITQ_GRAD_SKIP_AUX | VITQ_GRAD_SKIP_WEIGHTS;
        CHECK_MSG(vitq_backward_units(m, tr, g, u0, 3, 3, &e) == 0, "%s", e.msg);
        m->grad_skip = 0;
        CHECK(memcmp(din_full, vitq_unit_din(m, g, u0), sizeof(float) * (size_t)nin) == 0);
        int untouched = 1;
        for (int64_t i = 0; i < m->n_params; i++) untouched &= m->grad_slab[i] == 0;
        CHECK_MSG(untouched, "unit %d: a parameter gradient was computed with AUX | WEIGHTS skipped", u0);
    }
    free(dout), free(full), free(din_full);
    vitq_grad_acts_free(g);
    vitq_acts_free(tr);
    vitq_model_free(m);
}
