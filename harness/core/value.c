/* value.c — the one parser of typed INI values and the one error format for them.
 *
 * Every value a user types — a plugin parameter, an experiment key ([run] [model] [data] [hist]), a
 * training key — goes through vitq_value_parse against a vitq_param row (vitq_plugin.h): the same
 * integers, numbers, booleans (true/false, yes/no, on/off, 1/0, any case), enum choices and strings, and
 * the same message, "FILE:LINE: [SECTION] KEY: expected ..., got 'TEXT'". Key tables (vitq_key) add where
 * a value is stored in the caller's struct (vitq_ctype) and two flags.
 * Does not: know any key (the tables live with their layers: run/grid_keys.c, train/train_cfg.c, plugins). */
#include "core/core.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int vitq_bool_parse(const char *s, int *out) {
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *out = 1, VITQ_OK;
        if (strcasecmp(s, no[i]) == 0) return *out = 0, VITQ_OK;
    }
    return VITQ_EINVAL;
}

/* Index of s among the '|'-separated choices, or -1; with idx >= 0 copies that choice into buf instead. */
static int choice(const char *choices, const char *s, int idx, char *buf, size_t n) {
    const char *c = choices;
    for (int i = 0; c && *c; i++) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (idx == i) return snprintf(buf, n, "%.*s", (int)len, c), i;
        if (idx < 0 && s && len > 0 && len == strlen(s) && strncmp(c, s, len) == 0) return i;
        c = bar ? bar + 1 : NULL;
    }
    return -1;
}

const char *vitq_value_expected(const vitq_param *p, char *buf, size_t n) {
    switch (p->type) {
    case VITQ_P_INT: snprintf(buf, n, "expected an integer in [%.0f, %.0f]", p->min, p->max); break;
    case VITQ_P_FLOAT: snprintf(buf, n, "expected a number in [%.15g, %.15g]", p->min, p->max); break;
    case VITQ_P_BOOL: snprintf(buf, n, "expected true/false, yes/no, on/off or 1/0"); break;
    case VITQ_P_ENUM: snprintf(buf, n, "expected one of %s", p->choices ? p->choices : "(no choices)"); break;
    case VITQ_P_STRING: snprintf(buf, n, "expected a string"); break;
    default: snprintf(buf, n, "unknown parameter type %d", (int)p->type); break;
    }
    return buf;
}

/* INT: unsigned when the range is (seeds reach 2^64 - 1), else signed; both within [min, max]. */
static int parse_int(const vitq_param *p, const char *t, vitq_value *v) {
    char *end = NULL;
    errno = 0;
    if (p->min >= 0) {
        if (strchr(t, '-')) return -1;
        unsigned long long u = strtoull(t, &end, 10);
        if (!*t || *end || errno || (double)u < p->min || (double)u > p->max) return -1;
        v->u = u;
        v->i = (int64_t)u;
        return 0;
    }
    long long x = strtoll(t, &end, 10);
    if (!*t || *end || errno || (double)x < p->min || (double)x > p->max) return -1;
    v->i = x;
    return 0;
}

int vitq_value_parse(const vitq_param *p, const char *text, vitq_value *v, char *why, size_t nwhy) {
    memset(v, 0, sizeof *v);
    v->s = text;
    int ok = 0;
    char *end = NULL;
    switch (p->type) {
    case VITQ_P_INT: ok = parse_int(p, text, v) == 0; break;
    case VITQ_P_FLOAT:
        errno = 0;
        v->f = strtod(text, &end);
        ok = *text && !*end && !errno && isfinite(v->f) && v->f >= p->min && v->f <= p->max;
        break;
    case VITQ_P_BOOL: {
        int b = 0;
        ok = vitq_bool_parse(text, &b) == 0;
        v->i = b;
        break;
    }
    case VITQ_P_ENUM: ok = (v->i = choice(p->choices, text, -1, NULL, 0)) >= 0; break;
    case VITQ_P_STRING: ok = 1; break;
    default: break;
    }
    if (!ok) {
        vitq_value_expected(p, why, nwhy);
        return VITQ_EINVAL;
    }
    return VITQ_OK;
}

const char *vitq_value_text(const vitq_param *p, const vitq_value *v, char *buf, size_t n) {
    switch (p->type) {
    case VITQ_P_INT:
        if (p->min >= 0) snprintf(buf, n, "%llu", (unsigned long long)v->u);
        else snprintf(buf, n, "%lld", (long long)v->i);
        break;
    case VITQ_P_FLOAT:
        for (int prec = 1; prec <= 17; prec++) { /* the shortest text that reads back exactly */
            snprintf(buf, n, "%.*g", prec, v->f);
            if (strtod(buf, NULL) == v->f) break;
        }
        break;
    case VITQ_P_BOOL: snprintf(buf, n, "%s", v->i ? "true" : "false"); break;
    case VITQ_P_ENUM: choice(p->choices, NULL, (int)v->i, buf, n); break;
    default: snprintf(buf, n, "%s", v->s ? v->s : ""); break;
    }
    return buf;
}

/* "a, b, c" or "a": three floats within p's bounds into dst. */
static int store_f32x3(const vitq_param *p, const char *text, float *dst, char *why, size_t nwhy) {
    char **items = NULL;
    int n = 0, ok = vitq_list_split(text, ',', 0, &items, &n) == 0 && (n == 1 || n == 3);
    vitq_param one = *p;
    one.type = VITQ_P_FLOAT;
    for (int i = 0; ok && i < n; i++) {
        vitq_value v;
        char w[160];
        ok = vitq_value_parse(&one, items[i], &v, w, sizeof w) == 0;
        dst[i] = (float)v.f;
    }
    vitq_strs_free(items, n);
    if (!ok) {
        snprintf(why, nwhy, "expected 1 or 3 comma-separated numbers in [%.15g, %.15g]", p->min, p->max);
        return VITQ_EINVAL;
    }
    if (n == 1) dst[1] = dst[2] = dst[0];
    return VITQ_OK;
}

/* Writes the parsed value v at dst as k's C type. */
static int store(const vitq_key *k, const vitq_value *v, void *dst, char *why, size_t nwhy) {
    switch (k->ctype) {
    case VITQ_C_I64: *(int64_t *)dst = k->p.min >= 0 ? (int64_t)v->u : v->i; return VITQ_OK;
    case VITQ_C_U64: *(uint64_t *)dst = v->u; return VITQ_OK;
    case VITQ_C_F32: *(float *)dst = (float)v->f; return VITQ_OK;
    case VITQ_C_TEXT: *(const char **)dst = v->s; return VITQ_OK;
    case VITQ_C_CHARS:
    case VITQ_C_NATURAL:
        if (k->ctype == VITQ_C_CHARS || k->p.type == VITQ_P_STRING) {
            size_t cap = k->ctype == VITQ_C_CHARS ? k->cap : VITQ_PARAM_STR_MAX;
            if (strlen(v->s) >= cap) {
                snprintf(why, nwhy, "expected a string of at most %zu bytes", cap - 1);
                return VITQ_EINVAL;
            }
            snprintf((char *)dst, cap, "%s", v->s);
        } else if (k->p.type == VITQ_P_FLOAT) {
            *(double *)dst = v->f;
        } else {
            *(int *)dst = (int)v->i;
        }
        return VITQ_OK;
    default: snprintf(why, nwhy, "unknown storage %d", (int)k->ctype); return VITQ_EINVAL;
    }
}

int vitq_key_store(const vitq_key *k, const char *text, void *base, vitq_value *v, char *why, size_t nwhy) {
    vitq_value local;
    if (!v) v = &local;
    char *dst = (char *)base + k->p.offset;
    if ((k->flags & VITQ_KEY_NONEMPTY) && !*text) {
        snprintf(why, nwhy, "expected a non-empty value");
        return VITQ_EINVAL;
    }
    if (k->ctype == VITQ_C_F32X3) {
        memset(v, 0, sizeof *v);
        v->s = text;
        return store_f32x3(&k->p, text, (float *)dst, why, nwhy);
    }
    int rc = vitq_value_parse(&k->p, text, v, why, nwhy);
    return rc ? rc : store(k, v, dst, why, nwhy);
}

const char *vitq_key_msg(char *buf, size_t n, const char *section, const char *key, const char *what) {
    if (section) snprintf(buf, n, "[%s] %s: %s", section, key, what);
    else snprintf(buf, n, "%s: %s", key, what);
    return buf;
}

int vitq_kv_fail(vitq_err *e, int code, const vitq_kv *kv, const char *section, const char *fmt, ...) {
    char what[700], msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return vitq_fail(e, code, "%s:%d: %s", kv->file ? kv->file : "?", kv->line,
                     vitq_key_msg(msg, sizeof msg, section, kv->key, what));
}

const char *vitq_keys_known(const vitq_key *keys, int n, const char *section, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(keys[i].section, section) != 0) continue;
        int w = snprintf(buf + used, cap - used, "%s%s", used ? ", " : "", keys[i].p.name);
        if (w < 0 || (size_t)w >= cap - used) break;
        used += (size_t)w;
    }
    return buf;
}

/* The distinct sections of the table, "a, b, c". */
static void sections_known(const vitq_key *keys, int n, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < n; i++) {
        int seen = 0;
        for (int j = 0; j < i && !seen; j++) seen = strcmp(keys[j].section, keys[i].section) == 0;
        if (!seen && used < cap) used += (size_t)snprintf(buf + used, cap - used, "%s%s", used ? ", " : "", keys[i].section);
    }
}

int vitq_keys_apply(const vitq_key *keys, int n, const vitq_section *secs, int n_secs, void *base, vitq_err *e) {
    char known[512], why[256];
    for (int s = 0; s < n_secs; s++) {
        if (!vitq_keys_known(keys, n, secs[s].name, known, sizeof known)[0]) {
            sections_known(keys, n, known, sizeof known);
            return vitq_fail(e, VITQ_EINVAL, "%s:%d: unknown section [%s] (known: %s)", secs[s].file, secs[s].line,
                             secs[s].name, known);
        }
        for (int j = 0; j < secs[s].n_kv; j++) {
            const vitq_kv *kv = &secs[s].kv[j];
            const vitq_key *k = NULL;
            for (int i = 0; i < n && !k; i++)
                if (!strcmp(keys[i].section, secs[s].name) && !strcmp(keys[i].p.name, kv->key)) k = &keys[i];
            if (!k)
                return vitq_fail(e, VITQ_EINVAL, "%s:%d: [%s] unknown key '%s' (known: %s)", kv->file, kv->line,
                                 secs[s].name, kv->key, known);
            if (vitq_key_store(k, kv->value, base, NULL, why, sizeof why))
                return vitq_kv_fail(e, VITQ_EINVAL, kv, secs[s].name, "%s, got '%s'", why, kv->value);
        }
    }
    return VITQ_OK;
}
