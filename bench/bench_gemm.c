/* bench_gemm.c — the "what could sgemm alone do" reference of the throughput sections: every GEMM of a
 * ViT forward (and of a training step: forward plus the two backward GEMMs of each), in the layout ops.c
 * and ops_backward.c use, timed with cblas_sgemm at OpenBLAS's own thread count. A section reports its
 * own time against this sum, so the ratio is measured in the same run on the same machine. */
#include "bench.h"

#include <cblas.h>
#include <stdlib.h>

static gemm_shape mk(int M, int N, int K, int ta, int tb, int count, int ldc) {
    return (gemm_shape){.M = M, .N = N, .K = K, .transa = ta, .transb = tb, .count = count, .ldc = ldc};
}

/* One block's forward GEMMs (qkv, q kᵀ, att v, proj, fc1, fc2), each repeated `depth` blocks over. */
static int block_forward(const vitq_arch *a, int B, int depth, gemm_shape *s) {
    int n = 0, N = vitq_arch_tokens(a), C = a->embed_dim, H = a->num_heads, D = C / H, F = vitq_arch_hidden(a);
    int R = B * N;
    s[n++] = mk(R, 3 * C, C, 0, 1, depth, 3 * C);   /* qkv */
    s[n++] = mk(N, N, D, 0, 1, depth * B * H, N);   /* q k^T per (image, head) */
    s[n++] = mk(N, D, N, 0, 0, depth * B * H, C);   /* att v, heads merged */
    s[n++] = mk(R, C, C, 0, 1, depth, C);           /* proj */
    s[n++] = mk(R, F, C, 0, 1, depth, F);           /* fc1 */
    s[n++] = mk(R, C, F, 0, 1, depth, C);           /* fc2 */
    return n;
}

/* Appends dinput and dweight of s[first..n) (same FLOPs each); first = 0 marks s[0] as the patch embedding,
 * which has no dinput: nothing needs the gradient of the image. Returns the new count. */
static int add_backward(gemm_shape *s, int n, int patch_first) {
    const int nf = n;
    for (int i = 0; i < nf; i++) {
        gemm_shape f = s[i];
        /* C (M,N) = A (M,K) · B (K,N or N,K): dA (M,K) = dC · B^T-ish and dB = A^T · dC */
        if (!(patch_first && i == 0)) s[n++] = mk(f.M, f.K, f.N, 0, !f.transb, f.count, f.K);
        s[n++] = f.transb ? mk(f.N, f.K, f.M, 1, 0, f.count, f.K) : mk(f.K, f.N, f.M, 1, 0, f.count, f.N);
    }
    return n;
}

int bench_forward_gemms(const vitq_arch *a, int B, gemm_shape *s) {
    int n = 0, Np = vitq_arch_tokens(a) - 1, C = a->embed_dim, pd = a->in_chans * a->patch_size * a->patch_size;
    s[n++] = mk(B * Np, C, pd, 0, 1, 1, C); /* patch embedding */
    n += block_forward(a, B, a->depth, s + n);
    s[n++] = mk(B, a->num_classes, C, 0, 1, 1, a->num_classes); /* head */
    return n;
}

int bench_train_gemms(const vitq_arch *a, int B, gemm_shape *s) {
    return add_backward(s, bench_forward_gemms(a, B, s), 1);
}

int bench_block_train_gemms(const vitq_arch *a, int B, gemm_shape *s) {
    return add_backward(s, block_forward(a, B, 1, s), 0);
}

double bench_gemm_flops(const gemm_shape *s, int n) {
    double f = 0;
    for (int i = 0; i < n; i++) f += 2.0 * s[i].M * s[i].N * s[i].K * s[i].count;
    return f;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

double bench_time_gemms(const gemm_shape *s, int n, int threads, int reps) {
    size_t amax = 0, bmax = 0, cmax = 0;
    for (int i = 0; i < n; i++) {
        size_t a = (size_t)s[i].M * s[i].K, b = (size_t)s[i].K * s[i].N, c = (size_t)s[i].M * s[i].ldc;
        amax = a > amax ? a : amax, bmax = b > bmax ? b : bmax, cmax = c > cmax ? c : cmax;
    }
    float *A = vitq_alloc(amax * 4), *Bm = vitq_alloc(bmax * 4), *Cm = vitq_alloc(cmax * 4);
    if (!A || !Bm || !Cm) {
        vitq_free(A), vitq_free(Bm), vitq_free(Cm);
        return -1;
    }
    for (size_t i = 0; i < amax; i++) A[i] = 0.1f * bench_nrand();
    for (size_t i = 0; i < bmax; i++) Bm[i] = 0.1f * bench_nrand();
    openblas_set_num_threads(threads);
    double t[32];
    if (reps > 32) reps = 32;
    for (int r = -1; r < reps; r++) {
        double t0 = bench_now();
        for (int i = 0; i < n; i++) {
            const gemm_shape *g = &s[i];
            for (int c = 0; c < g->count; c++)
                cblas_sgemm(CblasRowMajor, g->transa ? CblasTrans : CblasNoTrans, g->transb ? CblasTrans : CblasNoTrans,
                            g->M, g->N, g->K, 1.0f, A, g->transa ? g->M : g->K, Bm, g->transb ? g->K : g->N, 0.0f,
                            Cm, g->ldc);
        }
        if (r >= 0) t[r] = bench_now() - t0;
    }
    vitq_threads_set(vitq_threads_get()); /* back to OpenBLAS at 1 thread */
    vitq_free(A), vitq_free(Bm), vitq_free(Cm);
    return bench_median(t, reps);
}
