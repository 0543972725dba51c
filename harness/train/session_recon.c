/* session_recon.c — reconstruction of one unit on the quantized student: its quantizers in training,
 * forward (weights re-derived from the float student and the trainable tensors, QDrop inside the
 * activation quantizers) and backward (every quantizer's straight-through backward through the unit's
 * backward, then the weights' gradients through the weight quantizers), the trainable tensors, the
 * regularisers and constraints, and commit: freeze, save the state for resume, advance Q_IN.
 * A resumed cell loads the saved state and starts at the first uncommitted unit: QDrop masks come from a
 * stream seeded per unit, so the rest of the run draws what an uninterrupted one would. The state also
 * holds the curves and stored arrays recorded so far (/session), which a resume restores, so the cell
 * file of a resumed run has them all. */
#include <hdf5.h>

#include "train/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void vitq_session_recon_free(vitq_session *s) {
    vitq_acts_free(s->ua);
    vitq_grad_acts_free(s->ug);
    vitq_ss_parts_free(s);
    free(s->tnames);
    s->ua = NULL, s->ug = NULL, s->tnames = NULL;
}

static int need_unit(vitq_session *s, int u, const char *what) {
    if (!s->q) return vitq_ss_fail(s, VITQ_EINVAL, "%s: there is no quantized model before calibration", what);
    if (u != s->unit) return vitq_ss_fail(s, VITQ_EINVAL, "%s: unit %d is not in training (begin(%d) first)", what, u, u);
    return VITQ_OK;
}

static int q_fail(vitq_session *s, int rc, const vitq_err *e) { return vitq_ss_fail(s, rc, "%s", e->msg); }

int vitq_ss_begin(vitq_session *s, int u, int batch) {
    if (!s->q) return vitq_ss_fail(s, VITQ_EINVAL, "begin: there is no quantized model before calibration");
    vitq_model *m = vitq_qmodel_model(s->q);
    const vitq_unit *un = vitq_unit_get(m, u);
    if (!un || batch < 1) return vitq_ss_fail(s, VITQ_EINVAL, "begin: unit %d / batch %d out of range", u, batch);
    if (s->unit >= 0 && s->unit != u) return vitq_ss_fail(s, VITQ_EINVAL, "begin(%d): unit %d is still in training", u, s->unit);
    if (u < s->committed) return vitq_ss_fail(s, VITQ_EINVAL, "begin(%d): the unit is already committed", u);
    vitq_err e;
    int rc = vitq_model_alloc_grads(m, &e);
    if (!rc && (!s->ua || batch > s->batch)) {
        vitq_acts_free(s->ua);
        vitq_grad_acts_free(s->ug);
        s->ua = NULL, s->ug = NULL;
        rc = vitq_acts_create(m, batch, 0, &s->ua, &e);
        if (!rc) rc = vitq_grad_acts_create(m, batch, &s->ug, &e);
        s->batch = rc ? 0 : batch;
    }
    if (!rc) rc = vitq_qmodel_train(s->q, u, &e);
    if (rc) return q_fail(s, rc, &e);
    char key[96];
    snprintf(key, sizeof key, "qdrop/%s", un->name);
    vitq_qmodel_stats_enable(s->q, 0);
    vitq_qmodel_set_qdrop(s->q, 1, vitq_session_services()->seed(s, key));
    vitq_qmodel_zero_grad(s->q, u);
    if ((rc = vitq_ss_parts_begin(s, u, batch, &e))) return q_fail(s, rc, &e);
    s->unit = u;
    return VITQ_OK;
}

int vitq_ss_forward(vitq_session *s, int u, const float *x, int B, double drop_prob, float *y) {
    int rc = need_unit(s, u, "forward");
    if (rc) return rc;
    if (B < 1 || B > s->batch) return vitq_ss_fail(s, VITQ_EINVAL, "forward: batch %d, begin() made room for %d", B, s->batch);
    vitq_model *m = vitq_qmodel_model(s->q);
    const vitq_unit *un = vitq_unit_get(m, u);
    vitq_err e;
    vitq_qmodel_set_drop_prob(s->q, drop_prob);
    rc = vitq_qmodel_requantize(s->q, u, &e);
    if (!rc && vitq_ss_parts_active(s)) {
        if ((rc = vitq_ss_parts_forward(s, u, x, B, y, &e))) return vitq_ss_fail(s, rc, "%s forward: %s", un->name, e.msg);
        return VITQ_OK;
    }
    if (!rc) {
        memcpy(vitq_unit_in(m, s->ua, u), x, (size_t)(B * un->in_numel) * sizeof(float));
        rc = vitq_forward_units(m, s->ua, u, u + 1, B, &e);
    }
    if (rc) return vitq_ss_fail(s, rc, "%s forward: %s", un->name, vitq_qmodel_error(s->q)[0] ? vitq_qmodel_error(s->q) : e.msg);
    memcpy(y, vitq_unit_out(m, s->ua, u), (size_t)(B * un->out_numel) * sizeof(float));
    return VITQ_OK;
}

int vitq_ss_backward(vitq_session *s, int u, const float *dy, int B, float *dx) {
    int rc = need_unit(s, u, "backward");
    if (rc) return rc;
    vitq_model *m = vitq_qmodel_model(s->q);
    const vitq_unit *un = vitq_unit_get(m, u);
    vitq_err e;
    /* what no one reads is not computed: the unit's input gradient without dx, and the biases' and
     * norms' gradients unless the plugin holds a float tensor's gradient (tensor()) */
    const unsigned skip = (dx ? 0 : VITQ_GRAD_SKIP_INPUT) | (s->float_grads ? 0 : VITQ_GRAD_SKIP_AUX);
    if (vitq_ss_parts_active(s)) {
        if (!(rc = vitq_ss_parts_backward(s, u, dy, B, dx, skip, &e))) rc = vitq_qmodel_weights_backward(s->q, u, &e);
        if (rc) return vitq_ss_fail(s, rc, "%s backward: %s", un->name, e.msg);
        if (dx && !vitq_unit_din(m, s->ug, u)) memset(dx, 0, (size_t)(B * un->in_numel) * sizeof(float));
        return VITQ_OK;
    }
    memcpy(vitq_unit_dout(m, s->ug, u), dy, (size_t)(B * un->out_numel) * sizeof(float));
    m->grad_skip = skip;
    rc = vitq_backward_units(m, s->ua, s->ug, u, u + 1, B, &e);
    m->grad_skip = 0;
    if (!rc) rc = vitq_qmodel_weights_backward(s->q, u, &e);
    if (rc) return vitq_ss_fail(s, rc, "%s backward: %s", un->name, vitq_qmodel_error(s->q)[0] ? vitq_qmodel_error(s->q) : e.msg);
    const float *d = vitq_unit_din(m, s->ug, u);
    if (dx && d) memcpy(dx, d, (size_t)(B * un->in_numel) * sizeof(float));
    else if (dx) memset(dx, 0, (size_t)(B * un->in_numel) * sizeof(float)); /* the image: no gradient */
    return VITQ_OK;
}

int vitq_ss_zero_grad(vitq_session *s, int u) {
    int rc = need_unit(s, u, "zero_grad");
    if (!rc) vitq_qmodel_zero_grad(s->q, u);
    return rc;
}

int vitq_ss_trainables(vitq_session *s, int u, const char *glob, vitq_qtensor *out, int max) {
    int rc = need_unit(s, u, "trainables");
    if (rc) return rc;
    char (*names)[160] = realloc(s->tnames, sizeof *names * (size_t)(max > 0 ? max : 1));
    if (!names) return vitq_ss_fail(s, VITQ_ENOMEM, "trainables: out of memory");
    s->tnames = names;
    int n = vitq_qmodel_trainables(s->q, u, glob, out, names, max);
    for (int i = 0; i < n; i++) out[i].name = names[i]; /* "TAP:TENSOR", owned by the session */
    s->n_tnames = n;
    return n;
}

int vitq_ss_regularize(vitq_session *s, int u, const vitq_reg *r, double *loss) {
    int rc = need_unit(s, u, "regularize");
    vitq_err e;
    if (!rc && (rc = vitq_qmodel_regularize(s->q, u, r, loss, &e))) return q_fail(s, rc, &e);
    return rc;
}

int vitq_ss_project(vitq_session *s, int u) {
    int rc = need_unit(s, u, "project");
    vitq_err e;
    if (!rc && (rc = vitq_qmodel_project(s->q, u, &e))) return q_fail(s, rc, &e);
    return rc;
}

/* /session in the state file: curve_<i>_{step,value} and stored_<i>, their names in the attributes
 * "curves" and "stored" (in recording order). */
static int write_session(void *ctx, hid_t f) {
    const vitq_session *s = ctx;
    hid_t g = H5Gcreate2(f, "session", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const char **names = malloc(sizeof *names * (size_t)(s->n_curves + s->n_stored + 1));
    int bad = g < 0 || !names;
    for (int i = 0; !bad && i < s->n_curves; i++) names[i] = s->curves[i].name;
    for (int i = 0; !bad && i < s->n_stored; i++) names[s->n_curves + i] = s->stored[i].name;
    bad = bad || vitq_h5_attr_strs(g, "curves", names, s->n_curves) < 0 ||
          vitq_h5_attr_strs(g, "stored", names + s->n_curves, s->n_stored) < 0;
    for (int i = 0; !bad && i < s->n_curves; i++) {
        char a[48], b[48];
        snprintf(a, sizeof a, "curve_%d_step", i), snprintf(b, sizeof b, "curve_%d_value", i);
        const vitq_curve *c = &s->curves[i];
        bad = vitq_h5_dset(g, a, H5T_STD_I64LE, H5T_NATIVE_INT64, (hsize_t)c->n, c->step) < 0 ||
              vitq_h5_dset(g, b, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, (hsize_t)c->n, c->value) < 0;
    }
    for (int i = 0; !bad && i < s->n_stored; i++) {
        char a[48];
        snprintf(a, sizeof a, "stored_%d", i);
        bad = vitq_h5_dset(g, a, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, (hsize_t)s->stored[i].n, s->stored[i].data) < 0;
    }
    free(names);
    if (g >= 0) H5Gclose(g);
    return bad ? -1 : 0;
}

/* Reads the 1-D dataset g/name of mtype into a malloc'd buffer of *n elements (elem bytes each). */
static void *read_array(hid_t g, const char *name, hid_t mtype, size_t elem, int64_t *n) {
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT), sp = d < 0 ? -1 : H5Dget_space(d);
    hssize_t k = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    void *buf = k >= 0 ? malloc(elem * (size_t)(k > 0 ? k : 1)) : NULL;
    if (buf && k > 0 && H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) free(buf), buf = NULL;
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    *n = k;
    return buf;
}

/* Replaces the session's curves and stored arrays by those of the state file's /session. */
static int read_session(vitq_session *s, hid_t f, vitq_err *e) {
    if (H5Lexists(f, "session", H5P_DEFAULT) <= 0) return VITQ_OK; /* a state without them */
    hid_t g = H5Gopen2(f, "session", H5P_DEFAULT);
    int nc = 0, ns = 0, bad = g < 0;
    char **cn = bad ? NULL : vitq_h5_read_strs(g, "curves", &nc), **sn = bad ? NULL : vitq_h5_read_strs(g, "stored", &ns);
    for (int i = 0; i < s->n_curves; i++) free(s->curves[i].step), free(s->curves[i].value);
    for (int i = 0; i < s->n_stored; i++) free(s->stored[i].data);
    s->n_curves = s->n_stored = 0;
    vitq_curve *c = calloc((size_t)(nc + 1), sizeof *c);
    vitq_stored *st = calloc((size_t)(ns + 1), sizeof *st);
    bad = bad || !c || !st || (nc && !cn) || (ns && !sn);
    for (int i = 0; !bad && i < nc; i++) {
        char a[48], b[48];
        int64_t n1 = -1, n2 = -1;
        snprintf(a, sizeof a, "curve_%d_step", i), snprintf(b, sizeof b, "curve_%d_value", i);
        snprintf(c[i].name, sizeof c[i].name, "%s", cn[i]);
        c[i].step = read_array(g, a, H5T_NATIVE_INT64, sizeof(int64_t), &n1);
        c[i].value = read_array(g, b, H5T_NATIVE_DOUBLE, sizeof(double), &n2);
        c[i].n = c[i].cap = n1;
        bad = !c[i].step || !c[i].value || n1 != n2;
    }
    for (int i = 0; !bad && i < ns; i++) {
        char a[48];
        snprintf(a, sizeof a, "stored_%d", i);
        snprintf(st[i].name, sizeof st[i].name, "%s", sn[i]);
        bad = !(st[i].data = read_array(g, a, H5T_NATIVE_FLOAT, sizeof(float), &st[i].n));
    }
    vitq_strs_free(cn, nc);
    vitq_strs_free(sn, ns);
    if (g >= 0) H5Gclose(g);
    free(s->curves), free(s->stored);
    s->curves = c, s->n_curves = bad ? 0 : nc;
    s->stored = st, s->n_stored = bad ? 0 : ns;
    return bad ? vitq_h5_fail(e, VITQ_EFORMAT, s->c.state_path, "/session", "cannot read the curves") : VITQ_OK;
}

/* The committed state, for resume: written atomically after every commit. */
static int save_state(vitq_session *s, vitq_err *e) {
    if (!s->c.state_path) return VITQ_OK;
    char committed[32];
    snprintf(committed, sizeof committed, "%d", s->committed);
    const char *kv[] = {"state_key", s->c.state_key ? s->c.state_key : "", "committed", committed, "pass",
                        s->pass_name ? s->pass_name : ""};
    return vitq_qmodel_state_save_with(s->q, s->c.state_path, kv, 3, write_session, s, e);
}

int vitq_ss_commit(vitq_session *s, int u) {
    int rc = need_unit(s, u, "commit");
    if (rc) return rc;
    vitq_err e;
    vitq_ss_parts_end(s); /* the clones go before their originals leave training */
    if ((rc = vitq_qmodel_freeze(s->q, u, &e))) return q_fail(s, rc, &e);
    s->unit = -1;
    s->committed = u + 1;
    if ((rc = save_state(s, &e))) return q_fail(s, rc, &e);
    if (s->q_ok && s->q_unit > u) s->q_ok = 0; /* the chain saw this unit before it was committed */
    return VITQ_OK;
}

int vitq_ss_resume_unit(vitq_session *s) { return s->committed; }

int vitq_session_resumable(const vitq_session *s, const char *pass) {
    struct stat st;
    if (!s->q || !s->c.state_path || stat(s->c.state_path, &st) != 0) return -1;
    char *key = vitq_state_attr(s->c.state_path, "state_key"), *p = vitq_state_attr(s->c.state_path, "pass");
    char *done = vitq_state_attr(s->c.state_path, "committed");
    const int n = key && p && done && !strcmp(key, s->c.state_key ? s->c.state_key : "") && !strcmp(p, pass ? pass : "")
                      ? atoi(done) : -1;
    free(key), free(p), free(done);
    return n;
}

/* Before a pass runs: a state saved for this cell (same key, same pass) restores the committed units. */
int vitq_session_resume(vitq_session *s, vitq_err *e) {
    const int n = vitq_session_resumable(s, s->pass_name);
    int rc = VITQ_OK;
    if (n >= 0) {
        rc = vitq_qmodel_state_load(s->q, s->c.student, s->c.state_path, e);
        if (!rc) s->committed = n;
        hid_t f = rc ? -1 : H5Fopen(s->c.state_path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (!rc && f < 0) rc = vitq_h5_fail(e, VITQ_EIO, s->c.state_path, "/", "cannot open");
        if (!rc) rc = read_session(s, f, e);
        if (f >= 0) H5Fclose(f);
    }
    vitq_session_chains_reset(s);
    return rc;
}
