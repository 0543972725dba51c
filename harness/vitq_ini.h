/* vitq_ini.h — reading INI files into vitq_section lists (ini.c), with a file and line on every value.
 *
 * Built on Debian's inih r55 (<ini.h>). What this adds to inih, and why (STYLE.md §1.4, §9):
 *   - every section and value carries its file and line (the r55 handler never sees a line number);
 *   - a line longer than 199 bytes is an error, never a silent truncation;
 *   - a continuation line (indented, right after a key) appends to the previous value, joined by one space;
 *   - a key given twice in a section, a section given twice, a key before any [section], a line that is
 *     neither a comment, a [section] nor 'key = value', and names longer than inih's 49-byte limit are errors;
 *   - ALL errors are collected (up to 20), sorted by line, and returned joined with '\n' in vitq_err, each
 *     one "FILE:LINE: message".
 * Values are kept as text; typing and validation are the caller's job (grid.c, train).
 * Sections appear in file order (empty sections included), keys in file order within their section. */
#ifndef VITQ_INI_H
#define VITQ_INI_H

#include "vitq.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads and parses the INI file at `path`. On success *out holds *n_out sections (free with
 * vitq_sections_free). On failure returns VITQ_EIO (cannot read) or VITQ_EFORMAT (syntax) and *out = NULL. */
VITQ_API int vitq_ini_read(const char *path, vitq_section **out, int *n_out, vitq_err *e);
/* Same, from text in memory; `name` stands for the file in messages and in every vitq_kv.file. */
VITQ_API int vitq_ini_parse_string(const char *text, const char *name, vitq_section **out, int *n_out,
                                   vitq_err *e);
/* Frees what the two functions above return (and sections built with the helpers below). NULL is fine. */
VITQ_API void vitq_sections_free(vitq_section *s, int n);

/* Helpers for code that builds or queries section lists. */
/* First section named `name` (exact), or NULL. */
VITQ_API const vitq_section *vitq_section_find(const vitq_section *s, int n, const char *name);
/* The kv of `key` in section s, or NULL. */
VITQ_API const vitq_kv *vitq_section_get(const vitq_section *s, const char *key);
/* Deep copy of n sections (every string owned by the copy); NULL on out-of-memory. */
VITQ_API vitq_section *vitq_sections_copy(const vitq_section *s, int n);

#ifdef __cplusplus
}
#endif
#endif
