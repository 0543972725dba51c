/* results.c — writing a run's results as HDF5: the run folder, one file per cell, the index run.h5.
 *
 * Does: creates the run folder, removes stray temp files of killed runs, writes each cell file whole to
 * a temp name and renames it (so a killed run never leaves a half cell), rebuilds the index from every
 * cell file (temp + rename), tells the grid whether a cell is already done (resume).
 * Also reads back what plots and `vitq results` need: the summary table and a cell's histograms.
 * Does not: draw (plot.c), decide what a cell computes (grid.c).
 * Mirrors: STYLE.md section 6 (layout), section 5.5 (atomic publish), section 5.6 (HDF5 errors as one
 * line naming the file and object); the layout is documented in results.h.
 */
#include "results.h"

#include <hdf5.h>
#include <cblas.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* pool.c may not be linked into every build; fall back to the CPU count. */
#pragma weak vitq_threads_get

struct vitq_run {
    char *dir, *ini_path, *ini_text;
    char **axis_names;
    int n_axes;
    char git_rev[64], created_utc[32], host[256], blas_config[256];
    int threads, removed_tmp;
};

/* ---------------------------------------------------------------------------------------------
 * Small helpers: strings, paths, HDF5 error text
 * ------------------------------------------------------------------------------------------- */
static char *xstrdup(const char *s) { return strdup(s ? s : ""); }

static char *path_join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", a, b);
    return p;
}

static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static herr_t walk_first(unsigned n, const H5E_error2_t *err, void *data) {
    char *buf = data;
    if (n == 0 && err && err->desc) snprintf(buf, 200, "%s", err->desc);
    return 0;
}

/* One line: "FILE: OBJECT: WHAT (HDF5: innermost error)". */
static int h5_fail(vitq_err *e, int code, const char *file, const char *obj, const char *what) {
    char detail[200] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_first, detail);
    H5Eclear2(H5E_DEFAULT);
    if (detail[0]) return vitq_fail(e, code, "%s: %s: %s (HDF5: %s)", file, obj, what, detail);
    return vitq_fail(e, code, "%s: %s: %s", file, obj, what);
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* mkdir -p; error names the path. */
static int mkdir_p(const char *dir, vitq_err *e) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return vitq_fail(e, VITQ_EINVAL, "%s: path too long", dir);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return vitq_fail(e, VITQ_EIO, "%s: cannot create folder: %s", buf, strerror(errno));
            if (!is_dir(buf)) return vitq_fail(e, VITQ_EIO, "%s: exists and is not a folder", buf);
            *p = c;
            if (!c) break;
        }
    }
    return VITQ_OK;
}

static void fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static int fsync_path(const char *p) {
    int fd = open(p, O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    if (close(fd) != 0) rc = -1;
    return rc;
}

/* A name like "x.h5.tmp.1234" whose process is gone (or is us: nothing is being written yet). */
static int is_stray_tmp(const char *name) {
    const char *t = strstr(name, ".tmp.");
    if (!t) return 0;
    while (strstr(t + 1, ".tmp.")) t = strstr(t + 1, ".tmp.");
    const char *d = t + 5;
    if (!*d) return 0;
    for (const char *q = d; *q; q++)
        if (*q < '0' || *q > '9') return 0;
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
        char *p = path_join(dir, de->d_name);
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

/* ---------------------------------------------------------------------------------------------
 * HDF5 writing helpers: every one returns < 0 on failure (the HDF5 stack keeps the reason).
 * ------------------------------------------------------------------------------------------- */
static hid_t str_type(size_t len, int nullpad) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return t;
    if (H5Tset_size(t, len ? len : 1) < 0 || H5Tset_strpad(t, nullpad ? H5T_STR_NULLPAD : H5T_STR_NULLTERM) < 0 ||
        H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

static int put_attr(hid_t loc, const char *name, hid_t ftype, hid_t mtype, hid_t space, const void *buf) {
    if (ftype < 0 || mtype < 0 || space < 0) return -1;
    hid_t a = H5Acreate2(loc, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return -1;
    herr_t s = H5Awrite(a, mtype, buf);
    if (H5Aclose(a) < 0 || s < 0) return -1;
    return 0;
}

static int attr_scalar(hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *v) {
    hid_t s = H5Screate(H5S_SCALAR);
    int rc = put_attr(loc, name, ftype, mtype, s, v);
    if (s >= 0) H5Sclose(s);
    return rc;
}

static int attr_f64(hid_t loc, const char *name, double v) {
    return attr_scalar(loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}
static int attr_i64(hid_t loc, const char *name, int64_t v) {
    return attr_scalar(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}
static int attr_u64(hid_t loc, const char *name, uint64_t v) {
    return attr_scalar(loc, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v);
}
static int attr_int(hid_t loc, const char *name, int v) {
    return attr_scalar(loc, name, H5T_STD_I32LE, H5T_NATIVE_INT, &v);
}

static int attr_str(hid_t loc, const char *name, const char *val) {
    if (!val) val = "";
    hid_t t = str_type(strlen(val) + 1, 0);
    int rc = attr_scalar(loc, name, t, t, val);
    if (t >= 0) H5Tclose(t);
    return rc;
}

/* Array of n fixed-length strings (length of the longest + 1). */
static int attr_str_array(hid_t loc, const char *name, const char *const *v, int n) {
    if (n < 0) return -1;
    size_t L = 1;
    for (int i = 0; i < n; i++)
        if (v[i] && strlen(v[i]) + 1 > L) L = strlen(v[i]) + 1;
    char *buf = calloc((size_t)(n ? n : 1), L);
    if (!buf) return -1;
    for (int i = 0; i < n; i++)
        if (v[i]) memcpy(buf + (size_t)i * L, v[i], strlen(v[i]));
    hsize_t dims[1] = {(hsize_t)n};
    hid_t t = str_type(L, 0), s = H5Screate_simple(1, dims, NULL);
    int rc = put_attr(loc, name, t, t, s, buf);
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    free(buf);
    return rc;
}

/* 1-D dataset of n elements (n may be 0: an empty dataset, nothing written). */
static int put_dset(hid_t loc, const char *name, hid_t ftype, hid_t mtype, hsize_t n, const void *buf) {
    hsize_t dims[1] = {n};
    hid_t s = H5Screate_simple(1, dims, NULL);
    if (s < 0) return -1;
    hid_t d = H5Dcreate2(loc, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Sclose(s);
    if (d < 0) return -1;
    herr_t w = n ? H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) : 0;
    if (H5Dclose(d) < 0 || w < 0) return -1;
    return 0;
}

/* File access: HDF5 1.8 object headers so that attributes over 64 KiB (long INI text) are allowed. */
static hid_t new_fapl(void) {
    hid_t p = H5Pcreate(H5P_FILE_ACCESS);
    if (p < 0) return p;
    if (H5Pset_libver_bounds(p, H5F_LIBVER_V18, H5F_LIBVER_LATEST) < 0) {
        H5Pclose(p);
        return -1;
    }
    return p;
}

/* Creates path.tmp.<pid>; returns the file id (< 0 with e filled). tmp receives the temp path. */
static hid_t create_tmp(const char *path, char *tmp, size_t ntmp, vitq_err *e) {
    if (snprintf(tmp, ntmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)ntmp) {
        vitq_fail(e, VITQ_EINVAL, "%s: path too long", path);
        return -1;
    }
    unlink(tmp);
    hid_t fapl = new_fapl();
    hid_t f = fapl < 0 ? -1 : H5Fcreate(tmp, H5F_ACC_EXCL, H5P_DEFAULT, fapl);
    if (fapl >= 0) H5Pclose(fapl);
    if (f < 0) {
        int err = errno;
        h5_fail(e, VITQ_EIO, path, "/", "cannot create the temporary file");
        if (err) {
            /* The OS reason is clearer than HDF5's. */
            vitq_fail(e, VITQ_EIO, "%s: cannot create %s: %s", path, tmp, strerror(err));
        }
        unlink(tmp);
    }
    return f;
}

/* Closes f, fsyncs and renames tmp over path; removes tmp on any failure. rc is the writer's status. */
static int publish(hid_t f, int rc, const char *tmp, const char *path, const char *dir, vitq_err *e) {
    if (H5Fclose(f) < 0 && rc == 0) rc = h5_fail(e, VITQ_EIO, path, "/", "cannot close (disk full?)");
    if (rc == 0 && fsync_path(tmp) != 0) rc = vitq_fail(e, VITQ_EIO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = vitq_fail(e, VITQ_EIO, "%s: cannot rename into place: %s", path, strerror(errno));
    if (rc != 0) {
        unlink(tmp);
        return rc;
    }
    fsync_dir(dir);
    return VITQ_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Opening a run
 * ------------------------------------------------------------------------------------------- */
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

static void now_utc(char *out, size_t n) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int vitq_run_open(const char *dir, const char *ini_path, const char *ini_text, const char *const *axis_names,
                  int n_axes, vitq_run **out, vitq_err *e) {
    *out = NULL;
    h5_quiet();
    if (!dir || !*dir) return vitq_fail(e, VITQ_EINVAL, "results: empty run folder name");
    if (n_axes < 0 || (n_axes > 0 && !axis_names)) return vitq_fail(e, VITQ_EINVAL, "%s: bad axis list", dir);
    for (int i = 0; i < n_axes; i++)
        if (!axis_names[i] || !*axis_names[i] || strchr(axis_names[i], '/') || !strcmp(axis_names[i], "."))
            return vitq_fail(e, VITQ_EINVAL, "%s: axis %d has an invalid name '%s'", dir, i,
                             axis_names[i] ? axis_names[i] : "(null)");
    int rc = mkdir_p(dir, e);
    if (rc) return rc;
    char *cells = path_join(dir, "cells"), *plots = path_join(dir, "plots");
    vitq_run *r = calloc(1, sizeof *r);
    if (!cells || !plots || !r) {
        free(cells), free(plots), free(r);
        return vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", dir);
    }
    rc = mkdir_p(cells, e);
    if (rc == 0) {
        r->removed_tmp = remove_stray(dir) + remove_stray(cells) + remove_stray(plots);
        r->dir = xstrdup(dir);
        r->ini_path = xstrdup(ini_path);
        r->ini_text = xstrdup(ini_text);
        r->axis_names = calloc((size_t)(n_axes ? n_axes : 1), sizeof(char *));
        r->n_axes = n_axes;
        if (!r->dir || !r->ini_path || !r->ini_text || !r->axis_names) rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", dir);
        for (int i = 0; rc == 0 && i < n_axes; i++)
            if (!(r->axis_names[i] = strdup(axis_names[i]))) rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", dir);
    }
    free(cells);
    free(plots);
    if (rc) {
        vitq_run_close(r);
        return rc;
    }
    fill_git_rev(r->git_rev, sizeof r->git_rev);
    now_utc(r->created_utc, sizeof r->created_utc);
    if (gethostname(r->host, sizeof r->host - 1) != 0) snprintf(r->host, sizeof r->host, "unknown");
    const char *cfg = openblas_get_config();
    snprintf(r->blas_config, sizeof r->blas_config, "%s", cfg ? cfg : "unknown");
    r->threads = vitq_threads_get ? vitq_threads_get() : (int)sysconf(_SC_NPROCESSORS_ONLN);
    *out = r;
    return VITQ_OK;
}

void vitq_run_close(vitq_run *r) {
    if (!r) return;
    for (int i = 0; r->axis_names && i < r->n_axes; i++) free(r->axis_names[i]);
    free(r->axis_names);
    free(r->dir);
    free(r->ini_path);
    free(r->ini_text);
    free(r);
}

const char *vitq_run_dir(const vitq_run *r) { return r->dir; }
int vitq_run_removed_tmp(const vitq_run *r) { return r->removed_tmp; }

/* ---------------------------------------------------------------------------------------------
 * Reading helpers (also used by the summary and histogram readers below)
 * ------------------------------------------------------------------------------------------- */
/* A scalar string attribute (fixed or variable length) as a malloc'd string; NULL if absent or bad. */
static char *read_attr_str(hid_t loc, const char *obj, const char *name) {
    if (H5Aexists_by_name(loc, obj, name, H5P_DEFAULT) <= 0) return NULL;
    hid_t a = H5Aopen_by_name(loc, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return NULL;
    char *out = NULL;
    hid_t ft = H5Aget_type(a), sp = H5Aget_space(a);
    if (ft >= 0 && sp >= 0 && H5Tget_class(ft) == H5T_STRING && H5Sget_simple_extent_npoints(sp) == 1) {
        if (H5Tis_variable_str(ft) > 0) {
            hid_t mt = H5Tcopy(H5T_C_S1);
            char *p = NULL;
            if (mt >= 0 && H5Tset_size(mt, H5T_VARIABLE) >= 0 && H5Aread(a, mt, &p) >= 0) {
                out = xstrdup(p);
                H5free_memory(p);
            }
            if (mt >= 0) H5Tclose(mt);
        } else {
            size_t n = H5Tget_size(ft);
            char *buf = calloc(n + 1, 1);
            if (buf && H5Aread(a, ft, buf) >= 0) out = buf;
            else free(buf);
        }
    }
    if (ft >= 0) H5Tclose(ft);
    if (sp >= 0) H5Sclose(sp);
    H5Aclose(a);
    return out;
}

/* A 1-D array of fixed-length strings; *n = its length. NULL if absent or bad. */
static char **read_attr_str_array(hid_t loc, const char *name, int *n) {
    *n = 0;
    if (H5Aexists(loc, name) <= 0) return NULL;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return NULL;
    char **out = NULL;
    hid_t ft = H5Aget_type(a), sp = H5Aget_space(a);
    hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (ft >= 0 && np >= 0 && H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft) == 0) {
        size_t L = H5Tget_size(ft);
        char *buf = calloc((size_t)(np ? np : 1), L);
        out = calloc((size_t)(np ? np : 1), sizeof(char *));
        int ok = buf && out && H5Aread(a, ft, buf) >= 0;
        for (hssize_t i = 0; ok && i < np; i++) ok = (out[i] = strndup(buf + (size_t)i * L, L)) != NULL;
        if (!ok) {
            for (hssize_t i = 0; out && i < np; i++) free(out[i]);
            free(out);
            out = NULL;
        } else {
            *n = (int)np;
        }
        free(buf);
    }
    if (ft >= 0) H5Tclose(ft);
    if (sp >= 0) H5Sclose(sp);
    H5Aclose(a);
    return out;
}

/* A scalar numeric attribute converted to mtype; < 0 if absent or bad. */
static int read_attr_num(hid_t loc, const char *obj, const char *name, hid_t mtype, void *v) {
    if (H5Aexists_by_name(loc, obj, name, H5P_DEFAULT) <= 0) return -1;
    hid_t a = H5Aopen_by_name(loc, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t sp = H5Aget_space(a);
    int ok = sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1 && H5Aread(a, mtype, v) >= 0;
    if (sp >= 0) H5Sclose(sp);
    H5Aclose(a);
    return ok ? 0 : -1;
}

static void free_strs(char **v, int n) {
    for (int i = 0; v && i < n; i++) free(v[i]);
    free(v);
}

/* ---------------------------------------------------------------------------------------------
 * Resume check
 * ------------------------------------------------------------------------------------------- */
static char *cell_path(const vitq_run *r, const char *id) {
    size_t n = strlen(r->dir) + strlen(id) + 16;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/cells/%s.h5", r->dir, id);
    return p;
}

int vitq_run_cell_done(vitq_run *r, const char *cell_id, const char *config_hash) {
    h5_quiet();
    if (!r || check_id(cell_id, "", NULL) != 0) return 0;
    char *p = cell_path(r, cell_id);
    struct stat st;
    int done = 0;
    if (p && stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
        hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f >= 0) {
            char *status = read_attr_str(f, ".", "status"), *hash = read_attr_str(f, ".", "config_hash");
            done = status && hash && !strcmp(status, "done") && !strcmp(hash, config_hash ? config_hash : "");
            free(status);
            free(hash);
            H5Fclose(f);
        }
        H5Eclear2(H5E_DEFAULT);
    }
    free(p);
    return done;
}

/* ---------------------------------------------------------------------------------------------
 * Writing a cell
 * ------------------------------------------------------------------------------------------- */
static const char *const k_reserved[] = {"cell_id", "seed", "status", "error", "config_hash", "config_ini",
                                         "plugins", "vitq_version"};

static int is_reserved(const char *name, const char *const *list, int n) {
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
    hid_t ts = str_type(sizeof rows[0].tap, 1), tp = str_type(sizeof rows[0].plugin, 1);
    hid_t mt = H5Tcreate(H5T_COMPOUND, sizeof(layer_row));
    hid_t ft = -1;
    if (ts >= 0 && tp >= 0 && mt >= 0 && H5Tinsert(mt, "tap", HOFFSET(layer_row, tap), ts) >= 0 &&
        H5Tinsert(mt, "plugin", HOFFSET(layer_row, plugin), tp) >= 0 &&
        H5Tinsert(mt, "mse", HOFFSET(layer_row, mse), H5T_NATIVE_DOUBLE) >= 0 &&
        H5Tinsert(mt, "sqnr_db", HOFFSET(layer_row, sqnr_db), H5T_NATIVE_DOUBLE) >= 0 &&
        H5Tinsert(mt, "count", HOFFSET(layer_row, count), H5T_NATIVE_INT64) >= 0 && (ft = H5Tcopy(mt)) >= 0 &&
        H5Tpack(ft) >= 0)
        rc = put_dset(f, "layers", ft, mt, (hsize_t)c->n_taps, rows);
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
    if (rc == 0) rc = put_dset(g, "edges", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, (hsize_t)h->bins + 1, edges);
    if (rc == 0) rc = put_dset(g, "float_counts", H5T_STD_I64LE, H5T_NATIVE_INT64, (hsize_t)h->bins, h->float_counts);
    if (rc == 0) rc = put_dset(g, "quant_counts", H5T_STD_I64LE, H5T_NATIVE_INT64, (hsize_t)h->bins, h->quant_counts);
    if (rc == 0) rc = attr_int(g, "bins", h->bins);
    if (rc == 0) rc = attr_f64(g, "lo", h->lo);
    if (rc == 0) rc = attr_f64(g, "hi", h->hi);
    if (rc == 0) rc = attr_i64(g, "n_float", nf);
    if (rc == 0) rc = attr_i64(g, "n_quant", nq);
    if (g >= 0 && H5Gclose(g) < 0) rc = -1;
    free(edges);
    return rc;
}

static int check_cell(const vitq_run *r, const vitq_cell_result *c, vitq_err *e) {
    int rc = check_id(c->id, r->dir, e);
    if (rc) return rc;
    if (!c->status || (strcmp(c->status, "done") && strcmp(c->status, "failed")))
        return vitq_fail(e, VITQ_EINVAL, "%s: cell '%s': status must be \"done\" or \"failed\"", r->dir, c->id);
    if (r->n_axes > 0 && !c->axis_values)
        return vitq_fail(e, VITQ_EINVAL, "%s: cell '%s': no axis values", r->dir, c->id);
    if ((c->n_taps && !c->taps) || (c->n_hists && !c->hists) || (c->n_plugins && !c->plugins) ||
        (c->n_calib && !c->calib_indices) || c->n_taps < 0 || c->n_hists < 0 || c->n_plugins < 0 || c->n_calib < 0)
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

/* Writes everything into the open file f; on failure fills e naming `path` and the object. */
static int write_cell_body(const vitq_run *r, const vitq_cell_result *c, hid_t f, const char *path, vitq_err *e) {
    const int n_res = (int)(sizeof k_reserved / sizeof k_reserved[0]);
    const char *obj = "/";
    hid_t g = -1;
#define TRY(expr)                                                                                    \
    do {                                                                                             \
        if ((expr) < 0) goto fail;                                                                   \
    } while (0)
    TRY(attr_str(f, "cell_id", c->id));
    for (int i = 0; i < r->n_axes; i++)
        if (!is_reserved(r->axis_names[i], k_reserved, n_res)) TRY(attr_str(f, r->axis_names[i], c->axis_values[i]));
    TRY(attr_u64(f, "seed", c->seed));
    TRY(attr_str(f, "status", c->status));
    TRY(attr_str(f, "error", c->error));
    TRY(attr_str(f, "config_hash", c->config_hash));
    TRY(attr_str(f, "config_ini", c->config_ini));
    TRY(attr_str_array(f, "plugins", c->plugins, c->n_plugins));
    TRY(attr_str(f, "vitq_version", VITQ_VERSION));

    obj = "/axes";
    TRY(g = H5Gcreate2(f, "axes", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    TRY(attr_str_array(g, "axis_names", (const char *const *)r->axis_names, r->n_axes));
    for (int i = 0; i < r->n_axes; i++) TRY(attr_str(g, r->axis_names[i], c->axis_values[i]));
    TRY(H5Gclose(g));
    g = -1;

    obj = "/metrics";
    TRY(g = H5Gcreate2(f, "metrics", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    TRY(attr_f64(g, "top1", c->top1));
    TRY(attr_f64(g, "top5", c->top5));
    TRY(attr_f64(g, "loss", c->loss));
    TRY(attr_i64(g, "n_eval", c->n_eval));
    TRY(attr_f64(g, "seconds_calibrate", c->seconds_calibrate));
    TRY(attr_f64(g, "seconds_eval", c->seconds_eval));
    TRY(attr_f64(g, "seconds_total", c->seconds_total));
    TRY(attr_str(g, "units", "top1, top5: percent; loss: nats (mean cross-entropy); n_eval: images; "
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
    TRY(put_dset(g, "indices", H5T_STD_I64LE, H5T_NATIVE_INT64, (hsize_t)c->n_calib, c->calib_indices));
    TRY(H5Gclose(g));
    return VITQ_OK;
#undef TRY
fail:
    if (g >= 0) H5Gclose(g);
    if (obj == NULL || obj[0] != '/') {
        char o[160];
        snprintf(o, sizeof o, "/hist/%s", obj ? obj : "");
        return h5_fail(e, VITQ_EIO, path, o, "cannot write");
    }
    return h5_fail(e, VITQ_EIO, path, obj, "cannot write");
}

int vitq_run_write_cell(vitq_run *r, const vitq_cell_result *c, vitq_err *e) {
    h5_quiet();
    int rc = check_cell(r, c, e);
    if (rc) return rc;
    char *path = cell_path(r, c->id), *cells = path_join(r->dir, "cells");
    char tmp[4200];
    if (!path || !cells) {
        free(path), free(cells);
        return vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", r->dir);
    }
    hid_t f = create_tmp(path, tmp, sizeof tmp, e);
    if (f < 0) {
        rc = VITQ_EIO;
    } else {
        rc = write_cell_body(r, c, f, path, e);
        rc = publish(f, rc, tmp, path, cells, e);
    }
    free(path);
    free(cells);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * The index
 * ------------------------------------------------------------------------------------------- */
typedef struct index_row {
    char *id, **axv, *status, *error;
    uint64_t seed;
    double top1, top5, loss, s_cal, s_eval, s_total;
    int64_t n_eval;
    int readable;
} index_row;

static void row_free(index_row *w, int n_axes) {
    free(w->id);
    free_strs(w->axv, n_axes);
    free(w->status);
    free(w->error);
}

/* Fills a row from a cell file; an unreadable file becomes status "corrupt" with the reason. */
static int row_read(const vitq_run *r, const char *id, index_row *w) {
    memset(w, 0, sizeof *w);
    w->top1 = w->top5 = w->loss = w->s_cal = w->s_eval = w->s_total = NAN;
    w->id = strdup(id);
    w->axv = calloc((size_t)(r->n_axes ? r->n_axes : 1), sizeof(char *));
    char *p = cell_path(r, id);
    if (!w->id || !w->axv || !p) {
        free(p);
        return -1;
    }
    vitq_err err = {{0}};
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        h5_fail(&err, VITQ_EFORMAT, p, "/", "cannot open (corrupt or truncated cell file)");
    } else {
        w->status = read_attr_str(f, ".", "status");
        w->error = read_attr_str(f, ".", "error");
        int ok = w->status && w->error && read_attr_num(f, ".", "seed", H5T_NATIVE_UINT64, &w->seed) == 0;
        ok = ok && read_attr_num(f, "metrics", "top1", H5T_NATIVE_DOUBLE, &w->top1) == 0 &&
             read_attr_num(f, "metrics", "top5", H5T_NATIVE_DOUBLE, &w->top5) == 0 &&
             read_attr_num(f, "metrics", "loss", H5T_NATIVE_DOUBLE, &w->loss) == 0 &&
             read_attr_num(f, "metrics", "n_eval", H5T_NATIVE_INT64, &w->n_eval) == 0 &&
             read_attr_num(f, "metrics", "seconds_calibrate", H5T_NATIVE_DOUBLE, &w->s_cal) == 0 &&
             read_attr_num(f, "metrics", "seconds_eval", H5T_NATIVE_DOUBLE, &w->s_eval) == 0 &&
             read_attr_num(f, "metrics", "seconds_total", H5T_NATIVE_DOUBLE, &w->s_total) == 0;
        for (int i = 0; ok && i < r->n_axes; i++) {
            w->axv[i] = read_attr_str(f, "axes", r->axis_names[i]);
            if (!w->axv[i]) w->axv[i] = strdup(""); /* a cell from an older grid without this axis */
            ok = w->axv[i] != NULL;
        }
        if (H5Fclose(f) < 0) ok = 0;
        if (!ok) h5_fail(&err, VITQ_EFORMAT, p, "/", "missing or malformed attributes");
        else w->readable = 1;
    }
    free(p);
    if (!w->readable) {
        free(w->status);
        free(w->error);
        w->status = strdup("corrupt");
        w->error = strdup(err.msg);
        w->top1 = w->top5 = w->loss = w->s_cal = w->s_eval = w->s_total = NAN;
        w->n_eval = 0;
        w->seed = 0;
        for (int i = 0; i < r->n_axes; i++)
            if (!w->axv[i]) w->axv[i] = strdup("");
    }
    H5Eclear2(H5E_DEFAULT);
    if (!w->status || !w->error) return -1;
    for (int i = 0; i < r->n_axes; i++)
        if (!w->axv[i]) return -1;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Ids of DIR/cells/<id>.h5 (regular files, temp files excluded), sorted. */
static int list_cells(const char *cells, char ***out, int *n, vitq_err *e) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(cells);
    if (!d) return vitq_fail(e, VITQ_EIO, "%s: cannot list: %s", cells, strerror(errno));
    int cap = 0, rc = 0;
    char **ids = NULL;
    for (struct dirent *de; (de = readdir(d));) {
        size_t l = strlen(de->d_name);
        if (l <= 3 || strcmp(de->d_name + l - 3, ".h5") != 0 || de->d_name[0] == '.') continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            char **t = realloc(ids, sizeof(char *) * (size_t)cap);
            if (!t) {
                rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", cells);
                break;
            }
            ids = t;
        }
        if (!(ids[*n] = strndup(de->d_name, l - 3))) {
            rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", cells);
            break;
        }
        (*n)++;
    }
    closedir(d);
    if (rc) {
        free_strs(ids, *n);
        *n = 0;
        return rc;
    }
    if (*n) qsort(ids, (size_t)*n, sizeof(char *), cmp_str);
    *out = ids;
    return VITQ_OK;
}

/* Summary table: a packed compound built at run time (string widths follow the data). */
enum { COL_STR, COL_U64, COL_I64, COL_F64 };
typedef struct col {
    char name[128];
    int kind;
    size_t size, off;
} col;

static const char *const k_fixed_cols[] = {"cell_id", "status", "error", "seed", "top1", "top5", "loss",
                                           "n_eval", "seconds_calibrate", "seconds_eval", "seconds_total"};

static int write_summary(hid_t f, const vitq_run *r, index_row *rows, int n, char **axis_cols) {
    int ncol = 11 + r->n_axes;
    col *cols = calloc((size_t)ncol, sizeof *cols);
    if (!cols) return -1;
    int k = 0;
    size_t Lid = 1, Ls = 1, Le = 1;
    for (int i = 0; i < n; i++) {
        if (strlen(rows[i].id) > Lid) Lid = strlen(rows[i].id);
        if (strlen(rows[i].status) > Ls) Ls = strlen(rows[i].status);
        if (strlen(rows[i].error) > Le) Le = strlen(rows[i].error);
    }
    cols[k++] = (col){"cell_id", COL_STR, Lid, 0};
    for (int a = 0; a < r->n_axes; a++) {
        size_t L = 1;
        for (int i = 0; i < n; i++)
            if (strlen(rows[i].axv[a]) > L) L = strlen(rows[i].axv[a]);
        cols[k] = (col){"", COL_STR, L, 0};
        snprintf(cols[k].name, sizeof cols[k].name, "%s", axis_cols[a]);
        k++;
    }
    cols[k++] = (col){"status", COL_STR, Ls, 0};
    cols[k++] = (col){"error", COL_STR, Le, 0};
    cols[k++] = (col){"seed", COL_U64, 8, 0};
    cols[k++] = (col){"top1", COL_F64, 8, 0};
    cols[k++] = (col){"top5", COL_F64, 8, 0};
    cols[k++] = (col){"loss", COL_F64, 8, 0};
    cols[k++] = (col){"n_eval", COL_I64, 8, 0};
    cols[k++] = (col){"seconds_calibrate", COL_F64, 8, 0};
    cols[k++] = (col){"seconds_eval", COL_F64, 8, 0};
    cols[k++] = (col){"seconds_total", COL_F64, 8, 0};
    size_t rowsize = 0;
    for (int c = 0; c < ncol; c++) cols[c].off = rowsize, rowsize += cols[c].size;

    int rc = -1;
    char *buf = calloc((size_t)(n ? n : 1), rowsize);
    hid_t t = H5Tcreate(H5T_COMPOUND, rowsize);
    if (!buf || t < 0) goto done;
    for (int c = 0; c < ncol; c++) {
        hid_t mt = cols[c].kind == COL_STR   ? str_type(cols[c].size, 1)
                   : cols[c].kind == COL_U64 ? H5Tcopy(H5T_NATIVE_UINT64)
                   : cols[c].kind == COL_I64 ? H5Tcopy(H5T_NATIVE_INT64)
                                             : H5Tcopy(H5T_NATIVE_DOUBLE);
        herr_t s = mt < 0 ? -1 : H5Tinsert(t, cols[c].name, cols[c].off, mt);
        if (mt >= 0) H5Tclose(mt);
        if (s < 0) goto done;
    }
    for (int i = 0; i < n; i++) {
        char *row = buf + (size_t)i * rowsize;
        const index_row *w = &rows[i];
        k = 0;
        memcpy(row + cols[k++].off, w->id, strlen(w->id));
        for (int a = 0; a < r->n_axes; a++, k++) memcpy(row + cols[k].off, w->axv[a], strlen(w->axv[a]));
        memcpy(row + cols[k++].off, w->status, strlen(w->status));
        memcpy(row + cols[k++].off, w->error, strlen(w->error));
        memcpy(row + cols[k++].off, &w->seed, 8);
        memcpy(row + cols[k++].off, &w->top1, 8);
        memcpy(row + cols[k++].off, &w->top5, 8);
        memcpy(row + cols[k++].off, &w->loss, 8);
        memcpy(row + cols[k++].off, &w->n_eval, 8);
        memcpy(row + cols[k++].off, &w->s_cal, 8);
        memcpy(row + cols[k++].off, &w->s_eval, 8);
        memcpy(row + cols[k++].off, &w->s_total, 8);
    }
    rc = put_dset(f, "summary", t, t, (hsize_t)n, buf);
done:
    if (t >= 0) H5Tclose(t);
    free(buf);
    free(cols);
    return rc;
}

int vitq_run_write_index(vitq_run *r, const char *const *order, int n_order, vitq_err *e) {
    h5_quiet();
    char *cells = path_join(r->dir, "cells"), *path = path_join(r->dir, "run.h5");
    char **ids = NULL, **axis_cols = NULL;
    int n_ids = 0, n_rows = 0, rc;
    index_row *rows = NULL;
    char tmp[4200];
    if (!cells || !path) {
        rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", r->dir);
        goto out;
    }
    rc = list_cells(cells, &ids, &n_ids, e);
    if (rc) goto out;
    rows = calloc((size_t)(n_ids ? n_ids : 1), sizeof *rows);
    axis_cols = calloc((size_t)(r->n_axes ? r->n_axes : 1), sizeof(char *));
    char *used = calloc((size_t)(n_ids ? n_ids : 1), 1);
    if (!rows || !axis_cols || !used) {
        free(used);
        rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", r->dir);
        goto out;
    }
    /* Row order: `order` first, then the rest (already sorted). */
    int *perm = calloc((size_t)(n_ids ? n_ids : 1), sizeof(int)), np = 0;
    if (!perm) {
        free(used);
        rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", r->dir);
        goto out;
    }
    for (int o = 0; order && o < n_order; o++) {
        if (!order[o]) continue;
        char *key = (char *)order[o];
        char **hit = n_ids ? bsearch(&key, ids, (size_t)n_ids, sizeof(char *), cmp_str) : NULL;
        if (hit && !used[hit - ids]) used[hit - ids] = 1, perm[np++] = (int)(hit - ids);
    }
    for (int i = 0; i < n_ids; i++)
        if (!used[i]) perm[np++] = i;
    free(used);
    for (int i = 0; i < n_ids; i++, n_rows++)
        if (row_read(r, ids[perm[i]], &rows[i]) != 0) {
            n_rows++;
            free(perm);
            rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", r->dir);
            goto out;
        }
    free(perm);

    /* Axis column names: the axis name, or axis_<name> when it collides with a fixed column. */
    const int n_fixed = (int)(sizeof k_fixed_cols / sizeof k_fixed_cols[0]);
    for (int a = 0; a < r->n_axes; a++) {
        const char *nm = r->axis_names[a];
        size_t L = strlen(nm) + 6;
        if (!(axis_cols[a] = malloc(L))) {
            rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", r->dir);
            goto out;
        }
        snprintf(axis_cols[a], L, is_reserved(nm, k_fixed_cols, n_fixed) ? "axis_%s" : "%s", nm);
    }

    hid_t f = create_tmp(path, tmp, sizeof tmp, e);
    if (f < 0) {
        rc = VITQ_EIO;
        goto out;
    }
    const char *obj = "/";
    char updated[32];
    now_utc(updated, sizeof updated);
    int w = attr_str(f, "creator", "vitq");
    if (w == 0) w = attr_str(f, "vitq_version", VITQ_VERSION);
    if (w == 0) w = attr_str(f, "git_rev", r->git_rev);
    if (w == 0) w = attr_str(f, "ini_path", r->ini_path);
    if (w == 0) w = attr_str(f, "ini_text", r->ini_text);
    if (w == 0) w = attr_str(f, "created_utc", r->created_utc);
    if (w == 0) w = attr_str(f, "updated_utc", updated);
    if (w == 0) w = attr_str(f, "host", r->host);
    if (w == 0) w = attr_str(f, "blas_config", r->blas_config);
    if (w == 0) w = attr_int(f, "threads", r->threads);
    if (w == 0) w = attr_i64(f, "n_cells", n_rows);
    if (w == 0) w = attr_str_array(f, "axis_names", (const char *const *)r->axis_names, r->n_axes);
    if (w == 0) w = attr_str_array(f, "summary_axis_columns", (const char *const *)axis_cols, r->n_axes);
    if (w == 0) obj = "/summary", w = write_summary(f, r, rows, n_rows, axis_cols);
    if (w == 0) {
        obj = "/cells";
        hid_t g = H5Gcreate2(f, "cells", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        w = g < 0 ? -1 : 0;
        for (int i = 0; w == 0 && i < n_rows; i++) {
            if (!rows[i].readable) continue;
            char target[300];
            snprintf(target, sizeof target, "cells/%s.h5", rows[i].id);
            w = H5Lcreate_external(target, "/", g, rows[i].id, H5P_DEFAULT, H5P_DEFAULT) < 0 ? -1 : 0;
        }
        if (g >= 0 && H5Gclose(g) < 0) w = -1;
    }
    rc = w < 0 ? h5_fail(e, VITQ_EIO, path, obj, "cannot write") : 0;
    rc = publish(f, rc, tmp, path, r->dir, e);
out:
    for (int i = 0; rows && i < n_rows; i++) row_free(&rows[i], r->n_axes);
    free(rows);
    free_strs(ids, n_ids);
    free_strs(axis_cols, r->n_axes);
    free(cells);
    free(path);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Reading the summary back
 * ------------------------------------------------------------------------------------------- */
/* One member of the compound dataset d, as n strings / n numbers of mtype (elem bytes each). */
static char **read_col_str(hid_t d, const char *name, int n) {
    hid_t ft = H5Dget_type(d);
    if (ft < 0) return NULL;
    char **out = NULL;
    int idx = H5Tget_member_index(ft, name);
    hid_t st = idx < 0 ? -1 : H5Tget_member_type(ft, (unsigned)idx);
    if (st >= 0 && H5Tget_class(st) == H5T_STRING && H5Tis_variable_str(st) == 0) {
        size_t L = H5Tget_size(st);
        hid_t mt = H5Tcreate(H5T_COMPOUND, L);
        char *buf = calloc((size_t)(n ? n : 1), L);
        out = calloc((size_t)(n ? n : 1), sizeof(char *));
        int ok = mt >= 0 && buf && out && H5Tinsert(mt, name, 0, st) >= 0 &&
                 (n == 0 || H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
        for (int i = 0; ok && i < n; i++) ok = (out[i] = strndup(buf + (size_t)i * L, L)) != NULL;
        if (!ok) {
            free_strs(out, n);
            out = NULL;
        }
        free(buf);
        if (mt >= 0) H5Tclose(mt);
    }
    if (st >= 0) H5Tclose(st);
    H5Tclose(ft);
    return out;
}

static int read_col_num(hid_t d, const char *name, hid_t mtype, int n, void *buf) {
    if (n == 0) return 0;
    hid_t mt = H5Tcreate(H5T_COMPOUND, H5Tget_size(mtype));
    int ok = mt >= 0 && H5Tinsert(mt, name, 0, mtype) >= 0 &&
             H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0;
    if (mt >= 0) H5Tclose(mt);
    return ok ? 0 : -1;
}

void vitq_summary_free(vitq_summary *s) {
    if (!s) return;
    for (int i = 0; s->axis_values && i < s->n_rows; i++) free_strs(s->axis_values[i], s->n_axes);
    free(s->axis_values);
    free_strs(s->axis_names, s->n_axes);
    free_strs(s->cell_ids, s->n_rows);
    free_strs(s->status, s->n_rows);
    free_strs(s->error, s->n_rows);
    free(s->top1);
    free(s->top5);
    free(s->loss);
    free(s->seconds_total);
    free(s->n_eval);
    free(s->seed);
    free(s->run_dir);
    free(s->vitq_version);
    free(s->git_rev);
    free(s);
}

int vitq_summary_read(const char *run_path, vitq_summary **out, vitq_err *e) {
    *out = NULL;
    h5_quiet();
    char *file = NULL, *dir = NULL;
    if (is_dir(run_path)) {
        file = path_join(run_path, "run.h5");
        dir = xstrdup(run_path);
    } else {
        file = xstrdup(run_path);
        const char *slash = strrchr(run_path, '/');
        dir = slash ? strndup(run_path, (size_t)(slash - run_path)) : xstrdup(".");
        if (dir && !*dir) free(dir), dir = xstrdup("/");
    }
    vitq_summary *s = calloc(1, sizeof *s);
    if (!file || !dir || !s) {
        free(file), free(dir), free(s);
        return vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", run_path);
    }
    s->run_dir = dir;
    int rc = VITQ_OK;
    hid_t f = -1, d = -1, sp = -1;
    struct stat st;
    if (stat(file, &st) != 0) {
        rc = vitq_fail(e, VITQ_EIO, "%s: cannot open: %s (is this a vitq run folder?)", file, strerror(errno));
        goto out;
    }
    f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        rc = h5_fail(e, VITQ_EFORMAT, file, "/", "cannot open as HDF5");
        goto out;
    }
    s->vitq_version = read_attr_str(f, ".", "vitq_version");
    s->git_rev = read_attr_str(f, ".", "git_rev");
    if (!s->vitq_version) s->vitq_version = xstrdup("");
    if (!s->git_rev) s->git_rev = xstrdup("");
    int na = 0, nc = 0;
    s->axis_names = read_attr_str_array(f, "axis_names", &na);
    s->n_axes = na;
    char **cols = read_attr_str_array(f, "summary_axis_columns", &nc);
    if (!s->axis_names || !cols || nc != na) {
        free_strs(cols, nc);
        rc = vitq_fail(e, VITQ_EFORMAT, "%s: /: missing attributes axis_names / summary_axis_columns (not a vitq "
                                        "run index?)", file);
        goto out;
    }
    d = H5Dopen2(f, "summary", H5P_DEFAULT);
    sp = d < 0 ? -1 : H5Dget_space(d);
    hssize_t n = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    if (n < 0 || n > 10000000) {
        free_strs(cols, nc);
        rc = h5_fail(e, VITQ_EFORMAT, file, "/summary", "cannot open the summary table");
        goto out;
    }
    int nr = (int)n;
    size_t cap = (size_t)(nr ? nr : 1);
    s->cell_ids = read_col_str(d, "cell_id", nr);
    s->status = read_col_str(d, "status", nr);
    s->error = read_col_str(d, "error", nr);
    s->axis_values = calloc(cap, sizeof(char **));
    s->top1 = malloc(cap * 8), s->top5 = malloc(cap * 8), s->loss = malloc(cap * 8);
    s->seconds_total = malloc(cap * 8), s->n_eval = malloc(cap * 8), s->seed = malloc(cap * 8);
    char ***byaxis = calloc((size_t)(na ? na : 1), sizeof(char **));
    int ok = s->cell_ids && s->status && s->error && s->axis_values && s->top1 && s->top5 && s->loss &&
             s->seconds_total && s->n_eval && s->seed && byaxis;
    if (ok) s->n_rows = nr; /* from here on, vitq_summary_free knows the row count */
    ok = ok && read_col_num(d, "top1", H5T_NATIVE_DOUBLE, nr, s->top1) == 0 &&
         read_col_num(d, "top5", H5T_NATIVE_DOUBLE, nr, s->top5) == 0 &&
         read_col_num(d, "loss", H5T_NATIVE_DOUBLE, nr, s->loss) == 0 &&
         read_col_num(d, "seconds_total", H5T_NATIVE_DOUBLE, nr, s->seconds_total) == 0 &&
         read_col_num(d, "n_eval", H5T_NATIVE_INT64, nr, s->n_eval) == 0 &&
         read_col_num(d, "seed", H5T_NATIVE_UINT64, nr, s->seed) == 0;
    for (int a = 0; ok && a < na; a++) ok = (byaxis[a] = read_col_str(d, cols[a], nr)) != NULL;
    for (int i = 0; ok && i < nr; i++) {
        ok = (s->axis_values[i] = calloc((size_t)(na ? na : 1), sizeof(char *))) != NULL;
        for (int a = 0; ok && a < na; a++) s->axis_values[i][a] = byaxis[a][i], byaxis[a][i] = NULL;
    }
    for (int a = 0; byaxis && a < na; a++) free_strs(byaxis[a], nr);
    free(byaxis);
    free_strs(cols, nc);
    if (!ok) {
        if (!s->cell_ids || !s->status || !s->error) { /* keep free() consistent with what was read */
            free_strs(s->cell_ids, nr), free_strs(s->status, nr), free_strs(s->error, nr);
            s->cell_ids = s->status = s->error = NULL;
            for (int i = 0; s->axis_values && i < nr; i++) free_strs(s->axis_values[i], na);
            free(s->axis_values);
            s->axis_values = NULL;
            s->n_rows = 0;
        }
        rc = h5_fail(e, VITQ_EFORMAT, file, "/summary", "missing or malformed columns");
    }
out:
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    if (f >= 0) H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    free(file);
    if (rc) {
        vitq_summary_free(s);
        return rc;
    }
    *out = s;
    return VITQ_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Reading a cell's histograms back
 * ------------------------------------------------------------------------------------------- */
void vitq_hists_free(vitq_hist *h, int n) {
    for (int i = 0; h && i < n; i++) {
        free(h[i].float_counts);
        free(h[i].quant_counts);
    }
    free(h);
}

static int read_counts(hid_t g, const char *name, int bins, int64_t **out) {
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0) return -1;
    hid_t sp = H5Dget_space(d);
    int ok = sp >= 0 && H5Sget_simple_extent_npoints(sp) == bins;
    *out = ok ? malloc(sizeof(int64_t) * (size_t)bins) : NULL;
    ok = ok && *out && H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) >= 0;
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(d);
    return ok ? 0 : -1;
}

int vitq_cell_read_hists(const char *cell_path, vitq_hist **out, int *n, vitq_err *e) {
    *out = NULL;
    *n = 0;
    h5_quiet();
    hid_t f = H5Fopen(cell_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return h5_fail(e, VITQ_EFORMAT, cell_path, "/", "cannot open");
    int rc = VITQ_OK;
    vitq_hist *h = NULL;
    int nh = 0;
    hid_t g = H5Gopen2(f, "hist", H5P_DEFAULT);
    H5G_info_t info;
    if (g < 0 || H5Gget_info(g, &info) < 0) {
        rc = h5_fail(e, VITQ_EFORMAT, cell_path, "/hist", "cannot open");
        goto out;
    }
    h = calloc(info.nlinks ? info.nlinks : 1, sizeof *h);
    if (!h) {
        rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", cell_path);
        goto out;
    }
    for (hsize_t i = 0; i < info.nlinks; i++, nh++) {
        vitq_hist *x = &h[i];
        char obj[128] = "/hist";
        ssize_t l = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, x->tap, sizeof x->tap, H5P_DEFAULT);
        int ok = l > 0 && (size_t)l < sizeof x->tap;
        if (ok) snprintf(obj, sizeof obj, "/hist/%s", x->tap);
        ok = ok && read_attr_num(g, x->tap, "bins", H5T_NATIVE_INT, &x->bins) == 0 && x->bins >= 1 &&
             x->bins <= 100000000 && read_attr_num(g, x->tap, "lo", H5T_NATIVE_DOUBLE, &x->lo) == 0 &&
             read_attr_num(g, x->tap, "hi", H5T_NATIVE_DOUBLE, &x->hi) == 0;
        hid_t hg = ok ? H5Gopen2(g, x->tap, H5P_DEFAULT) : -1;
        ok = ok && hg >= 0 && read_counts(hg, "float_counts", x->bins, &x->float_counts) == 0 &&
             read_counts(hg, "quant_counts", x->bins, &x->quant_counts) == 0;
        if (hg >= 0) H5Gclose(hg);
        if (!ok) {
            nh++;
            rc = h5_fail(e, VITQ_EFORMAT, cell_path, obj, "missing or malformed histogram");
            goto out;
        }
    }
out:
    if (g >= 0) H5Gclose(g);
    H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    if (rc) {
        vitq_hists_free(h, nh);
        return rc;
    }
    *out = h;
    *n = nh;
    return VITQ_OK;
}
