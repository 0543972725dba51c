/* opts.c — the one option parser of the `vitq` command: every command declares a table of its options
 * (name, alias, type, destination, bounds) and gets the same syntax (--name VALUE, --name=VALUE), the
 * same checks (integers strictly parsed and range-checked, no empty values) and the same messages. */
#include "cli/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void cli_error(const char *fmt, ...) {
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (const char *p = msg;;) {
        const char *nl = strchr(p, '\n');
        fprintf(stderr, "vitq: error: %.*s\n", nl ? (int)(nl - p) : (int)strlen(p), p);
        if (!nl) break;
        p = nl + 1;
    }
}

int cli_exit_code(int rc) {
    if (rc == 0) return 0;
    if (rc == VITQ_ECANCELLED) return 130;
    return 1;
}

char *cli_command_line(int argc, char **argv) {
    vitq_sb b = {0};
    vitq_sb_fmt(&b, "vitq %s", argv[0]);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int plain = *a != 0;
        for (const char *q = a; *q && plain; q++)
            plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=,:+", *q) != NULL;
        vitq_sb_str(&b, plain ? " " : " '");
        for (const char *q = a; *q; q++) vitq_sb_str(&b, *q == '\'' && !plain ? "'\\''" : (char[2]){*q, 0});
        if (!plain) vitq_sb_str(&b, "'");
    }
    return vitq_sb_take(&b);
}

/* The table row of argument a ("--name" or "--name=value" or the alias), or NULL; *eq: its '=' or NULL. */
static const cli_opt *find(const cli_spec *s, const char *a, const char **eq) {
    *eq = NULL;
    for (int i = 0; i < s->n_opts; i++) {
        const cli_opt *o = &s->opts[i];
        size_t l = strlen(o->name);
        if (o->alias && !strcmp(a, o->alias)) return o;
        if (strncmp(a, o->name, l) != 0 || (a[l] && a[l] != '=')) continue;
        if (a[l] == '=') *eq = a + l + 1;
        return o;
    }
    return NULL;
}

/* Stores value v of option o; 0 or 2 after the message. */
static int store(const cli_opt *o, const char *v) {
    if (!*v) {
        cli_error("%s: empty value", o->name);
        return 2;
    }
    if (o->type == CLI_STR) {
        *(const char **)o->dst = v;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (*end || errno || x < o->lo || x > o->hi) {
        cli_error("%s: expected an integer in [%ld, %ld], got '%s'", o->name, o->lo, o->hi, v);
        return 2;
    }
    *(long *)o->dst = x;
    return 0;
}

int cli_parse(const cli_spec *s, int argc, char **argv, const char **pos, int *n_pos, int *help) {
    *n_pos = 0;
    *help = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *eq = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            *help = 1;
            continue;
        }
        const cli_opt *o = a[0] == '-' && a[1] ? find(s, a, &eq) : NULL;
        if (o && o->type == CLI_FLAG && !eq) {
            *(int *)o->dst = 1;
        } else if (o && o->type != CLI_FLAG) {
            if (!eq && i + 1 >= argc) {
                cli_error("%s needs a value (vitq %s --help)", a, s->cmd);
                return 2;
            }
            if (store(o, eq ? eq : argv[++i])) return 2;
        } else if (a[0] == '-' && a[1]) {
            cli_error("unknown option '%s' (vitq %s --help)", a, s->cmd);
            return 2;
        } else if (*n_pos < s->max_pos) {
            pos[(*n_pos)++] = a;
        } else if (s->pos_name && *n_pos > 0) {
            cli_error("one %s expected, got '%s' and '%s'", s->pos_name, pos[0], a);
            return 2;
        } else {
            cli_error("unexpected argument '%s' (vitq %s --help)", a, s->cmd);
            return 2;
        }
    }
    if (!*help && *n_pos < s->min_pos) {
        cli_error("%s is required: vitq %s %s (vitq %s --help)", s->pos_name, s->cmd, s->pos_name, s->cmd);
        return 2;
    }
    return 0;
}
