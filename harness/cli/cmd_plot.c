/* cmd_plot.c — `vitq plot RUN [--x AXIS] [--series AXIS[,AXIS]] [--metric top1|top5|loss] [--hist TAPGLOB]
 * [--cell ID] [--out DIR]`: options (opts.c) and messages around vitq_plot_run (run/plot.c).
 * Prints the figures written on stdout (one path per line, without extension); warns on stderr when
 * gnuplot is missing (the .tsv and .gp are still written). */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

static void usage(FILE *to) {
    fprintf(to,
            "usage: vitq plot RUN [--x AXIS] [--series AXIS[,AXIS]] [--metric top1|top5|loss]\n"
            "                     [--hist TAPGLOB[,TAPGLOB] | --no-hist] [--no-loss] [--cell ID] [--out DIR]\n\n"
            "Draws figures from a run (its folder or run.h5) with gnuplot. Each figure is three files:\n"
            "FIG.tsv (data), FIG.gp (script) and FIG.png; restyle by editing FIG.gp and running\n"
            "`gnuplot -c FIG.gp FIG.tsv FIG.png` in the plots folder.\n\n"
            "  --x AXIS          x axis of the accuracy curve (default: the first numeric axis); cells\n"
            "                    with every axis '-' (the float baseline) are drawn as a flat line\n"
            "  --series AXES     one line per combination of these axes (default: every other axis);\n"
            "                    cells sharing x and series are averaged\n"
            "  --metric M        top1 (default), top5 or loss\n"
            "  --hist GLOB       activation histograms (float vs quantized, log count) of the taps\n"
            "                    matching GLOB only, e.g. 'blocks.*.attn.probs' (default: every tap the\n"
            "                    INI's [hist] section recorded)\n"
            "  --no-hist         no histograms\n"
            "  --no-loss         no figures of the curves the passes recorded (by default one per cell\n"
            "                    and family: aph_recon's loss and round per unit, mlp_relu's mlp_loss and\n"
            "                    mlp_clamp per block; `vitq results RUN --curves` prints them)\n"
            "  --cell ID         histograms and loss figures of this cell only (a glob; default: every\n"
            "                    done cell)\n"
            "  --out DIR         write the figures into DIR (default: RUN/plots)\n");
}

int cmd_plot(int argc, char **argv) {
    vitq_plot_opts o = {0};
    const char *run = NULL;
    int help = 0, n_pos = 0;
    const cli_opt opts[] = {
        {"--x", NULL, CLI_STR, &o.x_axis, 0, 0},   {"--series", NULL, CLI_STR, &o.series, 0, 0},
        {"--metric", NULL, CLI_STR, &o.metric, 0, 0}, {"--hist", NULL, CLI_STR, &o.hist, 0, 0},
        {"--cell", NULL, CLI_STR, &o.cell, 0, 0},  {"--out", NULL, CLI_STR, &o.out_dir, 0, 0},
        {"--no-hist", NULL, CLI_FLAG, &o.no_hists, 0, 0}, {"--no-loss", NULL, CLI_FLAG, &o.no_losses, 0, 0},
    };
    const cli_spec spec = {"plot", opts, (int)(sizeof opts / sizeof opts[0]), "RUN", 1, 1};
    if (cli_parse(&spec, argc, argv, &run, &n_pos, &help)) return 2;
    if (help) {
        usage(stdout);
        return 0;
    }
    if (o.no_hists && o.hist) {
        cli_error("--hist and --no-hist exclude each other");
        return 2;
    }
    if (o.metric && strcmp(o.metric, "top1") && strcmp(o.metric, "top5") && strcmp(o.metric, "loss")) {
        cli_error("--metric: expected top1, top5 or loss, got '%s'", o.metric);
        return 2;
    }
    char *command = cli_command_line(argc, argv);
    o.command = command;
    vitq_err e = {{0}};
    vitq_plot_report rep;
    int rc = vitq_plot_run(run, &o, &rep, &e);
    free(command);
    if (rc) {
        cli_error("%s", e.msg);
        return cli_exit_code(rc);
    }
    const char *ext = rep.gnuplot_missing ? "{tsv,gp}" : "{tsv,gp,png}";
    for (int i = 0; i < rep.n_figures; i++) printf("%s.%s\n", rep.figures[i], ext);
    if (rep.curves_skipped) fprintf(stderr, "vitq: warning: no numeric axis in %s: no accuracy curve drawn\n", run);
    if (rep.gnuplot_missing)
        fprintf(stderr, "vitq: warning: gnuplot not found: wrote the .tsv and .gp files only "
                        "(install gnuplot, then run `gnuplot -c FIG.gp FIG.tsv FIG.png` in the plots folder)\n");
    vitq_plot_report_free(&rep);
    return 0;
}
