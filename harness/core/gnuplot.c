/* gnuplot.c — the one way vitq draws a figure: `gnuplot -c FIG.gp FIG.tsv FIG.png.tmp.<pid>` run in the
 * figure's folder with stdin and stdout on /dev/null and stderr captured, its exit status checked and its
 * PNG published atomically. Used by `vitq plot` (run/plot.c) and the training curve (train/train_record.c).
 * Does not: write the .tsv or .gp (their makers do), or treat a missing gnuplot as an error (the caller
 * decides: the .tsv and .gp alone are useful). */
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Resolves prog through PATH (or as given when it holds a '/'); 1 if it is an executable file. */
static int find_program(const char *prog, char *out, size_t n) {
    if (strchr(prog, '/')) {
        snprintf(out, n, "%s", prog);
        return access(out, X_OK) == 0;
    }
    const char *path = getenv("PATH");
    if (!path) path = "/usr/bin:/bin";
    while (*path) {
        size_t l = strcspn(path, ":");
        snprintf(out, n, "%.*s/%s", (int)l, l ? path : ".", prog);
        if (vitq_is_file(out) && access(out, X_OK) == 0) return 1;
        path += l;
        if (*path == ':') path++;
    }
    return 0;
}

/* Runs argv in dir with stderr into err (NUL-terminated, truncated); returns the wait status or -1. */
static int run_capturing(const char *dir, char *const argv[], char *err, size_t nerr) {
    int pipefd[2];
    err[0] = 0;
    if (pipe(pipefd) != 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(pipefd[0]), close(pipefd[1]);
        return -1;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) dup2(devnull, 0), dup2(devnull, 1);
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        if (chdir(dir) != 0) _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    close(pipefd[1]);
    size_t n = 0;
    for (;;) {
        char buf[1024];
        ssize_t k = read(pipefd[0], buf, sizeof buf);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        for (ssize_t i = 0; i < k && n + 1 < nerr; i++) err[n++] = buf[i];
    }
    err[n] = 0;
    close(pipefd[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return st;
}

int vitq_gnuplot_run(const char *dir, const char *gp, const char *tsv, const char *png, const char *program,
                     int *missing, vitq_err *e) {
    *missing = 0;
    char prog[4096], final[4800];
    if (!find_program(program ? program : "gnuplot", prog, sizeof prog)) {
        *missing = 1;
        return VITQ_OK;
    }
    snprintf(final, sizeof final, "%s/%s", dir, png);
    vitq_atomic a;
    int rc = vitq_atomic_begin(&a, final, e);
    if (rc) return rc;
    const char *tmp_name = strrchr(a.tmp, '/') ? strrchr(a.tmp, '/') + 1 : a.tmp;
    char *argv[] = {prog, (char *)"-c", (char *)gp, (char *)tsv, (char *)tmp_name, NULL};
    char err[4096];
    int st = run_capturing(dir, argv, err, sizeof err);
    if (st == -1) return vitq_fail(e, VITQ_EIO, "%s: cannot run gnuplot: %s", final, strerror(errno));
    struct stat sst;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || stat(a.tmp, &sst) != 0 || sst.st_size == 0) {
        vitq_atomic_abort(&a);
        char *line = err; /* gnuplot's first non-empty stderr line */
        while (*line == '\n' || *line == ' ') line++;
        line[strcspn(line, "\n")] = 0;
        return vitq_fail(e, VITQ_EIO, "%s/%s: gnuplot failed (%s %d): %s", dir, gp,
                         WIFEXITED(st) ? "exit status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
                         *line ? line : "no message");
    }
    return vitq_atomic_commit(&a, e);
}
