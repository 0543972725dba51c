/* main.c — `vitq COMMAND ...`: dispatch, locale, Ctrl-C, and the shared option helpers. */
#include "cmd.h"

#include <errno.h>
#include <locale.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} command;

static void usage(FILE *to, const command *cmds, int n) {
    fprintf(to, "usage: vitq COMMAND [OPTIONS]   (vitq COMMAND --help for its options)\n\n"
                "Post-training quantization harness for Vision Transformers.\n\ncommands:\n");
    for (int i = 0; i < n; i++) fprintf(to, "  %-9s %s\n", cmds[i].name, cmds[i].summary);
}

void cmd_error(const char *fmt, ...) {
    va_list ap;
    fputs("vitq: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cmd_parse_int(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi) {
        cmd_error("%s: expected an integer in [%ld, %ld], got '%s'", opt, lo, hi, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

int cmd_parse_float(const char *opt, const char *s, double lo, double hi, double *out) {
    char *end = NULL;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || errno || !(v >= lo && v <= hi)) {
        cmd_error("%s: expected a number in [%g, %g], got '%s'", opt, lo, hi, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

int cmd_exit_code(int rc) {
    if (rc == 0) return 0;
    if (rc == VITQ_ECANCELLED) return 130;
    return 1;
}

static void on_sigint(int sig) {
    (void)sig;
    if (vitq_interrupted) _exit(130); /* second Ctrl-C: stop now */
    vitq_interrupted = 1;
}

int main(int argc, char **argv) {
    const command cmds[] = {
        {"eval", cmd_eval, "evaluate a model in float32 on a dataset (top-1, top-5, loss, images/s)"},
        {"inspect", cmd_inspect, "print a checkpoint's architecture, tensors and parameter count"},
        {"train", cmd_train, "train a ViT from an INI file (the bundled Fashion-MNIST model)"},
        {"run", cmd_run, "run an INI ablation grid; results in HDF5, resumable"},
        {"plugins", cmd_plugins, "list quantizer and pass plugins and their parameters"},
        {"results", cmd_results, "print a run's summary table (Markdown or CSV)"},
        {"plot", cmd_plot, "draw accuracy-vs-bits curves and activation histograms with gnuplot"},
    };
    const int n = (int)(sizeof cmds / sizeof cmds[0]);
    setlocale(LC_ALL, "C"); /* numbers are always read and written with '.' */
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout, cmds, n);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("vitq %s\n", VITQ_VERSION);
        return 0;
    }
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    for (int i = 0; i < n; i++) {
        if (strcmp(argv[1], cmds[i].name) != 0) continue;
        if (!cmds[i].fn) {
            cmd_error("command '%s' is not in this build", cmds[i].name);
            return 2;
        }
        return cmds[i].fn(argc - 1, argv + 1);
    }
    cmd_error("unknown command '%s'", argv[1]);
    usage(stderr, cmds, n);
    return 2;
}
