/* results_write.c — writing a run's results: the run folder (created, stray temp files of killed runs
 * removed), one HDF5 file per cell written whole under a temporary name and published atomically, and
 * the resume check (is this cell's file complete with the same configuration hash?).
 * The layout is documented in run.h ("Results"); the index is results_index.c's, reading results_read.c's.
 * Mirrors: STYLE.md section 6 (layout), section 5.5 (atomic publish), section 5.6 (HDF5 errors as one
 * line naming the file and object). */
#include <hdf5.h>

#include "run/run.h"

#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char *dup_or_empty(const char *s) { return strdup(s ? s : ""); }

char *vitq_results_path(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", a, b);
    return p;
}

/* A name like "x.h5.tmp.1234@host" (or the older "x.h5.tmp.1234") left by a process of THIS host that is
 * gone (or is us: nothing is being written yet). Temporary files of other hosts are never touched: their
 * writers may be alive on a machine sharing the folder (a rerun there removes them). */
static int is_stray_tmp(const char *name) {
    const char *t = strstr(name, ".tmp.");
    if (!t) return 0;
    while (strstr(t + 1, ".tmp.")) t = strstr(t + 1, ".tmp.");
    const char *d = t + 5, *q = d;
    while (*q >= '0' && *q <= '9') q++;
    if (q == d || (*q && (*q != '@' || strcmp(q + 1, vitq_host_tag()) != 0))) return 0;
    long pid = strtol(d, NULL, 10);
    if (pid <= 0 || pid == (long)getpid()) return 1;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

static int remove_stray(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return 0;
    for (struct dirent *de; (de = readdir(d));) {
        if (!is_stray_tmp(de->d_name)) continue;
        char *p = vitq_results_path(dir, de->d_name);
        if (p && unlink(p) == 0) n++;
        free(p);
    }
    closedir(d);
    return n;
}

/* A cell id becomes a file name and an HDF5 link name. */
static int check_id(const char *id, const char *dir, vitq_err *e) {
    if (!id || !*id) return vitq_fail(e, VITQ_EINVAL, "%s: empty cell id", dir);
    if (strchr(id, '/') || id[0] == '.' || strlen(id) > 200)
        return vitq_fail(e, VITQ_EINVAL, "%s: cell id '%s' is not a valid file name (no '/', no leading '.', "
                                         "at most 200 bytes)", dir, id);
    return VITQ_OK;
}

static void fill_git_rev(char *out, size_t n) {
    snprintf(out, n, "unknown");
    FILE *p = popen("git rev-parse --short HEAD 2>/dev/null", "r");
    if (!p) return;
    char buf[64] = "";
    char *got = fgets(buf, sizeof buf, p);
    int st = pclose(p);
    if (!got || st != 0) return;
    buf[strcspn(buf, "\r\n")] = 0;
    if (buf[0]) snprintf(out, n, "%s", buf);
}

void vitq_results_now_utc(char *out, size_t n) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int vitq_results_open(const char *dir, const char *ini_path, const char *ini_text, const char *const *axis_names,
                      int n_axes, vitq_results **out, vitq_err *e) {
    *out = NULL;
    vitq_h5_quiet();
    if (!dir || !*dir) return vitq_fail(e, VITQ_EINVAL, "results: empty run folder name");
    if (n_axes < 0 || (n_axes > 0 && !axis_names)) return vitq_fail(e, VITQ_EINVAL, "%s: bad axis list", dir);
    for (int i = 0; i < n_axes; i++)
        if (!axis_names[i] || !*axis_names[i] || strchr(axis_names[i], '/') || !strcmp(axis_names[i], "."))
            return vitq_fail(e, VITQ_EINVAL, "%s: axis %d has an invalid name '%s'", dir, i,
                             axis_names[i] ? axis_names[i] : "(null)");
    int rc = vitq_mkdir_p(dir, e);
    if (rc) return rc;
    char *cells = vitq_results_path(dir, "cells"), *plots = vitq_results_path(dir, "plots");
    vitq_results *r = calloc(1, sizeof *r);
    if (!cells || !plots || !r) {
        free(cells), free(plots), free(r);
        return vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", dir);
    }
    rc = vitq_mkdir_p(cells, e);
    if (rc == 0) {
        r->removed_tmp = remove_stray(dir) + remove_stray(cells) + remove_stray(plots);
        r->dir = dup_or_empty(dir);
        r->ini_path = dup_or_empty(ini_path);
        r->ini_text = dup_or_empty(ini_text);
        r->axis_names = calloc((size_t)(n_axes ? n_axes : 1), sizeof(char *));
        r->n_axes = n_axes;
        if (!r->dir || !r->ini_path || !r->ini_text || !r->axis_names) rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", dir);
        for (int i = 0; rc == 0 && i < n_axes; i++)
            if (!(r->axis_names[i] = strdup(axis_names[i]))) rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", dir);
    }
    free(cells);
    free(plots);
    if (rc) {
        vitq_results_close(r);
        return rc;
    }
    fill_git_rev(r->git_rev, sizeof r->git_rev);
    vitq_results_now_utc(r->created_utc, sizeof r->created_utc);
    if (gethostname(r->host, sizeof r->host - 1) != 0) snprintf(r->host, sizeof r->host, "unknown");
    const char *cfg = openblas_get_config();
    snprintf(r->blas_config, sizeof r->blas_config, "%s", cfg ? cfg : "unknown");
    r->threads = vitq_threads_get();
    *out = r;
    return VITQ_OK;
}

void vitq_results_close(vitq_results *r) {
    if (!r) return;
    for (int i = 0; r->axis_names && i < r->n_axes; i++) free(r->axis_names[i]);
    free(r->axis_names);
    vitq_strs_free(r->merged_from, r->n_merged_from);
    free(r->dir);
    free(r->ini_path);
    free(r->ini_text);
    free(r);
}

const char *vitq_results_dir(const vitq_results *r) { return r->dir; }
int vitq_results_removed_tmp(const vitq_results *r) { return r->removed_tmp; }

/* DIR/cells/<id>.h5, malloc'd (NULL: out of memory). */
static char *cell_path(const char *dir, const char *id) {
    size_t n = strlen(dir) + strlen(id) + 16;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/cells/%s.h5", dir, id);
    return p;
}

char *vitq_results_cell_path(const vitq_results *r, const char *id) { return cell_path(r->dir, id); }

/* Whether DIR/cells/<id>.h5 is done with config_hash (vitq_results_cell_done); if so and blas is set, also
 * what computed it (vitq_results_cell_origin). One opening of the file for both. */
static int read_done(const char *dir, const char *cell_id, const char *config_hash, char *blas, size_t n,
                     int *threads) {
    vitq_h5_quiet();
    if (blas) blas[0] = 0, *threads = 0;
    if (!dir || check_id(cell_id, "", NULL) != 0) return 0;
    char *p = cell_path(dir, cell_id);
    struct stat st;
    int done = 0;
    if (p && stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
        hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f >= 0) {
            char *status = vitq_h5_read_str(f, ".", "status"), *hash = vitq_h5_read_str(f, ".", "config_hash");
            done = status && hash && !strcmp(status, "done") && !strcmp(hash, config_hash ? config_hash : "");
            free(status);
            free(hash);
            if (done && blas) {
                char *b = vitq_h5_read_str(f, ".", "blas_core");
                if (b) snprintf(blas, n, "%s", b);
                if (vitq_h5_read_num(f, ".", "threads", H5T_NATIVE_INT, threads) < 0) *threads = 0;
                free(b);
            }
            H5Fclose(f);
        }
        H5Eclear2(H5E_DEFAULT);
    }
    free(p);
    return done;
}

int vitq_results_cell_done(vitq_results *r, const char *cell_id, const char *config_hash) {
    return read_done(r ? r->dir : NULL, cell_id, config_hash, NULL, 0, NULL);
}

int vitq_results_cell_origin(const char *dir, const char *cell_id, const char *config_hash, char *blas, size_t n,
                             int *threads) {
    return read_done(dir, cell_id, config_hash, blas, n, threads);
}

static const char *const k_reserved[] = {"cell_id", "seed", "status", "error", "config_hash", "config_ini",
                                         "plugins", "vitq_version", "checkpoint_sha256", "transform", "eval_split",
                                         "calib_split", "shared_stage", "blas_core", "threads"};

int vitq_results_is_reserved(const char *name, const char *const *list, int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(name, list[i])) return 1;
    return 0;
}

typedef struct layer_row {
    char tap[96];
    char plugin[32];
    double mse, sqnr_db;
    int64_t count;
} layer_row;

static int write_layers(hid_t f, const vitq_cell_result *c) {
    layer_row *rows = calloc((size_t)(c->n_taps ? c->n_taps : 1), sizeof *rows);
    if (!rows) return -1;
    for (int i = 0; i < c->n_taps; i++) {
        strncpy(rows[i].tap, c->taps[i].name, sizeof rows[i].tap);
        strncpy(rows[i].plugin, c->taps[i].plugin, sizeof rows[i].plugin);
        rows[i].mse = c->taps[i].mse;
        rows[i].sqnr_db = c->taps[i].sqnr_db;
        rows[i].count = c->taps[i].count;
    }
    int rc = -1;
    hid_t ts = vitq_h5_str_type(sizeof rows[0].tap, 1), tp = vitq_h5_str_type(sizeof rows[0].plugin, 1);
    hid_t mt = H5Tcreate(H5T_COMPOUND, sizeof(layer_row));
    hid_t ft = -1;
    if (ts >= 0 && tp >= 0 && mt >= 0 && H5Tinsert(mt, "tap", HOFFSET(layer_row, tap), ts) >= 0 &&
        H5Tinsert(mt, "plugin", HOFFSET(layer_row, plugin), tp) >= 0 &&
        H5Tinsert(mt, "mse", HOFFSET(layer_row, mse), H5T_NATIVE_DOUBLE) >= 0 &&
        H5Tinsert(mt, "sqnr_db", HOFFSET(layer_row, sqnr_db), H5T_NATIVE_DOUBLE) >= 0 &&
        H5Tinsert(mt, "count", HOFFSET(layer_row, count), H5T_NATIVE_INT64) >= 0 && (ft = H5Tcopy(mt)) >= 0 &&
        H5Tpack(ft) >= 0)
        rc = vitq_h5_dset(f, "layers", ft, mt, (hsize_t)c->n_taps, rows);
    if (ts >= 0) H5Tclose(ts);
    if (tp >= 0) H5Tclose(tp);
    if (mt >= 0) H5Tclose(mt);
    if (ft >= 0) H5Tclose(ft);
    free(rows);
    return rc;
}

static int write_hist(hid_t parent, const vitq_hist *h) {
    double *edges = malloc(sizeof(double) * (size_t)(h->bins + 1));
    if (!edges) return -1;
    for (int i = 0; i <= h->bins; i++) edges[i] = h->lo + (double)i * (h->hi - h->lo) / h->bins;
    int64_t nf = 0, nq = 0;
    for (int i = 0; i < h->bins; i++) nf += h->float_counts[i], nq += h->quant_counts[i];
    hid_t g = H5Gcreate2(parent, h->tap, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = g < 0 ? -1 : 0;
    if (rc == 0) rc = vitq_h5_dset(g, "edges", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, (hsize_t)h->bins + 1, edges);
    if (rc == 0) rc = vitq_h5_dset(g, "float_counts", H5T_STD_I64LE, H5T_NATIVE_INT64, (hsize_t)h->bins, h->float_counts);
    if (rc == 0) rc = vitq_h5_dset(g, "quant_counts", H5T_STD_I64LE, H5T_NATIVE_INT64, (hsize_t)h->bins, h->quant_counts);
    if (rc == 0) rc = vitq_h5_attr_int(g, "bins", h->bins);
    if (rc == 0) rc = vitq_h5_attr_f64(g, "lo", h->lo);
    if (rc == 0) rc = vitq_h5_attr_f64(g, "hi", h->hi);
    if (rc == 0) rc = vitq_h5_attr_i64(g, "n_float", nf);
    if (rc == 0) rc = vitq_h5_attr_i64(g, "n_quant", nq);
    if (g >= 0 && H5Gclose(g) < 0) rc = -1;
    free(edges);
    return rc;
}

static int check_cell(const vitq_results *r, const vitq_cell_result *c, vitq_err *e) {
    int rc = check_id(c->id, r->dir, e);
    if (rc) return rc;
    if (!c->status || (strcmp(c->status, "done") && strcmp(c->status, "failed")))
        return vitq_fail(e, VITQ_EINVAL, "%s: cell '%s': status must be \"done\" or \"failed\"", r->dir, c->id);
    if (r->n_axes > 0 && !c->axis_values)
        return vitq_fail(e, VITQ_EINVAL, "%s: cell '%s': no axis values", r->dir, c->id);
    if ((c->n_taps && !c->taps) || (c->n_hists && !c->hists) || (c->n_plugins && !c->plugins) ||
        (c->n_calib && !c->calib_indices) || (c->n_times && !c->times) || c->n_taps < 0 || c->n_hists < 0 ||
        c->n_plugins < 0 || c->n_calib < 0 || c->n_times < 0)
        return vitq_fail(e, VITQ_EINVAL, "%s: cell '%s': a count is set without its array", r->dir, c->id);
    for (int i = 0; i < c->n_hists; i++) {
        const vitq_hist *h = &c->hists[i];
        if (!h->tap[0] || strchr(h->tap, '/') || !strcmp(h->tap, ".") || h->bins < 1 || !h->float_counts ||
            !h->quant_counts || !(h->hi > h->lo))
            return vitq_fail(e, VITQ_EINVAL, "%s: cell '%s': histogram %d ('%s') is malformed (name, bins %d, range "
                                             "[%g, %g], counts)", r->dir, c->id, i, h->tap, h->bins, h->lo, h->hi);
    }
    return VITQ_OK;
}

/* /<prefix>/<name> for each of n float arrays (groups made as needed through lcpl). */
static int write_arrays(hid_t f, const char *prefix, const vitq_stored *a, int n, hid_t lcpl) {
    int rc = 0;
    for (int i = 0; !rc && i < n; i++) {
        char name[320];
        snprintf(name, sizeof name, "%s/%s", prefix, a[i].name);
        hid_t sp = H5Screate_simple(1, (hsize_t[]){(hsize_t)a[i].n}, NULL);
        hid_t d = sp < 0 ? -1 : H5Dcreate2(f, name, H5T_IEEE_F32LE, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        rc = d < 0 || (a[i].n && H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a[i].data) < 0);
        if (d >= 0) H5Dclose(d);
        if (sp >= 0) H5Sclose(sp);
    }
    return rc;
}

/* /curves/<name>/{step, value} for each curve a pass recorded, /pass/<pass>/<name> for each stored array
 * and /quantizers/<tap>/<name> for the activation quantizers' tensors; names may hold '/' (groups are made
 * as needed). */
static int write_curves(hid_t f, const vitq_cell_result *c) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    int rc = lcpl < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0 ? -1 : 0;
    hid_t g = rc ? -1 : H5Gcreate2(f, "curves", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) rc = -1;
    for (int i = 0; !rc && i < c->n_curves; i++) {
        const vitq_curve *cv = &c->curves[i];
        hid_t cg = H5Gcreate2(g, cv->name, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        rc = cg < 0 || vitq_h5_dset(cg, "step", H5T_STD_I64LE, H5T_NATIVE_INT64, (hsize_t)cv->n, cv->step) < 0 ||
             vitq_h5_dset(cg, "value", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, (hsize_t)cv->n, cv->value) < 0;
        if (cg >= 0) H5Gclose(cg);
    }
    if (g >= 0) H5Gclose(g);
    if (!rc) rc = write_arrays(f, "pass", c->stored, c->n_stored, lcpl);
    if (!rc) rc = write_arrays(f, "quantizers", c->qtensors, c->n_qtensors, lcpl);
    if (lcpl >= 0) H5Pclose(lcpl);
    return rc ? -1 : 0;
}

/* Seconds of the timed stage `name` (0 when the cell has none). */
static double stage_seconds(const vitq_cell_result *c, const char *name) {
    for (int i = 0; i < c->n_times; i++)
        if (!strcmp(c->times[i].name, name)) return c->times[i].seconds;
    return 0;
}

/* Writes everything into the open file f; on failure fills e naming `path` and the object. */
static int write_cell_body(const vitq_results *r, const vitq_cell_result *c, hid_t f, const char *path, vitq_err *e) {
    const int n_res = (int)(sizeof k_reserved / sizeof k_reserved[0]);
    const char *obj = "/";
    hid_t g = -1;
#define TRY(expr)                                                                                    \
    do {                                                                                             \
        if ((expr) < 0) goto fail;                                                                   \
    } while (0)
    TRY(vitq_h5_attr_str(f, "cell_id", c->id));
    for (int i = 0; i < r->n_axes; i++)
        if (!vitq_results_is_reserved(r->axis_names[i], k_reserved, n_res)) TRY(vitq_h5_attr_str(f, r->axis_names[i], c->axis_values[i]));
    TRY(vitq_h5_attr_u64(f, "seed", c->seed));
    TRY(vitq_h5_attr_str(f, "status", c->status));
    TRY(vitq_h5_attr_str(f, "error", c->error));
    TRY(vitq_h5_attr_str(f, "config_hash", c->config_hash));
    TRY(vitq_h5_attr_str(f, "config_ini", c->config_ini));
    TRY(vitq_h5_attr_strs(f, "plugins", c->plugins, c->n_plugins));
    TRY(vitq_h5_attr_str(f, "vitq_version", VITQ_VERSION));
    TRY(vitq_h5_attr_str(f, "shared_stage", c->shared_stage ? c->shared_stage : ""));
    TRY(vitq_h5_attr_str(f, "checkpoint_sha256", c->checkpoint_sha256 ? c->checkpoint_sha256 : ""));
    TRY(vitq_h5_attr_str(f, "transform", c->transform ? c->transform : ""));
    TRY(vitq_h5_attr_str(f, "eval_split", c->eval_split ? c->eval_split : ""));
    TRY(vitq_h5_attr_str(f, "calib_split", c->calib_split ? c->calib_split : ""));
    TRY(vitq_h5_attr_str(f, "blas_core", vitq_blas_core())); /* what made the numbers: see vitq_run_start */
    TRY(vitq_h5_attr_int(f, "threads", vitq_threads_get()));

    obj = "/axes";
    TRY(g = H5Gcreate2(f, "axes", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    TRY(vitq_h5_attr_strs(g, "axis_names", (const char *const *)r->axis_names, r->n_axes));
    for (int i = 0; i < r->n_axes; i++) TRY(vitq_h5_attr_str(g, r->axis_names[i], c->axis_values[i]));
    TRY(H5Gclose(g));
    g = -1;

    obj = "/metrics";
    TRY(g = H5Gcreate2(f, "metrics", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    TRY(vitq_h5_attr_f64(g, "top1", c->top1));
    TRY(vitq_h5_attr_f64(g, "top5", c->top5));
    TRY(vitq_h5_attr_f64(g, "loss", c->loss));
    TRY(vitq_h5_attr_i64(g, "n_eval", c->n_eval));
    TRY(vitq_h5_attr_f64(g, "seconds_calibrate", stage_seconds(c, "calibrate"))); /* always: /summary's columns */
    TRY(vitq_h5_attr_f64(g, "seconds_eval", stage_seconds(c, "eval")));
    for (int i = 0; i < c->n_times; i++) {
        if (!strcmp(c->times[i].name, "calibrate") || !strcmp(c->times[i].name, "eval")) continue;
        char name[96];
        snprintf(name, sizeof name, "seconds_%s", c->times[i].name);
        TRY(vitq_h5_attr_f64(g, name, c->times[i].seconds));
    }
    TRY(vitq_h5_attr_f64(g, "seconds_total", c->seconds_total));
    TRY(vitq_h5_attr_str(g, "units", "top1, top5: percent; loss: nats (mean cross-entropy); n_eval: images; "
                             "seconds_*: seconds"));
    TRY(H5Gclose(g));
    g = -1;

    obj = "/layers";
    TRY(write_layers(f, c));

    obj = "/hist";
    TRY(g = H5Gcreate2(f, "hist", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    for (int i = 0; i < c->n_hists; i++) {
        obj = c->hists[i].tap;
        TRY(write_hist(g, &c->hists[i]));
    }
    TRY(H5Gclose(g));
    g = -1;

    obj = "/calibration";
    TRY(g = H5Gcreate2(f, "calibration", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    TRY(vitq_h5_dset(g, "indices", H5T_STD_I64LE, H5T_NATIVE_INT64, (hsize_t)c->n_calib, c->calib_indices));
    TRY(H5Gclose(g));
    g = -1;
    obj = "/curves";
    TRY(write_curves(f, c));
    return VITQ_OK;
#undef TRY
fail:
    if (g >= 0) H5Gclose(g);
    if (obj == NULL || obj[0] != '/') {
        char o[160];
        snprintf(o, sizeof o, "/hist/%s", obj ? obj : "");
        return vitq_h5_fail(e, VITQ_EIO, path, o, "cannot write");
    }
    return vitq_h5_fail(e, VITQ_EIO, path, obj, "cannot write");
}

int vitq_results_write_cell(vitq_results *r, const vitq_cell_result *c, vitq_err *e) {
    vitq_h5_quiet();
    int rc = check_cell(r, c, e);
    if (rc) return rc;
    char *path = vitq_results_cell_path(r, c->id);
    if (!path) return vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", r->dir);
    vitq_atomic a;
    rc = vitq_atomic_begin(&a, path, e);
    hid_t f = rc ? -1 : vitq_h5_create(&a, e);
    if (f >= 0) rc = vitq_h5_publish(&a, f, write_cell_body(r, c, f, path, e), e);
    else if (!rc) rc = VITQ_EIO;
    free(path);
    return rc;
}
