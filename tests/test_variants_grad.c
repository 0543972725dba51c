/* test_variants_grad.c — the ViT variants' backward (LayerScale, avg pooling with norm or fc_norm, token
 * pooling with fc_norm, no class token, no_embed_class, the representation layer, the distilled heads):
 * every parameter gradient against central finite differences of the forward, with a tap hook that scales
 * each tap by its own factor so that a tap backward skipped or misplaced (the head's new taps included)
 * shows up as a wrong gradient; taps' backward calls in exactly reverse forward order; the units partition
 * the parameter table and the taps in order, and unit-by-unit forward/backward equal the whole model's. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

static uint64_t g_seed = 4242;
static double urand(void) { /* [-1, 1) */
    g_seed = g_seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(g_seed >> 11) * 0x1.0p-53 * 2.0 - 1.0;
}

typedef struct {
    const char *name;
    vitq_arch a;
} variant;

#define TINY .img_size = 8, .patch_size = 4, .in_chans = 1, .num_classes = 5, .embed_dim = 12, .depth = 2, \
             .num_heads = 2, .mlp_ratio = 2.0f, .qkv_bias = 1, .mean = {0.5f}, .std = {0.5f}, .crop_pct = 1.0, \
             .interpolation = "bicubic"
static const variant variants[] = {
    {"layerscale", {.name = "ls", TINY, .layerscale = 1}},
    {"deit3", {.name = "deit3", TINY, .layerscale = 1, .no_embed_class = 1}},
    {"avg_norm", {.name = "avg_norm", TINY, .global_pool = VITQ_POOL_AVG}},
    {"avg_fc_norm", {.name = "avg_fc", TINY, .global_pool = VITQ_POOL_AVG, .fc_norm = 1}},
    {"token_fc_norm", {.name = "tok_fc", TINY, .fc_norm = 1}},
    {"no_class_token", {.name = "gap", TINY, .no_class_token = 1, .global_pool = VITQ_POOL_AVG}},
    {"pre_logits", {.name = "pre", TINY, .representation_size = 7}},
    {"distilled", {.name = "dist", TINY, .distilled = 1}},
    {"distilled_ls_noemb", {.name = "dist3", TINY, .distilled = 1, .layerscale = 1, .no_embed_class = 1}},
};
#define N_VARIANTS ((int)(sizeof variants / sizeof variants[0]))

static vitq_model *make(const vitq_arch *a) {
    vitq_model *m = NULL;
    vitq_err e;
    if (vitq_model_create(a, &m, &e) || vitq_model_alloc_grads(m, &e)) {
        test_failf(__FILE__, __LINE__, "%s: %s", a->name, e.msg);
        return NULL;
    }
    for (int i = 0; i < m->n_table; i++) {
        const vitq_tensor_ref *r = &m->table[i];
        int around_one = strstr(r->name, "norm") && strstr(r->name, ".weight");
        for (int64_t j = 0; j < r->numel; j++) r->data[j] = (float)((around_one ? 1.0 : 0.0) + 0.4 * urand());
    }
    return m;
}

/* A hook scaling tap t by 1.2 + 0.05 (t % 4), checking x in backward and restoring it where the tap asks
 * (vitq_tap_desc.restore), poisoning it with NaN elsewhere (test_units.c's). */
typedef struct {
    const vitq_model *m;
    float *saved[64];
    int64_t n[64];
    int order[64], n_calls, bad_x;
} scale_hook;

static float factor(int tap) { return 1.2f + 0.05f * (float)(tap % 4); }

static int scale_fwd(void *ctx, int tap, float *x, int ndim, const int64_t *shape) {
    scale_hook *h = ctx;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    h->saved[tap] = realloc(h->saved[tap], sizeof(float) * (size_t)n);
    h->n[tap] = n;
    memcpy(h->saved[tap], x, sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] *= factor(tap);
    return 0;
}

static int scale_bwd(void *ctx, int tap, float *x, float *dx, int ndim, const int64_t *shape) {
    scale_hook *h = ctx;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
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

static double loss(vitq_model *m, vitq_acts *a, const float *x, const float *w) {
    vitq_err e;
    if (vitq_forward(m, a, x, 2, &e)) return NAN;
    double l = 0;
    for (int i = 0; i < 10; i++) l += (double)a->logits[i] * w[i];
    return l;
}

/* Every parameter's gradient against central differences of the hooked float forward. */
static void check_grads(const variant *v) {
    vitq_model *m = make(&v->a);
    if (!m) return;
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
    loss(m, a, x, w);
    vitq_model_zero_grads(m);
    CHECK_MSG(vitq_backward(m, a, g, w, 2, &e) == 0, "%s", e.msg);
    const int T = vitq_tap_count(m);
    CHECK_EQ(h.n_calls, T - 1); /* every tap but the image's, in reverse */
    for (int i = 0; i < h.n_calls && i < T - 1; i++) CHECK_EQ(h.order[i], T - 1 - i);
    CHECK_EQ(h.bad_x, 0);
    double worst = 0;
    for (int64_t i = 0; i < m->n_params; i++) {
        float s = m->slab[i];
        const float hh = 1e-2f;
        m->slab[i] = s + hh;
        double lp = loss(m, a, x, w);
        m->slab[i] = s - hh;
        double lm = loss(m, a, x, w);
        m->slab[i] = s;
        double f = (lp - lm) / (2.0 * hh), an = m->grad_slab[i];
        double err = fabs(an - f) / (2e-3 + 2e-2 * fabs(f));
        worst = err > worst ? err : worst;
        CHECK_MSG(err <= 1.0, "%s param %lld: analytic %.6g vs fd %.6g", v->name, (long long)i, an, f);
    }
    printf("  %-20s %2d taps, %5lld parameters: worst gradient error / tolerance %.2f\n", v->name, T,
           (long long)m->n_params, worst);
    for (int t = 0; t < 64; t++) free(h.saved[t]);
    m->hooks = NULL;
    vitq_grad_acts_free(g);
    vitq_acts_free(a);
    vitq_model_free(m);
}

TEST(variants_grad_vs_finite_differences) {
    for (int i = 0; i < N_VARIANTS; i++) check_grads(&variants[i]);
}

/* The units partition the table and the taps in order; the head unit holds the variant's head rows. */
TEST(variants_units_layout) {
    for (int i = 0; i < N_VARIANTS; i++) {
        vitq_model *m = make(&variants[i].a);
        if (!m) continue;
        int next_param = 0, next_tap = 0, U = vitq_unit_count(m);
        CHECK_EQ(U, 4);
        for (int u = 0; u < U; u++) {
            const vitq_unit *t = vitq_unit_get(m, u);
            CHECK_EQ(t->param_first, next_param);
            CHECK_EQ(t->tap_first, next_tap);
            CHECK(t->param_end > t->param_first);
            next_param = t->param_end, next_tap = t->tap_end;
        }
        CHECK_EQ(next_param, m->n_table);
        CHECK_EQ(next_tap, vitq_tap_count(m));
        const vitq_unit *p = vitq_unit_get(m, 0), *h = vitq_unit_get(m, 3);
        CHECK_EQ(p->out_numel, (int64_t)vitq_arch_tokens(&m->arch) * 12);
        CHECK_EQ(h->in_numel, p->out_numel);
        /* the head's linear layers for output-guided calibration: pre_logits.fc, head, head_dist, each with
         * its input tap inside the head unit and its weight row */
        vitq_op_desc ops[8];
        int n_ops = vitq_unit_ops(m, 3, ops, 8);
        CHECK_EQ(n_ops, 1 + (m->arch.representation_size > 0) + m->arch.distilled);
        for (int k = 0; k < n_ops; k++) {
            CHECK_EQ(ops[k].kind, VITQ_OP_LINEAR);
            CHECK(ops[k].in_tap >= h->tap_first && ops[k].in_tap < h->tap_end);
            CHECK(ops[k].w_row >= h->param_first && ops[k].w_row < h->param_end);
            CHECK(ops[k].b_row >= h->param_first && ops[k].b_row < h->param_end);
        }
        for (int r = 0; r < m->n_table; r++) {
            const char *n = m->table[r].name;
            int head = !strncmp(n, "norm.", 5) || !strncmp(n, "fc_norm.", 8) || !strncmp(n, "pre_logits.", 11) ||
                       !strncmp(n, "head", 4);
            int patch = !strncmp(n, "cls_token", 9) || !strncmp(n, "dist_token", 10) || !strncmp(n, "pos_embed", 9) ||
                        !strncmp(n, "patch_embed.", 12);
            CHECK_MSG(vitq_unit_of_param(m, r) == (head ? 3 : patch ? 0 : vitq_unit_of_param(m, r)), "%s: %s",
                      variants[i].name, n);
            CHECK_MSG(!head || vitq_unit_of_param(m, r) == 3, "%s: %s", variants[i].name, n);
            CHECK_MSG(!patch || vitq_unit_of_param(m, r) == 0, "%s: %s", variants[i].name, n);
        }
        vitq_model_free(m);
    }
}

/* Unit by unit (each from a copy of its input, in eval-mode acts) = the whole model, forward bit for bit and
 * backward to 1e-6. */
TEST(variants_units_equal_whole_model) {
    for (int i = 0; i < N_VARIANTS; i++) {
        vitq_model *m = make(&variants[i].a);
        if (!m) continue;
        vitq_err e;
        vitq_acts *tr = NULL, *ev = NULL;
        vitq_grad_acts *g = NULL;
        CHECK(vitq_acts_create(m, 3, 1, &tr, &e) == 0 && vitq_acts_create(m, 3, 0, &ev, &e) == 0);
        CHECK(vitq_grad_acts_create(m, 3, &g, &e) == 0);
        float x[3 * 64], w[15];
        for (int k = 0; k < 3 * 64; k++) x[k] = (float)urand();
        for (int k = 0; k < 15; k++) w[k] = (float)urand();
        CHECK(vitq_forward(m, tr, x, 3, &e) == 0);
        vitq_model_zero_grads(m);
        CHECK(vitq_backward(m, tr, g, w, 3, &e) == 0);
        float *whole = malloc(sizeof(float) * (size_t)m->n_params), *dout[4];
        memcpy(whole, m->grad_slab, sizeof(float) * (size_t)m->n_params);
        for (int u = 0; u < 4; u++) {
            int64_t n = 3 * vitq_unit_get(m, u)->out_numel;
            dout[u] = malloc(sizeof(float) * (size_t)n);
            memcpy(dout[u], vitq_unit_dout(m, g, u), sizeof(float) * (size_t)n);
        }
        vitq_model_zero_grads(m);
        for (int u = 3; u >= 0; u--) {
            const vitq_unit *t = vitq_unit_get(m, u);
            memcpy(vitq_unit_in(m, ev, u), vitq_unit_in(m, tr, u), sizeof(float) * (size_t)(3 * t->in_numel));
            CHECK(vitq_forward_units(m, ev, u, u + 1, 3, &e) == 0);
            CHECK_EQ(memcmp(vitq_unit_out(m, ev, u), vitq_unit_out(m, tr, u), sizeof(float) * (size_t)(3 * t->out_numel)),
                     0);
            memcpy(vitq_unit_dout(m, g, u), dout[u], sizeof(float) * (size_t)(3 * t->out_numel));
            CHECK_MSG(vitq_backward_units(m, ev, g, u, u + 1, 3, &e) == 0, "%s", e.msg);
        }
        CHECK_ALLCLOSE(m->grad_slab, whole, (long)m->n_params, 1e-6, 1e-7);
        for (int u = 0; u < 4; u++) free(dout[u]);
        free(whole);
        vitq_grad_acts_free(g);
        vitq_acts_free(tr);
        vitq_acts_free(ev);
        vitq_model_free(m);
    }
}
