/* results_index.c — the index of a run, run.h5: rebuilt from every cell file after each finished cell,
 * under a temporary name and published atomically (a killed run never leaves a corrupt index). Root
 * attributes (what made the run), /summary (one row per cell: axes, status, metrics — what pandas
 * reads) and /cells/<id> external links. An unreadable cell file becomes a "corrupt" row. */
#include <hdf5.h>

#include "run/run.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

typedef struct index_row {
    char *id, **axv, *status, *error, *sha256;
    uint64_t seed;
    double top1, top5, loss, s_cal, s_eval, s_total;
    int64_t n_eval;
    int readable;
} index_row;

static void row_free(index_row *w, int n_axes) {
    free(w->id);
    vitq_strs_free(w->axv, n_axes);
    free(w->status);
    free(w->error);
    free(w->sha256);
}

/* Fills a row from a cell file; an unreadable file becomes status "corrupt" with the reason. */
static int row_read(const vitq_results *r, const char *id, index_row *w) {
    memset(w, 0, sizeof *w);
    w->top1 = w->top5 = w->loss = w->s_cal = w->s_eval = w->s_total = NAN;
    w->id = strdup(id);
    w->axv = calloc((size_t)(r->n_axes ? r->n_axes : 1), sizeof(char *));
    char *p = vitq_results_cell_path(r, id);
    if (!w->id || !w->axv || !p) {
        free(p);
        return -1;
    }
    vitq_err err = {{0}};
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        vitq_h5_fail(&err, VITQ_EFORMAT, p, "/", "cannot open (corrupt or truncated cell file)");
    } else {
        w->status = vitq_h5_read_str(f, ".", "status");
        w->error = vitq_h5_read_str(f, ".", "error");
        w->sha256 = vitq_h5_read_str(f, ".", "checkpoint_sha256"); /* absent in cells of older versions */
        int ok = w->status && w->error && vitq_h5_read_num(f, ".", "seed", H5T_NATIVE_UINT64, &w->seed) == 0;
        ok = ok && vitq_h5_read_num(f, "metrics", "top1", H5T_NATIVE_DOUBLE, &w->top1) == 0 &&
             vitq_h5_read_num(f, "metrics", "top5", H5T_NATIVE_DOUBLE, &w->top5) == 0 &&
             vitq_h5_read_num(f, "metrics", "loss", H5T_NATIVE_DOUBLE, &w->loss) == 0 &&
             vitq_h5_read_num(f, "metrics", "n_eval", H5T_NATIVE_INT64, &w->n_eval) == 0 &&
             vitq_h5_read_num(f, "metrics", "seconds_calibrate", H5T_NATIVE_DOUBLE, &w->s_cal) == 0 &&
             vitq_h5_read_num(f, "metrics", "seconds_eval", H5T_NATIVE_DOUBLE, &w->s_eval) == 0 &&
             vitq_h5_read_num(f, "metrics", "seconds_total", H5T_NATIVE_DOUBLE, &w->s_total) == 0;
        for (int i = 0; ok && i < r->n_axes; i++) {
            w->axv[i] = vitq_h5_read_str(f, "axes", r->axis_names[i]);
            if (!w->axv[i]) w->axv[i] = strdup(""); /* a cell from an older grid without this axis */
            ok = w->axv[i] != NULL;
        }
        if (H5Fclose(f) < 0) ok = 0;
        if (!ok) vitq_h5_fail(&err, VITQ_EFORMAT, p, "/", "missing or malformed attributes");
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
    if (!w->sha256) w->sha256 = strdup("");
    if (!w->status || !w->error || !w->sha256) return -1;
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
        vitq_strs_free(ids, *n);
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
                                           "n_eval", "seconds_calibrate", "seconds_eval", "seconds_total",
                                           "checkpoint_sha256"};

static int write_summary(hid_t f, const vitq_results *r, index_row *rows, int n, char **axis_cols) {
    int ncol = 12 + r->n_axes;
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
    cols[k++] = (col){"checkpoint_sha256", COL_STR, 64, 0};
    size_t rowsize = 0;
    for (int c = 0; c < ncol; c++) cols[c].off = rowsize, rowsize += cols[c].size;

    int rc = -1;
    char *buf = calloc((size_t)(n ? n : 1), rowsize);
    hid_t t = H5Tcreate(H5T_COMPOUND, rowsize);
    if (!buf || t < 0) goto done;
    for (int c = 0; c < ncol; c++) {
        hid_t mt = cols[c].kind == COL_STR   ? vitq_h5_str_type(cols[c].size, 1)
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
        memcpy(row + cols[k++].off, w->sha256, strlen(w->sha256) < 64 ? strlen(w->sha256) : 64);
    }
    rc = vitq_h5_dset(f, "summary", t, t, (hsize_t)n, buf);
done:
    if (t >= 0) H5Tclose(t);
    free(buf);
    free(cols);
    return rc;
}

/* The rows of every cell file, `order` first (ids without a file skipped), then the rest by id. */
static int read_rows(const vitq_results *r, const char *const *order, int n_order, index_row **out, int *n_out,
                     vitq_err *e) {
    char *cells = vitq_results_path(r->dir, "cells");
    char **ids = NULL;
    int n_ids = 0, n_rows = 0, np = 0;
    int rc = cells ? list_cells(cells, &ids, &n_ids, e) : vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", r->dir);
    free(cells);
    if (rc) return rc;
    index_row *rows = calloc((size_t)(n_ids ? n_ids : 1), sizeof *rows);
    char *used = calloc((size_t)(n_ids ? n_ids : 1), 1);
    int *perm = calloc((size_t)(n_ids ? n_ids : 1), sizeof(int));
    if (!rows || !used || !perm) rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", r->dir);
    for (int o = 0; !rc && order && o < n_order; o++) {
        if (!order[o]) continue;
        char *key = (char *)order[o];
        char **hit = n_ids ? bsearch(&key, ids, (size_t)n_ids, sizeof(char *), cmp_str) : NULL;
        if (hit && !used[hit - ids]) used[hit - ids] = 1, perm[np++] = (int)(hit - ids);
    }
    for (int i = 0; !rc && i < n_ids; i++)
        if (!used[i]) perm[np++] = i;
    for (int i = 0; !rc && i < n_ids; i++) {
        n_rows++; /* row_read leaves a row row_free can take even when it fails */
        if (row_read(r, ids[perm[i]], &rows[i]) != 0) rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", r->dir);
    }
    free(used);
    free(perm);
    vitq_strs_free(ids, n_ids);
    *out = rows;
    *n_out = n_rows;
    return rc;
}

/* Axis column names: the axis name, or axis_<name> when it collides with a fixed column. */
static char **axis_columns(const vitq_results *r) {
    const int n_fixed = (int)(sizeof k_fixed_cols / sizeof k_fixed_cols[0]);
    char **cols = calloc((size_t)(r->n_axes ? r->n_axes : 1), sizeof(char *));
    for (int a = 0; cols && a < r->n_axes; a++) {
        const char *nm = r->axis_names[a];
        size_t L = strlen(nm) + 6;
        if (!(cols[a] = malloc(L))) {
            vitq_strs_free(cols, a);
            return NULL;
        }
        snprintf(cols[a], L, vitq_results_is_reserved(nm, k_fixed_cols, n_fixed) ? "axis_%s" : "%s", nm);
    }
    return cols;
}

/* Root attributes, /summary and /cells links into the open index file f; < 0 with *obj naming the part. */
static int write_index_body(hid_t f, const vitq_results *r, index_row *rows, int n_rows, char **axis_cols,
                            const char **obj) {
    char updated[32];
    vitq_results_now_utc(updated, sizeof updated);
    *obj = "/";
    int w = vitq_h5_attr_str(f, "creator", "vitq");
    if (w == 0) w = vitq_h5_attr_str(f, "vitq_version", VITQ_VERSION);
    if (w == 0) w = vitq_h5_attr_str(f, "git_rev", r->git_rev);
    if (w == 0) w = vitq_h5_attr_str(f, "ini_path", r->ini_path);
    if (w == 0) w = vitq_h5_attr_str(f, "ini_text", r->ini_text);
    if (w == 0) w = vitq_h5_attr_str(f, "created_utc", r->created_utc);
    if (w == 0) w = vitq_h5_attr_str(f, "updated_utc", updated);
    if (w == 0) w = vitq_h5_attr_str(f, "host", r->host);
    if (w == 0) w = vitq_h5_attr_str(f, "blas_config", r->blas_config);
    if (w == 0) w = vitq_h5_attr_int(f, "threads", r->threads);
    if (w == 0) w = vitq_h5_attr_i64(f, "n_cells", n_rows);
    if (w == 0) w = vitq_h5_attr_strs(f, "axis_names", (const char *const *)r->axis_names, r->n_axes);
    if (w == 0) w = vitq_h5_attr_strs(f, "summary_axis_columns", (const char *const *)axis_cols, r->n_axes);
    if (w == 0 && r->n_merged_from > 0)
        w = vitq_h5_attr_strs(f, "merged_from", (const char *const *)r->merged_from, r->n_merged_from);
    if (w == 0) *obj = "/summary", w = write_summary(f, r, rows, n_rows, axis_cols);
    if (w != 0) return w;
    *obj = "/cells";
    hid_t g = H5Gcreate2(f, "cells", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    w = g < 0 ? -1 : 0;
    for (int i = 0; w == 0 && i < n_rows; i++) {
        if (!rows[i].readable) continue;
        char target[300];
        snprintf(target, sizeof target, "cells/%s.h5", rows[i].id);
        w = H5Lcreate_external(target, "/", g, rows[i].id, H5P_DEFAULT, H5P_DEFAULT) < 0 ? -1 : 0;
    }
    if (g >= 0 && H5Gclose(g) < 0) w = -1;
    return w;
}

/* Takes the exclusive lock on DIR/.run.lock (blocking); *fd = -1 when the filesystem cannot lock (r->no_lock
 * then holds flock's errno). The lock file stays: removing it would let two writers lock two files. */
static int index_lock(vitq_results *r, int *fd, vitq_err *e) {
    *fd = -1;
    char *p = vitq_results_path(r->dir, ".run.lock");
    if (!p) return vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", r->dir);
    int f = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0) {
        int rc = vitq_fail(e, VITQ_EIO, "%s: cannot open the index lock: %s", p, strerror(errno));
        free(p);
        return rc;
    }
    free(p);
    while (flock(f, LOCK_EX) != 0) {
        if (errno == EINTR) continue;
        if (errno == ENOLCK || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL) {
            r->no_lock = errno;
            close(f);
            return VITQ_OK;
        }
        int err = errno;
        close(f);
        return vitq_fail(e, VITQ_EIO, "%s/.run.lock: cannot lock: %s", r->dir, strerror(err));
    }
    *fd = f;
    return VITQ_OK;
}

/* Lists the cells and writes the index; the caller holds the lock. */
static int write_index_locked(vitq_results *r, const char *const *order, int n_order, vitq_err *e) {
    index_row *rows = NULL;
    int n_rows = 0;
    char **axis_cols = NULL, *path = vitq_results_path(r->dir, "run.h5");
    int rc = path ? read_rows(r, order, n_order, &rows, &n_rows, e) : vitq_fail(e, VITQ_ENOMEM, "out of memory");
    if (!rc && !(axis_cols = axis_columns(r))) rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", r->dir);
    vitq_atomic a;
    if (!rc) rc = vitq_atomic_begin(&a, path, e);
    if (!rc) {
        hid_t f = vitq_h5_create(&a, e);
        const char *obj = "/";
        if (f < 0) rc = VITQ_EIO;
        else if (write_index_body(f, r, rows, n_rows, axis_cols, &obj) < 0)
            rc = vitq_h5_publish(&a, f, vitq_h5_fail(e, VITQ_EIO, path, obj, "cannot write"), e);
        else
            rc = vitq_h5_publish(&a, f, VITQ_OK, e);
    }
    for (int i = 0; rows && i < n_rows; i++) row_free(&rows[i], r->n_axes);
    free(rows);
    vitq_strs_free(axis_cols, r->n_axes);
    free(path);
    return rc;
}

int vitq_results_write_index(vitq_results *r, const char *const *order, int n_order, vitq_err *e) {
    vitq_h5_quiet();
    int fd = -1, rc = index_lock(r, &fd, e);
    if (rc) return rc;
    rc = write_index_locked(r, order, n_order, e);
    if (fd >= 0) close(fd); /* releases the lock */
    return rc;
}
