/* cli/cli.h — the `vitq` command: main (dispatch, locale, Ctrl-C), one option-table parser shared by every
 * command, and one file per command (cmd_<name>.c). Each command takes argv after the command name
 * (argv[0] = its name) and returns the exit code: 0 done, 1 failed, 2 usage error, 130 interrupted.
 * Results go to stdout, diagnostics to stderr ("vitq: error: ..."). Not part of libvitq. */
#ifndef VITQ_CLI_H
#define VITQ_CLI_H

#include "run/run.h"

int cmd_eval(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_plugins(int argc, char **argv);
int cmd_results(int argc, char **argv);
int cmd_plot(int argc, char **argv);

/* Prints "vitq: error: MSG" on stderr; a multi-line message gives one such line per line. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Maps a library error code to the exit code (0, 1, or 130 for VITQ_ECANCELLED). */
int cli_exit_code(int rc);
/* The command line as a shell would need it ("vitq NAME ARGS", quoted where needed); malloc'd. */
char *cli_command_line(int argc, char **argv);

/* ---- options (opts.c) -------------------------------------------------------------------------- */
typedef enum {
    CLI_FLAG, /* no value: *(int *)dst = 1 */
    CLI_STR,  /* a non-empty value: *(const char **)dst */
    CLI_INT,  /* an integer in [lo, hi]: *(long *)dst */
} cli_opt_type;

typedef struct cli_opt {
    const char *name;  /* "--threads" */
    const char *alias; /* "-q", or NULL */
    cli_opt_type type;
    void *dst;
    long lo, hi;       /* CLI_INT bounds */
} cli_opt;

typedef struct cli_spec {
    const char *cmd;        /* "run": named in "(vitq run --help)" hints */
    const cli_opt *opts;
    int n_opts;
    const char *pos_name;   /* what a positional argument is ("INI file"); NULL: none allowed */
    int max_pos;            /* how many (0 or 1 so far) */
} cli_spec;

/* Parses argv[1..argc): table options as "--name VALUE" or "--name=VALUE" (flags take none), and up to
 * spec->max_pos positional arguments into pos. "--help" / "-h" sets *help and stops. Returns 0, or 2 after
 * printing one usage error ("unknown option '--x' (vitq run --help)", "--batch: expected an integer in
 * [1, 65536], got 'x'", "one RUN expected, got 'a' and 'b'", ...). */
int cli_parse(const cli_spec *spec, int argc, char **argv, const char **pos, int *n_pos, int *help);

#endif
