/* grid.c — experiment INI -> validated cells: the harness key table, [grid] axes and zips, ${axis}
 * interpolation, typed per-cell configuration, cell ids and the configuration hash (the resume key).
 *
 * Order of work: read (ini.c) -> structural checks (known sections and keys, [grid] syntax, zip groups,
 * every ${...} defined, every axis used) -> expansion -> per cell: interpolate, type the harness keys,
 * canonical text + FNV-1a 64 hash. All errors of all phases are collected (one per INI line, up to 20)
 * and returned together, sorted by line, before anything runs.
 * Does NOT check [quantizer NAME] keys (the quant module and plugin loader do), load models or data. */
#include "grid.h"

#include "vitq_ini.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_ERRORS = 20, MAX_CELLS = 100000 };

/* ---------------------------------------------------------------------------------------------
 * The harness key table
 * ------------------------------------------------------------------------------------------- */
#define K(SEC, KEY, TYPE, DEF, LO, HI, CHOICES, HELP) \
    {.section = SEC, .p = {.name = KEY, .type = TYPE, .def = DEF, .min = LO, .max = HI, .choices = CHOICES, .help = HELP}}
static const vitq_grid_key g_keys[] = {
    K("run", "name", VITQ_P_STRING, "", 0, 0, NULL, "run name (default: the INI file's base name)"),
    K("run", "output", VITQ_P_STRING, "", 0, 0, NULL, "run folder (default: results/<name>)"),
    K("run", "seed", VITQ_P_INT, "0", 0, 4294967295.0, NULL, "seed of the calibration subset and of the quantizers' RNG"),
    K("run", "threads", VITQ_P_INT, "0", 0, 1024, NULL, "worker threads (0 = all CPUs; --threads overrides)"),
    K("run", "baseline", VITQ_P_BOOL, "true", 0, 0, NULL, "also evaluate the float model, stored as cell \"fp32\""),
    K("run", "calib_mode", VITQ_P_ENUM, "sequential", 0, 0, "sequential|float",
      "calibration inputs: quantized layers before each tap (sequential) or the float model (float)"),
    K("model", "path", VITQ_P_STRING, NULL, 0, 0, NULL, "checkpoint (.safetensors) to quantize"),
    K("model", "arch", VITQ_P_STRING, "", 0, 0, NULL, "built-in timm name, for files without vitq metadata"),
    K("data", "dataset", VITQ_P_STRING, "fashion-mnist", 0, 0, NULL,
      "fashion-mnist, mnist-idx:DIR, an IDX folder or an image folder"),
    K("data", "eval_split", VITQ_P_ENUM, "test", 0, 0, "test|train", "split evaluated"),
    K("data", "eval_limit", VITQ_P_INT, "0", 0, 1e12, NULL, "evaluate the first N images only (0 = all)"),
    K("data", "batch", VITQ_P_INT, "128", 1, 4096, NULL, "evaluation batch size"),
    K("data", "calib_split", VITQ_P_ENUM, "train", 0, 0, "train|test", "split the calibration subset is drawn from"),
    K("data", "calib_size", VITQ_P_INT, "128", 1, 1000000, NULL, "calibration images (a seeded random subset)"),
    K("data", "convert_channels", VITQ_P_BOOL, "false", 0, 0, NULL, "allow gray<->RGB conversion to fit the model"),
    K("hist", "taps", VITQ_P_STRING, "", 0, 0, NULL, "comma-separated tap globs to histogram (float vs quantized)"),
    K("hist", "bins", VITQ_P_INT, "128", 2, 65536, NULL, "histogram bins"),
};
#undef K
enum { N_KEYS = (int)(sizeof g_keys / sizeof g_keys[0]) };

const vitq_grid_key *vitq_grid_keys(int *n) {
    *n = N_KEYS;
    return g_keys;
}

static const char *const g_sections[] = {"run", "model", "data", "hist"}; /* + grid, quantizer NAME */

/* ---------------------------------------------------------------------------------------------
 * Error collection: one error per (line), up to MAX_ERRORS, sorted by line when joined.
 * ------------------------------------------------------------------------------------------- */
typedef struct errs {
    const char *file;
    int line[MAX_ERRORS];
    char msg[MAX_ERRORS][240];
    int n, dropped, oom;
} errs;

static void err_add(errs *E, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void err_add(errs *E, int line, const char *fmt, ...) {
    char m[240];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    for (int i = 0; i < E->n; i++)
        if (E->line[i] == line && (line > 0 || strcmp(E->msg[i], m) == 0)) return; /* one per line */
    if (E->n >= MAX_ERRORS) {
        E->dropped++;
        return;
    }
    E->line[E->n] = line;
    memcpy(E->msg[E->n], m, sizeof m);
    E->n++;
}

static int err_finish(errs *E, vitq_err *e) {
    if (E->oom) return vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", E->file);
    if (E->n == 0 && E->dropped == 0) return 0;
    int idx[MAX_ERRORS];
    for (int i = 0; i < E->n; i++) idx[i] = i;
    for (int i = 1; i < E->n; i++) { /* stable insertion sort by line */
        int v = idx[i], j = i - 1;
        while (j >= 0 && E->line[idx[j]] > E->line[v]) {
            idx[j + 1] = idx[j];
            j--;
        }
        idx[j + 1] = v;
    }
    if (e) {
        size_t used = 0, cap = sizeof e->msg;
        e->msg[0] = 0;
        int shown = 0;
        for (int k = 0; k < E->n; k++) {
            int i = idx[k];
            char one[400];
            if (E->line[i] > 0)
                snprintf(one, sizeof one, "%s%s:%d: %s", k ? "\n" : "", E->file, E->line[i], E->msg[i]);
            else
                snprintf(one, sizeof one, "%s%s: %s", k ? "\n" : "", E->file, E->msg[i]);
            size_t l = strlen(one);
            if (used + l + 40 >= cap) break;
            memcpy(e->msg + used, one, l + 1);
            used += l;
            shown++;
        }
        int rest = E->n - shown + E->dropped;
        if (rest > 0)
            snprintf(e->msg + used, cap - used, "\n%s: ... and %d more error%s", E->file, rest, rest > 1 ? "s" : "");
    }
    return VITQ_EFORMAT;
}

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------- */
uint64_t vitq_fnv1a64(const void *data, size_t n, uint64_t h) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

int vitq_parse_bool(const char *s, int *out) {
    static const char *const t[] = {"true", "yes", "1"}, *const f[] = {"false", "no", "0"};
    for (int i = 0; i < 3; i++) {
        if (strcmp(s, t[i]) == 0) return *out = 1, 0;
        if (strcmp(s, f[i]) == 0) return *out = 0, 0;
    }
    return VITQ_EINVAL;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    return s;
}

static int is_ident(const char *s) {
    if (!(isalpha((unsigned char)*s) || *s == '_')) return 0;
    for (s++; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_')) return 0;
    return 1;
}

/* Splits s by `sep` into trimmed, malloc'ed tokens. Returns count, or -1 (out of memory). */
static int split(const char *s, char sep, char ***out) {
    int cap = 4, n = 0;
    char **v = malloc((size_t)cap * sizeof *v);
    char *copy = xstrdup(s);
    if (!v || !copy) goto oom;
    for (char *p = copy;;) {
        char *q = strchr(p, sep);
        if (q) *q = 0;
        if (n == cap) {
            cap *= 2;
            char **nv = realloc(v, (size_t)cap * sizeof *v);
            if (!nv) goto oom;
            v = nv;
        }
        if (!(v[n] = xstrdup(trim(p)))) goto oom;
        n++;
        if (!q) break;
        p = q + 1;
    }
    free(copy);
    *out = v;
    return n;
oom:
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
    free(copy);
    return -1;
}

static void free_strs(char **v, int n) {
    if (!v) return;
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* Growable string. */
typedef struct sbuf {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }
static void sb_fmt(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_fmt(sbuf *b, const char *fmt, ...) {
    char tmp[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof tmp) {
        char *big = malloc((size_t)n + 1);
        if (!big) {
            b->oom = 1;
            return;
        }
        va_start(ap, fmt);
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        sb_add(b, big, (size_t)n);
        free(big);
        return;
    }
    sb_add(b, tmp, (size_t)(n > 0 ? n : 0));
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
    sbuf raw = {0};
    for (int i = 0; i < n; i++) sb_fmt(&raw, "%s%s=%s", i ? "," : "", names[i], values[i]);
    if (raw.oom || !raw.s) {
        snprintf(out, cap, "oom");
        free(raw.s);
        return;
    }
    int replaced = 0;
    size_t len = raw.n;
    char *san = xstrdup(raw.s);
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
 * Typed values (the same rules as plugin parameters)
 * ------------------------------------------------------------------------------------------- */
/* Checks `v` against key row p; writes the canonical text into canon (may be NULL). 0 or -1 with msg. */
static int check_value(const vitq_param *p, const char *v, char *canon, size_t ncanon, char *msg, size_t nmsg) {
    char *end = NULL;
    switch (p->type) {
    case VITQ_P_INT: {
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || errno || (double)x < p->min || (double)x > p->max) {
            snprintf(msg, nmsg, "expected an integer in [%.0f, %.0f], got '%s'", p->min, p->max, v);
            return -1;
        }
        if (canon) snprintf(canon, ncanon, "%lld", x);
        return 0;
    }
    case VITQ_P_FLOAT: {
        errno = 0;
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x) || x < p->min || x > p->max) {
            snprintf(msg, nmsg, "expected a number in [%g, %g], got '%s'", p->min, p->max, v);
            return -1;
        }
        if (canon) snprintf(canon, ncanon, "%.17g", x);
        return 0;
    }
    case VITQ_P_BOOL: {
        int b = 0;
        if (vitq_parse_bool(v, &b) != 0) {
            snprintf(msg, nmsg, "expected true/false/yes/no/1/0, got '%s'", v);
            return -1;
        }
        if (canon) snprintf(canon, ncanon, "%s", b ? "true" : "false");
        return 0;
    }
    case VITQ_P_ENUM: {
        size_t l = strlen(v);
        for (const char *c = p->choices; c && *c;) {
            const char *bar = strchr(c, '|');
            size_t cl = bar ? (size_t)(bar - c) : strlen(c);
            if (cl == l && l > 0 && strncmp(c, v, l) == 0) {
                if (canon) snprintf(canon, ncanon, "%s", v);
                return 0;
            }
            c = bar ? bar + 1 : c + cl;
        }
        snprintf(msg, nmsg, "expected one of %s, got '%s'", p->choices, v);
        return -1;
    }
    default:
        if (canon) snprintf(canon, ncanon, "%s", v);
        return 0;
    }
}

static const vitq_grid_key *find_key(const char *section, const char *key) {
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(g_keys[i].section, section) == 0 && strcmp(g_keys[i].p.name, key) == 0) return &g_keys[i];
    return NULL;
}

static int is_quantizer_section(const char *name, const char **qname) {
    if (strncmp(name, "quantizer", 9) != 0 || !isspace((unsigned char)name[9])) return 0;
    const char *q = name + 9;
    while (isspace((unsigned char)*q)) q++;
    if (qname) *qname = q;
    return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Structural checks
 * ------------------------------------------------------------------------------------------- */
static void known_keys(const char *section, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < N_KEYS; i++) {
        if (strcmp(g_keys[i].section, section) != 0) continue;
        int w = snprintf(buf + used, n - used, "%s%s", used ? ", " : "", g_keys[i].p.name);
        if (w < 0 || (size_t)w >= n - used) break;
        used += (size_t)w;
    }
}

static void check_sections(const vitq_experiment *x, errs *E) {
    for (int i = 0; i < x->n_secs; i++) {
        const vitq_section *s = &x->secs[i];
        const char *qn = NULL;
        if (strcmp(s->name, "grid") == 0) continue;
        if (is_quantizer_section(s->name, &qn)) {
            int ok = *qn != 0;
            for (const char *c = qn; *c; c++)
                if (!(isalnum((unsigned char)*c) || *c == '_' || *c == '-' || *c == '.')) ok = 0;
            if (!ok) err_add(E, s->line, "[%s]: a quantizer name is one word of [A-Za-z0-9_.-]", s->name);
            continue;
        }
        int known = 0;
        for (size_t k = 0; k < sizeof g_sections / sizeof g_sections[0]; k++)
            if (strcmp(s->name, g_sections[k]) == 0) known = 1;
        if (!known) {
            err_add(E, s->line, "unknown section [%s] (known: run, model, data, hist, grid, quantizer NAME)", s->name);
            continue;
        }
        for (int j = 0; j < s->n_kv; j++) {
            if (find_key(s->name, s->kv[j].key)) continue;
            char kk[300];
            known_keys(s->name, kk, sizeof kk);
            err_add(E, s->kv[j].line, "[%s] unknown key '%s' (known: %s)", s->name, s->kv[j].key, kk);
        }
    }
    if (!vitq_section_find(x->secs, x->n_secs, "model"))
        err_add(E, 0, "missing section [model] (path = the checkpoint to quantize)");
}

static int axis_index(const vitq_experiment *x, const char *name, size_t n) {
    for (int i = 0; i < x->n_axes; i++)
        if (strlen(x->axes[i].name) == n && strncmp(x->axes[i].name, name, n) == 0) return i;
    return -1;
}

/* [grid] -> axes and zip groups. */
static void parse_grid(vitq_experiment *x, errs *E) {
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
            err_add(E, kv->line, "[grid] axis name '%s' must be an identifier ([A-Za-z_][A-Za-z0-9_]*)", kv->key);
            continue;
        }
        if (strstr(kv->value, "${")) {
            err_add(E, kv->line, "[grid] %s: values cannot use ${...}", kv->key);
            continue;
        }
        vitq_grid_axis *a = &x->axes[x->n_axes];
        a->n_values = split(kv->value, ',', &a->values);
        if (a->n_values < 0) {
            E->oom = 1;
            return;
        }
        a->name = xstrdup(kv->key);
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
                err_add(E, kv->line, "[grid] %s: empty value in '%s'", kv->key, kv->value);
                break;
            }
            for (int w = 0; w < v; w++)
                if (strcmp(a->values[v], a->values[w]) == 0) {
                    err_add(E, kv->line, "[grid] %s: value '%s' given twice", kv->key, a->values[v]);
                    v = a->n_values;
                    break;
                }
        }
    }
    if (!zip) return;
    char **groups = NULL;
    int ng = split(zip->value, '|', &groups);
    if (ng < 0) {
        E->oom = 1;
        return;
    }
    for (int gi = 0; gi < ng; gi++) {
        char **names = NULL;
        int nn = split(groups[gi], ',', &names);
        if (nn < 0) {
            E->oom = 1;
            break;
        }
        if (nn < 2 || !names[0][0]) {
            err_add(E, zip->line, "[grid] zip: group '%s' needs at least two axis names", groups[gi]);
        } else {
            int first = -1;
            for (int k = 0; k < nn; k++) {
                int ai = axis_index(x, names[k], strlen(names[k]));
                if (ai < 0) {
                    err_add(E, zip->line, "[grid] zip: '%s' is not an axis of [grid]", names[k]);
                    continue;
                }
                if (x->axes[ai].zip >= 0) {
                    err_add(E, zip->line, "[grid] zip: axis '%s' is in two groups", names[k]);
                    continue;
                }
                x->axes[ai].zip = gi;
                if (first < 0) {
                    first = ai;
                } else if (x->axes[ai].n_values != x->axes[first].n_values) {
                    err_add(E, zip->line, "[grid] zip: axes '%s' (%d values) and '%s' (%d values) differ in length",
                            x->axes[first].name, x->axes[first].n_values, names[k], x->axes[ai].n_values);
                }
            }
        }
        free_strs(names, nn);
    }
    free_strs(groups, ng);
}

/* Checks every ${...} outside [grid] against the axes; marks used axes. */
static void check_refs(const vitq_experiment *x, errs *E, int *used) {
    for (int i = 0; i < x->n_secs; i++) {
        const vitq_section *s = &x->secs[i];
        if (strcmp(s->name, "grid") == 0) continue;
        for (int j = 0; j < s->n_kv; j++) {
            const char *v = s->kv[j].value;
            for (const char *p = strstr(v, "${"); p; p = strstr(p, "${")) {
                const char *c = strchr(p + 2, '}');
                if (!c) {
                    err_add(E, s->kv[j].line, "[%s] %s: '${' without a closing '}'", s->name, s->kv[j].key);
                    break;
                }
                int ai = axis_index(x, p + 2, (size_t)(c - p - 2));
                if (ai < 0) {
                    char names[300] = "";
                    size_t u = 0;
                    for (int a = 0; a < x->n_axes && u < sizeof names - 64; a++)
                        u += (size_t)snprintf(names + u, sizeof names - u, "%s%s", a ? ", " : "", x->axes[a].name);
                    err_add(E, s->kv[j].line, "[%s] %s: undefined ${%.*s} (%s%s)", s->name, s->kv[j].key,
                            (int)(c - p - 2), p + 2, x->n_axes ? "[grid] axes: " : "no [grid] axes", names);
                } else {
                    used[ai] = 1;
                }
                p = c + 1;
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Per cell
 * ------------------------------------------------------------------------------------------- */
static char *interpolate(const vitq_experiment *x, const char *v, const char **values) {
    sbuf b = {0};
    sb_add(&b, "", 0);
    for (const char *p = v;;) {
        const char *d = strstr(p, "${");
        const char *c = d ? strchr(d + 2, '}') : NULL;
        int ai = c ? axis_index(x, d + 2, (size_t)(c - d - 2)) : -1;
        if (!d || !c || ai < 0) { /* references were checked already; copy the rest */
            sb_str(&b, p);
            break;
        }
        sb_add(&b, p, (size_t)(d - p));
        sb_str(&b, values[ai]);
        p = c + 1;
    }
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

static int cmp_kv_key(const void *a, const void *b) {
    return strcmp(((const vitq_kv *)a)->key, ((const vitq_kv *)b)->key);
}
static int cmp_sec_ptr(const void *a, const void *b) {
    return strcmp((*(const vitq_section *const *)a)->name, (*(const vitq_section *const *)b)->name);
}

static const char *base_name(const char *path, char *buf, size_t n) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(buf, n, "%s", b);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf) *dot = 0;
    return buf;
}

/* Types the harness keys of cell c, fills c->cfg and c->config_text. */
static void type_cell(vitq_experiment *x, vitq_grid_cell *c, errs *E) {
    vitq_run_cfg *cfg = &c->cfg;
    sbuf text = {0};
    const char *last_section = "";
    for (int k = 0; k < N_KEYS; k++) {
        const vitq_grid_key *gk = &g_keys[k];
        const vitq_section *s = vitq_section_find(c->secs, c->n_secs, gk->section);
        const vitq_kv *kv = vitq_section_get(s, gk->p.name);
        const char *v = kv ? kv->value : gk->p.def;
        if (!v) {
            if (s) err_add(E, s ? s->line : 0, "[%s] %s is required (%s)", gk->section, gk->p.name, gk->p.help);
            continue;
        }
        char canon[1100], msg[200];
        if (check_value(&gk->p, v, canon, sizeof canon, msg, sizeof msg) != 0) {
            const vitq_section *raw = vitq_section_find(x->secs, x->n_secs, gk->section);
            const vitq_kv *rkv = vitq_section_get(raw, gk->p.name);
            int templ = rkv && strstr(rkv->value, "${");
            err_add(E, kv ? kv->line : 0, "[%s] %s: %s%s%s%s", gk->section, gk->p.name, msg,
                    templ ? " (in cell " : "", templ ? c->id : "", templ ? ")" : "");
            continue;
        }
        const char *sec = gk->section, *key = gk->p.name;
#define IS(S, KEY) (strcmp(sec, S) == 0 && strcmp(key, KEY) == 0)
        int in_hash = 1;
        if (IS("run", "name")) {
            snprintf(cfg->name, sizeof cfg->name, "%s", v);
            in_hash = 0;
        } else if (IS("run", "output")) {
            snprintf(cfg->output, sizeof cfg->output, "%s", v);
            in_hash = 0;
        } else if (IS("run", "seed")) {
            cfg->seed = strtoull(canon, NULL, 10);
        } else if (IS("run", "threads")) {
            cfg->threads = atoi(canon);
            in_hash = 0;
        } else if (IS("run", "baseline")) {
            cfg->baseline = canon[0] == 't';
            in_hash = 0;
        } else if (IS("run", "calib_mode")) {
            cfg->calib_mode = v;
        } else if (IS("model", "path")) {
            cfg->model_path = v;
            if (!*v) err_add(E, kv ? kv->line : 0, "[model] path: empty");
        } else if (IS("model", "arch")) {
            cfg->arch = v;
        } else if (IS("data", "dataset")) {
            cfg->dataset = v;
            if (!*v) err_add(E, kv ? kv->line : 0, "[data] dataset: empty");
        } else if (IS("data", "eval_split")) {
            cfg->eval_split = v;
        } else if (IS("data", "eval_limit")) {
            cfg->eval_limit = strtoll(canon, NULL, 10);
        } else if (IS("data", "batch")) {
            cfg->batch = atoi(canon);
        } else if (IS("data", "calib_split")) {
            cfg->calib_split = v;
        } else if (IS("data", "calib_size")) {
            cfg->calib_size = atoi(canon);
        } else if (IS("data", "convert_channels")) {
            cfg->convert_channels = canon[0] == 't';
        } else if (IS("hist", "taps")) {
            cfg->hist_taps = v;
        } else if (IS("hist", "bins")) {
            cfg->hist_bins = atoi(canon);
        }
#undef IS
        if (in_hash) {
            if (strcmp(last_section, sec) != 0) sb_fmt(&text, "[%s]\n", sec);
            last_section = sec;
            sb_fmt(&text, "%s = %s\n", key, canon);
        }
    }
    if (!cfg->name[0]) base_name(x->path, cfg->name, sizeof cfg->name);
    if (!cfg->output[0]) snprintf(cfg->output, sizeof cfg->output, "results/%s", cfg->name);
    /* quantizer sections, sorted by name, keys sorted */
    int nq = 0;
    const vitq_section **qs = calloc((size_t)(c->n_secs > 0 ? c->n_secs : 1), sizeof *qs);
    if (!qs) {
        E->oom = 1;
        free(text.s);
        return;
    }
    for (int i = 0; i < c->n_secs; i++)
        if (is_quantizer_section(c->secs[i].name, NULL)) qs[nq++] = &c->secs[i];
    qsort(qs, (size_t)nq, sizeof *qs, cmp_sec_ptr);
    for (int i = 0; i < nq; i++) {
        vitq_kv *kv = malloc((size_t)(qs[i]->n_kv > 0 ? qs[i]->n_kv : 1) * sizeof *kv);
        if (!kv) {
            E->oom = 1;
            break;
        }
        memcpy(kv, qs[i]->kv, (size_t)qs[i]->n_kv * sizeof *kv);
        qsort(kv, (size_t)qs[i]->n_kv, sizeof *kv, cmp_kv_key);
        sb_fmt(&text, "[%s]\n", qs[i]->name);
        for (int j = 0; j < qs[i]->n_kv; j++) sb_fmt(&text, "%s = %s\n", kv[j].key, kv[j].value);
        free(kv);
    }
    free(qs);
    if (text.oom) {
        E->oom = 1;
        free(text.s);
        return;
    }
    c->config_text = text.s;
    uint64_t h = vitq_fnv1a64(text.s, text.n, VITQ_FNV1A64_INIT);
    snprintf(c->hash, sizeof c->hash, "%016llx", (unsigned long long)h);
}

static int make_cell(vitq_experiment *x, vitq_grid_cell *c, const int *vidx, errs *E) {
    c->values = calloc((size_t)(x->n_axes > 0 ? x->n_axes : 1), sizeof *c->values);
    if (!c->values) return E->oom = 1, -1;
    for (int a = 0; a < x->n_axes; a++) c->values[a] = x->axes[a].values[vidx[a]];
    vitq_grid_cell_id(x->axis_names, c->values, x->n_axes, c->id, sizeof c->id);
    /* resolved sections: everything but [grid] */
    int n = 0;
    for (int i = 0; i < x->n_secs; i++) n += strcmp(x->secs[i].name, "grid") != 0;
    vitq_section *tmp = malloc((size_t)(n > 0 ? n : 1) * sizeof *tmp);
    if (!tmp) return E->oom = 1, -1;
    n = 0;
    for (int i = 0; i < x->n_secs; i++)
        if (strcmp(x->secs[i].name, "grid") != 0) tmp[n++] = x->secs[i];
    c->secs = vitq_sections_copy(tmp, n);
    free(tmp);
    if (!c->secs) return E->oom = 1, -1;
    c->n_secs = n;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < c->secs[i].n_kv; j++) {
            vitq_kv *kv = &c->secs[i].kv[j];
            if (!strstr(kv->value, "${")) continue;
            char *nv = interpolate(x, kv->value, c->values);
            if (!nv) return E->oom = 1, -1;
            free(kv->value);
            kv->value = nv;
        }
    }
    type_cell(x, c, E);
    return 0;
}

/* Fills the cells: factors = zip groups and free axes, ordered by their first axis; first slowest. */
static void expand(vitq_experiment *x, errs *E) {
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
        err_add(E, vitq_section_find(x->secs, x->n_secs, "grid")->line, "[grid]: %.0f cells, more than %d",
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
                err_add(E, vitq_section_find(x->secs, x->n_secs, "grid")->line,
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
        free_strs(x->axes[a].values, x->axes[a].n_values);
    }
    free(x->axes);
    free(x->axis_names);
    vitq_sections_free(x->secs, x->n_secs);
    free(x->path);
    free(x->text);
    free(x);
}

static int build(vitq_experiment *x, vitq_experiment **out, vitq_err *e) {
    errs E = {.file = x->path};
    check_sections(x, &E);
    int n0 = E.n;
    parse_grid(x, &E);
    int grid_ok = E.n == n0;
    int *used = calloc((size_t)(x->n_axes + 1), sizeof *used);
    if (!used) E.oom = 1;
    if (used && !E.oom) {
        check_refs(x, &E, used);
        for (int a = 0; a < x->n_axes; a++)
            if (!used[a])
                err_add(&E, x->axes[a].line, "[grid] axis '%s' is never used as ${%s} in any other section",
                        x->axes[a].name, x->axes[a].name);
    }
    free(used);
    if (grid_ok && !E.oom) expand(x, &E);
    int rc = err_finish(&E, e);
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
    x->path = xstrdup(name);
    x->text = xstrdup(text);
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
