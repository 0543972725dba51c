/* main.c — `vitq COMMAND ...`: dispatch, locale, Ctrl-C. The commands are cmd_*.c; their options go
 * through opts.c. */
#include "cli/cli.h"

#include <locale.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} command;

static const command k_cmds[] = {
    {"eval", cmd_eval, "evaluate a model in float32 on a dataset (top-1, top-5, loss, images/s)"},
    {"inspect", cmd_inspect, "print a checkpoint's architecture, tensors and parameter count"},
    {"train", cmd_train, "train a ViT from an INI file (the bundled Fashion-MNIST model)"},
    {"run", cmd_run, "run an INI ablation grid; results in HDF5, resumable"},
    {"plugins", cmd_plugins, "list quantizer and pass plugins and their parameters"},
    {"results", cmd_results, "print a run's summary table (Markdown or CSV)"},
    {"plot", cmd_plot, "draw accuracy-vs-bits curves and activation histograms with gnuplot"},
    {"merge", cmd_merge, "combine run folders of one experiment (shards) into one run"},
};
#define N_CMDS ((int)(sizeof k_cmds / sizeof k_cmds[0]))

static void usage(FILE *to) {
    fprintf(to, "usage: vitq COMMAND [OPTIONS]   (vitq COMMAND --help for its options)\n\n"
                "Post-training quantization harness for Vision Transformers.\n\ncommands:\n");
    for (int i = 0; i < N_CMDS; i++) fprintf(to, "  %-9s %s\n", k_cmds[i].name, k_cmds[i].summary);
}

static void on_sigint(int sig) {
    (void)sig;
    if (vitq_interrupted) _exit(130); /* second Ctrl-C: stop now */
    vitq_interrupted = 1;
}

int main(int argc, char **argv) {
    vitq_blas_setup(argv);  /* may re-execute with the chosen OpenBLAS kernels (kernels/blas.c) */
    setlocale(LC_ALL, "C"); /* numbers are always read and written with '.' */
    if (argc == 3 && !strcmp(argv[1], "help")) /* vitq help COMMAND = vitq COMMAND --help */
        for (int i = 0; i < N_CMDS; i++)
            if (!strcmp(argv[2], k_cmds[i].name)) return k_cmds[i].fn(2, (char *[]){argv[2], "--help", NULL});
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout); /* no command is an error: usage on stderr, as for an unknown one */
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("vitq %s%s\nOpenBLAS kernels: %s (VITQ_BLAS_CORETYPE=%s)\n", VITQ_VERSION, cli_mpi_built() ? " (MPI)" : "",
               vitq_blas_core(), getenv("VITQ_BLAS_CORETYPE") ? getenv("VITQ_BLAS_CORETYPE") : "auto");
        return 0;
    }
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    for (int i = 0; i < N_CMDS; i++)
        if (!strcmp(argv[1], k_cmds[i].name)) return k_cmds[i].fn(argc - 1, argv + 1);
    cli_error("unknown command '%s'", argv[1]);
    usage(stderr);
    return 2;
}
