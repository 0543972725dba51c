/* bench.h — the `make bench` program: one table of sections in bench_main.c, each a function in its
 * own bench/bench_*.c. A section prints its own lines (plain text, one figure per line) and returns 0,
 * or non-zero if it could not run. Add a section: write `int bench_NAME(void)` in bench/bench_NAME.c,
 * declare it here, and add one row to the table in bench_main.c. */
#ifndef VITQ_BENCH_H
#define VITQ_BENCH_H

#include "vitq.h"

/* Float32 eval throughput of a DeiT-Tiny-shaped and a 28x28 model against OpenBLAS sgemm on the same
 * GEMM shapes, and peak memory / page faults of `vitq eval` at batch 32 (bench_eval.c). */
int bench_eval_throughput(void);
int bench_eval_memory(void);
/* Float32 eval throughput of a Swin-T-shaped model at batch 32 against sgemm on its GEMM shapes (bench_swin.c). */
int bench_swin_throughput(void);
int bench_quant_overhead(void);   /* bench_quant.c */
int bench_train_throughput(void); /* bench_train.c */
int bench_recon_step(void);       /* bench_recon.c */
int bench_pipeline(void);         /* bench_pipeline.c: minutes; needs the repository root as cwd */

/* Helpers shared by sections (bench_main.c). */
double bench_now(void);
/* Path of the `vitq` binary built next to the bench (BUILD/vitq), into buf. */
const char *bench_vitq_path(char *buf, size_t n);
/* One seeded xorshift stream for every section: uniform [0,1), standard normal, normal truncated to [-2,2]. */
double bench_urand(void);
float bench_nrand(void);
float bench_tnrand(void);
/* A model of arch `a` with timm-like random weights (trunc-normal std 0.02 linear weights, LayerNorm
 * weights near 1), so activations look like a trained model's; NULL (after printing why) on failure. */
vitq_model *bench_random_model(const vitq_arch *a);

/* GEMM references (bench_gemm.c). C (M,N) = op(A) · op(B), repeated `count` times, C's row stride ldc. */
typedef struct {
    int M, N, K, transa, transb, count, ldc;
} gemm_shape;
/* Every GEMM of one forward of B images (8 shapes), or of one training step: the forward's plus dinput and
 * dweight of each (23 shapes; none for the image's gradient). Return the number written to s. */
int bench_forward_gemms(const vitq_arch *a, int B, gemm_shape *s);
int bench_train_gemms(const vitq_arch *a, int B, gemm_shape *s);
/* One block's training-step GEMMs at batch B: its 6 forward shapes, then dinput and dweight of each (18). */
int bench_block_train_gemms(const vitq_arch *a, int B, gemm_shape *s);
double bench_gemm_flops(const gemm_shape *s, int n);
/* Median seconds of `reps` (<= 32) passes over all shapes, OpenBLAS at `threads` threads, after a warm-up
 * pass; < 0 if out of memory. Leaves OpenBLAS at 1 thread again (the pool's setting). */
double bench_time_gemms(const gemm_shape *s, int n, int threads, int reps);
double bench_median(double *t, int n);

/* Runs a PyTorch script of bench/ (`/usr/bin/python3 SCRIPT`), echoing its output; by_threads[t] (t = 1, 2)
 * gets the value of each line "... threads=t KEY=value" (0 where none). Returns how many it read: 0 when
 * python3 is missing, the script skipped (exit 77 after saying why: no torch) or failed (each said once). */
int bench_torch(const char *script, const char *key, double by_threads[3]);

#endif
