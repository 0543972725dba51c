/* run.c — the test runner: every TEST() linked in, then every end-to-end script in tests/e2e/ (one
 * test each, its exit status the verdict). `run PREFIX...` runs only tests whose name starts with a prefix.
 *
 * Each test runs in a forked child with a fresh temporary folder, so a crash, an abort or a leak report
 * fails that test alone and the closing line is always printed. Child exit status: 0 passed, TEST_FAILED
 * checks failed, TEST_SKIP skipped; anything else (a signal, a sanitizer's exit code) is a failure naming it.
 * A script skips with exit 77 after printing its reason as its last line (shown on the "skip" line).
 * E2E logs go to $BUILD/tests/e2e-logs/NAME.log. Ends with "tests: N passed, N failed" (the CI line);
 * skipped tests are listed on the line before it and counted in neither. */

#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum { MAX_TESTS = 1024, MAX_SCRIPTS = 256, TEST_FAILED = 3, TEST_SKIP = 77 };

typedef struct {
    const char *name, *file;
    test_fn fn;
} test_case;

typedef struct {
    int passed, failed, skipped;
    char skipped_names[2048];
} tally;

static test_case g_tests[MAX_TESTS];
static int g_n_tests, g_overflow;
static int g_failures;      /* failures within the current test (in the child) */
static char g_tmp[256];     /* the current test's temporary folder */

void test_register(const char *name, test_fn fn, const char *file) {
    if (g_n_tests < MAX_TESTS)
        g_tests[g_n_tests++] = (test_case){name, file, fn};
    else
        g_overflow++; /* reported by main as a failure: a silently dropped test would never run */
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

void test_skip(const char *why) {
    fflush(NULL);
    printf("    skipped: %s\n", why);
    fflush(stdout);
    exit(TEST_SKIP);
}

void test_fmt_i(char *buf, long long v) { snprintf(buf, 48, "%lld", v); }
void test_fmt_u(char *buf, unsigned long long v) { snprintf(buf, 48, "%llu", v); }
void test_fmt_d(char *buf, double v) { snprintf(buf, 48, "%.9g", v); }

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

static void rm_tree(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

const char *test_tmpdir(void) {
    /* The runner made g_tmp before the fork; a second call empties it again. */
    rm_tree(g_tmp);
    if (mkdir(g_tmp, 0700) != 0) {
        fprintf(stderr, "    test_tmpdir: %s: %s\n", g_tmp, strerror(errno));
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

/* The last non-empty line of a script's log (its reason for skipping), without the newline. */
static void last_line(const char *log, char *out, size_t n) {
    FILE *f = fopen(log, "r");
    char line[512];
    out[0] = 0;
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (line[0]) snprintf(out, n, "%s", line);
    }
    if (f) fclose(f);
}

/* Prints the verdict line of one test from its child's wait status and counts it; a skipped script's
 * reason is the last line it printed. */
static void verdict(tally *t, const char *name, int st, double dt, const char *log) {
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        t->passed++;
        printf("ok   %-44s %6.2fs\n", name, dt);
        return;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == TEST_SKIP) {
        t->skipped++;
        size_t u = strlen(t->skipped_names);
        snprintf(t->skipped_names + u, sizeof t->skipped_names - u, "%s%s", u ? ", " : "", name);
        char why[512] = "";
        if (log) last_line(log, why, sizeof why);
        printf("skip %s%s%s%s\n", name, why[0] ? " (" : "", why, why[0] ? ")" : "");
        return;
    }
    t->failed++;
    if (WIFSIGNALED(st))
        printf("FAIL %-44s (crashed: signal %d, %s)\n", name, WTERMSIG(st), strsignal(WTERMSIG(st)));
    else if (log)
        printf("FAIL %-44s (exit status %d; log: %s)\n", name, WEXITSTATUS(st), log);
    else if (WEXITSTATUS(st) == TEST_FAILED)
        printf("FAIL %-44s (%.2fs; checks failed, see above)\n", name, dt);
    else
        printf("FAIL %-44s (exit status %d: a sanitizer report or an exit() above)\n", name, WEXITSTATUS(st));
}

/* Runs one TEST in a child process with its own temporary folder; returns the wait status. */
static int run_one(const test_case *tc) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/vitq-test-XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 2 << 8;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        rm_tree(g_tmp);
        return 2 << 8;
    }
    if (pid == 0) {
        g_failures = 0;
        tc->fn();
        fflush(NULL);
        if (g_failures) fprintf(stderr, "    %d check%s failed\n", g_failures, g_failures == 1 ? "" : "s");
        exit(g_failures ? TEST_FAILED : 0);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    rm_tree(g_tmp);
    return st;
}

/* Runs tests/e2e/NAME.sh with its output in $BUILD/tests/e2e-logs/NAME.log; returns the wait status. */
static int run_script(const char *script, char *log, size_t nlog) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tests/e2e-logs", test_build_dir());
    mkdir(dir, 0755);
    snprintf(log, nlog, "%s/%.*s.log", dir, (int)(strlen(script) - 3), script);
    char path[600];
    snprintf(path, sizeof path, "tests/e2e/%s", script);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return 2 << 8;
    if (pid == 0) {
        FILE *f = freopen(log, "w", stdout);
        if (!f || dup2(fileno(stdout), 2) < 0) _exit(2);
        setenv("BUILD", test_build_dir(), 1);
        execlp("bash", "bash", path, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return st;
}

/* The last lines of a failed script's log, indented, on stderr. */
static void log_tail(const char *log) {
    FILE *f = fopen(log, "r");
    if (!f) return;
    char lines[20][512];
    int n = 0;
    while (fgets(lines[n % 20], sizeof lines[0], f)) n++;
    fclose(f);
    for (int i = n > 20 ? n - 20 : 0; i < n; i++) fprintf(stderr, "    %s", lines[i % 20]);
}

static void run_scripts(tally *t, int argc, char **argv) {
    DIR *d = opendir("tests/e2e");
    char *scripts[MAX_SCRIPTS];
    int ns = 0;
    for (struct dirent *de; d && (de = readdir(d));) {
        size_t l = strlen(de->d_name);
        if (l <= 3 || strcmp(de->d_name + l - 3, ".sh") != 0) continue;
        if (ns == MAX_SCRIPTS) {
            t->failed++;
            printf("FAIL %-44s (more than %d scripts in tests/e2e)\n", de->d_name, MAX_SCRIPTS);
            continue;
        }
        scripts[ns++] = strdup(de->d_name);
    }
    if (d) closedir(d);
    qsort(scripts, (size_t)ns, sizeof scripts[0], cmp_str);
    for (int i = 0; i < ns; i++) {
        char name[300], log[1024];
        snprintf(name, sizeof name, "e2e_%.*s", (int)(strlen(scripts[i]) - 3), scripts[i]);
        if (selected(name, argc, argv)) {
            double t0 = vitq_now();
            int st = run_script(scripts[i], log, sizeof log);
            verdict(t, name, st, vitq_now() - t0, log);
            if (!(WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == TEST_SKIP))) log_tail(log);
        }
        free(scripts[i]);
    }
}

int main(int argc, char **argv) {
    tally t = {0};
    setvbuf(stdout, NULL, _IONBF, 0);
    /* Tests that drive the command line find it here, so none can silently skip for want of it. */
    char bin[512];
    snprintf(bin, sizeof bin, "%s/vitq", test_build_dir());
    setenv("VITQ_BIN", bin, 0);
    if (g_overflow) {
        t.failed++;
        printf("FAIL %-44s (%d tests registered beyond the table's %d; raise MAX_TESTS in tests/run.c)\n",
               "registration", g_overflow, MAX_TESTS);
    }
    qsort(g_tests, (size_t)g_n_tests, sizeof g_tests[0], cmp_tests);
    for (int i = 0; i < g_n_tests; i++) {
        if (!selected(g_tests[i].name, argc, argv)) continue;
        double t0 = vitq_now();
        int st = run_one(&g_tests[i]);
        verdict(&t, g_tests[i].name, st, vitq_now() - t0, NULL);
    }
    run_scripts(&t, argc, argv);
    if (t.skipped) printf("skipped: %d (%s)\n", t.skipped, t.skipped_names);
    printf("tests: %d passed, %d failed\n", t.passed, t.failed);
    return t.failed ? 1 : 0;
}
