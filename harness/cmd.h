/* cmd.h — the `vitq` subcommands (one file each: cmd_<name>.c). Private to the command line.
 * Each takes argv after the subcommand name (argv[0] = "vitq NAME") and returns the exit code:
 * 0 done, 1 failed, 2 usage error, 130 interrupted. */
#ifndef VITQ_CMD_H
#define VITQ_CMD_H

#include "vitq.h"

/* Weak until every command lands, so a partial build still links; main() reports a missing one. */
#define VITQ_CMD(name) int cmd_##name(int argc, char **argv) __attribute__((weak))
VITQ_CMD(eval);
VITQ_CMD(inspect);
VITQ_CMD(train);
VITQ_CMD(run);
VITQ_CMD(plugins);
VITQ_CMD(results);
VITQ_CMD(plot);
#undef VITQ_CMD

/* Prints "vitq: error: MSG" on stderr. */
void cmd_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Strict number parsing for options: whole string, range checked; prints an error naming the option. */
int cmd_parse_int(const char *opt, const char *s, long lo, long hi, long *out);
int cmd_parse_float(const char *opt, const char *s, double lo, double hi, double *out);
/* Maps a library error code to the exit code. */
int cmd_exit_code(int rc);

#endif
