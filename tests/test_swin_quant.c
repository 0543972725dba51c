/* test_swin_quant.c — Swin under the quantizer machinery: each unit's ops (vitq_unit_ops: what output-error-
 * guided calibration walks) and the search itself (quant/qsearch.c) on window-layout taps, whose dim 0 holds
 * B * windows rows (vitq_tap_rows_per_image), against a brute force in double precision: the probe quantizer
 * (tests/plugins/search_probe.c) on the shifted, padded block's probabilities per head (summed over every
 * window of every image), its qkv input per tensor (padding rows included, as timm quantizes them) and the
 * patch merging's reduction weight per row. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

/* The small Swin of test_swin_units.c: 10x10 tokens in a 12x12 frame of 9 windows, shift 2; then 5x5 in 8x8. */
static vitq_model *small(void) {
    vitq_arch a = {.family = VITQ_FAMILY_SWIN, .name = "small", .img_size = 20, .patch_size = 2, .in_chans = 3,
                   .num_classes = 5, .embed_dim = 4, .depth = 4, .num_heads = 2, .mlp_ratio = 2.0f, .qkv_bias = 1,
                   .mean = {0.5f, 0.5f, 0.5f}, .std = {0.5f, 0.5f, 0.5f}, .crop_pct = 1.0f,
                   .interpolation = "bicubic", .n_stages = 2, .depths = {2, 2}, .stage_heads = {2, 2},
                   .window_size = 4};
    vitq_model *m = NULL;
    vitq_err e;
    if (vitq_model_create(&a, &m, &e)) return NULL;
    uint64_t s = 11;
    for (int i = 0; i < m->n_table; i++) {
        vitq_tensor_ref *r = &m->table[i];
        const int ln_w = strstr(r->name, "norm") && strstr(r->name, ".weight");
        for (int64_t k = 0; k < r->numel; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            r->data[k] = (ln_w ? 1.0f : 0.0f) + (float)((double)(s >> 40) / (double)(1ull << 24) - 0.5);
        }
    }
    return m;
}

TEST(swin_unit_ops_and_rows_per_image) {
    vitq_model *m = small();
    if (!m) return;
    vitq_op_desc ops[8];
    const int want[7] = {1, 6, 6, 1, 6, 6, 1};
    for (int u = 0; u < 7; u++) CHECK_EQ(vitq_unit_ops(m, u, ops, 8), want[u]);
    CHECK_EQ(vitq_unit_ops(m, 3, ops, 8), 1); /* the merge: its reduction, no bias */
    CHECK_STREQ(m->table[ops[0].w_row].name, "layers.1.downsample.reduction.weight");
    CHECK_EQ(ops[0].b_row, -1);
    CHECK_EQ(ops[0].in_tap, vitq_tap_id(m, VITQ_SITE_REDUCTION_IN, 2));
    vitq_unit_ops(m, 2, ops, 8);
    CHECK_STREQ(m->table[ops[0].b_row].name, "layers.0.blocks.1.attn.qkv.bias");
    CHECK_EQ(ops[1].kind, VITQ_OP_MATMUL_NT);
    CHECK_EQ(ops[2].b_tap, vitq_tap_id(m, VITQ_SITE_V, 1));
    vitq_unit_ops(m, 0, ops, 8);
    CHECK_EQ(ops[0].patch, 2);
    vitq_unit_ops(m, 6, ops, 8);
    CHECK_STREQ(m->table[ops[0].w_row].name, "head.fc.weight");
    /* window taps: 9 (stage 0) or 4 (stage 1) windows per image; token taps 1 */
    CHECK_EQ(vitq_tap_rows_per_image(m, vitq_tap_id(m, VITQ_SITE_PROBS, 1)), 9);
    CHECK_EQ(vitq_tap_rows_per_image(m, vitq_tap_id(m, VITQ_SITE_QKV_IN, 3)), 4);
    CHECK_EQ(vitq_tap_rows_per_image(m, vitq_tap_id(m, VITQ_SITE_FC1_IN, 0)), 1);
    CHECK_EQ(vitq_tap_numel_per_image(m, vitq_tap_id(m, VITQ_SITE_QKV_IN, 0)), 9 * 16 * 4);
    CHECK_EQ(vitq_tap_numel_per_image(m, vitq_tap_id(m, VITQ_SITE_PROBS, 2)), 4 * 2 * 16 * 16);
    CHECK_EQ(vitq_tap_numel_per_image(m, vitq_tap_id(m, VITQ_SITE_REDUCTION_IN, 2)), 25 * 16);
    vitq_model_free(m);
}

typedef struct {
    int id[4];
    float *buf[4];
} grab;

static int grab_hook(void *ctx, int tap, float *x, int ndim, const int64_t *shape) {
    grab *g = ctx;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    for (int i = 0; i < 4; i++)
        if (g->id[i] == tap) {
            g->buf[i] = malloc(sizeof(float) * (size_t)n);
            memcpy(g->buf[i], x, sizeof(float) * (size_t)n);
        }
    return 0;
}

static double q_step(double x, int k) {
    double s = (double)(0.01f * powf(2.0f, 0.5f * (float)k));
    return (double)(rintf((float)x / (float)s) * (float)s);
}

static int probe_choice(vitq_qmodel *q, const char *tap, int g) {
    vitq_qtensor t[2];
    vitq_err e;
    if (vitq_qmodel_tensors(q, tap, t, 2, &e) < 1 || g >= t[0].n) return -1;
    return (int)t[0].value[g];
}

/* argmin over the 8 steps of err(k), computed by f. */
typedef double (*err_fn)(const grab *g, const vitq_model *m, int k, int group);
static int best(err_fn f, const grab *g, const vitq_model *m, int group) {
    int bk = -1;
    double be = 0;
    for (int k = 0; k < 8; k++) {
        const double err = f(g, m, k, group);
        if (bk < 0 || err < be) be = err, bk = k;
    }
    return bk;
}

enum { B = 2, BW = B * 9, N = 16, C = 4, D = 2, H = 2, L1 = 25, M1 = 16, C1 = 8 };

static double probs_err(const grab *g, const vitq_model *m, int k, int h) { /* Σ_w ‖(Q_k(P) − P)·V‖² */
    (void)m;
    double err = 0;
    for (int w = 0; w < BW; w++) {
        const float *P = g->buf[0] + ((int64_t)w * H + h) * N * N, *V = g->buf[1] + ((int64_t)w * H + h) * N * D;
        for (int i = 0; i < N; i++)
            for (int d = 0; d < D; d++) {
                double y = 0;
                for (int j = 0; j < N; j++) y += (q_step(P[i * N + j], k) - P[i * N + j]) * V[j * D + d];
                err += y * y;
            }
    }
    return err;
}

static double qkv_in_err(const grab *g, const vitq_model *m, int k, int unused) { /* ‖(Q_k(X) − X) Wᵀ‖² */
    (void)unused;
    const float *W = vitq_swin_p(m)->blocks[1].qkv_w, *X = g->buf[2];
    double err = 0;
    for (int r = 0; r < BW * N; r++)
        for (int o = 0; o < 3 * C; o++) {
            double y = 0;
            for (int c = 0; c < C; c++) y += (q_step(X[r * C + c], k) - X[r * C + c]) * W[o * C + c];
            err += y * y;
        }
    return err;
}

static double red_w_err(const grab *g, const vitq_model *m, int k, int o) { /* ‖X (Q_k(w_o) − w_o)‖² */
    const float *W = vitq_swin_p(m)->ds_red_w[1], *X = g->buf[3];
    double err = 0;
    for (int r = 0; r < B * L1; r++) {
        double y = 0;
        for (int c = 0; c < M1; c++) y += (double)X[r * M1 + c] * (q_step(W[o * M1 + c], k) - W[o * M1 + c]);
        err += y * y;
    }
    return err;
}

TEST(swin_qsearch_window_taps_match_brute_force) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tests/plugins", test_build_dir());
    setenv("VITQ_PLUGIN_PATH", dir, 1);
    vitq_model *m = small();
    if (!m) return;
    float x[B * 1200];
    for (int i = 0; i < B * 1200; i++) x[i] = sinf((float)i * 0.37f) * 1.1f;
    vitq_err e;
    grab g = {.id = {vitq_tap_id(m, VITQ_SITE_PROBS, 1), vitq_tap_id(m, VITQ_SITE_V, 1),
                     vitq_tap_id(m, VITQ_SITE_QKV_IN, 1), vitq_tap_id(m, VITQ_SITE_REDUCTION_IN, 2)}};
    vitq_tap_hooks h = {.act = grab_hook, .ctx = &g};
    m->hooks = &h;
    vitq_acts *a = NULL;
    CHECK(vitq_acts_create(m, B, 0, &a, &e) == 0 && vitq_forward(m, a, x, B, &e) == 0);
    vitq_acts_free(a);
    m->hooks = NULL;
    vitq_kv kv[3][2] = {
        {{"taps", "layers.0.blocks.1.attn.probs", "s.ini", 2}, {"plugin", "search_probe", "s.ini", 3}},
        {{"taps", "layers.0.blocks.1.attn.qkv.input", "s.ini", 5}, {"plugin", "search_probe", "s.ini", 6}},
        {{"taps", "layers.1.downsample.reduction.weight", "s.ini", 8}, {"plugin", "search_probe", "s.ini", 9}}};
    vitq_section secs[3] = {{"quantizer p", kv[0], 2, "s.ini", 1}, {"quantizer i", kv[1], 2, "s.ini", 4},
                            {"quantizer w", kv[2], 2, "s.ini", 7}};
    vitq_qmodel *q = NULL;
    CHECK_MSG(vitq_qmodel_create(m, secs, 3, 1, &q, &e) == 0, "%s", e.msg);
    if (!q || !g.buf[0] || !g.buf[1] || !g.buf[2] || !g.buf[3]) goto out;
    CHECK_MSG(vitq_qmodel_calibrate_search(q, x, B, 0, &e) == 0, "%s", e.msg);
    for (int hh = 0; hh < H; hh++) CHECK_EQ(probe_choice(q, "layers.0.blocks.1.attn.probs", hh), best(probs_err, &g, m, hh));
    CHECK_EQ(probe_choice(q, "layers.0.blocks.1.attn.qkv.input", 0), best(qkv_in_err, &g, m, 0));
    int bad = 0;
    for (int o = 0; o < C1; o++) bad += probe_choice(q, "layers.1.downsample.reduction.weight", o) != best(red_w_err, &g, m, o);
    CHECK_EQ(bad, 0);
    vitq_qmodel_free(q);
out:
    for (int i = 0; i < 4; i++) free(g.buf[i]);
    vitq_model_free(m);
}
