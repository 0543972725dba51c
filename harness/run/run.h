/* run/run.h — the run layer: experiments (INI -> validated grid of cells), evaluation, results in
 * HDF5, figures, and the run itself — every cell through a pipeline of stages into a results folder.
 * What `vitq run | results | plot` call; usable without the command line (shards, MPI ranks).
 *
 *   grid.c grid_keys.c grid_bundle.c          experiment INI -> cells; the harness key table; bundles
 *   grid_pass.c                               [pass NAME] sections bound to their plugins
 *   eval.c                                    a model (float or fake-quant) over a dataset
 *   results_write.c results_index.c results_read.c   cell files, the index, reading them back
 *   plot.c plot_curve.c plot_hist.c plot_loss.c   gnuplot figures from a run
 *   cells.c validate.c pipeline.c run.c       the run: cells and caches, validation, stages, the loop
 *   run_guard.c                               one experiment per run folder
 *   shard.c merge.c                           scale-out: which cells a shard owns; merging run folders
 */
#ifndef VITQ_RUN_H
#define VITQ_RUN_H

#include "train/train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Evaluation (eval.c): the float or fake-quantized model (m->hooks) over a dataset.
 * ------------------------------------------------------------------------------------------- */
typedef struct vitq_eval_result {
    int64_t n;          /* images evaluated */
    double top1, top5;  /* percent */
    double loss;        /* mean cross-entropy (no smoothing) */
    double seconds, images_per_s;
} vitq_eval_result;

/* Evaluates the first `limit` images (<= 0: all) in batches of `batch`. logits_out, if non-NULL, holds
 * (n, K) floats. `label` names the progress line (NULL: no progress). */
VITQ_API int vitq_evaluate(vitq_model *m, vitq_dataset *d, int64_t limit, int batch, float *logits_out,
                           vitq_eval_result *r, const char *label, vitq_err *e);


/* ---- Experiments (grid.c, grid_keys.c, grid_bundle.c): an experiment INI (sections [run] [model] [data]
 * [quantizer NAME]... [pass NAME]... [hist] [grid] [AXIS = VALUE]...) validated and expanded into cells.
 *
 * [grid]: every key is an axis with comma-separated values; the special key `zip` holds groups separated
 * by '|', each a comma-separated list of axis names paired value by value (all of one length). Cells are
 * the cartesian product over factors (each zip group, each free axis), ordered by each factor's first
 * axis in the INI, the first factor varying slowest. `${axis}` in any other value is replaced by the
 * cell's value. Every axis must be used by some ${axis} (a bundled axis: or through its variables).
 *
 * Bundles (grid_bundle.c): a section [AXIS = VALUE] (spaces around '=' optional) is the bundle of
 * settings of that value of that axis: each key is a variable, and `${key}` in any other section takes
 * the value the bundle of the cell's AXIS value gives it. So a grid axis can read as a paper's table
 * (`recon = none, qdrop, brecq`, each name a bundle) while cell ids and the summary keep the names. An
 * axis with one bundle needs one for every value, all defining the same variables; a variable is an
 * identifier, named like no axis and no other axis's variable; bundle values are literal (no ${...});
 * every variable must be used. Bundle sections and [grid] are left out of the resolved sections.
 *
 * [pass NAME] (grid_pass.c binds them): NAME is a pass plugin; `enabled` (bool, default true: false
 * skips the pass in that cell) is the harness's key, every other key a parameter of the plugin. Passes
 * run in file order (a before-calibration pass cannot follow an after-calibration one); one section per
 * pass.
 *
 * Harness keys ([run], [model], [data], [hist], and [pass NAME] enabled) are typed by the table
 * vitq_grid_keys() (the same vitq_param rows plugins use), checked per cell after interpolation.
 * [quantizer NAME] sections and the plugin parameters of [pass NAME] sections are interpolated only:
 * vitq_run_validate checks them against the plugins (vitq_qmodel_create, vitq_passes_bind).
 * All errors (up to 20, one per INI line) come back at once, sorted by line, joined with '\n'.
 *
 * Relative paths (model path, dataset folder, output) are relative to the current working directory.
 * Does NOT load models, datasets or plugins (the run below does). */
/* The harness key table (grid_keys.c): core's vitq_key rows over vitq_run_cfg. `def` NULL = required;
 * for [run] output the default "results/<name>" and for [run] name the INI's base name are computed;
 * VITQ_KEY_NOHASH rows (name, output, threads, baseline) are not part of a cell's configuration hash. */
VITQ_API const vitq_key *vitq_grid_keys(int *n);
/* The table as the README's Markdown reference (`vitq run --keys`). */
VITQ_API void vitq_grid_keys_markdown(FILE *out);

/* Typed harness configuration of one cell (after interpolation). Strings point into the cell's resolved
 * sections or to static defaults; valid while the experiment lives. */
typedef struct vitq_run_cfg {
    char name[128];            /* [run] name (default: the INI file's base name) */
    char output[1024];         /* [run] output (default results/<name>) */
    uint64_t seed;             /* [run] seed */
    int threads;               /* [run] threads, 0 = all CPUs */
    int baseline;              /* [run] baseline: also evaluate the float model as cell "fp32" */
    const char *calib_mode;    /* [run] calib_mode: "sequential" | "float" | "search" */
    int search_rounds;         /* [run] search_rounds */
    int data_parallel;         /* [run] data_parallel: reconstruction steps split by images over the threads */
    const char *model_path;    /* [model] path */
    const char *arch;          /* [model] arch ("" = from the file's metadata) */
    const char *dataset;       /* [data] dataset */
    const char *eval_split;    /* [data] eval_split: test | val (the evaluation split) | train */
    int64_t eval_limit;        /* [data] eval_limit, 0 = all */
    int batch;                 /* [data] batch */
    const char *calib_split;   /* [data] calib_split */
    const char *calib_sampler; /* [data] calib_sampler: vitq | numpy */
    int calib_size;            /* [data] calib_size */
    int convert_channels;      /* [data] convert_channels */
    int img_size;              /* [data] img_size, crop_pct, interpolation, mean, std: timm validate.py's */
    double crop_pct;           /* overrides of the model's data config (0 / "" = the model's) */
    const char *interpolation, *mean, *std;
    const char *hist_taps;     /* [hist] taps: comma-separated globs ("" = none) */
    int hist_bins;             /* [hist] bins */
} vitq_run_cfg;

typedef struct vitq_grid_axis {
    char *name;
    char **values;
    int n_values;
    int line;   /* of its key in [grid] */
    int zip;    /* zip group index, -1 when free */
} vitq_grid_axis;

typedef struct vitq_grid_cell {
    char id[128];              /* "bits=4,softmax=log2" sanitised; "default" without axes */
    const char **values;       /* [n_axes] pointers into the axes' values */
    vitq_section *secs;        /* resolved sections ([grid] left out), ${...} replaced */
    int n_secs;
    vitq_run_cfg cfg;
    char *config_text;         /* canonical resolved configuration (INI text; keys sorted) */
    char hash[17];             /* FNV-1a 64 of config_text, 16 hex digits: the resume key */
} vitq_grid_cell;

/* A bundle variable: `name` defined by every [AXIS = VALUE] section of one axis. */
typedef struct vitq_grid_var {
    char *name;
    int axis;                  /* index into the axes */
    const char **values;       /* [that axis's n_values]: its text in each value's bundle (into secs) */
    const char *section;       /* the bundle section of its first definition in the file, and the line */
    int line;
} vitq_grid_var;

typedef struct vitq_experiment {
    char *path;                /* the INI file (or the name given to vitq_experiment_parse) */
    char *text;                /* its text */
    vitq_section *secs;        /* as read */
    int n_secs;
    vitq_grid_axis *axes;      /* [grid] order */
    int n_axes;
    const char **axis_names;   /* [n_axes] */
    vitq_grid_cell *cells;     /* expansion order */
    int n_cells;
    vitq_grid_var *vars;       /* bundle variables, axis by axis in [grid] order */
    int n_vars;
} vitq_experiment;

/* Reads, validates and expands. On failure *out = NULL and e holds every error ("FILE:LINE: ..." lines). */
VITQ_API int vitq_experiment_load(const char *path, vitq_experiment **out, vitq_err *e);
VITQ_API int vitq_experiment_parse(const char *text, const char *name, vitq_experiment **out, vitq_err *e);
/* [run] name's default for the INI file at path: its base name without the extension, into buf; returns buf. */
VITQ_API const char *vitq_grid_default_name(const char *path, char *buf, size_t n);
VITQ_API void vitq_experiment_free(vitq_experiment *x);

/* Builds a file-name-safe id "name=value,name=value" into out (cap >= 128): characters outside
 * [A-Za-z0-9._=,+-] become '_' and, when anything was replaced or the id is longer than 100 bytes, the id
 * is cut to 83 bytes and "-<16 hex digits of FNV-1a of the raw id>" appended. n == 0 gives "default". */
VITQ_API void vitq_grid_cell_id(const char *const *names, const char *const *values, int n, char *out, size_t cap);

/* grid_keys.c: types the harness keys of cell c of x into c->cfg and its canonical text and hash (errors
 * go to grid.c's collector). Internal to the run layer. */
void vitq_grid_type_cell(vitq_experiment *x, vitq_grid_cell *c, vitq_errs *E);
/* "quantizer NAME" sections; *qname (if non-NULL) points at NAME. */
int vitq_grid_is_quantizer_section(const char *name, const char **qname);
/* "pass NAME" sections (and "pass" alone, with *pname = ""); *pname (if non-NULL) points at NAME. */
int vitq_grid_is_pass_section(const char *name, const char **pname);
/* grid_bundle.c: 1 for a bundle section "AXIS = VALUE" (any name holding '='). */
int vitq_grid_is_bundle_section(const char *name);
/* grid_bundle.c: reads the bundle sections against the parsed axes into x->vars; every rule above. */
void vitq_grid_parse_bundles(vitq_experiment *x, vitq_errs *E);
/* grid_bundle.c: index of the variable named name[0..n) in x->vars, or -1. */
int vitq_grid_var_index(const vitq_experiment *x, const char *name, size_t n);
/* grid_bundle.c: where the ${...} of `raw` (an INI value as written) got their text in cell c, for errors
 * reported at the line that uses them: "; ${bits} is 'four' from FILE:37 ([grid])" per axis, "; ${mp} is
 * '...' from FILE:41 ([m = final])" per bundle variable; "" when raw names none. Returns buf. */
const char *vitq_grid_origin(const vitq_experiment *x, const vitq_grid_cell *c, const char *raw, char *buf, size_t n);
/* grid_pass.c: the `enabled` key of a [pass NAME] section: 0 with *on set (default 1), or -1 with
 * "expected ..." in why and *kv (if non-NULL) the key. */
int vitq_grid_pass_enabled(const vitq_section *s, int *on, const vitq_kv **kv, char *why, size_t n);

/* ---- Passes of a cell (grid_pass.c) -------------------------------------------------------------
 * The [pass NAME] sections of a cell's resolved sections, bound to their plugins: what the pipeline runs
 * as stages (before or after "calibrate" as each plugin's `when` says, in file order within each) and
 * what vitq_run_validate checks for every selected cell. Lives in the run layer (the sections are an
 * experiment's); the quant layer's loader does the loading and the parameter parsing. */
typedef struct vitq_pass_binding {
    const vitq_section *section;  /* the cell's [pass NAME] section (file, line, keys as resolved) */
    const char *name;             /* NAME, into section->name; == plugin->name */
    const vitq_plugin *plugin;    /* kind VITQ_PLUGIN_PASS: plugin->pass->run is the stage's work */
    void *params;                 /* plugin->params_size bytes: defaults, then the section's values (checked) */
    vitq_pass_when when;          /* plugin->pass->when */
    int enabled;                  /* the section's `enabled` (default 1); 0: the cell skips this pass */
    char params_text[512];        /* "drop_prob=0.5 importance=none" (vitq_plugin_params_format) */
} vitq_pass_binding;

/* Binds every [pass NAME] section of secs (a grid cell's secs: interpolated), in file order, disabled ones
 * included (their plugin and parameters are checked all the same). *out = NULL and *n = 0 when there is
 * none. On failure returns VITQ_EINVAL (VITQ_ENOMEM) with *out = NULL and EVERY error in e, one per line,
 * each "FILE:LINE: ...": plugin not found or not loadable, a quantizer named as a pass, a parameter the
 * plugin does not have or a bad value, a before-calibration pass after an after-calibration one, a
 * plugin declaring a parameter `enabled` or an unknown `when`. Free with vitq_passes_free. */
VITQ_API int vitq_passes_bind(const vitq_section *secs, int n_secs, vitq_pass_binding **out, int *n, vitq_err *e);
VITQ_API void vitq_passes_free(vitq_pass_binding *b, int n);


/* ---- Results (results_write.c, results_index.c, results_read.c): a run's results in HDF5: one folder per run, one file per finished cell, an index
 * rebuilt atomically (a temporary file renamed into place).
 *
 *   DIR/run.h5           index: root attributes (creator, vitq_version, git_rev, ini_path, ini_text,
 *                        created_utc, host, blas_config, threads, axis_names, summary_axis_columns),
 *                        /summary (compound table, one row per cell), /cells/<id> relative external
 *                        links to the cell files.
 *   DIR/cells/<id>.h5    one cell, written whole to DIR/cells/<id>.h5.tmp.<pid> and renamed.
 *   DIR/plots/           figures (plots, below).
 *
 * Cell file layout:
 *   /            attrs: cell_id, <axis name> = value (text) for every axis whose name is not one of the
 *                reserved names below, seed (uint64), status ("done" | "failed"), error ("" if none),
 *                config_hash, config_ini, plugins (array of "name version" strings), vitq_version,
 *                checkpoint_sha256 (of the model file, as `sha256sum` prints it), transform (the eval
 *                transform, one line), eval_split and calib_split (the splits actually read; "" if none),
 *                blas_core (the OpenBLAS kernels, vitq_blas_core) and threads (int) that computed it
 *   /axes        attrs: <axis name> = value (text) for every axis (always, reserved names included);
 *                attr axis_names (array, in the run's order)
 *   /metrics     attrs: top1, top5 (percent), loss (nats, mean cross-entropy), n_eval (int64),
 *                seconds_<stage> for every timed stage (always seconds_calibrate, seconds_eval),
 *                seconds_total, units (text)
 *   /layers      compound table: tap S96, plugin S32, mse f64, sqnr_db f64, count i64
 *   /hist/<tap>  datasets edges[bins+1] f64, float_counts[bins] i64, quant_counts[bins] i64;
 *                attrs bins, lo, hi, n_float, n_quant (sums of the counts)
 *   /calibration/indices  int64[n_calib] training-split image indices used for calibration
 *
 * /summary columns: cell_id, one fixed-length string column per axis (named by the axis; an axis whose
 * name collides with a fixed column is named "axis_<name>"; the root attribute summary_axis_columns
 * lists the axis columns in order), status, error, seed, top1, top5, loss, n_eval, seconds_calibrate,
 * seconds_eval, seconds_total, checkpoint_sha256. Strings are fixed-length, null-padded UTF-8, so that
 * `pd.DataFrame(h5py.File(p)["summary"][()])` works (decode byte columns with .str.decode()).
 *
 * A cell file that exists but cannot be read (truncated, garbage) is listed in the summary with status
 * "corrupt", NaN metrics and the HDF5 error as `error`, and has no /cells link; vitq_results_cell_done
 * reports it as not done, so a rerun recomputes (and replaces) it.
 *
 * Errors: one line naming the file and the HDF5 object. HDF5's automatic error printing is turned off
 * by every function here.
 */
typedef struct vitq_results vitq_results;

/* Creates DIR and DIR/cells if needed, removes stray *.tmp.<pid> files (in DIR, DIR/cells, DIR/plots)
 * whose process is gone, remembers the root attributes of the index: ini_text, ini_path, the grid's axis
 * names (in order), and fills vitq_version, git revision (`git rev-parse --short HEAD`, else "unknown"),
 * created_utc, host, BLAS config (openblas_get_config()), threads. ini_path / ini_text may be NULL. */
VITQ_API int vitq_results_open(const char *dir, const char *ini_path, const char *ini_text,
                               const char *const *axis_names, int n_axes, vitq_results **out, vitq_err *e);
VITQ_API void vitq_results_close(vitq_results *r);
/* The run folder as given to vitq_results_open. */
VITQ_API const char *vitq_results_dir(const vitq_results *r);
/* Number of stray temp files vitq_results_open removed (for messages and tests). */
VITQ_API int vitq_results_removed_tmp(const vitq_results *r);

/* 1 if DIR/cells/<id>.h5 exists, opens, has status "done" and the same config_hash attribute; 0 otherwise
 * (missing, corrupt, failed, other hash). */
VITQ_API int vitq_results_cell_done(vitq_results *r, const char *cell_id, const char *config_hash);
/* vitq_results_cell_done on the run folder DIR, open or not (vitq run --dry-run creates nothing), and for a
 * done cell what computed it: the OpenBLAS kernels (vitq_blas_core) and the thread count, as recorded ("" and
 * 0 when the file predates the record, or the cell is not done). */
VITQ_API int vitq_results_cell_origin(const char *dir, const char *cell_id, const char *config_hash, char *blas,
                                      size_t n, int *threads);

/* Seconds a stage of the cell pipeline took (stages sharing a timer add up). */
typedef struct vitq_stage_time {
    const char *name;               /* "calibrate", "eval", a pass's name */
    double seconds;
} vitq_stage_time;

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
    const vitq_stage_time *times;   /* the timed stages: /metrics seconds_<name>, in this order */
    int n_times;
    double seconds_total;
    const vitq_tap_stat *taps;
    int n_taps;
    const vitq_hist *hists;
    int n_hists;
    const char *const *plugins;     /* "name version" strings of the plugins used */
    int n_plugins;
    const int64_t *calib_indices;   /* the training-split images used for calibration (auditability) */
    int n_calib;
    const char *checkpoint_sha256;  /* SHA-256 of the model file (part of the resume key); NULL: "" */
    const char *transform;          /* the eval transform, one line (vitq_dataset_transform); NULL: "" */
    const char *eval_split, *calib_split; /* the splits actually read ("val", "train", ...); NULL: "" (none) */
    const vitq_curve *curves;       /* what passes recorded: /curves/<name>/{step, value} */
    int n_curves;
    const vitq_stored *stored;      /* arrays passes stored: /pass/<pass>/<name> */
    int n_stored;
    const char *shared_stage;       /* the stage whose state this cell loaded from another cell ("" or NULL: none) */
    const vitq_stored *qtensors;    /* the activation quantizers' small tensors as the cell ended (scale, zero_point,
                                       DFQ's b1/b2, ...): /quantizers/<tap>/<name>, name "<tap>/<name>" */
    int n_qtensors;
} vitq_cell_result;

/* Writes DIR/cells/<id>.h5 whole to a temp name in the same folder, closes, fsyncs, renames; on any
 * failure removes the temp file and leaves any previous DIR/cells/<id>.h5 untouched. */
VITQ_API int vitq_results_write_cell(vitq_results *r, const vitq_cell_result *c, vitq_err *e);

/* Rebuilds DIR/run.h5 (temp + rename) from every DIR/cells/<id>.h5. Rows follow `order` (the grid's cell
 * ids; ids without a file are skipped), then cells not listed, sorted by id. order may be NULL.
 * Safe with several writers of one folder (shards, MPI ranks, vitq merge; on one machine or over a
 * shared filesystem): listing the cells, writing the temp file and renaming it happen under an exclusive
 * flock(2) on DIR/.run.lock (hidden, never removed), so rebuilds are serialised and the last one to run
 * saw every cell published before it — the final index lists every cell. Where the filesystem has no locks (flock fails with
 * ENOLCK, ENOSYS, EOPNOTSUPP), the rebuild goes on unlocked and r->no_lock says so (the index is still
 * whole, but may miss a cell a concurrent writer published; any later rebuild adds it). */
VITQ_API int vitq_results_write_index(vitq_results *r, const char *const *order, int n_order, vitq_err *e);

/* Layer-internal (results_*.c): the open results folder and shared helpers. */
struct vitq_results {
    char *dir, *ini_path, *ini_text;
    char **axis_names;
    int n_axes;
    char git_rev[64], created_utc[32], host[256], blas_config[256];
    int threads, removed_tmp;
    int no_lock;             /* errno of flock when the folder's filesystem has no locks (index rebuilt unlocked) */
    char **merged_from;      /* vitq merge: the source run folders (root attribute merged_from); NULL otherwise */
    int n_merged_from;
};
char *vitq_results_path(const char *dir, const char *name);       /* "DIR/NAME", malloc'd */
char *vitq_results_cell_path(const vitq_results *r, const char *id); /* "DIR/cells/ID.h5", malloc'd */
void vitq_results_now_utc(char *out, size_t n);
int vitq_results_is_reserved(const char *name, const char *const *list, int n);

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
/* Reads one cell file's curves (/curves/<name>/{step, value}, what its passes recorded) back, in name
 * order; none for a cell without passes. Free with vitq_curves_free. */
VITQ_API int vitq_cell_read_curves(const char *cell_path, vitq_curve **out, int *n, vitq_err *e);
VITQ_API void vitq_curves_free(vitq_curve *c, int n);


/* ---- Plots (plot.c, plot_curve.c, plot_hist.c, plot_loss.c): figures from a run's results: accuracy-versus-bits curves, activation histograms and the passes' loss curves, each as
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
 *   curves_<cell>__<family>  the curves a cell's passes recorded, one figure per family (vitq_plot_curve_family:
 *                            aph_recon's per-unit loss, round; mlp_relu's per-block mlp_loss, mlp_clamp), one
 *                            line per unit over the iterations, log-scale y when every value is positive.
 * Names are sanitised: characters other than [A-Za-z0-9._=+-] become '_'.
 * Every file is written to a temp name and renamed. */
typedef struct vitq_plot_opts {
    const char *x_axis;    /* NULL: the first axis whose values are all numeric */
    const char *series;    /* comma-separated axes; NULL: every axis other than x */
    const char *metric;    /* "top1" (default) | "top5" | "loss" */
    const char *hist;      /* comma-separated tap globs (fnmatch); NULL: every recorded histogram */
    const char *cell;      /* cell id glob for histograms; NULL: every done cell */
    const char *out_dir;   /* NULL: <run>/plots */
    const char *command;   /* the command line that made the figures (script header); NULL: "" */
    const char *gnuplot;   /* gnuplot program; NULL: "gnuplot" from PATH; "" : do not run gnuplot */
    int no_curves;         /* 1: no accuracy curve */
    int no_hists;          /* 1: no histogram */
    int no_losses;         /* 1: no figure of the curves the passes recorded (losses per unit) */
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
/* The family of a recorded curve, which names its figure: the part of the unit (before the last '/') after
 * its last run of digits, '_', and the kind after the '/', dots made '_': "blocks.3/loss" -> "loss",
 * "head/round" -> "round", "blocks.3.mlp/clamp" -> "mlp_clamp", a name without '/' -> itself. */
VITQ_API void vitq_plot_curve_family(const char *name, char *out, size_t n);
/* The .tsv and .gp of the figure of the curves c[0..n) of family `family` of cell `cell_id`
 * (curves_<cell>__<family>); VITQ_EINVAL when none is of that family. */
VITQ_API int vitq_plot_loss_text(const vitq_curve *c, int n, const char *family, const char *cell_id,
                                 const char *run_label, const vitq_plot_opts *o, const char *git_rev, char *fig,
                                 size_t fig_size, char **tsv, char **gp, vitq_err *e);
/* Writes <dir>/<fig>.tsv and .gp atomically and, unless gnuplot is "" or missing (*missing = 1), draws
 * <fig>.png with core's gnuplot runner. */
/* Layer-internal text helpers of the figure makers (plot.c): a gnuplot string literal's contents, a
 * comment's, a TSV field's; a figure name with [^A-Za-z0-9._=+-] turned into '_'. */
void vitq_plot_gpstr(vitq_sb *b, const char *s);
void vitq_plot_comment(vitq_sb *b, const char *s);
void vitq_plot_tsv_field(vitq_sb *b, const char *s);
void vitq_plot_sanitize(char *out, size_t n, const char *s);
VITQ_API int vitq_plot_write_figure(const char *dir, const char *fig, const char *tsv, const char *gp,
                                    const char *gnuplot, int *missing, vitq_err *e);


/* ---------------------------------------------------------------------------------------------
 * The run (run.c, cells.c, validate.c, pipeline.c): a validated experiment's cells — the float baselines
 * and the grid cells — validated all at once, then run, resumed or dry-run one by one into a results
 * folder. Callable without the command line: a shard or an MPI rank opens the same experiment and
 * runs the cells of its choice by their stable index, then rebuilds the index.
 * ------------------------------------------------------------------------------------------- */
typedef struct vitq_run_opts {
    int threads;            /* 0: [run] threads of the experiment; > 0: that many; < 0: every CPU */
    int force;              /* recompute cells already done (same id and configuration hash) */
    int fail_fast;          /* vitq_run_all stops at the first failing cell */
    int quiet;              /* -q: no line on stderr but errors (a failed cell's); with opts.log every line
                               still goes to the log */
    const char *only;       /* fnmatch glob over cell ids; NULL: every cell */
    int shard, shards;      /* shards > 1: select only the cells whose stable index i has i % shards == shard
                               (and match `only`); 0/0 or 0/1: no sharding (shard.c) */
    const char *output;     /* the results folder instead of [run] output; NULL: [run] output */
    /* 1 (--dry-run): an absent checkpoint whose [model] arch names a built-in architecture is validated
     * against that architecture (zero weights), and an absent dataset folder is not opened; each is a note
     * (vitq_run_notes), not an error, so an ImageNet INI checks on a machine without ImageNet. A run needs
     * the files; vitq_run_start refuses a run opened with this flag. */
    int absent_ok;
    /* Where the run's lines go (stage lines, per-cell verdicts); NULL: stderr. One line, no newline. */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
} vitq_run_opts;

/* One cell of a run. Its index is stable (it depends on the INI only): the distinct float baselines
 * first (when [run] baseline), then the grid cells in expansion order. */
typedef struct vitq_run_cell {
    char id[160];                   /* "bits=4,softmax=log2"; baselines "fp32", or "fp32,m=final", ... (cells.c) */
    int baseline;                   /* 1: the float model, no quantizers */
    const vitq_grid_cell *grid;     /* the grid cell, NULL for a baseline */
    const vitq_grid_cell *src;      /* whose configuration (and INI lines) it uses */
    const vitq_run_cfg *cfg;
    const char *config_text;        /* canonical configuration (the baseline's own text for a baseline) */
    char hash[17];                  /* the resume key: FNV-1a 64 of config_text and the model file's SHA-256 (once
                                       the model is loaded: vitq_run_validate / vitq_run_exec), else of config_text */
    char sha256[65];                /* SHA-256 of the model file ("" until the model is loaded) */
    const char *const *axis_values; /* one per axis ("-" for every axis of a baseline) */
    int selected;                   /* matched by opts.only and owned by opts.shard */
} vitq_run_cell;

typedef enum { VITQ_CELL_DONE = 0, VITQ_CELL_FAILED, VITQ_CELL_SKIPPED } vitq_cell_status;

#define VITQ_MAX_STAGES 32
/* What running one cell did. */
typedef struct vitq_cell_outcome {
    vitq_cell_status status;        /* SKIPPED: already done (and not forced) */
    vitq_eval_result eval;          /* DONE: the metrics */
    vitq_stage_time times[VITQ_MAX_STAGES]; /* the timed stages, as in the cell file */
    int n_times;
    double seconds;                 /* the whole cell */
    char error[1024];               /* FAILED: the message written into the cell file */
} vitq_cell_outcome;

/* Counts of vitq_run_all. */
typedef struct vitq_run_summary {
    int done, skipped, failed;
    int stopped;                    /* 1: --fail-fast stopped the run at a failed cell */
    double seconds;
} vitq_run_summary;

typedef struct vitq_run vitq_run;

/* Lists the cells of a validated experiment x (which must outlive the run), selects them by o->only and
 * o->shard/shards (vitq_run_selected may then be 0) and sets the thread count. Errors: cells disagreeing
 * on [run] output (one run, one folder; unless o->output), a shard outside [0, shards). o may be NULL
 * (defaults). Opens no file yet. */
VITQ_API int vitq_run_open(const vitq_experiment *x, const vitq_run_opts *o, vitq_run **out, vitq_err *e);
VITQ_API void vitq_run_close(vitq_run *r);
VITQ_API int vitq_run_count(const vitq_run *r);
VITQ_API const vitq_run_cell *vitq_run_cell_at(const vitq_run *r, int i);
VITQ_API int vitq_run_selected(const vitq_run *r);
VITQ_API const char *vitq_run_output(const vitq_run *r);
/* DIR/partial/<cell id>.h5: where a cell's after-calibration pass saves its committed units (resume). */
VITQ_API void vitq_run_partial_path(const vitq_run *r, const char *cell_id, char *buf, size_t n);
/* Loads every model and dataset the selected cells use (once each), checks the calibration split's size,
 * binds every selected cell's quantizer sections (plugins found, ABI, parameters), its pass sections
 * (vitq_passes_bind) and its [hist] taps.
 * VITQ_EINVAL when anything is wrong: every distinct error line is kept (vitq_run_errors), each naming
 * the INI file:line at fault; VITQ_ECANCELLED on Ctrl-C. */
VITQ_API int vitq_run_validate(vitq_run *r, vitq_err *e);
/* With opts.absent_ok: what validation could not check (absent checkpoints and datasets), one line each. */
VITQ_API int vitq_run_notes(const vitq_run *r, const char *const **lines, int *n);
VITQ_API int vitq_run_errors(const vitq_run *r, const char *const **lines, int *n);
/* Refuses (VITQ_EINVAL, one line naming the folder and both experiments) an output folder whose index run.h5
 * holds another experiment: another [run] name, or other grid axes (run_guard.c). 0 for a new folder. */
VITQ_API int vitq_run_check_output(const vitq_run *r, vitq_err *e);
/* vitq_run_check_output, then opens (creates) the results folder; removes stray temporary files of killed
 * runs. */
VITQ_API int vitq_run_start(vitq_run *r, vitq_err *e);
/* Whether cell c (its resume key known: c->sha256 set) is done in the output folder, and what a run of this
 * process does with it: VITQ_DONE_NO (runs it), VITQ_DONE_SKIP (skips it), VITQ_DONE_OTHER_BLAS or
 * VITQ_DONE_OTHER_THREADS (refuses it unless --force: results depend on both; *blas and *threads hold what
 * computed it). vitq_run_start's check and --dry-run's listing. */
typedef enum { VITQ_DONE_NO = 0, VITQ_DONE_SKIP, VITQ_DONE_OTHER_BLAS, VITQ_DONE_OTHER_THREADS } vitq_done_state;
VITQ_API vitq_done_state vitq_run_done_state(const vitq_run *r, const vitq_run_cell *c, char *blas, size_t n,
                                             int *threads);
VITQ_API const vitq_results *vitq_run_results(const vitq_run *r);
/* Runs cell i (any index, selected or not; after vitq_run_start) through its pipeline and writes its
 * file, done or failed; skips it when already done (unless opts.force). Returns 0 (see *out for the
 * cell's own verdict), VITQ_ECANCELLED (Ctrl-C: nothing written for the cell) or an error that stops the
 * run (the cell file could not be written). `label` prefixes its lines (NULL: the id). */
VITQ_API int vitq_run_exec(vitq_run *r, int i, const char *label, vitq_cell_outcome *out, vitq_err *e);
/* Rebuilds the results index (run.h5) from every cell file, in the run's cell order. */
VITQ_API int vitq_run_index(vitq_run *r, vitq_err *e);
/* Every selected cell in order ("cell K/N ID" labels), the index rebuilt after each; stops at Ctrl-C
 * (VITQ_ECANCELLED, index rebuilt), a run error, or the first failed cell with opts.fail_fast. */
VITQ_API int vitq_run_all(vitq_run *r, vitq_run_summary *sum, vitq_err *e);

/* ---- Scale-out (shard.c, merge.c): one grid over many processes or machines. ------------------------
 * A shard K/N owns the cells whose stable index i has i % N == K (round robin over the run's order:
 * baselines first, then the grid with its first axis varying slowest, so every shard gets a slice of
 * every value of the slow axes). Shards may write one shared run folder at once (cell files are atomic,
 * the index is rebuilt under a lock: vitq_results_write_index) or each its own folder, merged after. */
/* Parses "K/N" (0 <= K < N, 1 <= N <= 1000000) into *k and *n; the error names the text. */
VITQ_API int vitq_shard_parse(const char *text, int *k, int *n, vitq_err *e);
/* 1 when cell index i belongs to shard k of n (n <= 1: every cell). */
VITQ_API int vitq_shard_owns(int i, int k, int n);

/* vitq merge OUT RUN...: the cell files of run folders copied into OUT, then OUT's index rebuilt.
 * Refuses (VITQ_EINVAL, one line naming both folders and the difference) runs whose indexes differ in
 * vitq_version, INI text (the first differing line is quoted) or axes, and cells that disagree on a
 * checkpoint hash (any cell attribute whose name ends in "sha256", e.g. the checkpoint's SHA-256, compared
 * between cells that read the same [model] path) or, for one cell id, on the configuration hash. OUT may
 * not exist yet (created), or be a run folder of the same experiment (an earlier merge: then it is the
 * reference and its cells count as sources too), or one of the RUNs (nothing copied from itself).
 * For each cell id the kept file is: a "done" one over a "failed" one; among equals, the one already in
 * OUT, else the first RUN's. Every copy is whole (temp file, fsync, rename); a file already in OUT with
 * the same bytes is not rewritten, so merging again changes nothing (idempotent). Unreadable cell files
 * are skipped and counted. Ctrl-C stops between two copies (VITQ_ECANCELLED). */
typedef struct vitq_merge_report {
    int runs;              /* source folders read (an empty folder without run.h5 is skipped and not counted) */
    int copied;            /* cell files written into OUT */
    int kept;              /* cells already in OUT and kept */
    int duplicates;        /* cells present in more than one RUN (one copy kept) */
    int unreadable;        /* cell files that could not be read (not merged) */
    int cells;             /* cell files in OUT after the merge */
    int done, failed;      /* of those, by status */
    char note[512];        /* "" or a warning line (e.g. the index was rebuilt without a lock) */
} vitq_merge_report;
VITQ_API int vitq_merge(const char *out, const char *const *runs, int n_runs, vitq_merge_report *rep, vitq_err *e);

/* ---- The cell pipeline (pipeline.c): a cell is a list of stages run in order. ----------------------
 * A stage returns 0 or an error; after an error only the stages flagged ALWAYS run (the one that writes
 * the cell file as failed), and after Ctrl-C none does (a cell is written whole or not at all). A stage
 * with a timer adds its seconds to /metrics seconds_<timer>. Pass plugins become stages inserted before
 * or after "calibrate"; the list of a cell is built by vitq_pipeline_build. */
typedef struct vitq_cell_ctx vitq_cell_ctx; /* one cell being computed (pipeline.c) */
typedef struct vitq_stage vitq_stage;
typedef int (*vitq_stage_fn)(vitq_cell_ctx *c, const vitq_stage *s, vitq_err *e);
enum { VITQ_STAGE_ALWAYS = 1, VITQ_STAGE_PASS = 2 };
struct vitq_stage {
    const char *name;      /* "load", "quantizers", "calibrate", "histograms", "evaluate", "collect", "write" */
    vitq_stage_fn run;
    const char *timer;     /* NULL: counted in seconds_total only */
    unsigned flags;        /* VITQ_STAGE_ALWAYS */
    const void *arg;       /* stage data (a pass stage: its plugin and parameters) */
};
/* Stage sharing (stages.c): the shareable keys of cell c's stages (keys[i] = 0: stage i is not shared),
 * how many selected cells of the run reach a key, where its state is stored (student = 1: the float
 * student after a before-calibration pass, as safetensors; 0: the quantized model's state, HDF5), whether
 * it is there, and the removal of every stored state (the run is complete). */
void vitq_stage_keys(const vitq_run_cell *c, const vitq_stage *st, int n, uint64_t *keys);
int vitq_stage_shared(vitq_run *r, uint64_t key);
char *vitq_stage_path(const vitq_run *r, uint64_t key, int student);
int vitq_stage_exists(const vitq_run *r, uint64_t key, int student);
void vitq_stages_cleanup(vitq_run *r);

/* The stages of cell c into out[0..max), its enabled passes (b, nb: vitq_passes_bind's) placed before or
 * after "calibrate" as each declares; returns their number. */
VITQ_API int vitq_pipeline_build(const vitq_run_cell *c, const vitq_pass_binding *b, int nb, vitq_stage *out,
                                 int max);

/* Layer-internal (cells.c, validate.c, pipeline.c, run.c): the run's state. */
typedef struct vitq_model_slot {
    char path[1024], arch[64];
    vitq_model *m;
} vitq_model_slot;
typedef struct vitq_data_slot {
    char spec[1024], split[16];
    vitq_data_opts o;
    vitq_dataset *d;
} vitq_data_slot;
struct vitq_run {
    const vitq_experiment *x;
    vitq_run_opts o;
    vitq_run_cell *cells;
    int n_cells, n_selected;
    const char **order;          /* [n_cells] ids in cell order: the index's row order */
    const char **dash;           /* [n_axes] "-": a baseline's axis values */
    char **baseline_text;        /* [n_cells] owned configuration texts of baselines (NULL for grid cells) */
    vitq_model_slot *models;     /* each model file loaded once per run */
    int n_models;
    vitq_data_slot *data;        /* each (dataset, split, preprocessing) opened once per run */
    int n_data;
    char **errors;               /* validation messages, distinct */
    int n_errors;
    char **notes;                /* absent_ok: what was not checked, distinct */
    int n_notes;
    vitq_results *res;           /* after vitq_run_start */
    int lock_warned;             /* the "no flock on this filesystem" line was logged */
    uint64_t *stage_keys;        /* stages.c: every shareable stage key of the selected cells (NULL: not yet) */
    int n_stage_keys;
};
/* cells.c: the model / dataset of a cell's configuration, from the run's caches; the data config of a cell
 * (the model's with [data]'s overrides); the cell's resume key from its model file's content. */
int vitq_run_model(vitq_run *r, const vitq_run_cfg *cfg, vitq_model **out, vitq_err *e);
int vitq_run_data_opts(const vitq_run_cfg *cfg, const vitq_model *m, vitq_data_opts *o, const char **bad_key,
                       vitq_err *e);
int vitq_run_cell_key(vitq_run *r, vitq_run_cell *c, vitq_err *e);
int vitq_run_dataset(vitq_run *r, const vitq_run_cfg *cfg, const vitq_model *m, const char *split, vitq_dataset **out,
                     vitq_err *e);
/* cells.c: appends a copy of s to lines[*n] unless an equal line is there (errors, notes); out of memory:
 * the line is dropped. A validation note (opts.absent_ok), kept once per distinct text. */
void vitq_run_add_line(char ***lines, int *n, const char *s);
void vitq_run_note(vitq_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* run.c: one line to the run's log (opts.log, else stderr). */
void vitq_run_log(const vitq_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* pipeline.c: runs cell c's stages. Returns 0 with the cell written (done or failed, in *out),
 * VITQ_ECANCELLED with nothing written, or a run error (the cell file could not be written). */
int vitq_cell_run(vitq_run *r, const vitq_run_cell *c, const char *label, vitq_cell_outcome *out, vitq_err *e);

#ifdef __cplusplus
}
#endif
#endif
