/* progress.c — one progress line per stage on stderr: count, rate, ETA. On a TTY the line is
 * rewritten with \r a few times a second; otherwise (CI logs) a line is printed every ~10 s. */
#include "core/core.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

volatile int vitq_interrupted = 0;
static int g_quiet = 0;

void vitq_set_quiet(int quiet) { g_quiet = quiet; }
int vitq_quiet(void) { return g_quiet; }

double vitq_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fmt_secs(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e7) {
        snprintf(buf, n, "?");
    } else if (s < 60) {
        snprintf(buf, n, "%.0fs", s);
    } else if (s < 3600) {
        snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    } else {
        snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
    }
}

void vitq_progress_start(vitq_progress *p, const char *label, int64_t total) {
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label);
    p->total = total;
    p->t0 = vitq_now();
    p->tty = isatty(STDERR_FILENO);
    p->quiet = g_quiet;
}

/* Below this many seconds since the start a running line shows no rate or ETA ("-/s ETA ?"): the first
 * update prints at once, and a count over a few microseconds gave rates like 2584398.4/s and "ETA 0s". */
#define PROGRESS_RATE_AFTER 0.5

static void print_line(vitq_progress *p, const char *extra, int final) {
    double el = vitq_now() - p->t0;
    const int known = final || el >= PROGRESS_RATE_AFTER;
    double rate = el > 0 ? (double)p->done / el : 0;
    char eta[32], elapsed[32], bar[24], rs[32] = "-";
    fmt_secs(eta, sizeof eta, known && rate > 0 ? (double)(p->total - p->done) / rate : -1);
    fmt_secs(elapsed, sizeof elapsed, el);
    if (known) snprintf(rs, sizeof rs, "%.1f", rate);
    int width = 20, fill = p->total > 0 ? (int)(width * p->done / p->total) : 0;
    if (fill > width) fill = width;
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "%s%s [%s] %lld/%lld %s/s %s %s%s%s", p->tty ? "\r\033[K" : "", p->label, bar,
            (long long)p->done, (long long)p->total, rs, final ? "in" : "ETA", final ? elapsed : eta,
            extra ? " " : "", extra ? extra : "");
    if (final || !p->tty) fputc('\n', stderr);
    fflush(stderr);
}

void vitq_progress_update(vitq_progress *p, int64_t done, const char *extra) {
    p->done = done;
    if (p->quiet) return;
    double t = vitq_now();
    double every = p->tty ? 0.2 : 10.0;
    if (t - p->last_print < every) return;
    p->last_print = t;
    print_line(p, extra, 0);
}

void vitq_progress_finish(vitq_progress *p, const char *extra) {
    if (p->quiet) return;
    print_line(p, extra, 1);
}
