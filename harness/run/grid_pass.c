/* grid_pass.c — [pass NAME] sections: their harness key `enabled`, and a cell's pass sections bound to
 * their plugins (vitq_passes_bind) for the pipeline and for vitq_run_validate.
 *
 *     [pass aph_recon]          ; NAME = the plugin (`vitq plugins` lists passes); one section per pass
 *     enabled = ${recon_on}     ; harness key, bool, default true: false skips the pass in that cell
 *     drop_prob = 0.5           ; every other key is a parameter of the plugin, typed by its table
 *
 * Binding loads each plugin through the quant layer's loader and parses its parameters with the plugin
 * table (the one typed-value parser), collecting every error of every section, each "FILE:LINE: ...".
 * A disabled pass is bound and checked too: a typo does not hide behind a switch.
 * Does not: run a pass (pipeline.c), or check section names (grid.c did: one word, each pass once). */
#include "run/run.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const vitq_param g_enabled = {.name = "enabled", .type = VITQ_P_BOOL, .def = "true",
                                     .help = "run this pass in the cell (false: skip it)"};

int vitq_grid_is_pass_section(const char *name, const char **pname) {
    if (strncmp(name, "pass", 4) != 0 || !(name[4] == 0 || name[4] == ' ' || name[4] == '\t')) return 0;
    const char *p = name + 4;
    while (*p == ' ' || *p == '\t') p++;
    if (pname) *pname = p;
    return 1;
}

int vitq_grid_pass_enabled(const vitq_section *s, int *on, const vitq_kv **kv, char *why, size_t n) {
    const vitq_kv *k = vitq_section_get(s, g_enabled.name);
    vitq_value v;
    if (kv) *kv = k;
    *on = 1;
    if (!k) return 0;
    if (vitq_value_parse(&g_enabled, k->value, &v, why, n)) return -1;
    *on = (int)v.i;
    return 0;
}

/* Error lines of a bind, joined into one vitq_err at the end. */
typedef struct {
    vitq_sb text;
    int n;
} bind_errs;

static void err_line(bind_errs *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void err_line(bind_errs *b, const char *fmt, ...) {
    char m[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    vitq_sb_fmt(&b->text, "%s%s", b->n ? "\n" : "", m);
    b->n++;
}

/* Every line that fits in e->msg, then "... and N more errors". */
static int errs_finish(bind_errs *b, vitq_err *e) {
    if (b->text.oom) return free(b->text.s), vitq_fail(e, VITQ_ENOMEM, "out of memory binding the passes");
    size_t used = 0, cap = sizeof e->msg;
    int shown = 0;
    e->msg[0] = 0;
    for (const char *p = b->text.s; p && *p && shown < b->n; shown++) {
        const char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        if (used + l + 40 >= cap) break;
        memcpy(e->msg + used, p, l);
        used += l;
        e->msg[used++] = '\n';
        p += l + (nl ? 1 : 0);
    }
    if (used) e->msg[--used] = 0;
    if (shown < b->n) snprintf(e->msg + used, cap - used, "\n... and %d more errors", b->n - shown);
    free(b->text.s);
    return VITQ_EINVAL;
}

/* The plugin's parameters from every key of s but `enabled`; each bad key is its own error line. */
static void parse_params(const vitq_section *s, vitq_pass_binding *b, bind_errs *E) {
    const vitq_plugin *p = b->plugin;
    vitq_kv *pk = calloc((size_t)s->n_kv + 1, sizeof *pk);
    b->params = calloc(1, p->params_size ? p->params_size : 1);
    void *scratch = calloc(1, p->params_size ? p->params_size : 1);
    if (!pk || !b->params || !scratch) {
        E->text.oom = 1;
    } else {
        int n = 0;
        for (int i = 0; i < s->n_kv; i++)
            if (strcmp(s->kv[i].key, g_enabled.name) != 0) pk[n++] = s->kv[i];
        vitq_err pe;
        if (vitq_plugin_params_parse(p, s->name, pk, n, b->params, &pe) == VITQ_OK) {
            vitq_plugin_params_format(p, b->params, b->params_text, sizeof b->params_text);
        } else {
            for (int i = 0; i < n; i++) /* one key at a time: every bad one, not the first only */
                if (vitq_plugin_params_parse(p, s->name, &pk[i], 1, scratch, &pe)) err_line(E, "%s", pe.msg);
        }
    }
    free(pk);
    free(scratch);
}

/* Binds section s (a [pass NAME]) into b; 0, or -1 after adding its errors. */
static int bind_one(const vitq_section *s, const char *name, vitq_pass_binding *b, bind_errs *E) {
    const int n0 = E->n;
    char where[600], why[256];
    snprintf(where, sizeof where, "%s:%d: [%s]", s->file ? s->file : "?", s->line, s->name); /* every line below */
    b->section = s;
    b->name = name;
    const vitq_kv *ekv = NULL;
    if (vitq_grid_pass_enabled(s, &b->enabled, &ekv, why, sizeof why))
        err_line(E, "%s:%d: [%s] enabled: %s, got '%s'", ekv->file, ekv->line, s->name, why, ekv->value);
    vitq_err pe;
    if (vitq_plugin_load(name, where, &b->plugin, &pe)) {
        err_line(E, "%s", pe.msg);
        return -1;
    }
    const vitq_plugin *p = b->plugin;
    if (p->kind != VITQ_PLUGIN_PASS) {
        err_line(E, "%s: plugin '%s' is a quantizer, not a pass (use it as `plugin = %s` in a [quantizer NAME] "
                 "section)", where, name, name);
        return -1;
    }
    b->when = p->pass->when;
    if (b->when != VITQ_PASS_BEFORE_CALIB && b->when != VITQ_PASS_AFTER_CALIB)
        err_line(E, "%s: plugin '%s' declares an unknown `when` (%d; expected before or after calibration)", where,
                 name, (int)b->when);
    for (int i = 0; i < p->n_params; i++)
        if (!strcmp(p->params[i].name, g_enabled.name))
            err_line(E, "%s: plugin '%s' declares a parameter 'enabled', a key [pass] sections keep for the "
                     "harness; rename it in the plugin", where, name);
    parse_params(s, b, E);
    return E->n > n0 ? -1 : 0;
}

void vitq_passes_free(vitq_pass_binding *b, int n) {
    for (int i = 0; b && i < n; i++) free(b[i].params);
    free(b);
}

int vitq_passes_bind(const vitq_section *secs, int n_secs, vitq_pass_binding **out, int *n, vitq_err *e) {
    *out = NULL;
    *n = 0;
    int np = 0;
    for (int i = 0; i < n_secs; i++) np += vitq_grid_is_pass_section(secs[i].name, NULL);
    if (np == 0) return VITQ_OK;
    vitq_pass_binding *b = calloc((size_t)np, sizeof *b);
    if (!b) return vitq_fail(e, VITQ_ENOMEM, "out of memory binding the passes");
    bind_errs E = {{0}, 0};
    int k = 0, last_after = -1; /* the last after-calibration pass so far */
    for (int i = 0; i < n_secs; i++) {
        const char *name = NULL;
        if (!vitq_grid_is_pass_section(secs[i].name, &name)) continue;
        vitq_pass_binding *bk = &b[k++];
        if (bind_one(&secs[i], name, bk, &E)) continue;
        if (bk->when == VITQ_PASS_AFTER_CALIB) last_after = k - 1;
        else if (last_after >= 0)
            err_line(&E, "%s:%d: [%s]: plugin '%s' runs before calibration, so its section must come before [%s] "
                     "(line %d), which runs after it (passes run in file order)", secs[i].file ? secs[i].file : "?",
                     secs[i].line, secs[i].name, name, b[last_after].section->name, b[last_after].section->line);
    }
    if (E.n || E.text.oom) {
        vitq_passes_free(b, k);
        return errs_finish(&E, e);
    }
    free(E.text.s);
    *out = b;
    *n = k;
    return VITQ_OK;
}
