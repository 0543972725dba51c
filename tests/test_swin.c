/* test_swin.c — the Swin forward and backward (model/swin*.c) against the PyTorch fixtures of
 * tests/reference/make_swin_fixtures.py (timm 0.9's SwinTransformer in plain torch, float64 rounded to F32):
 *   swin_tiny56: logits, patch embedding, every block's output, the shifted block's attention branch, the
 *                merge's reduction input and output, attention probabilities (window layout), final norm,
 *                pooled features; autograd gradients of every parameter, of every block output and of the
 *                shifted block's probabilities (caught by a backward tap hook at its place);
 *   swin_pad40:  the same for a stage zero-padded to the window (10x10 -> 14x14) and a shrunk 5x5 window.
 * Tolerance: |c - torch| <= 1e-4 |torch| + 1e-5 max|torch| per tensor (test_vit.c's); probabilities with an
 * absolute floor of 1e-6 (timm adds -100, not -inf: masked entries are ~1e-43). Each check prints the max
 * error relative to the tensor's largest value. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#define FIX "tests/fixtures/"

static vitq_model *load(const char *name) {
    char path[256];
    snprintf(path, sizeof path, FIX "%s.safetensors", name);
    vitq_model *m = NULL;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_model_load(path, NULL, &m, &e) == 0, "%s", e.msg);
    return m;
}

static vitq_st_file *open_ref(const char *name) {
    char path[256];
    snprintf(path, sizeof path, FIX "%s.safetensors", name);
    vitq_st_file *f = NULL;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_st_open(path, &f, &e) == 0, "%s", e.msg);
    return f;
}

/* Tensor `name` of f as floats (its own shape), *n its size; NULL after a failed check. */
static float *ref(vitq_st_file *f, const char *name, int64_t *n) {
    const vitq_st_tensor *t = vitq_st_find(f, name);
    CHECK_MSG(t != NULL, "fixture has no '%s'", name);
    if (!t) return NULL;
    *n = vitq_st_numel(t);
    float *v = malloc(sizeof(float) * (size_t)*n);
    vitq_err e = {{0}};
    CHECK_MSG(vitq_st_read_f32(f, name, v, t->ndim, t->shape, &e) == 0, "%s", e.msg);
    return v;
}

static double g_worst; /* the largest max|c - t| / max|t| of a test, printed at its end */

/* Compares n floats with fixture tensor `name` (atol = floor, or 1e-5 max|t| when floor is 0). */
static void check_ref(vitq_st_file *f, const char *name, const float *got, int64_t n, double floor) {
    int64_t fn = 0;
    float *want = ref(f, name, &fn);
    if (!want) return;
    CHECK_MSG(fn == n, "%s: %lld values in the fixture, %lld computed", name, (long long)fn, (long long)n);
    if (fn == n) {
        double mx = 0, big = 0;
        for (int64_t i = 0; i < n; i++) mx = fmax(mx, fabs((double)got[i] - want[i])), big = fmax(big, fabs(want[i]));
        printf("    %-52s max |c - torch| / max |torch| = %.2e\n", name, mx / big);
        g_worst = fmax(g_worst, mx / big);
        test_allclose(__FILE__, __LINE__, name, got, want, (long)n, 1e-4, floor > 0 ? floor : 1e-5 * big);
    }
    free(want);
}

/* Forward of the fixture's images in train mode; every tensor of the reference file that vitq keeps. */
static void forward_parity(const char *model, const char *reffile, int has_mid) {
    vitq_model *m = load(model);
    vitq_st_file *f = open_ref(reffile);
    if (!m || !f) goto done;
    int64_t n = 0;
    float *images = ref(f, "images", &n);
    const int B = 2;
    vitq_err e = {{0}};
    vitq_acts *a = NULL, *ev = NULL;
    CHECK_MSG(vitq_acts_create(m, B, 1, &a, &e) == 0 && vitq_acts_create(m, B, 0, &ev, &e) == 0, "%s", e.msg);
    CHECK_MSG(vitq_forward(m, a, images, B, &e) == 0, "%s", e.msg);
    CHECK_MSG(vitq_forward(m, ev, images, B, &e) == 0, "%s", e.msg);
    g_worst = 0;
    printf("  %s forward:\n", model);
    check_ref(f, "logits", a->logits, B * m->arch.num_classes, 0);
    CHECK_EQ(memcmp(ev->logits, a->logits, sizeof(float) * (size_t)(B * m->arch.num_classes)), 0); /* eval = train */
    const vitq_swin_acts *x = a->ext;
    const vitq_swin_layout *l = vitq_swin_p(m)->lay;
    for (int u = 0; u < vitq_unit_count(m) - 1; u++) {
        const vitq_unit *t = vitq_unit_get(m, u);
        char name[96];
        snprintf(name, sizeof name, "%s.out", t->name);
        if (vitq_st_find(f, name)) check_ref(f, name, x->stream[u], B * t->out_numel, 0);
        if (t->kind == VITQ_UNIT_BLOCK) {
            const vitq_swin_block_geom *g = &l->blk[t->block];
            snprintf(name, sizeof name, "%s.attn.probs", t->name);
            if (vitq_st_find(f, name))
                check_ref(f, name, x->blk[t->block].att, (int64_t)B * g->nw * g->heads * g->N * g->N, 1e-6);
            snprintf(name, sizeof name, "%s.mid", t->name);
            if (has_mid && vitq_st_find(f, name)) check_ref(f, name, x->blk[t->block].res1, B * t->out_numel, 0);
        }
        if (t->kind == VITQ_UNIT_MERGE) {
            snprintf(name, sizeof name, "%s.reduction_in", t->name);
            check_ref(f, name, x->mrg[l->blk[vitq_unit_get(m, u + 1)->block].stage].mgn, B * t->out_numel * 2, 0);
        }
    }
    const vitq_swin_stage_geom *last = &l->stage[l->n_stages - 1];
    check_ref(f, "norm.out", x->lnf, (int64_t)B * last->res * last->res * last->C, 0);
    check_ref(f, "pooled", x->pooled, (int64_t)B * last->C, 0);
    printf("  %s forward: worst max |c - torch| / max |torch| = %.2e\n", model, g_worst);
    free(images);
    vitq_acts_free(a);
    vitq_acts_free(ev);
done:
    vitq_st_close(f);
    vitq_model_free(m);
}

TEST(swin_forward_tiny56) { forward_parity("swin_tiny56", "swin_tiny56_ref", 1); }

/* Window padding after the shift (stage 0: 10x10 in a 14x14 frame) and a shrunk 5x5 window (stage 1). */
TEST(swin_forward_pad40) { forward_parity("swin_pad40", "swin_pad40_ref", 0); }

/* The geometry behind the probabilities: the relative position index and the shift mask equal timm's. */
TEST(swin_geometry_tiny56) {
    vitq_model *m = load("swin_tiny56");
    vitq_st_file *f = open_ref("swin_tiny56_ref");
    if (!m || !f) goto done;
    const vitq_swin_layout *l = vitq_swin_p(m)->lay;
    CHECK_EQ(l->blk[0].shift, 0);
    CHECK_EQ(l->blk[1].shift, 3);
    CHECK_EQ(l->blk[2].win, 7);
    CHECK_EQ(l->blk[3].shift, 0); /* 7x7 stage: one window, no shift (timm's rule) */
    CHECK_EQ(l->blk[1].nw, 4);
    int64_t n = 0;
    float *rpi = ref(f, "relative_position_index.7x7", &n), *mask = ref(f, "layers.0.blocks.1.attn_mask", &n);
    if (rpi && mask) {
        int bad = 0;
        for (int i = 0; i < 49 * 49; i++) bad += l->blk[0].rpi[i] != (int32_t)rpi[i];
        CHECK_EQ(bad, 0);
        CHECK_EQ(memcmp(l->blk[1].mask, mask, sizeof(float) * 4 * 49 * 49), 0);
    }
    free(rpi), free(mask);
done:
    vitq_st_close(f);
    vitq_model_free(m);
}

/* ---- gradients -------------------------------------------------------------------------------------------- */

/* A backward hook that keeps a copy of the gradient reaching one tap (the shifted block's probabilities). */
typedef struct {
    int tap;
    float *dx;
    int64_t n;
} catch_hook;

static int pass_fwd(void *ctx, int tap, float *x, int ndim, const int64_t *shape) {
    (void)ctx, (void)tap, (void)x, (void)ndim, (void)shape;
    return 0;
}

static int catch_bwd(void *ctx, int tap, float *x, float *dx, int ndim, const int64_t *shape) {
    catch_hook *h = ctx;
    (void)x;
    if (tap != h->tap) return 0;
    h->n = 1;
    for (int d = 0; d < ndim; d++) h->n *= shape[d];
    h->dx = malloc(sizeof(float) * (size_t)h->n);
    memcpy(h->dx, dx, sizeof(float) * (size_t)h->n);
    return 0;
}

TEST(swin_grad_tiny56) {
    vitq_model *m = load("swin_tiny56");
    vitq_st_file *f = open_ref("swin_tiny56_grad");
    vitq_err e = {{0}};
    if (!m || !f || vitq_model_alloc_grads(m, &e)) goto done;
    const int B = 2, K = m->arch.num_classes;
    int64_t n = 0;
    float *images = ref(f, "images", &n), *lab = ref(f, "labels", &n), *loss = ref(f, "loss", &n);
    int labels[2] = {(int)lab[0], (int)lab[1]};
    catch_hook h = {.tap = vitq_tap_id(m, VITQ_SITE_PROBS, 1)};
    vitq_tap_hooks hooks = {.act = pass_fwd, .act_backward = catch_bwd, .ctx = &h};
    m->hooks = &hooks;
    vitq_acts *a = NULL;
    vitq_grad_acts *g = NULL;
    CHECK_MSG(vitq_acts_create(m, B, 1, &a, &e) == 0 && vitq_grad_acts_create(m, B, &g, &e) == 0, "%s", e.msg);
    CHECK_MSG(vitq_forward(m, a, images, B, &e) == 0, "%s", e.msg);
    float l = vitq_crossentropy_forward(g->probs, a->logits, labels, B, K, 0.0f);
    CHECK_NEAR(l, loss[0], 1e-5 * fabs(loss[0]));
    memset(g->dlogits, 0, sizeof(float) * (size_t)(B * K));
    vitq_crossentropy_backward(g->dlogits, g->probs, labels, B, K, 0.0f);
    g_worst = 0;
    printf("  swin_tiny56 gradients:\n");
    check_ref(f, "dlogits", g->dlogits, B * K, 0);
    vitq_model_zero_grads(m);
    CHECK_MSG(vitq_backward(m, a, g, g->dlogits, B, &e) == 0, "%s", e.msg);
    for (int i = 0; i < m->n_table; i++) {
        char name[96];
        snprintf(name, sizeof name, "grad.%s", m->table[i].name);
        check_ref(f, name, vitq_model_grad_of(m, &m->table[i]), m->table[i].numel, 0);
    }
    for (int u = 0; u < vitq_unit_count(m); u++) {
        const vitq_unit *t = vitq_unit_get(m, u);
        char name[96];
        snprintf(name, sizeof name, "grad.%s.out", t->name);
        if (t->kind == VITQ_UNIT_BLOCK) check_ref(f, name, vitq_unit_dout(m, g, u), B * t->out_numel, 0);
    }
    CHECK(h.dx != NULL);
    if (h.dx) check_ref(f, "grad.layers.0.blocks.1.attn.probs", h.dx, h.n, 0);
    printf("  swin_tiny56 gradients: worst max |c - torch| / max |torch| = %.2e\n", g_worst);
    free(h.dx), free(images), free(lab), free(loss);
    m->hooks = NULL;
    vitq_grad_acts_free(g);
    vitq_acts_free(a);
done:
    vitq_st_close(f);
    vitq_model_free(m);
}

/* The q tap sees q * D^-0.5, what timm's Swin feeds the quantized matmul: q = (xw Wq^T + bq) * scale. */
static int grab_q(void *ctx, int tap, float *x, int ndim, const int64_t *shape) {
    float **out = ctx;
    (void)ndim, (void)shape;
    if (tap == 2 && !*out) { /* layers.0.blocks.0.attn.q: patch input 0, qkv input 1, q 2 */
        *out = malloc(sizeof(float) * 49 * 16);
        memcpy(*out, x, sizeof(float) * 49 * 16); /* window 0, head 0: (N, D) */
    }
    return 0;
}

TEST(swin_q_tap_sees_scaled_q) {
    vitq_model *m = load("swin_tiny56");
    if (!m) return;
    CHECK_STREQ(vitq_tap_get(m, 2)->name, "layers.0.blocks.0.attn.q");
    float *q = NULL, img[3 * 56 * 56];
    for (int i = 0; i < 3 * 56 * 56; i++) img[i] = sinf(0.05f * (float)i);
    vitq_tap_hooks h = {.act = grab_q, .ctx = &q};
    m->hooks = &h;
    vitq_err e;
    vitq_acts *a = NULL;
    CHECK(vitq_acts_create(m, 1, 1, &a, &e) == 0 && vitq_forward(m, a, img, 1, &e) == 0); /* train: blocks' own */
    const vitq_swin_block_params *p = &vitq_swin_p(m)->blocks[0];
    const float *xw = ((vitq_swin_acts *)a->ext)->blk[0].xw; /* window 0 first: (49, 32) */
    float want[49 * 16];
    for (int t = 0; t < 49; t++)
        for (int d = 0; d < 16; d++) {
            double s = p->qkv_b[d];
            for (int c = 0; c < 32; c++) s += (double)xw[t * 32 + c] * p->qkv_w[d * 32 + c];
            want[t * 16 + d] = (float)(s * 0.25); /* head width 16: 16^-0.5 */
        }
    if (q) CHECK_ALLCLOSE(q, want, 49 * 16, 1e-5, 1e-6);
    free(q);
    vitq_acts_free(a);
    m->hooks = NULL;
    vitq_model_free(m);
}
