/* session.c — the session a pass plugin sees (vitq_plugin.h, "Passes"): its creation per cell, running a
 * pass (its host: progress bars on stderr, Ctrl-C), the table of services (vitq_session_api) and the
 * services that are not about data or reconstruction: the model's structure, the float student's
 * tensors and weights, AdamW, GEMM, curves and stored arrays for the cell file, derived seeds.
 * session_data.c holds images and caches, session_recon.c the reconstruction of a unit. */
#include "train/train.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int vitq_ss_fail(vitq_session *s, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
    return code < 0 ? code : VITQ_EINVAL;
}

int vitq_session_create(const vitq_session_cfg *c, vitq_session **out, vitq_err *e) {
    *out = NULL;
    vitq_session *s = calloc(1, sizeof *s);
    if (!s) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    s->c = *c;
    if (s->c.batch < 1) s->c.batch = 32;
    s->unit = -1;
    int rc = vitq_model_clone(c->teacher, &s->tm, e);
    if (rc) {
        free(s);
        return rc;
    }
    s->tc.m = s->tm;
    s->sc.m = c->student;
    *out = s;
    return VITQ_OK;
}

void vitq_session_free(vitq_session *s) {
    if (!s) return;
    vitq_session_data_free(s);
    vitq_session_recon_free(s);
    vitq_model_free(s->tm);
    for (int i = 0; i < s->n_curves; i++) free(s->curves[i].step), free(s->curves[i].value);
    for (int i = 0; i < s->n_stored; i++) free(s->stored[i].data);
    free(s->curves);
    free(s->stored);
    free(s);
}

void vitq_session_set_qmodel(vitq_session *s, vitq_qmodel *q) {
    s->q = q;
    vitq_session_chains_reset(s);
}

void vitq_session_curves(const vitq_session *s, const vitq_curve **out, int *n) {
    *out = s->curves;
    *n = s->n_curves;
}

void vitq_session_stored(const vitq_session *s, const vitq_stored **out, int *n) {
    *out = s->stored;
    *n = s->n_stored;
}

/* ---- running a pass --------------------------------------------------------------------------------- */
/* The pass's host: vitq_host_ctx first (the host's fail and log use it), the session after it. */
typedef struct {
    vitq_host_ctx h;
    vitq_session *s;
} pass_host;

/* host->progress: one bar per label; "LABEL|STATUS" shows STATUS (e.g. the loss) after the bar. */
static int pass_progress(const vitq_host *h, int64_t done, int64_t total, const char *label) {
    vitq_session *s = ((const pass_host *)h->ctx)->s;
    char name[96] = "", *bar = strchr(label ? label : "", '|');
    snprintf(name, sizeof name, "%.*s", bar ? (int)(bar - label) : 95, label ? label : "");
    if (!s->prog_on || strcmp(name, s->prog_label)) {
        if (s->prog_on) vitq_progress_finish(&s->prog, NULL);
        snprintf(s->prog_label, sizeof s->prog_label, "%s", name);
        vitq_progress_start(&s->prog, name, total);
        s->prog_on = 1;
    }
    vitq_progress_update(&s->prog, done, bar ? bar + 1 : NULL);
    return vitq_interrupted;
}

int vitq_session_run(vitq_session *s, const vitq_plugin *p, const void *params, const char *label, vitq_err *e) {
    pass_host ph = {.s = s};
    vitq_host host;
    char who[160];
    snprintf(who, sizeof who, "%s: pass '%s'", label, p->name);
    vitq_host_init(&host, &ph.h, who, p->name, s->c.seed);
    host.progress = pass_progress;
    s->pass_name = p->name;
    s->err[0] = 0;
    s->committed = 0;
    s->dp_parts = s->dp_whole = 0;
    int rc = p->pass->when == VITQ_PASS_AFTER_CALIB ? vitq_session_resume(s, e) : VITQ_OK;
    if (rc) return rc;
    rc = p->pass->run(params, s, vitq_session_services(), &host);
    if (s->prog_on) vitq_progress_finish(&s->prog, NULL);
    s->prog_on = 0;
    if (s->dp_whole) /* asked for, not given: say so once per pass */
        host.log(&host, VITQ_LOG_WARN, "data_parallel: %d of %d unit(s) trained one batch at a time (%s)", s->dp_whole,
                 s->dp_whole + s->dp_parts, s->dp_why);
    if (s->q) vitq_qmodel_stats_enable(s->q, 1);
    if (s->unit >= 0 && s->q) { /* a pass that stopped mid-unit: its quantizers leave training */
        vitq_err fe;
        vitq_qmodel_freeze(s->q, s->unit, &fe);
        s->unit = -1;
    }
    if (!rc) return VITQ_OK;
    if (rc == VITQ_ECANCELLED || vitq_interrupted) return vitq_fail(e, VITQ_ECANCELLED, "%s: interrupted", who);
    return vitq_fail(e, rc, "%s", ph.h.failed ? ph.h.msg : s->err[0] ? s->err : "the pass failed");
}

/* ---- structure, the float student ------------------------------------------------------------------- */
static int ss_n_units(vitq_session *s) { return vitq_unit_count(s->tm); }

static int ss_unit(vitq_session *s, int u, vitq_unit_info *out) {
    const vitq_unit *un = vitq_unit_get(s->tm, u);
    if (!un) return vitq_ss_fail(s, VITQ_EINVAL, "unit %d out of range [0, %d)", u, vitq_unit_count(s->tm));
    *out = (vitq_unit_info){.name = un->name, .kind = (int)un->kind, .block = un->block, .in_ndim = un->in_ndim,
                            .out_ndim = un->out_ndim, .in_numel = un->in_numel, .out_numel = un->out_numel};
    memcpy(out->in_shape, un->in_shape, sizeof out->in_shape);
    memcpy(out->out_shape, un->out_shape, sizeof out->out_shape);
    return VITQ_OK;
}

static int ss_tensor(vitq_session *s, const char *name, vitq_tensor *out) {
    const vitq_tensor_ref *r = vitq_model_param(s->c.student, name);
    if (!r) return vitq_ss_fail(s, VITQ_EINVAL, "tensor: the model has no parameter '%s'", name);
    vitq_model *qm = s->q ? vitq_qmodel_model(s->q) : NULL;
    *out = (vitq_tensor){.name = r->name, .data = r->data, .ndim = r->ndim, .numel = r->numel,
                         .grad = qm && qm->grad_slab ? qm->grad_slab + (r->data - s->c.student->slab) : NULL};
    if (out->grad) s->float_grads = 1; /* the plugin may read any float gradient from now on */
    memcpy(out->shape, r->shape, sizeof out->shape);
    return VITQ_OK;
}

static int weight_of(vitq_session *s, const vitq_tensor_ref *r, int make_post, vitq_weight *out) {
    vitq_qweight w;
    vitq_err e;
    int rc = vitq_qmodel_weight(s->q, r->name, make_post, &w, &e);
    if (rc) return vitq_ss_fail(s, rc, "%s", e.msg);
    *out = (vitq_weight){.name = r->name, .unit = w.unit, .ndim = r->ndim, .numel = r->numel, .src = r->data,
                         .src_grad = w.src_grad, .post = w.post, .used_grad = w.used_grad, .quantized = w.quantized};
    memcpy(out->shape, r->shape, sizeof out->shape);
    return VITQ_OK;
}

static int ss_weights(vitq_session *s, int u, vitq_weight *out, int max) {
    if (!s->q) return vitq_ss_fail(s, VITQ_EINVAL, "weights: there is no quantized model before calibration");
    const vitq_model *m = s->c.student;
    int n = 0;
    for (int i = 0; i < m->n_table && n < max; i++) {
        vitq_weight w;
        if (m->table[i].tap_groups <= 0 || (u >= 0 && vitq_unit_of_param(m, i) != u)) continue;
        vitq_err e;
        vitq_qweight qw;
        if (vitq_qmodel_weight(s->q, m->table[i].name, 0, &qw, &e)) continue; /* no [quantizer] binds it */
        if (weight_of(s, &m->table[i], 0, &w)) return VITQ_EINVAL;
        out[n++] = w;
    }
    return n;
}

static int ss_enable_post(vitq_session *s, const char *name) {
    const vitq_tensor_ref *r = vitq_model_param(s->c.student, name);
    if (!s->q || !r) return vitq_ss_fail(s, VITQ_EINVAL, "enable_post: no weight '%s' of a quantized model", name);
    vitq_weight w;
    return weight_of(s, r, 1, &w);
}

static int ss_teacher_tensor(vitq_session *s, const char *name, vitq_tensor *out) {
    const vitq_tensor_ref *r = vitq_model_param(s->c.teacher, name);
    if (!r) return vitq_ss_fail(s, VITQ_EINVAL, "teacher_tensor: the model has no parameter '%s'", name);
    *out = (vitq_tensor){.name = r->name, .data = r->data, .ndim = r->ndim, .numel = r->numel, .grad = NULL};
    memcpy(out->shape, r->shape, sizeof out->shape);
    return VITQ_OK;
}

/* The float student as a checkpoint: vitq_model_save writes the architecture and mlp_act; the metadata
 * also names the teacher's file (its SHA-256) and the pass that saved it. A relative path is taken inside
 * the run's output folder (so a trial run with --output elsewhere never overwrites another run's file), an
 * absolute one as it is; the folder is made if missing. */
static int ss_save_student(vitq_session *s, const char *given) {
    if (!given || !*given) return vitq_ss_fail(s, VITQ_EINVAL, "save_student: no path");
    char path[2048], dir[2048];
    const int rel = given[0] != '/' && s->c.out_dir && *s->c.out_dir;
    const int len = rel ? snprintf(path, sizeof path, "%s/%s", s->c.out_dir, given)
                        : snprintf(path, sizeof path, "%s", given);
    if (len < 0 || (size_t)len >= sizeof path) return vitq_ss_fail(s, VITQ_EINVAL, "save_student: path too long");
    vitq_err de;
    const char *slash = strrchr(path, '/');
    if (slash && slash > path && (size_t)(slash - path) < sizeof dir) {
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
        if (vitq_mkdir_p(dir, &de)) return vitq_ss_fail(s, VITQ_EIO, "save_student: %s", de.msg);
    }
    char by[160];
    snprintf(by, sizeof by, "vitq %s, pass %s", VITQ_VERSION, s->pass_name ? s->pass_name : "?");
    const char *keys[] = {"vitq_saved_by", "vitq_source_sha256"};
    const char *vals[] = {by, s->c.teacher->sha256};
    vitq_err e;
    int rc = vitq_model_save(s->c.student, path, keys, vals, s->c.teacher->sha256[0] ? 2 : 1, &e);
    return rc ? vitq_ss_fail(s, rc, "save_student: %s", e.msg) : VITQ_OK;
}

static int ss_set_mlp_act(vitq_session *s, int block, vitq_mlp_act act) {
    if (s->q) return vitq_ss_fail(s, VITQ_EINVAL, "set_mlp_act: only before calibration");
    if (block < 0 || block >= s->c.student->n_blocks) return vitq_ss_fail(s, VITQ_EINVAL, "set_mlp_act: block %d", block);
    s->c.student->mlp_act[block] = act == VITQ_MLP_RELU ? VITQ_ACT_RELU : VITQ_ACT_GELU;
    vitq_session_chains_reset(s);
    return VITQ_OK;
}

static int ss_sync(vitq_session *s) {
    vitq_session_chains_reset(s);
    if (!s->q) return VITQ_OK;
    s->q_ok = 0;
    vitq_err e;
    int rc = vitq_qmodel_sync(s->q, &e);
    return rc ? vitq_ss_fail(s, rc, "sync: %s", e.msg) : VITQ_OK;
}

/* ---- optimiser, output, seeds ------------------------------------------------------------------------- */
struct vitq_opt {
    int n;
    vitq_adam_group *g;
    vitq_adamw *st;
};

static vitq_opt *ss_adam_create(vitq_session *s, const vitq_adam_group *g, int n) {
    vitq_opt *o = calloc(1, sizeof *o);
    if (o) o->g = calloc((size_t)(n > 0 ? n : 1), sizeof *o->g), o->st = calloc((size_t)(n > 0 ? n : 1), sizeof *o->st);
    for (int i = 0; o && o->g && o->st && i < n; i++) {
        vitq_err e;
        o->g[i] = g[i];
        if (vitq_adamw_init(&o->st[i], g[i].n, (float)g[i].beta1, (float)g[i].beta2, (float)g[i].eps,
                            (float)g[i].weight_decay, &e))
            break;
        o->n = i + 1;
    }
    if (!o || o->n != n) {
        for (int i = 0; o && i < o->n; i++) vitq_adamw_release(&o->st[i]);
        if (o) free(o->g), free(o->st);
        free(o);
        vitq_ss_fail(s, VITQ_ENOMEM, "adam_create: out of memory");
        return NULL;
    }
    return o;
}

static int ss_adam_step(vitq_opt *o, const double *lr) {
    for (int i = 0; i < o->n; i++) {
        vitq_adamw *a = &o->st[i];
        a->t++;
        vitq_adamw_update(a, o->g[i].value, o->g[i].grad, 0, o->g[i].n, (float)lr[i], a->weight_decay, a->t);
    }
    return VITQ_OK;
}

static void ss_adam_free(vitq_opt *o) {
    if (!o) return;
    for (int i = 0; i < o->n; i++) vitq_adamw_release(&o->st[i]);
    free(o->g);
    free(o->st);
    free(o);
}

static int ss_record(vitq_session *s, const char *name, int64_t step, double value) {
    vitq_curve *c = NULL;
    for (int i = 0; i < s->n_curves && !c; i++)
        if (!strcmp(s->curves[i].name, name)) c = &s->curves[i];
    if (!c) {
        vitq_curve *nc = realloc(s->curves, sizeof *nc * (size_t)(s->n_curves + 1));
        if (!nc) return vitq_ss_fail(s, VITQ_ENOMEM, "record: out of memory");
        s->curves = nc;
        c = &s->curves[s->n_curves++];
        memset(c, 0, sizeof *c);
        snprintf(c->name, sizeof c->name, "%s", name);
    }
    if (c->n == c->cap) {
        int64_t cap = c->cap ? 2 * c->cap : 256;
        int64_t *st = realloc(c->step, sizeof *st * (size_t)cap);
        double *v = st ? realloc(c->value, sizeof *v * (size_t)cap) : NULL;
        if (st) c->step = st;
        if (!st || !v) return vitq_ss_fail(s, VITQ_ENOMEM, "record: out of memory");
        c->value = v, c->cap = cap;
    }
    c->step[c->n] = step, c->value[c->n] = value, c->n++;
    return VITQ_OK;
}

static int ss_store(vitq_session *s, const char *name, const float *data, int64_t n) {
    vitq_stored *ns = realloc(s->stored, sizeof *ns * (size_t)(s->n_stored + 1));
    float *d = malloc(sizeof *d * (size_t)(n > 0 ? n : 1));
    if (ns) s->stored = ns;
    if (!ns || !d) {
        free(d);
        return vitq_ss_fail(s, VITQ_ENOMEM, "store: out of memory");
    }
    vitq_stored *t = &s->stored[s->n_stored++];
    snprintf(t->name, sizeof t->name, "%s/%s", s->pass_name ? s->pass_name : "pass", name);
    if (n > 0) memcpy(d, data, sizeof *d * (size_t)n);
    t->data = d, t->n = n;
    return VITQ_OK;
}

static uint64_t ss_seed(vitq_session *s, const char *key) {
    return vitq_rng_derive(s->c.seed, vitq_fnv1a64(key, strlen(key), VITQ_FNV1A64_INIT));
}

static const vitq_session_api api = {
    .abi = VITQ_PLUGIN_ABI, .size = sizeof(vitq_session_api),
    .n_units = ss_n_units, .unit = ss_unit, .images = vitq_ss_images, .io = vitq_ss_io, .capture = vitq_ss_capture,
    .tail_forward = vitq_ss_tail_forward, .tail_backward = vitq_ss_tail_backward,
    .teacher_forward = vitq_ss_teacher_forward,
    .begin = vitq_ss_begin, .forward = vitq_ss_forward, .backward = vitq_ss_backward, .zero_grad = vitq_ss_zero_grad,
    .trainables = vitq_ss_trainables, .regularize = vitq_ss_regularize, .project = vitq_ss_project,
    .commit = vitq_ss_commit, .resume_unit = vitq_ss_resume_unit,
    .tensor = ss_tensor, .weights = ss_weights, .enable_post = ss_enable_post, .set_mlp_act = ss_set_mlp_act,
    .sync = ss_sync,
    .adam_create = ss_adam_create, .adam_step = ss_adam_step, .adam_free = ss_adam_free, .gemm = vitq_gemm,
    .record = ss_record, .store = ss_store, .seed = ss_seed,
    .teacher_tensor = ss_teacher_tensor, .save_student = ss_save_student,
};

const vitq_session_api *vitq_session_services(void) { return &api; }
