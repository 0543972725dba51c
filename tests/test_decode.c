/* test_decode.c — decoding every source of tests/fixtures/decode/ (tests/reference/make_decode_fixtures.py,
 * Pillow 9.4) bit-exact against PIL's convert('RGB') and convert('L'): 16-bit grey+alpha / RGBA / full-range
 * grey PNG, 1-, 4-bit grey, palette with and without tRNS, Adam7, a PNG named .JPEG and a JPEG named .png,
 * CMYK JPEG with and without an Adobe marker, EXIF orientation (not applied), progressive grey; then timm's
 * eval transform of four of them with BICUBIC and BILINEAR (|diff| <= 1e-6); and timm's resize arithmetic
 * in double (floor(img_size / crop_pct) where a float32 crop_pct is one less). The list of sources and
 * transforms is read from the fixtures' manifest.json, so a source added there is tested here. */
#include "test.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define DEC "tests/fixtures/decode/"

static cJSON *manifest(void) {
    size_t n = 0;
    vitq_err e;
    char *text = vitq_read_file(DEC "manifest.json", &n, &e);
    CHECK_MSG(text != NULL, "%s", e.msg);
    cJSON *j = text ? cJSON_ParseWithLength(text, n) : NULL;
    CHECK_MSG(j != NULL, "manifest.json does not parse");
    free(text);
    return j;
}

static const char *str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* VQU8: 'VQU8', int32 w, h, c, then h*w*c bytes. */
static int read_u8(const char *path, vitq_image *im) {
    size_t n = 0;
    vitq_err e;
    char *b = vitq_read_file(path, &n, &e);
    memset(im, 0, sizeof *im);
    int32_t hdr[3] = {0};
    if (b && n >= 16) memcpy(hdr, b + 4, 12);
    if (!b || n < 16 || memcmp(b, "VQU8", 4) || n != 16 + (size_t)hdr[0] * hdr[1] * hdr[2]) {
        test_failf(__FILE__, __LINE__, "bad fixture %s", path);
        free(b);
        return -1;
    }
    im->w = hdr[0], im->h = hdr[1], im->c = hdr[2];
    im->px = malloc(n - 16);
    memcpy(im->px, b + 16, n - 16);
    free(b);
    return 0;
}

/* VQF4: 'VQF4', int32 ndim, dims, float32 data. */
static float *read_f32(const char *path, long *count) {
    size_t n = 0;
    vitq_err e;
    char *b = vitq_read_file(path, &n, &e);
    int32_t nd = 0;
    if (b && n >= 8) memcpy(&nd, b + 4, 4);
    long cnt = 1;
    for (int i = 0; b && nd > 0 && nd < 8 && i < nd && 8 + 4 * (size_t)(i + 1) <= n; i++) {
        int32_t v;
        memcpy(&v, b + 8 + 4 * i, 4);
        cnt *= v;
    }
    size_t off = 8 + 4 * (size_t)nd;
    if (!b || memcmp(b, "VQF4", 4) || n != off + 4 * (size_t)cnt) {
        test_failf(__FILE__, __LINE__, "bad fixture %s", path);
        free(b);
        return NULL;
    }
    float *x = malloc(4 * (size_t)cnt);
    memcpy(x, b + off, 4 * (size_t)cnt);
    free(b);
    *count = cnt;
    return x;
}

TEST(decode_every_source_bit_exact_vs_pil) {
    cJSON *m = manifest();
    const cJSON *src, *sources = cJSON_GetObjectItemCaseSensitive(m, "sources");
    int n = 0;
    cJSON_ArrayForEach(src, sources) {
        for (int k = 0; k < 2; k++) {
            const int want = k == 0 ? 3 : 1;
            char path[512], ref_path[512];
            snprintf(path, sizeof path, DEC "%s", str(src, "src"));
            snprintf(ref_path, sizeof ref_path, DEC "%s", str(src, want == 3 ? "rgb" : "l"));
            vitq_image got, ref;
            vitq_err e = {{0}};
            int rc = vitq_image_read(path, want, &got, &e);
            CHECK_MSG(rc == 0, "%s: %s", path, e.msg);
            if (rc == 0 && read_u8(ref_path, &ref) == 0) {
                CHECK_MSG(got.w == ref.w && got.h == ref.h && got.c == ref.c, "%s: %dx%dx%d vs PIL %dx%dx%d", path,
                          got.w, got.h, got.c, ref.w, ref.h, ref.c);
                size_t diff = 0, total = (size_t)ref.w * ref.h * ref.c;
                for (size_t i = 0; got.w == ref.w && got.h == ref.h && got.c == ref.c && i < total; i++)
                    diff += got.px[i] != ref.px[i];
                CHECK_MSG(diff == 0, "%s (%s): %zu of %zu bytes differ from PIL", path, want == 3 ? "RGB" : "L", diff,
                          total);
                vitq_image_free(&ref);
            }
            vitq_image_free(&got);
        }
        n++;
    }
    printf("  %d sources, convert('RGB') and convert('L') each, bit-exact\n", n);
    CHECK_EQ(n, 17);
    cJSON_Delete(m);
}

TEST(decode_transforms_bicubic_bilinear_vs_pil) {
    cJSON *m = manifest();
    const cJSON *t, *list = cJSON_GetObjectItemCaseSensitive(m, "transforms");
    int n = 0;
    cJSON_ArrayForEach(t, list) {
        char path[512], ref_path[512];
        snprintf(path, sizeof path, DEC "%s", str(t, "src"));
        snprintf(ref_path, sizeof ref_path, DEC "%s", str(t, "out"));
        const int C = !strcmp(str(t, "convert"), "L") ? 1 : 3;
        vitq_data_opts o = {.img_size = cJSON_GetObjectItemCaseSensitive(t, "img_size")->valueint, .in_chans = C,
                            .crop_pct = cJSON_GetObjectItemCaseSensitive(t, "crop_pct")->valuedouble,
                            .interpolation = vitq_interp_parse(str(t, "interpolation"))};
        CHECK(o.interpolation >= 0);
        for (int c = 0; c < C; c++) {
            o.mean[c] = (float)cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(t, "mean"), c)->valuedouble;
            o.std[c] = (float)cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(t, "std"), c)->valuedouble;
        }
        CHECK_EQ(vitq_resize_size(o.img_size, o.crop_pct),
                 cJSON_GetObjectItemCaseSensitive(t, "resize_short_side_to")->valueint);
        vitq_image im;
        vitq_err e = {{0}};
        long cnt = 0;
        float *ref = read_f32(ref_path, &cnt);
        CHECK_MSG(vitq_image_read(path, C, &im, &e) == 0, "%s", e.msg);
        if (ref && im.px && cnt == (long)C * o.img_size * o.img_size) {
            float *x = malloc(sizeof(float) * (size_t)cnt);
            CHECK_MSG(vitq_eval_transform(x, im.px, im.w, im.h, im.c, &o, path, &e) == 0, "%s", e.msg);
            CHECK_ALLCLOSE(x, ref, cnt, 0.0, 1e-6);
            free(x);
        }
        free(ref);
        vitq_image_free(&im);
        n++;
    }
    printf("  %d transforms (bicubic and bilinear), |diff| <= 1e-6\n", n);
    CHECK_EQ(n, 8);
    cJSON_Delete(m);
}

/* timm computes floor(img_size / crop_pct) with Python floats: crop_pct must stay a double. The pairs are the
 * manifest's (tests/reference/README.md): with a float32 crop_pct each gives one less. */
TEST(decode_resize_size_double_arithmetic) {
    static const struct {
        int s;
        double crop;
        int want;
    } c[] = {{17, 0.85, 20}, {8, 0.8, 10}, {23, 0.92, 25}, {49, 0.98, 50}, {43, 0.86, 50},
             {224, 0.875, 256}, {224, 0.9, 248}, {224, 0.95, 235}, {224, 0.96, 233}, {224, 1.0, 224}};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        CHECK_EQ(vitq_resize_size(c[i].s, c[i].crop), c[i].want);
        if (i < 5) CHECK_EQ((int)floor((double)c[i].s / (double)(float)c[i].crop), c[i].want - 1); /* the float bug */
    }
}

/* The interpolation of the data config reaches the resize: a model whose metadata says bilinear. */
TEST(decode_bilinear_model_folder_vs_pil) {
    vitq_model *m = NULL;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_model_load("tests/fixtures/variants/bilinear.safetensors", NULL, &m, &e) == 0, "%s", e.msg);
    if (!m) return;
    vitq_data_opts o = vitq_data_opts_for(&m->arch, 0);
    CHECK_EQ(o.interpolation, VITQ_INTERP_BILINEAR);
    CHECK_EQ(o.crop_pct, 0.875);
    vitq_dataset *d = NULL;
    CHECK_MSG(vitq_dataset_open("tests/fixtures/images/folder", "test", &o, &d, &e) == 0, "%s", e.msg);
    vitq_st_file *f = NULL;
    CHECK(vitq_st_open("tests/fixtures/variants/bilinear_ref.safetensors", &f, &e) == 0);
    if (d && f) {
        char t[256];
        CHECK_STREQ(vitq_dataset_transform(d, t, sizeof t), "resize 18 bilinear, centre crop 16, mean (0, 0, 0) std (1, 1, 1)");
        float *images = malloc(sizeof(float) * 5 * 3 * 256), *ref = malloc(sizeof(float) * 5 * 3 * 256);
        float *logits = malloc(sizeof(float) * 10), *bicubic = malloc(sizeof(float) * 10);
        CHECK(vitq_st_read_f32(f, "images", ref, 4, (const int64_t[]){5, 3, 16, 16}, &e) == 0);
        CHECK(vitq_st_read_f32(f, "logits", logits, 2, (const int64_t[]){5, 2}, &e) == 0);
        CHECK(vitq_st_read_f32(f, "logits_bicubic", bicubic, 2, (const int64_t[]){5, 2}, &e) == 0);
        int64_t idx[5] = {0, 1, 2, 3, 4};
        int labels[5];
        CHECK(vitq_dataset_load(d, idx, 5, images, labels, &e) == 0);
        CHECK_ALLCLOSE(images, ref, 5 * 3 * 256, 0.0, 1e-6);
        vitq_acts *a = NULL;
        CHECK(vitq_acts_create(m, 5, 0, &a, &e) == 0 && vitq_forward(m, a, images, 5, &e) == 0);
        double dl = 0, db = 0;
        for (int i = 0; a && i < 10; i++) dl = fmax(dl, fabs(a->logits[i] - logits[i])), db = fmax(db, fabs(a->logits[i] - bicubic[i]));
        printf("  bilinear model on images/folder: max |logits - torch| %.2e (the bicubic bug: %.2e)\n", dl, db);
        if (a) CHECK_ALLCLOSE(a->logits, logits, 10, 1e-4, 1e-5);
        CHECK(db > 1e-3);
        vitq_acts_free(a);
        free(images), free(ref), free(logits), free(bicubic);
    }
    vitq_st_close(f);
    vitq_dataset_free(d);
    vitq_model_free(m);
}
