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
int cmd_merge(int argc, char **argv);

/* ---- vitq run's pieces (cmd_run.c), shared with its MPI driver (mpi.c) ------------------------------ */
/* The --dry-run listing of the selected cells on stdout; a cell already done in the output folder is marked
 * (skipped, or with force recomputed) and counted on the last line. */
void cli_run_print_dry(const vitq_run *r, const vitq_experiment *x, int force);
/* vitq_run_validate; prints every error line when `print`; returns 0, 1 or 130. */
int cli_run_validate(vitq_run *r, int print);
/* The summary table of the run's folder on stdout (as `vitq results`); its exit code. */
int cli_run_table(const vitq_run *r);

/* ---- MPI (mpi.c; the real thing only in `make MPI=1` builds, which define VITQ_MPI) ----------------- */
/* 1 in a build with MPI. */
int cli_mpi_built(void);
/* 1 when this build has MPI and the process was started by an MPI launcher (mpirun: OMPI_COMM_WORLD_SIZE;
 * mpirun or srun --mpi=pmix: PMIX_RANK; PMI-1/2 launchers: PMI_RANK). Never calls MPI_Init. */
int cli_mpi_launched(void);
/* The number of ranks an MPI launcher started (OMPI_COMM_WORLD_SIZE, PMI_SIZE, srun's SLURM_STEP_NUM_TASKS
 * under PMIx), 1 when none did; read from the environment, in every build. */
int cli_mpi_launcher_size(void);
/* This process's rank by the launcher's environment (OMPI_COMM_WORLD_RANK, PMIX_RANK, PMI_RANK); 0 if none. */
int cli_mpi_launcher_rank(void);
/* `vitq run` under mpirun: every rank loads and validates, rank 0 keeps the queue of cells to do and
 * hands the next one to whichever rank asks (its own worker thread included); every rank writes its cells
 * and rebuilds the index (under the folder's lock); rank 0 prints the table. threads_given: --threads was
 * on the command line. Returns the exit code (rank 0's verdict; the other ranks return 0 after recorded
 * cell failures so that mpirun never aborts the job for them). */
int cli_run_mpi(const char *ini, vitq_run_opts *o, int dry, int threads_given);

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
    int min_pos;            /* how many are required unless --help (0: none; the command checks its own) */
} cli_spec;

/* Parses argv[1..argc): table options as "--name VALUE" or "--name=VALUE" (flags take none), and up to
 * spec->max_pos positional arguments into pos. "--help" / "-h" sets *help and stops. Returns 0, or 2 after
 * printing one usage error ("unknown option '--x' (vitq run --help)", "--batch: expected an integer in
 * [1, 65536], got 'x'", "one RUN expected, got 'a' and 'b'", "RUN is required: vitq plot RUN (vitq plot
 * --help)", ...). */
int cli_parse(const cli_spec *spec, int argc, char **argv, const char **pos, int *n_pos, int *help);

#endif
