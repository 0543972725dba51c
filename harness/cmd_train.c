/* cmd_train.c — `vitq train CONFIG.ini [--resume] [--threads N] [--epochs N] [-q]`: option parsing and
 * messages around vitq_train_run (train.c). Does not: define the recipe (the INI does). */
#include "cmd.h"
#include "train.h"

#include <stdlib.h>
#include <string.h>

static void usage(FILE *to) {
    fprintf(to,
            "usage: vitq train CONFIG.ini [--resume] [--threads N] [--epochs N] [-q]\n\n"
            "Trains a ViT as CONFIG.ini describes ([model] [data] [recipe] [init] [output]; see\n"
            "experiments/train-fmnist.ini) and writes the model, its HDF5 training record and a PNG curve.\n"
            "A checkpoint (*.ckpt.safetensors beside the model) is written after every epoch and on Ctrl-C.\n\n"
            "  --resume       continue from the checkpoint (bit-identical to an uninterrupted run)\n"
            "  --threads N    worker threads (default: all CPUs); results are reproducible per thread count\n"
            "  --epochs N     override [recipe] epochs\n"
            "  -q             no progress output\n");
}

int cmd_train(int argc, char **argv) {
    const char *ini = NULL;
    int resume = 0, quiet = 0;
    long threads = 0, epochs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--resume")) {
            resume = 1;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (!strcmp(a, "--threads") || !strcmp(a, "--epochs")) {
            if (i + 1 >= argc) {
                cmd_error("%s needs a value", a);
                return 2;
            }
            long *dst = !strcmp(a, "--threads") ? &threads : &epochs;
            if (cmd_parse_int(a, argv[++i], 1, 100000, dst)) return 2;
        } else if (a[0] == '-') {
            cmd_error("unknown option '%s' (vitq train --help)", a);
            return 2;
        } else if (!ini) {
            ini = a;
        } else {
            cmd_error("one CONFIG.ini expected, got '%s' and '%s'", ini, a);
            return 2;
        }
    }
    if (!ini) {
        usage(stderr);
        return 2;
    }
    vitq_err e = {{0}};
    vitq_train_cfg cfg;
    int rc = vitq_train_cfg_read(ini, &cfg, &e);
    if (rc) {
        cmd_error("%s", e.msg);
        return cmd_exit_code(rc);
    }
    if (epochs > 0) cfg.epochs = (int)epochs;
    vitq_threads_set((int)threads);
    vitq_set_quiet(quiet);
    // the command as typed, recorded in the model's metadata
    size_t len = 0;
    for (int i = 0; i < argc; i++) len += strlen(argv[i]) + 1;
    char *command = malloc(len + 16);
    if (!command) {
        cmd_error("out of memory");
        return 1;
    }
    strcpy(command, "vitq train");
    for (int i = 1; i < argc; i++) {
        strcat(command, " ");
        strcat(command, argv[i]);
    }
    if (!quiet)
        fprintf(stderr, "vitq: training %s (%d epochs, batch %d, %d threads) from %s\n", cfg.arch.name, cfg.epochs,
                cfg.batch, vitq_threads_get(), ini);
    vitq_train_opts o = {.resume = resume, .command = command, .quiet = quiet};
    vitq_train_result r;
    rc = vitq_train_run(&cfg, &o, &r, &e);
    free(command);
    if (rc) {
        cmd_error("%s", e.msg);
        return cmd_exit_code(rc);
    }
    if (r.stopped) {
        printf("stopped after %lld steps; checkpoint %s\n", (long long)r.steps_done, cfg.checkpoint);
        return 0;
    }
    printf("trained %s: %d epochs in %.0f s, test top-1 %.2f%%\nmodel: %s\n", cfg.arch.name, r.epochs_done,
           r.train_seconds, r.test_top1, cfg.out_model);
    if (cfg.out_record[0]) printf("record: %s\n", cfg.out_record);
    if (cfg.out_plot[0]) printf("plot: %s\n", cfg.out_plot);
    return 0;
}
