/* gemm.c — a general single-precision GEMM for the code that is not a layer of the model (calibration
 * searches, reconstruction passes): OpenBLAS sgemm, split over the pool by rows of C so that results
 * depend only on the sizes and the thread count, as every kernel here. */
#include "kernels/kernels.h"

#include <cblas.h>

typedef struct {
    int ta, tb;
    int64_t M, N, K;
    float alpha, beta;
    const float *A, *B;
    float *C;
} gemm_ctx;

static void gemm_rows(void *vc, int64_t r0, int64_t r1) {
    const gemm_ctx *c = vc;
    /* rows r0..r1 of op(A): A (M,K) row-major from row r0; A^T stored (K,M): columns r0.. */
    const float *a = c->ta ? c->A + r0 : c->A + r0 * c->K;
    cblas_sgemm(CblasRowMajor, c->ta ? CblasTrans : CblasNoTrans, c->tb ? CblasTrans : CblasNoTrans, (int)(r1 - r0),
                (int)c->N, (int)c->K, c->alpha, a, c->ta ? (int)c->M : (int)c->K, c->B, c->tb ? (int)c->K : (int)c->N,
                c->beta, c->C + r0 * c->N, (int)c->N);
}

void vitq_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
               const float *B, float beta, float *C) {
    if (M <= 0 || N <= 0) return;
    gemm_ctx c = {trans_a != 0, trans_b != 0, M, N, K, alpha, beta, A, B, C};
    vitq_parallel_for_work(M, 2 * N * (K > 0 ? K : 1), gemm_rows, &c);
}

void vitq_gemm_serial(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                      const float *B, float beta, float *C) {
    if (M <= 0 || N <= 0) return;
    gemm_ctx c = {trans_a != 0, trans_b != 0, M, N, K, alpha, beta, A, B, C};
    gemm_rows(&c, 0, M);
}
