/* test_ops.c — the thread pool and every forward kernel of ops.c against naive double-precision
 * references kept here (llm.c's matmul_forward_naive beside matmul_forward), and hand-derived values
 * (GELU, cross-entropy with label smoothing). Shapes are chosen large enough that the kernels really
 * split their work over 2-3 threads, and odd enough to catch off-by-one chunking. */

#include "test.h"

#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

static float frand(void) { /* uniform in [-1, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

static float *rand_buf(int64_t n, float scale) {
    float *p = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = frand() * scale;
    return p;
}

/* ---- naive references (double accumulation) ----------------------------------------------- */

/* out (R,OC) = inp (R,IC) · w (OC,IC)^T + bias */
static void linear_naive(float *out, const float *inp, const float *w, const float *bias, int64_t R, int64_t IC,
                         int64_t OC) {
    for (int64_t r = 0; r < R; r++)
        for (int64_t o = 0; o < OC; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int64_t i = 0; i < IC; i++) s += (double)inp[r * IC + i] * w[o * IC + i];
            out[r * OC + o] = (float)s;
        }
}

/* q, k, v (B,H,N,D) -> att (B,H,N,N), out (B,N,C) */
static void attention_naive(float *att, float *out, const float *q, const float *k, const float *v, int64_t B,
                            int64_t H, int64_t N, int64_t D, double scale) {
    double *row = malloc((size_t)N * sizeof(double));
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            int64_t p = b * H + h;
            for (int64_t i = 0; i < N; i++) {
                double mx = -1e300, sum = 0;
                for (int64_t j = 0; j < N; j++) {
                    double s = 0;
                    for (int64_t d = 0; d < D; d++) s += (double)q[(p * N + i) * D + d] * k[(p * N + j) * D + d];
                    row[j] = s * scale;
                    if (row[j] > mx) mx = row[j];
                }
                for (int64_t j = 0; j < N; j++) sum += (row[j] = exp(row[j] - mx));
                for (int64_t j = 0; j < N; j++) att[(p * N + i) * N + j] = (float)(row[j] / sum);
                for (int64_t d = 0; d < D; d++) {
                    double s = 0;
                    for (int64_t j = 0; j < N; j++) s += row[j] / sum * v[(p * N + j) * D + d];
                    out[(b * N + i) * H * D + h * D + d] = (float)s;
                }
            }
        }
    free(row);
}

/* ---- pool --------------------------------------------------------------------------------- */

typedef struct {
    int *hits;
    int64_t *begins;
    int n_calls;
} cover_ctx;

static void cover_fn(void *vc, int64_t b, int64_t e) {
    cover_ctx *c = vc;
    for (int64_t i = b; i < e; i++) __atomic_fetch_add(&c->hits[i], 1, __ATOMIC_RELAXED);
    int k = __atomic_fetch_add(&c->n_calls, 1, __ATOMIC_RELAXED);
    if (k < 64) c->begins[k] = b;
}

static void nested_fn(void *vc, int64_t b, int64_t e) {
    cover_ctx *c = vc;
    for (int64_t i = b; i < e; i++) {
        cover_ctx inner = {c->hits + i * 10, c->begins + 32, 0};
        vitq_parallel_for(10, cover_fn, &inner); /* runs inline in the task */
    }
}

TEST(ops_pool_covers_range_once) {
    int saved = vitq_threads_get();
    CHECK(saved >= 1);
    int hits[1000];
    int64_t begins[64];
    for (int t = 1; t <= 3; t++) {
        vitq_threads_set(t);
        CHECK(vitq_threads_get() == t);
        const int64_t sizes[] = {1, 2, 3, 7, 1000};
        for (int s = 0; s < 5; s++) {
            memset(hits, 0, sizeof hits);
            cover_ctx c = {hits, begins, 0};
            vitq_parallel_for(sizes[s], cover_fn, &c);
            int ok = 1;
            for (int64_t i = 0; i < sizes[s]; i++) ok &= hits[i] == 1;
            CHECK_MSG(ok, "threads %d n %lld: some index not hit exactly once", t, (long long)sizes[s]);
            int64_t expect = sizes[s] < t ? sizes[s] : t;
            CHECK_MSG(c.n_calls == expect, "threads %d n %lld: %d chunks, expected %lld", t, (long long)sizes[s],
                      c.n_calls, (long long)expect);
        }
        /* nested calls run inline and still cover everything */
        memset(hits, 0, sizeof hits);
        cover_ctx outer = {hits, begins, 0};
        vitq_parallel_for(100, nested_fn, &outer);
        int ok = 1;
        for (int i = 0; i < 1000; i++) ok &= hits[i] == 1;
        CHECK_MSG(ok, "threads %d: nested parallel_for missed or repeated an index", t);
    }
    vitq_parallel_for(0, cover_fn, NULL); /* n = 0: nothing called */
    vitq_threads_set(saved);
}

/* ---- linear ------------------------------------------------------------------------------- */

TEST(ops_linear_matches_naive) {
    const int64_t shapes[][3] = {{1, 5, 3}, {37, 29, 23}, {301, 64, 96}};
    for (int s = 0; s < 3; s++) {
        int64_t R = shapes[s][0], IC = shapes[s][1], OC = shapes[s][2];
        float *x = rand_buf(R * IC, 1.0f), *w = rand_buf(OC * IC, 0.3f), *b = rand_buf(OC, 1.0f);
        float *out = malloc((size_t)(R * OC) * sizeof(float)), *ref = malloc((size_t)(R * OC) * sizeof(float));
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            vitq_linear_forward(out, x, w, with_bias ? b : NULL, R, IC, OC);
            linear_naive(ref, x, w, with_bias ? b : NULL, R, IC, OC);
            CHECK_ALLCLOSE(out, ref, (long)(R * OC), 1e-5, 1e-5);
        }
        free(x), free(w), free(b), free(out), free(ref);
    }
}

TEST(ops_threads_1_vs_2_bitwise_elementwise_close_gemm) {
    int saved = vitq_threads_get();
    int64_t R = 256, IC = 96, OC = 192;
    float *x = rand_buf(R * IC, 1.0f), *w = rand_buf(OC * IC, 0.2f), *b = rand_buf(OC, 0.1f);
    float *o1 = malloc((size_t)(R * OC) * sizeof(float)), *o2 = malloc((size_t)(R * OC) * sizeof(float));
    vitq_threads_set(1);
    vitq_linear_forward(o1, x, w, b, R, IC, OC);
    vitq_threads_set(2);
    vitq_linear_forward(o2, x, w, b, R, IC, OC);
    CHECK_ALLCLOSE(o2, o1, (long)(R * OC), 1e-6, 1e-6);
    vitq_gelu_forward(o2, o1, R * OC);
    vitq_threads_set(1);
    vitq_gelu_forward(x, o1, R * IC); /* reuse x as scratch: first R*IC values */
    CHECK(memcmp(x, o2, (size_t)(R * IC) * sizeof(float)) == 0);
    vitq_threads_set(saved);
    free(x), free(w), free(b), free(o1), free(o2);
}

/* ---- layernorm ---------------------------------------------------------------------------- */

TEST(ops_layernorm_matches_naive) {
    int64_t R = 203, C = 96;
    float *x = rand_buf(R * C, 3.0f), *w = rand_buf(C, 1.0f), *b = rand_buf(C, 0.5f);
    for (int64_t i = 0; i < R * C; i++) x[i] += 2.0f; /* non-zero mean */
    float *out = malloc((size_t)(R * C) * sizeof(float)), *ref = malloc((size_t)(R * C) * sizeof(float));
    float *mean = malloc((size_t)R * sizeof(float)), *rstd = malloc((size_t)R * sizeof(float));
    float *mref = malloc((size_t)R * sizeof(float)), *sref = malloc((size_t)R * sizeof(float));
    vitq_layernorm_forward(out, mean, rstd, x, w, b, R, C, 1e-6f);
    for (int64_t r = 0; r < R; r++) {
        double m = 0, v = 0;
        for (int64_t i = 0; i < C; i++) m += x[r * C + i];
        m /= C;
        for (int64_t i = 0; i < C; i++) v += (x[r * C + i] - m) * (x[r * C + i] - m);
        v /= C;
        double s = 1.0 / sqrt(v + 1e-6);
        for (int64_t i = 0; i < C; i++) ref[r * C + i] = (float)((x[r * C + i] - m) * s * w[i] + b[i]);
        mref[r] = (float)m;
        sref[r] = (float)s;
    }
    CHECK_ALLCLOSE(out, ref, (long)(R * C), 1e-5, 1e-5);
    CHECK_ALLCLOSE(mean, mref, (long)R, 1e-5, 1e-6);
    CHECK_ALLCLOSE(rstd, sref, (long)R, 1e-5, 1e-6);
    free(x), free(w), free(b), free(out), free(ref), free(mean), free(rstd), free(mref), free(sref);
}

/* ---- elementwise -------------------------------------------------------------------------- */

/* ReLU forward and backward over vector lengths, bit for bit against x > 0 ? x : +0 (and dy where x > 0):
 * −0 and NaN give +0, in the vector loops as in the scalar tail. */
TEST(ops_relu_bits_over_vector_lengths) {
    enum { N = 103 };
    float x[N], y[N], d[N], dx[N];
    for (int i = 0; i < N; i++) x[i] = (float)(i % 7 - 3) * 0.75f, d[i] = (float)(i % 5) - 2.5f;
    x[5] = -0.0f, x[20] = NAN, x[33] = 0.0f, x[40] = -NAN, x[101] = -0.0f;
    vitq_relu_forward(y, x, N);
    vitq_relu_backward_to(dx, x, d, N);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        float want = x[i] > 0.0f ? x[i] : 0.0f, dwant = x[i] > 0.0f ? d[i] : 0.0f;
        bad += memcmp(&want, y + i, sizeof want) != 0 || memcmp(&dwant, dx + i, sizeof dwant) != 0;
    }
    CHECK_EQ(bad, 0);
}

TEST(ops_gelu_relu_add_values) {
    /* exact GELU x * Phi(x), values from erf in double precision */
    const float x[] = {-3.0f, -1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 2.0f, 5.0f};
    const float expect[] = {-0.00404969409f, -0.158655254f, -0.154268769f, 0.0f,
                            0.345731231f,    0.841344746f,  1.95449974f,   4.99999857f};
    float out[8], r[8], s[8];
    vitq_gelu_forward(out, x, 8);
    CHECK_ALLCLOSE(out, expect, 8, 2e-7, 1e-8);
    vitq_relu_forward(r, x, 8);
    for (int i = 0; i < 8; i++) CHECK(r[i] == (x[i] > 0 ? x[i] : 0.0f));
    vitq_add_forward(s, x, expect, 8);
    for (int i = 0; i < 8; i++) CHECK(s[i] == x[i] + expect[i]);
    /* a large, odd length through the threaded path, in place */
    int64_t n = 3 * 4096 * 5 + 17;
    float *a = rand_buf(n, 4.0f), *c = malloc((size_t)n * sizeof(float));
    memcpy(c, a, (size_t)n * sizeof(float));
    vitq_gelu_forward(c, c, n);
    /* bound: erf (libmvec or libm) within ~2 ulp of 1 (2.4e-7) absolute, times 0.5 |x|, plus rounding */
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double g = 0.5 * a[i] * (1.0 + erf(a[i] / sqrt(2.0)));
        double q = fabs(c[i] - g) / (1e-6 * fabs(g) + 1.2e-7 * fabs(a[i]) + 1e-12);
        worst = q > worst ? q : worst;
    }
    CHECK_MSG(worst <= 1.0, "threaded in-place GELU differs from erf in double: %.3g of the bound", worst);
    free(a), free(c);
}

/* The AVX-512 erf and exp (mvec16.c) against libmvec's 4-lane SSE4 erff and expf, bit for bit: every
 * 256th bit pattern of all 2^32 (16.8 million: every exponent, both signs, NaNs and infinities; exp's
 * rare lanes through the scalar expf), every grid point 1/128 of erf's table with its neighbours, and GELU's
 * forward over odd lengths (the masked tail) against the SSE4 erf. Skipped where the CPU has no AVX-512
 * (the SSE4 path is then the only one). */
TEST(ops_mvec16_same_bits_as_sse4) {
    enum { N = 1 << 16 };
    float *x = calloc(3 * N, sizeof(float)), *a = x + N, *b = a + N;
    if (!x) return;
    if (vitq_erf_avx512(x, a, 0) != 0) {
        free(x);
        test_skip("no AVX-512 here: GELU keeps the SSE4 erf");
    }
    CHECK(vitq_mvec16_ready()); /* its self-check passed: GELU uses it */
    int64_t differ = 0;
    uint32_t first = 0;
    for (uint64_t base = 0; base < (1ull << 32); base += 256ull * N) {
        for (uint32_t k = 0; k < N; k++) {
            uint32_t u = (uint32_t)(base + 256ull * k + (k & 255));
            memcpy(&x[k], &u, sizeof u);
        }
        for (int f = 0; f < 2; f++) {
            CHECK_EQ(f ? vitq_exp_avx512(x, a, N) : vitq_erf_avx512(x, a, N), 0);
            (f ? vitq_exp_sse : vitq_erf_sse)(x, b, N);
            for (int k = 0; k < N; k++)
                if (memcmp(&a[k], &b[k], sizeof(float)) && !differ++) memcpy(&first, &x[k], sizeof first);
        }
    }
    CHECK_MSG(differ == 0, "%lld inputs differ, the first 0x%08x", (long long)differ, first);
    int n = 0;
    for (int i = 0; i < 504; i++)
        for (int sgn = -1; sgn <= 1; sgn += 2) {
            float g = sgn * (float)i / 128.0f;
            x[n++] = g, x[n++] = nextafterf(g, -INFINITY), x[n++] = nextafterf(g, INFINITY);
        }
    CHECK_EQ(vitq_erf_avx512(x, a, n), 0);
    vitq_erf_sse(x, b, n);
    CHECK(!memcmp(a, b, sizeof(float) * (size_t)n));
    /* GELU over lengths 1..40 (16-lane blocks and masked tails) against 0.5x(1 + erf(x/sqrt 2)) on SSE4 */
    for (int len = 1; len <= 40; len++) {
        float y[40], t[40], e[40];
        for (int i = 0; i < len; i++) x[i] = (float)(i * 37 % 23 - 11) * 0.37f, t[i] = x[i] * (float)M_SQRT1_2;
        vitq_gelu_forward(y, x, len);
        vitq_erf_sse(t, e, len);
        for (int i = 0; i < len; i++) e[i] = 0.5f * x[i] * (1.0f + e[i]);
        CHECK_MSG(!memcmp(y, e, sizeof(float) * (size_t)len), "GELU over %d values", len);
    }
    free(x);
}

/* The softmax of rows of 1..70 values (16-lane blocks and masked tails of the AVX-512 exp) against the
 * arithmetic it always had: the max, exp(max(x − max, −87)) through the SSE4 expf, four partial sums (lane
 * k: the values k, k + 4, ... in order) added as (s0 + s1) + (s2 + s3), then the product by 1 / sum. */
TEST(ops_softmax_same_bits_as_sse4_sums) {
    float probe = 0;
    if (vitq_exp_avx512(&probe, &probe, 0) != 0) test_skip("no AVX-512 here: the softmax keeps the SSE4 exp");
    CHECK(vitq_mvec16_ready()); /* its self-check passed: the softmax uses it */
    for (int n = 1; n <= 70; n++) {
        float row[70], want[70], sh[70];
        for (int i = 0; i < n; i++) row[i] = (float)((i * 29 + n) % 31 - 15) * 0.61f;
        row[n / 2] = -200.0f; /* below the clamp */
        float mx = -FLT_MAX;
        for (int i = 0; i < n; i++) mx = row[i] > mx ? row[i] : mx;
        for (int i = 0; i < n; i++) sh[i] = row[i] - mx > -87.0f ? row[i] - mx : -87.0f;
        vitq_exp_sse(sh, want, n);
        float s4[4] = {0, 0, 0, 0};
        for (int i = 0; i < n; i++) s4[i % 4] += want[i];
        const float inv = 1.0f / ((s4[0] + s4[1]) + (s4[2] + s4[3]));
        for (int i = 0; i < n; i++) want[i] *= inv;
        vitq_softmax_rows(row, 1, n);
        CHECK_MSG(!memcmp(row, want, sizeof(float) * (size_t)n), "softmax over %d values", n);
    }
}

/* ---- qkv split and attention -------------------------------------------------------------- */

TEST(ops_qkv_split_layout) {
    int64_t B = 2, N = 5, H = 3, D = 4, C = H * D;
    float *qkv = malloc((size_t)(B * N * 3 * C) * sizeof(float)), *qkvh = malloc((size_t)(3 * B * N * C) * sizeof(float));
    for (int64_t i = 0; i < B * N * 3 * C; i++) qkv[i] = (float)i;
    vitq_qkv_split_forward(qkvh, qkv, B, N, C, H);
    int ok = 1;
    for (int64_t s = 0; s < 3; s++)
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t n = 0; n < N; n++)
                    for (int64_t d = 0; d < D; d++) /* timm: reshape(B,N,3,H,D).permute(2,0,3,1,4) */
                        ok &= qkvh[(((s * B + b) * H + h) * N + n) * D + d] ==
                              qkv[(((b * N + n) * 3 + s) * H + h) * D + d];
    CHECK(ok);
    free(qkv), free(qkvh);
}

TEST(ops_attention_matches_naive) {
    const int64_t shapes[][4] = {{1, 1, 3, 2}, {2, 3, 50, 32}, {3, 2, 197, 16}};
    for (int s = 0; s < 3; s++) {
        int64_t B = shapes[s][0], H = shapes[s][1], N = shapes[s][2], D = shapes[s][3], C = H * D;
        int64_t n = B * H * N * D;
        float *q = rand_buf(n, 2.0f), *k = rand_buf(n, 2.0f), *v = rand_buf(n, 1.0f);
        float *att = malloc((size_t)(B * H * N * N) * sizeof(float)), *aref = malloc((size_t)(B * H * N * N) * sizeof(float));
        float *out = malloc((size_t)(B * N * C) * sizeof(float)), *oref = malloc((size_t)(B * N * C) * sizeof(float));
        float scale = 1.0f / sqrtf((float)D);
        vitq_attn_softmax_forward(att, q, k, B, H, N, D, scale);
        vitq_attn_value_forward(out, att, v, B, H, N, D);
        attention_naive(aref, oref, q, k, v, B, H, N, D, scale);
        CHECK_ALLCLOSE(att, aref, (long)(B * H * N * N), 1e-4, 1e-7);
        CHECK_ALLCLOSE(out, oref, (long)(B * N * C), 1e-4, 1e-6);
        double rowsum = 0;
        for (int64_t j = 0; j < N; j++) rowsum += att[j];
        CHECK_NEAR(rowsum, 1.0, 1e-5);
        free(q), free(k), free(v), free(att), free(aref), free(out), free(oref);
    }
    /* huge logits stay finite (max subtraction) */
    float q2[2] = {100.0f, -100.0f}, k2[2] = {100.0f, 0.0f}, a2[4];
    vitq_attn_softmax_forward(a2, q2, k2, 1, 1, 2, 1, 1.0f);
    CHECK_NEAR(a2[0], 1.0, 1e-7);
    CHECK_NEAR(a2[1], 0.0, 1e-7);
    CHECK_NEAR(a2[2], 0.0, 1e-7);
    CHECK_NEAR(a2[3], 1.0, 1e-7);
}

/* ---- patch embedding ---------------------------------------------------------------------- */

TEST(ops_patchify_is_strided_conv) {
    int64_t B = 2, Cin = 3, S = 12, P = 4, G = S / P, Np = G * G, C = 5, pd = Cin * P * P;
    float *img = rand_buf(B * Cin * S * S, 1.0f), *w = rand_buf(C * pd, 0.5f), *bias = rand_buf(C, 0.5f);
    float *patches = malloc((size_t)(B * Np * pd) * sizeof(float)), *out = malloc((size_t)(B * Np * C) * sizeof(float));
    vitq_patchify_forward(patches, img, B, Cin, S, P);
    vitq_linear_forward(out, patches, w, bias, B * Np, pd, C);
    int ok = 1;
    for (int64_t b = 0; b < B; b++) /* Conv2d(Cin, C, P, stride P) then flatten(2).transpose(1, 2) */
        for (int64_t gy = 0; gy < G; gy++)
            for (int64_t gx = 0; gx < G; gx++)
                for (int64_t o = 0; o < C; o++) {
                    double s = bias[o];
                    for (int64_t c = 0; c < Cin; c++)
                        for (int64_t py = 0; py < P; py++)
                            for (int64_t px = 0; px < P; px++)
                                s += (double)w[((o * Cin + c) * P + py) * P + px] *
                                     img[((b * Cin + c) * S + gy * P + py) * S + gx * P + px];
                    ok &= fabs(out[(b * Np + gy * G + gx) * C + o] - s) < 1e-5;
                }
    CHECK(ok);
    free(img), free(w), free(bias), free(patches), free(out);
}

TEST(ops_embed_cls_pos) {
    int64_t B = 2, N = 4, C = 3;
    float patch_out[2 * 3 * 3], cls[3] = {10, 20, 30}, pos[4 * 3], x[2 * 4 * 3];
    for (int i = 0; i < 18; i++) patch_out[i] = (float)i;
    for (int i = 0; i < 12; i++) pos[i] = 0.5f * (float)i;
    vitq_embed_forward(x, patch_out, cls, pos, B, N, C);
    for (int64_t b = 0; b < B; b++)
        for (int64_t n = 0; n < N; n++)
            for (int64_t c = 0; c < C; c++) {
                float src = n == 0 ? cls[c] : patch_out[(b * (N - 1) + n - 1) * C + c];
                CHECK(x[(b * N + n) * C + c] == src + pos[n * C + c]);
            }
}

/* ---- cross-entropy ------------------------------------------------------------------------ */

TEST(ops_crossentropy_label_smoothing) {
    /* logits [1,2,3], label 2: lse = log(e + e^2 + e^3) = 3.4076059644; nll = lse - 3;
     * mean_k(-log p_k) = lse - 2; eps 0.1: 0.9 * 0.4076059644 + 0.1 * 1.4076059644 = 0.5076059644.
     * Row 2: logits [0,0,0], label 0: loss = log 3 for any eps. */
    float logits[6] = {1, 2, 3, 0, 0, 0}, probs[6];
    int labels[2] = {2, 0};
    float l = vitq_crossentropy_forward(probs, logits, labels, 1, 3, 0.1f);
    CHECK_NEAR(l, 0.5076059644, 1e-6);
    l = vitq_crossentropy_forward(probs, logits, labels, 1, 3, 0.0f);
    CHECK_NEAR(l, 0.4076059644, 1e-6);
    l = vitq_crossentropy_forward(probs, logits, labels, 2, 3, 0.1f);
    CHECK_NEAR(l, (0.5076059644 + log(3.0)) / 2, 1e-6);
    CHECK_NEAR(probs[0], exp(1 - 3.4076059644), 1e-7);
    CHECK_NEAR(probs[2], exp(3 - 3.4076059644), 1e-7);
    CHECK_NEAR(probs[4], 1.0 / 3.0, 1e-7);
    int bad[1] = {3};
    CHECK(isnan(vitq_crossentropy_forward(probs, logits, bad, 1, 3, 0.1f)));
}
