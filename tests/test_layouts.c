/* test_layouts.c — data-set layouts (tests/fixtures/layouts/, tests/reference/make_layout_fixtures.py):
 * an ImageNet-style root with train/ and val/ is one data set with two splits (never the two classes
 * "train" and "val"), val/ only has no train split (calibration refused, not silently drawn from val), a
 * root with train/ and validation/; every split's classes, counts and labels as torchvision's ImageFolder
 * (manifest.json), grey, CMYK and PNG-named-.JPEG images among RGB ones decoded per image, and the 3-class
 * model's logits on each split against PyTorch's (model_3cls_ref, test_vit.c's tolerance). */
#include "test.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define LAY "tests/fixtures/layouts/"

static vitq_model *model3(void) {
    vitq_model *m = NULL;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_model_load(LAY "model_3cls.safetensors", NULL, &m, &e) == 0, "%s", e.msg);
    return m;
}

static cJSON *split_manifest(cJSON *m, const char *root, const char *split) {
    cJSON *r = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(m, "roots"), root);
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "splits"), split);
}

/* Opens root's `split`, checks the split used, count, classes and labels against the manifest. */
static vitq_dataset *open_split(cJSON *man, const vitq_model *m, const char *root, const char *split,
                                const char *want_split) {
    char spec[256];
    snprintf(spec, sizeof spec, LAY "%s", root);
    vitq_data_opts o = vitq_data_opts_for(&m->arch, 0);
    vitq_dataset *d = NULL;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_dataset_open(spec, split, &o, &d, &e) == 0, "%s %s: %s", root, split, e.msg);
    if (!d) return NULL;
    CHECK_STREQ(vitq_dataset_split(d), want_split);
    cJSON *s = split_manifest(man, root, want_split);
    CHECK(s != NULL);
    if (!s) return d;
    CHECK_EQ(vitq_dataset_size(d), (int64_t)cJSON_GetObjectItemCaseSensitive(s, "count")->valueint);
    CHECK_EQ(vitq_dataset_classes(d), cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(s, "classes")));
    const cJSON *f;
    int i = 0;
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(s, "files")) {
        CHECK_STREQ(d->paths[i], cJSON_GetObjectItemCaseSensitive(f, "file")->valuestring);
        CHECK_EQ(d->folder_labels[i], cJSON_GetObjectItemCaseSensitive(f, "label")->valueint);
        i++;
    }
    return d;
}

/* The model's logits on every image of d against ref tensor `name` (n, 3). */
static void logits_vs_torch(vitq_model *m, vitq_dataset *d, const char *name) {
    vitq_st_file *f = NULL;
    vitq_err e = {{0}};
    CHECK(vitq_st_open(LAY "model_3cls_ref.safetensors", &f, &e) == 0);
    const int64_t n = vitq_dataset_size(d);
    float *logits = malloc(sizeof(float) * (size_t)(n * 3)), *ref = malloc(sizeof(float) * (size_t)(n * 3));
    vitq_eval_result r;
    CHECK_MSG(vitq_evaluate(m, d, 0, 4, logits, &r, NULL, &e) == 0, "%s", e.msg);
    CHECK(f && vitq_st_read_f32(f, name, ref, 2, (const int64_t[]){n, 3}, &e) == 0);
    double mx = 0, worst = 0;
    for (int64_t i = 0; i < n * 3; i++) mx = fmax(mx, fabs(ref[i])), worst = fmax(worst, fabs(logits[i] - ref[i]));
    CHECK_ALLCLOSE(logits, ref, (long)(n * 3), 1e-4, 1e-5 * mx);
    CHECK_NEAR(r.top1, 100.0 * 2 / (double)n, 1e-9); /* the manifest: 2 correct on each split */
    printf("  %-28s %lld images, top-1 %.2f%%, max |logits - torch| %.2e\n", name, (long long)n, r.top1, worst);
    free(logits), free(ref);
    vitq_st_close(f);
}

static cJSON *manifest(void) {
    size_t n = 0;
    vitq_err e;
    char *t = vitq_read_file(LAY "manifest.json", &n, &e);
    cJSON *j = t ? cJSON_ParseWithLength(t, n) : NULL;
    CHECK_MSG(j != NULL, "layouts/manifest.json");
    free(t);
    return j;
}

TEST(layouts_imagenet_root_two_splits) {
    cJSON *man = manifest();
    vitq_model *m = model3();
    if (!man || !m) return;
    vitq_dataset *val = open_split(man, m, "imagenet_root", "test", "val");
    vitq_dataset *val2 = open_split(man, m, "imagenet_root", "val", "val");
    vitq_dataset *train = open_split(man, m, "imagenet_root", "train", "train");
    if (val) {
        char t[256];
        CHECK_STREQ(vitq_dataset_name(val), LAY "imagenet_root/val");
        CHECK_STREQ(vitq_dataset_transform(val, t, sizeof t),
                    "resize 18 bicubic, centre crop 16, mean (0.485, 0.456, 0.406) std (0.229, 0.224, 0.225)");
        logits_vs_torch(m, val, "val.logits");
        /* the transform of every val image (grey first, a PNG named .JPEG) as PIL's */
        vitq_st_file *f = NULL;
        vitq_err e;
        float *x = malloc(sizeof(float) * 7 * 768), *ref = malloc(sizeof(float) * 7 * 768);
        int64_t idx[7] = {0, 1, 2, 3, 4, 5, 6};
        CHECK(vitq_dataset_load(val, idx, 7, x, NULL, &e) == 0);
        CHECK(vitq_st_open(LAY "model_3cls_ref.safetensors", &f, &e) == 0);
        CHECK(f && vitq_st_read_f32(f, "val.images", ref, 4, (const int64_t[]){7, 3, 16, 16}, &e) == 0);
        CHECK_ALLCLOSE(x, ref, 7 * 768, 0.0, 1e-6);
        vitq_st_close(f);
        free(x), free(ref);
    }
    if (train) logits_vs_torch(m, train, "train.logits");
    vitq_dataset_free(val);
    vitq_dataset_free(val2);
    vitq_dataset_free(train);
    vitq_model_free(m);
    cJSON_Delete(man);
}

TEST(layouts_val_only_has_no_train_split) {
    cJSON *man = manifest();
    vitq_model *m = model3();
    if (!man || !m) return;
    vitq_dataset *val = open_split(man, m, "val_only", "test", "val"), *d = NULL;
    vitq_data_opts o = vitq_data_opts_for(&m->arch, 0);
    vitq_err e = {{0}};
    CHECK(vitq_dataset_open(LAY "val_only", "train", &o, &d, &e) == VITQ_EINVAL);
    CHECK_STREQ(e.msg, LAY "val_only: no train split (the splits here: val); calibration would draw from the "
                           "evaluation images: set calib_split = val to do that on purpose");
    CHECK(d == NULL);
    /* a single image folder: the evaluation images, no train split either */
    CHECK(vitq_dataset_open(LAY "val_only/val", "train", &o, &d, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "no train split (one image folder, no train/ and val/ inside)");
    CHECK(vitq_dataset_open(LAY "val_only/val/", "test", &o, &d, &e) == 0);
    if (d) CHECK_STREQ(vitq_dataset_split(d), "val");
    vitq_dataset_free(d);
    vitq_dataset_free(val);
    vitq_model_free(m);
    cJSON_Delete(man);
}

TEST(layouts_validation_root) {
    cJSON *man = manifest();
    vitq_model *m = model3();
    if (!man || !m) return;
    vitq_dataset *v = open_split(man, m, "validation_root", "test", "validation");
    vitq_dataset *t = open_split(man, m, "validation_root", "train", "train");
    if (v) CHECK_EQ(vitq_dataset_classes(v), 2);
    vitq_dataset_free(v);
    vitq_dataset_free(t);
    vitq_model_free(m);
    cJSON_Delete(man);
}
