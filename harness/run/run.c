/* run.c — executing a run: the results folder opened, cells run (or skipped when already done with the
 * same configuration hash) one by one by their stable index, the index rebuilt after each, and the
 * per-cell verdict lines. vitq_run_exec is what a shard or an MPI rank calls for the cells it owns;
 * vitq_run_all is `vitq run`'s loop over the selected cells.
 * Does not: print tables (the command does) or run cells in parallel (cells are independent; scale-out
 * runs several processes over disjoint subsets). */
#include "run/run.h"

#include <stdarg.h>
#include <string.h>
#include <unistd.h>

void vitq_run_log(const vitq_run *r, const char *fmt, ...) {
    if (r->o.quiet && !r->o.log) return; /* -q: nothing but the final table and errors */
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (r->o.log) {
        r->o.log(r->o.log_ctx, line);
        return;
    }
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
}

/* A done cell is skipped on a rerun, so it must have been computed as this process would: with the same
 * OpenBLAS kernels and thread count (results depend on both; the stage keys hold them too). A cell that
 * differs refuses the run before any cell runs; --force recomputes. Cells that predate the record pass. */
vitq_done_state vitq_run_done_state(const vitq_run *r, const vitq_run_cell *c, char *blas, size_t n, int *threads) {
    if (!c->sha256[0] || !vitq_results_cell_origin(vitq_run_output(r), c->id, c->hash, blas, n, threads))
        return VITQ_DONE_NO;
    if (blas[0] && strcmp(blas, vitq_blas_core())) return VITQ_DONE_OTHER_BLAS;
    if (*threads > 0 && *threads != vitq_threads_get()) return VITQ_DONE_OTHER_THREADS;
    return VITQ_DONE_SKIP;
}

/* vitq_run_start's check: the first selected cell the run would refuse fails it, naming the file. */
static int check_done_origin(vitq_run *r, vitq_err *e) {
    for (int i = 0; i < r->n_cells && !r->o.force; i++) {
        vitq_run_cell *c = &r->cells[i];
        vitq_err ke;
        if (!c->selected || (!c->sha256[0] && vitq_run_cell_key(r, c, &ke))) continue;
        char blas[128];
        int t = 0;
        const vitq_done_state d = vitq_run_done_state(r, c, blas, sizeof blas, &t);
        if (d == VITQ_DONE_OTHER_BLAS)
            return vitq_fail(e, VITQ_EINVAL, "%s/cells/%s.h5: cell %s was computed with the OpenBLAS %s kernels, this "
                             "run has %s (results depend on them): rerun with VITQ_BLAS_CORETYPE=%s, or --force to "
                             "recompute", vitq_run_output(r), c->id, c->id, blas, vitq_blas_core(), blas);
        if (d == VITQ_DONE_OTHER_THREADS)
            return vitq_fail(e, VITQ_EINVAL, "%s/cells/%s.h5: cell %s was computed with %d thread%s, this run has %d "
                             "(results depend on them): rerun with --threads %d, or --force to recompute",
                             vitq_run_output(r), c->id, c->id, t, t == 1 ? "" : "s", vitq_threads_get(), t);
    }
    return VITQ_OK;
}

int vitq_run_start(vitq_run *r, vitq_err *e) {
    if (r->res) return VITQ_OK;
    if (r->o.absent_ok)
        return vitq_fail(e, VITQ_EINVAL, "%s: opened to validate absent inputs (absent_ok): it cannot run", r->x->path);
    const vitq_experiment *x = r->x;
    int rc = vitq_run_check_output(r, e);
    if (rc) return rc;
    rc = vitq_results_open(vitq_run_output(r), x->path, x->text, x->axis_names, x->n_axes, &r->res, e);
    if (!rc && (rc = check_done_origin(r, e))) {
        vitq_results_close(r->res);
        r->res = NULL;
    }
    return rc;
}

int vitq_run_index(vitq_run *r, vitq_err *e) {
    if (!r->res) return vitq_fail(e, VITQ_EINVAL, "%s: the run is not started (vitq_run_start)", vitq_run_output(r));
    int rc = vitq_results_write_index(r->res, r->order, r->n_cells, e);
    if (!rc && r->res->no_lock && !r->lock_warned) {
        r->lock_warned = 1;
        vitq_run_log(r, "warning: %s: the filesystem refuses flock (%s): run.h5 is rebuilt without its lock; with "
                     "several writers in this folder it may miss a cell until the next rebuild (vitq merge %s %s)",
                     vitq_run_output(r), strerror(r->res->no_lock), vitq_run_output(r), vitq_run_output(r));
    }
    return rc;
}

/* "calibrate 1.6s, eval 9.3s" from the cell's timers. */
static const char *times_text(const vitq_cell_outcome *o, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < o->n_times && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%s %.1fs", i ? ", " : "", o->times[i].name, o->times[i].seconds);
    return buf;
}

int vitq_run_exec(vitq_run *r, int i, const char *label, vitq_cell_outcome *out, vitq_err *e) {
    memset(out, 0, sizeof *out);
    if (i < 0 || i >= r->n_cells) return vitq_fail(e, VITQ_EINVAL, "%s: no cell %d (the run has %d)", r->x->path, i, r->n_cells);
    vitq_run_cell *c = &r->cells[i];
    if (!r->res) return vitq_fail(e, VITQ_EINVAL, "%s: the run is not started (vitq_run_start)", r->x->path);
    if (!label) label = c->id;
    vitq_err ke; /* the resume key holds the model file's SHA-256; a model that cannot load runs (and fails) */
    if (!c->sha256[0]) vitq_run_cell_key(r, c, &ke);
    if (!r->o.force && vitq_results_cell_done(r->res, c->id, c->hash)) {
        out->status = VITQ_CELL_SKIPPED;
        if (!r->o.quiet) vitq_run_log(r, "%s: already done, skipped", label);
        return VITQ_OK;
    }
    int rc = vitq_cell_run(r, c, label, out, e);
    if (rc == VITQ_ECANCELLED) {
        char part[1200];
        vitq_run_partial_path(r, c->id, part, sizeof part);
        if (access(part, F_OK) == 0)
            vitq_run_log(r, "%s: interrupted; its committed units are in %s (rerun to resume from there)", label, part);
        else
            vitq_run_log(r, "%s: interrupted; nothing written for this cell (rerun to compute it)", label);
    }
    if (rc) return rc;
    char t[256];
    if (out->status == VITQ_CELL_FAILED) { /* an error: printed even with -q */
        if (r->o.quiet && !r->o.log) fprintf(stderr, "%s: FAILED: %s\n", label, out->error);
        else vitq_run_log(r, "%s: FAILED: %s", label, out->error);
    } else
        vitq_run_log(r, "%s: done  top1 %.2f%%  top5 %.2f%%  loss %.4f  (%lld images; %s, total %.1fs)", label,
                     out->eval.top1, out->eval.top5, out->eval.loss, (long long)out->eval.n,
                     times_text(out, t, sizeof t), out->seconds);
    return VITQ_OK;
}

int vitq_run_all(vitq_run *r, vitq_run_summary *sum, vitq_err *e) {
    memset(sum, 0, sizeof *sum);
    double t0 = vitq_now();
    int rc = vitq_run_start(r, e), k = 0;
    for (int i = 0; i < r->n_cells && !rc; i++) {
        if (!r->cells[i].selected) continue;
        char label[200];
        snprintf(label, sizeof label, "cell %d/%d %s", ++k, r->n_selected, r->cells[i].id);
        vitq_cell_outcome oc;
        if ((rc = vitq_run_exec(r, i, label, &oc, e))) break;
        if (oc.status == VITQ_CELL_SKIPPED) {
            sum->skipped++;
            continue;
        }
        if (oc.status == VITQ_CELL_FAILED) sum->failed++;
        else sum->done++;
        rc = vitq_run_index(r, e);
        if (!rc && oc.status == VITQ_CELL_FAILED && r->o.fail_fast) {
            sum->stopped = 1;
            break;
        }
    }
    if (!rc && !sum->failed && !sum->stopped && sum->done + sum->skipped == r->n_selected)
        vitq_stages_cleanup(r); /* every selected cell is done: the shared stages served their purpose */
    if (r->res && (rc == VITQ_OK || rc == VITQ_ECANCELLED)) { /* also after a cancel: what is done is listed */
        vitq_err ie;
        int irc = vitq_run_index(r, &ie);
        if (irc && rc == VITQ_OK) rc = irc, *e = ie;
    }
    sum->seconds = vitq_now() - t0;
    return rc;
}
