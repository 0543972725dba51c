/* test_qsearch.c — output-error-guided calibration (quant/qsearch.c) against a brute force: a probe
 * quantizer (tests/plugins/search_probe.c) picks, through vitq_search.error, one of 8 step sizes per
 * group; here the same choice is made in double precision from the float activations captured
 * independently. Covers a weight's rows (the Gram form), a linear input per tensor, the attention
 * probabilities per head (matmul with v), and q and k per head (either side of q·kᵀ, which the oracle
 * computes as a plain product against the partner transposed), each with the other operand in float; and
 * error_below's bounds. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

static vitq_model *tiny(void) {
    vitq_arch a = {.name = "tiny", .img_size = 8, .patch_size = 4, .in_chans = 1, .num_classes = 3,
                   .embed_dim = 8, .depth = 2, .num_heads = 2, .mlp_ratio = 2, .qkv_bias = 1,
                   .mean = {0.5f}, .std = {0.5f}, .crop_pct = 1, .interpolation = "bicubic"};
    vitq_model *m = NULL;
    vitq_err e;
    if (vitq_model_create(&a, &m, &e)) return NULL;
    uint64_t s = 7;
    for (int64_t i = 0; i < m->n_params; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        m->slab[i] = (float)((double)(s >> 40) / (double)(1ull << 24) - 0.5);
    }
    for (int l = 0; l < 2; l++)
        for (int c = 0; c < 8; c++) m->p.blocks[l].norm1_w[c] += 1, m->p.blocks[l].norm2_w[c] += 1;
    return m;
}

/* Float activations at three taps over the calibration images, by a hook on the float model. */
typedef struct {
    int id[8];
    float *buf[8];
    int64_t per[8];
} grab;

static int grab_hook(void *ctx, int tap, float *x, int ndim, const int64_t *shape) {
    grab *g = ctx;
    for (int i = 0; i < 8; i++)
        if (g->id[i] == tap) {
            int64_t n = 1;
            for (int d = 0; d < ndim; d++) n *= shape[d];
            g->per[i] = n;
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

TEST(qsearch_matches_brute_force) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tests/plugins", test_build_dir());
    setenv("VITQ_PLUGIN_PATH", dir, 1);
    vitq_model *m = tiny();
    if (!m) return;
    const int B = 4;
    float x[4 * 64];
    for (int i = 0; i < B * 64; i++) x[i] = sinf((float)i * 0.61f) * 1.3f;
    vitq_err e;
    /* the float tensors */
    grab g = {.id = {vitq_tap_id(m, VITQ_SITE_QKV_IN, 0), vitq_tap_id(m, VITQ_SITE_FC1_IN, 0),
                     vitq_tap_id(m, VITQ_SITE_PROBS, 1), vitq_tap_id(m, VITQ_SITE_V, 1), vitq_tap_id(m, VITQ_SITE_Q, 0),
                     vitq_tap_id(m, VITQ_SITE_K, 0), vitq_tap_id(m, VITQ_SITE_Q, 1), vitq_tap_id(m, VITQ_SITE_K, 1)}};
    vitq_tap_hooks h = {.act = grab_hook, .ctx = &g};
    m->hooks = &h;
    vitq_acts *a = NULL;
    CHECK(vitq_acts_create(m, B, 0, &a, &e) == 0 && vitq_forward(m, a, x, B, &e) == 0);
    vitq_acts_free(a);
    m->hooks = NULL;
    /* the search */
    vitq_kv kv[5][2] = {{{"taps", "blocks.0.attn.qkv.weight", "s.ini", 2}, {"plugin", "search_probe", "s.ini", 3}},
                        {{"taps", "blocks.0.mlp.fc1.input", "s.ini", 5}, {"plugin", "search_probe", "s.ini", 6}},
                        {{"taps", "blocks.1.attn.probs", "s.ini", 8}, {"plugin", "search_probe", "s.ini", 9}},
                        {{"taps", "blocks.0.attn.k", "s.ini", 11}, {"plugin", "search_probe", "s.ini", 12}},
                        {{"taps", "blocks.1.attn.q", "s.ini", 14}, {"plugin", "search_probe", "s.ini", 15}}};
    vitq_section secs[5] = {{"quantizer w", kv[0], 2, "s.ini", 1}, {"quantizer i", kv[1], 2, "s.ini", 4},
                            {"quantizer p", kv[2], 2, "s.ini", 7}, {"quantizer k", kv[3], 2, "s.ini", 10},
                            {"quantizer q", kv[4], 2, "s.ini", 13}};
    vitq_qmodel *q = NULL;
    CHECK_MSG(vitq_qmodel_create(m, secs, 5, 1, &q, &e) == 0, "%s", e.msg);
    if (!q) goto out;
    CHECK_MSG(vitq_qmodel_calibrate_search(q, x, B, 1, &e) == 0, "%s", e.msg);

    const int64_t N = 5, C = 8, F = 16, H = 2, D = 4, R = B * N;
    /* qkv weight rows: err_o(k) = ‖X (Q_k(w_o) − w_o)‖², X float */
    const float *W = m->p.blocks[0].qkv_w;
    int bad = 0, distinct = 0;
    for (int o = 0; o < 3 * C; o++) {
        int bk = -1;
        double be = 0;
        for (int k = 0; k < 8; k++) {
            double err = 0;
            for (int64_t r = 0; r < R; r++) {
                double y = 0;
                for (int c = 0; c < C; c++) y += (double)g.buf[0][r * C + c] * (q_step(W[o * C + c], k) - W[o * C + c]);
                err += y * y;
            }
            if (bk < 0 || err < be) be = err, bk = k;
        }
        bad += probe_choice(q, "blocks.0.attn.qkv.weight", o) != bk;
        distinct += o > 0 && probe_choice(q, "blocks.0.attn.qkv.weight", o) != probe_choice(q, "blocks.0.attn.qkv.weight", 0);
    }
    CHECK_EQ(bad, 0);
    CHECK(distinct > 0); /* the rows do choose differently: a per-row error is needed to get them right */
    /* fc1 input per tensor: err(k) = ‖(Q_k(X) − X) W1ᵀ‖² */
    const float *W1 = m->p.blocks[0].fc1_w;
    int bk = -1;
    double be = 0;
    for (int k = 0; k < 8; k++) {
        double err = 0;
        for (int64_t r = 0; r < R; r++)
            for (int f = 0; f < F; f++) {
                double y = 0;
                for (int c = 0; c < C; c++) y += (q_step(g.buf[1][r * C + c], k) - g.buf[1][r * C + c]) * W1[f * C + c];
                err += y * y;
            }
        if (bk < 0 || err < be) be = err, bk = k;
    }
    CHECK_EQ(probe_choice(q, "blocks.0.mlp.fc1.input", 0), bk);
    /* probs per head: err_h(k) = Σ_b ‖(Q_k(P) − P)·V‖² */
    for (int hh = 0; hh < H; hh++) {
        bk = -1;
        for (int k = 0; k < 8; k++) {
            double err = 0;
            for (int b = 0; b < B; b++) {
                const float *P = g.buf[2] + ((int64_t)b * H + hh) * N * N, *V = g.buf[3] + ((int64_t)b * H + hh) * N * D;
                for (int i = 0; i < N; i++)
                    for (int d = 0; d < D; d++) {
                        double y = 0;
                        for (int j = 0; j < N; j++) y += (q_step(P[i * N + j], k) - P[i * N + j]) * V[j * D + d];
                        err += y * y;
                    }
            }
            if (bk < 0 || err < be) be = err, bk = k;
        }
        CHECK_EQ(probe_choice(q, "blocks.1.attn.probs", hh), bk);
    }
    /* q·kᵀ per head: k of block 0 against float q, err_h(k) = Σ_b ‖Q (Q_k(K) − K)ᵀ‖²; q of block 1 against
     * float k, err_h(k) = Σ_b ‖(Q_k(Q) − Q) Kᵀ‖² */
    for (int side = 0; side < 2; side++)
        for (int hh = 0; hh < H; hh++) {
            const float *Qs = g.buf[side == 0 ? 6 : 4], *Ks = g.buf[side == 0 ? 7 : 5];
            bk = -1;
            for (int k = 0; k < 8; k++) {
                double err = 0;
                for (int b = 0; b < B; b++) {
                    const float *Qh = Qs + ((int64_t)b * H + hh) * N * D, *Kh = Ks + ((int64_t)b * H + hh) * N * D;
                    for (int i = 0; i < N; i++)
                        for (int j = 0; j < N; j++) {
                            double y = 0;
                            for (int d = 0; d < D; d++)
                                y += side == 0 ? (q_step(Qh[i * D + d], k) - Qh[i * D + d]) * Kh[j * D + d]
                                               : Qh[i * D + d] * (q_step(Kh[j * D + d], k) - Kh[j * D + d]);
                            err += y * y;
                        }
                }
                if (bk < 0 || err < be) be = err, bk = k;
            }
            CHECK_MSG(probe_choice(q, side == 0 ? "blocks.1.attn.q" : "blocks.0.attn.k", hh) == bk,
                      "%s head %d: chose %d, brute force %d", side == 0 ? "q" : "k", hh,
                      probe_choice(q, side == 0 ? "blocks.1.attn.q" : "blocks.0.attn.k", hh), bk);
        }
    /* every probe searched once per round (rounds 0 and 1): 8 candidates each time */
    vitq_qtensor t[3];
    CHECK(vitq_qmodel_tensors(q, "blocks.1.attn.probs", t, 3, &e) == 3);
    CHECK_EQ(t[1].value[0], 16.0f);
    /* error_below: exact without a bound or under it, above it when stopped (weight rows, the input per
     * tensor, the probabilities per head with one head stopped and the other not) */
    static const char *const taps[] = {"blocks.0.attn.qkv.weight", "blocks.0.mlp.fc1.input", "blocks.1.attn.probs",
                                       "blocks.0.attn.k", "blocks.1.attn.q"};
    for (int i = 0; i < 5; i++) {
        CHECK(vitq_qmodel_tensors(q, taps[i], t, 3, &e) == 3);
        CHECK_MSG(t[2].value[0] == 0.0f, "%s: %g error_below violations", taps[i], t[2].value[0]);
    }
    vitq_qmodel_free(q);
out:
    for (int i = 0; i < 8; i++) free(g.buf[i]);
    vitq_model_free(m);
}

/* Logits of the tiny model quantized by APHQ-ViT's search (uniform, init = aphq: weights per row with
 * AdaRound's start, inputs per tensor, q/k/v/probs per head, 4 bits) at `threads` threads, into out (B x 3).
 * Returns 0 on success. */
static int aphq_search_logits(int threads, const float *x, int B, float *out) {
    vitq_threads_set(threads);
    vitq_model *m = tiny();
    vitq_kv kv[3][6] = {
        {{"taps", "blocks.*.weight", "t.ini", 2}, {"plugin", "uniform", "t.ini", 3}, {"bits", "4", "t.ini", 4},
         {"granularity", "per_channel", "t.ini", 5}, {"init", "aphq", "t.ini", 6}, {"symmetric", "false", "t.ini", 7}},
        {{"taps", "blocks.*.input", "t.ini", 9}, {"plugin", "uniform", "t.ini", 10}, {"bits", "4", "t.ini", 11},
         {"granularity", "per_tensor", "t.ini", 12}, {"init", "aphq", "t.ini", 13}, {"symmetric", "false", "t.ini", 14}},
        {{"taps", "blocks.*.attn.q, blocks.*.attn.k, blocks.*.attn.v, blocks.*.attn.probs", "t.ini", 16},
         {"plugin", "uniform", "t.ini", 17}, {"bits", "4", "t.ini", 18}, {"granularity", "per_head", "t.ini", 19},
         {"init", "aphq", "t.ini", 20}, {"symmetric", "false", "t.ini", 21}}};
    vitq_section secs[3] = {{"quantizer w", kv[0], 6, "t.ini", 1}, {"quantizer i", kv[1], 6, "t.ini", 8},
                            {"quantizer a", kv[2], 6, "t.ini", 15}};
    vitq_qmodel *q = NULL;
    vitq_acts *a = NULL;
    vitq_err e;
    int rc = !m || vitq_qmodel_create(m, secs, 3, 1, &q, &e) || vitq_qmodel_calibrate_search(q, x, B, 2, &e) ||
             vitq_acts_create(vitq_qmodel_model(q), B, 0, &a, &e) || vitq_forward(vitq_qmodel_model(q), a, x, B, &e);
    CHECK_MSG(!rc, "%d threads: %s", threads, m ? e.msg : "no model");
    if (!rc) memcpy(out, a->logits, sizeof(float) * (size_t)B * 3);
    vitq_acts_free(a);
    vitq_qmodel_free(q);
    vitq_model_free(m);
    vitq_threads_set(0);
    return rc;
}

TEST(qsearch_same_result_for_any_thread_count) {
    /* The ops of a unit are searched side by side on the pool (search_ops): 1 and 2 threads must agree bit
     * for bit, and the quantized logits must differ from the float ones (the search did quantize). */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/plugins", test_build_dir());
    setenv("VITQ_PLUGIN_PATH", dir, 1);
    enum { B = 6 };
    float x[B * 64], l1[B * 3], l2[B * 3], lf[B * 3];
    for (int i = 0; i < B * 64; i++) x[i] = sinf((float)i * 0.37f) * 1.1f + 0.2f * cosf((float)i * 1.3f);
    if (aphq_search_logits(1, x, B, l1) || aphq_search_logits(2, x, B, l2)) return;
    CHECK_EQ(memcmp(l1, l2, sizeof l1), 0);
    vitq_model *m = tiny();
    vitq_acts *a = NULL;
    vitq_err e;
    if (!m || vitq_acts_create(m, B, 0, &a, &e) || vitq_forward(m, a, x, B, &e)) {
        CHECK_MSG(0, "float forward failed");
    } else {
        memcpy(lf, a->logits, sizeof lf);
        double diff = 0;
        for (int i = 0; i < B * 3; i++) diff += fabs((double)lf[i] - l1[i]);
        CHECK_MSG(diff > 1e-4, "quantized logits equal the float ones (sum |diff| %g)", diff);
    }
    vitq_acts_free(a);
    vitq_model_free(m);
}
