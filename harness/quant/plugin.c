/* plugin.c — finds, loads and checks plugins (vitq_plugin.h).
 *
 * Does: the search path ($VITQ_PLUGIN_PATH, <exe dir>/plugins, <exe dir>/../plugins, <libdir>/vitq/plugins),
 * dlopen(RTLD_NOW | RTLD_LOCAL), the ABI / size / name / ops-table size / required-op / parameter-table
 * checks, one-line errors naming the plugin (and the INI file:line when the caller passes one).
 * Does NOT: parse parameters (params.c), run plugins (qmodel.c, qcalib.c), print anything, or dlclose —
 * plugins stay loaded until exit so that ASan's leak reports keep their symbols (VITQ_NO_DLCLOSE is
 * therefore always true). Mirrors darktable's version check and module introspection, LADSPA's path
 * variable.
 */
#include "quant/quant.h"

#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef VITQ_LIBDIR
#define VITQ_LIBDIR "/usr/local/lib"
#endif

#define MAX_DIRS 32
#define MAX_LOADED 128

/* This ABI's descriptor and ops-table sizes: the smallest `size` this host accepts. */
#define MIN_PLUGIN_SIZE sizeof(vitq_plugin)
#define MIN_QUANTIZER_OPS_SIZE offsetof(vitq_quantizer_ops, clone) /* clone was appended within ABI 2 */
#define MIN_PASS_OPS_SIZE sizeof(vitq_pass_ops)

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
                snprintf(path, sizeof path, "%s/%s", dirs_copy[i], fn) < (int)sizeof path && vitq_is_file(path) &&
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
        if (q && q->size < MIN_QUANTIZER_OPS_SIZE)
            return vitq_fail(e, VITQ_EPLUGIN, "%s%s: quantizer ops table size %u is smaller than ABI %d's %zu bytes; "
                             "set .size = sizeof(vitq_quantizer_ops) and rebuild", pre, who, (unsigned)q->size,
                             VITQ_PLUGIN_ABI, MIN_QUANTIZER_OPS_SIZE);
        const char *miss = !q ? "quantizer ops table"
                           : !q->create ? "quantizer op 'create'"
                           : !q->observe ? "quantizer op 'observe'"
                           : !q->forward ? "quantizer op 'forward'"
                           : !q->destroy ? "quantizer op 'destroy'"
                           : (!q->save) != (!q->load) ? "quantizer op 'save' or 'load' (give both or neither)"
                                                       : NULL;
        if (miss) return vitq_fail(e, VITQ_EPLUGIN, "%s%s: required %s is NULL", pre, who, miss);
    } else if (p->kind == VITQ_PLUGIN_PASS) {
        if (p->pass && p->pass->size < MIN_PASS_OPS_SIZE)
            return vitq_fail(e, VITQ_EPLUGIN, "%s%s: pass ops table size %u is smaller than ABI %d's %zu bytes; rebuild it",
                             pre, who, (unsigned)p->pass->size, VITQ_PLUGIN_ABI, MIN_PASS_OPS_SIZE);
        if (!p->pass || !p->pass->run) return vitq_fail(e, VITQ_EPLUGIN, "%s%s: required pass op 'run' is NULL", pre, who);
    } else {
        return vitq_fail(e, VITQ_EPLUGIN, "%s%s: unknown kind %d (expected quantizer or pass)", pre, who, (int)p->kind);
    }
    char why[512];
    if (vitq_plugin_params_check(p, why, sizeof why))
        return vitq_fail(e, VITQ_EPLUGIN, "%s%s: bad parameter table: %s", pre, who, why);
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
        if (!vitq_is_file(name))
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
            if (!vitq_is_file(cand) || !realpath(cand, rp)) continue;
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
