/* strbuf.c — a growable string for the text vitq generates (canonical configurations, cell ids, gnuplot
 * scripts and data). After an allocation failure it only remembers that (oom) so callers check once. */
#include "core/core.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Makes room for `more` bytes plus the NUL; 0, or -1 (oom set). */
static int reserve(vitq_sb *b, size_t more) {
    if (b->oom) return -1;
    if (b->n + more + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more + 1) cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) {
        b->oom = 1;
        return -1;
    }
    b->s = s;
    b->cap = cap;
    return 0;
}

void vitq_sb_add(vitq_sb *b, const char *s, size_t n) {
    if (reserve(b, n)) return;
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

void vitq_sb_str(vitq_sb *b, const char *s) { vitq_sb_add(b, s, strlen(s)); }

void vitq_sb_fmt(vitq_sb *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0) {
        b->oom = 1;
        return;
    }
    if (reserve(b, (size_t)k)) return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

char *vitq_sb_take(vitq_sb *b) {
    if (b->oom) {
        free(b->s);
        b->s = NULL;
        return NULL;
    }
    char *s = b->s ? b->s : calloc(1, 1);
    b->s = NULL;
    b->n = b->cap = 0;
    return s;
}
