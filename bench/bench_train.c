/* bench_train.c — training throughput (images/s) of vit-fmnist (28x28x1, patch 4, dim 96, depth 6, heads 3,
 * MLP 384, 10 classes) at batch 128: one step = forward, label-smoothed cross-entropy, backward, gradient
 * clipping and AdamW, the loop of `vitq train` without data loading. At 1 and 2 pool threads; then, when
 * /usr/bin/python3 has torch, the same model, batch and step in PyTorch (bench/torch_train.py) at 1 and 2
 * threads, and the ratio of vitq's best to PyTorch's best. Random images and labels (speed does not
 * depend on them). Section "train" of `make bench` (bench_main.c's table).
 *
 * The GEMM ceiling: the step's 23 GEMM shapes (forward, dinput, dweight) timed alone with cblas_sgemm
 * (bench_gemm.c) bound what any implementation on OpenBLAS can reach; the section prints vitq's share of
 * it and how the 2x target compares with it. */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bench_train_throughput(void);

enum { BATCH = 128, WARMUP = 2 };

static const vitq_arch FMNIST = {.name = "vit-fmnist", .img_size = 28, .patch_size = 4, .in_chans = 1,
                                 .num_classes = 10, .embed_dim = 96, .depth = 6, .num_heads = 3,
                                 .mlp_ratio = 4.0f, .qkv_bias = 1, .mean = {0.2860f}, .std = {0.3530f},
                                 .crop_pct = 1.0f, .interpolation = "bicubic"};

/* images/s of `steps` timed training steps at `threads` threads; < 0 on error. */
static double vitq_rate(int threads, int steps) {
    vitq_threads_set(threads);
    vitq_model *m = NULL;
    vitq_acts *a = NULL;
    vitq_grad_acts *g = NULL;
    vitq_adamw o = {0};
    vitq_err e = {{0}};
    double rate = -1;
    float *x = malloc(sizeof(float) * BATCH * 28 * 28);
    int *y = malloc(sizeof(int) * BATCH);
    vitq_rng r;
    vitq_rng_seed(&r, 1);
    for (int i = 0; i < BATCH * 28 * 28; i++) x[i] = (float)vitq_rng_normal(&r);
    for (int b = 0; b < BATCH; b++) y[b] = (int)vitq_rng_below(&r, 10);
    if (vitq_model_create(&FMNIST, &m, &e) || vitq_model_alloc_grads(m, &e) || vitq_acts_create(m, BATCH, 1, &a, &e) ||
        vitq_grad_acts_create(m, BATCH, &g, &e) || vitq_adamw_init(&o, m->n_params, 0.9f, 0.999f, 1e-8f, 0.05f, &e)) {
        printf("train: %s\n", e.msg);
        goto done;
    }
    vitq_model_init_train(m, 0, 0.02f);
    double t0 = 0;
    for (int s = 0; s < WARMUP + steps; s++) {
        if (s == WARMUP) t0 = bench_now();
        if (vitq_forward(m, a, x, BATCH, &e)) {
            printf("train: %s\n", e.msg);
            goto done;
        }
        vitq_crossentropy_forward(g->probs, a->logits, y, BATCH, 10, 0.1f);
        vitq_model_zero_grads(m);
        memset(g->dlogits, 0, sizeof(float) * BATCH * 10);
        vitq_crossentropy_backward(g->dlogits, g->probs, y, BATCH, 10, 0.1f);
        if (vitq_backward(m, a, g, g->dlogits, BATCH, &e)) {
            printf("train: %s\n", e.msg);
            goto done;
        }
        vitq_grad_clip(m->grad_slab, m->n_params, 1.0);
        vitq_adamw_step_model(&o, m, 1e-4f);
    }
    rate = (double)steps * BATCH / (bench_now() - t0);
done:
    vitq_adamw_release(&o);
    vitq_grad_acts_free(g);
    vitq_acts_free(a);
    vitq_model_free(m);
    free(x);
    free(y);
    return rate;
}

int bench_train_throughput(void) {
    const int steps = 8;
    printf("model vit-fmnist (28x28x1 patch 4, dim 96, depth 6, heads 3), batch %d, %d timed steps after %d warm-up\n",
           BATCH, steps, WARMUP);
    gemm_shape s[32];
    int ns = bench_train_gemms(&FMNIST, BATCH, s);
    double flops = bench_gemm_flops(s, ns), best = 0, ceiling = 0;
    for (int t = 1; t <= 2; t++) {
        double r = vitq_rate(t, steps);
        if (r < 0) return 1;
        double tg = bench_time_gemms(s, ns, t, 2 * steps);
        if (tg <= 0) return 1;
        printf("vitq train threads=%d images_per_s=%.1f (%.1f GFLOP/s) | sgemm alone on the step's %d GEMMs "
               "(%.2f GFLOP, OpenBLAS %d thread%s): %.1f ms = %.1f images/s -> vitq at %.0f%% of the sgemm ceiling\n",
               t, r, r / BATCH * flops * 1e-9, ns, flops * 1e-9, t, t > 1 ? "s" : "", tg * 1e3, BATCH / tg,
               100.0 * r * tg / BATCH);
        fflush(stdout);
        if (r > best) best = r;
        if (BATCH / tg > ceiling) ceiling = BATCH / tg;
    }
    double tt[3];
    bench_torch("bench/torch_train.py", "images_per_s", tt);
    const double tr = tt[1] > tt[2] ? tt[1] : tt[2];
    if (tr > 0) {
        printf("ratio vitq best / PyTorch best: %.2fx (target >= 2x)\n", best / tr);
        printf("2x PyTorch = %.1f images/s = %.2fx the best sgemm ceiling above (%.1f images/s); PyTorch runs at "
               "%.0f%% of it, vitq at %.0f%%\n",
               2 * tr, 2 * tr / ceiling, ceiling, 100.0 * tr / ceiling, 100.0 * best / ceiling);
    }
    return 0;
}
