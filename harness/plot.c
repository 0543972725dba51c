/* plot.c — gnuplot figures from a run: accuracy-versus-bits curves and float-versus-quantized activation
 * histograms, each as <fig>.tsv + <fig>.gp + <fig>.png (layout and naming in plot.h).
 *
 * Does: turns the summary table (results.c) into one data file per figure, writes a standalone gnuplot
 * script per figure, runs `gnuplot -c fig.gp fig.tsv fig.png` in the plots folder with its exit status
 * checked, publishes every file atomically (temp + rename).
 * Does not: read HDF5 itself (results.c does), print (the command does), draw anything without gnuplot.
 * Mirrors: STYLE.md section 6 "Plots (gnuplot)" and section 9 (golden-test the .tsv/.gp, not the PNG).
 */
#include "plot.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------
 * A growing string
 * ------------------------------------------------------------------------------------------- */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->n;
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? room : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && (size_t)k < room) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + (size_t)k + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
}

/* A gnuplot double-quoted string literal's contents. */
static void sb_gpstr(sbuf *b, const char *s) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') sb_printf(b, "\\%c", *s);
        else if (*s == '\n') sb_printf(b, " ");
        else sb_printf(b, "%c", *s);
    }
}

/* A comment line's contents (no newlines). */
static void sb_comment(sbuf *b, const char *s) {
    for (; *s; s++) sb_printf(b, "%c", *s == '\n' || *s == '\r' ? ' ' : *s);
}

/* A TSV field (tabs and newlines would break the table). */
static void sb_field(sbuf *b, const char *s) {
    for (; *s; s++) sb_printf(b, "%c", *s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s);
}

static char *sb_take(sbuf *b) {
    if (b->oom) {
        free(b->p);
        return NULL;
    }
    if (!b->p) return strdup("");
    return b->p;
}

static void sanitize(char *out, size_t n, const char *s) {
    size_t i = 0;
    for (; *s && i + 1 < n; s++, i++) {
        char c = *s;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                 c == '=' || c == '+' || c == '-';
        out[i] = ok ? c : '_';
    }
    out[i] = 0;
}

static int parse_num(const char *s, double *v) {
    char *end = NULL;
    if (!s || !*s) return 0;
    errno = 0;
    *v = strtod(s, &end);
    return !*end && !errno && isfinite(*v);
}

static const char *metric_label(const char *m) {
    if (!strcmp(m, "top1")) return "top-1 accuracy (%)";
    if (!strcmp(m, "top5")) return "top-5 accuracy (%)";
    return "loss (nats, mean cross-entropy)";
}

static const char *metric_title(const char *m) {
    if (!strcmp(m, "top1")) return "top-1 accuracy";
    if (!strcmp(m, "top5")) return "top-5 accuracy";
    return "loss";
}

/* "bits" style axes get a unit in the label. */
static void axis_label(char *out, size_t n, const char *axis) {
    if (strstr(axis, "bit")) snprintf(out, n, "bit width: %s (bits)", axis);
    else snprintf(out, n, "%s", axis);
}

static int find_axis(const vitq_summary *s, const char *name) {
    for (int a = 0; a < s->n_axes; a++)
        if (!strcmp(s->axis_names[a], name)) return a;
    return -1;
}

static void list_axes(char *out, size_t n, const vitq_summary *s) {
    size_t k = 0;
    out[0] = 0;
    for (int a = 0; a < s->n_axes && k < n; a++) {
        int w = snprintf(out + k, n - k, "%s%s", a ? ", " : "", s->axis_names[a]);
        if (w < 0) break;
        k += (size_t)w;
    }
    if (!s->n_axes) snprintf(out, n, "none");
}

/* ---------------------------------------------------------------------------------------------
 * Curves
 * ------------------------------------------------------------------------------------------- */
/* "-" or "": the axis does not apply to the cell (the float baseline cell "fp32" has "-" everywhere). */
static int is_na(const char *v) { return !*v || !strcmp(v, "-"); }

/* Numeric: every done cell's value is a number or not-applicable, and at least one is a number. */
static int axis_numeric(const vitq_summary *s, int a) {
    int any = 0;
    for (int i = 0; i < s->n_rows; i++) {
        if (strcmp(s->status[i], "done") || is_na(s->axis_values[i][a])) continue;
        double v;
        if (!parse_num(s->axis_values[i][a], &v)) return 0;
        any = 1;
    }
    return any;
}

/* A baseline row: no axis applies to it. */
static int is_baseline(const vitq_summary *s, int i) {
    for (int a = 0; a < s->n_axes; a++)
        if (!is_na(s->axis_values[i][a])) return 0;
    return s->n_axes > 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The series label of row i: "ax=val, ax=val" over the series axes. */
static void series_label(char *out, size_t n, const vitq_summary *s, int i, const int *ser, int n_ser) {
    size_t k = 0;
    out[0] = 0;
    for (int j = 0; j < n_ser && k < n; j++) {
        int w = snprintf(out + k, n - k, "%s%s=%s", j ? ", " : "", s->axis_names[ser[j]], s->axis_values[i][ser[j]]);
        if (w < 0) break;
        k += (size_t)w;
    }
}

int vitq_plot_curve_text(const vitq_summary *s, const vitq_plot_opts *o, const char *run_label, char *fig,
                         size_t fig_size, char **tsv, char **gp, vitq_err *e) {
    *tsv = *gp = NULL;
    const char *metric = o->metric ? o->metric : "top1";
    if (strcmp(metric, "top1") && strcmp(metric, "top5") && strcmp(metric, "loss"))
        return vitq_fail(e, VITQ_EINVAL, "--metric: expected top1, top5 or loss, got '%s'", metric);
    char axes[512];
    list_axes(axes, sizeof axes, s);
    int x = -1;
    if (o->x_axis) {
        x = find_axis(s, o->x_axis);
        if (x < 0) return vitq_fail(e, VITQ_EINVAL, "%s: no axis '%s' (axes: %s)", run_label, o->x_axis, axes);
        if (!axis_numeric(s, x))
            return vitq_fail(e, VITQ_EINVAL, "%s: axis '%s' is not numeric in every done cell; --x needs numbers",
                             run_label, o->x_axis);
    } else {
        for (int a = 0; a < s->n_axes && x < 0; a++)
            if (axis_numeric(s, a)) x = a;
        if (x < 0)
            return vitq_fail(e, VITQ_EINVAL, "%s: no axis has numeric values in every done cell (axes: %s); "
                                             "curves need one (--x AXIS)", run_label, axes);
    }
    /* Series axes. */
    int *ser = calloc((size_t)(s->n_axes + 1), sizeof(int)), n_ser = 0;
    int *in_ser = calloc((size_t)(s->n_axes + 1), sizeof(int));
    double *xs = calloc((size_t)(s->n_rows + 1), sizeof(double));
    char **labels = calloc((size_t)(s->n_rows + 1), sizeof(char *));
    int *row_series = calloc((size_t)(s->n_rows + 1), sizeof(int));
    double *sum = NULL;
    int *cnt = NULL;
    int rc = VITQ_OK, n_x = 0, n_series = 0, n_done = 0;
    sbuf t = {0}, g = {0};
    if (!ser || !in_ser || !xs || !labels || !row_series) {
        rc = vitq_fail(e, VITQ_ENOMEM, "plot: out of memory");
        goto out;
    }
    if (o->series) {
        char *list = strdup(o->series);
        if (!list) {
            rc = vitq_fail(e, VITQ_ENOMEM, "plot: out of memory");
            goto out;
        }
        for (char *sv = NULL, *tok = strtok_r(list, ",", &sv); tok; tok = strtok_r(NULL, ",", &sv)) {
            while (*tok == ' ') tok++;
            int a = find_axis(s, tok);
            if (a < 0 || a == x) {
                rc = vitq_fail(e, VITQ_EINVAL, "%s: --series: %s '%s' (axes: %s)", run_label,
                               a < 0 ? "no axis" : "the x axis cannot also be a series:", tok, axes);
                free(list);
                goto out;
            }
            if (!in_ser[a]) in_ser[a] = 1, ser[n_ser++] = a;
        }
        free(list);
    } else {
        for (int a = 0; a < s->n_axes; a++)
            if (a != x) in_ser[a] = 1, ser[n_ser++] = a;
    }
    /* Distinct x values (sorted) and series (in order of first appearance); then one constant column
     * per baseline cell (no axis applies to it), named by its id. Other cells without an x are left out. */
    int n_base = 0, n_left_out = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < s->n_rows; i++) {
            if (pass == 0) row_series[i] = -1;
            if (strcmp(s->status[i], "done")) continue;
            int base = is_baseline(s, i);
            if (pass == 0) n_done++;
            if (pass != base) continue;
            char lab[1024];
            if (base) {
                snprintf(lab, sizeof lab, "%s", s->cell_ids[i]);
                n_base++;
            } else if (is_na(s->axis_values[i][x])) {
                n_left_out++;
                continue;
            } else {
                double v;
                parse_num(s->axis_values[i][x], &v);
                int seen = 0;
                for (int k = 0; k < n_x && !seen; k++) seen = xs[k] == v;
                if (!seen) xs[n_x++] = v;
                if (n_ser) series_label(lab, sizeof lab, s, i, ser, n_ser);
                else snprintf(lab, sizeof lab, "%s", metric);
            }
            int k = 0;
            while (k < n_series && strcmp(labels[k], lab)) k++;
            if (k == n_series && !(labels[n_series++] = strdup(lab))) {
                rc = vitq_fail(e, VITQ_ENOMEM, "plot: out of memory");
                goto out;
            }
            row_series[i] = k;
        }
    if (n_done == 0) {
        rc = vitq_fail(e, VITQ_EINVAL, "%s: no cell is done yet: nothing to plot", run_label);
        goto out;
    }
    if (n_x == 0) {
        rc = vitq_fail(e, VITQ_EINVAL, "%s: no done cell has a value on axis '%s': nothing to plot", run_label,
                       s->axis_names[x]);
        goto out;
    }
    qsort(xs, (size_t)n_x, sizeof(double), cmp_double);
    sum = calloc((size_t)n_x * (size_t)n_series, sizeof(double));
    cnt = calloc((size_t)n_x * (size_t)n_series, sizeof(int));
    if (!sum || !cnt) {
        rc = vitq_fail(e, VITQ_ENOMEM, "plot: out of memory");
        goto out;
    }
    int averaged = 0;
    for (int i = 0; i < s->n_rows; i++) {
        if (row_series[i] < 0) continue;
        double v, m = !strcmp(metric, "top1") ? s->top1[i] : !strcmp(metric, "top5") ? s->top5[i] : s->loss[i];
        int base = is_baseline(s, i);
        for (int k = 0; k < n_x; k++) {
            if (!base && (parse_num(s->axis_values[i][x], &v), xs[k] != v)) continue;
            size_t c = (size_t)k * (size_t)n_series + (size_t)row_series[i];
            sum[c] += m;
            if (++cnt[c] > 1) averaged = 1;
        }
    }
    /* Data file. */
    sb_field(&t, s->axis_names[x]);
    for (int k = 0; k < n_series; k++) {
        sb_printf(&t, "\t");
        sb_field(&t, labels[k]);
    }
    sb_printf(&t, "\n");
    for (int k = 0; k < n_x; k++) {
        sb_printf(&t, "%.10g", xs[k]);
        for (int j = 0; j < n_series; j++) {
            size_t c = (size_t)k * (size_t)n_series + (size_t)j;
            if (cnt[c]) sb_printf(&t, "\t%.10g", sum[c] / cnt[c]);
            else sb_printf(&t, "\tNaN");
        }
        sb_printf(&t, "\n");
    }
    /* Script. */
    char fname[256], xlab[300];
    snprintf(fname, sizeof fname, "%s_vs_%s", metric, s->axis_names[x]);
    sanitize(fig, fig_size, fname);
    axis_label(xlab, sizeof xlab, s->axis_names[x]);
    sb_printf(&g, "# %s.gp — %s versus %s, one line per ", fig, metric_title(metric), s->axis_names[x]);
    if (n_ser) {
        for (int j = 0; j < n_ser; j++) sb_printf(&g, "%s%s", j ? "," : "", s->axis_names[ser[j]]);
    } else {
        sb_printf(&g, "run (no other axis)");
    }
    sb_printf(&g, "\n# run: ");
    sb_comment(&g, run_label);
    sb_printf(&g, " (git %s), drawn by vitq %s\n# cells: %d done of %d", s->git_rev[0] ? s->git_rev : "unknown",
              VITQ_VERSION, n_done, s->n_rows);
    if (n_base) sb_printf(&g, "; %d baseline%s drawn flat", n_base, n_base == 1 ? "" : "s");
    if (n_left_out) sb_printf(&g, "; %d without a value of %s left out", n_left_out, s->axis_names[x]);
    sb_printf(&g, "\n");
    if (averaged) {
        sb_printf(&g, "# averaged over cells that share %s and the series:", s->axis_names[x]);
        for (int a = 0; a < s->n_axes; a++)
            if (a != x && !in_ser[a]) sb_printf(&g, " %s", s->axis_names[a]);
        sb_printf(&g, "\n");
    }
    sb_printf(&g, "# command: ");
    sb_comment(&g, o->command ? o->command : "");
    sb_printf(&g, "\n# redraw: gnuplot -c %s.gp %s.tsv %s.png\n", fig, fig, fig);
    sb_printf(&g, "set terminal pngcairo noenhanced size 1200,800 font \"DejaVu Sans,11\"\n"
                  "set output ARG2\n"
                  "set datafile separator \"\\t\"\n"
                  "set datafile missing \"NaN\"\n"
                  "set key autotitle columnhead outside right top\n"
                  "set grid\n"
                  "set title \"");
    sb_gpstr(&g, metric_title(metric));
    sb_printf(&g, " versus ");
    sb_gpstr(&g, s->axis_names[x]);
    sb_printf(&g, " — ");
    sb_gpstr(&g, run_label);
    sb_printf(&g, "\"\nset xlabel \"");
    sb_gpstr(&g, xlab);
    sb_printf(&g, "\"\nset ylabel \"");
    sb_gpstr(&g, metric_label(metric));
    sb_printf(&g, "\"\nset xtics (");
    for (int k = 0; k < n_x; k++) sb_printf(&g, "%s%.10g", k ? ", " : "", xs[k]);
    sb_printf(&g, ")\nset offsets graph 0.03, graph 0.03, graph 0.05, graph 0.05\n"
                  "plot for [c=2:*] ARG1 using 1:c with linespoints linewidth 2 pointtype 7 pointsize 1.3\n");
out:
    if (rc == 0) {
        *tsv = sb_take(&t);
        *gp = sb_take(&g);
        if (!*tsv || !*gp) {
            free(*tsv), free(*gp);
            *tsv = *gp = NULL;
            rc = vitq_fail(e, VITQ_ENOMEM, "plot: out of memory");
        }
    } else {
        free(t.p);
        free(g.p);
    }
    for (int k = 0; labels && k < n_series; k++) free(labels[k]);
    free(labels);
    free(ser);
    free(in_ser);
    free(xs);
    free(row_series);
    free(sum);
    free(cnt);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Histograms
 * ------------------------------------------------------------------------------------------- */
int vitq_plot_hist_text(const vitq_hist *h, const char *cell_id, const char *run_label, const vitq_plot_opts *o,
                        const char *git_rev, char *fig, size_t fig_size, char **tsv, char **gp, vitq_err *e) {
    *tsv = *gp = NULL;
    if (h->bins < 1 || !(h->hi > h->lo))
        return vitq_fail(e, VITQ_EINVAL, "%s: cell '%s': histogram '%s' has no bins or an empty range", run_label,
                         cell_id, h->tap);
    char fname[512];
    snprintf(fname, sizeof fname, "hist_%s__%s", cell_id, h->tap);
    sanitize(fig, fig_size, fname);
    sbuf t = {0}, g = {0};
    int64_t nf = 0, nq = 0;
    sb_printf(&t, "value\tfloat\tquantized\n");
    double w = (h->hi - h->lo) / h->bins;
    for (int i = 0; i < h->bins; i++) {
        sb_printf(&t, "%.10g\t%lld\t%lld\n", h->lo + (i + 0.5) * w, (long long)h->float_counts[i],
                  (long long)h->quant_counts[i]);
        nf += h->float_counts[i], nq += h->quant_counts[i];
    }
    sb_printf(&g, "# %s.gp — activation histogram of tap %s, float versus quantized\n# run: ", fig, h->tap);
    sb_comment(&g, run_label);
    sb_printf(&g, " (git %s), drawn by vitq %s\n# cell: ", git_rev && git_rev[0] ? git_rev : "unknown", VITQ_VERSION);
    sb_comment(&g, cell_id);
    sb_printf(&g, "\n# bins: %d over [%.10g, %.10g] (values outside were clamped into the end bins); "
                  "%lld float and %lld quantized values\n# command: ",
              h->bins, h->lo, h->hi, (long long)nf, (long long)nq);
    sb_comment(&g, o && o->command ? o->command : "");
    sb_printf(&g, "\n# redraw: gnuplot -c %s.gp %s.tsv %s.png\n", fig, fig, fig);
    sb_printf(&g, "set terminal pngcairo noenhanced size 1200,800 font \"DejaVu Sans,11\"\n"
                  "set output ARG2\n"
                  "set datafile separator \"\\t\"\n"
                  "set key autotitle columnhead top right\n"
                  "set grid\n"
                  "set logscale y\n"
                  "set title \"");
    sb_gpstr(&g, h->tap);
    sb_printf(&g, " — ");
    sb_gpstr(&g, cell_id);
    sb_printf(&g, "\"\nset xlabel \"activation value\"\n"
                  "set ylabel \"count (log scale)\"\n"
                  "set xrange [%.10g:%.10g]\n"
                  "set boxwidth %.10g absolute\n"
                  "set style fill transparent solid 0.35 border\n"
                  "# empty bins have no bar (log scale)\n"
                  "plot for [c=2:*] ARG1 using 1:(column(c) > 0 ? column(c) : NaN) with boxes title columnhead(c)\n",
              h->lo, h->hi, w);
    *tsv = sb_take(&t);
    *gp = sb_take(&g);
    if (!*tsv || !*gp) {
        free(*tsv), free(*gp);
        *tsv = *gp = NULL;
        return vitq_fail(e, VITQ_ENOMEM, "plot: out of memory");
    }
    return VITQ_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Writing a figure and running gnuplot
 * ------------------------------------------------------------------------------------------- */
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
        struct stat st;
        if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0) return 1;
        path += l;
        if (*path == ':') path++;
    }
    return 0;
}

static int write_text(const char *dir, const char *fig, const char *ext, const char *text, vitq_err *e) {
    char p[4096];
    if (snprintf(p, sizeof p, "%s/%s.%s", dir, fig, ext) >= (int)sizeof p)
        return vitq_fail(e, VITQ_EINVAL, "%s: path too long", dir);
    return vitq_write_file_atomic(p, text, strlen(text), e);
}

int vitq_plot_write_figure(const char *dir, const char *fig, const char *tsv, const char *gp, const char *gnuplot,
                           int *missing, vitq_err *e) {
    *missing = 0;
    int rc = write_text(dir, fig, "tsv", tsv, e);
    if (!rc) rc = write_text(dir, fig, "gp", gp, e);
    if (rc) return rc;
    if (gnuplot && !*gnuplot) return VITQ_OK;
    char prog[4096];
    if (!find_program(gnuplot ? gnuplot : "gnuplot", prog, sizeof prog)) {
        *missing = 1;
        return VITQ_OK;
    }
    char gpn[600], tsvn[600], png[600], pngtmp[700], final[4800], tmpfull[4800];
    snprintf(gpn, sizeof gpn, "%s.gp", fig);
    snprintf(tsvn, sizeof tsvn, "%s.tsv", fig);
    snprintf(png, sizeof png, "%s.png", fig);
    snprintf(pngtmp, sizeof pngtmp, "%s.png.tmp.%ld", fig, (long)getpid());
    snprintf(final, sizeof final, "%s/%s", dir, png);
    snprintf(tmpfull, sizeof tmpfull, "%s/%s", dir, pngtmp);
    int pipefd[2];
    if (pipe(pipefd) != 0) return vitq_fail(e, VITQ_EIO, "%s: cannot run gnuplot: %s", final, strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(pipefd[0]), close(pipefd[1]);
        return vitq_fail(e, VITQ_EIO, "%s: cannot run gnuplot: %s", final, strerror(errno));
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) dup2(devnull, 0), dup2(devnull, 1);
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        if (chdir(dir) != 0) _exit(126);
        char *argv[] = {prog, (char *)"-c", gpn, tsvn, pngtmp, NULL};
        execv(prog, argv);
        _exit(127);
    }
    close(pipefd[1]);
    char err[4096];
    size_t n = 0;
    for (;;) {
        char buf[1024];
        ssize_t k = read(pipefd[0], buf, sizeof buf);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        for (ssize_t i = 0; i < k && n + 1 < sizeof err; i++) err[n++] = buf[i];
    }
    err[n] = 0;
    close(pipefd[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    struct stat sst;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || stat(tmpfull, &sst) != 0 || sst.st_size == 0) {
        unlink(tmpfull);
        /* gnuplot's first non-empty stderr line. */
        char *line = err;
        while (*line == '\n' || *line == ' ') line++;
        line[strcspn(line, "\n")] = 0;
        return vitq_fail(e, VITQ_EIO, "%s/%s: gnuplot failed (%s %d): %s", dir, gpn,
                         WIFEXITED(st) ? "exit status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
                         *line ? line : "no message");
    }
    int fd = open(tmpfull, O_RDONLY);
    if (fd >= 0) fsync(fd), close(fd);
    if (rename(tmpfull, final) != 0) {
        int er = errno;
        unlink(tmpfull);
        return vitq_fail(e, VITQ_EIO, "%s: cannot rename into place: %s", final, strerror(er));
    }
    return VITQ_OK;
}

/* ---------------------------------------------------------------------------------------------
 * The whole `vitq plot`
 * ------------------------------------------------------------------------------------------- */
static int report_add(vitq_plot_report *rep, const char *dir, const char *fig) {
    char **f = realloc(rep->figures, sizeof(char *) * (size_t)(rep->n_figures + 1));
    if (!f) return -1;
    rep->figures = f;
    size_t n = strlen(dir) + strlen(fig) + 2;
    if (!(f[rep->n_figures] = malloc(n))) return -1;
    snprintf(f[rep->n_figures++], n, "%s/%s", dir, fig);
    return 0;
}

void vitq_plot_report_free(vitq_plot_report *rep) {
    if (!rep) return;
    for (int i = 0; i < rep->n_figures; i++) free(rep->figures[i]);
    free(rep->figures);
    memset(rep, 0, sizeof *rep);
}

static int glob_any(const char *globs, const char *name) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", globs);
    for (char *sv = NULL, *tok = strtok_r(buf, ",", &sv); tok; tok = strtok_r(NULL, ",", &sv)) {
        while (*tok == ' ') tok++;
        if (fnmatch(tok, name, 0) == 0) return 1;
    }
    return 0;
}

static int one_figure(const char *dir, const char *fig, char *tsv, char *gp, const vitq_plot_opts *o,
                      vitq_plot_report *rep, vitq_err *e) {
    int missing = 0;
    int rc = vitq_plot_write_figure(dir, fig, tsv, gp, o->gnuplot, &missing, e);
    free(tsv);
    free(gp);
    if (rc) return rc;
    if (missing) rep->gnuplot_missing = 1;
    if (report_add(rep, dir, fig)) return vitq_fail(e, VITQ_ENOMEM, "plot: out of memory");
    return VITQ_OK;
}

static int mkdir_one(const char *d, vitq_err *e) {
    if (mkdir(d, 0755) != 0 && errno != EEXIST) return vitq_fail(e, VITQ_EIO, "%s: cannot create folder: %s", d, strerror(errno));
    struct stat st;
    if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode)) return vitq_fail(e, VITQ_EIO, "%s: not a folder", d);
    return VITQ_OK;
}

int vitq_plot_run(const char *run_path, const vitq_plot_opts *o, vitq_plot_report *rep, vitq_err *e) {
    memset(rep, 0, sizeof *rep);
    vitq_summary *s = NULL;
    int rc = vitq_summary_read(run_path, &s, e);
    if (rc) return rc;
    char dir[4096];
    if (o->out_dir) snprintf(dir, sizeof dir, "%s", o->out_dir);
    else snprintf(dir, sizeof dir, "%s/plots", s->run_dir);
    rc = mkdir_one(dir, e);
    const char *label = s->run_dir;
    char fig[512];
    /* Curves are required when asked for explicitly; otherwise a run without a numeric axis just has none. */
    int curves_explicit = o->x_axis || o->series || o->metric;
    vitq_err curve_err = {{0}};
    if (!rc && !o->no_curves) {
        char *tsv = NULL, *gp = NULL;
        int crc = vitq_plot_curve_text(s, o, label, fig, sizeof fig, &tsv, &gp, &curve_err);
        if (crc == 0) {
            rc = one_figure(dir, fig, tsv, gp, o, rep, e);
        } else if (!curves_explicit && crc == VITQ_EINVAL) {
            rep->curves_skipped = 1;
        } else {
            rc = crc;
            *e = curve_err;
        }
    }
    /* Histograms: those asked for (--hist), else every one recorded, unless no_hists. */
    if (!rc && !o->no_hists) {
        const char *globs = o->hist ? o->hist : "*";
        int matched = 0, cells = 0;
        for (int i = 0; !rc && i < s->n_rows; i++) {
            if (strcmp(s->status[i], "done")) continue;
            if (o->cell && fnmatch(o->cell, s->cell_ids[i], 0) != 0) continue;
            cells++;
            char cp[4600];
            snprintf(cp, sizeof cp, "%s/cells/%s.h5", s->run_dir, s->cell_ids[i]);
            vitq_hist *h = NULL;
            int nh = 0;
            rc = vitq_cell_read_hists(cp, &h, &nh, e);
            for (int k = 0; !rc && k < nh; k++) {
                if (!glob_any(globs, h[k].tap)) continue;
                matched++;
                char *tsv = NULL, *gp = NULL;
                rc = vitq_plot_hist_text(&h[k], s->cell_ids[i], label, o, s->git_rev, fig, sizeof fig, &tsv, &gp, e);
                if (!rc) rc = one_figure(dir, fig, tsv, gp, o, rep, e);
            }
            vitq_hists_free(h, nh);
        }
        if (!rc && cells == 0 && (o->cell || o->hist))
            rc = vitq_fail(e, VITQ_EINVAL, "%s: no done cell matches --cell '%s'", label, o->cell ? o->cell : "*");
        else if (!rc && matched == 0 && o->hist)
            rc = vitq_fail(e, VITQ_EINVAL, "%s: no histogram matches --hist '%s' in %d cell(s) (histograms are "
                                           "recorded for the taps of the INI's [hist] section)", label, o->hist, cells);
    }
    if (!rc && rep->n_figures == 0) {
        if (rep->curves_skipped) {
            rc = VITQ_EINVAL;
            *e = curve_err;
        } else {
            rc = vitq_fail(e, VITQ_EINVAL, "%s: nothing to plot", label);
        }
    }
    vitq_summary_free(s);
    if (rc) vitq_plot_report_free(rep);
    return rc;
}
