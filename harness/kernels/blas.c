/* blas.c — which OpenBLAS kernels vitq computes with. OpenBLAS picks its kernels when the library loads,
 * from the CPU or from OPENBLAS_CORETYPE; some machines set that variable to an older core (Haswell)
 * because old OpenBLAS builds misbehave on new CPUs, which halves the GEMM rate of an AVX-512 CPU.
 * VITQ_BLAS_CORETYPE chooses:
 *   auto (default)  on a CPU with AVX-512 F/BW/DQ/VL, OpenBLAS's SkylakeX kernels; elsewhere the environment's
 *   env             OPENBLAS_CORETYPE as set (or OpenBLAS's own detection)
 *   NAME            that OpenBLAS core (e.g. Haswell, SkylakeX)
 * A choice that differs from the environment is made by re-executing the command with OPENBLAS_CORETYPE
 * set (the only way: the library has already read it), then checked: sgemm against a double-precision
 * product on ViT-like shapes, both transposes; a kernel set that fails falls back to the environment's
 * choice with a warning. A replaced OPENBLAS_CORETYPE is said on stderr (unless -q), never silently. */
#include "kernels/kernels.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

char *openblas_get_corename(void); /* OpenBLAS's own, not in cblas.h */

static int cpu_avx512(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

const char *vitq_blas_core(void) {
    const char *c = openblas_get_corename();
    return c ? c : "unknown";
}

/* sgemm vs a double product on one shape: the worst |c − ref| / (Σ_k |a_ik b_kj| · 1e-5 + 1e-6). */
static double check_shape(int ta, int tb, int M, int N, int K, uint64_t *seed) {
    float *A = malloc(sizeof(float) * (size_t)M * K), *B = malloc(sizeof(float) * (size_t)K * N);
    float *C = malloc(sizeof(float) * (size_t)M * N);
    double worst = INFINITY;
    if (A && B && C) {
        for (int i = 0; i < M * K; i++) A[i] = (float)((int)((*seed = *seed * 6364136223846793005ULL + 1) >> 40) % 2001 - 1000) / 997.0f;
        for (int i = 0; i < K * N; i++) B[i] = (float)((int)((*seed = *seed * 6364136223846793005ULL + 1) >> 40) % 2001 - 1000) / 991.0f;
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A,
                    ta ? M : K, B, tb ? K : N, 0.0f, C, N);
        worst = 0;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double ref = 0, mag = 0;
                for (int k = 0; k < K; k++) {
                    double a = ta ? A[k * M + i] : A[i * K + k], b = tb ? B[j * K + k] : B[k * N + j];
                    ref += a * b, mag += fabs(a * b);
                }
                double r = fabs(C[i * N + j] - ref) / (mag * 1e-5 + 1e-6);
                worst = r > worst || isnan(r) ? (isnan(r) ? INFINITY : r) : worst;
            }
    }
    free(A), free(B), free(C);
    return worst;
}

int vitq_blas_selfcheck(double *worst) {
    static const int shapes[][5] = {{0, 1, 64, 288, 96}, {0, 0, 50, 32, 50}, {1, 0, 96, 96, 200},
                                    {0, 1, 7, 13, 5},    {1, 1, 33, 17, 384}};
    uint64_t seed = 0x5eedULL;
    double w = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        double r = check_shape(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], shapes[i][4], &seed);
        w = r > w ? r : w;
    }
    if (worst) *worst = w;
    return w <= 1.0 ? VITQ_OK : VITQ_EINVAL;
}

const char *vitq_blas_target(const char *want, const char *cur, const char *core_now, int avx512) {
    if (!want || !*want) want = "auto";
    if (!strcasecmp(want, "env")) return NULL;
    const char *target = want;
    if (!strcasecmp(want, "auto")) {
        if (!avx512) return NULL;
        target = "SkylakeX";
    }
    if (cur && *cur && !strcasecmp(cur, target)) return NULL;
    if ((!cur || !*cur) && core_now && !strcasecmp(core_now, target)) return NULL; /* OpenBLAS chose it itself */
    return target;
}

static int has_quiet(char **argv) {
    for (int i = 1; argv[i]; i++)
        if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet")) return 1;
    return 0;
}

/* Re-executes this program: by its real path, so that ps and top name it (not "exe"), else by /proc/self/exe.
 * Returns only on failure. */
static void self_exec(char **argv) {
    char path[4096];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n > 0) {
        path[n] = 0;
        execv(path, argv);
    }
    execv("/proc/self/exe", argv);
}

void vitq_blas_setup(char **argv) {
    const char *want = getenv("VITQ_BLAS_CORETYPE"), *cur = getenv("OPENBLAS_CORETYPE");
    if (getenv("VITQ_BLAS_REEXEC")) { /* the re-executed command: check the kernels it got */
        double w = 0;
        const char *was = getenv("VITQ_BLAS_ENV_WAS");
        if (vitq_blas_selfcheck(&w) != VITQ_OK) {
            fprintf(stderr, "vitq: warning: OpenBLAS's %s kernels failed a check (error %.3g x the bound); using %s\n",
                    vitq_blas_core(), w, was && *was ? was : "OpenBLAS's own choice");
            if (was && *was) setenv("OPENBLAS_CORETYPE", was, 1);
            else unsetenv("OPENBLAS_CORETYPE");
            setenv("VITQ_BLAS_CORETYPE", "env", 1);
            unsetenv("VITQ_BLAS_REEXEC");
            self_exec(argv);
            return; /* exec failed: go on with what we have */
        }
        if (was && *was && !has_quiet(argv))
            fprintf(stderr, "vitq: OpenBLAS %s kernels (checked), replacing OPENBLAS_CORETYPE=%s; "
                            "VITQ_BLAS_CORETYPE=env keeps it\n", vitq_blas_core(), was);
        unsetenv("VITQ_BLAS_REEXEC"); /* children start afresh */
        return;
    }
    const char *target = vitq_blas_target(want, cur, vitq_blas_core(), cpu_avx512());
    if (!target) return;
    setenv("VITQ_BLAS_ENV_WAS", cur ? cur : "", 1);
    setenv("OPENBLAS_CORETYPE", target, 1);
    setenv("VITQ_BLAS_REEXEC", "1", 1);
    self_exec(argv); /* on failure: the environment's kernels */
    if (cur) setenv("OPENBLAS_CORETYPE", cur, 1);
    unsetenv("VITQ_BLAS_REEXEC");
}
