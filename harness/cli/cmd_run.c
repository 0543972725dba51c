/* cmd_run.c — `vitq run FILE.ini`: argument handling around the run layer (run/run.h): load and validate
 * the experiment (every error printed before any cell runs), print the grid (--dry-run) or run every
 * selected cell into a resumable results folder, then print the summary table (as `vitq results`).
 * --shard K/N runs the cells whose stable index is K mod N (run/shard.c); under mpirun (a `make MPI=1`
 * build) the cells are handed to the ranks by mpi.c instead.
 * Exit 0 done, 1 a cell or the run failed, 2 usage error, 130 interrupted (rerun to resume). */
#include "cli/cli.h"

#include <string.h>

static void usage(FILE *to) {
    fprintf(to,
            "usage: vitq run FILE.ini [--dry-run] [--force] [--fail-fast] [--threads N] [--only GLOB]\n"
            "                [--shard K/N] [--output DIR] [-q]\n"
            "       vitq run --keys\n"
            "       mpirun -np R vitq run FILE.ini ...      (a vitq built with `make MPI=1`)\n\n"
            "Runs every cell of the INI's [grid] (cartesian product of its axes, zipped axes paired) and\n"
            "writes results/<name>/run.h5 plus one HDF5 file per cell. A rerun skips finished cells.\n\n"
            "  --dry-run      validate everything (INI, model, data, plugins, parameters) and print the\n"
            "                 expanded grid; run nothing, write nothing. An absent checkpoint with a\n"
            "                 built-in [model] arch is checked against that architecture, an absent\n"
            "                 dataset folder is not opened: each is named in a 'not here' line; a cell\n"
            "                 already done in the output folder is marked '(done: skipped)'\n"
            "  --force        recompute cells that are already done\n"
            "  --fail-fast    stop at the first failing cell (default: record it as failed, go on)\n"
            "  --threads N    worker threads (default: [run] threads, 0 = all CPUs; under mpirun all CPUs\n"
            "                 are shared by the ranks of a node)\n"
            "  --only GLOB    run only cells whose id matches the glob, e.g. 'bits=4,*' (fp32: 'fp32')\n"
            "  --shard K/N    run only the cells whose index (the --dry-run order, from 0) is K mod N;\n"
            "                 N shards (K = 0..N-1, e.g. Slurm array tasks) together run the grid, into\n"
            "                 one shared folder or each into its own (--output) for `vitq merge`\n"
            "  --output DIR   the results folder instead of [run] output (same cells, same resume keys)\n"
            "  -q             no progress on stderr\n"
            "  --keys         print the INI reference of the harness keys (Markdown) and exit\n\n"
            "Under mpirun (make MPI=1 builds), rank 0 hands cells to the ranks as they become free; every\n"
            "rank writes its cells into the one results folder (on a filesystem all ranks share).\n");
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

void cli_run_print_dry(const vitq_run *r, const vitq_experiment *x, int force) {
    int n_base = 0, n_done = 0;
    for (int i = 0; i < vitq_run_count(r); i++) {
        const vitq_run_cell *c = vitq_run_cell_at(r, i);
        if (!c->selected) continue;
        n_base += c->baseline;
        /* the resume key holds the model's SHA-256 once validation loaded it; an absent model: never done */
        char blas[128], why[512] = "skipped";
        int threads = 0;
        const vitq_done_state d = vitq_run_done_state(r, c, blas, sizeof blas, &threads);
        const int done = d != VITQ_DONE_NO;
        n_done += done;
        if (force) snprintf(why, sizeof why, "--force recomputes it");
        else if (d == VITQ_DONE_OTHER_BLAS)
            snprintf(why, sizeof why, "with the OpenBLAS %s kernels, so the run refuses: VITQ_BLAS_CORETYPE=%s or "
                     "--force", blas, blas);
        else if (d == VITQ_DONE_OTHER_THREADS)
            snprintf(why, sizeof why, "with %d thread%s, so the run refuses: --threads %d or --force", threads,
                     threads == 1 ? "" : "s", threads);
        printf("%-40s", c->id);
        if (c->baseline) printf("  float baseline (no quantizers)");
        for (int a = 0; !c->baseline && a < x->n_axes; a++) printf("  %s=%s", x->axis_names[a], c->axis_values[a]);
        if (!c->baseline) print_passes(c);
        if (done) printf("  (done: %s)", why);
        printf("\n");
    }
    int n = vitq_run_selected(r);
    char of[32] = "";
    if (n < vitq_run_count(r)) snprintf(of, sizeof of, " of %d", vitq_run_count(r));
    char done[64] = "";
    if (n_done) snprintf(done, sizeof done, ", %d already done", n_done);
    printf("%d cell%s (%d grid, %d baseline)%s -> %s%s; nothing run (--dry-run)\n", n, n == 1 ? "" : "s",
           n - n_base, n_base, of, vitq_run_output(r), done);
    const char *const *notes = NULL;
    int nn = 0;
    vitq_run_notes(r, &notes, &nn);
    for (int i = 0; i < nn; i++) printf("not here: %s\n", notes[i]);
}

int cli_run_validate(vitq_run *r, int print) {
    vitq_err e;
    int rc = vitq_run_validate(r, &e);
    if (!rc) return 0;
    const char *const *lines = NULL;
    int nl = 0;
    vitq_run_errors(r, &lines, &nl);
    for (int i = 0; print && i < nl; i++) cli_error("%s", lines[i]);
    if (print && nl == 0) cli_error("%s", e.msg);
    return rc == VITQ_ECANCELLED ? 130 : 1;
}

int cli_run_table(const vitq_run *r) {
    char a0[] = "results", a1[1024];
    snprintf(a1, sizeof a1, "%s", vitq_run_output(r));
    char *av[] = {a0, a1, NULL};
    fflush(stderr);
    return cmd_results(2, av); /* the same table as `vitq results` */
}

/* Validates, then runs (or lists) the cells; returns the exit code. */
static int execute(vitq_run *r, const vitq_experiment *x, const char *ini, const vitq_run_opts *o, int dry) {
    vitq_err e;
    int n = vitq_run_selected(r);
    if (!o->quiet)
        fprintf(stderr, "vitq run %s: checking %d cell%s (models, data, plugins, parameters)%s\n", ini, n,
                n == 1 ? "" : "s", o->shards > 1 ? " of this shard" : "");
    int rc = cli_run_validate(r, 1);
    if (rc) return rc;
    if (dry) {
        if ((rc = vitq_run_check_output(r, &e))) {
            cli_error("%s", e.msg);
            return 1;
        }
        cli_run_print_dry(r, x, o->force);
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
    return cli_run_table(r) != 0 || s.failed ? 1 : 0;
}

/* --shard and the launcher: 0, or the exit code of a usage error (printed; by the first rank only when
 * an MPI launcher started several, since MPI is not initialised yet to agree on it). */
static int check_mode(const char *shard, vitq_run_opts *o) {
    vitq_err e;
    int ranks = cli_mpi_launcher_size(), first = cli_mpi_launcher_rank() == 0;
    if (shard && vitq_shard_parse(shard, &o->shard, &o->shards, &e)) {
        if (first) cli_error("%s", e.msg);
        return 2;
    }
    if (ranks > 1 && !cli_mpi_built()) {
        if (first)
            cli_error("started as one of %d ranks (mpirun/srun), but this vitq is built without MPI, so every rank "
                      "would run the whole grid: build with `make MPI=1`, or use --shard K/N", ranks);
        return 2;
    }
    if (shard && cli_mpi_launched()) {
        if (first) cli_error("--shard cannot be used under mpirun: the ranks already share the cells (drop --shard)");
        return 2;
    }
    return 0;
}

int cmd_run(int argc, char **argv) {
    int dry = 0, keys = 0, help = 0, n_pos = 0;
    long threads = -1;
    vitq_run_opts o = {0};
    const char *ini = NULL, *shard = NULL;
    const cli_opt opts[] = {
        {"--dry-run", NULL, CLI_FLAG, &dry, 0, 0},     {"--force", NULL, CLI_FLAG, &o.force, 0, 0},
        {"--fail-fast", NULL, CLI_FLAG, &o.fail_fast, 0, 0}, {"--quiet", "-q", CLI_FLAG, &o.quiet, 0, 0},
        {"--keys", NULL, CLI_FLAG, &keys, 0, 0},       {"--threads", NULL, CLI_INT, &threads, 0, 1024},
        {"--only", NULL, CLI_STR, &o.only, 0, 0},      {"--shard", NULL, CLI_STR, &shard, 0, 0},
        {"--output", NULL, CLI_STR, &o.output, 0, 0},
    };
    /* no required INI in the spec: --keys needs none (checked below) */
    const cli_spec spec = {"run", opts, (int)(sizeof opts / sizeof opts[0]), "INI file", 1, 0};
    if (cli_parse(&spec, argc, argv, &ini, &n_pos, &help)) return 2;
    if (help || keys) {
        if (help) usage(stdout);
        else vitq_grid_keys_markdown(stdout);
        return 0;
    }
    if (!ini) {
        cli_error("an INI file is required: vitq run FILE.ini (vitq run --help)");
        return 2;
    }
    int code = check_mode(shard, &o);
    if (code) return code;
    o.threads = threads < 0 ? 0 : threads == 0 ? -1 : (int)threads;
    vitq_set_quiet(o.quiet);
    if (cli_mpi_launched()) return cli_run_mpi(ini, &o, dry, threads >= 0);
    o.absent_ok = dry;
    vitq_err e;
    vitq_experiment *x = NULL;
    vitq_run *r = NULL;
    code = 1;
    if (vitq_experiment_load(ini, &x, &e) || vitq_run_open(x, &o, &r, &e)) {
        cli_error("%s", e.msg);
    } else if (vitq_run_selected(r) == 0 && !(o.shards > 1 && !o.only)) {
        cli_error("--only '%s' matches none of the %d cells%s (vitq run %s --dry-run lists them)", o.only,
                  vitq_run_count(r), o.shards > 1 ? " of this shard" : "", ini);
        code = 2;
    } else { /* a shard past the last cell still writes its (empty) run folder, which vitq merge expects */
        code = execute(r, x, ini, &o, dry);
    }
    vitq_run_close(r);
    vitq_experiment_free(x);
    return code;
}
