/* cmd_eval.c — `vitq eval --model FILE.safetensors [options]`: evaluates a checkpoint in float32 on a
 * dataset and prints top-1, top-5, mean loss, images/s and wall time on stdout (progress on stderr).
 * Options (opts.c), checks that can fail before any work (output path vs model path, output folder),
 * then vitq_model_load, vitq_dataset_open and vitq_evaluate. Does not quantize (that is `vitq run`). */
#include "cli/cli.h"

#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *to) {
    fprintf(to,
            "usage: vitq eval --model FILE.safetensors [--arch NAME] [--data fashion-mnist|DIR]\n"
            "                 [--split test|train] [--limit N] [--batch N] [--threads N]\n"
            "                 [--save-logits FILE.npy] [--convert-channels] [-q]\n\n"
            "Evaluates a ViT/DeiT or Swin checkpoint in float32 and prints top-1, top-5, mean cross-entropy,\n"
            "images/s and wall time.\n\n"
            "  --model FILE        safetensors checkpoint with timm parameter names\n"
            "  --arch NAME         built-in architecture for a checkpoint without __metadata__\n"
            "                      (deit_tiny_patch16_224, swin_tiny_patch4_window7_224, ...)\n"
            "  --data SPEC         fashion-mnist (default, " VITQ_FASHION_MNIST_DIR "), a folder of\n"
            "                      IDX files, or an image folder (one sub-folder per class, JPEG/PNG)\n"
            "  --split S           test (default) or train (IDX datasets)\n"
            "  --limit N           evaluate the first N images only\n"
            "  --batch N           images per forward pass (default 64)\n"
            "  --threads N         worker threads (default: number of CPUs)\n"
            "  --save-logits FILE  write the logits as a NumPy array (N, classes), float32\n"
            "  --convert-channels  allow gray images for an RGB model and the reverse\n"
            "  -q                  no progress bar\n");
}

/* Same file (by device and inode when both exist, else by name). */
static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    return strcmp(a, b) == 0;
}

/* The folder that will hold `path` exists and is a folder. */
static int parent_exists(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    struct stat st;
    return stat(dirname(tmp), &st) == 0 && S_ISDIR(st.st_mode);
}

/* Loads the model and data, evaluates, writes the logits if asked; prints the report. */
static int evaluate(const char *model, const char *arch, const char *data, const char *split, long limit,
                    long batch, int convert, const char *logits_path) {
    double t0 = vitq_now();
    vitq_err e = {{0}};
    vitq_model *m = NULL;
    vitq_dataset *d = NULL;
    float *logits = NULL;
    vitq_eval_result r;
    int rc = vitq_model_load(model, arch, &m, &e);
    vitq_data_opts o = rc ? (vitq_data_opts){0} : vitq_data_opts_for(&m->arch, convert);
    if (!rc) rc = vitq_dataset_open(data, split, &o, &d, &e);
    int64_t n = rc ? 0 : vitq_dataset_size(d);
    if (limit > 0 && limit < n) n = limit;
    const int K = m ? m->arch.num_classes : 0;
    if (!rc && logits_path && !(logits = malloc(sizeof(float) * (size_t)(n * K))))
        rc = vitq_fail(&e, VITQ_ENOMEM, "out of memory for %lld x %d logits", (long long)n, K);
    if (!rc) rc = vitq_evaluate(m, d, n, (int)batch, logits, &r, "eval", &e);
    if (!rc && logits_path) rc = vitq_npy_write(logits_path, logits, 2, (const int64_t[2]){r.n, K}, &e);
    if (!rc) {
        printf("model     %s (%s, %d classes)\n", model, m->arch.name, K);
        printf("data      %s, %lld images\n", vitq_dataset_name(d), (long long)r.n);
        printf("top-1     %.2f %%\n", r.top1);
        printf("top-5     %.2f %%\n", r.top5);
        printf("loss      %.4f\n", r.loss);
        printf("images/s  %.1f (batch %ld, %d threads)\n", r.images_per_s, batch, vitq_threads_get());
        printf("wall      %.2f s\n", vitq_now() - t0);
        if (logits_path) printf("logits    %s (%lld, %d) float32\n", logits_path, (long long)r.n, K);
    } else {
        cli_error("%s", e.msg);
    }
    free(logits);
    vitq_dataset_free(d);
    vitq_model_free(m);
    return cli_exit_code(rc);
}

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *arch = NULL, *data = "fashion-mnist", *split = "test", *logits_path = NULL;
    long limit = 0, batch = 64, threads = 0;
    int convert = 0, quiet = 0, help = 0, n_pos = 0;
    const cli_opt opts[] = {
        {"--model", NULL, CLI_STR, &model, 0, 0},
        {"--arch", NULL, CLI_STR, &arch, 0, 0},
        {"--data", NULL, CLI_STR, &data, 0, 0},
        {"--split", NULL, CLI_STR, &split, 0, 0},
        {"--limit", NULL, CLI_INT, &limit, 1, 1000000000L},
        {"--batch", NULL, CLI_INT, &batch, 1, 65536},
        {"--threads", NULL, CLI_INT, &threads, 1, 256},
        {"--save-logits", NULL, CLI_STR, &logits_path, 0, 0},
        {"--convert-channels", NULL, CLI_FLAG, &convert, 0, 0},
        {"--quiet", "-q", CLI_FLAG, &quiet, 0, 0},
    };
    const cli_spec spec = {"eval", opts, (int)(sizeof opts / sizeof opts[0]), NULL, 0};
    if (cli_parse(&spec, argc, argv, NULL, &n_pos, &help)) return 2;
    if (help) {
        usage(stdout);
        return 0;
    }
    if (!model) {
        cli_error("--model FILE.safetensors is required (vitq eval --help)");
        return 2;
    }
    if (strcmp(split, "test") && strcmp(split, "train")) {
        cli_error("--split: expected test or train, got '%s'", split);
        return 2;
    }
    if (logits_path && same_file(logits_path, model)) {
        cli_error("--save-logits %s is the model file itself; choose another path", logits_path);
        return 2;
    }
    if (logits_path && !parent_exists(logits_path)) {
        cli_error("--save-logits %s: its folder does not exist", logits_path);
        return 2;
    }
    vitq_set_quiet(quiet);
    vitq_threads_set((int)threads);
    return evaluate(model, arch, data, split, limit, batch, convert, logits_path);
}
