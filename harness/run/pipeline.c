/* pipeline.c — one cell of a run as a list of stages:
 *
 *   baseline:  load -> evaluate -> write
 *   grid cell: load -> [passes before calibration] -> quantizers -> calibrate -> [passes after it]
 *              -> histograms -> evaluate -> collect -> write
 *
 * Each stage is a function over the cell's context; a [pass NAME] section of the INI becomes a stage
 * before or after "calibrate" as its plugin declares, in file order. Passes work on the cell's float
 * student (a copy of the loaded model) through one session (train/session.c) made when the first pass
 * runs; an after-calibration pass saves its committed units in the run's partial/ folder, so a killed
 * cell resumes there (the file goes once the cell is written). Stages with a timer add their seconds to
 * the cell file's /metrics seconds_<timer> ("calibrate" and "eval" are always there; a pass's timer is
 * its name). After a failed stage only "write" runs (the cell is recorded as failed with the message);
 * after Ctrl-C nothing does (a cell is written whole or not at all).
 * Does not: decide which cells run or skip finished ones (run.c), or load a model twice (cells.c caches). */
#include "run/run.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One cell being computed. */
struct vitq_cell_ctx {
    vitq_run *run;
    const vitq_run_cell *cell;
    const vitq_run_cfg *cfg;
    const char *label;
    vitq_model *fp;                    /* the float model as loaded (the run's cache owns it): the teacher */
    vitq_model *student;               /* the cell's float student: fp, then what passes make of it */
    vitq_session *session;             /* made by the first pass */
    int64_t *order;                    /* the seeded order of the calibration split (passes' images) */
    char partial[1100];                /* the resume state of the cell's passes */
    vitq_dataset *eval_data, *calib_data;
    vitq_qmodel *q;                    /* the fake-quant model; NULL for a baseline */
    vitq_model *em;                    /* the model evaluated: fp or q's */
    int64_t *calib_idx;                /* the calibration subset (its first calib_size entries) */
    const char *shared;                /* the stage whose state was loaded from another cell, or NULL */
    float *calib_images;
    vitq_eval_result er;
    char transform[512];               /* the eval transform, one line */
    vitq_cell_result res;              /* what "write" stores */
    vitq_stored *qt;                   /* res.qtensors, owned */
    int n_qt;
    vitq_stage_time times[VITQ_MAX_STAGES];
    int n_times;
    double t0;
    int rc;                            /* the first failed stage's code (its message in err) */
    vitq_err err;
};

/* ---- the stages ------------------------------------------------------------------------------- */
static int stage_load(vitq_cell_ctx *c, const vitq_stage *s, vitq_err *e) {
    (void)s;
    int rc = vitq_run_model(c->run, c->cfg, &c->fp, e);
    if (!rc) rc = vitq_run_dataset(c->run, c->cfg, c->fp, c->cfg->eval_split, &c->eval_data, e);
    if (!rc && !c->cell->baseline) rc = vitq_run_dataset(c->run, c->cfg, c->fp, c->cfg->calib_split, &c->calib_data, e);
    c->em = c->fp;
    /* what the cell records: the model file's content key, the transform, the splits actually read */
    if (c->fp) c->res.checkpoint_sha256 = c->fp->sha256;
    if (c->eval_data) {
        c->res.transform = vitq_dataset_transform(c->eval_data, c->transform, sizeof c->transform);
        c->res.eval_split = vitq_dataset_split(c->eval_data);
    }
    if (c->calib_data) c->res.calib_split = vitq_dataset_split(c->calib_data);
    if (!rc && !c->cell->baseline) rc = vitq_model_clone(c->fp, &c->student, e);
    return rc;
}

/* The calibration split's seeded order ([data] calib_sampler): its first calib_size entries are the
 * calibration images, and a pass session's images are its first `images` (one permutation, as the
 * reference code's). k: how many entries must be drawn (the vitq sampler stops there). */
static int calib_order(const vitq_run_cfg *cfg, int64_t n, int k, int64_t **out, vitq_err *e) {
    /* [run] seed is at most 2^32 - 1 (grid_keys.c), the range of NumPy's legacy seeding */
    *out = !strcmp(cfg->calib_sampler, "numpy") ? vitq_calib_subset_numpy((uint32_t)cfg->seed, n)
                                                : vitq_calib_subset(cfg->seed, n, k);
    return *out ? VITQ_OK : vitq_fail(e, VITQ_ENOMEM, "out of memory for the calibration order of %lld images", (long long)n);
}

/* A pass: the session first (the calibration split in the cell's seeded order), then the plugin. */
static int stage_pass(vitq_cell_ctx *c, const vitq_stage *s, vitq_err *e) {
    const vitq_pass_binding *b = s->arg;
    int rc = VITQ_OK;
    if (!c->session) {
        const int64_t n = vitq_dataset_size(c->calib_data);
        if ((rc = calib_order(c->cfg, n, (int)n, &c->order, e))) return rc;
        vitq_run_partial_path(c->run, c->cell->id, c->partial, sizeof c->partial);
        vitq_session_cfg sc = {.teacher = c->fp, .student = c->student, .data = c->calib_data, .order = c->order,
                               .n_order = n, .seed = c->cfg->seed, .batch = 32, .state_path = c->partial,
                               .state_key = c->cell->hash, .out_dir = vitq_run_output(c->run),
                               .data_parallel = c->cfg->data_parallel};
        char dir[1100];
        snprintf(dir, sizeof dir, "%s/partial", vitq_run_output(c->run));
        if ((rc = vitq_mkdir_p(dir, e)) || (rc = vitq_session_create(&sc, &c->session, e))) return rc;
    }
    vitq_session_set_qmodel(c->session, c->q);
    vitq_run_log(c->run, "%s pass %s (%s)", c->label, b->name, b->params_text);
    const int resumed = vitq_session_resumable(c->session, b->name);
    if (resumed >= 0)
        vitq_run_log(c->run, "%s pass %s: resuming after its %d committed unit(s) from %s (the stages before it "
                     "were computed again)", c->label, b->name, resumed, c->partial);
    char label[96];
    snprintf(label, sizeof label, "%.60s %s", c->label, b->name);
    return vitq_session_run(c->session, b->plugin, b->params, label, e);
}

static int stage_quantizers(vitq_cell_ctx *c, const vitq_stage *s, vitq_err *e) {
    (void)s;
    vitq_run_log(c->run, "%s create quantizers", c->label);
    const vitq_grid_cell *g = c->cell->grid;
    int rc = vitq_qmodel_create(c->student, g->secs, g->n_secs, c->cfg->seed, &c->q, e);
    if (rc) return rc;
    const int k = c->cfg->calib_size;
    const vitq_arch *a = &c->fp->arch;
    if ((rc = calib_order(c->cfg, vitq_dataset_size(c->calib_data), k, &c->calib_idx, e))) return rc;
    c->calib_images = vitq_alloc((size_t)k * (size_t)a->in_chans * (size_t)a->img_size * (size_t)a->img_size *
                                 sizeof(float));
    if (!c->calib_images) return vitq_fail(e, VITQ_ENOMEM, "out of memory for %d calibration images", k);
    return VITQ_OK;
}

static int stage_calibrate(vitq_cell_ctx *c, const vitq_stage *s, vitq_err *e) {
    (void)s;
    const vitq_run_cfg *cfg = c->cfg;
    vitq_run_log(c->run, "%s calibrate (%d images of %s, %s)", c->label, cfg->calib_size,
                 vitq_dataset_split(c->calib_data), cfg->calib_mode);
    int rc = vitq_dataset_load(c->calib_data, c->calib_idx, cfg->calib_size, c->calib_images, NULL, e);
    if (!rc && vitq_interrupted) rc = vitq_fail(e, VITQ_ECANCELLED, "interrupted");
    if (!rc && !strcmp(cfg->calib_mode, "search"))
        rc = vitq_qmodel_calibrate_search(c->q, c->calib_images, cfg->calib_size, cfg->search_rounds, e);
    else if (!rc)
        rc = vitq_qmodel_calibrate(c->q, c->calib_images, cfg->calib_size, cfg->calib_mode, e);
    c->res.calib_indices = c->calib_idx; /* recorded even when calibration failed: which images it saw */
    c->res.n_calib = cfg->calib_size;
    return rc;
}

static int stage_histograms(vitq_cell_ctx *c, const vitq_stage *s, vitq_err *e) {
    (void)s;
    int rc = VITQ_OK;
    if (c->cfg->hist_taps[0]) rc = vitq_qmodel_hist_enable(c->q, c->cfg->hist_taps, c->cfg->hist_bins, e);
    if (!rc) c->em = vitq_qmodel_model(c->q);
    return rc;
}

static int stage_evaluate(vitq_cell_ctx *c, const vitq_stage *s, vitq_err *e) {
    (void)s;
    char elabel[64];
    snprintf(elabel, sizeof elabel, "%.40s eval", c->label);
    int rc = vitq_evaluate(c->em, c->eval_data, c->cfg->eval_limit, c->cfg->batch, NULL, &c->er, elabel, e);
    if (rc && rc != VITQ_ECANCELLED && c->q && vitq_qmodel_error(c->q)[0]) /* the plugin's own words */
        vitq_fail(e, rc, "%s", vitq_qmodel_error(c->q));
    return rc;
}

/* The activation quantizers' tensors of at most VITQ_QTENSOR_MAX values (learned scales, zero points, DFQ's
 * interval; not AdaRound's per-weight α), copied for the cell file. */
#define VITQ_QTENSOR_MAX 4096
static int collect_qtensors(vitq_cell_ctx *c) {
    const vitq_qbinding *b = NULL;
    int nb = 0;
    if (vitq_qmodel_bindings(c->q, &b, &nb)) return VITQ_ENOMEM;
    for (int i = 0; i < nb; i++) {
        vitq_qtensor t[8];
        vitq_err e;
        if (b[i].act_tap < 0 || !strcmp(b[i].plugin, "float")) continue;
        int nt = vitq_qmodel_tensors(c->q, b[i].tap, t, 8, &e);
        for (int k = 0; k < nt; k++) {
            if (t[k].n < 1 || t[k].n > VITQ_QTENSOR_MAX || !t[k].value) continue;
            vitq_stored *ns = realloc(c->qt, sizeof *ns * (size_t)(c->n_qt + 1));
            if (!ns) return VITQ_ENOMEM;
            c->qt = ns;
            vitq_stored *d = &c->qt[c->n_qt];
            snprintf(d->name, sizeof d->name, "%s/%s", b[i].tap, t[k].name);
            if (!(d->data = malloc(sizeof(float) * (size_t)t[k].n))) return VITQ_ENOMEM;
            memcpy(d->data, t[k].value, sizeof(float) * (size_t)t[k].n);
            d->n = t[k].n;
            c->n_qt++;
        }
    }
    c->res.qtensors = c->qt;
    c->res.n_qtensors = c->n_qt;
    return VITQ_OK;
}

static int stage_collect(vitq_cell_ctx *c, const vitq_stage *s, vitq_err *e) {
    (void)s;
    vitq_cell_result *res = &c->res;
    vitq_qmodel_stats_weights(c->q); /* the weights as evaluated: reconstruction changed them after calibration */
    int rc = vitq_qmodel_stats(c->q, &res->taps, &res->n_taps);
    if (!rc) rc = collect_qtensors(c);
    if (!rc && c->cfg->hist_taps[0]) rc = vitq_qmodel_hists(c->q, &res->hists, &res->n_hists);
    if (!rc) rc = vitq_qmodel_plugins(c->q, &res->plugins, &res->n_plugins);
    if (!rc && c->session) {
        vitq_session_curves(c->session, &res->curves, &res->n_curves);
        vitq_session_stored(c->session, &res->stored, &res->n_stored);
    }
    return rc ? vitq_fail(e, rc, "cannot collect statistics") : VITQ_OK;
}

/* Writes the cell file, done or failed. A failure here is the run's, not the cell's. */
static int stage_write(vitq_cell_ctx *c, const vitq_stage *s, vitq_err *e) {
    (void)s;
    vitq_cell_result *res = &c->res;
    res->id = c->cell->id;
    res->axis_values = c->cell->axis_values;
    res->config_hash = c->cell->hash;
    res->config_ini = c->cell->config_text;
    res->seed = c->cfg->seed;
    res->times = c->times;
    res->n_times = c->n_times;
    res->seconds_total = vitq_now() - c->t0;
    res->shared_stage = c->shared;
    if (c->rc == 0) {
        if (c->partial[0]) remove(c->partial); /* resumable no more: the cell is whole */
        res->status = "done";
        res->top1 = c->er.top1, res->top5 = c->er.top5, res->loss = c->er.loss, res->n_eval = c->er.n;
    } else {
        res->status = "failed";
        res->error = c->err.msg;
        res->top1 = res->top5 = res->loss = NAN;
        res->taps = NULL, res->n_taps = 0;
        res->hists = NULL, res->n_hists = 0;
        res->plugins = NULL, res->n_plugins = 0;
    }
    return vitq_results_write_cell(c->run->res, res, e);
}

/* ---- stage sharing (stages.c keys them) ---------------------------------------------------------- */
/* 1 if stage s leaves its state in the float student only (a before-calibration pass). */
static int student_stage(const vitq_stage *s) {
    return (s->flags & VITQ_STAGE_PASS) && ((const vitq_pass_binding *)s->arg)->when == VITQ_PASS_BEFORE_CALIB;
}

/* Instead of running stage s: its state, stored by another cell of the run under key. */
static int stage_load_shared(vitq_cell_ctx *c, const vitq_stage *s, uint64_t key, vitq_err *e) {
    char *path = vitq_stage_path(c->run, key, student_stage(s));
    if (!path) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    vitq_run_log(c->run, "%s %s: loaded from %s (computed by another cell)", c->label, s->name, path);
    int rc;
    if (student_stage(s)) {
        vitq_model *m = NULL;
        rc = vitq_model_load(path, NULL, &m, e);
        if (!rc && m->n_params != c->student->n_params)
            rc = vitq_fail(e, VITQ_EFORMAT, "%s: not this cell's model (%lld parameters)", path, (long long)m->n_params);
        if (!rc) {
            memcpy(c->student->slab, m->slab, sizeof(float) * (size_t)m->n_params);
            memcpy(c->student->mlp_act, m->mlp_act, sizeof *m->mlp_act * (size_t)m->n_blocks);
        }
        vitq_model_free(m);
    } else {
        rc = vitq_qmodel_state_load(c->q, c->student, path, e);
        c->res.calib_indices = c->calib_idx; /* the images that made it: the same subset (same seed) */
        c->res.n_calib = c->cfg->calib_size;
    }
    free(path);
    if (!rc) c->shared = s->name;
    return rc;
}

/* After stage s: its state for the other cells that reach key (written atomically; a failure only warns). */
static void stage_save_shared(vitq_cell_ctx *c, const vitq_stage *s, uint64_t key) {
    char *path = vitq_stage_path(c->run, key, student_stage(s)), dir[1100];
    snprintf(dir, sizeof dir, "%s/stages", vitq_run_output(c->run));
    vitq_err e;
    int rc = path ? vitq_mkdir_p(dir, &e) : vitq_fail(&e, VITQ_ENOMEM, "out of memory");
    if (!rc && student_stage(s)) rc = vitq_model_save(c->student, path, NULL, NULL, 0, &e);
    else if (!rc) rc = vitq_qmodel_state_save(c->q, path, NULL, 0, &e);
    if (rc) vitq_run_log(c->run, "%s: warning: cannot store %s for the other cells: %s", c->label, s->name, e.msg);
    free(path);
}

/* The deepest stage whose state another cell stored (-1: none). */
static int shared_from(vitq_cell_ctx *c, const vitq_stage *st, int n, const uint64_t *keys) {
    for (int i = n - 1; i >= 0; i--)
        if (keys[i] && vitq_stage_shared(c->run, keys[i]) >= 2 && vitq_stage_exists(c->run, keys[i], student_stage(&st[i])))
            return i;
    return -1;
}

/* ---- the list --------------------------------------------------------------------------------- */
int vitq_pipeline_build(const vitq_run_cell *c, const vitq_pass_binding *b, int nb, vitq_stage *out, int max) {
    static const vitq_stage baseline[] = {
        {"load", stage_load, NULL, 0, NULL},
        {"evaluate", stage_evaluate, "eval", 0, NULL},
        {"write", stage_write, NULL, VITQ_STAGE_ALWAYS, NULL},
    };
    static const vitq_stage ptq[] = {
        {"load", stage_load, NULL, 0, NULL},
        {"quantizers", stage_quantizers, NULL, 0, NULL},
        {"calibrate", stage_calibrate, "calibrate", 0, NULL},
        {"histograms", stage_histograms, NULL, 0, NULL},
        {"evaluate", stage_evaluate, "eval", 0, NULL},
        {"collect", stage_collect, NULL, 0, NULL},
        {"write", stage_write, NULL, VITQ_STAGE_ALWAYS, NULL},
    };
    int n = 0;
    if (c->baseline) {
        for (size_t i = 0; i < sizeof baseline / sizeof baseline[0] && n < max; i++) out[n++] = baseline[i];
        return n;
    }
    for (size_t i = 0; i < sizeof ptq / sizeof ptq[0]; i++) {
        /* before-calibration passes go before "quantizers", after-calibration ones after "calibrate" */
        int before = !strcmp(ptq[i].name, "quantizers"), after = !strcmp(ptq[i].name, "histograms");
        for (int k = 0; (before || after) && k < nb; k++)
            if (b[k].enabled && (b[k].when == VITQ_PASS_BEFORE_CALIB) == before && n < max)
                out[n++] = (vitq_stage){b[k].name, stage_pass, b[k].name, VITQ_STAGE_PASS, &b[k]};
        if (n < max) out[n++] = ptq[i];
    }
    return n;
}

/* ---- running one cell --------------------------------------------------------------------------- */
/* Adds dt to the timer `name` (a new timer goes last). */
static void add_time(vitq_cell_ctx *c, const char *name, double dt) {
    for (int i = 0; i < c->n_times; i++)
        if (!strcmp(c->times[i].name, name)) {
            c->times[i].seconds += dt;
            return;
        }
    if (c->n_times < VITQ_MAX_STAGES) c->times[c->n_times++] = (vitq_stage_time){name, dt};
}

int vitq_cell_run(vitq_run *r, const vitq_run_cell *cell, const char *label, vitq_cell_outcome *out, vitq_err *e) {
    vitq_stage st[VITQ_MAX_STAGES];
    vitq_pass_binding *pb = NULL;
    int npb = 0, rc = cell->baseline ? VITQ_OK : vitq_passes_bind(cell->grid->secs, cell->grid->n_secs, &pb, &npb, e);
    if (rc) return rc; /* validated before any cell ran: this is the run's error */
    int n = vitq_pipeline_build(cell, pb, npb, st, VITQ_MAX_STAGES);
    vitq_cell_ctx c = {.run = r, .cell = cell, .cfg = cell->cfg, .label = label, .t0 = vitq_now()};
    add_time(&c, "calibrate", 0); /* every cell file has these two, baselines included */
    add_time(&c, "eval", 0);
    uint64_t keys[VITQ_MAX_STAGES] = {0};
    if (!cell->baseline) vitq_stage_keys(cell, st, n, keys);
    int from = cell->baseline ? -1 : shared_from(&c, st, n, keys);
    for (int i = 0; i < n && rc == VITQ_OK; i++) {
        if (c.rc == VITQ_ECANCELLED || vitq_interrupted) {
            rc = VITQ_ECANCELLED; /* nothing is written for this cell */
            break;
        }
        if (c.rc && !(st[i].flags & VITQ_STAGE_ALWAYS)) continue;
        if (i < from && keys[i]) continue; /* made by another cell: loaded below, at `from` */
        double t = vitq_now();
        vitq_err se;
        int src = i == from ? stage_load_shared(&c, &st[i], keys[i], &se) : st[i].run(&c, &st[i], &se);
        if (!src && i > from && keys[i] && vitq_stage_shared(r, keys[i]) >= 2 &&
            !vitq_stage_exists(r, keys[i], student_stage(&st[i])))
            stage_save_shared(&c, &st[i], keys[i]);
        if (st[i].timer) add_time(&c, st[i].timer, vitq_now() - t);
        if (src && (st[i].flags & VITQ_STAGE_ALWAYS)) rc = vitq_fail(e, src, "%s", se.msg); /* the run's error */
        else if (src && !c.rc) c.rc = src, c.err = se;
    }
    memset(out, 0, sizeof *out);
    out->status = c.rc ? VITQ_CELL_FAILED : VITQ_CELL_DONE;
    out->eval = c.er;
    memcpy(out->times, c.times, sizeof c.times);
    out->n_times = c.n_times;
    out->seconds = vitq_now() - c.t0;
    if (c.rc) snprintf(out->error, sizeof out->error, "%s", c.err.msg);
    vitq_session_free(c.session);
    for (int i = 0; i < c.n_qt; i++) free(c.qt[i].data);
    free(c.qt);
    vitq_qmodel_free(c.q);
    vitq_model_free(c.student);
    vitq_passes_free(pb, npb);
    free(c.order);
    free(c.calib_idx);
    vitq_free(c.calib_images);
    return rc;
}
