/* results.h — a run's results in HDF5: one folder per run, one file per finished cell, an index
 * rebuilt atomically (../shared/STYLE.md section 6).
 *
 *   DIR/run.h5           index: root attributes (creator, vitq_version, git_rev, ini_path, ini_text,
 *                        created_utc, host, blas_config, threads, axis_names, summary_axis_columns),
 *                        /summary (compound table, one row per cell), /cells/<id> relative external
 *                        links to the cell files.
 *   DIR/cells/<id>.h5    one cell, written whole to DIR/cells/<id>.h5.tmp.<pid> and renamed.
 *   DIR/plots/           figures (plot.h).
 *
 * Cell file layout:
 *   /            attrs: cell_id, <axis name> = value (text) for every axis whose name is not one of the
 *                reserved names below, seed (uint64), status ("done" | "failed"), error ("" if none),
 *                config_hash, config_ini, plugins (array of "name version" strings), vitq_version
 *   /axes        attrs: <axis name> = value (text) for every axis (always, reserved names included);
 *                attr axis_names (array, in the run's order)
 *   /metrics     attrs: top1, top5 (percent), loss (nats, mean cross-entropy), n_eval (int64),
 *                seconds_calibrate, seconds_eval, seconds_total, units (text)
 *   /layers      compound table: tap S96, plugin S32, mse f64, sqnr_db f64, count i64
 *   /hist/<tap>  datasets edges[bins+1] f64, float_counts[bins] i64, quant_counts[bins] i64;
 *                attrs bins, lo, hi, n_float, n_quant (sums of the counts)
 *   /calibration/indices  int64[n_calib] training-split image indices used for calibration
 *
 * /summary columns: cell_id, one fixed-length string column per axis (named by the axis; an axis whose
 * name collides with a fixed column is named "axis_<name>"; the root attribute summary_axis_columns
 * lists the axis columns in order), status, error, seed, top1, top5, loss, n_eval, seconds_calibrate,
 * seconds_eval, seconds_total. Strings are fixed-length, null-padded UTF-8, so that
 * `pd.DataFrame(h5py.File(p)["summary"][()])` works (decode byte columns with .str.decode()).
 *
 * A cell file that exists but cannot be read (truncated, garbage) is listed in the summary with status
 * "corrupt", NaN metrics and the HDF5 error as `error`, and has no /cells link; vitq_run_cell_done
 * reports it as not done, so a rerun recomputes (and replaces) it.
 *
 * Errors: one line naming the file and the HDF5 object. HDF5's automatic error printing is turned off
 * by every function here.
 */
#ifndef VITQ_RESULTS_H
#define VITQ_RESULTS_H

#include "vitq.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vitq_run vitq_run;

/* Creates DIR and DIR/cells if needed, removes stray *.tmp.<pid> files (in DIR, DIR/cells, DIR/plots)
 * whose process is gone, remembers the root attributes of the index: ini_text, ini_path, the grid's axis
 * names (in order), and fills vitq_version, git revision (`git rev-parse --short HEAD`, else "unknown"),
 * created_utc, host, BLAS config (openblas_get_config()), threads. ini_path / ini_text may be NULL. */
VITQ_API int vitq_run_open(const char *dir, const char *ini_path, const char *ini_text,
                           const char *const *axis_names, int n_axes, vitq_run **out, vitq_err *e);
VITQ_API void vitq_run_close(vitq_run *r);
/* The run folder as given to vitq_run_open. */
VITQ_API const char *vitq_run_dir(const vitq_run *r);
/* Number of stray temp files vitq_run_open removed (for messages and tests). */
VITQ_API int vitq_run_removed_tmp(const vitq_run *r);

/* 1 if DIR/cells/<id>.h5 exists, opens, has status "done" and the same config_hash attribute; 0 otherwise
 * (missing, corrupt, failed, other hash). */
VITQ_API int vitq_run_cell_done(vitq_run *r, const char *cell_id, const char *config_hash);

typedef struct vitq_cell_result {
    const char *id;                 /* e.g. "bits=4,softmax=log2": a file name (no '/', not starting with '.') */
    const char *const *axis_values; /* one per axis of the run, as text */
    const char *config_hash;        /* hash of the resolved configuration (resume key) */
    const char *config_ini;         /* the resolved configuration as INI text */
    const char *status;             /* "done" | "failed" */
    const char *error;              /* message when failed, else NULL */
    uint64_t seed;
    double top1, top5, loss;        /* percent, percent, nats */
    int64_t n_eval;                 /* images evaluated */
    double seconds_calibrate, seconds_eval, seconds_total;
    const vitq_tap_stat *taps;
    int n_taps;
    const vitq_hist *hists;
    int n_hists;
    const char *const *plugins;     /* "name version" strings of the plugins used */
    int n_plugins;
    const int64_t *calib_indices;   /* the training-split images used for calibration (auditability) */
    int n_calib;
} vitq_cell_result;

/* Writes DIR/cells/<id>.h5 whole to a temp name in the same folder, closes, fsyncs, renames; on any
 * failure removes the temp file and leaves any previous DIR/cells/<id>.h5 untouched. */
VITQ_API int vitq_run_write_cell(vitq_run *r, const vitq_cell_result *c, vitq_err *e);

/* Rebuilds DIR/run.h5 (temp + rename) from every DIR/cells/<id>.h5. Rows follow `order` (the grid's cell
 * ids; ids without a file are skipped), then cells not listed, sorted by id. order may be NULL. */
VITQ_API int vitq_run_write_index(vitq_run *r, const char *const *order, int n_order, vitq_err *e);

/* Reading, for `vitq results` and `vitq plot`: run_path is the run folder or its run.h5. */
typedef struct vitq_summary {
    int n_rows, n_axes;
    char **axis_names;    /* [n_axes] */
    char ***axis_values;  /* [row][axis] */
    char **cell_ids;      /* [row] */
    char **status;        /* [row] "done" | "failed" | "corrupt" */
    char **error;         /* [row] "" when none */
    double *top1, *top5, *loss, *seconds_total; /* [row]; NaN when not done */
    int64_t *n_eval;      /* [row] */
    uint64_t *seed;       /* [row] */
    char *run_dir;        /* the run folder */
    char *vitq_version, *git_rev; /* root attributes of the index ("" if absent) */
} vitq_summary;

VITQ_API int vitq_summary_read(const char *run_path, vitq_summary **out, vitq_err *e);
VITQ_API void vitq_summary_free(vitq_summary *s);

/* Reads one cell file's histograms back, in name order (for plots and tests). *out is an array of *n
 * histograms whose count arrays are owned by it; free with vitq_hists_free. */
VITQ_API int vitq_cell_read_hists(const char *cell_path, vitq_hist **out, int *n, vitq_err *e);
VITQ_API void vitq_hists_free(vitq_hist *h, int n);

#ifdef __cplusplus
}
#endif
#endif
