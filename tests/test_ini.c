/* test_ini.c — the INI reader (harness/core/ini.c) over Debian's inih r55: line numbers after continuations,
 * over-long lines, duplicate keys and sections, keys before a section, bad syntax, all errors sorted. */
#include "test.h"

#include <stdlib.h>
#include <string.h>


static int count_lines(const char *s) {
    int n = 1;
    for (; *s; s++) n += *s == '\n';
    return n;
}

TEST(ini_basic_values_and_lines) {
    const char *text = "; comment\n"
                       "[run]\n"
                       "name = demo   ; inline comment\n"
                       "seed=3\n"
                       "\n"
                       "# another comment\n"
                       "[quantizer w]\n"
                       "taps = blocks.*.attn.qkv.weight\n"
                       "[hist]\n";
    vitq_section *s = NULL;
    int n = 0;
    vitq_err e = {{0}};
    int rc = vitq_ini_parse_string(text, "a.ini", &s, &n, &e);
    CHECK_MSG(rc == 0, "rc %d: %s", rc, e.msg);
    if (rc) return;
    CHECK(n == 3);
    CHECK_STREQ(s[0].name, "run");
    CHECK_EQ(s[0].line, 2);
    CHECK_EQ(s[0].n_kv, 2);
    CHECK_STREQ(s[0].kv[0].key, "name");
    CHECK_STREQ(s[0].kv[0].value, "demo");
    CHECK_EQ(s[0].kv[0].line, 3);
    CHECK_STREQ(s[0].kv[0].file, "a.ini");
    CHECK_STREQ(s[0].kv[1].value, "3");
    CHECK_EQ(s[0].kv[1].line, 4);
    CHECK_STREQ(s[1].name, "quantizer w");
    CHECK_EQ(s[1].line, 7);
    CHECK(s[1].kv[0].line == 8);
    /* empty section kept */
    CHECK_STREQ(s[2].name, "hist");
    CHECK_EQ(s[2].n_kv, 0);
    CHECK_EQ(s[2].line, 9);
    const vitq_section *h = vitq_section_find(s, n, "quantizer w");
    CHECK(h == &s[1]);
    CHECK(vitq_section_get(h, "taps") == &s[1].kv[0]);
    CHECK(vitq_section_get(h, "nope") == NULL);
    vitq_section *c = vitq_sections_copy(s, n);
    CHECK(c);
    if (c) {
        CHECK_STREQ(c[1].kv[0].value, "blocks.*.attn.qkv.weight");
        CHECK_EQ(c[1].kv[0].line, 8);
    }
    vitq_sections_free(c, n);
    vitq_sections_free(s, n);
}

TEST(ini_continuation_keeps_line_numbers) {
    const char *text = "[grid]\n"
                       "bits = 8, 6,\n"
                       "   4, 3\n"
                       "softmax = uniform,\n"
                       "\tlog2\n"
                       "after = 1\n";
    vitq_section *s = NULL;
    int n = 0;
    vitq_err e = {{0}};
    int rc = vitq_ini_parse_string(text, "c.ini", &s, &n, &e);
    CHECK_MSG(rc == 0, "%s", e.msg);
    if (rc) return;
    CHECK_EQ(n, 1);
    CHECK_EQ(s[0].n_kv, 3);
    CHECK(strcmp(s[0].kv[0].value, "8, 6, 4, 3") == 0);
    CHECK(s[0].kv[0].line == 2);
    CHECK_STREQ(s[0].kv[1].value, "uniform, log2");
    CHECK_EQ(s[0].kv[1].line, 4);
    CHECK_STREQ(s[0].kv[2].key, "after");
    CHECK_EQ(s[0].kv[2].line, 6);
    vitq_sections_free(s, n);
}

TEST(ini_overlong_line_is_an_error_with_its_line) {
    char text[1024];
    char longv[260];
    memset(longv, 'x', sizeof longv - 1);
    longv[sizeof longv - 1] = 0;
    /* line 3 is 8 + 259 bytes; a 199-byte line (line 5) is still fine */
    char ok199[200];
    memset(ok199, 'y', 199);
    memcpy(ok199, "ok = ", 5);
    ok199[199] = 0;
    snprintf(text, sizeof text, "[run]\nname = a\nlong = %s\nseed = 1\n%s\nbad line\n", longv, ok199);
    vitq_section *s = NULL;
    int n = 0;
    vitq_err e = {{0}};
    int rc = vitq_ini_parse_string(text, "l.ini", &s, &n, &e);
    CHECK_EQ(rc, VITQ_EFORMAT);
    CHECK(s == NULL);
    CHECK_EQ(n, 0);
    CHECK_MSG(strcmp(e.msg, "l.ini:3: line is longer than 199 bytes\n"
                            "l.ini:6: expected 'key = value', '[section]' or a comment, got 'bad line'") == 0,
              "got: %s", e.msg);
    /* without the bad line everything after the long line keeps its number */
    snprintf(text, sizeof text, "[run]\nname = a\nseed = 1\n%s\nx = 2\n", ok199);
    rc = vitq_ini_parse_string(text, "l.ini", &s, &n, &e);
    CHECK_MSG(rc == 0, "%s", e.msg);
    if (rc == 0) {
        CHECK_EQ(s[0].n_kv, 4);
        CHECK_EQ(strlen(s[0].kv[2].value), 194);
        CHECK_EQ(s[0].kv[3].line, 5);
        vitq_sections_free(s, n);
    }
}

TEST(ini_duplicate_key_and_section) {
    const char *text = "[run]\n"
                       "seed = 1\n"
                       "seed = 2\n"
                       "[data]\n"
                       "[run]\n";
    vitq_section *s = NULL;
    int n = 0;
    vitq_err e = {{0}};
    int rc = vitq_ini_parse_string(text, "d.ini", &s, &n, &e);
    CHECK(rc == VITQ_EFORMAT);
    CHECK_MSG(strcmp(e.msg, "d.ini:3: [run] key 'seed' given twice (first on line 2)\n"
                            "d.ini:5: section [run] given twice (first on line 1)") == 0,
              "got: %s", e.msg);
}

TEST(ini_key_before_section) {
    vitq_section *s = NULL;
    int n = 0;
    vitq_err e = {{0}};
    int rc = vitq_ini_parse_string("\nseed = 1\n[run]\nname = x\n", "k.ini", &s, &n, &e);
    CHECK(rc == VITQ_EFORMAT);
    CHECK_MSG(strcmp(e.msg, "k.ini:2: key 'seed' before any [section]") == 0, "got: %s", e.msg);
}

TEST(ini_indented_key_is_not_silently_joined) {
    vitq_section *s = NULL;
    int n = 0;
    vitq_err e = {{0}};
    int rc = vitq_ini_parse_string("[run]\n  name = x\n  seed = 1\n", "i.ini", &s, &n, &e);
    CHECK(rc == VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "i.ini:3: indented line 'seed = 1' continues the value of 'name'");
}

TEST(ini_all_errors_collected_and_sorted) {
    /* 25 bad lines: 20 are shown sorted, then a count of the rest (within the 1024-byte message) */
    char text[4096] = "[run]\n";
    for (int i = 0; i < 25; i++) strcat(text, i % 2 ? "[unclosed\n" : "junk\n");
    strcat(text, "seed = 1\nseed = 2\n");
    vitq_section *s = NULL;
    int n = 0;
    vitq_err e = {{0}};
    int rc = vitq_ini_parse_string(text, "m.ini", &s, &n, &e);
    CHECK(rc == VITQ_EFORMAT);
    CHECK(strncmp(e.msg, "m.ini:2: expected", 17) == 0);
    CHECK_STR_CONTAINS(e.msg, "\nm.ini:3: '[' without a closing ']'\nm.ini:4: expected");
    CHECK_STR_CONTAINS(e.msg, "more errors");
    /* line numbers ascend */
    int last = 0, ok = 1, lines = count_lines(e.msg);
    for (const char *p = e.msg; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        int l = atoi(p + 6);
        if (strncmp(p, "m.ini: ...", 10) == 0) continue;
        if (l < last) ok = 0;
        last = l;
    }
    CHECK(ok);
    CHECK(lines >= 10);
    CHECK(lines <= 21);
}

TEST(ini_read_file_and_missing_file) {
    const char *dir = test_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/x.ini", dir);
    FILE *f = fopen(path, "w");
    fputs("\xEF\xBB\xBF[model]\r\npath = m.safetensors\r\n", f);
    fclose(f);
    vitq_section *s = NULL;
    int n = 0;
    vitq_err e = {{0}};
    int rc = vitq_ini_read(path, &s, &n, &e);
    CHECK_MSG(rc == 0, "%s", e.msg);
    if (rc == 0) {
        CHECK_EQ(n, 1);
        CHECK_STREQ(s[0].name, "model");
        CHECK_STREQ(s[0].kv[0].value, "m.safetensors");
        CHECK_STREQ(s[0].kv[0].file, path);
        CHECK_EQ(s[0].kv[0].line, 2);
        vitq_sections_free(s, n);
    }
    snprintf(path, sizeof path, "%s/missing.ini", dir);
    rc = vitq_ini_read(path, &s, &n, &e);
    CHECK(rc == VITQ_EIO);
    CHECK_STR_CONTAINS(e.msg, "missing.ini");
}
