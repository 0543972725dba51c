/* cmd_run.c — `vitq run FILE.ini`: argument handling around the run layer (run/run.h): load and validate
 * the experiment (every error printed before any cell runs), print the grid (--dry-run) or run every
 * selected cell into a resumable results folder, then print the summary table (as `vitq results`).
 * Exit 0 done, 1 a cell or the run failed, 2 usage error, 130 interrupted (rerun to resume). */
#include "cli/cli.h"

#include <string.h>

static void usage(FILE *to) {
    fprintf(to,
            "usage: vitq run FILE.ini [--dry-run] [--force] [--fail-fast] [--threads N] [--only GLOB] [-q]\n\n"
            "Runs every cell of the INI's [grid] (cartesian product of its axes, zipped axes paired) and\n"
            "writes results/<name>/run.h5 plus one HDF5 file per cell. A rerun skips finished cells.\n\n"
            "  --dry-run      validate everything (INI, model, data, plugins, parameters) and print the\n"
            "                 expanded grid; run nothing, write nothing\n"
            "  --force        recompute cells that are already done\n"
            "  --fail-fast    stop at the first failing cell (default: record it as failed, go on)\n"
            "  --threads N    worker threads (default: [run] threads, 0 = all CPUs)\n"
            "  --only GLOB    run only cells whose id matches the glob, e.g. 'bits=4,*' (fp32: 'fp32')\n"
            "  -q             no progress on stderr\n"
            "  --keys         print the INI reference of the harness keys (Markdown) and exit\n");
}

/* "  passes: a, b (off)": the cell's [pass NAME] sections in file order (nothing without any). */
static void print_passes(const vitq_run_cell *c) {
    vitq_pass_binding *b = NULL;
    int n = 0;
    vitq_err e;
    if (vitq_passes_bind(c->grid->secs, c->grid->n_secs, &b, &n, &e) || n == 0) return; /* validated before */
    printf("  passes:");
    for (int i = 0; i < n; i++) printf("%s %s%s", i ? "," : "", b[i].name, b[i].enabled ? "" : " (off)");
    vitq_passes_free(b, n);
}

static void print_dry_run(const vitq_run *r, const vitq_experiment *x) {
    for (int i = 0; i < vitq_run_count(r); i++) {
        const vitq_run_cell *c = vitq_run_cell_at(r, i);
        if (!c->selected) continue;
        printf("%-40s", c->id);
        if (c->baseline) printf("  float baseline (no quantizers)");
        for (int a = 0; !c->baseline && a < x->n_axes; a++) printf("  %s=%s", x->axis_names[a], c->axis_values[a]);
        if (!c->baseline) print_passes(c);
        printf("\n");
    }
    int n = vitq_run_selected(r);
    printf("%d cell%s (%d grid, %d baseline) -> %s; nothing run (--dry-run)\n", n, n == 1 ? "" : "s", x->n_cells,
           vitq_run_count(r) - x->n_cells, vitq_run_output(r));
}

/* Validates, then runs (or lists) the cells; returns the exit code. */
static int execute(vitq_run *r, const vitq_experiment *x, const char *ini, const vitq_run_opts *o, int dry) {
    vitq_err e;
    int n = vitq_run_selected(r);
    if (!o->quiet) fprintf(stderr, "vitq run %s: checking %d cell%s (models, data, plugins, parameters)\n", ini, n, n == 1 ? "" : "s");
    int rc = vitq_run_validate(r, &e);
    if (rc) {
        const char *const *lines = NULL;
        int nl = 0;
        vitq_run_errors(r, &lines, &nl);
        for (int i = 0; i < nl; i++) cli_error("%s", lines[i]);
        return rc == VITQ_ECANCELLED ? 130 : 1;
    }
    if (dry) {
        print_dry_run(r, x);
        return 0;
    }
    if ((rc = vitq_run_start(r, &e))) {
        cli_error("%s", e.msg);
        return 1;
    }
    int removed = vitq_results_removed_tmp(vitq_run_results(r));
    if (!o->quiet && removed) fprintf(stderr, "removed %d stray temp file(s) of an interrupted run\n", removed);
    vitq_run_summary s;
    rc = vitq_run_all(r, &s, &e);
    if (rc == VITQ_ECANCELLED) return 130;
    if (rc) {
        cli_error("%s", e.msg);
        return 1;
    }
    if (!o->quiet)
        fprintf(stderr, "vitq run: %d cell%s computed, %d skipped (already done), %d failed in %.1fs%s -> %s\n", s.done,
                s.done == 1 ? "" : "s", s.skipped, s.failed, s.seconds, s.stopped ? " (stopped: --fail-fast)" : "",
                vitq_run_output(r));
    char a0[] = "results", a1[1024];
    snprintf(a1, sizeof a1, "%s", vitq_run_output(r));
    char *av[] = {a0, a1, NULL};
    fflush(stderr);
    return cmd_results(2, av) != 0 || s.failed ? 1 : 0; /* the same table as `vitq results` */
}

int cmd_run(int argc, char **argv) {
    int dry = 0, keys = 0, help = 0, n_pos = 0;
    long threads = -1;
    vitq_run_opts o = {0};
    const char *ini = NULL;
    const cli_opt opts[] = {
        {"--dry-run", NULL, CLI_FLAG, &dry, 0, 0},     {"--force", NULL, CLI_FLAG, &o.force, 0, 0},
        {"--fail-fast", NULL, CLI_FLAG, &o.fail_fast, 0, 0}, {"--quiet", "-q", CLI_FLAG, &o.quiet, 0, 0},
        {"--keys", NULL, CLI_FLAG, &keys, 0, 0},       {"--threads", NULL, CLI_INT, &threads, 0, 1024},
        {"--only", NULL, CLI_STR, &o.only, 0, 0},
    };
    const cli_spec spec = {"run", opts, (int)(sizeof opts / sizeof opts[0]), "INI file", 1};
    if (cli_parse(&spec, argc, argv, &ini, &n_pos, &help)) return 2;
    if (help || keys) {
        if (help) usage(stdout);
        else vitq_grid_keys_markdown(stdout);
        return 0;
    }
    if (!ini) {
        usage(stderr);
        return 2;
    }
    o.threads = threads < 0 ? 0 : threads == 0 ? -1 : (int)threads;
    vitq_set_quiet(o.quiet);
    vitq_err e;
    vitq_experiment *x = NULL;
    vitq_run *r = NULL;
    int code = 1;
    if (vitq_experiment_load(ini, &x, &e) || vitq_run_open(x, &o, &r, &e)) {
        cli_error("%s", e.msg);
    } else if (vitq_run_selected(r) == 0) {
        cli_error("--only '%s' matches none of the %d cells (vitq run %s --dry-run lists them)", o.only,
                  vitq_run_count(r), ini);
        code = 2;
    } else {
        code = execute(r, x, ini, &o, dry);
    }
    vitq_run_close(r);
    vitq_experiment_free(x);
    return code;
}
