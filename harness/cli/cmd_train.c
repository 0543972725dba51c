/* cmd_train.c — `vitq train CONFIG.ini [--resume] [--threads N] [--epochs N] [-q]`: options (opts.c)
 * and messages around vitq_train_run (train/train.c). Does not: define the recipe (the INI does). */
#include "cli/cli.h"

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
    int resume = 0, quiet = 0, help = 0, n_pos = 0;
    long threads = 0, epochs = 0;
    const cli_opt opts[] = {
        {"--resume", NULL, CLI_FLAG, &resume, 0, 0},
        {"--quiet", "-q", CLI_FLAG, &quiet, 0, 0},
        {"--threads", NULL, CLI_INT, &threads, 1, 100000},
        {"--epochs", NULL, CLI_INT, &epochs, 1, 100000},
    };
    const cli_spec spec = {"train", opts, (int)(sizeof opts / sizeof opts[0]), "CONFIG.ini", 1, 1};
    if (cli_parse(&spec, argc, argv, &ini, &n_pos, &help)) return 2;
    if (help) {
        usage(stdout);
        return 0;
    }
    vitq_err e = {{0}};
    vitq_train_cfg cfg;
    int rc = vitq_train_cfg_read(ini, &cfg, &e);
    if (rc) {
        cli_error("%s", e.msg);
        return cli_exit_code(rc);
    }
    if (epochs > 0) cfg.epochs = (int)epochs;
    vitq_threads_set((int)threads);
    vitq_set_quiet(quiet);
    char *command = cli_command_line(argc, argv); /* recorded in the model's metadata */
    if (!command) {
        cli_error("out of memory");
        return 1;
    }
    if (!quiet)
        fprintf(stderr, "vitq: training %s (%d epochs, batch %d, %d threads) from %s\n", cfg.arch.name, cfg.epochs,
                cfg.batch, vitq_threads_get(), ini);
    vitq_train_opts o = {.resume = resume, .command = command, .quiet = quiet};
    vitq_train_result r;
    rc = vitq_train_run(&cfg, &o, &r, &e);
    free(command);
    if (rc) {
        cli_error("%s", e.msg);
        return cli_exit_code(rc);
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
