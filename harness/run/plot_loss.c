/* plot_loss.c — the optimisation-curve figures of one cell: the curves its passes recorded (aph_recon's
 * <unit>/loss and <unit>/round, mlp_relu's <block>.mlp/loss and <block>.mlp/clamp), one figure per family,
 * one line per unit, log-scale y when every value is positive; as .tsv and .gp text (plot.c writes and
 * draws them). The .tsv holds one block per curve (a "step<TAB>name" header, then its points), blocks
 * separated by two blank lines (gnuplot's `index`). */
#include "run/run.h"

#include <stdlib.h>
#include <string.h>

void vitq_plot_curve_family(const char *name, char *out, size_t n) {
    const char *slash = strrchr(name, '/');
    if (!slash) {
        snprintf(out, n, "%s", name);
        return;
    }
    const char *kind = slash + 1, *after = NULL; /* after: the unit's part after its last run of digits */
    for (const char *p = name; p < slash; p++)
        if (*p >= '0' && *p <= '9') after = p + 1;
    while (after && after < slash && (*after == '.' || *after == '_')) after++;
    if (!after || after == slash) snprintf(out, n, "%s", kind);
    else snprintf(out, n, "%.*s_%s", (int)(slash - after), after, kind);
    for (char *p = out; *p; p++)
        if (*p == '.') *p = '_';
}

/* The figure's header comment lines and its settings up to the plot command. */
static void loss_gp_head(vitq_sb *g, const char *fig, const char *family, const char *cell_id, const char *run_label,
                         const vitq_plot_opts *o, const char *git_rev, int n_curves, int logy) {
    vitq_sb_fmt(g, "# %s.gp — the curves of family %s recorded by the passes of one cell (one line per unit)\n# run: ",
                fig, family);
    vitq_plot_comment(g, run_label);
    vitq_sb_fmt(g, " (git %s), drawn by vitq %s\n# cell: ", git_rev && git_rev[0] ? git_rev : "unknown", VITQ_VERSION);
    vitq_plot_comment(g, cell_id);
    vitq_sb_fmt(g, "\n# %d curves, one .tsv block each (gnuplot's index)\n# command: ", n_curves);
    vitq_plot_comment(g, o && o->command ? o->command : "");
    vitq_sb_fmt(g, "\n# redraw: gnuplot -c %s.gp %s.tsv %s.png\n", fig, fig, fig);
    vitq_sb_fmt(g, "set terminal pngcairo noenhanced size 1200,800 font \"DejaVu Sans,11\"\n"
                   "set output ARG2\n"
                   "set datafile separator \"\\t\"\n"
                   "set key outside right top\n"
                   "set grid\n%s"
                   "set title \"",
                logy ? "set logscale y\n" : "");
    vitq_plot_gpstr(g, family);
    vitq_sb_fmt(g, " — ");
    vitq_plot_gpstr(g, cell_id);
    /* a curve recorded per block (lowrank_nas's ranks and entropies "..._by_depth") has the block as its step */
    vitq_sb_fmt(g, "\"\nset xlabel \"%s\"\nset ylabel \"", strstr(family, "by_depth") ? "block (depth)" : "iteration");
    vitq_plot_gpstr(g, family);
    vitq_sb_fmt(g, "%s\"\n", logy ? " (log scale)" : "");
}

int vitq_plot_loss_text(const vitq_curve *c, int n, const char *family, const char *cell_id, const char *run_label,
                        const vitq_plot_opts *o, const char *git_rev, char *fig, size_t fig_size, char **tsv, char **gp,
                        vitq_err *e) {
    *tsv = *gp = NULL;
    char fname[512], fam[160];
    snprintf(fname, sizeof fname, "curves_%s__%s", cell_id, family);
    vitq_plot_sanitize(fig, fig_size, fname);
    vitq_sb t = {0}, g = {0};
    int k = 0, logy = 1;
    for (int i = 0; i < n; i++) {
        vitq_plot_curve_family(c[i].name, fam, sizeof fam);
        if (strcmp(fam, family) || c[i].n == 0) continue;
        vitq_sb_fmt(&t, "%sstep\t", k++ ? "\n\n" : "");
        vitq_plot_tsv_field(&t, c[i].name);
        vitq_sb_fmt(&t, "\n");
        for (int64_t j = 0; j < c[i].n; j++) {
            vitq_sb_fmt(&t, "%lld\t%.10g\n", (long long)c[i].step[j], c[i].value[j]);
            logy &= c[i].value[j] > 0;
        }
    }
    if (k == 0) {
        free(t.s);
        return vitq_fail(e, VITQ_EINVAL, "%s: cell '%s' has no curve of family '%s'", run_label, cell_id, family);
    }
    loss_gp_head(&g, fig, family, cell_id, run_label, o, git_rev, k, logy);
    vitq_sb_fmt(&g, "plot for [i=0:%d] ARG1 index i using 1:2 with lines lw 2 title columnhead(2)\n", k - 1);
    *tsv = vitq_sb_take(&t);
    *gp = vitq_sb_take(&g);
    if (!*tsv || !*gp) {
        free(*tsv), free(*gp);
        *tsv = *gp = NULL;
        return vitq_fail(e, VITQ_ENOMEM, "plot: out of memory");
    }
    return VITQ_OK;
}
