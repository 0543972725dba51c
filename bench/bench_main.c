/* bench_main.c — `make bench` (BUILD/bench/bench [SECTION...]): runs every section of the table below,
 * or only those named on the command line, and prints which BLAS is in use. Speed is measured here,
 * never in the tests. */
#include "bench.h"

#include <cblas.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *name;
    int (*fn)(void);
    const char *what;
} bench_section;

int bench_quant_overhead(void);  /* bench_quant.c */
int bench_train_throughput(void); /* bench_train.c */

static const bench_section sections[] = {
    {.name = "eval", .fn = bench_eval_throughput, .what = "float32 forward vs OpenBLAS sgemm on the same shapes"},
    {.name = "memory", .fn = bench_eval_memory, .what = "peak memory and page faults of `vitq eval` (batch 32)"},
    {.name = "quant", .fn = bench_quant_overhead, .what = "fake-quant overhead: quantized vs float forward (target <= 1.3x)"},
    {.name = "train", .fn = bench_train_throughput, .what = "training images/s of vit-fmnist vs PyTorch (target >= 2x)"},
};

double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *bench_vitq_path(char *buf, size_t n) {
    char exe[4096];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k <= 0) {
        snprintf(buf, n, "build/vitq");
        return buf;
    }
    exe[k] = 0;
    snprintf(buf, n, "%s/../vitq", dirname(exe));
    return buf;
}

int main(int argc, char **argv) {
    const int n = (int)(sizeof sections / sizeof sections[0]);
    printf("vitq %s bench: %ld online CPUs\n", VITQ_VERSION, sysconf(_SC_NPROCESSORS_ONLN));
    printf("BLAS: OpenBLAS %s\n", openblas_get_config());
    int failed = 0;
    for (int i = 0; i < n; i++) {
        int wanted = argc < 2;
        for (int a = 1; a < argc; a++) wanted |= !strcmp(argv[a], sections[i].name);
        if (!wanted) continue;
        printf("\n== %s: %s\n", sections[i].name, sections[i].what);
        fflush(stdout);
        if (sections[i].fn() != 0) {
            printf("%s: FAILED\n", sections[i].name);
            failed++;
        }
        fflush(stdout);
    }
    return failed ? 1 : 0;
}
