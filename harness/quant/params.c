/* params.c — a plugin's parameter table: its checks at load time (well formed, every default parses),
 * the user's INI values turned into the plugin's params struct through core's one typed-value parser
 * (same vocabulary and error format as every other key), and the "bits=8 symmetric=false ..." summary.
 * Does not: load plugins (plugin.c) or know any plugin's parameters. */
#include "quant/quant.h"

#include <string.h>

const char *vitq_ptype_name(vitq_ptype t) {
    switch (t) {
    case VITQ_P_INT: return "int";
    case VITQ_P_FLOAT: return "float";
    case VITQ_P_BOOL: return "bool";
    case VITQ_P_ENUM: return "enum";
    case VITQ_P_STRING: return "string";
    default: return "?";
    }
}

static size_t ptype_size(vitq_ptype t) {
    switch (t) {
    case VITQ_P_INT: case VITQ_P_BOOL: case VITQ_P_ENUM: return sizeof(int);
    case VITQ_P_FLOAT: return sizeof(double);
    case VITQ_P_STRING: return VITQ_PARAM_STR_MAX;
    default: return 0;
    }
}

/* Parameter row q of plugin p as a key of the plugin's params struct. */
static vitq_key as_key(const vitq_param *q) { return (vitq_key){.section = NULL, .p = *q, .ctype = VITQ_C_NATURAL}; }

/* One row's checks, its default included; "" or the reason into why. */
static int check_row(const vitq_plugin *p, int i, char *why, size_t n) {
    const vitq_param *q = &p->params[i];
    if (!q->name || !*q->name) return snprintf(why, n, "entry %d has no name", i), -1;
    if ((int)q->type < 0 || q->type >= VITQ_P_NTYPES)
        return snprintf(why, n, "'%s' has unknown type %d", q->name, (int)q->type), -1;
    if (q->offset + ptype_size(q->type) > p->params_size)
        return snprintf(why, n, "'%s' (offset %zu, %zu bytes) exceeds params_size %zu", q->name, q->offset,
                        ptype_size(q->type), p->params_size), -1;
    if (q->type == VITQ_P_ENUM && (!q->choices || !*q->choices))
        return snprintf(why, n, "enum '%s' has no choices", q->name), -1;
    if ((q->type == VITQ_P_INT || q->type == VITQ_P_FLOAT) && !(q->min <= q->max))
        return snprintf(why, n, "'%s' has min %g > max %g", q->name, q->min, q->max), -1;
    if (q->type == VITQ_P_INT && (q->min < -2147483648.0 || q->max > 2147483647.0))
        return snprintf(why, n, "'%s' has bounds beyond an int", q->name), -1;
    for (int j = 0; j < i; j++)
        if (strcmp(p->params[j].name, q->name) == 0) return snprintf(why, n, "'%s' appears twice", q->name), -1;
    char scratch[VITQ_PARAM_STR_MAX], w[256];
    vitq_key k = as_key(q);
    k.p.offset = 0;
    if (!q->def || vitq_key_store(&k, q->def, scratch, NULL, w, sizeof w))
        return snprintf(why, n, "default '%s' of '%s' does not parse (%s)", q->def ? q->def : "(null)", q->name,
                        q->def ? w : "no default"), -1;
    return 0;
}

int vitq_plugin_params_check(const vitq_plugin *p, char *why, size_t n) {
    if (p->n_params < 0 || (p->n_params > 0 && !p->params))
        return snprintf(why, n, "%d entries, table %p", p->n_params, (const void *)p->params), -1;
    for (int i = 0; i < p->n_params; i++)
        if (check_row(p, i, why, n)) return -1;
    return 0;
}

int vitq_plugin_params_parse(const vitq_plugin *pl, const char *section, const vitq_kv *kv, int n, void *params,
                             vitq_err *e) {
    memset(params, 0, pl->params_size);
    char why[256];
    for (int i = 0; i < pl->n_params; i++) {
        vitq_key k = as_key(&pl->params[i]);
        if (vitq_key_store(&k, k.p.def ? k.p.def : "", params, NULL, why, sizeof why))
            return vitq_fail(e, VITQ_EPLUGIN, "plugin '%s': parameter '%s': default '%s' is invalid: %s", pl->name,
                             k.p.name, k.p.def ? k.p.def : "(null)", why);
    }
    for (int j = 0; j < n; j++) {
        const vitq_param *p = NULL;
        for (int i = 0; i < pl->n_params && !p; i++)
            if (strcmp(pl->params[i].name, kv[j].key) == 0) p = &pl->params[i];
        if (!p) {
            char known[512];
            size_t used = 0;
            known[0] = 0;
            for (int i = 0; i < pl->n_params && used < sizeof known; i++)
                used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "", pl->params[i].name);
            return vitq_kv_fail(e, VITQ_EINVAL, &kv[j], section, "plugin '%s' has no such parameter (known: %s)",
                                pl->name, pl->n_params ? known : "none");
        }
        vitq_key k = as_key(p);
        const char *v = kv[j].value ? kv[j].value : "";
        if (vitq_key_store(&k, v, params, NULL, why, sizeof why))
            return vitq_kv_fail(e, VITQ_EINVAL, &kv[j], section, "%s, got '%s' (plugin '%s')", why, v, pl->name);
    }
    return VITQ_OK;
}

/* The value of row q in params as canonical text. */
static const char *field_text(const vitq_param *q, const void *params, char *buf, size_t n) {
    const char *f = (const char *)params + q->offset;
    vitq_value v = {0};
    switch (q->type) {
    case VITQ_P_INT: v.i = *(const int *)f, v.u = (uint64_t)v.i; break;
    case VITQ_P_FLOAT: v.f = *(const double *)f; break;
    case VITQ_P_BOOL: case VITQ_P_ENUM: v.i = *(const int *)f; break;
    default: v.s = f; break;
    }
    return vitq_value_text(q, &v, buf, n);
}

const char *vitq_plugin_params_format(const vitq_plugin *pl, const void *params, char *buf, size_t n) {
    size_t used = 0;
    if (n) buf[0] = 0;
    for (int i = 0; i < pl->n_params && used < n; i++) {
        char v[VITQ_PARAM_STR_MAX];
        field_text(&pl->params[i], params, v, sizeof v);
        used += (size_t)snprintf(buf + used, n - used, "%s%s=%s", i ? " " : "", pl->params[i].name, v);
    }
    return buf;
}
