/* results_read.c — reading a run back, for `vitq results`, `vitq plot` and the tests: the index's
 * summary table (with the run folder and the root attributes), one cell file's histograms and the
 * curves its passes recorded. */
#include <hdf5.h>

#include "run/run.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
            vitq_strs_free(out, n);
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

/* The nr rows of the open /summary d into s, axis columns named cols[0..s->n_axes); -1 if anything is
 * missing (s stays consistent for vitq_summary_free). */
static int read_rows(hid_t d, vitq_summary *s, char **cols, int nr) {
    const int na = s->n_axes;
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
    for (int a = 0; byaxis && a < na; a++) vitq_strs_free(byaxis[a], nr);
    free(byaxis);
    if (ok) return 0;
    if (!s->cell_ids || !s->status || !s->error) { /* keep free() consistent with what was read */
        vitq_strs_free(s->cell_ids, nr), vitq_strs_free(s->status, nr), vitq_strs_free(s->error, nr);
        s->cell_ids = s->status = s->error = NULL;
        for (int i = 0; s->axis_values && i < nr; i++) vitq_strs_free(s->axis_values[i], na);
        free(s->axis_values);
        s->axis_values = NULL;
        s->n_rows = 0;
    }
    return -1;
}

void vitq_summary_free(vitq_summary *s) {
    if (!s) return;
    for (int i = 0; s->axis_values && i < s->n_rows; i++) vitq_strs_free(s->axis_values[i], s->n_axes);
    free(s->axis_values);
    vitq_strs_free(s->axis_names, s->n_axes);
    vitq_strs_free(s->cell_ids, s->n_rows);
    vitq_strs_free(s->status, s->n_rows);
    vitq_strs_free(s->error, s->n_rows);
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
    vitq_h5_quiet();
    char *file = NULL, *dir = NULL;
    if (vitq_is_dir(run_path)) {
        file = vitq_results_path(run_path, "run.h5");
        dir = strdup(run_path);
    } else {
        file = strdup(run_path);
        const char *slash = strrchr(run_path, '/');
        dir = slash ? strndup(run_path, (size_t)(slash - run_path)) : strdup(".");
        if (dir && !*dir) free(dir), dir = strdup("/");
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
        rc = vitq_h5_fail(e, VITQ_EFORMAT, file, "/", "cannot open as HDF5");
        goto out;
    }
    s->vitq_version = vitq_h5_read_str(f, ".", "vitq_version");
    s->git_rev = vitq_h5_read_str(f, ".", "git_rev");
    if (!s->vitq_version) s->vitq_version = strdup("");
    if (!s->git_rev) s->git_rev = strdup("");
    int na = 0, nc = 0;
    s->axis_names = vitq_h5_read_strs(f, "axis_names", &na);
    s->n_axes = na;
    char **cols = vitq_h5_read_strs(f, "summary_axis_columns", &nc);
    if (!s->axis_names || !cols || nc != na) {
        vitq_strs_free(cols, nc);
        rc = vitq_fail(e, VITQ_EFORMAT, "%s: /: missing attributes axis_names / summary_axis_columns (not a vitq "
                                        "run index?)", file);
        goto out;
    }
    d = H5Dopen2(f, "summary", H5P_DEFAULT);
    sp = d < 0 ? -1 : H5Dget_space(d);
    hssize_t n = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    if (n < 0 || n > 10000000) {
        vitq_strs_free(cols, nc);
        rc = vitq_h5_fail(e, VITQ_EFORMAT, file, "/summary", "cannot open the summary table");
        goto out;
    }
    if (read_rows(d, s, cols, (int)n)) rc = vitq_h5_fail(e, VITQ_EFORMAT, file, "/summary", "missing or malformed columns");
    vitq_strs_free(cols, nc);
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
    vitq_h5_quiet();
    hid_t f = H5Fopen(cell_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return vitq_h5_fail(e, VITQ_EFORMAT, cell_path, "/", "cannot open");
    int rc = VITQ_OK;
    vitq_hist *h = NULL;
    int nh = 0;
    hid_t g = H5Gopen2(f, "hist", H5P_DEFAULT);
    H5G_info_t info;
    if (g < 0 || H5Gget_info(g, &info) < 0) {
        rc = vitq_h5_fail(e, VITQ_EFORMAT, cell_path, "/hist", "cannot open");
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
        ok = ok && vitq_h5_read_num(g, x->tap, "bins", H5T_NATIVE_INT, &x->bins) == 0 && x->bins >= 1 &&
             x->bins <= 100000000 && vitq_h5_read_num(g, x->tap, "lo", H5T_NATIVE_DOUBLE, &x->lo) == 0 &&
             vitq_h5_read_num(g, x->tap, "hi", H5T_NATIVE_DOUBLE, &x->hi) == 0;
        hid_t hg = ok ? H5Gopen2(g, x->tap, H5P_DEFAULT) : -1;
        ok = ok && hg >= 0 && read_counts(hg, "float_counts", x->bins, &x->float_counts) == 0 &&
             read_counts(hg, "quant_counts", x->bins, &x->quant_counts) == 0;
        if (hg >= 0) H5Gclose(hg);
        if (!ok) {
            nh++;
            rc = vitq_h5_fail(e, VITQ_EFORMAT, cell_path, obj, "missing or malformed histogram");
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

/* ---- curves ------------------------------------------------------------------------------------- */
typedef struct {
    char **names; /* the groups under /curves holding a "step" dataset */
    int n, cap;
} curve_list;

static herr_t find_curve(hid_t g, const char *name, const H5L_info_t *info, void *ctx) {
    (void)g, (void)info;
    curve_list *l = ctx;
    size_t len = strlen(name);
    if (len < 4 || strcmp(name + len - 4, "step") || (len > 4 && name[len - 5] != '/')) return 0;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        char **nn = realloc(l->names, sizeof *nn * (size_t)cap);
        if (!nn) return -1;
        l->names = nn, l->cap = cap;
    }
    return (l->names[l->n++] = strndup(name, len > 4 ? len - 5 : 0)) ? 0 : -1;
}

void vitq_curves_free(vitq_curve *c, int n) {
    for (int i = 0; c && i < n; i++) free(c[i].step), free(c[i].value);
    free(c);
}

/* Reads g/name into a malloc'd array of mtype (elem bytes); *n its length, or -1. */
static void *read_1d(hid_t g, const char *name, hid_t mtype, size_t elem, int64_t *n) {
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT), sp = d < 0 ? -1 : H5Dget_space(d);
    hssize_t k = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    void *buf = k >= 0 ? malloc(elem * (size_t)(k > 0 ? k : 1)) : NULL;
    if (buf && k > 0 && H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) free(buf), buf = NULL;
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    *n = k;
    return buf;
}

int vitq_cell_read_curves(const char *cell_path, vitq_curve **out, int *n, vitq_err *e) {
    *out = NULL;
    *n = 0;
    vitq_h5_quiet();
    hid_t f = H5Fopen(cell_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return vitq_h5_fail(e, VITQ_EFORMAT, cell_path, "/", "cannot open");
    if (H5Lexists(f, "curves", H5P_DEFAULT) <= 0) { /* a cell without passes */
        H5Fclose(f);
        return VITQ_OK;
    }
    hid_t g = H5Gopen2(f, "curves", H5P_DEFAULT);
    curve_list l = {0};
    int rc = g < 0 || H5Lvisit(g, H5_INDEX_NAME, H5_ITER_INC, find_curve, &l) < 0 ? VITQ_EFORMAT : VITQ_OK;
    vitq_curve *c = rc ? NULL : calloc((size_t)(l.n + 1), sizeof *c);
    if (!rc && !c) rc = VITQ_ENOMEM;
    for (int i = 0; !rc && i < l.n; i++) {
        char a[300], b[300];
        int64_t n1, n2;
        snprintf(c[i].name, sizeof c[i].name, "%s", l.names[i]);
        snprintf(a, sizeof a, "%s/step", l.names[i]), snprintf(b, sizeof b, "%s/value", l.names[i]);
        c[i].step = read_1d(g, a, H5T_NATIVE_INT64, sizeof(int64_t), &n1);
        c[i].value = read_1d(g, b, H5T_NATIVE_DOUBLE, sizeof(double), &n2);
        c[i].n = c[i].cap = n1;
        if (!c[i].step || !c[i].value || n1 != n2) rc = VITQ_EFORMAT;
    }
    vitq_strs_free(l.names, l.n);
    if (g >= 0) H5Gclose(g);
    H5Fclose(f);
    if (rc) {
        vitq_curves_free(c, c ? l.n : 0);
        return rc == VITQ_ENOMEM ? vitq_fail(e, rc, "%s: out of memory", cell_path)
                                 : vitq_h5_fail(e, rc, cell_path, "/curves", "missing or malformed curve");
    }
    *out = c;
    *n = l.n;
    return VITQ_OK;
}
