/* ops_backward.c — the backward kernel of every forward op in ops.c, llm.c style: gradients first,
 * then the upstream gradient, then what forward cached, then the weights, then the dimensions. Every
 * kernel ACCUMULATES (+=) into its outputs, so residual branches can share one gradient buffer. The
 * *_to variants WRITE their activation gradients instead (parameter gradients still accumulate): the
 * model's backward uses them for buffers with one writer, which saves zeroing ~45 MB per block and step
 * at batch 128. Both give the same bits (x + 0 == x; OpenBLAS scales C by beta before accumulating).
 *
 * Dimensions: B batch, N tokens (class token included), C width, H heads, D head width, F MLP width,
 * K classes, R rows (= B*N for token-wise ops), IC/OC linear input/output width.
 *
 * Threading: work is split over the vitq pool (vitq_parallel_for) by OUTPUT element ranges only — every
 * gradient element is reduced by exactly one thread in a fixed order — so results are bit-identical
 * for a given thread count (and in fact independent of it except for sgemm's blocking). Small problems
 * run on the calling thread. GEMMs are OpenBLAS sgemm (kept single-threaded by pool.c).
 *
 * Mirrors: PyTorch autograd for nn.Linear, nn.LayerNorm, F.gelu (exact), F.relu, softmax attention as
 * timm's Attention computes it, and F.cross_entropy(label_smoothing=eps, reduction='mean').
 * Does not: compute the gradient of the image (patchify has no backward; nothing needs it). */
#include "kernels/kernels.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Linear: out (R,OC) = inp (R,IC) · w (OC,IC)^T + bias (OC)
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    float *dinp, *dw, *dbias;
    const float *dout, *inp, *w;
    int64_t R, IC, OC;
    float beta; /* 1: dinp accumulates, 0: dinp is written */
} linear_ctx;

/* dinp rows [r0, r1) += dout[r0:r1] (rows, OC) · w (OC, IC) */
static void linear_dinp_rows(void *vctx, int64_t r0, int64_t r1) {
    const linear_ctx *c = vctx;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(r1 - r0), (int)c->IC, (int)c->OC, 1.0f,
                c->dout + r0 * c->OC, (int)c->OC, c->w, (int)c->IC, c->beta, c->dinp + r0 * c->IC, (int)c->IC);
}

/* db[o0:o1] += column sums of dout (R, OC), each column summed over rows in order. */
VITQ_VECTORIZE static void bias_grad(float *restrict db, const float *restrict dout, int64_t R, int64_t OC,
                                     int64_t o0, int64_t o1) {
    for (int64_t r = 0; r < R; r++) {
        const float *restrict row = dout + r * OC;
        for (int64_t o = o0; o < o1; o++) db[o] += row[o];
    }
}

/* dw rows [o0, o1) += dout[:, o0:o1]^T · inp; dbias[o0:o1] += column sums of dout. */
static void linear_dw_rows(void *vctx, int64_t o0, int64_t o1) {
    const linear_ctx *c = vctx;
    if (c->dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(o1 - o0), (int)c->IC, (int)c->R, 1.0f,
                    c->dout + o0, (int)c->OC, c->inp, (int)c->IC, 1.0f, c->dw + o0 * c->IC, (int)c->IC);
    if (c->dbias) bias_grad(c->dbias, c->dout, c->R, c->OC, o0, o1);
}

/* dw columns [i0, i1) += dout^T · inp[:, i0:i1]. */
static void linear_dw_cols(void *vctx, int64_t i0, int64_t i1) {
    const linear_ctx *c = vctx;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)c->OC, (int)(i1 - i0), (int)c->R, 1.0f, c->dout,
                (int)c->OC, c->inp + i0, (int)c->IC, 1.0f, c->dw + i0, (int)c->IC);
}

static void linear_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                            const float *w, int64_t R, int64_t IC, int64_t OC, float beta) {
    // dout (R,OC), inp (R,IC), w (OC,IC); dinp (R,IC), dw (OC,IC), dbias (OC)
    if (R <= 0) return;
    linear_ctx c = {dinp, dw, dbias, dout, inp, w, R, IC, OC, beta};
    if (dinp) vitq_parallel_for_work(R, IC * OC, linear_dinp_rows, &c);
    if (dw && IC > OC) {
        // Split dw over its longer side: each thread packs all of the operand along the other side, so
        // packing the narrower one (dout when IC > OC, e.g. fc2) costs least. At one thread both are one sgemm.
        vitq_parallel_for_work(IC, R * OC, linear_dw_cols, &c);
        c.dw = NULL;
    }
    if (c.dw || dbias) vitq_parallel_for_work(OC, R * IC, linear_dw_rows, &c);
}

void vitq_linear_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                          const float *w, int64_t R, int64_t IC, int64_t OC) {
    linear_backward(dinp, dw, dbias, dout, inp, w, R, IC, OC, 1.0f);
}

void vitq_linear_backward_to(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                             const float *w, int64_t R, int64_t IC, int64_t OC) {
    linear_backward(dinp, dw, dbias, dout, inp, w, R, IC, OC, 0.0f);
}

/* ---------------------------------------------------------------------------------------------
 * LayerNorm over the last dim: out = (x - mean) * rstd * w + b
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    float *dinp, *dw, *db;
    const float *dout, *inp, *w, *mean, *rstd;
    int64_t R, C;
} ln_ctx;

/* Rows [r, r + K) of the two reductions of LayerNorm's input gradient, mean(dnorm) and mean(dnorm · norm)
 * with dnorm = w · dy: each row's sums run over i in order, as one row alone would, but K rows at once so
 * the K·2 dependent add chains overlap (one chain is latency-bound: 4 cycles an add). */
static inline __attribute__((always_inline)) void ln_dinp_sums(const ln_ctx *c, int64_t r, int K, float *m1,
                                                               float *m2) {
    const int64_t C = c->C;
    float s1[4] = {0}, s2[4] = {0};
    for (int64_t i = 0; i < C; i++)
        for (int k = 0; k < K; k++) {
            const int64_t j = (r + k) * C + i;
            const float norm = (c->inp[j] - c->mean[r + k]) * c->rstd[r + k], dnorm = c->w[i] * c->dout[j];
            s1[k] += dnorm;
            s2[k] += dnorm * norm;
        }
    for (int k = 0; k < K; k++) m1[k] = s1[k] / (float)C, m2[k] = s2[k] / (float)C;
}

VITQ_VECTORIZE static void ln_dinp_rows(void *vctx, int64_t r0, int64_t r1) {
    const ln_ctx *c = vctx;
    const int64_t C = c->C;
    for (int64_t r = r0; r < r1; r += 4) {
        const int K = r1 - r < 4 ? (int)(r1 - r) : 4;
        float m1[4], m2[4]; /* dnorm_mean, dnorm_norm_mean per row */
        if (K == 4) ln_dinp_sums(c, r, 4, m1, m2); /* a constant K: the compiler unrolls over the rows */
        else ln_dinp_sums(c, r, K, m1, m2);
        for (int k = 0; k < K; k++) {
            const float *x = c->inp + (r + k) * C, *dy = c->dout + (r + k) * C, *w = c->w;
            float *dx = c->dinp + (r + k) * C; /* no restrict: O3 checks aliasing at run time */
            const float mu = c->mean[r + k], rs = c->rstd[r + k];
            for (int64_t i = 0; i < C; i++) {
                const float norm = (x[i] - mu) * rs, dnorm = w[i] * dy[i];
                dx[i] += (dnorm - m1[k] - norm * m2[k]) * rs;
            }
        }
    }
}

/* dw[c0:c1] += Σ_r dy · norm and db[c0:c1] += Σ_r dy, over rows in order; has_w / has_b are constants at
 * every call, so each variant is a straight loop. */
static inline __attribute__((always_inline)) void ln_dparam_loop(const ln_ctx *c, int64_t c0, int64_t c1, int has_w,
                                                                 int has_b) {
    const int64_t C = c->C;
    float *restrict dw = c->dw, *restrict db = c->db;
    for (int64_t r = 0; r < c->R; r++) {
        const float *restrict x = c->inp + r * C, *restrict dy = c->dout + r * C;
        const float mu = c->mean[r], rs = c->rstd[r];
        for (int64_t i = c0; i < c1; i++) {
            if (has_w) dw[i] += dy[i] * ((x[i] - mu) * rs);
            if (has_b) db[i] += dy[i];
        }
    }
}

VITQ_VECTORIZE static void ln_dparam_cols(void *vctx, int64_t c0, int64_t c1) {
    const ln_ctx *c = vctx;
    if (c->dw && c->db) ln_dparam_loop(c, c0, c1, 1, 1);
    else if (c->dw) ln_dparam_loop(c, c0, c1, 1, 0);
    else ln_dparam_loop(c, c0, c1, 0, 1);
}

void vitq_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                             const float *w, const float *mean, const float *rstd, int64_t R, int64_t C) {
    // dout, inp, dinp (R,C); w, dw, db (C); mean, rstd (R) cached by the forward
    ln_ctx c = {dinp, dw, db, dout, inp, w, mean, rstd, R, C};
    if (dinp) vitq_parallel_for_work(R, 8 * C, ln_dinp_rows, &c);
    if (dw || db) vitq_parallel_for_work(C, 4 * R, ln_dparam_cols, &c);
}

/* ---------------------------------------------------------------------------------------------
 * Element-wise activations
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    float *dinp;
    const float *inp, *dout;
} elt_ctx;

/* Expands to the two range functions of an element-wise backward: NAME_add (dinp[i] += g) and NAME_set
 * (dinp[i] = g), where g is the expression GRAD of x = inp[i] and dy = dout[i]. Two loops rather than a
 * flag, so each stays a straight vectorisable loop and the written buffer is never read. */
#define ELTWISE_BACKWARD(NAME, ATTR, GRAD)                                                                   \
    ATTR static void NAME##_add(void *vctx, int64_t i0, int64_t i1) {                                       \
        const elt_ctx *c = vctx;                                                                            \
        const float *restrict inp = c->inp, *restrict dout = c->dout;                                       \
        float *restrict dinp = c->dinp;                                                                     \
        for (int64_t i = i0; i < i1; i++) dinp[i] += GRAD(inp[i], dout[i]);                                 \
    }                                                                                                       \
    ATTR static void NAME##_set(void *vctx, int64_t i0, int64_t i1) {                                       \
        const elt_ctx *c = vctx;                                                                            \
        const float *restrict inp = c->inp, *restrict dout = c->dout;                                       \
        float *restrict dinp = c->dinp;                                                                     \
        for (int64_t i = i0; i < i1; i++) dinp[i] = GRAD(inp[i], dout[i]);                                  \
    }

/* exp(x) for -87 < x <= 0 (Cephes expf: x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial, 2^n through the
 * exponent bits); relative error < 2 ulp. Straight-line code, so the GELU loop below vectorises. */
static inline float exp_neg(float x) {
    int32_t ni = (int32_t)(x * 1.44269504088896341f - 0.5f); // round to nearest for x <= 0 (truncation)
    float n = (float)ni;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = (ni + 127) << 23;
    float scale;
    __builtin_memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* d/dx [x * Phi(x)] * dy = (Phi(x) + x * phi(x)) * dy. Both from one exp: e = exp(-x^2/2), phi = e / sqrt(2 pi),
 * and erfc(|z|) = poly(t) * e with z = x / sqrt 2 (Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7), so
 * Phi(x) = 1 - erfc(z)/2 for x >= 0 and erfc(-z)/2 below: the exact-erf GELU's derivative to float
 * precision, without a libm erff call per element. |x| is clamped to 13 (integer compare of the bits, no
 * branch) where e < 1e-36: beyond it Phi is 0 or 1 and x * phi is 0 in float. */
static inline float gelu_grad(float x, float dy) {
    const float inv_sqrt2 = 0.70710678118654752f, inv_sqrt2pi = 0.39894228040143268f;
    int32_t ab;
    float ax = __builtin_fabsf(x);
    __builtin_memcpy(&ab, &ax, sizeof ab);
    ab = ab < 0x41500000 ? ab : 0x41500000; // 13.0f
    __builtin_memcpy(&ax, &ab, sizeof ax);
    float e = exp_neg(-0.5f * ax * ax);
    float t = 1.0f / (1.0f + 0.3275911f * inv_sqrt2 * ax);
    float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    float cdf = 0.5f + __builtin_copysignf(0.5f - 0.5f * poly * e, x);
    return dy * (cdf + x * inv_sqrt2pi * e);
}

static inline float relu_grad(float x, float dy) { return x > 0.0f ? dy : 0.0f; }

/* Vectorised (ReLU's select would otherwise stay a branch that mispredicts on half the values). */
ELTWISE_BACKWARD(gelu, VITQ_VECTORIZE, gelu_grad)
ELTWISE_BACKWARD(relu, VITQ_VECTORIZE, relu_grad)

void vitq_gelu_backward(float *dinp, const float *inp, const float *dout, int64_t n) {
    elt_ctx c = {dinp, inp, dout};
    vitq_parallel_for_work(n, 32, gelu_add, &c);
}

void vitq_gelu_backward_to(float *dinp, const float *inp, const float *dout, int64_t n) {
    elt_ctx c = {dinp, inp, dout};
    vitq_parallel_for_work(n, 32, gelu_set, &c);
}

void vitq_relu_backward(float *dinp, const float *inp, const float *dout, int64_t n) {
    elt_ctx c = {dinp, inp, dout};
    vitq_parallel_for_work(n, 2, relu_add, &c);
}

void vitq_relu_backward_to(float *dinp, const float *inp, const float *dout, int64_t n) {
    elt_ctx c = {dinp, inp, dout};
    vitq_parallel_for_work(n, 2, relu_set, &c);
}

/* ---------------------------------------------------------------------------------------------
 * qkv split: qkv (B,N,3C) read as (B,N,3,H,D) -> qkvh (3,B,H,N,D)
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    float *dqkv;
    const float *dqkvh;
    int64_t B, N, C, H;
    int accumulate;
} split_ctx;

VITQ_VECTORIZE static void split_rows(void *vctx, int64_t r0, int64_t r1) {
    const split_ctx *c = vctx;
    const int64_t B = c->B, N = c->N, C = c->C, H = c->H, D = C / H;
    for (int64_t r = r0; r < r1; r++) { // r = b*N + n
        int64_t b = r / N, n = r % N;
        float *dst = c->dqkv + r * 3 * C;
        for (int64_t s = 0; s < 3; s++)
            for (int64_t h = 0; h < H; h++) {
                const float *src = c->dqkvh + (((s * B + b) * H + h) * N + n) * D;
                float *d = dst + (s * H + h) * D;
                if (c->accumulate)
                    for (int64_t i = 0; i < D; i++) d[i] += src[i];
                else
                    memcpy(d, src, sizeof(float) * (size_t)D);
            }
    }
}

void vitq_qkv_split_backward(float *dqkv, const float *dqkvh, int64_t B, int64_t N, int64_t C, int64_t H) {
    split_ctx c = {dqkv, dqkvh, B, N, C, H, 1};
    vitq_parallel_for_work(B * N, 3 * C, split_rows, &c);
}

void vitq_qkv_split_backward_to(float *dqkv, const float *dqkvh, int64_t B, int64_t N, int64_t C, int64_t H) {
    split_ctx c = {dqkv, dqkvh, B, N, C, H, 0};
    vitq_parallel_for_work(B * N, 3 * C, split_rows, &c);
}

/* ---------------------------------------------------------------------------------------------
 * Attention: att = softmax(scale * q k^T) per (b,h); out = att · v with heads merged.
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    float *dq, *dk;
    const float *datt, *att, *q, *k;
    int64_t N, D;
    float scale, beta; /* beta 1: dq, dk accumulate; 0: written */
} smax_ctx;

/* dp rows [i, i + K) of one head: dp[i,j] = scale · a[i,j] · (da[i,j] − Σ_j' a[i,j'] da[i,j']), each row's sum
 * over j in order, K rows at once so their add chains overlap. */
static inline __attribute__((always_inline)) void smax_rows(float *dp, const float *a, const float *da, int64_t N,
                                                            int K, float scale) {
    float dot[4] = {0};
    for (int64_t j = 0; j < N; j++)
        for (int k = 0; k < K; k++) dot[k] += a[k * N + j] * da[k * N + j];
    for (int k = 0; k < K; k++)
        for (int64_t j = 0; j < N; j++) dp[k * N + j] = scale * a[k * N + j] * (da[k * N + j] - dot[k]);
}

VITQ_VECTORIZE static void smax_heads(void *vctx, int64_t bh0, int64_t bh1) {
    const smax_ctx *c = vctx;
    const int64_t N = c->N, D = c->D;
    float *dpre = malloc(sizeof(float) * (size_t)(N * N)); // one scratch per chunk, not per head
    if (!dpre) { /* cannot happen in practice; then this chunk adds nothing (and *_to writes zeros) */
        if (c->beta == 0.0f) {
            memset(c->dq + bh0 * N * D, 0, sizeof(float) * (size_t)((bh1 - bh0) * N * D));
            memset(c->dk + bh0 * N * D, 0, sizeof(float) * (size_t)((bh1 - bh0) * N * D));
        }
        return;
    }
    for (int64_t bh = bh0; bh < bh1; bh++) {
        const float *A = c->att + bh * N * N, *dA = c->datt + bh * N * N;
        // softmax backward: dpre[i,j] = att[i,j] * (datt[i,j] - sum_j' att[i,j'] datt[i,j']), times scale
        for (int64_t i = 0; i < N; i += 4) {
            if (N - i >= 4) smax_rows(dpre + i * N, A + i * N, dA + i * N, N, 4, c->scale);
            else smax_rows(dpre + i * N, A + i * N, dA + i * N, N, (int)(N - i), c->scale);
        }
        const float *q = c->q + bh * N * D, *k = c->k + bh * N * D;
        // dq (N,D) += dpre (N,N) · k (N,D);  dk (N,D) += dpre^T · q
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)D, (int)N, 1.0f, dpre, (int)N, k,
                    (int)D, c->beta, c->dq + bh * N * D, (int)D);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)N, (int)D, (int)N, 1.0f, dpre, (int)N, q,
                    (int)D, c->beta, c->dk + bh * N * D, (int)D);
    }
    free(dpre);
}

static void attn_softmax_backward(float *dq, float *dk, const float *datt, const float *att, const float *q,
                                  const float *k, int64_t B, int64_t H, int64_t N, int64_t D, float scale,
                                  float beta) {
    // datt, att (B,H,N,N); q, k, dq, dk (B,H,N,D)
    smax_ctx c = {dq, dk, datt, att, q, k, N, D, scale, beta};
    vitq_parallel_for_work(B * H, N * N * (2 * D + 4), smax_heads, &c);
}

void vitq_attn_softmax_backward(float *dq, float *dk, const float *datt, const float *att, const float *q,
                                const float *k, int64_t B, int64_t H, int64_t N, int64_t D, float scale) {
    attn_softmax_backward(dq, dk, datt, att, q, k, B, H, N, D, scale, 1.0f);
}

void vitq_attn_softmax_backward_to(float *dq, float *dk, const float *datt, const float *att, const float *q,
                                   const float *k, int64_t B, int64_t H, int64_t N, int64_t D, float scale) {
    attn_softmax_backward(dq, dk, datt, att, q, k, B, H, N, D, scale, 0.0f);
}

typedef struct {
    float *datt, *dv;
    const float *dout, *att, *v;
    int64_t H, N, D;
    float beta; /* 1: datt, dv accumulate; 0: written */
} av_ctx;

static void av_heads(void *vctx, int64_t bh0, int64_t bh1) {
    const av_ctx *c = vctx;
    const int64_t H = c->H, N = c->N, D = c->D, C = H * D;
    for (int64_t bh = bh0; bh < bh1; bh++) {
        int64_t b = bh / H, h = bh % H;
        const float *dy = c->dout + b * N * C + h * D; // (N,D) with row stride C
        const float *v = c->v + bh * N * D, *a = c->att + bh * N * N;
        // datt (N,N) += dy (N,D) · v^T;  dv (N,D) += att^T (N,N) · dy
        if (c->datt)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)N, (int)D, 1.0f, dy, (int)C, v,
                        (int)D, c->beta, c->datt + bh * N * N, (int)N);
        if (c->dv)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)N, (int)D, (int)N, 1.0f, a, (int)N, dy,
                        (int)C, c->beta, c->dv + bh * N * D, (int)D);
    }
}

static void attn_value_backward(float *datt, float *dv, const float *dout, const float *att, const float *v,
                                int64_t B, int64_t H, int64_t N, int64_t D, float beta) {
    // dout (B,N,H*D) heads merged; att, datt (B,H,N,N); v, dv (B,H,N,D)
    av_ctx c = {datt, dv, dout, att, v, H, N, D, beta};
    vitq_parallel_for_work(B * H, 4 * N * N * D, av_heads, &c);
}

void vitq_attn_value_backward(float *datt, float *dv, const float *dout, const float *att, const float *v,
                              int64_t B, int64_t H, int64_t N, int64_t D) {
    attn_value_backward(datt, dv, dout, att, v, B, H, N, D, 1.0f);
}

void vitq_attn_value_backward_to(float *datt, float *dv, const float *dout, const float *att, const float *v,
                                 int64_t B, int64_t H, int64_t N, int64_t D) {
    attn_value_backward(datt, dv, dout, att, v, B, H, N, D, 0.0f);
}

/* ---------------------------------------------------------------------------------------------
 * Embedding: x[b,0] = cls + pos[0]; x[b,1+i] = patch_out[b,i] + pos[1+i]
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    float *dpatch, *dpos;
    const float *dx;
    int64_t B, N, C;
} embed_ctx;

static void embed_patch_rows(void *vctx, int64_t b0, int64_t b1) {
    const embed_ctx *c = vctx;
    const int64_t N = c->N, C = c->C;
    for (int64_t b = b0; b < b1; b++) {
        const float *src = c->dx + (b * N + 1) * C;
        float *dst = c->dpatch + b * (N - 1) * C;
        for (int64_t i = 0; i < (N - 1) * C; i++) dst[i] += src[i];
    }
}

static void embed_pos_rows(void *vctx, int64_t n0, int64_t n1) {
    const embed_ctx *c = vctx;
    const int64_t N = c->N, C = c->C;
    for (int64_t n = n0; n < n1; n++)
        for (int64_t b = 0; b < c->B; b++) {
            const float *src = c->dx + (b * N + n) * C;
            for (int64_t i = 0; i < C; i++) c->dpos[n * C + i] += src[i];
        }
}

void vitq_embed_backward(float *dpatch_out, float *dcls, float *dpos, const float *dx, int64_t B, int64_t N,
                         int64_t C) {
    // dx (B,N,C); dpatch_out (B,N-1,C); dcls (C); dpos (N,C)
    embed_ctx c = {dpatch_out, dpos, dx, B, N, C};
    if (dpatch_out) vitq_parallel_for_work(B, (N - 1) * C, embed_patch_rows, &c);
    if (dpos) vitq_parallel_for_work(N, B * C, embed_pos_rows, &c);
    if (dcls)
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < C; i++) dcls[i] += dx[b * N * C + i];
}

/* ---------------------------------------------------------------------------------------------
 * Cross-entropy with label smoothing (PyTorch's definition): target q = (1-eps) onehot(y) + eps/K,
 * loss = mean_b sum_k -q_k log p_k, so dloss/dlogits = (p - q) / B.
 * ------------------------------------------------------------------------------------------- */
void vitq_crossentropy_backward(float *dlogits, const float *probs, const int *labels, int64_t B, int64_t K,
                                float smoothing) {
    // probs, dlogits (B,K); labels (B)
    const float inv_b = 1.0f / (float)B, off = smoothing / (float)K;
    for (int64_t b = 0; b < B; b++) {
        const float *p = probs + b * K;
        float *d = dlogits + b * K;
        for (int64_t k = 0; k < K; k++) {
            float q = off + (k == labels[b] ? 1.0f - smoothing : 0.0f);
            d[k] += (p[k] - q) * inv_b;
        }
    }
}
