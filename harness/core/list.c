/* list.c — comma-separated lists (grid axis values, zip groups, tap globs) split into trimmed items of
 * any length, and fnmatch(3) globs over such lists. The one list parser: nothing else tokenises values. */
#include "core/core.h"

#include <ctype.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

void vitq_strs_free(char **v, int n) {
    for (int i = 0; v && i < n; i++) free(v[i]);
    free(v);
}

int vitq_list_split(const char *s, char sep, int flags, char ***out, int *n) {
    *out = NULL;
    *n = 0;
    int cap = 1;
    for (const char *c = s; *c; c++) cap += *c == sep;
    char **v = calloc((size_t)cap, sizeof *v);
    if (!v) return VITQ_ENOMEM;
    int k = 0;
    for (const char *c = s;;) {
        const char *end = strchr(c, sep);
        if (!end) end = c + strlen(c);
        const char *b = c, *e = end;
        while (b < e && isspace((unsigned char)*b)) b++;
        while (e > b && isspace((unsigned char)e[-1])) e--;
        if (e > b || !(flags & VITQ_LIST_DROP_EMPTY)) {
            if (!(v[k] = strndup(b, (size_t)(e - b)))) {
                vitq_strs_free(v, k);
                return VITQ_ENOMEM;
            }
            k++;
        }
        if (!*end) break;
        c = end + 1;
    }
    *out = v;
    *n = k;
    return VITQ_OK;
}

int vitq_glob_any(char *const *globs, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (fnmatch(globs[i], name, 0) == 0) return 1;
    return 0;
}

int vitq_globs_match(const char *list, const char *name) {
    char **g = NULL;
    int n = 0;
    if (vitq_list_split(list, ',', VITQ_LIST_DROP_EMPTY, &g, &n)) return -1;
    int hit = vitq_glob_any(g, n, name);
    vitq_strs_free(g, n);
    return hit;
}
