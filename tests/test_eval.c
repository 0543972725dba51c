/* test_eval.c — vitq_evaluate on a tiny IDX dataset written here (7 images, batches of 3 so the last
 * batch is short) against scores recomputed by hand from single-image forwards; the .npy writer read
 * back byte by byte; and `vitq eval` end to end (its output lines, --save-logits, refusals). */

#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* Writes DIR/t10k-images-idx3-ubyte and DIR/t10k-labels-idx1-ubyte with n 28x28 images. */
static void write_idx(const char *dir, int n, const int *labels) {
    char path[512];
    size_t isz = 16 + (size_t)n * 28 * 28;
    unsigned char *buf = malloc(isz);
    put_be32(buf, 0x803), put_be32(buf + 4, (uint32_t)n), put_be32(buf + 8, 28), put_be32(buf + 12, 28);
    for (size_t i = 16; i < isz; i++) buf[i] = (unsigned char)((i * 2654435761u) >> 13);
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f);
    if (f) {
        CHECK_EQ(fwrite(buf, 1, isz, f), isz);
    }
    if (f) fclose(f);
    unsigned char lb[8 + 64];
    put_be32(lb, 0x801), put_be32(lb + 4, (uint32_t)n);
    for (int i = 0; i < n; i++) lb[8 + i] = (unsigned char)labels[i];
    snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte", dir);
    f = fopen(path, "wb");
    CHECK(f);
    if (f) {
        CHECK_EQ(fwrite(lb, 1, 8 + (size_t)n, f), 8 + (size_t)n);
    }
    if (f) fclose(f);
    free(buf);
}

TEST(eval_scores_match_single_image_forwards) {
    vitq_model *m = NULL;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_model_load("tests/fixtures/vit_fmnist.safetensors", NULL, &m, &e) == 0, "%s", e.msg);
    if (!m) return;
    const char *dir = test_tmpdir();
    const int n = 7, labels[7] = {3, 0, 9, 3, 5, 1, 7};
    write_idx(dir, n, labels);
    vitq_data_opts o = {.img_size = 28, .in_chans = 1, .mean = {0.286f}, .std = {0.353f}, .crop_pct = 1.0f};
    vitq_dataset *d = NULL;
    CHECK_MSG(vitq_dataset_open(dir, "test", &o, &d, &e) == 0, "%s", e.msg);
    if (!d) {
        vitq_model_free(m);
        return;
    }
    const int64_t K = m->arch.num_classes;
    float *logits = malloc(sizeof(float) * (size_t)(n * K));
    vitq_eval_result r;
    CHECK_MSG(vitq_evaluate(m, d, 0, 3, logits, &r, NULL, &e) == 0, "%s", e.msg);
    CHECK(r.n == n);

    /* by hand: one image at a time */
    vitq_acts *a = NULL;
    CHECK(vitq_acts_create(m, 1, 0, &a, &e) == 0);
    int top1 = 0, top5 = 0;
    double loss = 0;
    for (int i = 0; i < n; i++) {
        int64_t idx = i;
        int lab = -1;
        CHECK(vitq_dataset_load(d, &idx, 1, a->images, &lab, &e) == 0);
        CHECK(lab == labels[i]);
        CHECK(vitq_forward(m, a, a->images, 1, &e) == 0);
        CHECK_ALLCLOSE(logits + i * K, a->logits, (long)K, 1e-5, 1e-6);
        int greater = 0;
        double s = 0;
        for (int k = 0; k < K; k++) {
            greater += a->logits[k] > a->logits[lab];
            s += exp((double)a->logits[k]);
        }
        top1 += greater == 0;
        top5 += greater < 5;
        loss += log(s) - a->logits[lab];
    }
    CHECK_NEAR(r.top1, 100.0 * top1 / n, 1e-9);
    CHECK_NEAR(r.top5, 100.0 * top5 / n, 1e-9);
    CHECK_NEAR(r.loss, loss / n, 1e-5);
    CHECK(r.images_per_s > 0);
    CHECK(r.seconds > 0);

    /* limit and a batch bigger than the data */
    CHECK(vitq_evaluate(m, d, 2, 64, NULL, &r, NULL, &e) == 0);
    CHECK(r.n == 2);
    CHECK(vitq_evaluate(m, d, 0, 0, NULL, &r, NULL, &e) == VITQ_EINVAL);

    /* Ctrl-C: cancelled, with a message */
    vitq_interrupted = 1;
    CHECK(vitq_evaluate(m, d, 0, 3, NULL, &r, NULL, &e) == VITQ_ECANCELLED);
    vitq_interrupted = 0;
    CHECK_STR_CONTAINS(e.msg, "interrupted");
    vitq_acts_free(a);
    free(logits);
    vitq_dataset_free(d);
    vitq_model_free(m);
}

TEST(eval_npy_write_reads_back) {
    const char *dir = test_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/x.npy", dir);
    float v[6] = {1.5f, -2.0f, 0.0f, 3.25f, 1e-3f, -7.0f};
    const int64_t shape[2] = {2, 3};
    vitq_err e = {{0}};
    CHECK(vitq_npy_write(path, v, 2, shape, &e) == 0);
    size_t size = 0;
    char *buf = vitq_read_file(path, &size, &e);
    CHECK(buf != NULL);
    if (!buf) return;
    CHECK(memcmp(buf, "\x93NUMPY\x01\x00", 8) == 0);
    size_t hlen = (unsigned char)buf[8] | (size_t)(unsigned char)buf[9] << 8;
    CHECK((10 + hlen) % 64 == 0);
    CHECK(buf[10 + hlen - 1] == '\n');
    CHECK_STR_CONTAINS(buf + 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
    CHECK(size == 10 + hlen + sizeof v);
    CHECK(memcmp(buf + 10 + hlen, v, sizeof v) == 0);
    free(buf);
    /* 1-d shape is written "(n,)" */
    const int64_t s1[1] = {6};
    CHECK(vitq_npy_write(path, v, 1, s1, &e) == 0);
    buf = vitq_read_file(path, &size, &e);
    CHECK(buf);
    if (buf) {
        CHECK(strstr(buf + 10, "'shape': (6,), }"));
    }
    free(buf);
    /* a missing folder is an error naming the path */
    snprintf(path, sizeof path, "%s/no/such/x.npy", dir);
    CHECK(vitq_npy_write(path, v, 1, s1, &e) == VITQ_EIO);
    CHECK_STR_CONTAINS(e.msg, "no/such");
}

/* Runs a shell command, returns its exit status and its stdout (first 4 KB) in out. */
static int run_cmd(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(eval_cli_end_to_end) {
    const char *bin = getenv("VITQ_BIN");
    char vitq[512], cmd[2048], out[4096];
    snprintf(vitq, sizeof vitq, "%s", bin && *bin ? bin : "build/vitq");
    const char *dir = test_tmpdir();
    const int labels[5] = {1, 2, 3, 4, 5};
    write_idx(dir, 5, labels);
    snprintf(cmd, sizeof cmd,
             "%s eval --model tests/fixtures/vit_fmnist.safetensors --data %s --batch 2 --threads 2 -q "
             "--save-logits %s/l.npy 2>&1",
             vitq, dir, dir);
    CHECK_MSG(run_cmd(cmd, out, sizeof out) == 0, "%s", out);
    CHECK_STR_CONTAINS(out, "top-1 ");
    CHECK_STR_CONTAINS(out, "top-5 ");
    CHECK_STR_CONTAINS(out, "loss ");
    CHECK_STR_CONTAINS(out, "images/s ");
    CHECK_STR_CONTAINS(out, "wall ");
    CHECK_STR_CONTAINS(out, "5 images");
    char path[600];
    snprintf(path, sizeof path, "%s/l.npy", dir);
    size_t size = 0;
    vitq_err e = {{0}};
    char *buf = vitq_read_file(path, &size, &e);
    CHECK(buf);
    if (buf) {
        CHECK(strstr(buf + 10, "'shape': (5, 10)"));
        CHECK_EQ(size, 128 + 5 * 10 * 4);
    }
    free(buf);
    /* refusals: logits over the model, unknown option, missing model */
    snprintf(cmd, sizeof cmd, "%s eval --model tests/fixtures/vit_fmnist.safetensors --save-logits "
                              "tests/fixtures/vit_fmnist.safetensors 2>&1", vitq);
    CHECK(run_cmd(cmd, out, sizeof out) == 2);
    CHECK_STR_CONTAINS(out, "is the model file itself");
    snprintf(cmd, sizeof cmd, "%s eval --model tests/fixtures/vit_fmnist.safetensors --bogus 2>&1", vitq);
    CHECK(run_cmd(cmd, out, sizeof out) == 2);
    CHECK_STR_CONTAINS(out, "unknown option '--bogus'");
    snprintf(cmd, sizeof cmd, "%s eval --model %s/missing.safetensors 2>&1", vitq, dir);
    CHECK(run_cmd(cmd, out, sizeof out) == 1);
    CHECK_STR_CONTAINS(out, "missing.safetensors");
}
