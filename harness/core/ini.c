/* ini.c — INI text -> vitq_section list, through Debian's inih r55 with line numbers and every error.
 *
 * inih r55 (fixed at library build time: INI_MAX_LINE 200, no line numbers in the handler, multi-line
 * values as repeated handler calls, only the first error's line) is driven through ini_parse_stream with
 * a reader that hands it exactly one source line per call. The reader therefore knows the line number
 * of every handler call, refuses over-long lines instead of letting inih cut them (and shift every later
 * line number), and classifies each line (comment, [section], key) so that lines inih rejects without
 * calling the handler are reported too. Sections are recorded by the reader, so empty sections exist.
 *
 * Does NOT type or validate values (grid.c and the plugin loader do) and does NOT expand ${...}.
 * Mirrors: STYLE.md §1.4 (the counting reader), §5.3 (all errors, sorted by line), §6 (INI rules). */
#include "core/core.h"

#include <ini.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum {
    LINE_MAX_BYTES = INI_MAX_LINE - 1, /* what inih's line buffer holds before the NUL */
    NAME_MAX_BYTES = 49,               /* inih's MAX_SECTION and MAX_NAME are 50 including the NUL */
};

typedef enum { LINE_SKIP = 0, LINE_SECTION, LINE_KEY } line_kind;

typedef struct parser {
    const char *name;          /* file name for messages */
    const char *text;
    size_t pos, len;
    int line;                  /* number of the line last handed to inih */
    line_kind kind;            /* of that line */
    int indented, handled;     /* it began with whitespace; the handler was called for it */
    char excerpt[48];          /* its first bytes, for messages */
    vitq_section *secs;
    int n_secs, cap_secs;
    int cur;                   /* index of the current section, -1 before the first or after a bad one */
    int seen_header;           /* a line starting with '[' was seen */
    int last_kv;               /* index in the current section of the last key set, -1 if none */
    vitq_errs errs;            /* every error, joined sorted by line at the end */
    int oom;
} parser;

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

/* inih's find_chars_or_comment: first of `chars`, or a ';' preceded by whitespace, or the end. */
static const char *find_chars_or_comment(const char *s, const char *chars) {
    int was_space = 0;
    while (*s && (!chars || !strchr(chars, *s)) && !(was_space && *s == ';')) {
        was_space = is_space(*s);
        s++;
    }
    return s;
}

/* Called before the next line is read and at the end: a key line inih did not hand to us is bad syntax. */
static void close_line(parser *p) {
    if (p->kind == LINE_KEY && !p->handled)
        vitq_errs_add(&p->errs, p->line, "expected 'key = value', '[section]' or a comment, got '%s'", p->excerpt);
    p->kind = LINE_SKIP;
    p->handled = 0;
}

static void begin_section(parser *p, const char *name, size_t n) {
    if (n > NAME_MAX_BYTES) {
        vitq_errs_add(&p->errs, p->line, "section name longer than %d bytes", NAME_MAX_BYTES);
        p->cur = -1;
        return;
    }
    for (int i = 0; i < p->n_secs; i++) {
        if (strlen(p->secs[i].name) == n && memcmp(p->secs[i].name, name, n) == 0) {
            vitq_errs_add(&p->errs, p->line, "section [%.*s] given twice (first on line %d)", (int)n, name, p->secs[i].line);
            p->cur = -1;
            p->kind = LINE_SKIP;
            return;
        }
    }
    if (p->n_secs == p->cap_secs) {
        int cap = p->cap_secs ? 2 * p->cap_secs : 8;
        vitq_section *s = realloc(p->secs, (size_t)cap * sizeof *s);
        if (!s) {
            p->oom = 1;
            return;
        }
        p->secs = s;
        p->cap_secs = cap;
    }
    vitq_section *s = &p->secs[p->n_secs];
    memset(s, 0, sizeof *s);
    s->name = dup_n(name, n);
    s->file = dup_n(p->name, strlen(p->name));
    s->line = p->line;
    if (!s->name || !s->file) {
        free(s->name);
        free((char *)s->file);
        p->oom = 1;
        return;
    }
    p->cur = p->n_secs++;
    p->last_kv = -1;
}

/* Looks at the raw line before inih does: sections, over-long names, what kind of line it is. */
static void classify(parser *p, const char *line) {
    const char *s = line;
    if (p->line == 1 && (unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xBB && (unsigned char)s[2] == 0xBF)
        s += 3; /* inih skips a UTF-8 BOM on the first line */
    const char *start = s;
    while (is_space(*start)) start++;
    p->indented = start > s;
    snprintf(p->excerpt, sizeof p->excerpt, "%s", start);
    size_t el = strlen(p->excerpt);
    while (el > 0 && is_space(p->excerpt[el - 1])) p->excerpt[--el] = 0;
    if (*start == 0 || *start == ';' || *start == '#') {
        p->kind = LINE_SKIP;
    } else if (*start == '[') {
        p->seen_header = 1;
        const char *end = find_chars_or_comment(start + 1, "]");
        if (*end != ']') {
            vitq_errs_add(&p->errs, p->line, "'[' without a closing ']'");
            p->kind = LINE_SKIP;
            p->cur = -1; /* inih keeps the old section; we refuse its keys' placement silently */
            return;
        }
        p->kind = LINE_SECTION;
        begin_section(p, start + 1, (size_t)(end - start - 1));
    } else {
        p->kind = LINE_KEY;
        if (!p->indented) {
            const char *sep = find_chars_or_comment(start, "=:");
            if (*sep == '=' || *sep == ':') {
                const char *ke = sep;
                while (ke > start && is_space(ke[-1])) ke--;
                if (ke - start > NAME_MAX_BYTES) {
                    vitq_errs_add(&p->errs, p->line, "key name longer than %d bytes", NAME_MAX_BYTES);
                    p->handled = 1; /* reported; inih would hand us a cut name */
                }
            }
        }
    }
}

/* The ini_reader: one source line per call, never more than inih's buffer holds. */
static char *reader(char *str, int num, void *stream) {
    parser *p = stream;
    close_line(p);
    if (p->pos >= p->len) return NULL;
    const char *at = p->text + p->pos;
    const char *nl = memchr(at, '\n', p->len - p->pos);
    size_t n = nl ? (size_t)(nl - at) : p->len - p->pos;
    p->pos += n + (nl ? 1 : 0);
    p->line++;
    if (n > 0 && at[n - 1] == '\r') n--;
    str[0] = 0;
    if (memchr(at, 0, n)) {
        vitq_errs_add(&p->errs, p->line, "line contains a NUL byte");
    } else if (n > (size_t)(num - 1) || n > LINE_MAX_BYTES) {
        vitq_errs_add(&p->errs, p->line, "line is longer than %d bytes", LINE_MAX_BYTES);
    } else {
        memcpy(str, at, n);
        str[n] = 0;
        classify(p, str);
    }
    return str; /* an empty string is a blank line to inih */
}

/* Is `v` shaped like "identifier = ..."? (an indented key line that inih reads as a continuation) */
static int looks_like_key(const char *v) {
    const char *s = v;
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_')) return 0;
    while ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' ||
           *s == '.')
        s++;
    while (is_space(*s)) s++;
    return *s == '=';
}

static int handler(void *user, const char *section, const char *name, const char *value) {
    parser *p = user;
    (void)section; /* the reader tracks sections itself (inih cuts names at 49 bytes) */
    if (p->handled) return 1; /* already reported for this line */
    p->handled = 1;
    if (p->cur < 0) {
        if (!p->seen_header) vitq_errs_add(&p->errs, p->line, "key '%s' before any [section]", name);
        return 1; /* else: the section header itself was bad and is reported */
    }
    vitq_section *s = &p->secs[p->cur];
    if (p->indented && p->last_kv >= 0 && strcmp(s->kv[p->last_kv].key, name) == 0) {
        if (looks_like_key(value)) {
            vitq_errs_add(&p->errs, p->line,
                      "indented line '%s' continues the value of '%s' (inih reads indented lines as "
                      "continuations); remove the indentation",
                      p->excerpt, name);
            return 1;
        }
        vitq_kv *kv = &s->kv[p->last_kv];
        size_t a = strlen(kv->value), b = strlen(value);
        char *nv = realloc(kv->value, a + b + 2);
        if (!nv) {
            p->oom = 1;
            return 1;
        }
        if (a > 0) nv[a++] = ' ';
        memcpy(nv + a, value, b + 1);
        kv->value = nv;
        return 1;
    }
    for (int i = 0; i < s->n_kv; i++) {
        if (strcmp(s->kv[i].key, name) == 0) {
            vitq_errs_add(&p->errs, p->line, "[%s] key '%s' given twice (first on line %d)", s->name, name, s->kv[i].line);
            return 1;
        }
    }
    vitq_kv *kv = realloc(s->kv, (size_t)(s->n_kv + 1) * sizeof *kv);
    if (!kv) {
        p->oom = 1;
        return 1;
    }
    s->kv = kv;
    vitq_kv *k = &s->kv[s->n_kv];
    k->key = dup_n(name, strlen(name));
    k->value = dup_n(value, strlen(value));
    k->file = s->file;
    k->line = p->line;
    if (!k->key || !k->value) {
        free(k->key);
        free(k->value);
        p->oom = 1;
        return 1;
    }
    p->last_kv = s->n_kv++;
    return 1;
}

void vitq_sections_free(vitq_section *s, int n) {
    if (!s) return;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < s[i].n_kv; j++) {
            free(s[i].kv[j].key);
            free(s[i].kv[j].value);
        }
        free(s[i].kv);
        free(s[i].name);
        free((char *)s[i].file);
    }
    free(s);
}

int vitq_ini_parse_string(const char *text, const char *name, vitq_section **out, int *n_out, vitq_err *e) {
    *out = NULL;
    *n_out = 0;
    parser *p = calloc(1, sizeof *p);
    if (!p) return vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", name);
    p->name = name;
    p->errs.file = name;
    p->text = text;
    p->len = strlen(text);
    p->cur = -1;
    p->last_kv = -1;
    int rc = ini_parse_stream(reader, p, handler, p);
    close_line(p);
    if (rc > 0 && p->errs.n == 0) vitq_errs_add(&p->errs, rc, "syntax error");
    if (rc < 0 || p->oom) {
        vitq_sections_free(p->secs, p->n_secs);
        free(p);
        return vitq_fail(e, VITQ_ENOMEM, "%s: out of memory while parsing", name);
    }
    if (p->errs.n > 0) {
        vitq_errs_finish(&p->errs, e);
        vitq_sections_free(p->secs, p->n_secs);
        free(p);
        return VITQ_EFORMAT;
    }
    *out = p->secs;
    *n_out = p->n_secs;
    free(p);
    return VITQ_OK;
}

int vitq_ini_read(const char *path, vitq_section **out, int *n_out, vitq_err *e) {
    *out = NULL;
    *n_out = 0;
    size_t size = 0;
    char *text = vitq_read_file(path, &size, e);
    if (!text) return VITQ_EIO;
    if (strlen(text) != size) {
        /* find the line of the first NUL for the message */
        int line = 1;
        for (size_t i = 0; i < size && text[i]; i++) line += text[i] == '\n';
        free(text);
        return vitq_fail(e, VITQ_EFORMAT, "%s:%d: line contains a NUL byte (not a text file?)", path, line);
    }
    int rc = vitq_ini_parse_string(text, path, out, n_out, e);
    free(text);
    return rc;
}

const vitq_section *vitq_section_find(const vitq_section *s, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(s[i].name, name) == 0) return &s[i];
    return NULL;
}

const vitq_kv *vitq_section_get(const vitq_section *s, const char *key) {
    if (!s) return NULL;
    for (int i = 0; i < s->n_kv; i++)
        if (strcmp(s->kv[i].key, key) == 0) return &s->kv[i];
    return NULL;
}

vitq_section *vitq_sections_copy(const vitq_section *s, int n) {
    vitq_section *d = calloc((size_t)(n > 0 ? n : 1), sizeof *d);
    if (!d) return NULL;
    for (int i = 0; i < n; i++) {
        d[i].name = dup_n(s[i].name, strlen(s[i].name));
        d[i].file = s[i].file ? dup_n(s[i].file, strlen(s[i].file)) : dup_n("", 0);
        d[i].line = s[i].line;
        d[i].kv = calloc((size_t)(s[i].n_kv > 0 ? s[i].n_kv : 1), sizeof *d[i].kv);
        if (!d[i].name || !d[i].file || !d[i].kv) {
            vitq_sections_free(d, i + 1);
            return NULL;
        }
        for (int j = 0; j < s[i].n_kv; j++) {
            vitq_kv *k = &d[i].kv[j];
            k->key = dup_n(s[i].kv[j].key, strlen(s[i].kv[j].key));
            k->value = dup_n(s[i].kv[j].value, strlen(s[i].kv[j].value));
            k->file = d[i].file;
            k->line = s[i].kv[j].line;
            d[i].n_kv = j + 1;
            if (!k->key || !k->value) {
                vitq_sections_free(d, i + 1);
                return NULL;
            }
        }
    }
    return d;
}
