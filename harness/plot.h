/* plot.h — figures from a run's results: accuracy-versus-bits curves and activation histograms, each as
 * three files beside each other (STYLE.md section 6):
 *   <fig>.tsv  tab-separated data, one header row naming the columns (written by vitq from the HDF5)
 *   <fig>.gp   gnuplot script taking the data file as ARG1 and the output as ARG2:
 *              `gnuplot -c <fig>.gp <fig>.tsv <fig>.png` (run in the plots folder)
 *   <fig>.png  pngcairo 1200x800 (only when gnuplot is installed)
 * Figures:
 *   <metric>_vs_<x>          x = a numeric axis; one column per series (a combination of the series axes,
 *                            by default every other axis); cells that share x and series (an axis left out
 *                            of both, e.g. seeds) are averaged, which the script's header says.
 *   hist_<cell>__<tap>       float and quantized counts per bin (bin centre in column 1), log-scale count.
 * Names are sanitised: characters other than [A-Za-z0-9._=+-] become '_'.
 * Every file is written to a temp name and renamed. */
#ifndef VITQ_PLOT_H
#define VITQ_PLOT_H

#include "results.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vitq_plot_opts {
    const char *x_axis;    /* NULL: the first axis whose values are all numeric */
    const char *series;    /* comma-separated axes; NULL: every axis other than x */
    const char *metric;    /* "top1" (default) | "top5" | "loss" */
    const char *hist;      /* comma-separated tap globs (fnmatch); NULL: every recorded histogram */
    const char *cell;      /* cell id glob for histograms; NULL: every done cell */
    const char *out_dir;   /* NULL: <run>/plots */
    const char *command;   /* the command line that made the figures (script header); NULL: "" */
    const char *gnuplot;   /* gnuplot program; NULL: "gnuplot" from PATH; "" : do not run gnuplot */
    int no_curves;         /* 1: histograms only */
    int no_hists;          /* 1: curves only */
} vitq_plot_opts;

typedef struct vitq_plot_report {
    int n_figures;
    char **figures;        /* [n_figures] path of each figure without extension (out_dir/<fig>) */
    int gnuplot_missing;   /* 1: .tsv and .gp written, no .png (gnuplot not found) */
    int curves_skipped;    /* 1: no curve could be drawn (no numeric axis) and none was asked for explicitly
                              (--x, --series, --metric); histograms were drawn */
} vitq_plot_report;

/* Makes the curves (unless opts->no_curves) and the histograms (unless opts->no_hists), from the run
 * folder or its run.h5. Curves: cells whose x value is "-" or "" are left out, except baseline cells (every
 * axis "-", e.g. the float cell "fp32"), which become a flat column named by the cell id. A gnuplot failure
 * is an error quoting gnuplot's first stderr line. */
VITQ_API int vitq_plot_run(const char *run_path, const vitq_plot_opts *o, vitq_plot_report *rep, vitq_err *e);
VITQ_API void vitq_plot_report_free(vitq_plot_report *rep);

/* The pieces, for tests: the text of a curve figure's .tsv and .gp (malloc'd, caller frees).
 * fig receives the figure name (without extension). */
VITQ_API int vitq_plot_curve_text(const vitq_summary *s, const vitq_plot_opts *o, const char *run_label,
                                  char *fig, size_t fig_size, char **tsv, char **gp, vitq_err *e);
/* The .tsv and .gp of one histogram figure of cell `cell_id`. */
VITQ_API int vitq_plot_hist_text(const vitq_hist *h, const char *cell_id, const char *run_label,
                                 const vitq_plot_opts *o, const char *git_rev, char *fig, size_t fig_size,
                                 char **tsv, char **gp, vitq_err *e);
/* Writes <dir>/<fig>.tsv and .gp atomically and, unless gnuplot is "" or missing (*missing = 1), runs
 * `gnuplot -c <fig>.gp <fig>.tsv <fig>.png.tmp.<pid>` in dir and renames the PNG into place. */
VITQ_API int vitq_plot_write_figure(const char *dir, const char *fig, const char *tsv, const char *gp,
                                    const char *gnuplot, int *missing, vitq_err *e);

#ifdef __cplusplus
}
#endif
#endif
