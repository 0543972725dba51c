/* kernels/kernels.h — the forward and backward kernels of every op family a Vision Transformer uses
 * (llm.c's llmc/): linear (OpenBLAS sgemm split by rows over the pool), LayerNorm, GELU/ReLU, residual
 * add, fused-qkv split, softmax attention, patch embedding, cross-entropy; and Swin's row gathers, window
 * attention with relative position bias and mask, mean over tokens (swin_ops.c). Plain functions over float
 * buffers: outputs first, then inputs, then weights, then dimensions; backward ACCUMULATES (+=) unless
 * the name ends in _to. They know nothing of models or taps (model/ composes them). */
#ifndef VITQ_KERNELS_H
#define VITQ_KERNELS_H

#include "core/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* For a kernel's element-wise loops: O3 and an AVX-512 clone. GCC 12's -O2 cost model vectorises no loop
 * whose trip count needs an epilogue, so a row loop of C floats ran one float at a time. Vectorising
 * element-wise arithmetic keeps every value's bits (ISO C: no FMA contraction; GCC never reorders a float
 * sum without -ffast-math), so sums stay in their written order. */
#define VITQ_VECTORIZE __attribute__((target_clones("avx512f", "default"), optimize("O3")))

/* ---------------------------------------------------------------------------------------------
 * Forward (ops.c) and backward (ops_backward.c) kernels. Shapes in the comments; R = rows.
 * ------------------------------------------------------------------------------------------- */
/* Which OpenBLAS kernels run (blas.c): VITQ_BLAS_CORETYPE = auto (default: SkylakeX on AVX-512 CPUs) | env
 * (OPENBLAS_CORETYPE as set) | an OpenBLAS core name. vitq_blas_setup, first thing in main(), re-executes
 * the program with OPENBLAS_CORETYPE set when the choice differs from the environment, then checks the
 * kernels (falling back to the environment's with a warning); it says so on stderr unless argv has -q.
 * vitq_blas_target is the decision (NULL: keep what runs); vitq_blas_selfcheck compares sgemm with a double
 * product on ViT-like shapes (0, or VITQ_EINVAL with *worst the error over its bound). */
VITQ_API void vitq_blas_setup(char **argv);
VITQ_API const char *vitq_blas_target(const char *want, const char *cur, const char *core_now, int avx512);
VITQ_API int vitq_blas_selfcheck(double *worst);
VITQ_API const char *vitq_blas_core(void); /* OpenBLAS's name of the kernels in use */

/* C (M,N) = alpha · op(A) · op(B) + beta · C, row-major, op(X) = X^T when trans_x (A is then (K,M), B (N,K))
 * (gemm.c). vitq_gemm splits the rows of C over the pool; vitq_gemm_serial stays on the calling thread
 * (for use inside a parallel loop). */
VITQ_API void vitq_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                        const float *B, float beta, float *C);
VITQ_API void vitq_gemm_serial(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                               const float *A, const float *B, float beta, float *C);
/* erf and exp of n floats (mvec16.c): vitq_*_sse through libmvec's 4-lane SSE4 erff / expf (what GELU
 * and the softmax compute); vitq_*_avx512 the same methods 16 at a time, or -1 (nothing written) where the
 * CPU lacks AVX-512. vitq_mvec16_ready: 1 when GELU and the softmax use them (AVX-512, and the self-check
 * against the SSE4 functions passed; checked once). Only after it returned 1: vitq_gelu16, GELU's forward,
 * and vitq_exp16_shifted, row[i] = exp(max(row[i] − mx, −87)) for i < n (the softmax's numerators). */
VITQ_API int vitq_mvec16_ready(void);
VITQ_API int vitq_erf_avx512(const float *x, float *y, int64_t n);
VITQ_API int vitq_exp_avx512(const float *x, float *y, int64_t n);
VITQ_API void vitq_erf_sse(const float *x, float *y, int64_t n);
VITQ_API void vitq_exp_sse(const float *x, float *y, int64_t n);
void vitq_gelu16(float *out, const float *inp, int64_t n);
void vitq_exp16_shifted(float *row, int64_t n, float mx);
/* out (R,OC) = inp (R,IC) · w (OC,IC)^T + bias (OC, may be NULL). sgemm, rows split over threads. */
VITQ_API void vitq_linear_forward(float *out, const float *inp, const float *w, const float *bias,
                                  int64_t R, int64_t IC, int64_t OC);
/* Backward kernels ACCUMULATE (+=) into every output. Each *_to variant WRITES (=) its activation
 * gradients instead (dinp, datt, dv, dq, dk, dqkv; parameter gradients still accumulate), for a buffer
 * with one writer: no zeroing pass first. Same bits either way. */
/* dinp (R,IC) += dout·w; dw (OC,IC) += dout^T·inp; dbias (OC) += sum_r dout. Any of the three may be NULL. */
VITQ_API void vitq_linear_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                                   const float *w, int64_t R, int64_t IC, int64_t OC);
VITQ_API void vitq_linear_backward_to(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                                      const float *w, int64_t R, int64_t IC, int64_t OC);
/* LayerNorm over the last dim C of R rows; caches mean and rstd (R). eps is 1e-6 for ViT/DeiT. */
VITQ_API void vitq_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                                     const float *b, int64_t R, int64_t C, float eps);
VITQ_API void vitq_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                      const float *w, const float *mean, const float *rstd, int64_t R, int64_t C);
/* Exact erf GELU: x * 0.5 * (1 + erf(x / sqrt 2)). */
VITQ_API void vitq_gelu_forward(float *out, const float *inp, int64_t n);
VITQ_API void vitq_gelu_backward(float *dinp, const float *inp, const float *dout, int64_t n);
VITQ_API void vitq_gelu_backward_to(float *dinp, const float *inp, const float *dout, int64_t n);
VITQ_API void vitq_relu_forward(float *out, const float *inp, int64_t n);
VITQ_API void vitq_relu_backward(float *dinp, const float *inp, const float *dout, int64_t n);
VITQ_API void vitq_relu_backward_to(float *dinp, const float *inp, const float *dout, int64_t n);
/* out = a + b (n). */
VITQ_API void vitq_add_forward(float *out, const float *a, const float *b, int64_t n);
/* qkv (B,N,3C) laid out as timm's reshape(B,N,3,H,D) -> qkvh (3,B,H,N,D). */
VITQ_API void vitq_qkv_split_forward(float *qkvh, const float *qkv, int64_t B, int64_t N, int64_t C, int64_t H);
VITQ_API void vitq_qkv_split_backward(float *dqkv, const float *dqkvh, int64_t B, int64_t N, int64_t C, int64_t H);
VITQ_API void vitq_qkv_split_backward_to(float *dqkv, const float *dqkvh, int64_t B, int64_t N, int64_t C, int64_t H);
/* att (B,H,N,N) = softmax(q·k^T * scale) row-wise; q, k (B,H,N,D). */
VITQ_API void vitq_attn_softmax_forward(float *att, const float *q, const float *k, int64_t B, int64_t H,
                                        int64_t N, int64_t D, float scale);
/* Gradients of the above given datt; dq, dk accumulate. */
VITQ_API void vitq_attn_softmax_backward(float *dq, float *dk, const float *datt, const float *att,
                                         const float *q, const float *k, int64_t B, int64_t H, int64_t N,
                                         int64_t D, float scale);
VITQ_API void vitq_attn_softmax_backward_to(float *dq, float *dk, const float *datt, const float *att,
                                            const float *q, const float *k, int64_t B, int64_t H, int64_t N,
                                            int64_t D, float scale);
/* out (B,N,C) with heads merged = att (B,H,N,N) · v (B,H,N,D). */
VITQ_API void vitq_attn_value_forward(float *out, const float *att, const float *v, int64_t B, int64_t H,
                                      int64_t N, int64_t D);
VITQ_API void vitq_attn_value_backward(float *datt, float *dv, const float *dout, const float *att,
                                       const float *v, int64_t B, int64_t H, int64_t N, int64_t D);
VITQ_API void vitq_attn_value_backward_to(float *datt, float *dv, const float *dout, const float *att,
                                          const float *v, int64_t B, int64_t H, int64_t N, int64_t D);
/* im2col of non-overlapping PxP patches: img (B,Cin,S,S) -> patches (B,Np,Cin*P*P) in (c,py,px) order,
 * so that a timm conv weight (C,Cin,P,P) is a linear weight (C, Cin*P*P). */
VITQ_API void vitq_patchify_forward(float *patches, const float *img, int64_t B, int64_t Cin, int64_t S, int64_t P);
/* x (B,N,C): row 0 = cls + pos[0], row 1+i = patch_out[i] + pos[1+i]. */
VITQ_API void vitq_embed_forward(float *x, const float *patch_out, const float *cls, const float *pos,
                                 int64_t B, int64_t N, int64_t C);
VITQ_API void vitq_embed_backward(float *dpatch_out, float *dcls, float *dpos, const float *dx, int64_t B,
                                  int64_t N, int64_t C);
/* Row-wise softmax in place, on the calling thread (the one attn_softmax uses): x (rows, n). */
VITQ_API void vitq_softmax_rows(float *x, int64_t rows, int64_t n);

/* ---------------------------------------------------------------------------------------------
 * Swin kernels (swin_ops.c): row gathers (cyclic shift + window partition + padding, window reverse,
 * patch merging are all one gather of C-wide rows by an index map), window attention with the relative
 * position bias and the shift mask, and the mean over tokens.
 * ------------------------------------------------------------------------------------------- */
/* out (B, rows_out, C): row i of image b = inp row idx[i] of image b (inp (B, rows_in, C)), or zeros where
 * idx[i] < 0. The backward of a gather by an idx that is injective on its non-negative entries is a gather
 * by its inverse inv (rows_in entries, -1 for rows never gathered): written with vitq_gather_rows_forward
 * (dinp, dout, inv, ...), or accumulated with vitq_gather_rows_backward. */
VITQ_API void vitq_gather_rows_forward(float *out, const float *inp, const int32_t *idx, int64_t B, int64_t rows_in,
                                       int64_t rows_out, int64_t C);
/* dinp (B, rows_in, C) += row inv[i] of dout (B, rows_out, C) for every i with inv[i] >= 0. */
VITQ_API void vitq_gather_rows_backward(float *dinp, const float *dout, const int32_t *inv, int64_t B,
                                        int64_t rows_in, int64_t rows_out, int64_t C);
/* Window attention (timm's WindowAttention): per window w of Bw = B*nW and head h,
 *   att[w,h] = softmax(scale * q[w,h]·k[w,h]^T + table[rpi[p*N+q]*H + h] + mask[w mod nW, p, q])
 * q, k (Bw,H,N,D); table (T,H) relative_position_bias_table; rpi (N*N) its index; mask (nW,N,N) or NULL. */
VITQ_API void vitq_window_attn_forward(float *att, const float *q, const float *k, const float *table,
                                       const int32_t *rpi, const float *mask, int64_t Bw, int64_t nW, int64_t H,
                                       int64_t N, int64_t D, float scale);
/* Its backward: dq, dk (Bw,H,N,D) WRITTEN; dtable (T,H) ACCUMULATED (a scatter-add over windows, in a fixed
 * order); datt (Bw,H,N,N) is overwritten with the gradient of the scores (scratch). */
VITQ_API void vitq_window_attn_backward_to(float *dq, float *dk, float *dtable, float *datt, const float *att,
                                           const float *q, const float *k, const int32_t *rpi, int64_t T,
                                           int64_t Bw, int64_t H, int64_t N, int64_t D, float scale);
/* out (n) = s * inp (n); out may be inp. Its backward is the same op on the gradient (dinp = s * dout). */
VITQ_API void vitq_scale_forward(float *out, const float *inp, float s, int64_t n);
/* out (B,C) = mean over L of inp (B,L,C) (timm's avg pool over H, W); backward: dinp (B,L,C) += dout / L. */
VITQ_API void vitq_token_mean_forward(float *out, const float *inp, int64_t B, int64_t L, int64_t C);
VITQ_API void vitq_token_mean_backward(float *dinp, const float *dout, int64_t B, int64_t L, int64_t C);

/* Mean cross-entropy with label smoothing eps over B rows of K logits; probs (B,K) cached. Returns loss. */
VITQ_API float vitq_crossentropy_forward(float *probs, const float *logits, const int *labels, int64_t B,
                                         int64_t K, float smoothing);
/* dlogits (B,K) += gradient of the mean loss. */
VITQ_API void vitq_crossentropy_backward(float *dlogits, const float *probs, const int *labels, int64_t B,
                                         int64_t K, float smoothing);

#ifdef __cplusplus
}
#endif
#endif
