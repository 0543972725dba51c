/* test_data_image.c — JPEG/PNG decoding, the PIL-exact bicubic resize and timm's eval transform,
 * against fixtures written by PIL 9.4 (tests/reference/make_image_fixtures.py), plus image-folder
 * datasets: class order, labels, channel rules, and corrupt / truncated files reported by name.
 *
 * Stated bounds (measured: all are 0 on Debian 12, where PIL and vitq share libjpeg62-turbo):
 *   PNG decode: exact. JPEG decode: at most 0 levels (same libjpeg-turbo, same islow DCT and fancy
 *   upsampling). Bicubic resize: at most 0 levels of 255. Full transform: |diff| <= 1e-6 (identical
 *   uint8 pixels give bit-identical float32 after /255, -mean, /std). */

#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FIX "tests/fixtures/images"

/* Tolerances the tests allow (see the header comment). */
#define JPEG_MAX_LEVELS 0
#define RESIZE_MAX_LEVELS 0
#define TRANSFORM_ATOL 1e-6

static int read_u8(const char *path, vitq_image *im) {
    vitq_err e;
    size_t n = 0;
    char *b = vitq_read_file(path, &n, &e);
    memset(im, 0, sizeof *im);
    if (!b || n < 16 || memcmp(b, "VQU8", 4) != 0) {
        test_failf(__FILE__, __LINE__, "cannot read fixture %s", path);
        free(b);
        return -1;
    }
    int32_t hdr[3];
    memcpy(hdr, b + 4, 12);
    im->w = hdr[0], im->h = hdr[1], im->c = hdr[2];
    size_t want = (size_t)im->w * im->h * im->c;
    if (n != 16 + want) {
        test_failf(__FILE__, __LINE__, "fixture %s: size mismatch", path);
        free(b);
        return -1;
    }
    im->px = malloc(want);
    memcpy(im->px, b + 16, want);
    free(b);
    return 0;
}

/* Reads a .f32 fixture; returns the data (malloc) and the element count. */
static float *read_f32(const char *path, long *count, int *dims, int *ndim) {
    vitq_err e;
    size_t n = 0;
    char *b = vitq_read_file(path, &n, &e);
    if (!b || n < 8 || memcmp(b, "VQF4", 4) != 0) {
        test_failf(__FILE__, __LINE__, "cannot read fixture %s", path);
        free(b);
        return NULL;
    }
    int32_t nd;
    memcpy(&nd, b + 4, 4);
    long cnt = 1;
    for (int i = 0; i < nd; i++) {
        int32_t v;
        memcpy(&v, b + 8 + 4 * i, 4);
        dims[i] = v;
        cnt *= v;
    }
    *ndim = nd;
    size_t off = 8 + 4 * (size_t)nd;
    if (n != off + 4 * (size_t)cnt) {
        test_failf(__FILE__, __LINE__, "fixture %s: size mismatch", path);
        free(b);
        return NULL;
    }
    float *x = malloc(4 * (size_t)cnt);
    memcpy(x, b + off, 4 * (size_t)cnt);
    free(b);
    *count = cnt;
    return x;
}

static int max_diff(const vitq_image *a, const vitq_image *b) {
    if (a->w != b->w || a->h != b->h || a->c != b->c) return 999;
    int m = 0;
    for (size_t i = 0; i < (size_t)a->w * a->h * a->c; i++) {
        int d = abs((int)a->px[i] - (int)b->px[i]);
        if (d > m) m = d;
    }
    return m;
}

static void copy_file(const char *from, const char *to, size_t keep /* 0: all */) {
    vitq_err e;
    size_t n = 0;
    char *b = vitq_read_file(from, &n, &e);
    CHECK_MSG(b != NULL, "%s", e.msg);
    if (!b) return;
    FILE *f = fopen(to, "wb");
    CHECK(f != NULL);
    if (f) {
        fwrite(b, 1, keep && keep < n ? keep : n, f);
        fclose(f);
    }
    free(b);
}

/* Decodes src/NAME.EXT both ways and compares with PIL's convert('RGB') and convert('L'). */
static int decode_vs_pil(const char *file, const char *stem, int *native_c) {
    char p[512], q[512];
    snprintf(p, sizeof p, FIX "/src/%s", file);
    int worst = 0;
    for (int k = 0; k < 2; k++) {
        int want = k == 0 ? 3 : 1;
        snprintf(q, sizeof q, FIX "/decoded/%s.%s.u8", stem, want == 3 ? "rgb" : "l");
        vitq_image got, ref;
        vitq_err e = {{0}};
        int rc = vitq_image_read(p, want, &got, &e);
        CHECK_MSG(rc == 0, "%s: %s", file, e.msg);
        if (rc) return 999;
        if (read_u8(q, &ref) == 0) {
            int d = max_diff(&got, &ref);
            if (d > worst) worst = d;
            vitq_image_free(&ref);
        }
        vitq_image_free(&got);
    }
    vitq_image nat;
    vitq_err e;
    if (vitq_image_read(p, 0, &nat, &e) == 0) {
        *native_c = nat.c;
        vitq_image_free(&nat);
    }
    return worst;
}

TEST(data_image_png_decode_exact) {
    static const struct {
        const char *file, *stem;
        int native_c;
    } cases[] = {
        {"rgb_37x23.png", "rgb_37x23", 3},     {"gray_29x31.png", "gray_29x31", 1},
        {"rgba_20x17.png", "rgba_20x17", 3},   {"la_15x12.png", "la_15x12", 1},
        {"pal_19x21.png", "pal_19x21", 3},     {"pal4bit_13x9.png", "pal4bit_13x9", 3},
        {"gray16_13x11.png", "gray16_13x11", 1}, {"rgb16_10x9.png", "rgb16_10x9", 3},
        {"gray2bit_9x7.png", "gray2bit_9x7", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int c = -1;
        int d = decode_vs_pil(cases[i].file, cases[i].stem, &c);
        CHECK_MSG(d == 0, "%s: max |vitq - PIL| = %d levels (PNG must be exact)", cases[i].file, d);
        CHECK_MSG(c == cases[i].native_c, "%s: native channels %d, expected %d", cases[i].file, c, cases[i].native_c);
        int gray = -1;
        char p[512];
        snprintf(p, sizeof p, FIX "/src/%s", cases[i].file);
        vitq_err e;
        CHECK(vitq_image_probe_gray(p, &gray, &e) == 0);
        CHECK_MSG(gray == (cases[i].native_c == 1), "%s: probe says gray=%d", cases[i].file, gray);
    }
}

TEST(data_image_jpeg_decode_vs_pil) {
    static const struct {
        const char *file, *stem;
        int native_c;
    } cases[] = {
        {"rgb_37x23.jpg", "rgb_37x23_jpg", 3},       {"rgb444_37x23.jpg", "rgb444_37x23_jpg", 3},
        {"prog_37x23.jpg", "prog_37x23_jpg", 3},     {"gray_29x31.jpg", "gray_29x31_jpg", 1},
        {"cmyk_16x12.jpg", "cmyk_16x12_jpg", 3},
    };
    int worst = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int c = -1;
        int d = decode_vs_pil(cases[i].file, cases[i].stem, &c);
        CHECK_MSG(d <= JPEG_MAX_LEVELS, "%s: max |vitq - PIL| = %d levels > %d", cases[i].file, d, JPEG_MAX_LEVELS);
        CHECK_MSG(c == cases[i].native_c, "%s: native channels %d, expected %d", cases[i].file, c, cases[i].native_c);
        if (d > worst) worst = d;
    }
    printf("     JPEG decode: max |vitq - PIL| = %d levels (allowed %d)\n", worst, JPEG_MAX_LEVELS);
}

TEST(data_image_luma_and_replicate) {
    /* PIL's L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16, by hand. */
    uint8_t px[6] = {255, 0, 0, 10, 200, 30};
    vitq_image im = {.w = 2, .h = 1, .c = 3, .px = malloc(6)};
    memcpy(im.px, px, 6);
    vitq_err e;
    CHECK(vitq_image_convert(&im, 1, &e) == 0);
    /* 5029493 >> 16, 8146848 >> 16 */
    CHECK_EQ(im.c, 1);
    CHECK_EQ(im.px[0], 76);
    CHECK_EQ(im.px[1], 124);
    CHECK(vitq_image_convert(&im, 3, &e) == 0);
    CHECK_EQ(im.c, 3);
    CHECK_EQ(im.px[3], 124);
    CHECK_EQ(im.px[4], 124);
    CHECK_EQ(im.px[5], 124);
    vitq_image_free(&im);
}

TEST(data_resize_vs_pil) {
    static const struct {
        const char *src;
        int w, h;
    } cases[] = {
        {"rgb_37x23", 20, 13}, {"rgb_37x23", 64, 41}, {"rgb_37x23", 37, 50}, {"rgb_37x23", 15, 23},
        {"rgb_37x23", 11, 7},  {"rgb_37x23", 5, 3},   {"rgb_37x23", 100, 23}, {"rgb_37x23", 36, 22},
        {"rgb_37x23", 1, 1},   {"gray_29x31", 17, 40}, {"gray_29x31", 8, 9}, {"gray_29x31", 29, 7},
        {"gray_29x31", 58, 62},
    };
    int worst = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char p[512];
        vitq_image src, ref;
        int gray = strncmp(cases[i].src, "gray", 4) == 0;
        snprintf(p, sizeof p, FIX "/decoded/%s.%s.u8", cases[i].src, gray ? "l" : "rgb");
        if (read_u8(p, &src)) continue;
        snprintf(p, sizeof p, FIX "/resize/%s_%dx%d.u8", cases[i].src, cases[i].w, cases[i].h);
        if (read_u8(p, &ref) == 0) {
            vitq_image got = {.w = ref.w, .h = ref.h, .c = src.c, .px = malloc((size_t)ref.w * ref.h * src.c)};
            CHECK(vitq_resize_bicubic(got.px, got.w, got.h, src.px, src.w, src.h, src.c) == 0);
            int d = max_diff(&got, &ref);
            CHECK_MSG(d <= RESIZE_MAX_LEVELS, "%s -> %dx%d: max |vitq - PIL| = %d levels > %d", cases[i].src,
                      cases[i].w, cases[i].h, d, RESIZE_MAX_LEVELS);
            if (d > worst) worst = d;
            vitq_image_free(&got);
            vitq_image_free(&ref);
        }
        vitq_image_free(&src);
    }
    printf("     bicubic resize: max |vitq - PIL| = %d levels (allowed %d)\n", worst, RESIZE_MAX_LEVELS);
}

/* The same integer formula as procedural() in make_image_fixtures.py. */
static uint8_t *procedural(int w, int h) {
    uint8_t *p = malloc((size_t)w * h * 3);
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++)
            for (int64_t c = 0; c < 3; c++)
                p[(y * w + x) * 3 + c] = (uint8_t)((x * x * 3 + y * 7 + c * 85 + ((x * y) % 31) * 5 +
                                                    ((x / 16 + y / 16) % 2) * 128) & 255);
    return p;
}

TEST(data_resize_large_factors_vs_pil) {
    /* 200x150 down by 2.7 and 8.7 (wide kernels), up by 1.1, and height only. */
    static const int sizes[][2] = {{73, 55}, {23, 17}, {223, 167}, {200, 37}};
    uint8_t *src = procedural(200, 150);
    int worst = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char p[512];
        vitq_image ref;
        snprintf(p, sizeof p, FIX "/resize/proc_200x150_%dx%d.u8", sizes[i][0], sizes[i][1]);
        if (read_u8(p, &ref)) continue;
        vitq_image got = {.w = ref.w, .h = ref.h, .c = 3, .px = malloc((size_t)ref.w * ref.h * 3)};
        CHECK(vitq_resize_bicubic(got.px, got.w, got.h, src, 200, 150, 3) == 0);
        int d = max_diff(&got, &ref);
        CHECK_MSG(d <= RESIZE_MAX_LEVELS, "200x150 -> %dx%d: max |vitq - PIL| = %d levels > %d", sizes[i][0],
                  sizes[i][1], d, RESIZE_MAX_LEVELS);
        if (d > worst) worst = d;
        vitq_image_free(&got);
        vitq_image_free(&ref);
    }
    free(src);
    printf("     bicubic resize, large factors: max |vitq - PIL| = %d levels (allowed %d)\n", worst, RESIZE_MAX_LEVELS);
}

static vitq_data_opts deit32(void) {
    vitq_data_opts o = {.img_size = 32, .in_chans = 3, .mean = {0.485f, 0.456f, 0.406f},
                        .std = {0.229f, 0.224f, 0.225f}, .crop_pct = 0.875f};
    return o;
}

TEST(data_folder_transform_vs_pil) {
    vitq_data_opts o = deit32();
    vitq_dataset *d = NULL;
    vitq_err e = {{0}};
    int rc = vitq_dataset_open(FIX "/folder", NULL, &o, &d, &e);
    CHECK_MSG(rc == 0, "open: %s", e.msg);
    if (rc) return;
    CHECK(vitq_dataset_size(d) == 5); /* dog/notes.txt skipped */
    CHECK(vitq_dataset_classes(d) == 2);
    CHECK_STREQ(d->class_names[0], "cat");
    CHECK_STREQ(d->class_names[1], "dog");
    CHECK_STREQ(d->paths[1], "cat/b.JPG");
    CHECK_STREQ(d->paths[4], "dog/e_gray.png");
    long n = 0;
    int dims[8], nd = 0;
    float *ref = read_f32(FIX "/transform_rgb.f32", &n, dims, &nd);
    if (ref) {
        CHECK_EQ(nd, 4);
        CHECK_EQ(dims[0], 5);
        CHECK_EQ(dims[1], 3);
        CHECK_EQ(dims[2], 32);
        CHECK_EQ(dims[3], 32);
        /* Shuffled order: each slot must get its own image and label. */
        int64_t idx[5] = {3, 0, 4, 1, 2};
        const long per = 3 * 32 * 32;
        float *x = malloc(sizeof(float) * 5 * per), *want = malloc(sizeof(float) * 5 * per);
        int lab[5];
        rc = vitq_dataset_load(d, idx, 5, x, lab, &e);
        CHECK_MSG(rc == 0, "load: %s", e.msg);
        for (int b = 0; b < 5; b++) memcpy(want + b * per, ref + idx[b] * per, sizeof(float) * per);
        CHECK_ALLCLOSE(x, want, 5 * per, 0.0, TRANSFORM_ATOL);
        CHECK_EQ(lab[0], 1);
        CHECK_EQ(lab[1], 0);
        CHECK_EQ(lab[2], 1);
        CHECK_EQ(lab[3], 0);
        CHECK_EQ(lab[4], 1);
        /* The same with one thread: identical. */
        int t = vitq_threads_get();
        vitq_threads_set(1);
        float *x1 = malloc(sizeof(float) * 5 * per);
        CHECK(vitq_dataset_load(d, idx, 5, x1, NULL, &e) == 0);
        CHECK(memcmp(x, x1, sizeof(float) * 5 * per) == 0);
        vitq_threads_set(t);
        free(x1);
        free(x);
        free(want);
        free(ref);
    }
    vitq_dataset_free(d);
}

TEST(data_folder_channels) {
    vitq_data_opts o = deit32();
    o.in_chans = 1, o.mean[0] = 0.5f, o.std[0] = 0.25f;
    vitq_dataset *d = NULL;
    vitq_err e = {{0}};
    /* 1-channel model on colour images: each image converted with convert('L'), as timm does for in_chans 1;
     * no flag needed (image files are converted per image). */
    int rc = vitq_dataset_open(FIX "/folder", NULL, &o, &d, &e);
    CHECK_MSG(rc == 0, "open: %s", e.msg);
    long n = 0;
    int dims[8], nd = 0;
    float *ref = read_f32(FIX "/transform_l.f32", &n, dims, &nd);
    if (d && ref) {
        int64_t idx[5] = {0, 1, 2, 3, 4};
        float *x = malloc(sizeof(float) * 5 * 1024);
        CHECK(vitq_dataset_load(d, idx, 5, x, NULL, &e) == 0);
        CHECK(n == 5 * 1024);
        CHECK_ALLCLOSE(x, ref, 5 * 1024, 0.0, TRANSFORM_ATOL);
        free(x);
    }
    free(ref);
    vitq_dataset_free(d);
    d = NULL;

    /* 3-channel model on a grayscale folder: convert('RGB') replicates, without a flag. */
    const char *tmp = test_tmpdir();
    char p[512];
    snprintf(p, sizeof p, "%s/only", tmp);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/only/e_gray.png", tmp);
    copy_file(FIX "/folder/dog/e_gray.png", p, 0);
    o = deit32();
    rc = vitq_dataset_open(tmp, NULL, &o, &d, &e);
    CHECK_MSG(rc == 0, "open: %s", e.msg);
    ref = read_f32(FIX "/transform_rgb.f32", &n, dims, &nd);
    if (d && ref) {
        int64_t i0 = 0;
        int lab = -1;
        float *x = malloc(sizeof(float) * 3 * 1024);
        CHECK(vitq_dataset_load(d, &i0, 1, x, &lab, &e) == 0);
        CHECK_EQ(lab, 0);
        CHECK_EQ(vitq_dataset_classes(d), 1);
        CHECK_ALLCLOSE(x, ref + 4 * 3 * 1024, 3 * 1024, 0.0, TRANSFORM_ATOL);
        free(x);
    }
    free(ref);
    vitq_dataset_free(d);
}

TEST(data_idx_transform_vs_pil) {
    /* Fashion-MNIST test image 0 at img_size 32 / crop_pct 0.875: 28 -> 36 bicubic, centre crop 32. */
    vitq_data_opts o = {.img_size = 32, .in_chans = 1, .mean = {0.2860f}, .std = {0.3530f}, .crop_pct = 0.875f};
    vitq_dataset *d = NULL;
    vitq_err e = {{0}};
    int rc = vitq_dataset_open("fashion-mnist", "test", &o, &d, &e);
    CHECK_MSG(rc == 0, "open: %s", e.msg);
    long n = 0;
    int dims[8], nd = 0;
    float *ref = read_f32(FIX "/fmnist0_32.f32", &n, dims, &nd);
    if (d && ref) {
        CHECK(n == 1024);
        int64_t i0 = 0;
        float x[1024];
        CHECK(vitq_dataset_load(d, &i0, 1, x, NULL, &e) == 0);
        CHECK_ALLCLOSE(x, ref, 1024, 0.0, TRANSFORM_ATOL);
    }
    free(ref);
    vitq_dataset_free(d);
}

TEST(data_image_corrupt_and_truncated) {
    const char *tmp = test_tmpdir();
    char p[512];
    vitq_image im;
    vitq_err e = {{0}};
    /* Truncated JPEG: PIL says "image file is truncated"; libjpeg would pad silently. */
    snprintf(p, sizeof p, "%s/half.jpg", tmp);
    copy_file(FIX "/src/rgb_37x23.jpg", p, 700);
    CHECK(vitq_image_read(p, 3, &im, &e) == VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, p);
    CHECK_STR_CONTAINS(e.msg, "truncated");
    /* Truncated inside the header. */
    copy_file(FIX "/src/rgb_37x23.jpg", p, 40);
    CHECK(vitq_image_read(p, 3, &im, &e) == VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, p);
    /* Corrupt JPEG: a broken frame header (SOF0 with 0 components). */
    {
        size_t n = 0;
        char *b = vitq_read_file(FIX "/src/rgb_37x23.jpg", &n, &e);
        CHECK(b != NULL);
        for (size_t i = 2; b && i + 9 < n; i++)
            if ((unsigned char)b[i] == 0xff && (unsigned char)b[i + 1] == 0xc0) {
                b[i + 9] = 0; /* number of components */
                break;
            }
        snprintf(p, sizeof p, "%s/bad.jpg", tmp);
        FILE *f = fopen(p, "wb");
        if (f && b) fwrite(b, 1, n, f);
        if (f) fclose(f);
        free(b);
        CHECK(vitq_image_read(p, 3, &im, &e) == VITQ_EFORMAT);
        CHECK_STR_CONTAINS(e.msg, p);
        CHECK_STR_CONTAINS(e.msg, "bad JPEG");
    }
    /* Truncated PNG. */
    snprintf(p, sizeof p, "%s/half.png", tmp);
    copy_file(FIX "/src/rgb_37x23.png", p, 1000);
    CHECK(vitq_image_read(p, 3, &im, &e) == VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, p);
    CHECK_STR_CONTAINS(e.msg, "truncated");
    /* Corrupt PNG: flipped bytes in the IDAT data (CRC mismatch). */
    {
        size_t n = 0;
        char *b = vitq_read_file(FIX "/src/rgb_37x23.png", &n, &e);
        CHECK(b != NULL);
        CHECK(n > 200);
        if (b)
            for (size_t i = 100; i < 120; i++) b[i] ^= 0x33;
        snprintf(p, sizeof p, "%s/bad.png", tmp);
        FILE *f = fopen(p, "wb");
        if (f && b) fwrite(b, 1, n, f);
        if (f) fclose(f);
        free(b);
        CHECK(vitq_image_read(p, 3, &im, &e) == VITQ_EFORMAT);
        CHECK_STR_CONTAINS(e.msg, p);
        CHECK_STR_CONTAINS(e.msg, "bad PNG");
    }
    /* Not an image at all; an empty file; a missing file. */
    snprintf(p, sizeof p, "%s/text.png", tmp);
    FILE *f = fopen(p, "wb");
    if (f) {
        fputs("hello, not a png\n", f);
        fclose(f);
    }
    CHECK(vitq_image_read(p, 3, &im, &e) == VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "not a JPEG or PNG");
    snprintf(p, sizeof p, "%s/empty.jpg", tmp);
    f = fopen(p, "wb");
    if (f) fclose(f);
    CHECK(vitq_image_read(p, 3, &im, &e) == VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "empty");
    snprintf(p, sizeof p, "%s/missing.jpg", tmp);
    CHECK(vitq_image_read(p, 3, &im, &e) == VITQ_EIO);
    CHECK_STR_CONTAINS(e.msg, p);
}

TEST(data_folder_errors) {
    const char *tmp = test_tmpdir();
    char p[512];
    vitq_data_opts o = deit32();
    vitq_dataset *d = NULL;
    vitq_err e = {{0}};
    /* No class sub-folders. */
    CHECK(vitq_dataset_open(tmp, NULL, &o, &d, &e) == VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "no class sub-folders");
    /* A class without images. */
    snprintf(p, sizeof p, "%s/a", tmp);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/a/x.png", tmp);
    copy_file(FIX "/src/rgb_37x23.png", p, 0);
    snprintf(p, sizeof p, "%s/b", tmp);
    mkdir(p, 0755);
    CHECK(vitq_dataset_open(tmp, NULL, &o, &d, &e) == VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "/b: class folder holds no");
    /* Images in nested folders count (torchvision walks each class recursively). */
    snprintf(p, sizeof p, "%s/b/sub", tmp);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/b/sub/y.jpg", tmp);
    copy_file(FIX "/src/rgb_37x23.jpg", p, 0);
    snprintf(p, sizeof p, "%s/b/z.JPEG", tmp);
    copy_file(FIX "/src/rgb_37x23.jpg", p, 0);
    int rc = vitq_dataset_open(tmp, NULL, &o, &d, &e);
    CHECK_MSG(rc == 0, "open: %s", e.msg);
    if (d) {
        CHECK_EQ(vitq_dataset_size(d), 3);
        CHECK_EQ(vitq_dataset_classes(d), 2);
        CHECK_STREQ(d->paths[1], "b/z.JPEG");
        CHECK_STREQ(d->paths[2], "b/sub/y.jpg");
        vitq_dataset_free(d);
        d = NULL;
    }
    /* A corrupt image is reported by name at load time, not crashed on. */
    snprintf(p, sizeof p, "%s/b/z.JPEG", tmp);
    copy_file(FIX "/src/rgb_37x23.jpg", p, 500);
    rc = vitq_dataset_open(tmp, NULL, &o, &d, &e);
    CHECK_MSG(rc == 0, "open: %s", e.msg);
    if (d) {
        int64_t idx[3] = {0, 1, 2};
        float *x = malloc(sizeof(float) * 3 * 3 * 1024);
        CHECK(vitq_dataset_load(d, idx, 3, x, NULL, &e) == VITQ_EFORMAT);
        CHECK_STR_CONTAINS(e.msg, "b/z.JPEG");
        CHECK_STR_CONTAINS(e.msg, "truncated");
        free(x);
        vitq_dataset_free(d);
        d = NULL;
    }
    /* An image format torchvision would read but vitq cannot. */
    snprintf(p, sizeof p, "%s/a/w.bmp", tmp);
    copy_file(FIX "/src/rgb_37x23.png", p, 0);
    CHECK(vitq_dataset_open(tmp, NULL, &o, &d, &e) == VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "w.bmp: unsupported image format");
    /* Not a directory. */
    CHECK(vitq_dataset_open(p, NULL, &o, &d, &e) == VITQ_EIO);
    CHECK_STR_CONTAINS(e.msg, "not a directory");
}
