/* plot.c — `vitq plot`'s engine: reads a run's summary, makes the curve figure (plot_curve.c), the
 * histogram figures (plot_hist.c) and the figures of the passes' recorded curves (plot_loss.c), writes each figure's .tsv and .gp atomically and draws its .png with
 * core's gnuplot runner in the plots folder. Also the text helpers both figure makers use.
 * Does not: read HDF5 itself (results_read.c does), print (the command does), draw without gnuplot.
 * Mirrors: STYLE.md section 6 "Plots (gnuplot)" and section 9 (golden-test the .tsv/.gp, not the PNG). */
#include "run/run.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

/* A gnuplot double-quoted string literal's contents. */
void vitq_plot_gpstr(vitq_sb *b, const char *s) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') vitq_sb_fmt(b, "\\%c", *s);
        else vitq_sb_add(b, *s == '\n' ? " " : s, 1);
    }
}

/* Copies s into b with the characters in `bad` turned into spaces. */
static void cleaned(vitq_sb *b, const char *s, const char *bad) {
    for (; *s; s++) vitq_sb_add(b, strchr(bad, *s) ? " " : s, 1);
}

/* A comment line's contents (no newlines). */
void vitq_plot_comment(vitq_sb *b, const char *s) { cleaned(b, s, "\n\r"); }

/* A TSV field (tabs and newlines would break the table). */
void vitq_plot_tsv_field(vitq_sb *b, const char *s) { cleaned(b, s, "\t\n\r"); }

void vitq_plot_sanitize(char *out, size_t n, const char *s) {
    size_t i = 0;
    for (; *s && i + 1 < n; s++, i++) {
        char c = *s;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                 c == '=' || c == '+' || c == '-';
        out[i] = ok ? c : '_';
    }
    out[i] = 0;
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
    if (rc || (gnuplot && !*gnuplot)) return rc;
    char gpn[600], tsvn[600], png[600];
    snprintf(gpn, sizeof gpn, "%s.gp", fig);
    snprintf(tsvn, sizeof tsvn, "%s.tsv", fig);
    snprintf(png, sizeof png, "%s.png", fig);
    return vitq_gnuplot_run(dir, gpn, tsvn, png, gnuplot, missing, e);
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

/* The figures of the curves every done cell (matching --cell) recorded: one per family (plot_loss.c). */
static int loss_figures(const vitq_summary *s, const vitq_plot_opts *o, const char *dir, vitq_plot_report *rep,
                        vitq_err *e) {
    enum { MAX_FAMILIES = 32 };
    int rc = VITQ_OK;
    for (int i = 0; !rc && i < s->n_rows; i++) {
        if (strcmp(s->status[i], "done") || (o->cell && fnmatch(o->cell, s->cell_ids[i], 0) != 0)) continue;
        char cp[4600], fams[MAX_FAMILIES][160], fig[512];
        snprintf(cp, sizeof cp, "%s/cells/%s.h5", s->run_dir, s->cell_ids[i]);
        vitq_curve *c = NULL;
        int n = 0, nf = 0;
        rc = vitq_cell_read_curves(cp, &c, &n, e);
        for (int k = 0; !rc && k < n; k++) {
            char f[160];
            int seen = 0;
            vitq_plot_curve_family(c[k].name, f, sizeof f);
            for (int q = 0; q < nf; q++) seen |= !strcmp(fams[q], f);
            if (!seen && nf < MAX_FAMILIES) snprintf(fams[nf++], sizeof fams[0], "%s", f);
        }
        for (int q = 0; !rc && q < nf; q++) {
            char *tsv = NULL, *gp = NULL;
            rc = vitq_plot_loss_text(c, n, fams[q], s->cell_ids[i], s->run_dir, o, s->git_rev, fig, sizeof fig, &tsv,
                                     &gp, e);
            if (!rc) rc = one_figure(dir, fig, tsv, gp, o, rep, e);
        }
        vitq_curves_free(c, n);
    }
    return rc;
}

/* The selection before anything is written: a done cell at all, one matching --cell, a histogram matching
 * --hist in those cells. */
static int check_selection(const vitq_summary *s, const vitq_plot_opts *o, const char *label, vitq_err *e) {
    int done = 0, cells = 0, matched = 0, rc = VITQ_OK;
    for (int i = 0; !rc && i < s->n_rows; i++) {
        if (strcmp(s->status[i], "done")) continue;
        done++;
        if (o->cell && fnmatch(o->cell, s->cell_ids[i], 0) != 0) continue;
        cells++;
        if (!o->hist) continue;
        char cp[4600];
        snprintf(cp, sizeof cp, "%s/cells/%s.h5", s->run_dir, s->cell_ids[i]);
        vitq_hist *h = NULL;
        int nh = 0;
        rc = vitq_cell_read_hists(cp, &h, &nh, e);
        for (int k = 0; !rc && k < nh; k++) matched += vitq_globs_match(o->hist, h[k].tap) == 1;
        vitq_hists_free(h, nh);
    }
    if (rc) return rc;
    if (done == 0) return vitq_fail(e, VITQ_EINVAL, "%s has no done cell yet (vitq results shows the cells' status)", label);
    if (cells == 0) return vitq_fail(e, VITQ_EINVAL, "%s: no done cell matches --cell '%s'", label, o->cell);
    if (o->hist && matched == 0)
        return vitq_fail(e, VITQ_EINVAL, "%s: no histogram matches --hist '%s' in %d cell(s) (histograms are recorded "
                                         "for the taps of the INI's [hist] section)", label, o->hist, cells);
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
    const char *label = s->run_dir;
    rc = check_selection(s, o, label, e);
    if (!rc) rc = vitq_mkdir_p(dir, e);
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
        const char *globs = o->hist ? o->hist : "*"; /* check_selection made sure something matches */
        for (int i = 0; !rc && i < s->n_rows; i++) {
            if (strcmp(s->status[i], "done")) continue;
            if (o->cell && fnmatch(o->cell, s->cell_ids[i], 0) != 0) continue;
            char cp[4600];
            snprintf(cp, sizeof cp, "%s/cells/%s.h5", s->run_dir, s->cell_ids[i]);
            vitq_hist *h = NULL;
            int nh = 0;
            rc = vitq_cell_read_hists(cp, &h, &nh, e);
            for (int k = 0; !rc && k < nh; k++) {
                if (vitq_globs_match(globs, h[k].tap) != 1) continue;
                char *tsv = NULL, *gp = NULL;
                rc = vitq_plot_hist_text(&h[k], s->cell_ids[i], label, o, s->git_rev, fig, sizeof fig, &tsv, &gp, e);
                if (!rc) rc = one_figure(dir, fig, tsv, gp, o, rep, e);
            }
            vitq_hists_free(h, nh);
        }
    }
    if (!rc && !o->no_losses) rc = loss_figures(s, o, dir, rep, e);
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
