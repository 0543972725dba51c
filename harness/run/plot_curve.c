/* plot_curve.c — the accuracy-versus-x figure of a run: one column per series (a combination of the
 * series axes), cells sharing x and series averaged (the script's header says over which axes), baseline
 * cells (every axis "-", e.g. "fp32") drawn flat, cells without an x value left out (and counted).
 * Produces the .tsv and .gp text only; plot.c writes and draws them. */
#include "run/run.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One curve figure being built. */
typedef struct curve {
    const vitq_summary *s;
    const char *metric, *run_label;
    int x;                  /* the x axis */
    int *ser, n_ser;        /* series axes, in order */
    int *in_ser;            /* [axis] 1 if a series axis */
    double *xs;             /* distinct x values, sorted */
    int n_x;
    char **labels;          /* [series] column names */
    int n_series;
    int *row_series;        /* [row] its series, -1 if not drawn */
    double *sum;            /* [x][series] metric sums */
    int *cnt;               /* [x][series] cells summed */
    int n_done, n_base, n_left_out, averaged;
    char axes[512];         /* "a, b" for messages */
} curve;

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

static int find_axis(const vitq_summary *s, const char *name) {
    for (int a = 0; a < s->n_axes; a++)
        if (!strcmp(s->axis_names[a], name)) return a;
    return -1;
}

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

/* The x axis: asked for (and numeric), or the first numeric one. */
static int choose_x(curve *c, const vitq_plot_opts *o, vitq_err *e) {
    const vitq_summary *s = c->s;
    if (o->x_axis) {
        c->x = find_axis(s, o->x_axis);
        if (c->x < 0) return vitq_fail(e, VITQ_EINVAL, "%s: no axis '%s' (axes: %s)", c->run_label, o->x_axis, c->axes);
        if (!axis_numeric(s, c->x))
            return vitq_fail(e, VITQ_EINVAL, "%s: axis '%s' is not numeric in every done cell; --x needs numbers",
                             c->run_label, o->x_axis);
        return VITQ_OK;
    }
    c->x = -1;
    for (int a = 0; a < s->n_axes && c->x < 0; a++)
        if (axis_numeric(s, a)) c->x = a;
    if (c->x < 0)
        return vitq_fail(e, VITQ_EINVAL, "%s: no axis has numeric values in every done cell (axes: %s); "
                                         "curves need one (--x AXIS)", c->run_label, c->axes);
    return VITQ_OK;
}

/* The series axes: asked for (--series), or every axis but x. */
static int choose_series(curve *c, const vitq_plot_opts *o, vitq_err *e) {
    if (!o->series) {
        for (int a = 0; a < c->s->n_axes; a++)
            if (a != c->x) c->in_ser[a] = 1, c->ser[c->n_ser++] = a;
        return VITQ_OK;
    }
    char **names = NULL;
    int n = 0, rc = VITQ_OK;
    if (vitq_list_split(o->series, ',', VITQ_LIST_DROP_EMPTY, &names, &n)) return vitq_fail(e, VITQ_ENOMEM, "plot: out of memory");
    for (int i = 0; i < n && !rc; i++) {
        int a = find_axis(c->s, names[i]);
        if (a < 0 || a == c->x)
            rc = vitq_fail(e, VITQ_EINVAL, "%s: --series: %s '%s' (axes: %s)", c->run_label,
                           a < 0 ? "no axis" : "the x axis cannot also be a series:", names[i], c->axes);
        else if (!c->in_ser[a])
            c->in_ser[a] = 1, c->ser[c->n_ser++] = a;
    }
    vitq_strs_free(names, n);
    return rc;
}

/* Row i's series label: "ax=val, ax=val" over the series axes, its id for a baseline, else the metric. */
static void series_label(const curve *c, int i, int base, char *out, size_t n) {
    const vitq_summary *s = c->s;
    if (base) {
        snprintf(out, n, "%s", s->cell_ids[i]);
        return;
    }
    if (!c->n_ser) {
        snprintf(out, n, "%s", c->metric);
        return;
    }
    size_t k = 0;
    out[0] = 0;
    for (int j = 0; j < c->n_ser && k < n; j++) {
        int w = snprintf(out + k, n - k, "%s%s=%s", j ? ", " : "", s->axis_names[c->ser[j]], s->axis_values[i][c->ser[j]]);
        if (w < 0) break;
        k += (size_t)w;
    }
}

/* Distinct x values and series (in order of first appearance); then one constant column per baseline
 * cell, named by its id. Other cells without an x are left out. */
static int collect(curve *c, vitq_err *e) {
    const vitq_summary *s = c->s;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < s->n_rows; i++) {
            if (pass == 0) c->row_series[i] = -1;
            if (strcmp(s->status[i], "done")) continue;
            int base = is_baseline(s, i);
            if (pass == 0) c->n_done++;
            if (pass != base) continue;
            if (!base && is_na(s->axis_values[i][c->x])) {
                c->n_left_out++;
                continue;
            }
            if (base) {
                c->n_base++;
            } else {
                double v;
                parse_num(s->axis_values[i][c->x], &v);
                int seen = 0;
                for (int k = 0; k < c->n_x && !seen; k++) seen = c->xs[k] == v;
                if (!seen) c->xs[c->n_x++] = v;
            }
            char lab[1024];
            series_label(c, i, base, lab, sizeof lab);
            int k = 0;
            while (k < c->n_series && strcmp(c->labels[k], lab)) k++;
            if (k == c->n_series && !(c->labels[c->n_series++] = strdup(lab)))
                return vitq_fail(e, VITQ_ENOMEM, "plot: out of memory");
            c->row_series[i] = k;
        }
    if (c->n_done == 0) return vitq_fail(e, VITQ_EINVAL, "%s: no cell is done yet: nothing to plot", c->run_label);
    if (c->n_x == 0)
        return vitq_fail(e, VITQ_EINVAL, "%s: no done cell has a value on axis '%s': nothing to plot", c->run_label,
                         s->axis_names[c->x]);
    qsort(c->xs, (size_t)c->n_x, sizeof(double), cmp_double);
    return VITQ_OK;
}

/* Sums the metric per (x, series); a baseline cell counts at every x. */
static int average(curve *c, vitq_err *e) {
    const vitq_summary *s = c->s;
    c->sum = calloc((size_t)c->n_x * (size_t)c->n_series, sizeof(double));
    c->cnt = calloc((size_t)c->n_x * (size_t)c->n_series, sizeof(int));
    if (!c->sum || !c->cnt) return vitq_fail(e, VITQ_ENOMEM, "plot: out of memory");
    for (int i = 0; i < s->n_rows; i++) {
        if (c->row_series[i] < 0) continue;
        double v, m = !strcmp(c->metric, "top1") ? s->top1[i] : !strcmp(c->metric, "top5") ? s->top5[i] : s->loss[i];
        int base = is_baseline(s, i);
        for (int k = 0; k < c->n_x; k++) {
            if (!base && (parse_num(s->axis_values[i][c->x], &v), c->xs[k] != v)) continue;
            size_t j = (size_t)k * (size_t)c->n_series + (size_t)c->row_series[i];
            c->sum[j] += m;
            if (++c->cnt[j] > 1) c->averaged = 1;
        }
    }
    return VITQ_OK;
}

static void write_tsv(const curve *c, vitq_sb *t) {
    vitq_plot_tsv_field(t, c->s->axis_names[c->x]);
    for (int k = 0; k < c->n_series; k++) {
        vitq_sb_str(t, "\t");
        vitq_plot_tsv_field(t, c->labels[k]);
    }
    vitq_sb_str(t, "\n");
    for (int k = 0; k < c->n_x; k++) {
        vitq_sb_fmt(t, "%.10g", c->xs[k]);
        for (int j = 0; j < c->n_series; j++) {
            size_t i = (size_t)k * (size_t)c->n_series + (size_t)j;
            if (c->cnt[i]) vitq_sb_fmt(t, "\t%.10g", c->sum[i] / c->cnt[i]);
            else vitq_sb_str(t, "\tNaN");
        }
        vitq_sb_str(t, "\n");
    }
}

/* The script's header: what is drawn, from which run, how many cells, what was averaged. */
static void write_gp_header(const curve *c, const vitq_plot_opts *o, const char *fig, vitq_sb *g) {
    const vitq_summary *s = c->s;
    const char *xn = s->axis_names[c->x];
    vitq_sb_fmt(g, "# %s.gp — %s versus %s, one line per ", fig, metric_title(c->metric), xn);
    if (c->n_ser)
        for (int j = 0; j < c->n_ser; j++) vitq_sb_fmt(g, "%s%s", j ? "," : "", s->axis_names[c->ser[j]]);
    else
        vitq_sb_str(g, "run (no other axis)");
    vitq_sb_str(g, "\n# run: ");
    vitq_plot_comment(g, c->run_label);
    vitq_sb_fmt(g, " (git %s), drawn by vitq %s\n# cells: %d done of %d", s->git_rev[0] ? s->git_rev : "unknown",
                VITQ_VERSION, c->n_done, s->n_rows);
    if (c->n_base) vitq_sb_fmt(g, "; %d baseline%s drawn flat", c->n_base, c->n_base == 1 ? "" : "s");
    if (c->n_left_out) vitq_sb_fmt(g, "; %d without a value of %s left out", c->n_left_out, xn);
    vitq_sb_str(g, "\n");
    if (c->averaged) {
        vitq_sb_fmt(g, "# averaged over cells that share %s and the series:", xn);
        for (int a = 0; a < s->n_axes; a++)
            if (a != c->x && !c->in_ser[a]) vitq_sb_fmt(g, " %s", s->axis_names[a]);
        vitq_sb_str(g, "\n");
    }
    vitq_sb_str(g, "# command: ");
    vitq_plot_comment(g, o->command ? o->command : "");
    vitq_sb_fmt(g, "\n# redraw: gnuplot -c %s.gp %s.tsv %s.png\n", fig, fig, fig);
}

static void write_gp(const curve *c, const vitq_plot_opts *o, const char *fig, vitq_sb *g) {
    const char *xn = c->s->axis_names[c->x];
    char xlab[300];
    if (!strcmp(xn, "bits")) snprintf(xlab, sizeof xlab, "bit width (bits)"); /* "bits" axes get a unit */
    else if (strstr(xn, "bit")) snprintf(xlab, sizeof xlab, "bit width: %s (bits)", xn);
    else snprintf(xlab, sizeof xlab, "%s", xn);
    write_gp_header(c, o, fig, g);
    vitq_sb_str(g, "set terminal pngcairo noenhanced size 1200,800 font \"DejaVu Sans,11\"\n"
                   "set output ARG2\n"
                   "set datafile separator \"\\t\"\n"
                   "set datafile missing \"NaN\"\n"
                   "set key autotitle columnhead outside right top\n"
                   "set grid\n"
                   "set title \"");
    vitq_plot_gpstr(g, metric_title(c->metric));
    vitq_sb_str(g, " versus ");
    vitq_plot_gpstr(g, xn);
    vitq_sb_str(g, " — ");
    vitq_plot_gpstr(g, c->run_label);
    vitq_sb_str(g, "\"\nset xlabel \"");
    vitq_plot_gpstr(g, xlab);
    vitq_sb_str(g, "\"\nset ylabel \"");
    vitq_plot_gpstr(g, metric_label(c->metric));
    vitq_sb_str(g, "\"\nset xtics (");
    for (int k = 0; k < c->n_x; k++) vitq_sb_fmt(g, "%s%.10g", k ? ", " : "", c->xs[k]);
    vitq_sb_str(g, ")\nset offsets graph 0.03, graph 0.03, graph 0.05, graph 0.05\n"
                   "plot for [c=2:*] ARG1 using 1:c with linespoints linewidth 2 pointtype 7 pointsize 1.3\n");
}

static void curve_free(curve *c) {
    for (int k = 0; c->labels && k < c->n_series; k++) free(c->labels[k]);
    free(c->labels);
    free(c->ser);
    free(c->in_ser);
    free(c->xs);
    free(c->row_series);
    free(c->sum);
    free(c->cnt);
}

int vitq_plot_curve_text(const vitq_summary *s, const vitq_plot_opts *o, const char *run_label, char *fig,
                         size_t fig_size, char **tsv, char **gp, vitq_err *e) {
    *tsv = *gp = NULL;
    curve c = {.s = s, .metric = o->metric ? o->metric : "top1", .run_label = run_label};
    if (strcmp(c.metric, "top1") && strcmp(c.metric, "top5") && strcmp(c.metric, "loss"))
        return vitq_fail(e, VITQ_EINVAL, "--metric: expected top1, top5 or loss, got '%s'", c.metric);
    size_t k = 0;
    for (int a = 0; a < s->n_axes && k < sizeof c.axes; a++)
        k += (size_t)snprintf(c.axes + k, sizeof c.axes - k, "%s%s", a ? ", " : "", s->axis_names[a]);
    if (!s->n_axes) snprintf(c.axes, sizeof c.axes, "none");
    int rc = choose_x(&c, o, e);
    if (rc) return rc;
    c.ser = calloc((size_t)(s->n_axes + 1), sizeof(int));
    c.in_ser = calloc((size_t)(s->n_axes + 1), sizeof(int));
    c.xs = calloc((size_t)(s->n_rows + 1), sizeof(double));
    c.labels = calloc((size_t)(s->n_rows + 1), sizeof(char *));
    c.row_series = calloc((size_t)(s->n_rows + 1), sizeof(int));
    if (!c.ser || !c.in_ser || !c.xs || !c.labels || !c.row_series) rc = vitq_fail(e, VITQ_ENOMEM, "plot: out of memory");
    if (!rc) rc = choose_series(&c, o, e);
    if (!rc) rc = collect(&c, e);
    if (!rc) rc = average(&c, e);
    if (!rc) {
        char fname[256];
        snprintf(fname, sizeof fname, "%s_vs_%s", c.metric, s->axis_names[c.x]);
        vitq_plot_sanitize(fig, fig_size, fname);
        vitq_sb t = {0}, g = {0};
        write_tsv(&c, &t);
        write_gp(&c, o, fig, &g);
        *tsv = vitq_sb_take(&t);
        *gp = vitq_sb_take(&g);
        if (!*tsv || !*gp) {
            free(*tsv), free(*gp);
            *tsv = *gp = NULL;
            rc = vitq_fail(e, VITQ_ENOMEM, "plot: out of memory");
        }
    }
    curve_free(&c);
    return rc;
}
