/* grid_bundle.c — bundles of settings as grid values. A section [AXIS = VALUE] holds the settings of the
 * cells where AXIS has VALUE; each of its keys is a variable that `${name}` in any other section reads:
 *
 *     [grid]
 *     recon = none, qdrop, brecq
 *     [recon = qdrop]
 *     drop_prob = 0.5
 *     ...
 *     [pass aph_recon]
 *     drop_prob = ${drop_prob}
 *
 * Rules (each a FILE:LINE error, all at once): AXIS is an axis of [grid] and VALUE one of its values; one
 * section per (axis, value); once an axis has a bundle, every value has one and all define the same
 * variables; a variable is an identifier, not an axis's name nor another axis's variable; bundle values
 * are literal text (no ${...}). Whether each variable is used is checked with the references (grid.c).
 * Does not: interpolate (grid.c), or know what the variables mean. */
#include "run/run.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

int vitq_grid_is_bundle_section(const char *name) { return strchr(name, '=') != NULL; }

int vitq_grid_var_index(const vitq_experiment *x, const char *name, size_t n) {
    for (int i = 0; i < x->n_vars; i++)
        if (strlen(x->vars[i].name) == n && strncmp(x->vars[i].name, name, n) == 0) return i;
    return -1;
}

static int ident(const char *s) {
    if (!(isalpha((unsigned char)*s) || *s == '_')) return 0;
    for (s++; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_')) return 0;
    return 1;
}

/* "  a  " -> [b, e) without the surrounding blanks. */
static void trim(const char **b, const char **e) {
    while (*b < *e && isspace((unsigned char)**b)) (*b)++;
    while (*e > *b && isspace((unsigned char)(*e)[-1])) (*e)--;
}

static int axis_of(const vitq_experiment *x, const char *name, size_t n) {
    for (int i = 0; i < x->n_axes; i++)
        if (strlen(x->axes[i].name) == n && strncmp(x->axes[i].name, name, n) == 0) return i;
    return -1;
}

/* "a, b, c" (the axes, or an axis's values) into buf. */
static const char *join(char *const *s, int n, char *buf, size_t cap) {
    size_t u = 0;
    buf[0] = 0;
    for (int i = 0; i < n && u + 8 < cap; i++) u += (size_t)snprintf(buf + u, cap - u, "%s%s", i ? ", " : "", s[i]);
    return buf;
}

/* The (axis, value) a bundle section names, or -1 after reporting why. */
static int locate(const vitq_experiment *x, const vitq_section *s, int *ai, int *vi, vitq_errs *E) {
    const char *eq = strchr(s->name, '=');
    const char *ab = s->name, *ae = eq, *vb = eq + 1, *ve = s->name + strlen(s->name);
    trim(&ab, &ae);
    trim(&vb, &ve);
    if (ab == ae || vb == ve || memchr(vb, '=', (size_t)(ve - vb))) {
        vitq_errs_add(E, s->line, "[%s]: a bundle section is [AXIS = VALUE], e.g. [recon = qdrop]", s->name);
        return -1;
    }
    char buf[300];
    *ai = axis_of(x, ab, (size_t)(ae - ab));
    if (*ai < 0) {
        vitq_errs_add(E, s->line, "[%s]: '%.*s' is not an axis of [grid] (%s%s)", s->name, (int)(ae - ab), ab,
                      x->n_axes ? "axes: " : "no [grid] axes", join((char *const *)x->axis_names, x->n_axes, buf, sizeof buf));
        return -1;
    }
    const vitq_grid_axis *a = &x->axes[*ai];
    for (*vi = 0; *vi < a->n_values; (*vi)++)
        if (strlen(a->values[*vi]) == (size_t)(ve - vb) && !strncmp(a->values[*vi], vb, (size_t)(ve - vb))) return 0;
    vitq_errs_add(E, s->line, "[%s]: '%.*s' is not a value of axis '%s' (values: %s)", s->name, (int)(ve - vb), vb,
                  a->name, join(a->values, a->n_values, buf, sizeof buf));
    return -1;
}

/* Each key of bundle s: an identifier, no axis's name, a literal value. */
static void check_keys(const vitq_experiment *x, const vitq_section *s, vitq_errs *E) {
    for (int j = 0; j < s->n_kv; j++) {
        const vitq_kv *kv = &s->kv[j];
        if (!ident(kv->key))
            vitq_errs_add(E, kv->line, "[%s] %s: a bundle variable is an identifier ([A-Za-z_][A-Za-z0-9_]*)", s->name,
                          kv->key);
        else if (axis_of(x, kv->key, strlen(kv->key)) >= 0)
            vitq_errs_add(E, kv->line, "[%s] %s: a bundle variable cannot have the name of the axis '%s'", s->name,
                          kv->key, kv->key);
        else if (strstr(kv->value, "${"))
            vitq_errs_add(E, kv->line, "[%s] %s: a bundle value cannot use ${...}", s->name, kv->key);
    }
}

/* The variables of axis a, whose value v has bundle secs[sec[v]]: the same names in every bundle (the
 * union is reported missing where absent), no other axis's names; appended to x->vars. */
static void axis_vars(vitq_experiment *x, int a, const int *sec, vitq_errs *E) {
    const vitq_grid_axis *ax = &x->axes[a];
    int first_var = x->n_vars;
    for (int v = 0; v < ax->n_values; v++) {
        if (sec[v] < 0) continue; /* reported by the caller */
        const vitq_section *s = &x->secs[sec[v]];
        for (int j = 0; j < s->n_kv; j++) {
            const vitq_kv *kv = &s->kv[j];
            int k = vitq_grid_var_index(x, kv->key, strlen(kv->key));
            if (k >= 0 && x->vars[k].axis != a) {
                vitq_errs_add(E, kv->line, "[%s] %s: also a variable of the bundles of axis '%s' ([%s], line %d)",
                              s->name, kv->key, x->axes[x->vars[k].axis].name, x->vars[k].section, x->vars[k].line);
                continue;
            }
            if (k < 0) {
                vitq_grid_var *nv = realloc(x->vars, (size_t)(x->n_vars + 1) * sizeof *nv);
                const char **vals = calloc((size_t)ax->n_values, sizeof *vals);
                char *name = strdup(kv->key);
                if (nv) x->vars = nv;
                if (!nv || !vals || !name) {
                    free(vals);
                    free(name);
                    E->oom = 1;
                    return;
                }
                k = x->n_vars++;
                x->vars[k] = (vitq_grid_var){.name = name, .axis = a, .values = vals, .section = s->name, .line = kv->line};
            }
            x->vars[k].values[v] = kv->value;
            if (kv->line < x->vars[k].line) x->vars[k].section = s->name, x->vars[k].line = kv->line;
        }
    }
    for (int v = 0; v < ax->n_values; v++) { /* every bundle of the axis defines every variable */
        if (sec[v] < 0) continue;
        char missing[200] = "";
        size_t u = 0;
        const vitq_grid_var *by = NULL;
        for (int k = first_var; k < x->n_vars; k++) {
            if (x->vars[k].values[v]) continue;
            if (!by) by = &x->vars[k];
            if (u + 4 < sizeof missing) u += (size_t)snprintf(missing + u, sizeof missing - u, "%s%s", u ? ", " : "",
                                                             x->vars[k].name);
        }
        if (by)
            vitq_errs_add(E, x->secs[sec[v]].line, "[%s]: does not define %s (defined in [%s], line %d); every bundle of "
                          "axis '%s' defines the same variables", x->secs[sec[v]].name, missing, by->section, by->line,
                          ax->name);
    }
}

void vitq_grid_parse_bundles(vitq_experiment *x, vitq_errs *E) {
    int total = 0;
    for (int a = 0; a < x->n_axes; a++) total += x->axes[a].n_values;
    int *sec = malloc((size_t)(total > 0 ? total : 1) * sizeof *sec);      /* (axis, value) -> section, -1 */
    int *base = malloc((size_t)(x->n_axes > 0 ? x->n_axes : 1) * sizeof *base); /* axis -> first slot */
    if (!sec || !base) {
        free(sec);
        free(base);
        E->oom = 1;
        return;
    }
    for (int a = 0, o = 0; a < x->n_axes; o += x->axes[a].n_values, a++) base[a] = o;
    for (int i = 0; i < total; i++) sec[i] = -1;
    for (int i = 0; i < x->n_secs; i++) {
        const vitq_section *s = &x->secs[i];
        int ai = -1, vi = -1;
        if (!vitq_grid_is_bundle_section(s->name) || locate(x, s, &ai, &vi, E)) continue;
        int *slot = &sec[base[ai] + vi];
        if (*slot >= 0) {
            vitq_errs_add(E, s->line, "[%s]: a second bundle for %s = %s (first: [%s], line %d)", s->name, x->axes[ai].name,
                          x->axes[ai].values[vi], x->secs[*slot].name, x->secs[*slot].line);
            continue;
        }
        *slot = i;
        check_keys(x, s, E);
    }
    for (int a = 0; a < x->n_axes && !E->oom; a++) {
        const vitq_grid_axis *ax = &x->axes[a];
        int have = 0, n_missing = 0, last = -1;
        char missing[200] = "";
        size_t u = 0;
        for (int v = 0; v < ax->n_values; v++) {
            if (sec[base[a] + v] >= 0) {
                have++;
            } else {
                n_missing++, last = v;
                if (u + 8 < sizeof missing)
                    u += (size_t)snprintf(missing + u, sizeof missing - u, "%s'%s'", u ? ", " : "", ax->values[v]);
            }
        }
        if (!have) continue;
        if (n_missing == 1)
            vitq_errs_add(E, ax->line, "[grid] %s: value '%s' has no bundle [%s = %s] (every value of an axis with "
                          "bundles needs one)", ax->name, ax->values[last], ax->name, ax->values[last]);
        else if (n_missing > 1)
            vitq_errs_add(E, ax->line, "[grid] %s: values %s have no bundle [%s = VALUE] (every value of an axis with "
                          "bundles needs one)", ax->name, missing, ax->name);
        axis_vars(x, a, &sec[base[a]], E);
    }
    free(sec);
    free(base);
}

/* The section and line in x->secs whose value is the very string v (a bundle variable's text), or NULL. */
static const vitq_section *kv_holding(const vitq_experiment *x, const char *v, int *line) {
    for (int i = 0; i < x->n_secs; i++)
        for (int k = 0; k < x->secs[i].n_kv; k++)
            if (x->secs[i].kv[k].value == v) return *line = x->secs[i].kv[k].line, &x->secs[i];
    return NULL;
}

const char *vitq_grid_origin(const vitq_experiment *x, const vitq_grid_cell *c, const char *raw, char *buf, size_t n) {
    const vitq_section *grid = vitq_section_find(x->secs, x->n_secs, "grid");
    size_t u = 0;
    buf[0] = 0;
    for (const char *d = strstr(raw, "${"); d && grid && u < n; d = strstr(d + 2, "${")) {
        const char *end = strchr(d + 2, '}');
        if (!end) break;
        int len = (int)(end - d - 2), line = 0;
        const char *val = NULL;
        const vitq_section *where = grid;
        for (int a = 0; a < x->n_axes && !val; a++)
            if ((int)strlen(x->axes[a].name) == len && !strncmp(x->axes[a].name, d + 2, (size_t)len))
                val = c->values[a], line = x->axes[a].line;
        int v = val ? -1 : vitq_grid_var_index(x, d + 2, (size_t)len);
        for (int k = 0; v >= 0 && k < x->axes[x->vars[v].axis].n_values; k++) /* the cell's value of the axis */
            if (x->axes[x->vars[v].axis].values[k] == c->values[x->vars[v].axis])
                val = x->vars[v].values[k], where = kv_holding(x, val, &line);
        char ref[80];
        snprintf(ref, sizeof ref, "${%.*s}", len, d + 2);
        if (!val || !where || strstr(buf, ref)) continue;
        u += (size_t)snprintf(buf + u, n - u, "; %s is '%s' from %s:%d ([%s])", ref, val, where->file, line,
                              where->name);
    }
    return buf;
}
