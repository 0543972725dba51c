/* cmd_results.c — `vitq results RUN [--csv | --curves]`: a run's summary table on stdout, as Markdown
 * (aligned columns: the axes, status, top-1, top-5, loss, images, seconds) or CSV (machine-readable names,
 * plus the cell id and the error message), or the curves its passes recorded (tab-separated, every value
 * to 17 digits). Failed or corrupt cells are listed with their message on stderr.
 * Does not: recompute anything; it reads RUN/run.h5 (run/results_read.c). */
#include "cli/cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *to) {
    fprintf(to, "usage: vitq results RUN [--csv | --curves]\n\n"
                "Prints the summary of a run (the folder `vitq run` wrote, or its run.h5) as a Markdown table:\n"
                "one row per cell, the grid's axes, status, top-1 and top-5 accuracy (%%), loss (nats), images\n"
                "evaluated and seconds. Failed cells are listed with their error on stderr.\n\n"
                "  --csv     comma-separated values instead (header: axes, cell_id, status, top1, top5, loss,\n"
                "            n_eval, seconds, error)\n"
                "  --curves  the curves the cells' passes recorded (e.g. aph_recon's <unit>/loss), tab-separated:\n"
                "            cell_id, curve, step, value (%%.17g: the exact double)\n");
}

static void fmt_num(char *out, size_t n, double v, const char *fmt) {
    if (isnan(v)) snprintf(out, n, "-");
    else snprintf(out, n, fmt, v);
}

static void csv_field(const char *s, int last) {
    if (strpbrk(s, ",\"\n\r")) {
        putchar('"');
        for (; *s; s++) {
            if (*s == '"') putchar('"');
            putchar(*s);
        }
        putchar('"');
    } else {
        fputs(s, stdout);
    }
    putchar(last ? '\n' : ',');
}

/* Markdown cells can't hold '|' or newlines. */
static void md_clean(char *s) {
    for (; *s; s++)
        if (*s == '|' || *s == '\n' || *s == '\r') *s = ' ';
}

/* A float baseline row (every axis "-") of a run with several: its id "fp32,m=final" names the grid values
 * that pick its model or data (run/cells.c), shown in those axes' columns. Else the row's own value. */
static const char *axis_text(const vitq_summary *s, int i, int a, char *buf, size_t n) {
    const char *v = s->axis_values[i][a], *id = s->cell_ids[i];
    if (strcmp(v, "-") || strncmp(id, "fp32,", 5)) return v;
    for (int b = 0; b < s->n_axes; b++)
        if (strcmp(s->axis_values[i][b], "-")) return v;
    size_t ln = strlen(s->axis_names[a]);
    for (const char *p = id + 4; p && *p == ','; p = strchr(p + 1, ','))
        if (!strncmp(p + 1, s->axis_names[a], ln) && p[1 + ln] == '=') {
            snprintf(buf, n, "%.*s", (int)strcspn(p + 2 + ln, ","), p + 2 + ln);
            return buf;
        }
    return v;
}

static int print_markdown(const vitq_summary *s) {
    int show_id = s->n_axes == 0;
    int ncol = s->n_axes + show_id + 6;
    size_t cells = (size_t)(s->n_rows + 1) * (size_t)ncol;
    char **txt = calloc(cells, sizeof(char *));
    size_t *width = calloc((size_t)ncol, sizeof(size_t));
    int *right = calloc((size_t)ncol, sizeof(int));
    if (!txt || !width || !right) {
        free(txt), free(width), free(right);
        cli_error("out of memory");
        return 1;
    }
    int c = 0;
    if (show_id) txt[c++] = strdup("cell");
    for (int a = 0; a < s->n_axes; a++) txt[c++] = strdup(s->axis_names[a]);
    const char *fixed[] = {"status", "top-1 %", "top-5 %", "loss", "images", "seconds"};
    for (int k = 0; k < 6; k++) right[c] = k > 0, txt[c++] = strdup(fixed[k]);
    for (int i = 0; i < s->n_rows; i++) {
        char **row = txt + (size_t)(i + 1) * (size_t)ncol;
        char b[64];
        c = 0;
        if (show_id) row[c++] = strdup(s->cell_ids[i]);
        for (int a = 0; a < s->n_axes; a++) row[c++] = strdup(axis_text(s, i, a, b, sizeof b));
        row[c++] = strdup(s->status[i]);
        int done = !strcmp(s->status[i], "done");
        fmt_num(b, sizeof b, done ? s->top1[i] : NAN, "%.2f"), row[c++] = strdup(b);
        fmt_num(b, sizeof b, done ? s->top5[i] : NAN, "%.2f"), row[c++] = strdup(b);
        fmt_num(b, sizeof b, done ? s->loss[i] : NAN, "%.4f"), row[c++] = strdup(b);
        if (done) snprintf(b, sizeof b, "%lld", (long long)s->n_eval[i]);
        else snprintf(b, sizeof b, "-");
        row[c++] = strdup(b);
        fmt_num(b, sizeof b, done ? s->seconds_total[i] : NAN, "%.1f"), row[c++] = strdup(b);
    }
    int rc = 0;
    for (size_t k = 0; k < cells; k++) {
        if (!txt[k]) {
            rc = 1;
            continue;
        }
        md_clean(txt[k]);
        size_t l = strlen(txt[k]);
        if (l > width[k % (size_t)ncol]) width[k % (size_t)ncol] = l;
    }
    if (rc) {
        cli_error("out of memory");
    } else {
        for (int r = 0; r <= s->n_rows; r++) {
            for (int k = 0; k < ncol; k++) {
                const char *t = txt[(size_t)r * (size_t)ncol + (size_t)k];
                int w = (int)(width[k] < 3 ? 3 : width[k]);
                if (right[k] && r > 0) printf("| %*s ", w, t);
                else printf("| %-*s ", w, t);
            }
            printf("|\n");
            if (r == 0) {
                for (int k = 0; k < ncol; k++) {
                    size_t w = width[k] < 3 ? 3 : width[k];
                    printf("|");
                    for (size_t j = 0; j < w + 2 - (right[k] ? 1 : 0); j++) putchar('-');
                    printf("%s", right[k] ? ":" : "");
                }
                printf("|\n");
            }
        }
    }
    for (size_t k = 0; k < cells; k++) free(txt[k]);
    free(txt);
    free(width);
    free(right);
    return rc;
}

static void print_csv(const vitq_summary *s) {
    for (int a = 0; a < s->n_axes; a++) csv_field(s->axis_names[a], 0);
    fputs("cell_id,status,top1,top5,loss,n_eval,seconds,error\n", stdout);
    for (int i = 0; i < s->n_rows; i++) {
        char b[64];
        for (int a = 0; a < s->n_axes; a++) csv_field(s->axis_values[i][a], 0);
        csv_field(s->cell_ids[i], 0);
        csv_field(s->status[i], 0);
        int done = !strcmp(s->status[i], "done");
        snprintf(b, sizeof b, "%.10g", s->top1[i]), csv_field(done ? b : "", 0);
        snprintf(b, sizeof b, "%.10g", s->top5[i]), csv_field(done ? b : "", 0);
        snprintf(b, sizeof b, "%.10g", s->loss[i]), csv_field(done ? b : "", 0);
        snprintf(b, sizeof b, "%lld", (long long)s->n_eval[i]), csv_field(done ? b : "", 0);
        snprintf(b, sizeof b, "%.3f", s->seconds_total[i]), csv_field(done ? b : "", 0);
        csv_field(s->error[i], 1);
    }
}

/* Every done cell's curves as TSV rows: cell, curve, step, value. */
static int print_curves(const vitq_summary *s) {
    printf("cell_id\tcurve\tstep\tvalue\n");
    for (int i = 0; i < s->n_rows; i++) {
        if (strcmp(s->status[i], "done")) continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/cells/%s.h5", s->run_dir, s->cell_ids[i]);
        vitq_curve *c = NULL;
        int n = 0;
        vitq_err e = {{0}};
        if (vitq_cell_read_curves(path, &c, &n, &e)) {
            cli_error("%s", e.msg);
            return 1;
        }
        for (int k = 0; k < n; k++)
            for (int64_t j = 0; j < c[k].n; j++)
                printf("%s\t%s\t%lld\t%.17g\n", s->cell_ids[i], c[k].name, (long long)c[k].step[j], c[k].value[j]);
        vitq_curves_free(c, n);
    }
    return 0;
}

int cmd_results(int argc, char **argv) {
    const char *run = NULL;
    int csv = 0, curves = 0, help = 0, n_pos = 0;
    const cli_opt opts[] = {{"--csv", NULL, CLI_FLAG, &csv, 0, 0}, {"--curves", NULL, CLI_FLAG, &curves, 0, 0}};
    const cli_spec spec = {"results", opts, 2, "RUN", 1, 1};
    if (cli_parse(&spec, argc, argv, &run, &n_pos, &help)) return 2;
    if (help) {
        usage(stdout);
        return 0;
    }
    if (csv && curves) {
        cli_error("--csv and --curves print different things: give one (vitq results --help)");
        return 2;
    }
    vitq_err e = {{0}};
    vitq_summary *s = NULL;
    int rc = vitq_summary_read(run, &s, &e);
    if (rc) {
        cli_error("%s", e.msg);
        return cli_exit_code(rc);
    }
    int bad = 0;
    if (curves) bad = print_curves(s);
    else if (csv) print_csv(s);
    else bad = print_markdown(s);
    for (int i = 0; i < s->n_rows; i++)
        if (strcmp(s->status[i], "done"))
            fprintf(stderr, "vitq: cell %s %s: %s\n", s->cell_ids[i], s->status[i], s->error[i][0] ? s->error[i] : "(no message)");
    if (s->n_rows == 0) fprintf(stderr, "vitq: %s has no finished cell yet\n", run);
    vitq_summary_free(s);
    if (fflush(stdout) != 0) return 1;
    return bad;
}
