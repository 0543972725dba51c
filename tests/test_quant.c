/* test_quant.c — harness/quant/ on a tiny random ViT: tap matching and its errors, 8-bit weights equal to
 * a hand quantization, 16-bit fake-quant ~= float logits, statistics and histogram counts equal to the
 * values seen, sequential vs float calibration, "float" bindings, the hook before calibration. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

static vitq_model *tiny_model(void) {
    vitq_arch a = {.name = "custom", .img_size = 8, .patch_size = 4, .in_chans = 1, .num_classes = 3,
                   .embed_dim = 8, .depth = 2, .num_heads = 2, .mlp_ratio = 2, .qkv_bias = 1,
                   .mean = {0.5f, 0.5f, 0.5f}, .std = {0.5f, 0.5f, 0.5f}, .crop_pct = 1, .interpolation = "bilinear"};
    vitq_model *m = NULL;
    vitq_err e;
    if (vitq_model_create(&a, &m, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return NULL;
    }
    uint64_t s = 42;
    for (int64_t i = 0; i < m->n_params; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        m->slab[i] = (float)((double)(s >> 40) / (double)(1ull << 24) - 0.5);
    }
    for (int l = 0; l < a.depth; l++)
        for (int c = 0; c < a.embed_dim; c++) {
            m->p.blocks[l].norm1_w[c] += 1;
            m->p.blocks[l].norm2_w[c] += 1;
        }
    return m;
}

static float *images(int B) {
    float *x = malloc(sizeof(float) * (size_t)B * 64);
    for (int i = 0; i < B * 64; i++) x[i] = sinf((float)i * 0.37f) * 1.5f;
    return x;
}

/* Sections built from "key=value" lines; every kv at file "q.ini", line = section line + index + 1. */
typedef struct {
    vitq_section s[4];
    vitq_kv kv[4][8];
    char buf[4][8][2][96];
    char name[4][64];
    int n;
} secs;

static void add(secs *S, const char *name, int line, const char *const *kvs, int nkv) {
    vitq_section *s = &S->s[S->n];
    snprintf(S->name[S->n], 64, "%s", name);
    for (int i = 0; i < nkv; i++) {
        const char *eq = strchr(kvs[i], '=');
        snprintf(S->buf[S->n][i][0], 96, "%.*s", (int)(eq - kvs[i]), kvs[i]);
        snprintf(S->buf[S->n][i][1], 96, "%s", eq + 1);
        S->kv[S->n][i] = (vitq_kv){S->buf[S->n][i][0], S->buf[S->n][i][1], "q.ini", line + 1 + i};
    }
    *s = (vitq_section){S->name[S->n], S->kv[S->n], nkv, "q.ini", line};
    S->n++;
}

static int create_err(const vitq_model *m, secs *S, vitq_err *e) {
    vitq_qmodel *q = NULL;
    int rc = vitq_qmodel_create(m, S->s, S->n, 1, &q, e);
    vitq_qmodel_free(q);
    return rc;
}

TEST(quant_tap_matching_errors) {
    vitq_model *m = tiny_model();
    if (!m) return;
    vitq_err e;
    secs S = {0};
    const char *a[] = {"taps=blocks.*.attn.probs", "plugin=log2"};
    const char *b[] = {"taps=blocks.1.*", "plugin=uniform", "bits=4"};
    add(&S, "quantizer softmax", 10, a, 2);
    add(&S, "quantizer block1", 20, b, 3);
    CHECK(create_err(m, &S, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "tap 'blocks.1.attn.probs' is matched by [quantizer softmax] (q.ini:10) and by "
                              "[quantizer block1] (q.ini:20)");
    /* exclude resolves it */
    const char *b2[] = {"taps=blocks.1.*", "exclude=*.probs", "plugin=uniform", "bits=4"};
    S.n = 1;
    add(&S, "quantizer block1", 20, b2, 4);
    CHECK_MSG(create_err(m, &S, &e) == 0, "%s", e.msg);
    /* a section matching nothing */
    const char *c[] = {"taps=blocks.7.*", "plugin=uniform"};
    S.n = 1;
    add(&S, "quantizer late", 30, c, 2);
    CHECK(create_err(m, &S, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "q.ini:31: [quantizer late]: taps 'blocks.7.*' match no tap");
    /* missing key, unknown plugin, bad parameter: each with file:line */
    const char *d[] = {"plugin=uniform"};
    S.n = 0;
    add(&S, "quantizer x", 40, d, 1);
    CHECK(create_err(m, &S, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "q.ini:40: [quantizer x] needs a 'taps' key");
    const char *f[] = {"taps=*.weight", "plugin=unifrom"};
    S.n = 0;
    add(&S, "quantizer w", 50, f, 2);
    CHECK(create_err(m, &S, &e) == VITQ_EPLUGIN);
    CHECK_STR_CONTAINS(e.msg, "q.ini:52: [quantizer w]: plugin 'unifrom' not found");
    const char *g[] = {"taps=*.weight", "plugin=uniform", "bits=four"};
    S.n = 0;
    add(&S, "quantizer w", 60, g, 3);
    CHECK(create_err(m, &S, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "q.ini:63: [quantizer w] bits: expected an integer in [2, 16], got 'four' (plugin 'uniform')");
    /* a plugin refusing its tap at create names the section */
    const char *h[] = {"taps=head.weight", "plugin=uniform", "granularity=per_token"};
    S.n = 0;
    add(&S, "quantizer head", 70, h, 3);
    CHECK(create_err(m, &S, &e) == VITQ_EPLUGIN);
    CHECK_STR_CONTAINS(e.msg, "q.ini:70: [quantizer head]: plugin 'uniform' on tap 'head.weight': granularity per_token");
    vitq_model_free(m);
}

/* enabled = false: the section is checked (plugin, parameters) but binds nothing — two sections on the same
 * taps are fine when one is off, and an off section matching nothing is no error. */
TEST(quant_section_enabled_false_binds_nothing) {
    vitq_model *m = tiny_model();
    if (!m) return;
    vitq_err e;
    secs S = {0};
    const char *a[] = {"taps=blocks.*.attn.probs", "plugin=log2", "base=sqrt2", "enabled=false"};
    const char *b[] = {"taps=blocks.*.attn.probs", "plugin=uniform", "bits=4", "enabled=true"};
    add(&S, "quantizer log", 10, a, 4);
    add(&S, "quantizer uni", 20, b, 4);
    vitq_qmodel *q = NULL;
    CHECK_MSG(vitq_qmodel_create(m, S.s, S.n, 1, &q, &e) == 0, "%s", e.msg);
    if (q) {
        const vitq_qbinding *bd;
        int nb;
        vitq_qmodel_bindings(q, &bd, &nb);
        CHECK_EQ(nb, 2);
        for (int i = 0; i < nb; i++) CHECK_STREQ(bd[i].plugin, "uniform");
        vitq_qmodel_free(q);
    }
    const char *c[] = {"taps=blocks.9.*", "plugin=uniform", "enabled=off"}; /* matches nothing: off, no error */
    add(&S, "quantizer none", 30, c, 3);
    CHECK_MSG(create_err(m, &S, &e) == 0, "%s", e.msg);
    const char *d[] = {"taps=blocks.*.attn.probs", "plugin=log2", "base=three", "enabled=false"};
    S.n = 0;
    add(&S, "quantizer log", 40, d, 4); /* still checked */
    CHECK(create_err(m, &S, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "q.ini:43: [quantizer log] base:");
    const char *f[] = {"taps=blocks.*.attn.probs", "plugin=log2", "enabled=maybe"};
    S.n = 0;
    add(&S, "quantizer log", 50, f, 3);
    CHECK(create_err(m, &S, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "q.ini:53: [quantizer log] enabled:");
    vitq_model_free(m);
}

TEST(quant_weights_8bit_equal_hand_quantization) {
    vitq_model *m = tiny_model();
    if (!m) return;
    secs S = {0};
    const char *a[] = {"taps=*.weight", "plugin=uniform", "bits=8", "granularity=per_channel"};
    add(&S, "quantizer weights", 1, a, 4);
    vitq_qmodel *q = NULL;
    vitq_err e;
    CHECK_MSG(vitq_qmodel_create(m, S.s, S.n, 1, &q, &e) == 0, "%s", e.msg);
    if (!q) return;
    const vitq_qbinding *b;
    int nb;
    vitq_qmodel_bindings(q, &b, &nb);
    CHECK(nb == 2 * 4 + 2); /* qkv, proj, fc1, fc2 per block + patch + head */
    float *img = images(2);
    CHECK_MSG(vitq_qmodel_calibrate(q, img, 2, NULL, &e) == 0, "%s", e.msg);
    vitq_model *qm = vitq_qmodel_model(q);
    int checked = 0;
    for (int t = 0; t < m->n_table; t++) {
        const vitq_tensor_ref *r = &m->table[t], *rq = &qm->table[t];
        size_t len = strlen(r->name);
        int is_w = r->ndim >= 2 && !strcmp(r->name + len - 7, ".weight");
        if (!is_w) { /* everything else untouched */
            CHECK(memcmp(r->data, rq->data, (size_t)r->numel * sizeof(float)) == 0);
            continue;
        }
        int64_t rows = r->shape[0], cols = r->numel / rows;
        for (int64_t o = 0; o < rows; o++) {
            const float *w = r->data + o * cols;
            float lo = w[0], hi = w[0];
            for (int64_t i = 1; i < cols; i++) lo = w[i] < lo ? w[i] : lo, hi = w[i] > hi ? w[i] : hi;
            float s = (float)(((double)hi - (double)lo) / 255.0), z = -rintf(lo / s);
            for (int64_t i = 0; i < cols; i++) {
                float v = rintf(w[i] / s) + z;
                v = v < 0 ? 0 : v > 255 ? 255 : v;
                float want = (v - z) * s;
                if (rq->data[o * cols + i] != want) {
                    test_failf(__FILE__, __LINE__, "%s[%lld,%lld] = %.9g, hand %.9g", r->name, (long long)o,
                               (long long)i, rq->data[o * cols + i], want);
                    o = rows;
                    break;
                }
            }
        }
        checked++;
    }
    CHECK(checked == 10);
    /* weight statistics: one entry per weight, count = numel, SQNR of 8 bits well above 30 dB */
    const vitq_tap_stat *st;
    int ns;
    vitq_qmodel_stats(q, &st, &ns);
    CHECK(ns == 10);
    CHECK_STREQ(st[0].name, "patch_embed.proj.weight");
    CHECK_EQ(st[0].count, 8 * 16);
    CHECK_STREQ(st[0].plugin, "uniform");
    for (int i = 0; i < ns; i++) CHECK_MSG(st[i].sqnr_db > 30 && st[i].mse > 0, "%s: %g dB", st[i].name, st[i].sqnr_db);
    const char *const *names;
    int nn;
    vitq_qmodel_plugins(q, &names, &nn);
    CHECK_EQ(nn, 1);
    CHECK_STREQ(names[0], "uniform 1.0");
    free(img);
    vitq_qmodel_free(q);
    vitq_model_free(m);
}

static int forward_logits(vitq_model *m, const float *img, int B, float *logits) {
    vitq_acts *a = NULL;
    vitq_err e;
    int rc = vitq_acts_create(m, B, 0, &a, &e);
    if (!rc) rc = vitq_forward(m, a, img, B, &e);
    if (rc)
        test_failf(__FILE__, __LINE__, "%s", e.msg);
    else
        memcpy(logits, a->logits, sizeof(float) * (size_t)B * a->K);
    vitq_acts_free(a);
    return rc;
}

TEST(quant_16bit_matches_float_and_stats_count) {
    vitq_model *m = tiny_model();
    if (!m) return;
    secs S = {0};
    const char *a[] = {"taps=*.weight", "plugin=uniform", "bits=16", "granularity=per_channel"};
    const char *b[] = {"taps=*", "exclude=*.weight,*.probs,patch_embed.proj.input", "plugin=uniform", "bits=16"};
    const char *c[] = {"taps=*.probs", "plugin=uniform", "bits=16", "granularity=per_head"};
    const char *d[] = {"taps=patch_embed.proj.input", "plugin=float"};
    add(&S, "quantizer w", 1, a, 4);
    add(&S, "quantizer a", 10, b, 4);
    add(&S, "quantizer p", 20, c, 4);
    add(&S, "quantizer img", 30, d, 2);
    vitq_qmodel *q = NULL;
    vitq_err e;
    CHECK_MSG(vitq_qmodel_create(m, S.s, S.n, 1, &q, &e) == 0, "%s", e.msg);
    if (!q) return;
    enum { B = 3 };
    float *img = images(B), lf[B * 3], lq[B * 3];
    CHECK_MSG(vitq_qmodel_calibrate(q, img, B, "sequential", &e) == 0, "%s", e.msg);
    CHECK(vitq_qmodel_calibrate(q, img, B, NULL, &e) == VITQ_EINVAL); /* only once */
    CHECK(vitq_qmodel_hist_enable(q, "blocks.*.attn.probs, head.input", 16, &e) == 0);
    CHECK(vitq_qmodel_hist_enable(q, "patch_embed.*", 16, &e) == VITQ_EINVAL); /* float tap */
    CHECK_STR_CONTAINS(e.msg, "match no quantized activation tap");
    if (forward_logits(m, img, B, lf) || forward_logits(vitq_qmodel_model(q), img, B, lq)) return;
    CHECK_ALLCLOSE(lq, lf, B * 3, 1e-3, 1e-3);
    const vitq_tap_stat *st;
    int ns;
    vitq_qmodel_stats(q, &st, &ns);
    CHECK(ns == 10 + 2 * 8 + 1); /* weights, 8 taps per block, head input; not the float image tap */
    int64_t N = 5, C = 8, H = 2, F = 16;
    for (int i = 0; i < ns; i++) {
        int64_t want = -1;
        if (strstr(st[i].name, ".weight")) want = -1;
        else if (strstr(st[i].name, ".probs")) want = B * H * N * N;
        else if (strstr(st[i].name, "fc2.input")) want = B * N * F;
        else if (strstr(st[i].name, ".input") && strncmp(st[i].name, "head", 4)) want = B * N * C;
        else if (!strcmp(st[i].name, "head.input")) want = B * C;
        else if (strstr(st[i].name, "attn.q") || strstr(st[i].name, "attn.k") || strstr(st[i].name, "attn.v"))
            want = B * N * C;
        if (want >= 0) CHECK_MSG(st[i].count == want, "%s: %lld values, expected %lld", st[i].name,
                                 (long long)st[i].count, (long long)want);
        CHECK_MSG(st[i].sqnr_db > 60, "%s: %g dB at 16 bits", st[i].name, st[i].sqnr_db);
    }
    const vitq_hist *h;
    int nh;
    vitq_qmodel_hists(q, &h, &nh);
    CHECK(nh == 3);
    for (int i = 0; i < nh; i++) {
        int64_t sf = 0, sq = 0;
        for (int k = 0; k < h[i].bins; k++) sf += h[i].float_counts[k], sq += h[i].quant_counts[k];
        int64_t want = strstr(h[i].tap, "probs") ? B * H * N * N : B * C;
        CHECK_MSG(sf == want && sq == want, "%s: %lld / %lld, expected %lld", h[i].tap, (long long)sf, (long long)sq,
                  (long long)want);
        CHECK(h[i].lo < h[i].hi);
    }
    /* a second forward doubles the counts; reset clears activations but keeps weights */
    if (forward_logits(vitq_qmodel_model(q), img, B, lq)) return;
    vitq_qmodel_stats(q, &st, &ns);
    for (int i = 0; i < ns; i++)
        if (!strcmp(st[i].name, "head.input")) CHECK(st[i].count == 2 * B * C);
    vitq_qmodel_stats_reset(q);
    vitq_qmodel_stats(q, &st, &ns);
    CHECK_EQ(st[0].count, 8 * 16);
    CHECK_EQ(st[ns - 1].count, 0);
    free(img);
    vitq_qmodel_free(q);
    vitq_model_free(m);
}

/* Records the min/max of one tap on a model's forward. */
typedef struct {
    int tap;
    float mn, mx;
} range_cap;

static int cap_hook(void *ctx, int tap, float *x, int ndim, const int64_t *shape) {
    range_cap *c = ctx;
    if (tap != c->tap) return 0;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    for (int64_t i = 0; i < n; i++) c->mn = x[i] < c->mn ? x[i] : c->mn, c->mx = x[i] > c->mx ? x[i] : c->mx;
    return 0;
}

TEST(quant_sequential_vs_float_calibration) {
    vitq_model *m = tiny_model();
    if (!m) return;
    enum { B = 2 };
    float *img = images(B), lg[B * 3];
    /* the float range of blocks.1.attn.qkv.input */
    range_cap cap = {vitq_tap_id(m, VITQ_SITE_QKV_IN, 1), INFINITY, -INFINITY};
    vitq_tap_hooks hk = {.act = cap_hook, .ctx = &cap};
    m->hooks = &hk;
    forward_logits(m, img, B, lg);
    m->hooks = NULL;
    secs S = {0};
    /* activations only: weights are quantized before either mode calibrates */
    const char *a[] = {"taps=blocks.0.*", "exclude=*.weight", "plugin=uniform", "bits=2"};
    const char *b[] = {"taps=blocks.1.attn.qkv.input", "plugin=uniform", "bits=8"};
    add(&S, "quantizer coarse", 1, a, 4);
    add(&S, "quantizer later", 10, b, 3);
    double lo[2], hi[2];
    for (int mode = 0; mode < 2; mode++) {
        vitq_qmodel *q = NULL;
        vitq_err e;
        CHECK_MSG(vitq_qmodel_create(m, S.s, S.n, 1, &q, &e) == 0, "%s", e.msg);
        if (!q) return;
        CHECK_MSG(vitq_qmodel_calibrate(q, img, B, mode ? "float" : "sequential", &e) == 0, "%s", e.msg);
        CHECK(vitq_qmodel_hist_enable(q, "blocks.1.attn.qkv.input", 4, &e) == 0);
        const vitq_hist *h;
        int nh;
        vitq_qmodel_hists(q, &h, &nh);
        lo[mode] = h[0].lo;
        hi[mode] = h[0].hi;
        vitq_qmodel_free(q);
    }
    /* float mode saw the float activations; sequential saw those after 2-bit block 0 */
    CHECK_EQ(lo[1], cap.mn);
    CHECK_EQ(hi[1], cap.mx);
    CHECK(lo[0] != cap.mn || hi[0] != cap.mx);
    vitq_err e;
    vitq_qmodel *q = NULL;
    CHECK(vitq_qmodel_create(m, S.s, S.n, 1, &q, &e) == 0);
    CHECK(vitq_qmodel_calibrate(q, img, B, "backwards", &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "calibration mode 'backwards': expected sequential, float or search");
    /* the hook before calibration refuses */
    float x[4] = {0};
    int64_t sh[3] = {1, 1, 4};
    CHECK(vitq_qmodel_hook(q, vitq_tap_id(m, VITQ_SITE_QKV_IN, 1), x, 3, sh) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(vitq_qmodel_error(q), "used before vitq_qmodel_calibrate");
    vitq_qmodel_free(q);
    free(img);
    vitq_model_free(m);
}
