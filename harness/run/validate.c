/* validate.c — everything a run needs, checked before any cell runs, with every error at once: each
 * model file loads, each dataset opens, the calibration split holds calib_size images and the evaluation
 * split eval_limit, each selected cell's quantizer sections bind to the model (plugins found, ABI,
 * parameters), its [pass NAME] sections bind to pass plugins (vitq_passes_bind: every bad section and
 * parameter) and its [hist] taps match quantized activation taps. Every message names the INI file:line at
 * fault; identical messages of several cells are kept once. */
#include "run/run.h"

#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

static void add(vitq_run *r, const char *s) { vitq_run_add_line(&r->errors, &r->n_errors, s); }

/* An error of cell c, "FILE:LINE: ...": when that line's value is a template, the message also names where
 * its ${...} got their text in c (vitq_grid_origin: the [grid] or bundle line the user typed it on). */
static void add_in(vitq_run *r, const vitq_grid_cell *c, const char *s) {
    const vitq_experiment *x = r->x;
    size_t lp = strlen(x->path);
    int line = 0;
    if (!strncmp(s, x->path, lp) && sscanf(s + lp, ":%d:", &line) == 1)
        for (int i = 0; i < x->n_secs; i++)
            for (int k = 0; k < x->secs[i].n_kv; k++) {
                const vitq_kv *kv = &x->secs[i].kv[k];
                char from[600], buf[2000];
                if (kv->line != line || !strstr(kv->value, "${")) continue;
                if (!*vitq_grid_origin(x, c, kv->value, from, sizeof from)) continue;
                snprintf(buf, sizeof buf, "%s%s", s, from);
                add(r, buf);
                return;
            }
    add(r, s);
}

/* "FILE:LINE: [section] key: MSG" for the key's line in cell c, or "FILE: [section] key (default): MSG". */
static void add_at(vitq_run *r, const vitq_grid_cell *c, const char *section, const char *key, const char *msg) {
    const vitq_kv *kv = vitq_section_get(vitq_section_find(c->secs, c->n_secs, section), key);
    char buf[1400], m[1300];
    if (kv)
        snprintf(buf, sizeof buf, "%s:%d: %s", kv->file, kv->line, vitq_key_msg(m, sizeof m, section, key, msg));
    else
        snprintf(buf, sizeof buf, "%s: [%s] %s (default): %s", r->x->path, section, key, msg);
    add_in(r, c, buf);
}

/* Each line of a multi-line message (vitq_passes_bind's) as its own error. */
static void add_lines(vitq_run *r, const vitq_grid_cell *c, const char *msg) {
    char line[1024];
    for (const char *p = msg; *p;) {
        const char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        snprintf(line, sizeof line, "%.*s", (int)l, p);
        add_in(r, c, line);
        p += l + (nl ? 1 : 0);
    }
}

/* Every [hist] glob must match a quantized activation tap (histograms are enabled after calibration, so
 * this is checked against the bindings). */
static void check_hist_taps(vitq_run *r, const vitq_grid_cell *c, const vitq_qmodel *q) {
    const vitq_kv *kv = vitq_section_get(vitq_section_find(c->secs, c->n_secs, "hist"), "taps");
    const vitq_qbinding *b = NULL;
    char **globs = NULL;
    int nb = 0, ng = 0;
    if (!kv || vitq_qmodel_bindings(q, &b, &nb) != 0) return;
    if (vitq_list_split(kv->value, ',', VITQ_LIST_DROP_EMPTY, &globs, &ng)) return;
    for (int g = 0; g < ng; g++) {
        int hit = 0;
        for (int i = 0; i < nb && !hit; i++)
            hit = b[i].act_tap >= 0 && strcmp(b[i].plugin, "float") != 0 && vitq_glob_any(&globs[g], 1, b[i].tap);
        if (hit) continue;
        char buf[600];
        snprintf(buf, sizeof buf, "%s:%d: [hist] taps: '%s' matches no quantized activation tap", kv->file, kv->line,
                 globs[g]);
        add(r, buf);
    }
    vitq_strs_free(globs, ng);
}

/* The data a cell reads: its data config ([data] overrides of the model's), the evaluation split always, the
 * calibration split (and its size) for a grid cell — which must not be the evaluation images unless
 * calib_split names the evaluation split on purpose (a root without train/ has no train split). */
static void check_data(vitq_run *r, const vitq_run_cell *c, vitq_model *m) {
    const vitq_run_cfg *cfg = c->cfg;
    vitq_dataset *de = NULL, *dc = NULL;
    vitq_err e;
    vitq_data_opts o;
    const char *bad = NULL;
    if (vitq_run_data_opts(cfg, m, &o, &bad, &e)) {
        add_at(r, c->src, "data", bad, e.msg + (strncmp(e.msg, "[data] ", 7) ? 0 : 7 + strlen(bad) + 2));
        return;
    }
    if (r->o.absent_ok && strchr(cfg->dataset, '/') && access(cfg->dataset, F_OK) != 0 && errno == ENOENT) {
        vitq_run_note(r, "%s: absent; the dataset was not opened (a run needs it)", cfg->dataset);
        return;
    }
    char buf[1400];
    if (vitq_run_dataset(r, cfg, m, cfg->eval_split, &de, &e)) {
        add_at(r, c->src, "data", "dataset", e.msg);
    } else if (cfg->eval_limit > vitq_dataset_size(de)) { /* refused as calib_size is: not silently fewer */
        snprintf(buf, sizeof buf, "%lld exceeds the %lld images of %s (%s split; 0 evaluates them all)",
                 (long long)cfg->eval_limit, (long long)vitq_dataset_size(de), cfg->dataset, vitq_dataset_split(de));
        add_at(r, c->src, "data", "eval_limit", buf);
    }
    if (c->baseline) return;
    if (vitq_run_dataset(r, cfg, m, cfg->calib_split, &dc, &e)) {
        add_at(r, c->src, "data", strstr(e.msg, "no train split") ? "calib_split" : "dataset", e.msg);
    } else if (vitq_dataset_size(dc) < cfg->calib_size) {
        snprintf(buf, sizeof buf, "%d exceeds the %lld images of %s (%s split)", cfg->calib_size,
                 (long long)vitq_dataset_size(dc), cfg->dataset, cfg->calib_split);
        add_at(r, c->src, "data", "calib_size", buf);
    }
}

/* What vitq_qmodel_create reads of a cell: its model and its [quantizer *] and [hist] sections. Cells that
 * agree on it bind the same way, so validation creates one quantized model per distinct key (a 30-cell
 * ImageNet grid has 10), not one per cell: creating one copies every weight. */
static uint64_t qmodel_key(const vitq_model *m, const vitq_grid_cell *g) {
    uint64_t h = vitq_fnv1a64(&m, sizeof m, VITQ_FNV1A64_INIT);
    for (int i = 0; i < g->n_secs; i++) {
        const vitq_section *sec = &g->secs[i];
        if (strncmp(sec->name, "quantizer", 9) && strcmp(sec->name, "hist")) continue;
        h = vitq_fnv1a64(sec->name, strlen(sec->name) + 1, h);
        for (int k = 0; k < sec->n_kv; k++) {
            h = vitq_fnv1a64(sec->kv[k].key, strlen(sec->kv[k].key) + 1, h);
            h = vitq_fnv1a64(sec->kv[k].value, strlen(sec->kv[k].value) + 1, h);
        }
    }
    return h;
}

/* 1 if key was seen; else records it (keys[*n], capacity cap) and returns 0. */
static int seen_before(uint64_t *keys, int *n, int cap, uint64_t key) {
    for (int i = 0; i < *n; i++)
        if (keys[i] == key) return 1;
    if (*n < cap) keys[(*n)++] = key;
    return 0;
}

/* The results folder (or a parent) must not exist as anything but a folder: vitq_run_start would refuse it,
 * so it is reported here with everything else (--dry-run included), naming [run] output's line or --output. */
static void check_output(vitq_run *r) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", vitq_run_output(r));
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p) continue;
        char c = *p;
        *p = 0;
        if (access(buf, F_OK) == 0 && !vitq_is_dir(buf)) break;
        if (!(*p = c)) return;
    }
    char msg[4200];
    snprintf(msg, sizeof msg, "%s: exists and is not a folder", buf);
    if (r->o.output) {
        char line[4300];
        snprintf(line, sizeof line, "--output %s", msg);
        add(r, line);
    } else {
        add_at(r, &r->x->cells[0], "run", "output", msg);
    }
}

int vitq_run_validate(vitq_run *r, vitq_err *e) {
    vitq_strs_free(r->errors, r->n_errors);
    r->errors = NULL;
    r->n_errors = 0;
    check_output(r);
    uint64_t *qkeys = malloc(sizeof(uint64_t) * (size_t)(r->n_cells + 1));
    int nq = 0;
    if (!qkeys) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    for (int j = 0; j < r->n_cells && !vitq_interrupted; j++) {
        const vitq_run_cell *c = &r->cells[j];
        if (!c->selected) continue;
        vitq_model *m = NULL;
        vitq_err me;
        if (vitq_run_model(r, c->cfg, &m, &me) || vitq_run_cell_key(r, &r->cells[j], &me)) {
            add_at(r, c->src, "model", "path", me.msg);
            continue;
        }
        check_data(r, c, m);
        if (c->baseline) continue; /* no quantizers, no passes */
        vitq_pass_binding *passes = NULL;
        int np = 0;
        if (vitq_passes_bind(c->grid->secs, c->grid->n_secs, &passes, &np, &me)) add_lines(r, c->grid, me.msg);
        vitq_passes_free(passes, np);
        if (seen_before(qkeys, &nq, r->n_cells, qmodel_key(m, c->grid))) continue;
        vitq_qmodel *q = NULL;
        if (vitq_qmodel_create(m, c->grid->secs, c->grid->n_secs, c->cfg->seed, &q, &me)) {
            add_lines(r, c->grid, me.msg); /* each names the INI file:line */
            continue;
        }
        if (c->cfg->hist_taps[0]) check_hist_taps(r, c->grid, q);
        vitq_qmodel_free(q);
    }
    free(qkeys);
    if (vitq_interrupted) return vitq_fail(e, VITQ_ECANCELLED, "interrupted");
    if (r->n_errors)
        return vitq_fail(e, VITQ_EINVAL, "%s%s", r->errors[0], r->n_errors > 1 ? " (and more: vitq_run_errors)" : "");
    return VITQ_OK;
}

int vitq_run_errors(const vitq_run *r, const char *const **lines, int *n) {
    *lines = (const char *const *)r->errors;
    *n = r->n_errors;
    return VITQ_OK;
}
