/* h5.c — the HDF5 helpers every HDF5 file of vitq is written and read with (run/results_*.c,
 * train/train_record.c): fixed-length UTF-8 strings, scalar and string-array attributes, 1-D datasets,
 * one-line errors from HDF5's error stack, and files created under a temporary name and published
 * atomically (a single HDF5 file killed mid-write is unreadable, so none is ever written in place).
 * Does not: know any file layout (run/run.h and train/train.h document theirs). */
#include <hdf5.h>

#include "core/core.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void vitq_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static herr_t walk_first(unsigned n, const H5E_error2_t *err, void *data) {
    char *buf = data;
    if (n == 0 && err && err->desc) snprintf(buf, 200, "%s", err->desc);
    return 0;
}

int vitq_h5_fail(vitq_err *e, int code, const char *file, const char *obj, const char *what) {
    char detail[200] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_first, detail);
    H5Eclear2(H5E_DEFAULT);
    if (detail[0]) return vitq_fail(e, code, "%s: %s: %s (HDF5: %s)", file, obj, what, detail);
    return vitq_fail(e, code, "%s: %s: %s", file, obj, what);
}

hid_t vitq_h5_str_type(size_t len, int nullpad) {
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

int vitq_h5_attr_f64(hid_t loc, const char *name, double v) {
    return attr_scalar(loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}
int vitq_h5_attr_i64(hid_t loc, const char *name, int64_t v) {
    return attr_scalar(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}
int vitq_h5_attr_u64(hid_t loc, const char *name, uint64_t v) {
    return attr_scalar(loc, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v);
}
int vitq_h5_attr_int(hid_t loc, const char *name, int v) {
    return attr_scalar(loc, name, H5T_STD_I32LE, H5T_NATIVE_INT, &v);
}

int vitq_h5_attr_str(hid_t loc, const char *name, const char *val) {
    if (!val) val = "";
    hid_t t = vitq_h5_str_type(strlen(val) + 1, 0);
    int rc = attr_scalar(loc, name, t, t, val);
    if (t >= 0) H5Tclose(t);
    return rc;
}

int vitq_h5_attr_strs(hid_t loc, const char *name, const char *const *v, int n) {
    if (n < 0) return -1;
    size_t L = 1;
    for (int i = 0; i < n; i++)
        if (v[i] && strlen(v[i]) + 1 > L) L = strlen(v[i]) + 1;
    char *buf = calloc((size_t)(n ? n : 1), L);
    if (!buf) return -1;
    for (int i = 0; i < n; i++)
        if (v[i]) memcpy(buf + (size_t)i * L, v[i], strlen(v[i]));
    hsize_t dims[1] = {(hsize_t)n};
    hid_t t = vitq_h5_str_type(L, 0), s = H5Screate_simple(1, dims, NULL);
    int rc = put_attr(loc, name, t, t, s, buf);
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    free(buf);
    return rc;
}

int vitq_h5_dset(hid_t loc, const char *name, hid_t ftype, hid_t mtype, hsize_t n, const void *buf) {
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

char *vitq_h5_read_str(hid_t loc, const char *obj, const char *name) {
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
                out = strdup(p ? p : "");
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

char **vitq_h5_read_strs(hid_t loc, const char *name, int *n) {
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
            vitq_strs_free(out, (int)np);
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

int vitq_h5_read_num(hid_t loc, const char *obj, const char *name, hid_t mtype, void *v) {
    if (H5Aexists_by_name(loc, obj, name, H5P_DEFAULT) <= 0) return -1;
    hid_t a = H5Aopen_by_name(loc, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t sp = H5Aget_space(a);
    int ok = sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1 && H5Aread(a, mtype, v) >= 0;
    if (sp >= 0) H5Sclose(sp);
    H5Aclose(a);
    return ok ? 0 : -1;
}

hid_t vitq_h5_create(vitq_atomic *a, vitq_err *e) {
    vitq_h5_quiet();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST) < 0) {
        H5Pclose(fapl);
        fapl = -1;
    }
    errno = 0;
    hid_t f = fapl < 0 ? -1 : H5Fcreate(a->tmp, H5F_ACC_EXCL, H5P_DEFAULT, fapl);
    if (fapl >= 0) H5Pclose(fapl);
    if (f < 0) {
        int err = errno;
        vitq_h5_fail(e, VITQ_EIO, a->path, "/", "cannot create the temporary file");
        if (err) vitq_fail(e, VITQ_EIO, "%s: cannot create %s: %s", a->path, a->tmp, strerror(err)); /* clearer */
        vitq_atomic_abort(a);
    }
    return f;
}

int vitq_h5_publish(vitq_atomic *a, hid_t f, int rc, vitq_err *e) {
    if (H5Fclose(f) < 0 && rc == 0) rc = vitq_h5_fail(e, VITQ_EIO, a->path, "/", "cannot close (disk full?)");
    if (rc != 0) {
        vitq_atomic_abort(a);
        return rc;
    }
    return vitq_atomic_commit(a, e);
}
