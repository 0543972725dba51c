/* err.c — one-line errors, aligned allocation and reading whole files.
 * Nothing here prints or exits: callers get a code and a message naming the path at fault.
 * Also the collector that turns many errors (every bad line of an INI) into one sorted vitq_err. */

#include "core/core.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int vitq_fail(vitq_err *e, int code, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void *vitq_alloc(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = 64;
    bytes = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, bytes) != 0) return NULL;
    memset(p, 0, bytes);
    return p;
}

void vitq_free(void *p) { free(p); }

char *vitq_read_file(const char *path, size_t *size, vitq_err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        vitq_fail(e, VITQ_EIO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        vitq_fail(e, VITQ_EIO, "%s: not a regular file", path);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        fclose(f);
        vitq_fail(e, VITQ_ENOMEM, "%s: out of memory reading %lld bytes", path, (long long)st.st_size);
        return NULL;
    }
    size_t got = fread(buf, 1, (size_t)st.st_size, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != (size_t)st.st_size) {
        free(buf);
        vitq_fail(e, VITQ_EIO, "%s: read error", path);
        return NULL;
    }
    buf[got] = 0;
    if (size) *size = got;
    return buf;
}

void vitq_errs_add(vitq_errs *E, int line, const char *fmt, ...) {
    char m[sizeof E->msg[0]];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    for (int i = 0; i < E->n; i++)
        if (E->line[i] == line && (line > 0 || strcmp(E->msg[i], m) == 0)) return; /* one per line */
    if (E->n >= VITQ_ERRS_MAX) {
        E->dropped++;
        return;
    }
    E->line[E->n] = line;
    memcpy(E->msg[E->n], m, sizeof m);
    E->n++;
}

int vitq_errs_finish(const vitq_errs *E, vitq_err *e) {
    if (E->oom) return vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", E->file);
    if (E->n == 0 && E->dropped == 0) return VITQ_OK;
    int idx[VITQ_ERRS_MAX];
    for (int i = 0; i < E->n; i++) idx[i] = i;
    for (int i = 1; i < E->n; i++) { /* stable insertion sort by line */
        int v = idx[i], j = i - 1;
        while (j >= 0 && E->line[idx[j]] > E->line[v]) {
            idx[j + 1] = idx[j];
            j--;
        }
        idx[j + 1] = v;
    }
    if (!e) return VITQ_EFORMAT;
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
    return VITQ_EFORMAT;
}
