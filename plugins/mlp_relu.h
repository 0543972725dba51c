/* mlp_relu.h — the arithmetic of the mlp_relu pass (APHQ-ViT's MLP reconstruction, specs/aphq-vit.md §4;
 * specs/ALGORITHMS.md §4), header-only so that tests/test_mlp_relu.c checks it directly: the clamp bound u (the
 * nearest-rank percentile of the strictly positive post-GELU values), and one training step of an MLP
 * fc2(ReLU(fc1 x)) against the teacher's output t with the two-term loss
 *
 *     L = (1/10)·mean_{b,c} Σ_n H[n,c]·(y1 − t)²  +  λ·(1/10)·mean_{b,c} Σ_n H[n,c]·(y2 − t)²
 *     y1 = fc2(relu(fc1 x)),  y2 = fc2(clamp(relu(fc1 x), 0, u))
 *
 * (sum over tokens n, mean over the batch b and the output channels c: the reference's
 * `(H·(y − t)²).sum(1).mean() / 10`; λ = 2 by default), its gradient with respect to fc1's and fc2's weights
 * and biases (as torch: relu' = 1[h > 0], clamp' = 1[0 ≤ v ≤ u], so y2's path passes where 0 < h ≤ u).
 * Shapes, row-major: x (R, C) with R = B·N rows (B samples of N tokens), fc1 W1 (F, C) b1 (F), fc2
 * W2 (C, F) b2 (C); t, y (R, C). Sums in double in a fixed order; the GEMMs through the caller's gemm (the
 * session's OpenBLAS, or a naive one in tests). */
#ifndef MLP_RELU_H
#define MLP_RELU_H

#include "vectorize.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* C (M,N) = alpha·op(A)·op(B) + beta·C, row-major (vitq_session_api.gemm's signature). */
typedef void (*mr_gemm_fn)(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                           const float *B, float beta, float *C);

#define MR_LOSS_SCALE 0.1 /* the reference's overall /10 (§4) */

/* ---- the clamp bound (§4, oracle O11; quirk 19) ---------------------------------------------------- */
/* Rearranges v[0..n) so that v[k] is the k-th smallest (0-based) and everything before it is <= it
 * (Hoare partition around the median of three; iterative). */
static inline void mr_select(float *v, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (hi > lo) {
        const int64_t mid = lo + (hi - lo) / 2;
        float a = v[lo], b = v[mid], c = v[hi];
        const float pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot) i++;
            while (v[j] > pivot) j--;
            if (i <= j) {
                float t = v[i];
                v[i] = v[j], v[j] = t;
                i++, j--;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return; /* v[j+1 .. i-1] all equal the pivot */
    }
}

/* u = the nearest-rank `pct` percentile of the strictly positive values of v[0..n): with the count c of
 * values > 0 (zeros excluded), the value of 0-based rank ceil(c·pct) − 1 in ascending order, the product
 * computed in float32 as the reference does (§6 quirk 19; clamped to [0, c − 1]). O11: the positives of
 * [−1, 0, 0.5, 0.2, 3, −0.1, 1, 2, 0.7, 4, 0.1] are 8 values; pct 0.98 → rank 7 → 4; pct 0.5 → rank 3 → 0.7.
 * v is rearranged (its positive values first); *count gets c. Returns 0 when c = 0. */
static inline float mr_clamp_bound(float *v, int64_t n, double pct, int64_t *count) {
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++)
        if (v[i] > 0) v[c++] = v[i];
    *count = c;
    if (c == 0) return 0.0f;
    volatile float prod = (float)c * (float)pct; /* float32, as torch's count * pct on a float tensor */
    int64_t rank = (int64_t)ceilf(prod) - 1;
    rank = rank < 0 ? 0 : rank >= c ? c - 1 : rank;
    mr_select(v, c, rank);
    return v[rank];
}

/* ---- one step of the MLP --------------------------------------------------------------------------- */
/* The clamped path costs no GEMM of its own: with D = relu(h) − clamp(relu(h), 0, u) = max(h − u, 0), which
 * is non-zero only where h > u (about 1 − pct of the positive pre-activations),
 *     y2 = y1 − D·W2ᵀ,   dW2 = (dy1 + dy2)ᵀ·relu(h) − dy2ᵀ·D,
 *     dh = 1[h > 0]·((dy1 + dy2)·W2) − 1[h > u]·(dy2·W2),
 * so a step is 5 GEMMs (fc1, fc2, dW2, dA, dW1) plus sparse corrections over the clamped entries, against 8
 * for the two paths computed densely: the same function and gradient, rounded differently. */
typedef struct {
    int64_t R, N, C, F;           /* rows (B·N), tokens per sample, in/out channels, hidden channels */
    const float *W1, *b1, *W2, *b2;
    float *dW1, *db1, *dW2, *db2; /* written (not accumulated) by mr_backward */
    float u;                      /* the clamp bound */
    double lambda;                /* weight of the clamping term */
    mr_gemm_fn gemm;
    float *H;                     /* (R, F): fc1's output */
    float *A;                     /* (R, F): relu(H); fc1's output gradient in backward */
    float *Y;                     /* (2R, C): y1 then y2 */
    float *W2t;                   /* (F, C): W2 transposed, for the sparse corrections */
    float *corr;                  /* (F, C): dy2ᵀ·D, transposed, accumulated contiguously */
    double *acc;                  /* (max(C, F)): column sums */
    int64_t *clamped, n_clamped;  /* the flat indices into H where H > u */
    /* the pool (NULL: the calling thread) for the elementwise passes and column sums: every value is
     * computed as on one thread (column sums in row order); only the loss's sum is taken per row first */
    void (*par)(int64_t n, vitq_plugin_range_fn fn, void *ctx);
    double *part;                 /* (2R): the loss's per-row sums */
} mr_mlp;

static inline void mr_for(const mr_mlp *m, int64_t n, vitq_plugin_range_fn fn, void *ctx) {
    if (m->par) m->par(n, fn, ctx);
    else fn(ctx, 0, n);
}

static inline void mr_mlp_free(mr_mlp *m) {
    free(m->H), free(m->A), free(m->Y), free(m->W2t), free(m->clamped), free(m->corr), free(m->acc), free(m->part);
    m->H = m->A = m->Y = m->W2t = m->corr = NULL;
    m->clamped = NULL, m->acc = m->part = NULL;
}

/* Scratch for R rows; 0 or -1 (nothing held) when out of memory. */
static inline int mr_mlp_alloc(mr_mlp *m) {
    const size_t R = (size_t)m->R, C = (size_t)m->C, F = (size_t)m->F;
    m->H = malloc(sizeof(float) * R * F), m->A = malloc(sizeof(float) * R * F);
    m->Y = malloc(sizeof(float) * 2 * R * C), m->W2t = malloc(sizeof(float) * F * C);
    m->clamped = malloc(sizeof(int64_t) * R * F), m->corr = malloc(sizeof(float) * F * C);
    m->acc = malloc(sizeof(double) * (C > F ? C : F)), m->part = malloc(sizeof(double) * 2 * R);
    if (m->H && m->A && m->Y && m->W2t && m->clamped && m->corr && m->acc && m->part) return 0;
    mr_mlp_free(m);
    return -1;
}

/* v where h > 0, else +0, without a branch (the sign of h is random: a branch mispredicts half the time):
 * for a float that is not NaN, h > 0 exactly when its bits read as an int32 are > 0. */
static inline float mr_if_pos(float h, float v) {
    int32_t hb;
    uint32_t vb;
    memcpy(&hb, &h, sizeof hb);
    memcpy(&vb, &v, sizeof vb);
    vb &= (uint32_t)-(int32_t)(hb > 0);
    memcpy(&v, &vb, sizeof v);
    return v;
}

typedef struct {
    const float *b;
    float *Y;
    int64_t out;
} mr_bias_job;

static inline void mr_bias_rows(void *ctx, int64_t r0, int64_t r1) {
    const mr_bias_job *j = ctx;
    for (int64_t r = r0; r < r1; r++) memcpy(j->Y + r * j->out, j->b, sizeof(float) * (size_t)j->out);
}

/* Y (rows, out) = X (rows, in) · Wᵀ + b, W (out, in); the bias rows written on m's pool. */
static inline void mr_linear(const mr_mlp *m, const float *X, const float *W, const float *b, int64_t rows,
                             int64_t in, int64_t out, float *Y) {
    mr_bias_job j = {b, Y, out};
    mr_for(m, rows, mr_bias_rows, &j);
    m->gemm(0, 1, rows, out, in, 1.0f, X, W, 1.0f, Y);
}

/* The flat indices i of H (n values) where H[i] > u, in increasing order, into out; returns their count.
 * 16 compares at a time with AVX-512 (a NaN compares false, as in the scalar tail); the entries are rare
 * (about 1 − pct of the positives), so the loop over a mask's set bits rarely runs. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("avx512f"))) static inline int64_t mr_above16(const float *H, int64_t n, float u, int64_t *out,
                                                                   int64_t *done) {
    const __m512 U = _mm512_set1_ps(u);
    int64_t i = 0, k = 0;
    for (; i + 16 <= n; i += 16)
        for (unsigned mk = _mm512_cmp_ps_mask(_mm512_loadu_ps(H + i), U, _CMP_GT_OQ); mk; mk &= mk - 1)
            out[k++] = i + __builtin_ctz(mk);
    *done = i;
    return k;
}
#define HAVE_MR_ABOVE16 1
#endif

static inline int64_t mr_above(const float *H, int64_t n, float u, int64_t *out) {
    int64_t i = 0, k = 0;
#ifdef HAVE_MR_ABOVE16
    if (__builtin_cpu_supports("avx512f")) k = mr_above16(H, n, u, out, &i);
#endif
    for (; i < n; i++)
        if (H[i] > u) out[k++] = i;
    return k;
}

/* The sparse corrections over the clamped entries (sorted flat indices r·F + j), on the pool:
 *   rows  [r0, r1) of y2 −= d·W2ᵀ (forward), each row's entries in order;
 *   dots  dH[i_k] −= dy2[r]·W2[:, j] for entries [k0, k1) (backward; each dot in double, in c order, four
 *         entries side by side: independent sums);
 *   cols  corr[j] += d·dy2[r] for hidden channels [j0, j1) (backward), every entry of those j in order.
 * Each value gets the operations of the serial loops in the same order: the same bits. */
typedef struct {
    mr_mlp *m;
    const float *dy2;
    float *y2, *dH;
} mr_sparse_job;

/* First k with clamped[k] >= v (clamped sorted). */
static inline int64_t mr_lower(const int64_t *c, int64_t n, int64_t v) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (c[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

PLUGIN_VECTORIZE static void mr_y2_rows(void *ctx, int64_t r0, int64_t r1) {
    const mr_sparse_job *sj = ctx;
    const mr_mlp *m = sj->m;
    const int64_t C = m->C, F = m->F, n = m->n_clamped;
    for (int64_t k = mr_lower(m->clamped, n, r0 * F); k < n && m->clamped[k] < r1 * F; k++) {
        const int64_t r = m->clamped[k] / F, j = m->clamped[k] % F;
        const float d = m->H[m->clamped[k]] - m->u, *w = m->W2t + j * C;
        for (int64_t c = 0; c < C; c++) sj->y2[r * C + c] -= d * w[c];
    }
}

static inline double mr_dot1(const float *g, const float *w, int64_t C) {
    double dot = 0;
    for (int64_t c = 0; c < C; c++) dot += (double)g[c] * w[c];
    return dot;
}

static inline void mr_dots(void *ctx, int64_t k0, int64_t k1) {
    const mr_sparse_job *sj = ctx;
    const mr_mlp *m = sj->m;
    const int64_t C = m->C, F = m->F, *cl = m->clamped;
    int64_t k = k0;
    for (; k + 4 <= k1; k += 4) {
        const float *g[4], *w[4];
        double dot[4] = {0, 0, 0, 0};
        for (int e = 0; e < 4; e++) g[e] = sj->dy2 + cl[k + e] / F * C, w[e] = m->W2t + cl[k + e] % F * C;
        for (int64_t c = 0; c < C; c++)
            for (int e = 0; e < 4; e++) dot[e] += (double)g[e][c] * w[e][c];
        for (int e = 0; e < 4; e++) sj->dH[cl[k + e]] -= (float)dot[e];
    }
    for (; k < k1; k++) sj->dH[cl[k]] -= (float)mr_dot1(sj->dy2 + cl[k] / F * C, m->W2t + cl[k] % F * C, C);
}

PLUGIN_VECTORIZE static void mr_corr_cols(void *ctx, int64_t j0, int64_t j1) {
    const mr_sparse_job *sj = ctx;
    const mr_mlp *m = sj->m;
    const int64_t C = m->C, F = m->F;
    for (int64_t k = 0; k < m->n_clamped; k++) {
        const int64_t j = m->clamped[k] % F;
        if (j < j0 || j >= j1) continue;
        const float d = m->H[m->clamped[k]] - m->u, *g = sj->dy2 + m->clamped[k] / F * C;
        float *cj = m->corr + j * C;
        for (int64_t c = 0; c < C; c++) cj[c] += d * g[c];
    }
}

PLUGIN_VECTORIZE static void mr_relu_chunk(void *ctx, int64_t i0, int64_t i1) {
    mr_mlp *m = ctx;
    for (int64_t i = i0; i < i1; i++) m->A[i] = mr_if_pos(m->H[i], m->H[i]);
}

/* Forward of the R rows x: H, A = relu(H), the clamped entries, y1 and y2 = y1 − max(H − u, 0)·W2ᵀ. */
static inline void mr_forward(mr_mlp *m, const float *x) {
    const int64_t R = m->R, C = m->C, F = m->F;
    mr_linear(m, x, m->W1, m->b1, R, C, F, m->H);
    mr_for(m, R * F, mr_relu_chunk, m);
    m->n_clamped = mr_above(m->H, R * F, m->u, m->clamped);
    mr_linear(m, m->A, m->W2, m->b2, R, F, C, m->Y);
    for (int64_t j = 0; j < F; j++)
        for (int64_t c = 0; c < C; c++) m->W2t[j * C + c] = m->W2[c * F + j];
    float *y2 = m->Y + R * C;
    memcpy(y2, m->Y, sizeof(float) * (size_t)(R * C));
    mr_sparse_job sj = {m, NULL, y2, NULL};
    if (m->n_clamped > 0) mr_for(m, R, mr_y2_rows, &sj);
}

/* The loss of the rows after mr_forward against t (R, C), weighted by w[b] (the importance row of sample
 * b, (N, C); NULL: w ≡ 1), and the gradient of L with respect to Y into DY (2R, C) (DY NULL: loss only).
 * *distill and *clamp get the two terms (the second with its λ); returns their sum. */
typedef struct {
    const mr_mlp *m;
    const float *t;
    const float *const *w;
    float *DY;
    double f;
} mr_loss_job;

/* Rows [r0, r1): their two sums into part[r], part[R + r], and DY. */
static inline void mr_loss_rows(void *ctx, int64_t r0, int64_t r1) {
    const mr_loss_job *j = ctx;
    const mr_mlp *m = j->m;
    const int64_t R = m->R, N = m->N, C = m->C;
    for (int64_t r = r0; r < r1; r++) {
        const float *wr = j->w && j->w[r / N] ? j->w[r / N] + (r % N) * C : NULL, *t = j->t + r * C;
        const float *y1 = m->Y + r * C, *y2 = m->Y + (R + r) * C;
        double s1 = 0, s2 = 0;
        for (int64_t c = 0; c < C; c++) {
            const double wi = wr ? wr[c] : 1.0, d1 = (double)y1[c] - t[c], d2 = (double)y2[c] - t[c];
            s1 += wi * d1 * d1, s2 += wi * d2 * d2;
            if (j->DY) {
                j->DY[r * C + c] = (float)(2 * j->f * wi * d1);
                j->DY[(R + r) * C + c] = (float)(2 * j->f * m->lambda * wi * d2);
            }
        }
        m->part[r] = s1, m->part[R + r] = s2;
    }
}

static inline double mr_loss(const mr_mlp *m, const float *t, const float *const *w, float *DY, double *distill,
                             double *clamp) {
    const int64_t R = m->R, N = m->N, C = m->C, B = R / N;
    mr_loss_job j = {m, t, w, DY, MR_LOSS_SCALE / ((double)B * (double)C)};
    mr_for(m, R, mr_loss_rows, &j);
    double s1 = 0, s2 = 0;
    for (int64_t r = 0; r < R; r++) s1 += m->part[r], s2 += m->part[R + r]; /* rows in order */
    *distill = j.f * s1, *clamp = j.f * m->lambda * s2;
    return *distill + *clamp;
}

typedef struct {
    const float *X;
    int64_t rows, cols;
    double *acc;
    float *out;
} mr_colsum_job;

/* Columns [c0, c1): rows outer (the columns' sums side by side, vectorised: 8 doubles a step in the AVX-512
 * clone), each in row order. */
PLUGIN_VECTORIZE static void mr_colsum_cols(void *ctx, int64_t c0, int64_t c1) {
    const mr_colsum_job *j = ctx;
    double *acc = j->acc;
    for (int64_t c = c0; c < c1; c++) acc[c] = 0;
    for (int64_t r = 0; r < j->rows; r++) {
        const float *x = j->X + r * j->cols;
        for (int64_t c = c0; c < c1; c++) acc[c] += x[c];
    }
    for (int64_t c = c0; c < c1; c++) j->out[c] = (float)acc[c];
}

/* Column sums of X (rows, cols) into out (cols), in double (acc: cols doubles of scratch). */
static inline void mr_colsum(const mr_mlp *m, const float *X, int64_t rows, int64_t cols, double *acc, float *out) {
    mr_colsum_job j = {X, rows, cols, acc, out};
    mr_for(m, cols, mr_colsum_cols, &j);
}

typedef struct {
    mr_mlp *m;
    float *S, *dH;
    const float *dy2;
} mr_bwd_job;

PLUGIN_VECTORIZE static void mr_add_chunk(void *ctx, int64_t i0, int64_t i1) {
    const mr_bwd_job *j = ctx;
    for (int64_t i = i0; i < i1; i++) j->S[i] += j->dy2[i];
}

PLUGIN_VECTORIZE static void mr_mask_chunk(void *ctx, int64_t i0, int64_t i1) {
    const mr_bwd_job *j = ctx;
    for (int64_t i = i0; i < i1; i++) j->dH[i] = mr_if_pos(j->m->H[i], j->dH[i]);
}

/* Backward of the rows x after mr_forward and mr_loss's DY (2R, C): dW2, db2, dW1, db1 (overwritten).
 * DY's first half becomes dy1 + dy2, A becomes fc1's output gradient (the identities above). */
static inline void mr_backward(mr_mlp *m, const float *x, float *DY) {
    const int64_t R = m->R, C = m->C, F = m->F;
    float *S = DY;
    const float *dy2 = DY + R * C;
    mr_bwd_job bj = {m, S, m->A, dy2};                  /* dH = A: relu(H) is no longer needed then */
    mr_for(m, R * C, mr_add_chunk, &bj);
    m->gemm(1, 0, C, F, R, 1.0f, S, m->A, 0.0f, m->dW2); /* (dy1 + dy2)ᵀ·relu(H) */
    mr_colsum(m, S, R, C, m->acc, m->db2);
    float *dH = m->A;
    m->gemm(0, 0, R, F, C, 1.0f, S, m->W2, 0.0f, dH);   /* (dy1 + dy2)·W2 */
    mr_for(m, R * F, mr_mask_chunk, &bj);
    if (m->n_clamped > 0) { /* the clamped entries: their y2 path is cut */
        memset(m->corr, 0, sizeof(float) * (size_t)(F * C));
        mr_sparse_job sj = {m, dy2, NULL, dH};
        mr_for(m, m->n_clamped, mr_dots, &sj);
        mr_for(m, F, mr_corr_cols, &sj);
    }
    for (int64_t j = 0; m->n_clamped > 0 && j < F; j++)
        for (int64_t c = 0; c < C; c++) m->dW2[c * F + j] -= m->corr[j * C + c];
    m->gemm(1, 0, F, C, R, 1.0f, dH, x, 0.0f, m->dW1); /* dW1 = dHᵀ·x */
    mr_colsum(m, dH, R, F, m->acc, m->db1);
}

#endif
