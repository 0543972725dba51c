/* test_data.c — IDX datasets: the real Fashion-MNIST test split (Debian's dataset-fashion-mnist),
 * normalisation checked against pixels read independently with zlib, channel rules, and broken IDX
 * files (wrong magic, truncated gzip, count mismatch) reported by name. */

#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static vitq_data_opts gray28(void) {
    vitq_data_opts o = {.img_size = 28, .in_chans = 1, .mean = {0.5f}, .std = {0.25f}, .crop_pct = 1.0f};
    return o;
}

static void write_gz(const char *path, const void *data, size_t n) {
    gzFile f = gzopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(gzwrite(f, data, (unsigned)n) == (int)n);
    gzclose(f);
}

static void write_raw(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* An IDX image file of n images of 2x3 (pixel = 10*i + j) and a label file of m labels (i % 10). */
static size_t make_images(uint8_t *buf, uint32_t magic, uint32_t n) {
    put_be32(buf, magic);
    put_be32(buf + 4, n);
    put_be32(buf + 8, 2);
    put_be32(buf + 12, 3);
    for (uint32_t i = 0; i < n; i++)
        for (int j = 0; j < 6; j++) buf[16 + i * 6 + j] = (uint8_t)(10 * i + j);
    return 16 + (size_t)n * 6;
}

static size_t make_labels(uint8_t *buf, uint32_t magic, uint32_t n) {
    put_be32(buf, magic);
    put_be32(buf + 4, n);
    for (uint32_t i = 0; i < n; i++) buf[8 + i] = (uint8_t)(i % 10);
    return 8 + (size_t)n;
}

TEST(data_idx_fashion_mnist_test_split) {
    vitq_data_opts o = gray28();
    vitq_dataset *d = NULL;
    vitq_err e = {{0}};
    int rc = vitq_dataset_open("fashion-mnist", "test", &o, &d, &e);
    CHECK_MSG(rc == 0, "open: %s", e.msg);
    if (rc) return;
    CHECK(vitq_dataset_size(d) == 10000);
    CHECK(vitq_dataset_classes(d) == 10);
    CHECK_STR_CONTAINS(vitq_dataset_name(d), "fashion-mnist");
    /* Label histogram: 1000 per class. */
    int hist[10] = {0};
    for (int64_t i = 0; i < d->labels.n; i++) hist[d->labels.data[i] < 10 ? d->labels.data[i] : 0]++;
    for (int k = 0; k < 10; k++) CHECK_MSG(hist[k] == 1000, "class %d has %d test images", k, hist[k]);
    /* First three images through the public loader; label 0 is 9 (ankle boot). */
    int64_t idx[3] = {0, 1, 9999};
    float *x = malloc(sizeof(float) * 3 * 28 * 28);
    int lab[3] = {-1, -1, -1};
    rc = vitq_dataset_load(d, idx, 3, x, lab, &e);
    CHECK_MSG(rc == 0, "load: %s", e.msg);
    CHECK(lab[0] == 9);
    CHECK_EQ(lab[1], d->labels.data[1]);
    CHECK_EQ(lab[2], d->labels.data[9999]);
    /* Pixels read independently: skip the 16-byte header of the gzip stream. */
    gzFile f = gzopen(VITQ_FASHION_MNIST_DIR "/t10k-images-idx3-ubyte.gz", "rb");
    CHECK(f != NULL);
    if (f) {
        uint8_t raw[16 + 2 * 784];
        CHECK(gzread(f, raw, sizeof raw) == (int)sizeof raw);
        gzclose(f);
        CHECK_EQ(raw[3], 0x03);
        CHECK_EQ(raw[2], 0x08);
        float want[2 * 784];
        for (int i = 0; i < 2 * 784; i++) want[i] = ((float)raw[16 + i] / 255.0f - 0.5f) / 0.25f;
        CHECK_ALLCLOSE(x, want, 2 * 784, 0.0, 0.0);
    }
    CHECK(x[0] == -2.0f); /* Fashion-MNIST's corners are black: (0 - 0.5) / 0.25 */
    /* Out-of-range index is an error, not a crash. */
    int64_t bad = 10000;
    CHECK(vitq_dataset_load(d, &bad, 1, x, lab, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "out of range");
    free(x);
    vitq_dataset_free(d);
}

TEST(data_idx_fashion_mnist_train_split) {
    vitq_data_opts o = gray28();
    vitq_dataset *d = NULL;
    vitq_err e = {{0}};
    int rc = vitq_dataset_open(VITQ_FASHION_MNIST_DIR, "train", &o, &d, &e); /* a folder of IDX files */
    CHECK_MSG(rc == 0, "open: %s", e.msg);
    if (rc) return;
    CHECK(vitq_dataset_size(d) == 60000);
    CHECK(vitq_dataset_classes(d) == 10);
    vitq_dataset_free(d);
}

TEST(data_idx_channels) {
    vitq_data_opts o = gray28();
    o.in_chans = 3;
    o.mean[1] = 0.25f, o.mean[2] = 0.0f, o.std[1] = 0.5f, o.std[2] = 1.0f;
    vitq_dataset *d = NULL;
    vitq_err e = {{0}};
    CHECK(vitq_dataset_open("fashion-mnist", "test", &o, &d, &e) == VITQ_EINVAL);
    CHECK(d == NULL);
    CHECK_STR_CONTAINS(e.msg, "--convert-channels");
    CHECK_STR_CONTAINS(e.msg, "t10k-images-idx3-ubyte");
    o.convert_channels = 1;
    int rc = vitq_dataset_open("fashion-mnist", "test", &o, &d, &e);
    CHECK_MSG(rc == 0, "open: %s", e.msg);
    if (rc) return;
    float *x = malloc(sizeof(float) * 3 * 784);
    int64_t i0 = 0;
    CHECK(vitq_dataset_load(d, &i0, 1, x, NULL, &e) == 0);
    int bad = 0;
    for (int i = 0; i < 784; i++) {
        float p = d->images.data[i] / 255.0f;
        bad += x[i] != (p - 0.5f) / 0.25f || x[784 + i] != (p - 0.25f) / 0.5f || x[2 * 784 + i] != p;
    }
    CHECK_MSG(bad == 0, "%d replicated pixels differ", bad);
    free(x);
    vitq_dataset_free(d);
}

TEST(data_idx_missing_dataset) {
    vitq_data_opts o = gray28();
    vitq_dataset *d = NULL;
    vitq_err e = {{0}};
    const char *tmp = test_tmpdir();
    char spec[512];
    snprintf(spec, sizeof spec, "mnist-idx:%s/nope", tmp);
    CHECK(vitq_dataset_open(spec, "test", &o, &d, &e) == VITQ_EIO);
    CHECK_STR_CONTAINS(e.msg, "nope");
    snprintf(spec, sizeof spec, "mnist-idx:%s", tmp);
    CHECK(vitq_dataset_open(spec, "test", &o, &d, &e) == VITQ_EIO);
    CHECK_STR_CONTAINS(e.msg, "t10k-images-idx3-ubyte");
    CHECK(vitq_dataset_open("fashion-mnist", "dev", &o, &d, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "split must be 'train', 'test' or 'val', got 'dev'");
}

TEST(data_idx_small_files_and_errors) {
    const char *tmp = test_tmpdir();
    char ip[512], lp[512];
    snprintf(ip, sizeof ip, "%s/t10k-images-idx3-ubyte", tmp); /* raw, not gzip */
    snprintf(lp, sizeof lp, "%s/t10k-labels-idx1-ubyte.gz", tmp);
    uint8_t img[16 + 5 * 6], lab[8 + 5];
    size_t ni = make_images(img, 0x803, 5), nl = make_labels(lab, 0x801, 5);
    write_raw(ip, img, ni);
    write_gz(lp, lab, nl);
    vitq_data_opts o = {.img_size = 3, .in_chans = 1, .mean = {0.0f}, .std = {1.0f}, .crop_pct = 1.0f};
    vitq_dataset *d = NULL;
    vitq_err e = {{0}};
    /* A 2x3 image at img_size 3: shorter side is already 2... resize to 3x4 (w 4, h 3), crop 3x3. */
    int rc = vitq_dataset_open(tmp, "test", &o, &d, &e);
    CHECK_MSG(rc == 0, "open: %s", e.msg);
    if (d) {
        CHECK(vitq_dataset_size(d) == 5);
        CHECK(vitq_dataset_classes(d) == 10);
        CHECK_EQ(d->images.rows, 2);
        CHECK_EQ(d->images.cols, 3);
        CHECK(d->images.data[4 * 6 + 5] == 45);
        vitq_dataset_free(d);
        d = NULL;
    }

    /* Wrong magic: a label file where images are expected. */
    write_raw(ip, lab, nl);
    CHECK(vitq_dataset_open(tmp, "test", &o, &d, &e) == VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, ip);
    CHECK_STR_CONTAINS(e.msg, "dimension");
    /* Not an IDX file at all. */
    write_raw(ip, "GIF89a..........", 16);
    CHECK(vitq_dataset_open(tmp, "test", &o, &d, &e) == VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "bad magic 0x47494638");
    /* Unsupported element type (0x0D = float). */
    make_images(img, 0xD03, 5);
    write_raw(ip, img, ni);
    CHECK(vitq_dataset_open(tmp, "test", &o, &d, &e) == VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "element type 0x0d");

    /* Truncated raw file: header says 5 images, 2 bytes of data missing. */
    make_images(img, 0x803, 5);
    write_raw(ip, img, ni - 2);
    CHECK(vitq_dataset_open(tmp, "test", &o, &d, &e) == VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, ip);
    CHECK_STR_CONTAINS(e.msg, "truncated: expected 30 bytes of image data, got 28");
    /* Truncated header. */
    write_raw(ip, img, 10);
    CHECK(vitq_dataset_open(tmp, "test", &o, &d, &e) == VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "truncated");

    /* Truncated gzip stream: compress a larger file, keep the first half of the .gz bytes. */
    remove(ip);
    snprintf(ip, sizeof ip, "%s/t10k-images-idx3-ubyte.gz", tmp);
    {
        uint32_t n = 2000;
        uint8_t *big = malloc(16 + (size_t)n * 6);
        size_t nb = make_images(big, 0x803, n);
        for (size_t i = 16; i < nb; i++) big[i] = (uint8_t)(i * 2654435761u >> 13); /* poorly compressible */
        write_gz(ip, big, nb);
        size_t gzn = 0;
        char *gz = vitq_read_file(ip, &gzn, &e);
        CHECK(gz != NULL);
        if (gz) {
            write_raw(ip, gz, gzn / 2);
            CHECK(vitq_dataset_open(tmp, "test", &o, &d, &e) == VITQ_EFORMAT);
            CHECK_STR_CONTAINS(e.msg, ip);
            CHECK_STR_CONTAINS(e.msg, "truncated: expected 12000 bytes of image data, got");
            /* Corrupt gzip: flip bytes in the middle of the deflate stream. */
            for (size_t i = gzn / 2; i < gzn / 2 + 64; i++) gz[i] ^= 0x5a;
            write_raw(ip, gz, gzn);
            CHECK(vitq_dataset_open(tmp, "test", &o, &d, &e) == VITQ_EFORMAT);
            CHECK_STR_CONTAINS(e.msg, ip);
            free(gz);
        }
        free(big);
    }

    /* Count mismatch: 5 images, 4 labels. */
    ni = make_images(img, 0x803, 5);
    write_gz(ip, img, ni);
    nl = make_labels(lab, 0x801, 4);
    write_gz(lp, lab, nl);
    CHECK(vitq_dataset_open(tmp, "test", &o, &d, &e) == VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "4 labels but");
    CHECK_STR_CONTAINS(e.msg, "5 images");
    CHECK(d == NULL);
}
