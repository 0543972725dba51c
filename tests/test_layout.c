/* test_layout.c — the shape of harness/, enforced (README "How it is built"):
 *
 *   layout_include_rule      every `#include "..."` under harness/ names vitq_plugin.h (the plugin ABI, below
 *                            everything) or a layer header L/L.h whose layer is the file's own or below it in
 *                            core < kernels < model < data < quant < train < run < cli. Anything else (an
 *                            upward include, a private header, a file of another layer) fails, naming the
 *                            file and line.
 *   layout_function_length   no function in harness/ is longer than MAX_LINES lines (from the line of its name
 *                            to its closing brace), found by a brace-matching scan that skips comments,
 *                            strings, character constants and preprocessor lines.
 * Both read the sources from the repository root (the runner's working folder). */
#include "test.h"

#include <ctype.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_LINES = 120 };

static const char *const k_layers[] = {"core", "kernels", "model", "data", "quant", "train", "run", "cli"};
#define N_LAYERS ((int)(sizeof k_layers / sizeof k_layers[0]))

/* Rank of layer name [s, s+n) (0 = core), or -1. */
static int layer_rank(const char *s, size_t n) {
    for (int i = 0; i < N_LAYERS; i++)
        if (strlen(k_layers[i]) == n && !strncmp(k_layers[i], s, n)) return i;
    return -1;
}

/* The layer of a file under harness/: its folder's rank; top-level files are -1 (vitq_plugin.h, vitq.h). */
static int file_rank(const char *path) {
    const char *rel = strstr(path, "harness/");
    if (!rel) return -1;
    rel += 8;
    const char *slash = strchr(rel, '/');
    return slash ? layer_rank(rel, (size_t)(slash - rel)) : -1;
}

/* Checks one `#include "target"` of a file of rank `own`; "" or the reason into why. */
static void include_verdict(const char *target, int own, char *why, size_t n) {
    why[0] = 0;
    if (!strcmp(target, "vitq_plugin.h")) return;
    if (!strcmp(target, "vitq.h")) {
        snprintf(why, n, "the umbrella vitq.h is for programs outside harness/ (include your layer's header)");
        return;
    }
    const char *slash = strchr(target, '/');
    int rank = slash ? layer_rank(target, (size_t)(slash - target)) : -1;
    char want[64];
    if (rank >= 0) snprintf(want, sizeof want, "%s/%s.h", k_layers[rank], k_layers[rank]);
    if (rank < 0 || strcmp(target, want) != 0) {
        snprintf(why, n, "\"%s\" is not a layer header (one per layer: core/core.h, kernels/kernels.h, ...)", target);
    } else if (own < 0) {
        snprintf(why, n, "a top-level header includes the layer header \"%s\"", target);
    } else if (rank > own) {
        snprintf(why, n, "includes \"%s\" (layer %s) from layer %s: upward", target, k_layers[rank], k_layers[own]);
    }
}

static int g_include_errors, g_files;

static int check_includes(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)ftw;
    size_t l = strlen(path);
    if (flag != FTW_F || l < 2 || (strcmp(path + l - 2, ".c") && strcmp(path + l - 2, ".h"))) return 0;
    if (!strcmp(path, "harness/vitq.h")) return 0; /* the umbrella: includes the top library header */
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    g_files++;
    int own = file_rank(path), lineno = 0;
    char line[1024], target[512], why[1024];
    while (fgets(line, sizeof line, f)) {
        lineno++;
        const char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (sscanf(p, "#include \"%511[^\"]\"", target) != 1) continue;
        include_verdict(target, own, why, sizeof why);
        if (why[0]) {
            test_failf(path, lineno, "%s", why);
            g_include_errors++;
        }
    }
    fclose(f);
    return 0;
}

TEST(layout_include_rule) {
    g_include_errors = g_files = 0;
    CHECK_EQ(nftw("harness", check_includes, 16, FTW_PHYS), 0);
    CHECK(g_files > 40);
    CHECK_EQ(g_include_errors, 0);
}

/* ---- function length ------------------------------------------------------------------------- */
/* The text of a C file with comments, string and character literals and preprocessor lines blanked
 * (newlines kept, so line numbers hold). */
static char *code_only(const char *src) {
    size_t n = strlen(src);
    char *t = malloc(n + 1);
    if (!t) return NULL;
    memcpy(t, src, n + 1);
    int bol = 1; /* at the beginning of a line (only spaces so far) */
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (c == '\n') {
            bol = 1;
            continue;
        }
        if (bol && c == '#') { /* a directive, continued by trailing backslashes */
            char prev = 0;
            for (; i < n && !(t[i] == '\n' && prev != '\\'); i++) {
                prev = t[i];
                if (t[i] != '\n') t[i] = ' ';
            }
            bol = 1;
            continue;
        }
        if (!isspace((unsigned char)c)) bol = 0;
        if (c == '/' && t[i + 1] == '*') {
            for (; i + 1 < n && !(t[i] == '*' && t[i + 1] == '/'); i++)
                if (t[i] != '\n') t[i] = ' ';
            t[i] = t[i + 1] = ' ', i++;
        } else if (c == '/' && t[i + 1] == '/') {
            for (; i < n && t[i] != '\n'; i++) t[i] = ' ';
            i--;
        } else if (c == '"' || c == '\'') {
            for (i++; i < n && t[i] != c; i++) {
                if (t[i] == '\\') t[i++] = ' ';
                if (t[i] != '\n') t[i] = ' ';
            }
        }
    }
    return t;
}

static int g_long_functions, g_longest;
static char g_longest_name[128];

/* For each top-level '{' that follows ')', the function's name and length; fails those over MAX_LINES. */
static void scan_functions(const char *path, const char *t) {
    int depth = 0, line = 1, start_line = 0;
    char name[128] = "";
    for (size_t i = 0; t[i]; i++) {
        if (t[i] == '\n') line++;
        if (t[i] == '{') {
            if (depth == 0) {
                size_t k = i;
                while (k > 0 && isspace((unsigned char)t[k - 1])) k--;
                start_line = 0;
                if (k > 0 && t[k - 1] == ')') { /* walk back over the parameter list to the name */
                    int d = 0;
                    while (k > 0) {
                        k--;
                        if (t[k] == ')') d++;
                        else if (t[k] == '(' && --d == 0) break;
                    }
                    while (k > 0 && isspace((unsigned char)t[k - 1])) k--;
                    size_t e = k;
                    while (k > 0 && (isalnum((unsigned char)t[k - 1]) || t[k - 1] == '_')) k--;
                    snprintf(name, sizeof name, "%.*s", (int)(e - k), t + k);
                    start_line = 1;
                    for (size_t j = 0; j < k; j++) start_line += t[j] == '\n';
                }
            }
            depth++;
        } else if (t[i] == '}' && --depth == 0 && start_line) {
            int len = line - start_line + 1;
            if (len > g_longest) g_longest = len, snprintf(g_longest_name, sizeof g_longest_name, "%s", name);
            if (len > MAX_LINES) {
                test_failf(path, start_line, "function %s is %d lines long (at most %d)", name, len, MAX_LINES);
                g_long_functions++;
            }
            start_line = 0;
        }
    }
}

static int check_lengths(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)ftw;
    size_t l = strlen(path);
    if (flag != FTW_F || l < 2 || strcmp(path + l - 2, ".c")) return 0;
    vitq_err e;
    char *src = vitq_read_file(path, NULL, &e);
    char *t = src ? code_only(src) : NULL;
    if (t) scan_functions(path, t);
    free(t);
    free(src);
    return 0;
}

TEST(layout_function_length) {
    g_long_functions = g_longest = 0;
    CHECK_EQ(nftw("harness", check_lengths, 16, FTW_PHYS), 0);
    CHECK_EQ(g_long_functions, 0);
    printf("    longest function: %s, %d lines\n", g_longest_name, g_longest);
}

/* The scanner itself on a known text: a 3-line function, braces in strings and comments ignored. */
TEST(layout_function_scanner) {
    const char *src = "#define X { \\\n  }\nstatic int f(int a) {\n  return a; /* } */\n}\n"
                      "int g(void)\n{\n  const char *s = \"}{\";\n  char c = '}';\n  if (a) { b(); }\n}\n";
    char *t = code_only(src);
    CHECK(t != NULL);
    if (!t) return;
    CHECK(strchr(t, '#') == NULL);
    g_longest = 0;
    scan_functions("inline", t);
    CHECK_EQ(g_longest, 6); /* g: from "int g(void)" to its '}' */
    CHECK_STREQ(g_longest_name, "g");
    free(t);
}
