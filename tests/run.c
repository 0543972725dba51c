/* run.c — the test runner: every TEST() linked in, then every end-to-end script in tests/e2e/ (one
 * test each, its exit status the verdict). `run PREFIX...` runs only tests whose name starts with a prefix.
 * Ends with "tests: N passed, N failed". */

#include "test.h"

#include <dirent.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    const char *name, *file;
    test_fn fn;
} test_case;

static test_case g_tests[1024];
static int g_n_tests;
static int g_failures; /* failures within the current test */
static char g_tmp[256];

void test_register(const char *name, test_fn fn, const char *file) {
    if (g_n_tests < 1024) g_tests[g_n_tests++] = (test_case){name, file, fn};
}

void test_failf(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "    %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    g_failures++;
}

int test_allclose(const char *file, int line, const char *what, const float *a, const float *b, long n,
                  double rtol, double atol) {
    double worst = 0;
    long wi = -1;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double lim = atol + rtol * fabs((double)b[i]);
        double r = d / (lim > 0 ? lim : 1e-30);
        if (!(r <= worst) || isnan(d)) {
            worst = isnan(d) ? INFINITY : r;
            wi = i;
        }
    }
    if (wi >= 0 && !(worst <= 1.0)) {
        test_failf(file, line, "%s: %ld values, worst at [%ld]: %.9g vs %.9g (rtol %g, atol %g)", what, n, wi,
                   (double)a[wi], (double)b[wi], rtol, atol);
        return 0;
    }
    return 1;
}

const char *test_build_dir(void) {
    const char *b = getenv("BUILD");
    return b && *b ? b : "build";
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

const char *test_tmpdir(void) {
    if (g_tmp[0]) nftw(g_tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/vitq-test-XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        exit(2);
    }
    return g_tmp;
}

static int cmp_tests(const void *a, const void *b) {
    const test_case *x = a, *y = b;
    int c = strcmp(x->file, y->file);
    return c ? c : strcmp(x->name, y->name);
}

static int selected(const char *name, int argc, char **argv) {
    if (argc <= 1) return 1;
    for (int i = 1; i < argc; i++)
        if (strncmp(name, argv[i], strlen(argv[i])) == 0) return 1;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    int passed = 0, failed = 0;
    setvbuf(stdout, NULL, _IONBF, 0);
    /* Tests that drive the command line find it here, so none can silently skip for want of it. */
    char bin[512];
    snprintf(bin, sizeof bin, "%s/vitq", test_build_dir());
    setenv("VITQ_BIN", bin, 0);
    qsort(g_tests, (size_t)g_n_tests, sizeof g_tests[0], cmp_tests);
    for (int i = 0; i < g_n_tests; i++) {
        if (!selected(g_tests[i].name, argc, argv)) continue;
        g_failures = 0;
        double t0 = vitq_now();
        g_tests[i].fn();
        double dt = vitq_now() - t0;
        if (g_tmp[0]) {
            nftw(g_tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
            g_tmp[0] = 0;
        }
        if (g_failures == 0) {
            passed++;
            printf("ok   %-44s %6.2fs\n", g_tests[i].name, dt);
        } else {
            failed++;
            printf("FAIL %-44s (%d checks failed)\n", g_tests[i].name, g_failures);
        }
    }
    /* End-to-end scripts: tests/e2e/NAME.sh, run with BUILD in the environment. */
    DIR *d = opendir("tests/e2e");
    char *scripts[256];
    int ns = 0;
    for (struct dirent *de; d && (de = readdir(d)) && ns < 256;) {
        size_t l = strlen(de->d_name);
        if (l > 3 && strcmp(de->d_name + l - 3, ".sh") == 0) scripts[ns++] = strdup(de->d_name);
    }
    if (d) closedir(d);
    qsort(scripts, (size_t)ns, sizeof scripts[0], cmp_str);
    for (int i = 0; i < ns; i++) {
        char name[300];
        snprintf(name, sizeof name, "e2e_%.*s", (int)(strlen(scripts[i]) - 3), scripts[i]);
        if (!selected(name, argc, argv)) {
            free(scripts[i]);
            continue;
        }
        char cmd[600];
        snprintf(cmd, sizeof cmd, "BUILD='%s' bash tests/e2e/%s > /tmp/vitq-e2e-%s.log 2>&1", test_build_dir(),
                 scripts[i], scripts[i]);
        double t0 = vitq_now();
        int st = system(cmd);
        double dt = vitq_now() - t0;
        if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            passed++;
            printf("ok   %-44s %6.2fs\n", name, dt);
        } else {
            failed++;
            printf("FAIL %-44s (log: /tmp/vitq-e2e-%s.log)\n", name, scripts[i]);
            snprintf(cmd, sizeof cmd, "tail -n 20 /tmp/vitq-e2e-%s.log | sed 's/^/    /' >&2", scripts[i]);
            if (system(cmd) != 0) { /* the log tail is a courtesy */
            }
        }
        free(scripts[i]);
    }
    printf("tests: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
