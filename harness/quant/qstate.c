/* qstate.c — the quantized model's state as one HDF5 file, written atomically: every quantizer's saved
 * arrays (its own `save`), the float student's parameters and MLP activations, the weights' post terms,
 * and caller attributes (what produced it: a configuration hash, the units committed). Loading it gives
 * back the same quantized model bit for bit. What resume inside a cell and stage sharing across cells
 * store. Layout:
 *   /student/params    float [n_params]   the float student's slab (parameter-table order)
 *   /student/mlp_act   int [n_blocks]
 *   /quantizers/<tap>/<array>   float     each bound tap's state arrays
 *   /post/<weight>     float              only for weights that have a post term
 *   attributes on /: "arch" (the architecture's name and sizes as text), the caller's key/values. */
#include <hdf5.h>

#include "quant/quant.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    vitq_state_io io;
    hid_t g;
    int failed;
} h5_io;

static int io_put(vitq_state_io *io, const char *name, const float *data, int64_t n) {
    h5_io *h = (h5_io *)io;
    if (vitq_h5_dset(h->g, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, (hsize_t)n, data) < 0) h->failed = 1;
    return h->failed ? VITQ_EIO : VITQ_OK;
}

static int64_t io_size(vitq_state_io *io, const char *name) {
    h5_io *h = (h5_io *)io;
    if (H5Lexists(h->g, name, H5P_DEFAULT) <= 0) return -1;
    hid_t d = H5Dopen2(h->g, name, H5P_DEFAULT), sp = d >= 0 ? H5Dget_space(d) : -1;
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    return (int64_t)n;
}

static int io_get(vitq_state_io *io, const char *name, float *data, int64_t n) {
    h5_io *h = (h5_io *)io;
    if (io_size(io, name) != n) return VITQ_EFORMAT;
    hid_t d = H5Dopen2(h->g, name, H5P_DEFAULT);
    herr_t r = d >= 0 ? H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) : -1;
    if (d >= 0) H5Dclose(d);
    return r < 0 ? VITQ_EFORMAT : VITQ_OK;
}

static void arch_text(const vitq_model *m, char *buf, size_t n) {
    snprintf(buf, n, "%s params=%lld tensors=%d blocks=%d", m->arch.name, (long long)m->n_params, m->n_table,
             m->n_blocks);
}

static int write_all(const vitq_qmodel *q, hid_t f, const char *const *kv, int n_kv) {
    const vitq_model *s = q->src;
    char arch[256];
    arch_text(s, arch, sizeof arch);
    int rc = vitq_h5_attr_str(f, "arch", arch) < 0;
    for (int i = 0; !rc && i + 1 < 2 * n_kv; i += 2) rc = vitq_h5_attr_str(f, kv[i], kv[i + 1]) < 0;
    hid_t g = rc ? -1 : H5Gcreate2(f, "student", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int *acts = malloc(sizeof(int) * (size_t)s->n_blocks);
    if (g < 0 || !acts) rc = 1;
    for (int l = 0; !rc && l < s->n_blocks; l++) acts[l] = (int)s->mlp_act[l];
    if (!rc) rc = vitq_h5_dset(g, "params", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, (hsize_t)s->n_params, s->slab) < 0 ||
                  vitq_h5_dset(g, "mlp_act", H5T_STD_I32LE, H5T_NATIVE_INT, (hsize_t)s->n_blocks, acts) < 0;
    free(acts);
    if (g >= 0) H5Gclose(g);
    hid_t gq = rc ? -1 : H5Gcreate2(f, "quantizers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t gp = rc ? -1 : H5Gcreate2(f, "post", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    rc |= gq < 0 || gp < 0;
    for (int i = 0; !rc && i < q->n_taps; i++) {
        const vitq_qtap *t = &q->taps[i];
        if (t->w_post)
            rc = vitq_h5_dset(gp, t->name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, (hsize_t)t->w_fp->numel, t->w_post) < 0;
        if (rc || !t->plugin || !t->plugin->quantizer->save) continue;
        h5_io io = {.io = {.put = io_put, .size = io_size, .get = io_get}};
        io.g = H5Gcreate2(gq, t->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        rc = io.g < 0 || t->plugin->quantizer->save(t->inst, &io.io) != 0 || io.failed ||
             vitq_h5_attr_f64(io.g, "cal_min", t->cal_min) < 0 || vitq_h5_attr_f64(io.g, "cal_max", t->cal_max) < 0;
        if (io.g >= 0) H5Gclose(io.g);
    }
    if (gq >= 0) H5Gclose(gq);
    if (gp >= 0) H5Gclose(gp);
    return rc ? VITQ_EIO : VITQ_OK;
}

int vitq_qmodel_state_save_with(const vitq_qmodel *q, const char *path, const char *const *kv, int n_kv,
                                int (*extra)(void *ctx, hid_t f), void *ctx, vitq_err *e) {
    if (q->phase != VITQ_QPHASE_CALIBRATED)
        return vitq_fail(e, VITQ_EINVAL, "%s: only a calibrated model's state can be saved", path);
    vitq_atomic a;
    int rc = vitq_atomic_begin(&a, path, e);
    if (rc) return rc;
    hid_t f = vitq_h5_create(&a, e);
    if (f < 0) return VITQ_EIO;
    rc = write_all(q, f, kv, n_kv);
    if (!rc && extra && extra(ctx, f) < 0) rc = VITQ_EIO;
    if (rc) vitq_h5_fail(e, rc, path, "/", "cannot write the state");
    return vitq_h5_publish(&a, f, rc, e);
}

int vitq_qmodel_state_save(const vitq_qmodel *q, const char *path, const char *const *kv, int n_kv, vitq_err *e) {
    return vitq_qmodel_state_save_with(q, path, kv, n_kv, NULL, NULL, e);
}

char *vitq_state_attr(const char *path, const char *key) {
    vitq_h5_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return NULL;
    char *v = vitq_h5_read_str(f, ".", key);
    H5Fclose(f);
    return v;
}

/* Reads the quantizers' arrays (each tap through its plugin's load) and the post terms. */
static int read_quantizers(vitq_qmodel *q, hid_t f, const char *path, vitq_err *e) {
    hid_t gq = H5Gopen2(f, "quantizers", H5P_DEFAULT);
    if (gq < 0) return vitq_h5_fail(e, VITQ_EFORMAT, path, "/quantizers", "missing");
    int rc = VITQ_OK;
    for (int i = 0; !rc && i < q->n_taps; i++) {
        vitq_qtap *t = &q->taps[i];
        if (t->w_post || H5Lexists(f, "post", H5P_DEFAULT) > 0) {
            char obj[200];
            snprintf(obj, sizeof obj, "post/%s", t->name);
            if (H5Lexists(f, "post", H5P_DEFAULT) > 0 && H5Lexists(f, obj, H5P_DEFAULT) > 0) {
                if (!t->w_post && !(t->w_post = vitq_alloc((size_t)t->w_fp->numel * sizeof(float))))
                    rc = vitq_fail(e, VITQ_ENOMEM, "out of memory");
                hid_t d = rc ? -1 : H5Dopen2(f, obj, H5P_DEFAULT);
                if (!rc && (d < 0 || H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->w_post) < 0))
                    rc = vitq_h5_fail(e, VITQ_EFORMAT, path, obj, "cannot read");
                if (d >= 0) H5Dclose(d);
            }
        }
        if (rc || !t->plugin) continue;
        if (!t->plugin->quantizer->load) {
            t->finalized = 1;
            continue;
        }
        h5_io io = {.io = {.put = io_put, .size = io_size, .get = io_get}};
        io.g = H5Lexists(gq, t->name, H5P_DEFAULT) > 0 ? H5Gopen2(gq, t->name, H5P_DEFAULT) : -1;
        if (io.g < 0) {
            rc = vitq_fail(e, VITQ_EFORMAT, "%s: no state for tap '%s'", path, t->name);
            break;
        }
        int lrc = t->plugin->quantizer->load(t->inst, &io.io);
        vitq_h5_read_num(io.g, ".", "cal_min", H5T_NATIVE_DOUBLE, &t->cal_min); /* histogram ranges */
        vitq_h5_read_num(io.g, ".", "cal_max", H5T_NATIVE_DOUBLE, &t->cal_max);
        H5Gclose(io.g);
        if (lrc) {
            vitq_qtap_failed(q, t, lrc, "load");
            rc = vitq_fail(e, lrc < 0 ? lrc : VITQ_EPLUGIN, "%s: %s", path, q->err);
        }
        t->finalized = 1;
    }
    H5Gclose(gq);
    return rc;
}

int vitq_qmodel_state_load(vitq_qmodel *q, vitq_model *student, const char *path, vitq_err *e) {
    if (student != q->src) return vitq_fail(e, VITQ_EINVAL, "%s: state load: not this model's float student", path);
    vitq_h5_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return vitq_h5_fail(e, VITQ_EIO, path, "/", "cannot open");
    char want[256], *got = vitq_h5_read_str(f, ".", "arch");
    arch_text(student, want, sizeof want);
    int rc = VITQ_OK;
    if (!got || strcmp(got, want))
        rc = vitq_fail(e, VITQ_EFORMAT, "%s: state of another model (%s, this is %s)", path, got ? got : "?", want);
    int *acts = malloc(sizeof(int) * (size_t)student->n_blocks);
    hid_t dp = rc ? -1 : H5Dopen2(f, "student/params", H5P_DEFAULT);
    hid_t da = rc ? -1 : H5Dopen2(f, "student/mlp_act", H5P_DEFAULT);
    if (!rc && (!acts || dp < 0 || da < 0 ||
                H5Dread(dp, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, student->slab) < 0 ||
                H5Dread(da, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, acts) < 0))
        rc = vitq_h5_fail(e, VITQ_EFORMAT, path, "/student", "cannot read");
    for (int l = 0; !rc && l < student->n_blocks; l++) student->mlp_act[l] = acts[l] ? VITQ_ACT_RELU : VITQ_ACT_GELU;
    free(acts);
    if (dp >= 0) H5Dclose(dp);
    if (da >= 0) H5Dclose(da);
    if (!rc) rc = read_quantizers(q, f, path, e);
    free(got);
    H5Fclose(f);
    if (rc) return rc;
    q->phase = VITQ_QPHASE_CALIBRATED;
    if ((rc = vitq_qmodel_sync(q, e))) return rc;
    vitq_qmodel_stats_weights(q); /* the weights' statistics, as calibration measures them */
    return VITQ_OK;
}
