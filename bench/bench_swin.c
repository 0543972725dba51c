/* bench_swin.c — float32 eval throughput of the Swin forward (model/swin.c) on a Swin-T-shaped random model
 * (swin_tiny_patch4_window7_224: 224x224x3, patch 4, embed 96, depths 2,2,6,2, heads 3,6,12,24, window 7,
 * 1000 classes) at batch 32, at 1 and 2 pool threads, against OpenBLAS sgemm alone on the same GEMM shapes
 * measured in the same run (as bench_eval.c does for ViT): patch embedding; per block qkv, q·k^T and att·v per
 * (window, head), proj, fc1, fc2; each patch merging's reduction; the head. "x% of sgemm" = summed GEMM time /
 * forward time: what the window gathers, LayerNorms, softmax with bias and mask, GELU and the adds cost on top. */
#include "bench.h"

#include <stdlib.h>

static gemm_shape mk(int M, int N, int K, int tb, int count, int ldc) {
    return (gemm_shape){.M = M, .N = N, .K = K, .transa = 0, .transb = tb, .count = count, .ldc = ldc};
}

/* Every GEMM of one Swin forward of B images (at most 4 + 6 per stage shapes). */
static int swin_forward_gemms(const vitq_model *m, int B, gemm_shape *s) {
    const vitq_arch *a = &m->arch;
    const vitq_swin_layout *l = vitq_swin_p(m)->lay;
    int n = 0;
    s[n++] = mk(B * l->grid * l->grid, a->embed_dim, a->in_chans * a->patch_size * a->patch_size, 1, 1, a->embed_dim);
    for (int st = 0; st < l->n_stages; st++) {
        const vitq_swin_stage_geom *sg = &l->stage[st];
        const vitq_swin_block_geom *g = &l->blk[sg->first];
        const int C = g->C, L = g->res * g->res, Rw = B * g->nw * g->N, d = sg->depth;
        if (st > 0) s[n++] = mk(B * L, C, 2 * C, 1, 1, C); /* downsample.reduction */
        s[n++] = mk(Rw, 3 * C, C, 1, d, 3 * C);                            /* qkv */
        s[n++] = mk(g->N, g->N, g->D, 1, d * B * g->nw * g->heads, g->N); /* q k^T per (window, head) */
        s[n++] = mk(g->N, g->D, g->N, 0, d * B * g->nw * g->heads, C);    /* att v, heads merged */
        s[n++] = mk(Rw, C, C, 1, d, C);                                    /* proj */
        s[n++] = mk(B * L, g->F, C, 1, d, g->F);                           /* fc1 */
        s[n++] = mk(B * L, C, g->F, 1, d, C);                              /* fc2 */
    }
    const int Cl = l->stage[l->n_stages - 1].C;
    s[n++] = mk(B, a->num_classes, Cl, 1, 1, a->num_classes); /* head.fc */
    return n;
}

static double time_forward(vitq_model *m, vitq_acts *a, const float *images, int B, int threads, int reps) {
    vitq_threads_set(threads);
    vitq_err e = {{0}};
    double t[16];
    for (int r = -1; r < reps; r++) {
        const double t0 = bench_now();
        if (vitq_forward(m, a, images, B, &e)) {
            printf("forward failed: %s\n", e.msg);
            return -1;
        }
        if (r >= 0) t[r] = bench_now() - t0;
    }
    return bench_median(t, reps);
}

int bench_swin_throughput(void) {
    const int B = 32, reps = 3;
    vitq_arch ar;
    vitq_err e = {{0}};
    if (vitq_arch_builtin("swin_tiny_patch4_window7_224", &ar, &e)) {
        printf("%s\n", e.msg);
        return 1;
    }
    vitq_model *m = bench_random_model(&ar);
    vitq_acts *a = NULL;
    if (!m || vitq_acts_create(m, B, 0, &a, &e)) {
        printf("%s\n", m ? e.msg : "no model");
        vitq_model_free(m);
        return 1;
    }
    const int64_t nimg = (int64_t)B * ar.in_chans * ar.img_size * ar.img_size;
    float *images = malloc(sizeof(float) * (size_t)nimg);
    for (int64_t i = 0; i < nimg; i++) images[i] = bench_nrand();
    gemm_shape s[64];
    const int ns = swin_forward_gemms(m, B, s);
    const double flops = bench_gemm_flops(s, ns);
    printf("swin_tiny_patch4_window7_224 (random weights): batch %d, %.1f GFLOP of GEMMs per forward, activations "
           "%.0f MB (eval mode)\n", B, flops * 1e-9, (double)a->bytes / 1048576.0);
    const int saved = vitq_threads_get();
    for (int th = 1; th <= 2; th++) {
        const double tf = time_forward(m, a, images, B, th, reps), tg = bench_time_gemms(s, ns, th, reps);
        if (tf <= 0) break;
        printf("  %d thread%s: %8.1f images/s  forward %7.1f ms (%5.1f GFLOP/s) | sgemm alone %7.1f ms "
               "(%5.1f GFLOP/s, OpenBLAS %d thread%s) -> %.0f%% of sgemm throughput\n",
               th, th > 1 ? "s" : " ", B / tf, tf * 1e3, flops / tf * 1e-9, tg * 1e3, flops / tg * 1e-9, th,
               th > 1 ? "s" : "", 100.0 * tg / tf);
        fflush(stdout);
    }
    vitq_threads_set(saved);
    free(images);
    vitq_acts_free(a);
    vitq_model_free(m);
    return 0;
}
