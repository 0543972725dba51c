/* plugin.c — finds, loads and checks plugins (vitq_plugin.h), and turns INI (key, value) pairs into a
 * plugin's typed params struct.
 *
 * Does: the search path ($VITQ_PLUGIN_PATH, <exe dir>/plugins, <exe dir>/../plugins, <libdir>/vitq/plugins),
 * dlopen(RTLD_NOW | RTLD_LOCAL), the ABI / size / name / required-op / parameter-table checks, one-line
 * errors naming the plugin (and the INI file:line when the caller passes one), parameter parsing with
 * range checks. Does NOT: run plugins (quant.c does), print anything, or dlclose — plugins stay loaded
 * until exit so that ASan's leak reports keep their symbols (VITQ_NO_DLCLOSE is therefore always true).
 * Mirrors darktable's version check and module introspection, LADSPA's path variable.
 */
#include "vitq.h"

#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef VITQ_LIBDIR
#define VITQ_LIBDIR "/usr/local/lib"
#endif

#define MAX_DIRS 32
#define MAX_LOADED 128

/* ABI 1's descriptor size: the smallest `size` this host accepts. */
#define MIN_PLUGIN_SIZE sizeof(vitq_plugin)

typedef struct {
    char path[PATH_MAX];
    const vitq_plugin *p;
} loaded_plugin;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static loaded_plugin g_loaded[MAX_LOADED];
static int g_n_loaded;
static char g_dirs[MAX_DIRS][PATH_MAX];
static const char *g_dir_ptrs[MAX_DIRS];

/* ---------------------------------------------------------------------------------------------
 * Search path
 * ------------------------------------------------------------------------------------------- */
static int build_dirs(void) {
    int n = 0;
    const char *env = getenv("VITQ_PLUGIN_PATH");
    if (env) {
        const char *s = env;
        while (*s && n < MAX_DIRS - 3) {
            const char *c = strchr(s, ':');
            size_t len = c ? (size_t)(c - s) : strlen(s);
            if (len > 0 && len < PATH_MAX) {
                memcpy(g_dirs[n], s, len);
                g_dirs[n][len] = 0;
                n++;
            }
            if (!c) break;
            s = c + 1;
        }
    }
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            if (snprintf(g_dirs[n], PATH_MAX, "%s/plugins", exe) < PATH_MAX) n++;
            if (snprintf(g_dirs[n], PATH_MAX, "%s/../plugins", exe) < PATH_MAX) n++;
        }
    }
    snprintf(g_dirs[n++], PATH_MAX, "%s/vitq/plugins", VITQ_LIBDIR);
    for (int i = 0; i < n; i++) g_dir_ptrs[i] = g_dirs[i];
    return n;
}

int vitq_plugin_dirs(const char **dirs, int max) {
    pthread_mutex_lock(&g_lock);
    int n = build_dirs();
    for (int i = 0; i < n && i < max; i++) dirs[i] = g_dir_ptrs[i];
    pthread_mutex_unlock(&g_lock);
    return n;
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* "a, b, c" of the first n search folders (g_dirs, lock held) into buf. */
static void dirs_list(int n, char *buf, size_t size) {
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < n && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", g_dirs[i]);
}

int vitq_plugin_scan(vitq_plugin_found **out, int *n_out, vitq_err *e) {
    *out = NULL;
    *n_out = 0;
    const char *d[MAX_DIRS];
    int nd = vitq_plugin_dirs(d, MAX_DIRS);
    char dirs_copy[MAX_DIRS][PATH_MAX];
    for (int i = 0; i < nd; i++) snprintf(dirs_copy[i], PATH_MAX, "%s", d[i]);
    vitq_plugin_found *found = NULL;
    char (*real)[PATH_MAX] = NULL;
    int n = 0, cap = 0;
    for (int i = 0; i < nd; i++) {
        /* sorted within a folder for a stable listing */
        struct dirent **ents = NULL;
        int ne = scandir(dirs_copy[i], &ents, NULL, alphasort);
        if (ne < 0) continue;
        for (int j = 0; j < ne; j++) {
            const char *fn = ents[j]->d_name;
            size_t len = strlen(fn);
            char path[PATH_MAX], rp[PATH_MAX];
            if (len > 3 && len - 3 < sizeof found->name && strcmp(fn + len - 3, ".so") == 0 &&
                snprintf(path, sizeof path, "%s/%s", dirs_copy[i], fn) < (int)sizeof path && is_file(path) &&
                realpath(path, rp)) {
                int dup = 0;
                for (int k = 0; k < n; k++) dup |= strcmp(real[k], rp) == 0;
                if (!dup) {
                    if (n == cap) {
                        cap = cap ? 2 * cap : 16;
                        vitq_plugin_found *nf = realloc(found, sizeof *found * (size_t)cap);
                        char(*nr)[PATH_MAX] = realloc(real, sizeof *real * (size_t)cap);
                        if (nf) found = nf;
                        if (nr) real = nr;
                        if (!nf || !nr) {
                            for (int k = j; k < ne; k++) free(ents[k]);
                            free(ents);
                            free(found);
                            free(real);
                            return vitq_fail(e, VITQ_ENOMEM, "out of memory listing plugins");
                        }
                    }
                    memcpy(found[n].name, fn, len - 3);
                    found[n].name[len - 3] = 0;
                    if (snprintf(found[n].path, sizeof found[n].path, "%s", path) >= (int)sizeof found[n].path)
                        found[n].path[0] = 0;
                    snprintf(real[n], PATH_MAX, "%s", rp);
                    n++;
                }
            }
            free(ents[j]);
        }
        free(ents);
    }
    free(real);
    *out = found;
    *n_out = n;
    return VITQ_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Parameter values
 * ------------------------------------------------------------------------------------------- */
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

/* Index of `s` among the '|'-separated choices, or -1. */
static int choice_index(const char *choices, const char *s) {
    int i = 0;
    const char *c = choices;
    size_t sl = strlen(s);
    while (c && *c) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (len == sl && strncmp(c, s, len) == 0) return i;
        i++;
        c = bar ? bar + 1 : NULL;
    }
    return -1;
}

/* The i-th choice into buf. */
static const char *choice_name(const char *choices, int idx, char *buf, size_t n) {
    const char *c = choices;
    buf[0] = 0;
    for (int i = 0; c && *c; i++) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (i == idx) {
            snprintf(buf, n, "%.*s", (int)len, c);
            return buf;
        }
        c = bar ? bar + 1 : NULL;
    }
    return buf;
}

/* Parses text into dst per the param's type; on failure writes "expected ..." into why. */
static int parse_value(const vitq_param *p, const char *text, void *dst, char *why, size_t nwhy) {
    char *end = NULL;
    switch (p->type) {
    case VITQ_P_INT: {
        errno = 0;
        long v = strtol(text, &end, 10);
        if (!*text || *end || errno || (double)v < p->min || (double)v > p->max) {
            snprintf(why, nwhy, "expected an integer in [%.15g, %.15g]", p->min, p->max);
            return -1;
        }
        *(int *)dst = (int)v;
        return 0;
    }
    case VITQ_P_FLOAT: {
        errno = 0;
        double v = strtod(text, &end);
        if (!*text || *end || errno || !isfinite(v) || v < p->min || v > p->max) {
            snprintf(why, nwhy, "expected a number in [%.15g, %.15g]", p->min, p->max);
            return -1;
        }
        *(double *)dst = v;
        return 0;
    }
    case VITQ_P_BOOL: {
        static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no", "off", "0"};
        for (int i = 0; i < 4; i++) {
            if (strcasecmp(text, yes[i]) == 0) { *(int *)dst = 1; return 0; }
            if (strcasecmp(text, no[i]) == 0) { *(int *)dst = 0; return 0; }
        }
        snprintf(why, nwhy, "expected true or false");
        return -1;
    }
    case VITQ_P_ENUM: {
        int i = choice_index(p->choices, text);
        if (i < 0) {
            snprintf(why, nwhy, "expected one of %s", p->choices ? p->choices : "(no choices)");
            return -1;
        }
        *(int *)dst = i;
        return 0;
    }
    case VITQ_P_STRING:
        if (strlen(text) >= VITQ_PARAM_STR_MAX) {
            snprintf(why, nwhy, "expected a string of at most %d bytes", VITQ_PARAM_STR_MAX - 1);
            return -1;
        }
        snprintf((char *)dst, VITQ_PARAM_STR_MAX, "%s", text);
        return 0;
    default:
        snprintf(why, nwhy, "unknown parameter type %d", (int)p->type);
        return -1;
    }
}

static int apply_defaults(const vitq_plugin *pl, void *params, vitq_err *e) {
    memset(params, 0, pl->params_size);
    for (int i = 0; i < pl->n_params; i++) {
        const vitq_param *p = &pl->params[i];
        char why[256];
        if (parse_value(p, p->def ? p->def : "", (char *)params + p->offset, why, sizeof why))
            return vitq_fail(e, VITQ_EPLUGIN, "plugin '%s': parameter '%s': default '%s' is invalid: %s", pl->name,
                             p->name, p->def ? p->def : "(null)", why);
    }
    return VITQ_OK;
}

int vitq_plugin_params_parse(const vitq_plugin *pl, const vitq_kv *kv, int n, void *params, vitq_err *e) {
    int rc = apply_defaults(pl, params, e);
    if (rc) return rc;
    for (int k = 0; k < n; k++) {
        char where[600] = "";
        if (kv[k].file) snprintf(where, sizeof where, "%s:%d: ", kv[k].file, kv[k].line);
        const vitq_param *p = NULL;
        for (int i = 0; i < pl->n_params && !p; i++)
            if (strcmp(pl->params[i].name, kv[k].key) == 0) p = &pl->params[i];
        if (!p) {
            char known[512];
            size_t used = 0;
            known[0] = 0;
            for (int i = 0; i < pl->n_params && used < sizeof known; i++)
                used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "", pl->params[i].name);
            return vitq_fail(e, VITQ_EINVAL, "%splugin '%s' has no parameter '%s' (known: %s)", where, pl->name,
                             kv[k].key, pl->n_params ? known : "none");
        }
        char why[256];
        const char *v = kv[k].value ? kv[k].value : "";
        if (parse_value(p, v, (char *)params + p->offset, why, sizeof why))
            return vitq_fail(e, VITQ_EINVAL, "%skey '%s' of plugin '%s': %s, got '%s'", where, p->name, pl->name, why, v);
    }
    return VITQ_OK;
}

const char *vitq_plugin_params_format(const vitq_plugin *pl, const void *params, char *buf, size_t n) {
    size_t used = 0;
    if (n) buf[0] = 0;
    for (int i = 0; i < pl->n_params && used < n; i++) {
        const vitq_param *p = &pl->params[i];
        const char *f = (const char *)params + p->offset;
        char v[VITQ_PARAM_STR_MAX];
        switch (p->type) {
        case VITQ_P_INT: snprintf(v, sizeof v, "%d", *(const int *)f); break;
        case VITQ_P_FLOAT: snprintf(v, sizeof v, "%.9g", *(const double *)f); break;
        case VITQ_P_BOOL: snprintf(v, sizeof v, "%s", *(const int *)f ? "true" : "false"); break;
        case VITQ_P_ENUM: choice_name(p->choices, *(const int *)f, v, sizeof v); break;
        case VITQ_P_STRING: snprintf(v, sizeof v, "%s", f); break;
        default: snprintf(v, sizeof v, "?"); break;
        }
        used += (size_t)snprintf(buf + used, n - used, "%s%s=%s", i ? " " : "", p->name, v);
    }
    return buf;
}

/* ---------------------------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------------------------- */
/* Checks everything past abi/size. `who` = "plugin 'x' (path)". */
static int check_descriptor(const vitq_plugin *p, const char *base, const char *who, const char *pre, vitq_err *e) {
    if (!p->name || strcmp(p->name, base) != 0)
        return vitq_fail(e, VITQ_EPLUGIN, "%s%s: calls itself '%s'; a plugin's name must equal its file name", pre,
                         who, p->name ? p->name : "(null)");
    if (!p->version || !p->summary)
        return vitq_fail(e, VITQ_EPLUGIN, "%s%s: %s is NULL", pre, who, !p->version ? "version" : "summary");
    if (p->kind == VITQ_PLUGIN_QUANTIZER) {
        const vitq_quantizer_ops *q = p->quantizer;
        const char *miss = !q ? "quantizer ops table"
                           : !q->create ? "quantizer op 'create'"
                           : !q->observe ? "quantizer op 'observe'"
                           : !q->forward ? "quantizer op 'forward'"
                           : !q->destroy ? "quantizer op 'destroy'"
                           : (!q->save) != (!q->load) ? "quantizer op 'save' or 'load' (give both or neither)"
                                                       : NULL;
        if (miss) return vitq_fail(e, VITQ_EPLUGIN, "%s%s: required %s is NULL", pre, who, miss);
    } else if (p->kind == VITQ_PLUGIN_PASS) {
        if (!p->pass || !p->pass->run) return vitq_fail(e, VITQ_EPLUGIN, "%s%s: required pass op 'run' is NULL", pre, who);
    } else {
        return vitq_fail(e, VITQ_EPLUGIN, "%s%s: unknown kind %d (expected quantizer or pass)", pre, who, (int)p->kind);
    }
    if (p->n_params < 0 || (p->n_params > 0 && !p->params))
        return vitq_fail(e, VITQ_EPLUGIN, "%s%s: bad parameter table (%d entries, table %p)", pre, who, p->n_params,
                         (const void *)p->params);
    for (int i = 0; i < p->n_params; i++) {
        const vitq_param *q = &p->params[i];
        if (!q->name || !*q->name)
            return vitq_fail(e, VITQ_EPLUGIN, "%s%s: bad parameter table: entry %d has no name", pre, who, i);
        if ((int)q->type < 0 || q->type >= VITQ_P_NTYPES)
            return vitq_fail(e, VITQ_EPLUGIN, "%s%s: bad parameter table: '%s' has unknown type %d", pre, who, q->name,
                             (int)q->type);
        if (q->offset + ptype_size(q->type) > p->params_size)
            return vitq_fail(e, VITQ_EPLUGIN, "%s%s: bad parameter table: '%s' (offset %zu, %zu bytes) exceeds params_size %zu",
                             pre, who, q->name, q->offset, ptype_size(q->type), p->params_size);
        if (q->type == VITQ_P_ENUM && (!q->choices || !*q->choices))
            return vitq_fail(e, VITQ_EPLUGIN, "%s%s: bad parameter table: enum '%s' has no choices", pre, who, q->name);
        if ((q->type == VITQ_P_INT || q->type == VITQ_P_FLOAT) && !(q->min <= q->max))
            return vitq_fail(e, VITQ_EPLUGIN, "%s%s: bad parameter table: '%s' has min %g > max %g", pre, who, q->name,
                             q->min, q->max);
        for (int j = 0; j < i; j++)
            if (strcmp(p->params[j].name, q->name) == 0)
                return vitq_fail(e, VITQ_EPLUGIN, "%s%s: bad parameter table: '%s' appears twice", pre, who, q->name);
        char scratch[VITQ_PARAM_STR_MAX], why[256];
        if (!q->def || parse_value(q, q->def, scratch, why, sizeof why))
            return vitq_fail(e, VITQ_EPLUGIN, "%s%s: bad parameter table: default '%s' of '%s' does not parse (%s)", pre,
                             who, q->def ? q->def : "(null)", q->name, q->def ? why : "no default");
    }
    return VITQ_OK;
}

static int valid_name(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.') return 0;
    return 1;
}

static int load_locked(const char *name, const char *where, const vitq_plugin **out, vitq_err *e) {
    char pre[600] = "";
    if (where && *where) snprintf(pre, sizeof pre, "%s: ", where);
    char path[PATH_MAX];
    if (strchr(name, '/')) {
        if (!is_file(name))
            return vitq_fail(e, VITQ_EPLUGIN, "%splugin file '%s' not found", pre, name);
        snprintf(path, sizeof path, "%s", name);
    } else {
        if (!valid_name(name))
            return vitq_fail(e, VITQ_EPLUGIN, "%sbad plugin name '%s' (letters, digits, '_' and '-' only)", pre, name);
        int nd = build_dirs();
        char first[PATH_MAX] = "", first_real[PATH_MAX] = "";
        for (int i = 0; i < nd; i++) {
            char cand[PATH_MAX], rp[PATH_MAX];
            if (snprintf(cand, sizeof cand, "%s/%s.so", g_dirs[i], name) >= (int)sizeof cand) continue;
            if (!is_file(cand) || !realpath(cand, rp)) continue;
            if (!first[0]) {
                snprintf(first, sizeof first, "%s", cand);
                snprintf(first_real, sizeof first_real, "%s", rp);
            } else if (strcmp(first_real, rp) != 0) {
                return vitq_fail(e, VITQ_EPLUGIN,
                                 "%splugin '%s' found twice: %s and %s (remove one, or set VITQ_PLUGIN_PATH)", pre, name,
                                 first, cand);
            }
        }
        if (!first[0]) {
            char dl[2048];
            dirs_list(nd, dl, sizeof dl);
            return vitq_fail(e, VITQ_EPLUGIN, "%splugin '%s' not found (searched %s; set VITQ_PLUGIN_PATH)", pre, name,
                             dl);
        }
        snprintf(path, sizeof path, "%s", first);
    }
    char rp[PATH_MAX];
    if (!realpath(path, rp)) snprintf(rp, sizeof rp, "%s", path);
    for (int i = 0; i < g_n_loaded; i++)
        if (strcmp(g_loaded[i].path, rp) == 0) {
            *out = g_loaded[i].p;
            return VITQ_OK;
        }
    /* basename without .so */
    const char *slash = strrchr(path, '/');
    char base[256];
    if (snprintf(base, sizeof base, "%s", slash ? slash + 1 : path) >= (int)sizeof base)
        return vitq_fail(e, VITQ_EPLUGIN, "%splugin file name too long: %s", pre, path);
    size_t bl = strlen(base);
    if (bl > 3 && strcmp(base + bl - 3, ".so") == 0) base[bl - 3] = 0;
    char who[PATH_MAX + 300];
    snprintf(who, sizeof who, "plugin '%s' (%s)", base, path);

    dlerror();
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *err = dlerror();
        return vitq_fail(e, VITQ_EPLUGIN, "%s%s: cannot load: %s", pre, who, err ? err : "unknown dlopen error");
    }
    /* From here on the library stays loaded even on error: never dlclose (see the header comment). */
    dlerror();
    void *sym = dlsym(h, VITQ_PLUGIN_ENTRY_SYMBOL);
    if (!sym)
        return vitq_fail(e, VITQ_EPLUGIN, "%s%s: no symbol '%s' (not a vitq plugin, or built without VITQ_PLUGIN_EXPORT)",
                         pre, who, VITQ_PLUGIN_ENTRY_SYMBOL);
    vitq_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    const vitq_plugin *p = entry();
    if (!p) return vitq_fail(e, VITQ_EPLUGIN, "%s%s: %s() returned NULL", pre, who, VITQ_PLUGIN_ENTRY_SYMBOL);
    if (p->abi != VITQ_PLUGIN_ABI)
        return vitq_fail(e, VITQ_EPLUGIN,
                         "%s%s: built for plugin ABI %u, this vitq speaks %d; rebuild it with 'make' (or against vitq.pc)",
                         pre, who, (unsigned)p->abi, VITQ_PLUGIN_ABI);
    if (p->size < MIN_PLUGIN_SIZE)
        return vitq_fail(e, VITQ_EPLUGIN, "%s%s: descriptor size %u is smaller than ABI %d's %zu bytes; rebuild it", pre,
                         who, (unsigned)p->size, VITQ_PLUGIN_ABI, MIN_PLUGIN_SIZE);
    int rc = check_descriptor(p, base, who, pre, e);
    if (rc) return rc;
    if (g_n_loaded == MAX_LOADED) return vitq_fail(e, VITQ_EPLUGIN, "%s%s: too many plugins loaded (%d)", pre, who, MAX_LOADED);
    snprintf(g_loaded[g_n_loaded].path, sizeof g_loaded[g_n_loaded].path, "%s", rp);
    g_loaded[g_n_loaded].p = p;
    g_n_loaded++;
    *out = p;
    return VITQ_OK;
}

int vitq_plugin_load(const char *name, const char *where, const vitq_plugin **out, vitq_err *e) {
    *out = NULL;
    if (!name || !*name) return vitq_fail(e, VITQ_EPLUGIN, "%s%sempty plugin name", where ? where : "", where ? ": " : "");
    pthread_mutex_lock(&g_lock);
    int rc = load_locked(name, where, out, e);
    pthread_mutex_unlock(&g_lock);
    return rc;
}

const char *vitq_plugin_file(const vitq_plugin *p) {
    const char *r = NULL;
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < g_n_loaded && !r; i++)
        if (g_loaded[i].p == p) r = g_loaded[i].path;
    pthread_mutex_unlock(&g_lock);
    return r;
}
