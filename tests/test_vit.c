/* test_vit.c — the ViT/DeiT forward pass (vit.c) against PyTorch fixtures made by
 * tests/reference/make_vit_fixtures.py (timm's VisionTransformer re-implemented in plain torch, float32):
 * logits and the residual stream after every block, for a 28x28x1 patch-4 model and a 224x224x3
 * patch-16 model. Tolerance: |c - torch| <= 1e-4 * |torch| + atol with atol = 1e-5 * max|torch| of that
 * tensor (the floor for values near zero). Also: eval-mode acts equal train-mode acts bit for bit, a
 * short batch in bigger acts equals per-image forwards, hooks see every tap once in order with its shape,
 * a failing hook aborts with its code, and 1 vs 2 threads agree to 1e-6 relative. */

#include "test.h"

#include <stdlib.h>
#include <string.h>

#define FIX "tests/fixtures/"

/* Loads a fixture model (vitq_model_load: architecture from __metadata__). */
static vitq_model *load_model(const char *name) {
    char path[256];
    snprintf(path, sizeof path, FIX "vit_%s.safetensors", name);
    vitq_model *m = NULL;
    vitq_err e = {{0}};
    int rc = vitq_model_load(path, NULL, &m, &e);
    CHECK_MSG(rc == 0, "%s", e.msg);
    return m;
}

/* Reads tensor `name` of the reference file into a fresh buffer of n floats with the given shape. */
static float *read_ref(vitq_st_file *f, const char *name, int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    float *p = malloc((size_t)n * sizeof(float));
    vitq_err e = {{0}};
    int rc = vitq_st_read_f32(f, name, p, ndim, shape, &e);
    CHECK_MSG(rc == 0, "%s", e.msg);
    return p;
}

static int close_to_ref(const char *what, const float *got, const float *ref, int64_t n) {
    double mx = 0;
    for (int64_t i = 0; i < n; i++) mx = fabs(ref[i]) > mx ? fabs(ref[i]) : mx;
    return test_allclose(__FILE__, __LINE__, what, got, ref, (long)n, 1e-4, 1e-5 * mx);
}

/* Forward of the fixture's images; compares logits and every res.L with torch. */
static void check_fixture(const char *name, int nimg) {
    vitq_model *m = load_model(name);
    if (!m) return;
    char path[256];
    snprintf(path, sizeof path, FIX "vit_%s_ref.safetensors", name);
    vitq_st_file *f = NULL;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_st_open(path, &f, &e) == 0, "%s", e.msg);
    if (!f) {
        vitq_model_free(m);
        return;
    }
    const vitq_arch *ar = &m->arch;
    const int64_t N = vitq_arch_tokens(ar), C = ar->embed_dim, K = ar->num_classes;
    const int64_t ishape[4] = {nimg, ar->in_chans, ar->img_size, ar->img_size}, lshape[2] = {nimg, K};
    const int64_t rshape[3] = {nimg, N, C};
    float *images = read_ref(f, "images", 4, ishape), *logits = read_ref(f, "logits", 2, lshape);
    for (int train = 0; train < 2; train++) {
        vitq_acts *a = NULL;
        CHECK_MSG(vitq_acts_create(m, nimg, train, &a, &e) == 0, "%s", e.msg);
        CHECK_MSG(vitq_forward(m, a, images, nimg, &e) == 0, "%s", e.msg);
        char what[64];
        snprintf(what, sizeof what, "%s logits (train %d)", name, train);
        close_to_ref(what, a->logits, logits, nimg * K);
        /* every res.L in train mode; in eval mode only the last one survives */
        for (int l = train ? 0 : ar->depth; l <= ar->depth; l++) {
            char key[32];
            snprintf(key, sizeof key, "res.%d", l);
            float *r = read_ref(f, key, 3, rshape);
            snprintf(what, sizeof what, "%s res.%d (train %d)", name, l, train);
            close_to_ref(what, vitq_acts_res(a, l), r, nimg * N * C);
            free(r);
        }
        vitq_acts_free(a);
    }
    free(images);
    free(logits);
    vitq_st_close(f);
    vitq_model_free(m);
}

TEST(vit_fmnist_matches_torch) { check_fixture("fmnist", 4); }

TEST(vit_in224_matches_torch) { check_fixture("in224", 2); }

/* Random images shaped for m. */
static float *random_images(const vitq_model *m, int B, unsigned seed) {
    int64_t n = (int64_t)B * m->arch.in_chans * m->arch.img_size * m->arch.img_size;
    float *p = malloc((size_t)n * sizeof(float));
    srand(seed);
    for (int64_t i = 0; i < n; i++) p[i] = (float)rand() / (float)RAND_MAX * 2.0f - 1.0f;
    return p;
}

TEST(vit_eval_equals_train_bitwise_and_short_batch) {
    vitq_model *m = load_model("fmnist");
    if (!m) return;
    const int64_t K = m->arch.num_classes, img = (int64_t)m->arch.in_chans * m->arch.img_size * m->arch.img_size;
    float *images = random_images(m, 5, 7);
    vitq_acts *ev = NULL, *tr = NULL, *one = NULL;
    vitq_err e = {{0}};
    CHECK(vitq_acts_create(m, 5, 0, &ev, &e) == 0);
    CHECK(vitq_acts_create(m, 5, 1, &tr, &e) == 0);
    CHECK(vitq_acts_create(m, 1, 0, &one, &e) == 0);
    CHECK(ev->bytes < tr->bytes);
    CHECK(vitq_forward(m, ev, images, 5, &e) == 0);
    CHECK(vitq_forward(m, tr, images, 5, &e) == 0);
    CHECK(memcmp(ev->logits, tr->logits, (size_t)(5 * K) * sizeof(float)) == 0);
    /* a batch of 3 in acts made for 5 (after a full batch ran there) equals single-image forwards */
    CHECK(vitq_forward(m, ev, images + img, 3, &e) == 0);
    for (int b = 0; b < 3; b++) {
        CHECK(vitq_forward(m, one, images + (1 + b) * img, 1, &e) == 0);
        CHECK_ALLCLOSE(ev->logits + b * K, one->logits, (long)K, 1e-6, 1e-6);
        CHECK_ALLCLOSE(tr->logits + (1 + b) * K, one->logits, (long)K, 1e-6, 1e-6);
    }
    /* too big a batch and block out of range are errors, not crashes */
    CHECK(vitq_forward(m, one, images, 2, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "batch of 2");
    CHECK(vitq_block_forward(m, one, m->arch.depth, 1, &e) == VITQ_EINVAL);
    vitq_acts_free(ev), vitq_acts_free(tr), vitq_acts_free(one);
    free(images);
    vitq_model_free(m);
}

TEST(vit_block_forward_matches_full_forward) {
    vitq_model *m = load_model("fmnist");
    if (!m) return;
    const int64_t BNC = 2 * vitq_arch_tokens(&m->arch) * m->arch.embed_dim;
    float *images = random_images(m, 2, 3);
    vitq_acts *tr = NULL, *ev = NULL;
    vitq_err e = {{0}};
    CHECK(vitq_acts_create(m, 2, 1, &tr, &e) == 0);
    CHECK(vitq_acts_create(m, 2, 0, &ev, &e) == 0);
    CHECK(vitq_forward(m, tr, images, 2, &e) == 0);
    /* block 1 alone from the cached input of block 1 reproduces the last residual exactly */
    memcpy(vitq_acts_res(ev, 1), vitq_acts_res(tr, 1), (size_t)BNC * sizeof(float));
    CHECK(vitq_block_forward(m, ev, 1, 2, &e) == 0);
    CHECK(memcmp(vitq_acts_res(ev, 2), vitq_acts_res(tr, 2), (size_t)BNC * sizeof(float)) == 0);
    vitq_acts_free(tr), vitq_acts_free(ev);
    free(images);
    vitq_model_free(m);
}

/* ---- taps --------------------------------------------------------------------------------- */

typedef struct {
    int calls, order_ok, fail_at;
    int seen[64];
    int64_t shapes[64][4];
    int ndims[64];
    const float *ptr[64];
} tap_log;

static int log_hook(void *ctx, int tap, float *x, int ndim, const int64_t *shape) {
    tap_log *t = ctx;
    if (t->calls < 64) {
        t->seen[t->calls] = tap;
        t->ndims[t->calls] = ndim;
        for (int i = 0; i < ndim && i < 4; i++) t->shapes[t->calls][i] = shape[i];
        t->ptr[t->calls] = x;
    }
    t->calls++;
    return tap == t->fail_at ? VITQ_EPLUGIN : 0;
}

TEST(vit_hooks_every_tap_in_order_with_shapes) {
    vitq_model *m = load_model("fmnist");
    if (!m) return;
    const vitq_arch *ar = &m->arch;
    const int64_t B = 3, N = vitq_arch_tokens(ar), C = ar->embed_dim, H = ar->num_heads, D = C / H;
    const int64_t F = vitq_arch_hidden(ar);
    float *images = random_images(m, 3, 11);
    vitq_acts *a = NULL;
    vitq_err e = {{0}};
    CHECK(vitq_acts_create(m, 4, 1, &a, &e) == 0); /* B = 3 in acts for 4 */
    tap_log log = {.fail_at = -1};
    vitq_tap_hooks hooks = {.act = log_hook, .ctx = &log, .enabled = NULL};
    m->hooks = &hooks;
    CHECK_MSG(vitq_forward(m, a, images, 3, &e) == 0, "%s", e.msg);
    int ntaps = vitq_tap_count(m);
    CHECK_EQ(ntaps, 2 + 8 * ar->depth);
    CHECK_EQ(log.calls, ntaps);
    /* expected order and names (results files name taps; the ids are the forward order): patch input,
     * per block its 8 taps, head input */
    static const char *const kinds[8] = {"attn.qkv.input", "attn.q", "attn.k", "attn.v",
                                         "attn.probs", "attn.proj.input", "mlp.fc1.input", "mlp.fc2.input"};
    char name[96];
    int k = 0;
    CHECK_STREQ(vitq_tap_name(m, 0, name, sizeof name), "patch_embed.proj.input");
    CHECK_EQ(log.seen[k], vitq_tap_id(m, VITQ_SITE_PATCH_IN, -1));
    CHECK_EQ(log.seen[k], 0);
    CHECK_EQ(log.ndims[k], 4);
    CHECK_EQ(log.shapes[k][0], B);
    CHECK_EQ(log.shapes[k][1], ar->in_chans);
    CHECK_EQ(log.shapes[k][3], ar->img_size);
    k++;
    for (int l = 0; l < ar->depth; l++) {
        vitq_block_acts *ba = vitq_acts_block(a, l);
        const int64_t exp[8][4] = {
            {B, N, C}, {B, H, N, D}, {B, H, N, D}, {B, H, N, D}, {B, H, N, N}, {B, N, C}, {B, N, C}, {B, N, F}};
        const int nd[8] = {3, 4, 4, 4, 4, 3, 3, 3};
        const float *ptrs[8] = {ba->ln1, ba->qkvh, ba->qkvh + B * H * N * D,
                                ba->qkvh + 2 * B * H * N * D, ba->att, ba->atty, ba->ln2, ba->act};
        for (int t = 0; t < 8; t++, k++) {
            char want[96];
            snprintf(want, sizeof want, "blocks.%d.%s", l, kinds[t]);
            CHECK_EQ(log.seen[k], k);
            CHECK_STREQ(vitq_tap_name(m, k, name, sizeof name), want);
            CHECK_EQ(vitq_tap_id(m, (vitq_tap_site)(VITQ_SITE_QKV_IN + t), l), k);
            const vitq_tap_desc *d = vitq_tap_get(m, k);
            CHECK_EQ(d->ndim, nd[t]);
            for (int j = 1; j < nd[t]; j++) CHECK_EQ(d->shape[j], exp[t][j]); /* the table's shapes */
            CHECK_MSG(log.ndims[k] == nd[t] && !memcmp(log.shapes[k], exp[t], sizeof(int64_t) * (size_t)nd[t]),
                      "block %d tap kind %d: wrong shape", l, t);
            CHECK_MSG(log.ptr[k] == ptrs[t], "block %d tap kind %d: not the buffer the next op reads", l, t);
        }
    }
    CHECK_STREQ(vitq_tap_name(m, k, name, sizeof name), "head.input");
    CHECK_EQ(log.seen[k], vitq_tap_id(m, VITQ_SITE_HEAD_IN, -1));
    CHECK_EQ(log.ndims[k], 2);
    CHECK_EQ(log.shapes[k][0], B);
    CHECK_EQ(log.shapes[k][1], C);
    CHECK_EQ(vitq_tap_get(m, vitq_tap_id(m, VITQ_SITE_PROBS, 1))->kind, VITQ_TAPK_PROBS);
    CHECK_EQ(vitq_tap_id(m, VITQ_SITE_HEAD_IN, 0), -1); /* no such tap */

    /* enabled[] skips taps */
    const int probs1 = vitq_tap_id(m, VITQ_SITE_PROBS, 1), head = vitq_tap_id(m, VITQ_SITE_HEAD_IN, -1);
    unsigned char *en = calloc((size_t)ntaps, 1);
    en[probs1] = 1;
    en[head] = 1;
    hooks.enabled = en;
    log = (tap_log){.fail_at = -1};
    CHECK(vitq_forward(m, a, images, 3, &e) == 0);
    CHECK_EQ(log.calls, 2);
    CHECK_EQ(log.seen[0], probs1);
    CHECK_EQ(log.seen[1], head);

    /* a failing hook aborts the forward with its code, naming the tap */
    hooks.enabled = NULL;
    log = (tap_log){.fail_at = vitq_tap_id(m, VITQ_SITE_V, 0)};
    CHECK(vitq_forward(m, a, images, 3, &e) == VITQ_EPLUGIN);
    CHECK_EQ(log.calls, vitq_tap_id(m, VITQ_SITE_V, 0) + 1);
    CHECK_STR_CONTAINS(e.msg, "blocks.0.attn.v");
    m->hooks = NULL;
    free(en);
    vitq_acts_free(a);
    free(images);
    vitq_model_free(m);
}

/* A hook that changes the buffer in place: the forward uses the changed values. */
static int zero_probs_hook(void *ctx, int tap, float *x, int ndim, const int64_t *shape) {
    const vitq_model *m = ctx;
    if (vitq_tap_get(m, tap)->site != VITQ_SITE_FC2_IN) return 0;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    memset(x, 0, (size_t)n * sizeof(float));
    return 0;
}

TEST(vit_hook_modifies_in_place) {
    vitq_model *m = load_model("fmnist");
    if (!m) return;
    float *images = random_images(m, 2, 5);
    vitq_acts *a = NULL;
    vitq_err e = {{0}};
    CHECK(vitq_acts_create(m, 2, 1, &a, &e) == 0);
    vitq_tap_hooks hooks = {.act = zero_probs_hook, .ctx = m};
    m->hooks = &hooks;
    CHECK(vitq_forward(m, a, images, 2, &e) == 0);
    m->hooks = NULL;
    /* with fc2's input zeroed, each block's output is res1 + fc2.bias */
    const int64_t N = vitq_arch_tokens(&m->arch), C = m->arch.embed_dim;
    vitq_block_acts *ba = vitq_acts_block(a, 0);
    const float *y = vitq_acts_res(a, 1);
    int ok = 1;
    for (int64_t r = 0; r < 2 * N; r++)
        for (int64_t c = 0; c < C; c++) ok &= y[r * C + c] == ba->res1[r * C + c] + m->p.blocks[0].fc2_b[c];
    CHECK(ok);
    vitq_acts_free(a);
    free(images);
    vitq_model_free(m);
}

TEST(vit_threads_1_vs_2) {
    vitq_model *m = load_model("in224");
    if (!m) return;
    int saved = vitq_threads_get();
    const int64_t K = m->arch.num_classes;
    float *images = random_images(m, 2, 9);
    vitq_acts *a = NULL;
    vitq_err e = {{0}};
    CHECK(vitq_acts_create(m, 2, 0, &a, &e) == 0);
    float l1[64], l2[64];
    vitq_threads_set(1);
    CHECK(vitq_forward(m, a, images, 2, &e) == 0);
    memcpy(l1, a->logits, (size_t)(2 * K) * sizeof(float));
    vitq_threads_set(2);
    CHECK(vitq_forward(m, a, images, 2, &e) == 0);
    memcpy(l2, a->logits, (size_t)(2 * K) * sizeof(float));
    double mx = 0;
    for (int i = 0; i < 2 * K; i++) mx = fabs(l1[i]) > mx ? fabs(l1[i]) : mx;
    CHECK_ALLCLOSE(l2, l1, (long)(2 * K), 1e-6, 1e-6 * mx);
    vitq_threads_set(saved);
    vitq_acts_free(a);
    free(images);
    vitq_model_free(m);
}
