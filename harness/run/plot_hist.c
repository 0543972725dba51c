/* plot_hist.c — the float-versus-quantized histogram figure of one activation tap of one cell: counts per
 * bin (bin centre in column 1) on a log scale, as .tsv and .gp text (plot.c writes and draws them). */
#include "run/run.h"

#include <stdlib.h>
#include <string.h>

int vitq_plot_hist_text(const vitq_hist *h, const char *cell_id, const char *run_label, const vitq_plot_opts *o,
                        const char *git_rev, char *fig, size_t fig_size, char **tsv, char **gp, vitq_err *e) {
    *tsv = *gp = NULL;
    if (h->bins < 1 || !(h->hi > h->lo))
        return vitq_fail(e, VITQ_EINVAL, "%s: cell '%s': histogram '%s' has no bins or an empty range", run_label,
                         cell_id, h->tap);
    char fname[512];
    snprintf(fname, sizeof fname, "hist_%s__%s", cell_id, h->tap);
    vitq_plot_sanitize(fig, fig_size, fname);
    vitq_sb t = {0}, g = {0};
    int64_t nf = 0, nq = 0;
    vitq_sb_fmt(&t, "value\tfloat\tquantized\n");
    double w = (h->hi - h->lo) / h->bins;
    for (int i = 0; i < h->bins; i++) {
        vitq_sb_fmt(&t, "%.10g\t%lld\t%lld\n", h->lo + (i + 0.5) * w, (long long)h->float_counts[i],
                  (long long)h->quant_counts[i]);
        nf += h->float_counts[i], nq += h->quant_counts[i];
    }
    vitq_sb_fmt(&g, "# %s.gp — activation histogram of tap %s, float versus quantized\n# run: ", fig, h->tap);
    vitq_plot_comment(&g, run_label);
    vitq_sb_fmt(&g, " (git %s), drawn by vitq %s\n# cell: ", git_rev && git_rev[0] ? git_rev : "unknown", VITQ_VERSION);
    vitq_plot_comment(&g, cell_id);
    vitq_sb_fmt(&g, "\n# bins: %d over [%.10g, %.10g] (values outside were clamped into the end bins); "
                  "%lld float and %lld quantized values\n# command: ",
              h->bins, h->lo, h->hi, (long long)nf, (long long)nq);
    vitq_plot_comment(&g, o && o->command ? o->command : "");
    vitq_sb_fmt(&g, "\n# redraw: gnuplot -c %s.gp %s.tsv %s.png\n", fig, fig, fig);
    vitq_sb_fmt(&g, "set terminal pngcairo noenhanced size 1200,800 font \"DejaVu Sans,11\"\n"
                  "set output ARG2\n"
                  "set datafile separator \"\\t\"\n"
                  "set key autotitle columnhead top right\n"
                  "set grid\n"
                  "set logscale y\n"
                  "set title \"");
    vitq_plot_gpstr(&g, h->tap);
    vitq_sb_fmt(&g, " — ");
    vitq_plot_gpstr(&g, cell_id);
    vitq_sb_fmt(&g, "\"\nset xlabel \"activation value\"\n"
                  "set ylabel \"count (log scale)\"\n"
                  "set xrange [%.10g:%.10g]\n"
                  "set boxwidth %.10g absolute\n"
                  "set style fill transparent solid 0.35 border\n"
                  "# empty bins have no bar (log scale)\n"
                  "plot for [c=2:*] ARG1 using 1:(column(c) > 0 ? column(c) : NaN) with boxes title columnhead(c)\n",
              h->lo, h->hi, w);
    *tsv = vitq_sb_take(&t);
    *gp = vitq_sb_take(&g);
    if (!*tsv || !*gp) {
        free(*tsv), free(*gp);
        *tsv = *gp = NULL;
        return vitq_fail(e, VITQ_ENOMEM, "plot: out of memory");
    }
    return VITQ_OK;
}
