/* cells.c — a run's cells and caches. The cells are the distinct float baselines (one per distinct
 * model + evaluation data when [run] baseline is on: "fp32"; several are named by the grid values that
 * pick them, "fp32,m=final") and then the grid cells, in that stable order; each model file and each
 * (dataset, split, preprocessing) is opened once per run.
 * Does not: validate (validate.c) or compute anything (pipeline.c). */
#include "run/run.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void vitq_run_add_line(char ***lines, int *n, const char *s) {
    for (int i = 0; i < *n; i++)
        if (!strcmp((*lines)[i], s)) return;
    char **nv = realloc(*lines, (size_t)(*n + 1) * sizeof *nv);
    if (!nv) return;
    *lines = nv;
    if ((nv[*n] = strdup(s))) (*n)++;
}

void vitq_run_note(vitq_run *r, const char *fmt, ...) {
    char buf[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    vitq_run_add_line(&r->notes, &r->n_notes, buf);
}

int vitq_run_notes(const vitq_run *r, const char *const **lines, int *n) {
    *lines = (const char *const *)r->notes;
    *n = r->n_notes;
    return VITQ_OK;
}

/* absent_ok: a checkpoint that does not exist, with a built-in [model] arch, becomes a zero-weight model of
 * that architecture (the taps and shapes are the architecture's; nothing is evaluated). Else load_rc. */
static int absent_model(vitq_run *r, const vitq_run_cfg *cfg, vitq_model **m, int load_rc, vitq_err *e) {
    vitq_arch a;
    vitq_err ae;
    if (!r->o.absent_ok || access(cfg->model_path, F_OK) == 0 || errno != ENOENT) return load_rc;
    if (!cfg->arch[0] || vitq_arch_builtin(cfg->arch, &a, &ae)) return load_rc; /* e names the file */
    int rc = vitq_model_create(&a, m, e);
    if (!rc)
        vitq_run_note(r, "%s: absent; validated against the built-in architecture %s (a run needs the file)",
                      cfg->model_path, cfg->arch);
    return rc;
}

int vitq_run_model(vitq_run *r, const vitq_run_cfg *cfg, vitq_model **out, vitq_err *e) {
    for (int i = 0; i < r->n_models; i++)
        if (!strcmp(r->models[i].path, cfg->model_path) && !strcmp(r->models[i].arch, cfg->arch)) {
            *out = r->models[i].m;
            return VITQ_OK;
        }
    vitq_model *m = NULL;
    int rc = vitq_model_load(cfg->model_path, cfg->arch[0] ? cfg->arch : NULL, &m, e);
    if (rc && (rc = absent_model(r, cfg, &m, rc, e))) return rc;
    vitq_model_slot *ns = realloc(r->models, (size_t)(r->n_models + 1) * sizeof *ns);
    if (!ns) {
        vitq_model_free(m);
        return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    }
    r->models = ns;
    vitq_model_slot *s = &r->models[r->n_models++];
    snprintf(s->path, sizeof s->path, "%s", cfg->model_path);
    snprintf(s->arch, sizeof s->arch, "%s", cfg->arch);
    s->m = m;
    *out = m;
    return VITQ_OK;
}

int vitq_run_data_opts(const vitq_run_cfg *cfg, const vitq_model *m, vitq_data_opts *o, const char **bad_key,
                       vitq_err *e) {
    static const char *const keys[] = {"img_size", "crop_pct", "interpolation", "mean", "std"};
    vitq_data_overrides ov = {.img_size = cfg->img_size, .crop_pct = cfg->crop_pct,
                              .interpolation = cfg->interpolation && cfg->interpolation[0] ? cfg->interpolation : NULL};
    *bad_key = "dataset";
    if (cfg->mean && cfg->mean[0] && (ov.n_mean = vitq_floats_parse(cfg->mean, ov.mean)) < 0)
        return *bad_key = "mean", vitq_fail(e, VITQ_EINVAL, "[data] mean: expected 1 or %d numbers, got '%s'",
                                            m->arch.in_chans, cfg->mean);
    if (cfg->std && cfg->std[0] && (ov.n_std = vitq_floats_parse(cfg->std, ov.std)) < 0)
        return *bad_key = "std", vitq_fail(e, VITQ_EINVAL, "[data] std: expected 1 or %d numbers, got '%s'",
                                           m->arch.in_chans, cfg->std);
    int rc = vitq_data_config(&m->arch, &ov, cfg->convert_channels, o, "[data] ", e);
    for (size_t k = 0; rc && e && k < sizeof keys / sizeof keys[0]; k++)
        if (!strncmp(e->msg + 7, keys[k], strlen(keys[k]))) *bad_key = keys[k]; /* after "[data] " */
    return rc;
}

int vitq_run_dataset(vitq_run *r, const vitq_run_cfg *cfg, const vitq_model *m, const char *split, vitq_dataset **out,
                     vitq_err *e) {
    vitq_data_opts o;
    const char *bad;
    int rc0 = vitq_run_data_opts(cfg, m, &o, &bad, e);
    if (rc0) return rc0;
    for (int i = 0; i < r->n_data; i++)
        if (!strcmp(r->data[i].spec, cfg->dataset) && !strcmp(r->data[i].split, split) &&
            !memcmp(&r->data[i].o, &o, sizeof o)) {
            *out = r->data[i].d;
            return VITQ_OK;
        }
    vitq_dataset *d = NULL;
    int rc = vitq_dataset_open(cfg->dataset, split, &o, &d, e);
    if (rc) return rc;
    vitq_data_slot *ns = realloc(r->data, (size_t)(r->n_data + 1) * sizeof *ns);
    if (!ns) {
        vitq_dataset_free(d);
        return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    }
    r->data = ns;
    vitq_data_slot *s = &r->data[r->n_data++];
    snprintf(s->spec, sizeof s->spec, "%s", cfg->dataset);
    snprintf(s->split, sizeof s->split, "%s", split);
    s->o = o;
    s->d = d;
    *out = d;
    return VITQ_OK;
}

/* The configuration of the float baseline of cfg: what its result depends on (with the model file's content:
 * vitq_run_cell_key). */
static char *baseline_text(const vitq_run_cfg *c) {
    char *t = NULL;
    if (asprintf(&t,
                 "[baseline]\nmodel = %s\narch = %s\ndataset = %s\neval_split = %s\neval_limit = %lld\n"
                 "batch = %d\nconvert_channels = %s\nimg_size = %d\ncrop_pct = %.17g\ninterpolation = %s\n"
                 "mean = %s\nstd = %s\n",
                 c->model_path, c->arch, c->dataset, c->eval_split, (long long)c->eval_limit, c->batch,
                 c->convert_channels ? "true" : "false", c->img_size, c->crop_pct, c->interpolation, c->mean,
                 c->std) < 0)
        return NULL;
    return t;
}

int vitq_run_cell_key(vitq_run *r, vitq_run_cell *c, vitq_err *e) {
    vitq_model *m = NULL;
    int rc = vitq_run_model(r, c->cfg, &m, e);
    if (rc) return rc;
    snprintf(c->sha256, sizeof c->sha256, "%s", m->sha256);
    static const char line[] = "[checkpoint]\nsha256 = ";
    uint64_t h = vitq_fnv1a64(c->config_text, strlen(c->config_text), VITQ_FNV1A64_INIT);
    h = vitq_fnv1a64(line, sizeof line - 1, h);
    h = vitq_fnv1a64(c->sha256, strlen(c->sha256), h);
    h = vitq_fnv1a64("\n", 1, h);
    snprintf(c->hash, sizeof c->hash, "%016llx", (unsigned long long)h);
    return VITQ_OK;
}

/* Adds the baseline of grid cell g unless an identical one is listed; *which = its cell index. */
static int add_baseline(vitq_run *r, const vitq_grid_cell *g, int *which) {
    char *t = baseline_text(&g->cfg);
    if (!t) return VITQ_ENOMEM;
    int nb = 0;
    for (int j = 0; j < r->n_cells; j++)
        if (r->cells[j].baseline) {
            nb++;
            if (!strcmp(r->cells[j].config_text, t)) {
                free(t);
                *which = j;
                return VITQ_OK;
            }
        }
    *which = r->n_cells;
    int k = r->n_cells++;
    vitq_run_cell *c = &r->cells[k];
    if (nb == 0) snprintf(c->id, sizeof c->id, "fp32");
    else snprintf(c->id, sizeof c->id, "fp32-%d", nb + 1);
    c->baseline = 1;
    c->src = g;
    c->cfg = &g->cfg;
    c->config_text = r->baseline_text[k] = t;
    snprintf(c->hash, sizeof c->hash, "%016llx", (unsigned long long)vitq_fnv1a64(t, strlen(t), VITQ_FNV1A64_INIT));
    c->axis_values = r->dash;
    return VITQ_OK;
}

/* "fp32,m=final": baseline b named by the values of the axes that take several values in the grid and one
 * in every grid cell evaluated against b (the value that picks its model or data); 0 when there is none. */
static int baseline_name(const vitq_run *r, const int *base_of, int b, char *out, size_t cap) {
    const vitq_experiment *x = r->x;
    const char *names[64], *values[64];
    int n = 0;
    for (int a = 0; a < x->n_axes && n < 64; a++) {
        const char *v = NULL;
        int one = 1, several = 0;
        for (int i = 0; i < x->n_cells; i++) {
            several |= strcmp(x->cells[i].values[a], x->cells[0].values[a]) != 0;
            if (base_of[i] != b) continue;
            if (v && strcmp(v, x->cells[i].values[a])) one = 0;
            v = x->cells[i].values[a];
        }
        if (v && one && several) names[n] = x->axis_names[a], values[n++] = v;
    }
    if (n == 0) return 0;
    char id[sizeof r->cells[0].id - 5];
    vitq_grid_cell_id(names, values, n, id, sizeof id);
    snprintf(out, cap, "fp32,%s", id);
    return 1;
}

/* Several baselines (a grid over models or evaluation data) are named by what tells them apart
 * (baseline_name), so that the table, the CSV, the plots and --dry-run can; one stays "fp32". When a
 * baseline has no such name, or two get the same, all keep "fp32", "fp32-2", ... */
static void name_baselines(vitq_run *r, const int *base_of) {
    int nb = 0;
    while (nb < r->n_cells && r->cells[nb].baseline) nb++;
    if (nb < 2) return;
    char (*ids)[sizeof r->cells[0].id] = calloc((size_t)nb, sizeof *ids);
    int ok = ids != NULL;
    for (int b = 0; ok && b < nb; b++) {
        ok = baseline_name(r, base_of, b, ids[b], sizeof ids[b]);
        for (int j = 0; ok && j < b; j++) ok = strcmp(ids[j], ids[b]) != 0;
    }
    for (int b = 0; ok && b < nb; b++) memcpy(r->cells[b].id, ids[b], sizeof ids[b]);
    free(ids);
}

/* Baselines first, then the grid cells; the index order; the selection. */
static int list_cells(vitq_run *r) {
    const vitq_experiment *x = r->x;
    int *base_of = calloc((size_t)x->n_cells, sizeof *base_of);
    if (!base_of) return VITQ_ENOMEM;
    for (int i = 0; i < x->n_cells; i++) {
        base_of[i] = -1;
        if (x->cells[i].cfg.baseline && add_baseline(r, &x->cells[i], &base_of[i])) {
            free(base_of);
            return VITQ_ENOMEM;
        }
    }
    name_baselines(r, base_of);
    free(base_of);
    for (int i = 0; i < x->n_cells; i++) {
        vitq_run_cell *c = &r->cells[r->n_cells++];
        snprintf(c->id, sizeof c->id, "%s", x->cells[i].id);
        c->grid = c->src = &x->cells[i];
        c->cfg = &x->cells[i].cfg;
        c->config_text = x->cells[i].config_text;
        memcpy(c->hash, x->cells[i].hash, sizeof c->hash);
        c->axis_values = x->cells[i].values;
    }
    for (int j = 0; j < r->n_cells; j++) {
        r->order[j] = r->cells[j].id;
        r->cells[j].selected = (!r->o.only || fnmatch(r->o.only, r->cells[j].id, 0) == 0) &&
                               vitq_shard_owns(j, r->o.shard, r->o.shards);
        r->n_selected += r->cells[j].selected;
    }
    return VITQ_OK;
}

void vitq_run_close(vitq_run *r) {
    if (!r) return;
    for (int i = 0; i < r->n_models; i++) vitq_model_free(r->models[i].m);
    for (int i = 0; i < r->n_data; i++) vitq_dataset_free(r->data[i].d);
    for (int i = 0; r->baseline_text && i < r->n_cells; i++) free(r->baseline_text[i]);
    vitq_strs_free(r->errors, r->n_errors);
    vitq_strs_free(r->notes, r->n_notes);
    vitq_results_close(r->res);
    free(r->models);
    free(r->data);
    free(r->baseline_text);
    free(r->cells);
    free(r->stage_keys);
    free(r->order);
    free(r->dash);
    free(r);
}

int vitq_run_open(const vitq_experiment *x, const vitq_run_opts *o, vitq_run **out, vitq_err *e) {
    *out = NULL;
    if (x->n_cells < 1) return vitq_fail(e, VITQ_EINVAL, "%s: the experiment has no cell", x->path);
    const vitq_run_cfg *cfg0 = &x->cells[0].cfg;
    if (o && o->shards > 1 && (o->shard < 0 || o->shard >= o->shards))
        return vitq_fail(e, VITQ_EINVAL, "%s: shard %d/%d: K must be in [0, %d)", x->path, o->shard, o->shards, o->shards);
    for (int i = 1; i < x->n_cells && !(o && o->output); i++)
        if (strcmp(x->cells[i].cfg.output, cfg0->output) != 0)
            return vitq_fail(e, VITQ_EINVAL, "%s: [run] output differs between cells ('%s' for %s, '%s' for %s); "
                             "one run, one folder", x->path, cfg0->output, x->cells[0].id, x->cells[i].cfg.output,
                             x->cells[i].id);
    vitq_run *r = calloc(1, sizeof *r);
    if (!r) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    r->x = x;
    if (o) r->o = *o;
    int cap = 2 * x->n_cells;
    r->cells = calloc((size_t)cap, sizeof *r->cells);
    r->order = calloc((size_t)cap, sizeof *r->order);
    r->baseline_text = calloc((size_t)cap, sizeof *r->baseline_text);
    r->dash = calloc((size_t)x->n_axes + 1, sizeof *r->dash);
    if (!r->cells || !r->order || !r->baseline_text || !r->dash || list_cells(r)) {
        vitq_run_close(r);
        return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    }
    for (int a = 0; a < x->n_axes; a++) r->dash[a] = "-";
    vitq_threads_set(r->o.threads > 0 ? r->o.threads : r->o.threads < 0 ? 0 : cfg0->threads);
    *out = r;
    return VITQ_OK;
}

int vitq_run_count(const vitq_run *r) { return r->n_cells; }
int vitq_run_selected(const vitq_run *r) { return r->n_selected; }
const char *vitq_run_output(const vitq_run *r) { return r->o.output ? r->o.output : r->x->cells[0].cfg.output; }
void vitq_run_partial_path(const vitq_run *r, const char *cell_id, char *buf, size_t n) {
    snprintf(buf, n, "%s/partial/%s.h5", vitq_run_output(r), cell_id);
}
const vitq_results *vitq_run_results(const vitq_run *r) { return r->res; }

const vitq_run_cell *vitq_run_cell_at(const vitq_run *r, int i) {
    return i >= 0 && i < r->n_cells ? &r->cells[i] : NULL;
}
