/* qmodel.c — the fake-quant model: binds quantizer plugins to taps from "quantizer ..." INI sections and
 * creates one plugin instance per bound tap, on a clone of the float model whose weights the calibration
 * will overwrite with their fake-quantized copies (qcalib.c) and whose forward calls the hook.
 * Candidate taps come from the model layer: the parameter table's weight taps (in table order), then the
 * activation taps of the architecture's tap table (in forward order); results list them in that order.
 * Does not: run passes, choose calibration images, or write results. */
#include "quant/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void vitq_qmodel_free(vitq_qmodel *q) {
    if (!q) return;
    for (int i = 0; i < q->n_taps; i++) {
        vitq_qtap *t = &q->taps[i];
        if (t->plugin && t->inst) t->plugin->quantizer->destroy(t->inst);
        vitq_free(t->w_post);
        vitq_free(t->w_src_grad);
        vitq_free(t->pre);
        free(t->mask);
    }
    vitq_free(q->bscratch);
    for (int i = 0; i < q->n_secs; i++) {
        free(q->secs[i].params);
        vitq_strs_free(q->secs[i].taps, q->secs[i].n_taps);
        vitq_strs_free(q->secs[i].excl, q->secs[i].n_excl);
    }
    vitq_qstats_hists_release(q);
    vitq_strs_free(q->plugin_names, q->n_plugin_names);
    free(q->bindings);
    free(q->stats_out);
    vitq_free(q->scratch);
    free(q->secs);
    free(q->taps);
    free(q->by_act);
    free(q->enabled);
    vitq_model_free(q->m);
    free(q);
}

static const vitq_param q_enabled = {.name = "enabled", .type = VITQ_P_BOOL, .def = "true",
                                     .help = "bind this section's taps in the cell (false: checked, binds nothing)"};

/* Appends line to e's message ("\n" between lines; a line that does not fit is left out). */
static void add_line(vitq_err *e, const char *line) {
    const size_t used = strlen(e->msg);
    if (used + 1 + strlen(line) < sizeof e->msg)
        snprintf(e->msg + used, sizeof e->msg - used, "%s%s", used ? "\n" : "", line);
}

/* After a failed parse of n keys: every bad key, one line each (the parser stops at the first), by parsing
 * the keys one at a time (each parameter is checked alone, so this finds exactly the bad ones). */
static void every_bad_key(const vitq_plugin *p, const char *section, const vitq_kv *pk, int n, vitq_err *e) {
    void *scratch = calloc(1, p->params_size ? p->params_size : 1);
    vitq_err all = {{0}}, one;
    for (int i = 0; scratch && i < n; i++)
        if (vitq_plugin_params_parse(p, section, &pk[i], 1, scratch, &one)) add_line(&all, one.msg);
    if (all.msg[0]) memcpy(e->msg, all.msg, sizeof e->msg);
    free(scratch);
}

/* Parses one "quantizer ..." section: globs, plugin, parameters, and `enabled` (false: the section is
 * checked like any other but binds no tap, so a grid axis can switch between sections whose plugins take
 * different parameters). */
static int parse_section(vitq_qsection *qs, vitq_err *e) {
    const vitq_section *s = qs->s;
    const vitq_kv *taps = vitq_section_get(s, "taps"), *plug = vitq_section_get(s, "plugin");
    const vitq_kv *excl = vitq_section_get(s, "exclude"), *en = vitq_section_get(s, "enabled");
    if (en) {
        char why[200];
        vitq_value v;
        if (vitq_value_parse(&q_enabled, en->value, &v, why, sizeof why))
            return vitq_kv_fail(e, VITQ_EINVAL, en, s->name, "%s, got '%s'", why, en->value ? en->value : "");
        qs->disabled = !v.i;
    }
    if (!taps || !plug)
        return vitq_fail(e, VITQ_EINVAL, "%s:%d: [%s] needs a '%s' key", s->file ? s->file : "?", s->line, s->name,
                         !taps ? "taps" : "plugin");
    if (vitq_list_split(taps->value, ',', VITQ_LIST_DROP_EMPTY, &qs->taps, &qs->n_taps) ||
        (excl && vitq_list_split(excl->value, ',', VITQ_LIST_DROP_EMPTY, &qs->excl, &qs->n_excl)))
        return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    if (qs->n_taps == 0)
        return vitq_fail(e, VITQ_EINVAL, "%s:%d: [%s] key 'taps' is empty", taps->file, taps->line, s->name);
    if (strcmp(plug->value, "float") == 0) return VITQ_OK;
    char where[600];
    snprintf(where, sizeof where, "%s:%d: [%s]", plug->file ? plug->file : "?", plug->line, s->name);
    int rc = vitq_plugin_load(plug->value, where, &qs->plugin, e);
    if (rc) return rc;
    if (qs->plugin->kind != VITQ_PLUGIN_QUANTIZER)
        return vitq_fail(e, VITQ_EINVAL, "%s: plugin '%s' is a pass, not a quantizer", where, plug->value);
    vitq_kv *pk = calloc((size_t)s->n_kv + 1, sizeof *pk);
    qs->params = calloc(1, qs->plugin->params_size ? qs->plugin->params_size : 1);
    if (!pk || !qs->params) {
        free(pk);
        return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    }
    int n = 0;
    for (int i = 0; i < s->n_kv; i++) {
        const char *k = s->kv[i].key;
        if (strcmp(k, "taps") && strcmp(k, "plugin") && strcmp(k, "exclude") && strcmp(k, "enabled")) pk[n++] = s->kv[i];
    }
    rc = vitq_plugin_params_parse(qs->plugin, s->name, pk, n, qs->params, e);
    if (rc == VITQ_EINVAL && n > 1) every_bad_key(qs->plugin, s->name, pk, n, e);
    free(pk);
    return rc;
}

/* Every tap a section could bind, into q->taps: weights in table order, then activations in forward order. */
static int list_candidates(vitq_qmodel *q, const vitq_model *fp) {
    int n = 0;
    for (int i = 0; i < fp->n_table; i++) {
        if (fp->table[i].tap_groups <= 0) continue;
        vitq_qtap *t = &q->taps[n++];
        snprintf(t->name, sizeof t->name, "%s", fp->table[i].name);
        t->act = -1;
        t->w_fp = &fp->table[i];
        t->w_q = q->m->table[i].data;
        t->row = i;
        t->unit = vitq_unit_of_param(fp, i);
        vitq_weight_tap_describe(t->w_fp, &t->info);
    }
    for (int id = 0; id < q->n_act; id++) {
        vitq_qtap *t = &q->taps[n++];
        vitq_tap_name(fp, id, t->name, sizeof t->name);
        t->act = id;
        t->row = -1;
        t->unit = -1;
        for (int u = 0; u < vitq_unit_count(fp); u++)
            if (id >= vitq_unit_get(fp, u)->tap_first && id < vitq_unit_get(fp, u)->tap_end) t->unit = u;
        vitq_tap_describe(fp, id, &t->info);
    }
    return n;
}

/* Keeps the candidates some section matches (in place); a tap matched twice, or a section matching
 * nothing, is an error naming the INI lines. */
static int match_taps(vitq_qmodel *q, int n_cand, vitq_err *e) {
    int n = 0;
    for (int c = 0; c < n_cand; c++) {
        vitq_qtap cand = q->taps[c];
        int hit = -1;
        for (int j = 0; j < q->n_secs; j++) {
            vitq_qsection *qs = &q->secs[j];
            if (qs->disabled || !vitq_glob_any(qs->taps, qs->n_taps, cand.name) ||
                vitq_glob_any(qs->excl, qs->n_excl, cand.name))
                continue;
            qs->matched++;
            if (hit >= 0) {
                const vitq_section *a = q->secs[hit].s, *b = qs->s;
                return vitq_fail(e, VITQ_EINVAL, "tap '%s' is matched by [%s] (%s:%d) and by [%s] (%s:%d); use 'exclude'",
                                 cand.name, a->name, a->file ? a->file : "?", a->line, b->name, b->file ? b->file : "?",
                                 b->line);
            }
            hit = j;
        }
        if (hit < 0) continue;
        cand.sec = hit;
        cand.plugin = q->secs[hit].plugin;
        cand.hist = -1;
        cand.cal_min = INFINITY;
        cand.cal_max = -INFINITY;
        q->taps[n++] = cand; /* n <= c: compaction in place */
    }
    q->n_taps = n;
    for (int j = 0; j < q->n_secs; j++) {
        if (q->secs[j].matched || q->secs[j].disabled) continue;
        const vitq_section *s = q->secs[j].s;
        const vitq_kv *tk = vitq_section_get(s, "taps");
        return vitq_fail(e, VITQ_EINVAL,
                         "%s:%d: [%s]: taps '%s' match no tap (names look like blocks.0.attn.qkv.weight, "
                         "blocks.0.attn.probs, head.input)",
                         tk->file ? tk->file : "?", tk->line, s->name, tk->value);
    }
    return VITQ_OK;
}

/* Records what tap i is bound to (for results and messages). */
static void add_binding(vitq_qmodel *q, const vitq_qtap *t, const vitq_qsection *qs) {
    vitq_qbinding *b = &q->bindings[q->n_bindings++];
    snprintf(b->tap, sizeof b->tap, "%s", t->name);
    b->act_tap = t->act;
    snprintf(b->plugin, sizeof b->plugin, "%s", t->plugin ? t->plugin->name : "float");
    snprintf(b->version, sizeof b->version, "%s", t->plugin ? t->plugin->version : "");
    if (t->plugin) vitq_plugin_params_format(t->plugin, qs->params, b->params, sizeof b->params);
    b->file = qs->s->file;
    b->line = qs->s->line;
    snprintf(b->section, sizeof b->section, "%s", qs->s->name);
}

/* Adds "name version" to the distinct plugins used. */
static int add_plugin_name(vitq_qmodel *q, const vitq_plugin *p) {
    char pv[128];
    snprintf(pv, sizeof pv, "%s %s", p->name, p->version);
    for (int k = 0; k < q->n_plugin_names; k++)
        if (strcmp(q->plugin_names[k], pv) == 0) return VITQ_OK;
    if (!(q->plugin_names[q->n_plugin_names] = strdup(pv))) return VITQ_ENOMEM;
    q->n_plugin_names++;
    return VITQ_OK;
}

/* Bindings, hosts and one plugin instance per bound tap. */
static int make_instances(vitq_qmodel *q, uint64_t seed, vitq_err *e) {
    int n = q->n_taps;
    q->bindings = calloc((size_t)(n > 0 ? n : 1), sizeof *q->bindings);
    q->plugin_names = calloc((size_t)(q->n_secs > 0 ? q->n_secs : 1), sizeof *q->plugin_names);
    q->stats_out = calloc((size_t)(n > 0 ? n : 1), sizeof *q->stats_out);
    if (!q->bindings || !q->plugin_names || !q->stats_out) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        vitq_qtap *t = &q->taps[i];
        vitq_qsection *qs = &q->secs[t->sec];
        t->info.name = t->name;
        add_binding(q, t, qs);
        if (t->act >= 0) q->by_act[t->act] = i;
        if (!t->plugin) continue;
        char who[192];
        snprintf(who, sizeof who, "plugin '%s' on tap '%s'", t->plugin->name, t->name);
        vitq_host_init(&t->host, &t->hctx, who, t->name, seed);
        t->inst = t->plugin->quantizer->create(qs->params, &t->info, &t->host);
        if (!t->inst)
            return vitq_fail(e, VITQ_EPLUGIN, "%s:%d: [%s]: %s", qs->s->file ? qs->s->file : "?", qs->s->line,
                             qs->s->name, t->hctx.failed ? t->hctx.msg : "create failed");
        if (t->act >= 0) q->enabled[t->act] = 1;
        if (add_plugin_name(q, t->plugin)) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    }
    return VITQ_OK;
}

int vitq_qmodel_create(const vitq_model *fp, const vitq_section *secs, int n_secs, uint64_t seed,
                       vitq_qmodel **out, vitq_err *e) {
    *out = NULL;
    vitq_qmodel *q = calloc(1, sizeof *q);
    if (!q) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    int rc = vitq_model_clone(fp, &q->m, e);
    if (rc) {
        free(q);
        return rc;
    }
    q->stats_on = 1;
    q->src = fp;
    q->drop_prob = 1;
    q->n_act = vitq_tap_count(fp);
    q->enabled = calloc((size_t)q->n_act + 1, 1);
    q->by_act = malloc(((size_t)q->n_act + 1) * sizeof(int));
    q->secs = calloc((size_t)(n_secs > 0 ? n_secs : 1), sizeof *q->secs);
    q->taps = calloc((size_t)(fp->n_table + q->n_act), sizeof *q->taps);
    if (!q->enabled || !q->by_act || !q->secs || !q->taps) rc = vitq_fail(e, VITQ_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < q->n_act; i++) q->by_act[i] = -1;
    int bad = 0; /* every section is parsed: all their errors at once, one line each */
    if (!rc) e->msg[0] = 0;
    for (int i = 0; !rc && i < n_secs; i++) {
        if (strncmp(secs[i].name, "quantizer ", 10) != 0 && strcmp(secs[i].name, "quantizer") != 0) continue;
        vitq_qsection *qs = &q->secs[q->n_secs++];
        qs->s = &secs[i];
        vitq_err se;
        const int r = parse_section(qs, &se);
        if (r == VITQ_ENOMEM) rc = vitq_fail(e, r, "%s", se.msg);
        else if (r) bad = bad ? bad : r, add_line(e, se.msg);
    }
    if (!rc) rc = bad;
    if (!rc) rc = match_taps(q, list_candidates(q, fp), e);
    if (!rc) rc = make_instances(q, seed, e);
    if (rc) {
        vitq_qmodel_free(q);
        return rc;
    }
    q->hooks = (vitq_tap_hooks){
        .act = vitq_qmodel_hook, .act_backward = vitq_qmodel_hook_backward, .ctx = q, .enabled = q->enabled};
    q->m->hooks = &q->hooks;
    *out = q;
    return VITQ_OK;
}

vitq_model *vitq_qmodel_model(vitq_qmodel *q) { return q->m; }

int vitq_qmodel_bindings(const vitq_qmodel *q, const vitq_qbinding **b, int *n) {
    *b = q->bindings;
    *n = q->n_bindings;
    return VITQ_OK;
}

int vitq_qmodel_plugins(const vitq_qmodel *q, const char *const **names, int *n) {
    *names = (const char *const *)q->plugin_names;
    *n = q->n_plugin_names;
    return VITQ_OK;
}

const char *vitq_qmodel_error(const vitq_qmodel *q) { return q->err; }

int vitq_qmodel_tensors(vitq_qmodel *q, const char *tap, vitq_qtensor *out, int max, vitq_err *e) {
    for (int i = 0; i < q->n_taps; i++) {
        const vitq_qtap *t = &q->taps[i];
        if (strcmp(t->name, tap)) continue;
        if (!t->plugin) return vitq_fail(e, VITQ_EINVAL, "tap '%s' is left in float", tap);
        return t->plugin->quantizer->tensors ? t->plugin->quantizer->tensors(t->inst, out, max) : 0;
    }
    return vitq_fail(e, VITQ_EINVAL, "no quantizer is bound to '%s'", tap);
}
