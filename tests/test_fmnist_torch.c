/* test_fmnist_torch.c — the Fashion-MNIST ViT trained by plain PyTorch (tests/fixtures/fmnist_torch/,
 * tests/reference/make_fmnist_torch_model.py): its data config (no crop_pct in the metadata: the IDX test
 * images go in as they are), the first 4 test images after the transform bit for bit as ToTensor +
 * Normalize, and the logits of test images 0..63 against PyTorch's (test_vit.c's tolerance). The whole
 * 10,000-image score (8171, as PyTorch) is tests/e2e/eval_fmnist_torch.sh. */
#include "test.h"

#include <stdlib.h>

#define FT "tests/fixtures/fmnist_torch/"

TEST(fmnist_torch_transform_and_logits) {
    if (!vitq_is_dir(VITQ_FASHION_MNIST_DIR)) test_skip("dataset-fashion-mnist not installed");
    vitq_model *m = NULL;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_model_load(FT "vit_fmnist_torch.safetensors", NULL, &m, &e) == 0, "%s", e.msg);
    if (!m) return;
    vitq_data_opts o = vitq_data_opts_for(&m->arch, 0);
    vitq_dataset *d = NULL;
    vitq_st_file *f = NULL;
    CHECK_MSG(vitq_dataset_open("fashion-mnist", "test", &o, &d, &e) == 0, "%s", e.msg);
    CHECK(vitq_st_open(FT "vit_fmnist_torch_ref.safetensors", &f, &e) == 0);
    if (d && f) {
        char t[256];
        CHECK_STREQ(vitq_dataset_transform(d, t, sizeof t), "none (28x28 IDX images as they are), mean (0.286) std (0.353)");
        float *img = malloc(sizeof(float) * 4 * 784), *ref = malloc(sizeof(float) * 4 * 784);
        int64_t idx[4] = {0, 1, 2, 3};
        CHECK(vitq_dataset_load(d, idx, 4, img, NULL, &e) == 0);
        CHECK(vitq_st_read_f32(f, "images", ref, 4, (const int64_t[]){4, 1, 28, 28}, &e) == 0);
        CHECK_EQ(memcmp(img, ref, sizeof(float) * 4 * 784), 0); /* (x / 255 - 0.286f) / 0.353f, the same bits */
        float *logits = malloc(sizeof(float) * 640), *want = malloc(sizeof(float) * 640);
        vitq_eval_result r;
        CHECK(vitq_evaluate(m, d, 64, 32, logits, &r, NULL, &e) == 0);
        CHECK(vitq_st_read_f32(f, "logits", want, 2, (const int64_t[]){64, 10}, &e) == 0);
        double mx = 0, worst = 0;
        for (int i = 0; i < 640; i++) mx = fmax(mx, fabs(want[i])), worst = fmax(worst, fabs(logits[i] - want[i]));
        CHECK_ALLCLOSE(logits, want, 640, 1e-4, 1e-5 * mx);
        printf("  test images 0..63: max |logits - torch| %.2e\n", worst);
        free(img), free(ref), free(logits), free(want);
    }
    vitq_st_close(f);
    vitq_dataset_free(d);
    vitq_model_free(m);
}
