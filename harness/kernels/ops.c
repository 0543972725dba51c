/* ops.c — the forward kernel of every op a ViT/DeiT runs, llm.c style: outputs first, then inputs,
 * then weights, then dimensions; what backward needs is cached by the caller-provided buffers
 * (LayerNorm mean/rstd, softmax probabilities, cross-entropy probs). Backward lives in ops_backward.c.
 *
 * Dimensions: B batch, N tokens (class token included), C width, H heads, D head width (C/H),
 * F MLP width, P patch size, K classes, R rows (= B*N for token-wise ops), IC/OC linear widths.
 *
 * Threading: every kernel splits its OUTPUT over the vitq pool (vitq_parallel_for) in contiguous
 * ranges that depend only on the size and the thread count; each output element is computed by
 * exactly one thread in a fixed order, so results are reproducible for a given thread count. GEMMs
 * are OpenBLAS sgemm, kept single-threaded by pool.c and split by rows here (one threading model).
 * Small problems run on the calling thread.
 *
 * Mirrors: torch.nn.Linear, nn.LayerNorm, F.gelu (exact erf form), F.relu, timm's Attention
 * (qkv.reshape(B,N,3,H,D).permute(2,0,3,1,4), softmax(q·k^T·scale), (att·v).transpose(1,2).reshape),
 * timm's PatchEmbed (Conv2d with stride = kernel = P seen as im2col + linear), the class token and
 * position embedding of VisionTransformer._pos_embed, and timm's LabelSmoothingCrossEntropy.
 * Does not: fuse ops across kernels, or use approximate (tanh) GELU. */
#include "kernels/kernels.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>

/* glibc >= 2.35 on x86-64 ships SSE vector versions of expf and erff in libmvec (pulled in by -lm's
 * linker script); 4 lanes at a time they make GELU and the softmax ~4x cheaper than the scalar libm
 * calls. Every element, tails included, goes through the same vector function, so results do not
 * depend on where a thread's chunk starts. Elsewhere the scalar libm functions are used. */
#if defined(__x86_64__) && defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
#include <emmintrin.h>
#define VITQ_MVEC 1
__m128 _ZGVbN4v_expf(__m128 x);
__m128 _ZGVbN4v_erff(__m128 x);
#endif

/* ---------------------------------------------------------------------------------------------
 * Linear: inp (R,IC), w (OC,IC), bias (OC) or NULL -> out (R,OC) = inp · w^T + bias
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    float *out;
    const float *inp, *w, *bias;
    int64_t IC, OC;
} linear_ctx;

static void linear_rows(void *vc, int64_t r0, int64_t r1) {
    const linear_ctx *c = vc;
    float *out = c->out + r0 * c->OC;
    float beta = 0.0f;
    if (c->bias) {
        for (int64_t r = r0; r < r1; r++) memcpy(c->out + r * c->OC, c->bias, (size_t)c->OC * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(r1 - r0), (int)c->OC, (int)c->IC, 1.0f,
                c->inp + r0 * c->IC, (int)c->IC, c->w, (int)c->IC, beta, out, (int)c->OC);
}

void vitq_linear_forward(float *out, const float *inp, const float *w, const float *bias, int64_t R,
                         int64_t IC, int64_t OC) {
    linear_ctx c = {out, inp, w, bias, IC, OC};
    vitq_parallel_for_work(R, IC * OC, linear_rows, &c);
}

/* ---------------------------------------------------------------------------------------------
 * LayerNorm over the last dim: inp (R,C), w (C), b (C) -> out (R,C); caches mean (R), rstd (R).
 * Two-pass mean/variance in float per row (llm.c's layernorm_forward); biased variance as torch.
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    float *out, *mean, *rstd;
    const float *inp, *w, *b;
    int64_t C;
    float eps;
} ln_ctx;

VITQ_VECTORIZE static void ln_rows(void *vc, int64_t r0, int64_t r1) {
    const ln_ctx *c = vc;
    const int64_t C = c->C;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = c->inp + r * C;
        float *o = c->out + r * C;
        /* eight fixed partial sums (the compiler vectorises them; same order at any thread count) */
        float s8[8] = {0}, q8[8] = {0};
        int64_t C8 = C & ~(int64_t)7;
        for (int64_t i = 0; i < C8; i += 8)
            for (int k = 0; k < 8; k++) s8[k] += x[i + k];
        for (int64_t i = C8; i < C; i++) s8[0] += x[i];
        float m = (((s8[0] + s8[1]) + (s8[2] + s8[3])) + ((s8[4] + s8[5]) + (s8[6] + s8[7]))) / (float)C;
        for (int64_t i = 0; i < C8; i += 8)
            for (int k = 0; k < 8; k++) {
                float d = x[i + k] - m;
                q8[k] += d * d;
            }
        for (int64_t i = C8; i < C; i++) q8[0] += (x[i] - m) * (x[i] - m);
        float v = (((q8[0] + q8[1]) + (q8[2] + q8[3])) + ((q8[4] + q8[5]) + (q8[6] + q8[7]))) / (float)C;
        float s = 1.0f / sqrtf(v + c->eps);
        for (int64_t i = 0; i < C; i++) o[i] = (x[i] - m) * s * c->w[i] + c->b[i];
        if (c->mean) c->mean[r] = m;
        if (c->rstd) c->rstd[r] = s;
    }
}

void vitq_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                            const float *b, int64_t R, int64_t C, float eps) {
    ln_ctx c = {out, mean, rstd, inp, w, b, C, eps};
    vitq_parallel_for_work(R, 8 * C, ln_rows, &c);
}

/* ---------------------------------------------------------------------------------------------
 * Elementwise: GELU (exact erf), ReLU, add. inp (n) -> out (n); out may alias an input.
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    float *out;
    const float *a, *b;
    int64_t n;
} ew_ctx;

#define EW_CHUNK 4096 /* elements per parallel item */

static int64_t ew_end(const ew_ctx *c, int64_t item_end) {
    int64_t e = item_end * EW_CHUNK;
    return e < c->n ? e : c->n;
}

/* GELU: 0.5 x (1 + erf(x / sqrt 2)), erf vectorised (tails padded, as everywhere in this file). */
static void gelu_range(void *vc, int64_t i0, int64_t i1) {
    const ew_ctx *c = vc;
    int64_t i = i0 * EW_CHUNK, e = ew_end(c, i1);
#ifdef VITQ_MVEC
    if (vitq_mvec16_ready()) { /* the same bits, 16 at a time (mvec16.c) */
        vitq_gelu16(c->out + i, c->a + i, e - i);
        return;
    }
    const __m128 r2 = _mm_set1_ps((float)M_SQRT1_2), half = _mm_set1_ps(0.5f), one = _mm_set1_ps(1.0f);
    for (; i < e; i += 4) {
        float t[4] = {0, 0, 0, 0};
        const float *src = c->a + i;
        if (e - i < 4) {
            memcpy(t, src, (size_t)(e - i) * sizeof(float));
            src = t;
        }
        __m128 x = _mm_loadu_ps(src);
        __m128 y = _mm_mul_ps(_mm_mul_ps(half, x), _mm_add_ps(one, _ZGVbN4v_erff(_mm_mul_ps(x, r2))));
        if (e - i < 4) {
            _mm_storeu_ps(t, y);
            memcpy(c->out + i, t, (size_t)(e - i) * sizeof(float));
        } else {
            _mm_storeu_ps(c->out + i, y);
        }
    }
#else
    for (; i < e; i++) {
        float x = c->a[i];
        c->out[i] = 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2));
    }
#endif
}

/* ReLU without a branch (a 50 % taken one cost ~5 ns a value, half a reconstruction step's GEMM time
 * after MLP reconstruction): x > 0 ? x : +0 is MAXPS(x, 0) — −0 and NaN give the second operand, +0. */
VITQ_VECTORIZE static void relu_range(void *vc, int64_t i0, int64_t i1) {
    const ew_ctx *c = vc;
    const float *restrict a = c->a;
    float *restrict out = c->out;
    for (int64_t i = i0 * EW_CHUNK, e = ew_end(c, i1); i < e; i++) out[i] = a[i] > 0.0f ? a[i] : 0.0f;
}

VITQ_VECTORIZE static void add_range(void *vc, int64_t i0, int64_t i1) {
    const ew_ctx *c = vc;
    const float *a = c->a, *b = c->b;
    float *out = c->out; /* may alias a or b (x += y): no restrict; O3 checks at run time */
    for (int64_t i = i0 * EW_CHUNK, e = ew_end(c, i1); i < e; i++) out[i] = a[i] + b[i];
}

static void ew_run(int64_t n, int64_t cost, vitq_range_fn fn, ew_ctx c) {
    c.n = n;
    vitq_parallel_for_work((n + EW_CHUNK - 1) / EW_CHUNK, EW_CHUNK * cost, fn, &c);
}

void vitq_gelu_forward(float *out, const float *inp, int64_t n) { ew_run(n, 16, gelu_range, (ew_ctx){out, inp, NULL, 0}); }

void vitq_relu_forward(float *out, const float *inp, int64_t n) { ew_run(n, 1, relu_range, (ew_ctx){out, inp, NULL, 0}); }

void vitq_add_forward(float *out, const float *a, const float *b, int64_t n) {
    ew_run(n, 1, add_range, (ew_ctx){out, a, b, 0});
}

/* ---------------------------------------------------------------------------------------------
 * QKV split: qkv (B,N,3C) read as (B,N,3,H,D) -> qkvh (3,B,H,N,D). One item = one token row (b,n).
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    float *qkvh;
    const float *qkv;
    int64_t B, N, C, H;
} split_ctx;

static void split_rows(void *vc, int64_t r0, int64_t r1) {
    const split_ctx *c = vc;
    const int64_t N = c->N, C = c->C, H = c->H, D = C / H, BHND = c->B * H * N * D;
    for (int64_t r = r0; r < r1; r++) {
        int64_t b = r / N, n = r % N;
        const float *src = c->qkv + r * 3 * C;
        for (int64_t s = 0; s < 3; s++)
            for (int64_t h = 0; h < H; h++)
                memcpy(c->qkvh + s * BHND + ((b * H + h) * N + n) * D, src + (s * H + h) * D,
                       (size_t)D * sizeof(float));
    }
}

void vitq_qkv_split_forward(float *qkvh, const float *qkv, int64_t B, int64_t N, int64_t C, int64_t H) {
    split_ctx c = {qkvh, qkv, B, N, C, H};
    vitq_parallel_for_work(B * N, 3 * C, split_rows, &c);
}

/* ---------------------------------------------------------------------------------------------
 * Attention scores: q, k (B,H,N,D) -> att (B,H,N,N) = softmax_rows(q · k^T * scale).
 * One item = one (b,h) pair: an sgemm (N,D)x(D,N) with alpha = scale, then a numerically stable
 * softmax per row (subtract the row max).
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    float *att;
    const float *q, *k;
    int64_t N, D;
    float scale;
} sm_ctx;

/* In-place numerically stable softmax of one row: exp(x - max) / sum. */
static void softmax_row(float *row, int64_t n) {
#ifdef VITQ_MVEC
    /* 4 lanes: max, then exp and four fixed partial sums in one pass, then the scale. x - max is
     * clamped at -87 (exp = 1.6e-38, the smallest normal float's neighbourhood) because libmvec
     * sends underflowing lanes to a slow scalar path; a probability below 1.6e-38 changes nothing
     * measurable. The tail is padded with -87 too, so every element takes the same path. */
    int64_t n4 = n & ~(int64_t)3;
    float tail[4] = {-FLT_MAX, -FLT_MAX, -FLT_MAX, -FLT_MAX};
    memcpy(tail, row + n4, (size_t)(n - n4) * sizeof(float));
    __m128 vmax = _mm_loadu_ps(tail);
    for (int64_t i = 0; i < n4; i += 4) vmax = _mm_max_ps(vmax, _mm_loadu_ps(row + i));
    float m4[4];
    _mm_storeu_ps(m4, vmax);
    float mx = m4[0] > m4[1] ? m4[0] : m4[1];
    mx = m4[2] > mx ? m4[2] : mx;
    mx = m4[3] > mx ? m4[3] : mx;
    const __m128 vm = _mm_set1_ps(mx), lo = _mm_set1_ps(-87.0f);
    __m128 vsum = _mm_setzero_ps(), ext;
    if (vitq_mvec16_ready()) { /* the same exps 16 at a time (mvec16.c), then the same 4-lane sums */
        vitq_exp16_shifted(row, n, mx);
        for (int64_t i = 0; i < n4; i += 4) vsum = _mm_add_ps(vsum, _mm_loadu_ps(row + i));
        float t[4] = {0, 0, 0, 0};
        memcpy(t, row + n4, (size_t)(n - n4) * sizeof(float));
        ext = _mm_loadu_ps(t);
    } else {
        for (int64_t i = 0; i < n4; i += 4) {
            __m128 ex = _ZGVbN4v_expf(_mm_max_ps(_mm_sub_ps(_mm_loadu_ps(row + i), vm), lo));
            _mm_storeu_ps(row + i, ex);
            vsum = _mm_add_ps(vsum, ex);
        }
        ext = _ZGVbN4v_expf(_mm_max_ps(_mm_sub_ps(_mm_loadu_ps(tail), vm), lo));
        if (n4 == n) ext = _mm_setzero_ps();
        else if (n - n4 < 4) /* drop the padding lanes from the sum */
            ext = _mm_and_ps(ext, _mm_castsi128_ps(_mm_set_epi32(n - n4 > 3 ? -1 : 0, n - n4 > 2 ? -1 : 0,
                                                                 n - n4 > 1 ? -1 : 0, -1)));
        _mm_storeu_ps(tail, ext);
        memcpy(row + n4, tail, (size_t)(n - n4) * sizeof(float));
    }
    vsum = _mm_add_ps(vsum, ext);
    float s4[4];
    _mm_storeu_ps(s4, vsum);
    const __m128 vinv = _mm_set1_ps(1.0f / ((s4[0] + s4[1]) + (s4[2] + s4[3])));
    for (int64_t i = 0; i < n4; i += 4) _mm_storeu_ps(row + i, _mm_mul_ps(_mm_loadu_ps(row + i), vinv));
    for (int64_t i = n4; i < n; i++) row[i] *= _mm_cvtss_f32(vinv);
#else
    float mx = -FLT_MAX;
    for (int64_t j = 0; j < n; j++) mx = row[j] > mx ? row[j] : mx;
    float sum = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        row[j] = expf(row[j] - mx);
        sum += row[j];
    }
    float inv = 1.0f / sum;
    for (int64_t j = 0; j < n; j++) row[j] *= inv;
#endif
}

void vitq_softmax_rows(float *x, int64_t rows, int64_t n) {
    for (int64_t r = 0; r < rows; r++) softmax_row(x + r * n, n);
}

static void attn_softmax_pairs(void *vc, int64_t p0, int64_t p1) {
    const sm_ctx *c = vc;
    const int64_t N = c->N, D = c->D;
    for (int64_t p = p0; p < p1; p++) {
        float *att = c->att + p * N * N;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)N, (int)D, c->scale, c->q + p * N * D,
                    (int)D, c->k + p * N * D, (int)D, 0.0f, att, (int)N);
        for (int64_t i = 0; i < N; i++) softmax_row(att + i * N, N);
    }
}

void vitq_attn_softmax_forward(float *att, const float *q, const float *k, int64_t B, int64_t H, int64_t N,
                               int64_t D, float scale) {
    sm_ctx c = {att, q, k, N, D, scale};
    vitq_parallel_for_work(B * H, N * N * (2 * D + 16), attn_softmax_pairs, &c);
}

/* ---------------------------------------------------------------------------------------------
 * Attention values: att (B,H,N,N), v (B,H,N,D) -> out (B,N,C) heads merged (column h*D + d),
 * i.e. timm's (att @ v).transpose(1, 2).reshape(B, N, C). One item = one (b,h) pair.
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    float *out;
    const float *att, *v;
    int64_t H, N, D;
} av_ctx;

static void attn_value_pairs(void *vc, int64_t p0, int64_t p1) {
    const av_ctx *c = vc;
    const int64_t H = c->H, N = c->N, D = c->D, C = H * D;
    for (int64_t p = p0; p < p1; p++) {
        int64_t b = p / H, h = p % H;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)D, (int)N, 1.0f, c->att + p * N * N,
                    (int)N, c->v + p * N * D, (int)D, 0.0f, c->out + b * N * C + h * D, (int)C);
    }
}

void vitq_attn_value_forward(float *out, const float *att, const float *v, int64_t B, int64_t H, int64_t N,
                             int64_t D) {
    av_ctx c = {out, att, v, H, N, D};
    vitq_parallel_for_work(B * H, 2 * N * N * D, attn_value_pairs, &c);
}

/* ---------------------------------------------------------------------------------------------
 * Patchify (im2col, stride = kernel = P): img (B,Cin,S,S) -> patches (B,Np,Cin*P*P), Np = (S/P)^2,
 * patch i = gy*(S/P) + gx (row-major over the grid, as timm's flatten(2)), column (c,py,px).
 * One item = one patch.
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    float *patches;
    const float *img;
    int64_t Cin, S, P;
} patch_ctx;

static void patch_items(void *vc, int64_t i0, int64_t i1) {
    const patch_ctx *c = vc;
    const int64_t S = c->S, P = c->P, G = S / P, Np = G * G, Cin = c->Cin, pd = Cin * P * P;
    for (int64_t i = i0; i < i1; i++) {
        int64_t b = i / Np, pi = i % Np, gy = pi / G, gx = pi % G;
        float *dst = c->patches + i * pd;
        for (int64_t ch = 0; ch < Cin; ch++)
            for (int64_t py = 0; py < P; py++)
                memcpy(dst + (ch * P + py) * P, c->img + ((b * Cin + ch) * S + gy * P + py) * S + gx * P,
                       (size_t)P * sizeof(float));
    }
}

void vitq_patchify_forward(float *patches, const float *img, int64_t B, int64_t Cin, int64_t S, int64_t P) {
    patch_ctx c = {patches, img, Cin, S, P};
    int64_t G = S / P;
    vitq_parallel_for_work(B * G * G, Cin * P * P, patch_items, &c);
}

/* ---------------------------------------------------------------------------------------------
 * Embedding: patch_out (B,N-1,C), cls (C), pos (N,C) -> x (B,N,C); row 0 = cls + pos[0],
 * row 1+i = patch_out[i] + pos[1+i] (timm's _pos_embed without dropout). One item = one token row.
 * ------------------------------------------------------------------------------------------- */
typedef struct {
    float *x;
    const float *patch_out, *cls, *pos;
    int64_t N, C;
} embed_ctx;

static void embed_rows(void *vc, int64_t r0, int64_t r1) {
    const embed_ctx *c = vc;
    const int64_t N = c->N, C = c->C;
    for (int64_t r = r0; r < r1; r++) {
        int64_t b = r / N, n = r % N;
        const float *src = n == 0 ? c->cls : c->patch_out + (b * (N - 1) + n - 1) * C;
        const float *pos = c->pos + n * C;
        float *dst = c->x + r * C;
        for (int64_t i = 0; i < C; i++) dst[i] = src[i] + pos[i];
    }
}

void vitq_embed_forward(float *x, const float *patch_out, const float *cls, const float *pos, int64_t B,
                        int64_t N, int64_t C) {
    embed_ctx c = {x, patch_out, cls, pos, N, C};
    vitq_parallel_for_work(B * N, C, embed_rows, &c);
}

/* ---------------------------------------------------------------------------------------------
 * Cross-entropy with label smoothing: logits (B,K), labels (B) -> probs (B,K) cached; returns
 * mean_b [ (1-eps) * (-log p[b,y_b]) + eps * mean_k(-log p[b,k]) ] (timm's
 * LabelSmoothingCrossEntropy; eps = 0 is plain cross-entropy). Accumulates in double. A label outside
 * [0, K) makes the loss NaN (callers validate labels; the kernel never reads out of bounds).
 * ------------------------------------------------------------------------------------------- */
float vitq_crossentropy_forward(float *probs, const float *logits, const int *labels, int64_t B, int64_t K,
                                float smoothing) {
    double total = 0.0;
    for (int64_t b = 0; b < B; b++) {
        const float *z = logits + b * K;
        float *pr = probs + b * K;
        float mx = -FLT_MAX;
        for (int64_t k = 0; k < K; k++) mx = z[k] > mx ? z[k] : mx;
        double sum = 0.0, sumz = 0.0;
        for (int64_t k = 0; k < K; k++) {
            pr[k] = expf(z[k] - mx);
            sum += pr[k];
            sumz += (double)z[k] - mx;
        }
        float inv = (float)(1.0 / sum);
        for (int64_t k = 0; k < K; k++) pr[k] *= inv;
        double lse = log(sum); /* log sum exp(z - mx) */
        int y = labels[b];
        if (y < 0 || y >= K) return NAN;
        double nll = lse - ((double)z[y] - mx);
        double smooth = lse - sumz / (double)K; /* mean_k(-log p_k) */
        total += (1.0 - smoothing) * nll + smoothing * smooth;
    }
    return B > 0 ? (float)(total / (double)B) : 0.0f;
}
