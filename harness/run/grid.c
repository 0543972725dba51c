/* grid.c — experiment INI -> validated cells: [grid] axes and zips, ${axis} interpolation, cell ids;
 * the harness keys, typed per cell with the configuration hash (the resume key), are grid_keys.c's.
 *
 * Order of work: read (ini.c) -> structural checks (known sections and keys, pass names, [grid] syntax,
 * zip groups, bundles (grid_bundle.c), every ${...} defined, every axis and bundle variable used) ->
 * expansion -> per cell: interpolate (axes, then the bundle variables of the cell's values), type the
 * harness keys, canonical text + FNV-1a 64 hash. All errors of all phases are collected (one per INI
 * line, up to 20) and returned together, sorted by line, before anything runs.
 * Does NOT check [quantizer NAME] keys or [pass NAME] parameters (the plugins' tables do, in
 * vitq_run_validate), load models, data or plugins. */
#include "run/run.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_CELLS = 100000 };


/* ---------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------- */

static int is_ident(const char *s) {
    if (!(isalpha((unsigned char)*s) || *s == '_')) return 0;
    for (s++; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_')) return 0;
    return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Cell ids
 * ------------------------------------------------------------------------------------------- */
static int id_char_ok(char c) {
    return isalnum((unsigned char)c) || c == '.' || c == '_' || c == '=' || c == ',' || c == '+' || c == '-';
}

void vitq_grid_cell_id(const char *const *names, const char *const *values, int n, char *out, size_t cap) {
    if (n == 0) {
        snprintf(out, cap, "default");
        return;
    }
    vitq_sb raw = {0};
    for (int i = 0; i < n; i++) vitq_sb_fmt(&raw, "%s%s=%s", i ? "," : "", names[i], values[i]);
    if (raw.oom || !raw.s) {
        snprintf(out, cap, "oom");
        free(raw.s);
        return;
    }
    int replaced = 0;
    size_t len = raw.n;
    char *san = strdup(raw.s);
    if (!san) {
        snprintf(out, cap, "oom");
        free(raw.s);
        return;
    }
    for (size_t i = 0; i < len; i++)
        if (!id_char_ok(san[i])) san[i] = '_', replaced = 1;
    if (san[0] == '.') san[0] = '_', replaced = 1;
    if (!replaced && len <= 100) {
        snprintf(out, cap, "%s", san);
    } else {
        uint64_t h = vitq_fnv1a64(raw.s, len, VITQ_FNV1A64_INIT);
        snprintf(out, cap, "%.83s-%016llx", san, (unsigned long long)h);
    }
    free(san);
    free(raw.s);
}

/* ---------------------------------------------------------------------------------------------
 * Structural checks
 * ------------------------------------------------------------------------------------------- */
static int one_word(const char *w) {
    int ok = *w != 0;
    for (const char *c = w; *c; c++)
        if (!(isalnum((unsigned char)*c) || *c == '_' || *c == '-' || *c == '.')) ok = 0;
    return ok;
}

/* A [pass NAME] section: NAME one word (a plugin's name), each pass once. */
static void check_pass_section(const vitq_experiment *x, int i, const char *pn, vitq_errs *E) {
    const vitq_section *s = &x->secs[i];
    if (!*pn) {
        vitq_errs_add(E, s->line, "[%s]: name the pass plugin: [pass NAME] (`vitq plugins` lists them)", s->name);
        return;
    }
    if (!one_word(pn)) {
        vitq_errs_add(E, s->line, "[%s]: a pass name is one word of [A-Za-z0-9_.-] (the plugin's name)", s->name);
        return;
    }
    for (int j = 0; j < i; j++) {
        const char *other = NULL;
        if (vitq_grid_is_pass_section(x->secs[j].name, &other) && !strcmp(other, pn)) {
            vitq_errs_add(E, s->line, "[%s]: pass '%s' given twice (first on line %d); a pass runs once per cell",
                          s->name, pn, x->secs[j].line);
            return;
        }
    }
}

static void check_sections(const vitq_experiment *x, vitq_errs *E) {
    for (int i = 0; i < x->n_secs; i++) {
        const vitq_section *s = &x->secs[i];
        const char *qn = NULL;
        if (strcmp(s->name, "grid") == 0 || vitq_grid_is_bundle_section(s->name)) continue; /* grid_bundle.c */
        if (vitq_grid_is_quantizer_section(s->name, &qn)) {
            if (!one_word(qn)) vitq_errs_add(E, s->line, "[%s]: a quantizer name is one word of [A-Za-z0-9_.-]", s->name);
            continue;
        }
        if (vitq_grid_is_pass_section(s->name, &qn)) {
            check_pass_section(x, i, qn, E);
            continue;
        }
        int nk = 0;
        const vitq_key *keys = vitq_grid_keys(&nk);
        char kk[300];
        if (!vitq_keys_known(keys, nk, s->name, kk, sizeof kk)[0]) {
            vitq_errs_add(E, s->line, "unknown section [%s] (known: run, model, data, hist, grid, quantizer NAME, pass NAME, "
                          "AXIS = VALUE)", s->name);
            continue;
        }
        for (int j = 0; j < s->n_kv; j++) {
            int found = 0;
            for (int k = 0; k < nk && !found; k++)
                found = !strcmp(keys[k].section, s->name) && !strcmp(keys[k].p.name, s->kv[j].key);
            if (!found) vitq_errs_add(E, s->kv[j].line, "[%s] unknown key '%s' (known: %s)", s->name, s->kv[j].key, kk);
        }
    }
    if (!vitq_section_find(x->secs, x->n_secs, "model"))
        vitq_errs_add(E, 0, "missing section [model] (path = the checkpoint to quantize)");
}

static int axis_index(const vitq_experiment *x, const char *name, size_t n) {
    for (int i = 0; i < x->n_axes; i++)
        if (strlen(x->axes[i].name) == n && strncmp(x->axes[i].name, name, n) == 0) return i;
    return -1;
}

/* [grid] -> axes and zip groups. */
static void parse_grid(vitq_experiment *x, vitq_errs *E) {
    const vitq_section *g = vitq_section_find(x->secs, x->n_secs, "grid");
    if (!g) return;
    x->axes = calloc((size_t)(g->n_kv > 0 ? g->n_kv : 1), sizeof *x->axes);
    x->axis_names = calloc((size_t)(g->n_kv > 0 ? g->n_kv : 1), sizeof *x->axis_names);
    if (!x->axes || !x->axis_names) {
        E->oom = 1;
        return;
    }
    const vitq_kv *zip = NULL;
    for (int j = 0; j < g->n_kv; j++) {
        const vitq_kv *kv = &g->kv[j];
        if (strcmp(kv->key, "zip") == 0) {
            zip = kv;
            continue;
        }
        if (!is_ident(kv->key)) {
            vitq_errs_add(E, kv->line, "[grid] axis name '%s' must be an identifier ([A-Za-z_][A-Za-z0-9_]*)", kv->key);
            continue;
        }
        if (strstr(kv->value, "${")) {
            vitq_errs_add(E, kv->line, "[grid] %s: values cannot use ${...}", kv->key);
            continue;
        }
        vitq_grid_axis *a = &x->axes[x->n_axes];
        if (vitq_list_split(kv->value, ',', 0, &a->values, &a->n_values)) {
            E->oom = 1;
            return;
        }
        a->name = strdup(kv->key);
        a->line = kv->line;
        a->zip = -1;
        if (!a->name) {
            E->oom = 1;
            return;
        }
        x->axis_names[x->n_axes] = a->name;
        x->n_axes++;
        for (int v = 0; v < a->n_values; v++) {
            if (!a->values[v][0]) {
                vitq_errs_add(E, kv->line, "[grid] %s: empty value in '%s'", kv->key, kv->value);
                break;
            }
            for (int w = 0; w < v; w++)
                if (strcmp(a->values[v], a->values[w]) == 0) {
                    vitq_errs_add(E, kv->line, "[grid] %s: value '%s' given twice", kv->key, a->values[v]);
                    v = a->n_values;
                    break;
                }
        }
    }
    if (!zip) return;
    char **groups = NULL;
    int ng = 0;
    if (vitq_list_split(zip->value, '|', 0, &groups, &ng)) {
        E->oom = 1;
        return;
    }
    for (int gi = 0; gi < ng; gi++) {
        char **names = NULL;
        int nn = 0;
        if (vitq_list_split(groups[gi], ',', 0, &names, &nn)) {
            E->oom = 1;
            break;
        }
        if (nn < 2 || !names[0][0]) {
            vitq_errs_add(E, zip->line, "[grid] zip: group '%s' needs at least two axis names", groups[gi]);
        } else {
            int first = -1;
            for (int k = 0; k < nn; k++) {
                int ai = axis_index(x, names[k], strlen(names[k]));
                if (ai < 0) {
                    vitq_errs_add(E, zip->line, "[grid] zip: '%s' is not an axis of [grid]", names[k]);
                    continue;
                }
                if (x->axes[ai].zip >= 0) {
                    vitq_errs_add(E, zip->line, "[grid] zip: axis '%s' is in two groups", names[k]);
                    continue;
                }
                x->axes[ai].zip = gi;
                if (first < 0) {
                    first = ai;
                } else if (x->axes[ai].n_values != x->axes[first].n_values) {
                    vitq_errs_add(E, zip->line, "[grid] zip: axes '%s' (%d values) and '%s' (%d values) differ in length",
                            x->axes[first].name, x->axes[first].n_values, names[k], x->axes[ai].n_values);
                }
            }
        }
        vitq_strs_free(names, nn);
    }
    vitq_strs_free(groups, ng);
}

/* "[grid] axes: a, b; bundle variables: c, d" (or "no [grid] axes") into buf. */
static const char *names_defined(const vitq_experiment *x, char *buf, size_t cap) {
    size_t u = (size_t)snprintf(buf, cap, "%s", x->n_axes ? "[grid] axes: " : "no [grid] axes");
    for (int a = 0; a < x->n_axes && u + 64 < cap; a++)
        u += (size_t)snprintf(buf + u, cap - u, "%s%s", a ? ", " : "", x->axes[a].name);
    for (int v = 0; v < x->n_vars && u + 64 < cap; v++)
        u += (size_t)snprintf(buf + u, cap - u, "%s%s", v ? ", " : "; bundle variables: ", x->vars[v].name);
    return buf;
}

/* Checks every ${...} outside [grid] and the bundles against the axes and bundle variables; marks the used
 * ones. */
static void check_refs(const vitq_experiment *x, vitq_errs *E, int *used, int *var_used) {
    for (int i = 0; i < x->n_secs; i++) {
        const vitq_section *s = &x->secs[i];
        if (strcmp(s->name, "grid") == 0 || vitq_grid_is_bundle_section(s->name)) continue;
        for (int j = 0; j < s->n_kv; j++) {
            const char *v = s->kv[j].value;
            for (const char *p = strstr(v, "${"); p; p = strstr(p, "${")) {
                const char *c = strchr(p + 2, '}');
                if (!c) {
                    vitq_errs_add(E, s->kv[j].line, "[%s] %s: '${' without a closing '}'", s->name, s->kv[j].key);
                    break;
                }
                int ai = axis_index(x, p + 2, (size_t)(c - p - 2));
                int vi = ai < 0 ? vitq_grid_var_index(x, p + 2, (size_t)(c - p - 2)) : -1;
                if (ai < 0 && vi < 0) {
                    char names[300];
                    vitq_errs_add(E, s->kv[j].line, "[%s] %s: undefined ${%.*s} (%s)", s->name, s->kv[j].key,
                            (int)(c - p - 2), p + 2, names_defined(x, names, sizeof names));
                } else if (ai >= 0) {
                    used[ai] = 1;
                } else {
                    var_used[vi] = 1;
                    used[x->vars[vi].axis] = 1;
                }
                p = c + 1;
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Per cell
 * ------------------------------------------------------------------------------------------- */
/* v with every ${axis} replaced by the cell's value and every ${variable} by its bundle's text. */
static char *interpolate(const vitq_experiment *x, const char *v, const char **values, const char **var_values) {
    vitq_sb b = {0};
    vitq_sb_add(&b, "", 0);
    for (const char *p = v;;) {
        const char *d = strstr(p, "${");
        const char *c = d ? strchr(d + 2, '}') : NULL;
        int ai = c ? axis_index(x, d + 2, (size_t)(c - d - 2)) : -1;
        int vi = c && ai < 0 ? vitq_grid_var_index(x, d + 2, (size_t)(c - d - 2)) : -1;
        if (!d || !c || (ai < 0 && vi < 0)) { /* references were checked already; copy the rest */
            vitq_sb_str(&b, p);
            break;
        }
        vitq_sb_add(&b, p, (size_t)(d - p));
        vitq_sb_str(&b, ai >= 0 ? values[ai] : var_values[vi]);
        p = c + 1;
    }
    return vitq_sb_take(&b);
}

/* Sections a cell keeps: all but [grid] and the bundles (their content reaches the cell through ${...}). */
static int resolved(const vitq_section *s) { return strcmp(s->name, "grid") != 0 && !vitq_grid_is_bundle_section(s->name); }

static int make_cell(vitq_experiment *x, vitq_grid_cell *c, const int *vidx, vitq_errs *E) {
    c->values = calloc((size_t)(x->n_axes > 0 ? x->n_axes : 1), sizeof *c->values);
    if (!c->values) return E->oom = 1, -1;
    for (int a = 0; a < x->n_axes; a++) c->values[a] = x->axes[a].values[vidx[a]];
    vitq_grid_cell_id(x->axis_names, c->values, x->n_axes, c->id, sizeof c->id);
    int n = 0;
    for (int i = 0; i < x->n_secs; i++) n += resolved(&x->secs[i]);
    vitq_section *tmp = malloc((size_t)(n > 0 ? n : 1) * sizeof *tmp);
    const char **var_values = malloc((size_t)(x->n_vars > 0 ? x->n_vars : 1) * sizeof *var_values);
    if (!tmp || !var_values) {
        free(tmp);
        free(var_values);
        return E->oom = 1, -1;
    }
    for (int v = 0; v < x->n_vars; v++) var_values[v] = x->vars[v].values[vidx[x->vars[v].axis]];
    n = 0;
    for (int i = 0; i < x->n_secs; i++)
        if (resolved(&x->secs[i])) tmp[n++] = x->secs[i];
    c->secs = vitq_sections_copy(tmp, n);
    free(tmp);
    c->n_secs = c->secs ? n : 0;
    int oom = !c->secs;
    for (int i = 0; i < c->n_secs && !oom; i++) {
        for (int j = 0; j < c->secs[i].n_kv && !oom; j++) {
            vitq_kv *kv = &c->secs[i].kv[j];
            if (!strstr(kv->value, "${")) continue;
            char *nv = interpolate(x, kv->value, c->values, var_values);
            oom = !nv;
            if (nv) free(kv->value), kv->value = nv;
        }
    }
    free(var_values);
    if (oom) return E->oom = 1, -1;
    vitq_grid_type_cell(x, c, E);
    return 0;
}

/* Fills the cells: factors = zip groups and free axes, ordered by their first axis; first slowest. */
static void expand(vitq_experiment *x, vitq_errs *E) {
    int nf = 0;
    int *fac_of = calloc((size_t)(x->n_axes + 1), sizeof *fac_of);  /* axis -> factor */
    int *fac_len = calloc((size_t)(x->n_axes + 1), sizeof *fac_len); /* factor -> length */
    int *zip_fac = calloc((size_t)(x->n_axes + 1), sizeof *zip_fac);
    int *ctr = calloc((size_t)(x->n_axes + 1), sizeof *ctr);
    int *vidx = calloc((size_t)(x->n_axes + 1), sizeof *vidx);
    if (!fac_of || !fac_len || !zip_fac || !ctr || !vidx) {
        E->oom = 1;
        goto done;
    }
    for (int i = 0; i <= x->n_axes; i++) zip_fac[i] = -1;
    for (int a = 0; a < x->n_axes; a++) {
        int z = x->axes[a].zip;
        if (z >= 0 && z <= x->n_axes && zip_fac[z] >= 0) {
            fac_of[a] = zip_fac[z];
            continue;
        }
        fac_of[a] = nf;
        fac_len[nf] = x->axes[a].n_values;
        if (z >= 0 && z <= x->n_axes) zip_fac[z] = nf;
        nf++;
    }
    double total = 1;
    for (int f = 0; f < nf; f++) total *= fac_len[f];
    if (total > MAX_CELLS) {
        vitq_errs_add(E, vitq_section_find(x->secs, x->n_secs, "grid")->line, "[grid]: %.0f cells, more than %d",
                total, MAX_CELLS);
        goto done;
    }
    x->n_cells = (int)total;
    x->cells = calloc((size_t)(x->n_cells > 0 ? x->n_cells : 1), sizeof *x->cells);
    if (!x->cells) {
        E->oom = 1;
        x->n_cells = 0;
        goto done;
    }
    for (int ci = 0; ci < x->n_cells; ci++) {
        /* counters: the last factor fastest */
        int r = ci;
        for (int f = nf - 1; f >= 0; f--) {
            ctr[f] = r % fac_len[f];
            r /= fac_len[f];
        }
        for (int a = 0; a < x->n_axes; a++) vidx[a] = ctr[fac_of[a]];
        if (make_cell(x, &x->cells[ci], vidx, E) != 0) break;
    }
    /* ids must be unique (sanitising could, in theory, merge two) */
    for (int i = 0; i < x->n_cells; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(x->cells[i].id, x->cells[j].id) == 0) {
                vitq_errs_add(E, vitq_section_find(x->secs, x->n_secs, "grid")->line,
                        "[grid]: two cells get the same id '%s'; use values that differ in [A-Za-z0-9._+-]",
                        x->cells[i].id);
                i = x->n_cells;
                break;
            }
done:
    free(fac_of);
    free(fac_len);
    free(zip_fac);
    free(ctr);
    free(vidx);
}

/* ---------------------------------------------------------------------------------------------
 * Entry points
 * ------------------------------------------------------------------------------------------- */
void vitq_experiment_free(vitq_experiment *x) {
    if (!x) return;
    for (int i = 0; i < x->n_cells; i++) {
        vitq_grid_cell *c = &x->cells[i];
        free(c->values);
        vitq_sections_free(c->secs, c->n_secs);
        free(c->config_text);
    }
    free(x->cells);
    for (int a = 0; a < x->n_axes; a++) {
        free(x->axes[a].name);
        vitq_strs_free(x->axes[a].values, x->axes[a].n_values);
    }
    free(x->axes);
    free(x->axis_names);
    for (int v = 0; v < x->n_vars; v++) {
        free(x->vars[v].name);
        free(x->vars[v].values);
    }
    free(x->vars);
    vitq_sections_free(x->secs, x->n_secs);
    free(x->path);
    free(x->text);
    free(x);
}

/* Every axis used by some ${axis} (or, with bundles, by its variables: each of them must be used). */
static void check_unused(const vitq_experiment *x, vitq_errs *E, int *used, int *var_used) {
    check_refs(x, E, used, var_used);
    for (int v = 0; v < x->n_vars; v++)
        if (!var_used[v])
            vitq_errs_add(E, x->vars[v].line, "[%s] %s: bundle variable '%s' is never used as ${%s} in any other section",
                          x->vars[v].section, x->vars[v].name, x->vars[v].name, x->vars[v].name);
    for (int a = 0; a < x->n_axes; a++) {
        int has_vars = 0;
        for (int v = 0; v < x->n_vars; v++) has_vars |= x->vars[v].axis == a;
        if (!used[a] && !has_vars) /* an axis with variables is used through them (reported above if not) */
            vitq_errs_add(E, x->axes[a].line, "[grid] axis '%s' is never used as ${%s} in any other section",
                          x->axes[a].name, x->axes[a].name);
    }
}

static int build(vitq_experiment *x, vitq_experiment **out, vitq_err *e) {
    vitq_errs E = {.file = x->path};
    const vitq_section *recipe = vitq_section_find(x->secs, x->n_secs, "recipe");
    if (recipe) { /* a training INI: every key of it is "unknown" here; one line says what it is instead */
        vitq_errs_add(&E, recipe->line, "[recipe]: this is a training INI (vitq train %s), not an experiment "
                      "for vitq run", x->path);
        const int rc = vitq_errs_finish(&E, e); /* before the free: E names the file by x->path */
        vitq_experiment_free(x);
        return rc;
    }
    check_sections(x, &E);
    int n0 = E.n;
    parse_grid(x, &E);
    if (!E.oom) vitq_grid_parse_bundles(x, &E);
    int grid_ok = E.n == n0 && E.dropped == 0;
    int *used = calloc((size_t)(x->n_axes + 1), sizeof *used);
    int *var_used = calloc((size_t)(x->n_vars + 1), sizeof *var_used);
    if (!used || !var_used) E.oom = 1;
    if (!E.oom) check_unused(x, &E, used, var_used);
    free(used);
    free(var_used);
    if (grid_ok && !E.oom) expand(x, &E);
    int rc = vitq_errs_finish(&E, e);
    if (rc != 0) {
        vitq_experiment_free(x);
        return rc;
    }
    *out = x;
    return 0;
}

int vitq_experiment_parse(const char *text, const char *name, vitq_experiment **out, vitq_err *e) {
    *out = NULL;
    vitq_experiment *x = calloc(1, sizeof *x);
    if (!x) return vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", name);
    x->path = strdup(name);
    x->text = strdup(text);
    if (!x->path || !x->text) {
        vitq_experiment_free(x);
        return vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", name);
    }
    int rc = vitq_ini_parse_string(text, name, &x->secs, &x->n_secs, e);
    if (rc != 0) {
        vitq_experiment_free(x);
        return rc;
    }
    return build(x, out, e);
}

int vitq_experiment_load(const char *path, vitq_experiment **out, vitq_err *e) {
    *out = NULL;
    size_t size = 0;
    char *text = vitq_read_file(path, &size, e);
    if (!text) return VITQ_EIO;
    if (strlen(text) != size) {
        free(text);
        return vitq_fail(e, VITQ_EFORMAT, "%s: contains a NUL byte (not a text file?)", path);
    }
    int rc = vitq_experiment_parse(text, path, out, e);
    free(text);
    return rc;
}
