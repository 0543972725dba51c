/* cmd_plot.c — `vitq plot RUN [--x AXIS] [--series AXIS[,AXIS]] [--metric top1|top5|loss] [--hist TAPGLOB]
 * [--cell ID] [--out DIR]`: option parsing and messages around vitq_plot_run (plot.c).
 * Prints the figures written on stdout (one path per line, without extension); warns on stderr when
 * gnuplot is missing (the .tsv and .gp are still written). */
#include "cmd.h"
#include "plot.h"

#include <stdlib.h>
#include <string.h>

static void usage(FILE *to) {
    fprintf(to,
            "usage: vitq plot RUN [--x AXIS] [--series AXIS[,AXIS]] [--metric top1|top5|loss]\n"
            "                     [--hist TAPGLOB[,TAPGLOB] | --no-hist] [--cell ID] [--out DIR]\n\n"
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
            "  --no-hist         no histograms, curves only\n"
            "  --cell ID         histograms of this cell only (a glob; default: every done cell)\n"
            "  --out DIR         write the figures into DIR (default: RUN/plots)\n");
}

/* The command line as a shell would need it, for the script header. */
static char *join_command(int argc, char **argv) {
    size_t n = 16;
    for (int i = 0; i < argc; i++) n += 4 * strlen(argv[i]) + 3;
    char *s = malloc(n), *p = s;
    if (!s) return NULL;
    p += sprintf(p, "vitq plot");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int plain = *a != 0;
        for (const char *q = a; *q && plain; q++)
            plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=,:+", *q) != NULL;
        *p++ = ' ';
        if (plain) {
            p += sprintf(p, "%s", a);
        } else {
            *p++ = '\'';
            for (const char *q = a; *q; q++) {
                if (*q == '\'') p += sprintf(p, "'\\''");
                else *p++ = *q;
            }
            *p++ = '\'';
        }
    }
    *p = 0;
    return s;
}

int cmd_plot(int argc, char **argv) {
    vitq_plot_opts o = {0};
    const char *run = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--no-hist")) {
            o.no_hists = 1;
            continue;
        }
        static const char *const names[] = {"--x", "--series", "--metric", "--hist", "--cell", "--out"};
        for (int k = 0; k < 6 && !dst; k++) {
            size_t l = strlen(names[k]);
            if (strncmp(a, names[k], l) != 0 || (a[l] != 0 && a[l] != '=')) continue;
            dst = k == 0 ? &o.x_axis : k == 1 ? &o.series : k == 2 ? &o.metric : k == 3 ? &o.hist : k == 4 ? &o.cell : &o.out_dir;
            if (a[l] == '=') {
                *dst = a + l + 1;
            } else if (i + 1 < argc) {
                *dst = argv[++i];
            } else {
                cmd_error("%s needs a value (vitq plot --help)", a);
                return 2;
            }
            if (!**dst) {
                cmd_error("%s: empty value", names[k]);
                return 2;
            }
        }
        if (dst) continue;
        if (a[0] == '-') {
            cmd_error("unknown option '%s' (vitq plot --help)", a);
            return 2;
        } else if (!run) {
            run = a;
        } else {
            cmd_error("one RUN expected, got '%s' and '%s'", run, a);
            return 2;
        }
    }
    if (!run) {
        usage(stderr);
        return 2;
    }
    if (o.no_hists && o.hist) {
        cmd_error("--hist and --no-hist exclude each other");
        return 2;
    }
    if (o.metric && strcmp(o.metric, "top1") && strcmp(o.metric, "top5") && strcmp(o.metric, "loss")) {
        cmd_error("--metric: expected top1, top5 or loss, got '%s'", o.metric);
        return 2;
    }
    char *command = join_command(argc, argv);
    o.command = command;
    vitq_err e = {{0}};
    vitq_plot_report rep;
    int rc = vitq_plot_run(run, &o, &rep, &e);
    free(command);
    if (rc) {
        cmd_error("%s", e.msg);
        return cmd_exit_code(rc);
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
