/* cmd_eval.c — `vitq eval --model FILE.safetensors [options]`: evaluates a checkpoint in float32 on a
 * dataset and prints top-1, top-5, mean loss, images/s and wall time on stdout (progress on stderr).
 * Option parsing, checks that can fail before any work (output path vs model path, output folder),
 * then vitq_model_load, vitq_dataset_open and vitq_evaluate. Does not quantize (that is `vitq run`). */
#include "cmd.h"

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
            "Evaluates a ViT/DeiT checkpoint in float32 and prints top-1, top-5, mean cross-entropy,\n"
            "images/s and wall time.\n\n"
            "  --model FILE        safetensors checkpoint with timm parameter names\n"
            "  --arch NAME         built-in architecture for a checkpoint without __metadata__\n"
            "                      (deit_tiny_patch16_224, vit_small_patch16_224, ...)\n"
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

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *arch = NULL, *data = "fashion-mnist", *split = "test", *logits_path = NULL;
    long limit = 0, batch = 64, threads = 0;
    int convert = 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
            continue;
        }
        if (!strcmp(a, "--convert-channels")) {
            convert = 1;
            continue;
        }
        static const char *const names[] = {"--model", "--arch",    "--data",    "--split",
                                            "--limit", "--batch",   "--threads", "--save-logits"};
        int k = -1;
        size_t l = 0;
        for (int j = 0; j < 8 && k < 0; j++) {
            l = strlen(names[j]);
            if (!strncmp(a, names[j], l) && (a[l] == 0 || a[l] == '=')) k = j;
        }
        if (k < 0) {
            cmd_error("%s '%s' (vitq eval --help)", a[0] == '-' ? "unknown option" : "unexpected argument", a);
            return 2;
        }
        const char *v = NULL;
        if (a[l] == '=') {
            v = a + l + 1;
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            cmd_error("%s needs a value (vitq eval --help)", a);
            return 2;
        }
        if (!*v) {
            cmd_error("%s: empty value", names[k]);
            return 2;
        }
        switch (k) {
        case 0: model = v; break;
        case 1: arch = v; break;
        case 2: data = v; break;
        case 3: split = v; break;
        case 4: if (cmd_parse_int("--limit", v, 1, 1000000000L, &limit)) return 2; break;
        case 5: if (cmd_parse_int("--batch", v, 1, 65536, &batch)) return 2; break;
        case 6: if (cmd_parse_int("--threads", v, 1, 256, &threads)) return 2; break;
        default: logits_path = v; break;
        }
    }
    if (!model) {
        cmd_error("--model FILE.safetensors is required (vitq eval --help)");
        return 2;
    }
    if (strcmp(split, "test") && strcmp(split, "train")) {
        cmd_error("--split: expected test or train, got '%s'", split);
        return 2;
    }
    if (logits_path) {
        if (same_file(logits_path, model)) {
            cmd_error("--save-logits %s is the model file itself; choose another path", logits_path);
            return 2;
        }
        if (!parent_exists(logits_path)) {
            cmd_error("--save-logits %s: its folder does not exist", logits_path);
            return 2;
        }
    }
    vitq_set_quiet(quiet);
    vitq_threads_set((int)threads);
    double t0 = vitq_now();

    vitq_err e = {{0}};
    vitq_model *m = NULL;
    vitq_dataset *d = NULL;
    float *logits = NULL;
    int rc = vitq_model_load(model, arch, &m, &e);
    if (rc) goto fail;
    const vitq_arch *ar = &m->arch;
    vitq_data_opts o = {.img_size = ar->img_size, .in_chans = ar->in_chans, .crop_pct = ar->crop_pct,
                        .convert_channels = convert};
    memcpy(o.mean, ar->mean, sizeof o.mean);
    memcpy(o.std, ar->std, sizeof o.std);
    if ((rc = vitq_dataset_open(data, split, &o, &d, &e))) goto fail;
    int64_t n = vitq_dataset_size(d);
    if (limit > 0 && limit < n) n = limit;
    if (logits_path) {
        logits = malloc(sizeof(float) * (size_t)(n * ar->num_classes));
        if (!logits) {
            rc = vitq_fail(&e, VITQ_ENOMEM, "out of memory for %lld x %d logits", (long long)n, ar->num_classes);
            goto fail;
        }
    }
    vitq_eval_result r;
    if ((rc = vitq_evaluate(m, d, n, (int)batch, logits, &r, "eval", &e))) goto fail;
    if (logits_path) {
        const int64_t shape[2] = {r.n, ar->num_classes};
        if ((rc = vitq_npy_write(logits_path, logits, 2, shape, &e))) goto fail;
    }
    printf("model     %s (%s, %d classes)\n", model, ar->name, ar->num_classes);
    printf("data      %s, %lld images\n", vitq_dataset_name(d), (long long)r.n);
    printf("top-1     %.2f %%\n", r.top1);
    printf("top-5     %.2f %%\n", r.top5);
    printf("loss      %.4f\n", r.loss);
    printf("images/s  %.1f (batch %ld, %d threads)\n", r.images_per_s, batch, vitq_threads_get());
    printf("wall      %.2f s\n", vitq_now() - t0);
    if (logits_path) printf("logits    %s (%lld, %d) float32\n", logits_path, (long long)r.n, ar->num_classes);
    free(logits);
    vitq_dataset_free(d);
    vitq_model_free(m);
    return 0;
fail:
    cmd_error("%s", e.msg);
    free(logits);
    vitq_dataset_free(d);
    vitq_model_free(m);
    return cmd_exit_code(rc);
}
