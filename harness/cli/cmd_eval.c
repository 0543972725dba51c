/* cmd_eval.c — `vitq eval --model FILE.safetensors [options]`: evaluates a checkpoint in float32 on a
 * dataset and prints the transform first (`transform: resize 248 bicubic, centre crop 224, mean (...) std
 * (...)`), then top-1, top-5, mean loss, images/s and wall time on stdout (progress on stderr).
 * Options (opts.c; the data-config ones as timm's validate.py: --img-size, --crop-pct, --interpolation,
 * --mean, --std), checks that can fail before any work (output path vs model path, output folder), then
 * vitq_model_load, vitq_data_config, vitq_dataset_open and vitq_evaluate. Does not quantize (`vitq run`). */
#include "cli/cli.h"

#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *to) {
    fprintf(to,
            "usage: vitq eval --model FILE.safetensors [--arch NAME] [--data fashion-mnist|DIR]\n"
            "                 [--split test|val|train] [--limit N] [--batch N] [--threads N]\n"
            "                 [--img-size N] [--crop-pct X] [--interpolation bicubic|bilinear]\n"
            "                 [--mean M[,M,M]] [--std S[,S,S]]\n"
            "                 [--save-logits FILE.npy] [--convert-channels] [-q]\n\n"
            "Evaluates a ViT/DeiT or Swin checkpoint in float32 and prints the transform, top-1, top-5,\n"
            "mean cross-entropy, images/s and wall time.\n\n"
            "  --model FILE        safetensors checkpoint with timm parameter names\n"
            "  --arch NAME         built-in architecture for a checkpoint without __metadata__\n"
            "                      (deit_tiny_patch16_224, deit3_small_patch16_224,\n"
            "                      swin_tiny_patch4_window7_224, ...: vitq inspect --help)\n"
            "  --data SPEC         fashion-mnist (default, " VITQ_FASHION_MNIST_DIR "), a folder of\n"
            "                      IDX files, an image folder (one sub-folder per class, JPEG/PNG) or a root\n"
            "                      holding train/ and val/ (or validation/)\n"
            "  --split S           test (default) or val: the evaluation split (IDX t10k, val/); or train\n"
            "  --limit N           evaluate the first N images only\n"
            "  --batch N           images per forward pass (default 64)\n"
            "  --threads N         worker threads (default and 0: number of CPUs)\n"
            "  --img-size N        as timm's validate.py: must be the model's image size\n"
            "  --crop-pct X        resize the shorter side to floor(img_size / X) before the centre crop\n"
            "                      (default: the model's data config; given, it crops IDX images too)\n"
            "  --interpolation I   bicubic or bilinear (PIL's; default: the model's)\n"
            "  --mean M, --std S   normalisation, one value or one per channel (default: the model's)\n"
            "  --save-logits FILE  write the logits as a NumPy array (N, classes), float32\n"
            "  --convert-channels  IDX data: replicate gray into RGB for a 3-channel model (image files\n"
            "                      are converted to the model's channels per image, as PIL does, always)\n"
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

/* The data-config options as validate.py's, parsed; 2 after a usage error. */
static int data_overrides(long img, const char *crop, const char *interp, const char *mean, const char *std,
                          vitq_data_overrides *ov) {
    memset(ov, 0, sizeof *ov);
    ov->img_size = (int)img;
    ov->interpolation = interp;
    char *end = NULL;
    if (crop && ((ov->crop_pct = strtod(crop, &end)), *end || !(ov->crop_pct > 0.0 && ov->crop_pct <= 1.0))) {
        cli_error("--crop-pct: expected a number in (0, 1], got '%s'", crop);
        return 2;
    }
    if (interp && vitq_interp_parse(interp) < 0) {
        cli_error("--interpolation: expected bicubic or bilinear, got '%s'", interp);
        return 2;
    }
    if ((mean && (ov->n_mean = vitq_floats_parse(mean, ov->mean)) < 0) ||
        (std && (ov->n_std = vitq_floats_parse(std, ov->std)) < 0)) {
        cli_error("--%s: expected 1 or 3 comma-separated numbers, got '%s'", ov->n_mean < 0 ? "mean" : "std",
                  ov->n_mean < 0 ? mean : std);
        return 2;
    }
    return 0;
}

typedef struct eval_args {
    const char *model, *arch, *data, *split, *logits_path;
    long limit, batch;
    int convert;
    vitq_data_overrides ov;
} eval_args;

/* Loads the model and data, prints what will be evaluated (the transform first), evaluates, writes the
 * logits if asked; prints the results. */
static int evaluate(const eval_args *x) {
    double t0 = vitq_now();
    vitq_err e = {{0}};
    vitq_model *m = NULL;
    vitq_dataset *d = NULL;
    float *logits = NULL;
    vitq_eval_result r;
    vitq_data_opts o;
    int rc = vitq_model_load(x->model, x->arch, &m, &e);
    if (!rc) rc = vitq_data_config(&m->arch, &x->ov, x->convert, &o, "", &e);
    if (!rc) rc = vitq_dataset_open(x->data, x->split, &o, &d, &e);
    int64_t n = rc ? 0 : vitq_dataset_size(d);
    if (!rc && x->limit > n) /* refused as [data] eval_limit is: not silently fewer */
        rc = vitq_fail(&e, VITQ_EINVAL, "--limit %ld exceeds the %lld images of the %s split", x->limit, (long long)n,
                       vitq_dataset_split(d));
    if (x->limit > 0 && x->limit < n) n = x->limit;
    const int K = m ? m->arch.num_classes : 0;
    if (!rc) {
        char t[512];
        printf("transform: %s\n", vitq_dataset_transform(d, t, sizeof t));
        printf("model     %s (%s, %d classes)\n", x->model, m->arch.name, K);
        printf("sha256    %s\n", m->sha256);
        printf("data      %s (split %s), %lld images\n", vitq_dataset_name(d), vitq_dataset_split(d), (long long)n);
        fflush(stdout);
    }
    if (!rc && x->logits_path && !(logits = malloc(sizeof(float) * (size_t)(n * K))))
        rc = vitq_fail(&e, VITQ_ENOMEM, "out of memory for %lld x %d logits", (long long)n, K);
    if (!rc) rc = vitq_evaluate(m, d, n, (int)x->batch, logits, &r, "eval", &e);
    if (!rc && x->logits_path) rc = vitq_npy_write(x->logits_path, logits, 2, (const int64_t[2]){r.n, K}, &e);
    if (!rc) {
        printf("top-1     %.2f %% (%lld of %lld)\n", r.top1, (long long)(r.top1 * (double)r.n / 100.0 + 0.5),
               (long long)r.n);
        printf("top-5     %.2f %%\n", r.top5);
        printf("loss      %.4f\n", r.loss);
        printf("images/s  %.1f (batch %ld, %d threads)\n", r.images_per_s, x->batch, vitq_threads_get());
        printf("wall      %.2f s\n", vitq_now() - t0);
        if (x->logits_path) printf("logits    %s (%lld, %d) float32\n", x->logits_path, (long long)r.n, K);
    } else {
        cli_error("%s", e.msg);
    }
    free(logits);
    vitq_dataset_free(d);
    vitq_model_free(m);
    return cli_exit_code(rc);
}

int cmd_eval(int argc, char **argv) {
    eval_args x = {.data = "fashion-mnist", .split = "test", .batch = 64};
    const char *crop = NULL, *interp = NULL, *mean = NULL, *std = NULL;
    long threads = 0, img = 0;
    int quiet = 0, help = 0, n_pos = 0;
    const cli_opt opts[] = {
        {"--model", NULL, CLI_STR, &x.model, 0, 0},
        {"--arch", NULL, CLI_STR, &x.arch, 0, 0},
        {"--data", NULL, CLI_STR, &x.data, 0, 0},
        {"--split", NULL, CLI_STR, &x.split, 0, 0},
        {"--limit", NULL, CLI_INT, &x.limit, 1, 1000000000L},
        {"--batch", NULL, CLI_INT, &x.batch, 1, 65536},
        {"--threads", NULL, CLI_INT, &threads, 0, 256},
        {"--img-size", NULL, CLI_INT, &img, 1, 4096},
        {"--crop-pct", NULL, CLI_STR, &crop, 0, 0},
        {"--interpolation", NULL, CLI_STR, &interp, 0, 0},
        {"--mean", NULL, CLI_STR, &mean, 0, 0},
        {"--std", NULL, CLI_STR, &std, 0, 0},
        {"--save-logits", NULL, CLI_STR, &x.logits_path, 0, 0},
        {"--convert-channels", NULL, CLI_FLAG, &x.convert, 0, 0},
        {"--quiet", "-q", CLI_FLAG, &quiet, 0, 0},
    };
    const cli_spec spec = {"eval", opts, (int)(sizeof opts / sizeof opts[0]), NULL, 0, 0};
    if (cli_parse(&spec, argc, argv, NULL, &n_pos, &help)) return 2;
    if (help) {
        usage(stdout);
        return 0;
    }
    if (!x.model) {
        cli_error("--model FILE.safetensors is required (vitq eval --help)");
        return 2;
    }
    if (strcmp(x.split, "test") && strcmp(x.split, "val") && strcmp(x.split, "train")) {
        cli_error("--split: expected test, val or train, got '%s'", x.split);
        return 2;
    }
    if (x.logits_path && same_file(x.logits_path, x.model)) {
        cli_error("--save-logits %s is the model file itself; choose another path", x.logits_path);
        return 2;
    }
    if (x.logits_path && !parent_exists(x.logits_path)) {
        cli_error("--save-logits %s: its folder does not exist", x.logits_path);
        return 2;
    }
    if (data_overrides(img, crop, interp, mean, std, &x.ov)) return 2;
    vitq_set_quiet(quiet);
    vitq_threads_set((int)threads);
    return evaluate(&x);
}
