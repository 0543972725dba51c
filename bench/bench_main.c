/* bench_main.c — `make bench` (BUILD/bench/bench [SECTION...]): runs every section of the table below,
 * or only those named on the command line, and prints which BLAS is in use. Speed is measured here,
 * never in the tests. */
#include "bench.h"

#include <cblas.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *name;
    int (*fn)(void);
    const char *what;
} bench_section;


static const bench_section sections[] = {
    {.name = "eval", .fn = bench_eval_throughput, .what = "float32 forward vs OpenBLAS sgemm on the same shapes"},
    {.name = "swin", .fn = bench_swin_throughput, .what = "Swin-T-shaped forward (224x224, batch 32) vs OpenBLAS sgemm on the same shapes"},
    {.name = "memory", .fn = bench_eval_memory, .what = "peak memory and page faults of `vitq eval` (batch 32)"},
    {.name = "quant", .fn = bench_quant_overhead, .what = "fake-quant overhead: quantized vs float forward (target <= 1.3x)"},
    {.name = "train", .fn = bench_train_throughput, .what = "training images/s of vit-fmnist vs PyTorch (target >= 2x)"},
    {.name = "recon", .fn = bench_recon_step, .what = "block-reconstruction step vs float forward+backward of the unit (target <= 1.5x)"},
    {.name = "pipeline", .fn = bench_pipeline, .what = "APHQ-ViT's whole W4A4 pipeline on the bundled model vs the reference code (target >= 10x: < 108 s, < 116 s with MR)"},
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

int bench_torch(const char *script, const char *key, double by_threads[3]) {
    by_threads[0] = by_threads[1] = by_threads[2] = 0;
    FILE *chk = fopen("/usr/bin/python3", "r");
    if (!chk) {
        printf("PyTorch: /usr/bin/python3 not found, skipped\n");
        return 0;
    }
    fclose(chk);
    char cmd[512], pat[128];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s 2>&1", script);
    snprintf(pat, sizeof pat, "threads=%%d %s=%%lf", key);
    FILE *p = popen(cmd, "r");
    if (!p) return 0;
    char line[1024];
    int found = 0;
    while (fgets(line, sizeof line, p)) {
        const char *at = strstr(line, "threads=");
        double v = 0;
        int t = 0;
        if (at && sscanf(at, pat, &t, &v) == 2 && t >= 1 && t <= 2) by_threads[t] = v, found++;
        fputs(line, stdout);
    }
    const int st = pclose(p), code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (!found && code == 77) return 0; /* the script said why it skipped (no torch) */
    if (!found && code != 0) printf("PyTorch: %s did not run (exit %d): skipped\n", script, code);
    else if (!found) printf("PyTorch: %s printed no line with threads=N %s=VALUE: skipped\n", script, key);
    return found;
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

double bench_urand(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) / (double)(1ull << 53);
}

float bench_nrand(void) { /* Box-Muller */
    double u = bench_urand() + 1e-12, v = bench_urand();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

float bench_tnrand(void) { /* as timm's trunc_normal_ */
    float x;
    do x = bench_nrand();
    while (x < -2.0f || x > 2.0f);
    return x;
}

vitq_model *bench_random_model(const vitq_arch *a) {
    vitq_model *m = NULL;
    vitq_err e = {{0}};
    if (vitq_model_create(a, &m, &e)) {
        printf("cannot create model: %s\n", e.msg);
        return NULL;
    }
    for (int i = 0; i < m->n_table; i++) {
        vitq_tensor_ref *r = &m->table[i];
        int is_norm = strstr(r->name, "norm") != NULL, is_bias = strstr(r->name, ".bias") != NULL;
        for (int64_t k = 0; k < r->numel; k++)
            r->data[k] = is_norm ? (is_bias ? 0.02f * bench_nrand() : 1.0f + 0.1f * bench_nrand())
                                 : is_bias ? 0.01f * bench_nrand() : 0.02f * bench_tnrand();
    }
    return m;
}

static void usage(FILE *to, int n) {
    fprintf(to, "usage: bench [SECTION...]   (make bench SECTIONS=\"...\"): every section, or those named\n");
    for (int i = 0; i < n; i++) fprintf(to, "  %-9s %s\n", sections[i].name, sections[i].what);
}

int main(int argc, char **argv) {
    const int n = (int)(sizeof sections / sizeof sections[0]);
    for (int a = 1; a < argc; a++) { /* every name checked before anything runs: a typo is not a silent no-op */
        if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) return usage(stdout, n), 0;
        int known = 0;
        for (int i = 0; i < n; i++) known |= !strcmp(argv[a], sections[i].name);
        if (!known) {
            fprintf(stderr, "bench: unknown section '%s'\n", argv[a]);
            return usage(stderr, n), 2;
        }
    }
    vitq_blas_setup(argv); /* the kernels `vitq` uses (VITQ_BLAS_CORETYPE), so its figures are the command's */
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
