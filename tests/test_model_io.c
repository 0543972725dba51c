/* test_model_io.c — checkpoints <-> models: save/load round trip (bit-exact, mlp_act included), the
 * built-in architecture for a file without metadata, strict metadata parsing, and the one-line errors
 * for dims that do not divide, wrong shapes, missing tensors and NaN weights; Swin's keys refused on a ViT
 * file. */
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* A small custom architecture: 8x8x1 images, patch 4, dim 12, depth 3, 3 heads, 5 classes. */
static vitq_arch tiny_arch(void) {
    return (vitq_arch){.name = "tiny_test", .img_size = 8, .patch_size = 4, .in_chans = 1, .num_classes = 5,
                       .embed_dim = 12, .depth = 3, .num_heads = 3, .mlp_ratio = 2.5f, .qkv_bias = 1,
                       .mean = {0.2860f, 0.2860f, 0.2860f}, .std = {0.3530f, 0.3530f, 0.3530f},
                       .crop_pct = 0.875f, .interpolation = "bilinear"};
}

/* Deterministic, distinct parameter values (some negative, some tiny). */
static void fill(vitq_model *m) {
    uint32_t s = 12345;
    for (int64_t i = 0; i < m->n_params; i++) {
        s = s * 1664525u + 1013904223u;
        m->slab[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 0.1f;
    }
}

static vitq_model *make_tiny(void) {
    vitq_arch a = tiny_arch();
    vitq_model *m = NULL;
    vitq_err e = {{0}};
    if (vitq_model_create(&a, &m, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return NULL;
    }
    fill(m);
    return m;
}

/* Writes m's table without any metadata (what a bare timm `save_file(state_dict)` gives), plus extras. */
static int save_bare(const vitq_model *m, const char *path, const char *const *keys, const char *const *vals,
                     int n_meta, int drop_row, vitq_err *e) {
    vitq_st_entry *t = calloc((size_t)m->n_table, sizeof *t);
    int n = 0;
    for (int i = 0; i < m->n_table; i++) {
        if (i == drop_row) continue;
        t[n] = (vitq_st_entry){.name = m->table[i].name, .data = m->table[i].data, .ndim = m->table[i].ndim};
        memcpy(t[n].shape, m->table[i].shape, sizeof m->table[i].shape);
        n++;
    }
    int rc = vitq_st_write(path, t, n, keys, vals, n_meta, e);
    free(t);
    return rc;
}

TEST(model_io_roundtrip) {
    vitq_model *m = make_tiny();
    if (!m) return;
    m->mlp_act[1] = VITQ_ACT_RELU;
    char path[512];
    snprintf(path, sizeof path, "%s/tiny.safetensors", test_tmpdir());
    const char *xk[] = {"trained_by", "epochs"}, *xv[] = {"vitq train", "3"};
    vitq_err e = {{0}};
    CHECK_MSG(vitq_model_save(m, path, xk, xv, 2, &e) == 0, "%s", e.msg);

    vitq_model *b = NULL;
    CHECK_MSG(vitq_model_load(path, NULL, &b, &e) == 0, "%s", e.msg);
    if (!b) goto out;
    const vitq_arch *x = &m->arch, *y = &b->arch;
    CHECK(!strcmp(y->name, "tiny_test"));
    CHECK_EQ(y->img_size, 8);
    CHECK_EQ(y->patch_size, 4);
    CHECK_EQ(y->in_chans, 1);
    CHECK_EQ(y->num_classes, 5);
    CHECK_EQ(y->embed_dim, 12);
    CHECK_EQ(y->depth, 3);
    CHECK_EQ(y->num_heads, 3);
    CHECK_EQ(y->qkv_bias, 1);
    CHECK_EQ(y->mlp_ratio, x->mlp_ratio);
    CHECK_EQ(y->crop_pct, x->crop_pct);
    CHECK_EQ(y->mean[0], x->mean[0]);
    CHECK_EQ(y->std[0], x->std[0]);
    CHECK(!strcmp(y->interpolation, "bilinear"));
    CHECK_EQ(b->n_params, m->n_params);
    CHECK_EQ(b->n_table, m->n_table);
    CHECK(memcmp(b->slab, m->slab, (size_t)m->n_params * sizeof(float)) == 0);
    CHECK_EQ(b->mlp_act[0], VITQ_ACT_GELU);
    CHECK_EQ(b->mlp_act[1], VITQ_ACT_RELU);
    CHECK_EQ(b->mlp_act[2], VITQ_ACT_GELU);
    CHECK(!strcmp(b->source, path));

    /* The metadata as written: exact texts, extras kept. */
    vitq_st_file *f = NULL;
    CHECK(vitq_st_open(path, &f, &e) == 0);
    if (f) {
        CHECK(!strcmp(vitq_st_meta(f, "mlp_act"), "gelu,relu,gelu"));
        CHECK(!strcmp(vitq_st_meta(f, "mean"), "0.286"));
        CHECK(!strcmp(vitq_st_meta(f, "mlp_ratio"), "2.5"));
        CHECK(!strcmp(vitq_st_meta(f, "qkv_bias"), "true"));
        CHECK(!strcmp(vitq_st_meta(f, "trained_by"), "vitq train"));
        CHECK_EQ(f->n_tensors, m->n_table);
        CHECK_EQ(f->n_meta, VITQ_ARCH_NBASE + 1 + 2); /* a plain ViT: no variant key written */
        vitq_st_close(f);
    }

    /* Saving the loaded model again gives the same bytes. */
    char path2[600];
    snprintf(path2, sizeof path2, "%s.again", path);
    CHECK(vitq_model_save(b, path2, xk, xv, 2, &e) == 0);
    size_t n1 = 0, n2 = 0;
    char *d1 = vitq_read_file(path, &n1, &e), *d2 = vitq_read_file(path2, &n2, &e);
    CHECK(d1);
    CHECK(d2);
    if (d1 && d2) {
        CHECK_EQ(n1, n2);
        CHECK_EQ(memcmp(d1, d2, n1), 0);
    }
    free(d1);
    free(d2);

    /* An extra key may not shadow an architecture key. */
    const char *bk[] = {"depth"}, *bv[] = {"7"};
    CHECK(vitq_model_save(m, path2, bk, bv, 1, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "extra metadata key 'depth' is an architecture key");
out:
    vitq_model_free(b);
    vitq_model_free(m);
}

TEST(model_io_uniform_relu_and_rgb) {
    vitq_arch a = tiny_arch();
    a.in_chans = 3;
    a.qkv_bias = 0;
    a.mean[1] = 0.5f, a.std[2] = 0.125f;
    vitq_model *m = NULL, *b = NULL;
    vitq_err e = {{0}};
    CHECK(vitq_model_create(&a, &m, &e) == 0);
    if (!m) return;
    fill(m);
    for (int l = 0; l < a.depth; l++) m->mlp_act[l] = VITQ_ACT_RELU;
    char path[512];
    snprintf(path, sizeof path, "%s/rgb.safetensors", test_tmpdir());
    CHECK(vitq_model_save(m, path, NULL, NULL, 0, &e) == 0);
    CHECK_MSG(vitq_model_load(path, NULL, &b, &e) == 0, "%s", e.msg);
    if (b) {
        CHECK(memcmp(&b->arch, &m->arch, sizeof b->arch) == 0);
        CHECK_EQ(b->arch.qkv_bias, 0);
        CHECK(vitq_model_param(b, "blocks.0.attn.qkv.bias") == NULL);
        for (int l = 0; l < a.depth; l++) CHECK(b->mlp_act[l] == VITQ_ACT_RELU);
        CHECK(memcmp(b->slab, m->slab, (size_t)m->n_params * sizeof(float)) == 0);
    }
    vitq_st_file *f = NULL;
    CHECK(vitq_st_open(path, &f, &e) == 0);
    if (f) {
        CHECK(!strcmp(vitq_st_meta(f, "mlp_act"), "relu"));
        CHECK(!strcmp(vitq_st_meta(f, "mean"), "0.286,0.5,0.286"));
        CHECK(!strcmp(vitq_st_meta(f, "std"), "0.353,0.353,0.125"));
        CHECK(!strcmp(vitq_st_meta(f, "qkv_bias"), "false"));
        vitq_st_close(f);
    }
    vitq_model_free(b);
    vitq_model_free(m);
}

/* deit_tiny without metadata, loaded with --arch; F16 is not needed here, only the name match. */
TEST(model_io_builtin_arch) {
    vitq_arch a;
    vitq_err e = {{0}};
    CHECK(vitq_arch_builtin("deit_tiny_patch16_224", &a, &e) == 0);
    vitq_model *m = NULL, *b = NULL;
    CHECK(vitq_model_create(&a, &m, &e) == 0);
    if (!m) return;
    CHECK(m->n_params == 5717416);
    fill(m);
    char path[512];
    snprintf(path, sizeof path, "%s/deit_tiny.safetensors", test_tmpdir());
    const char *k[] = {"format"}, *v[] = {"pt"}; /* what timm writes: no architecture */
    CHECK(save_bare(m, path, k, v, 1, -1, &e) == 0);

    CHECK(vitq_model_load(path, NULL, &b, &e) == VITQ_EINVAL);
    char want[1024];
    snprintf(want, sizeof want, "%s: no architecture in __metadata__; pass --arch NAME (one of deit_tiny_patch16_224, "
             "deit_small_patch16_224, deit_base_patch16_224, deit_tiny_distilled_patch16_224, "
             "deit_small_distilled_patch16_224, deit_base_distilled_patch16_224, deit3_small_patch16_224, "
             "deit3_base_patch16_224, vit_tiny_patch16_224, vit_small_patch16_224, vit_base_patch16_224, "
             "vit_base_patch16_gap_224, vit_medium_patch16_gap_256, swin_tiny_patch4_window7_224, "
             "swin_small_patch4_window7_224, swin_base_patch4_window7_224)", path);
    CHECK_MSG(!strcmp(e.msg, want), "got '%s'", e.msg);

    CHECK_MSG(vitq_model_load(path, "deit_tiny_patch16_224", &b, &e) == 0, "%s", e.msg);
    if (b) {
        CHECK(memcmp(&b->arch, &a, sizeof a) == 0);
        CHECK(memcmp(b->slab, m->slab, (size_t)m->n_params * sizeof(float)) == 0);
        vitq_model_free(b);
        b = NULL;
    }
    CHECK(vitq_model_load(path, "deit_huge", &b, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "unknown architecture 'deit_huge'");
    vitq_model_free(m);
}

/* Builds an st file holding only metadata and opens it. */
static vitq_st_file *meta_file(const char *const *k, const char *const *v, int n, char *path, size_t pn) {
    snprintf(path, pn, "%s/meta.safetensors", test_tmpdir());
    vitq_err e = {{0}};
    vitq_st_file *f = NULL;
    if (vitq_st_write(path, NULL, 0, k, v, n, &e) || vitq_st_open(path, &f, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return NULL;
    }
    return f;
}

#define STRUCT_KEYS "img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depth", "num_heads"

/* Expects vitq_arch_from_st on metadata (k, v) to fail with "PATH: tail". */
static void expect_arch_error(const char *const *k, const char *const *v, int n, const char *arch_name,
                              const char *tail) {
    char path[512], want[1024];
    vitq_st_file *f = meta_file(k, v, n, path, sizeof path);
    if (!f) return;
    vitq_arch a;
    vitq_err e = {{0}};
    int rc = vitq_arch_from_st(f, arch_name, &a, NULL, &e);
    CHECK(rc < 0);
    snprintf(want, sizeof want, "%s: %s", path, tail);
    CHECK_MSG(!strcmp(e.msg, want), "message\n      got  '%s'\n      want '%s'", e.msg, want);
    vitq_st_close(f);
}

TEST(model_io_dims_not_dividing) {
    const char *k[] = {STRUCT_KEYS}, *v[] = {"32", "4", "3", "10", "10", "2", "3"};
    expect_arch_error(k, v, 7, NULL, "embed_dim 10 is not divisible by num_heads 3");
    const char *v2[] = {"30", "4", "3", "10", "12", "2", "3"};
    expect_arch_error(k, v2, 7, NULL, "img_size 30 is not a multiple of patch_size 4");
}

TEST(model_io_bad_metadata_values) {
    const char *k[] = {STRUCT_KEYS, "x"};
    const char *v[] = {"32", "4", "3", "10", "12x", "2", "3", ""};
    expect_arch_error(k, v, 7, NULL, "__metadata__ 'embed_dim': expected an integer, got '12x'");
    const char *k2[] = {STRUCT_KEYS, "mean"}, *v2[] = {"32", "4", "3", "10", "12", "2", "3", "0.5,0.5"};
    expect_arch_error(k2, v2, 8, NULL, "__metadata__ 'mean': 2 values for in_chans 3 (give 3, or 1 for all)");
    const char *v3[] = {"32", "4", "3", "10", "12", "2", "3", "0.5,abc,0.1"};
    expect_arch_error(k2, v3, 8, NULL, "__metadata__ 'mean': expected 3 comma-separated numbers (one per channel) "
                      "or one number, got '0.5,abc,0.1'");
    const char *k4[] = {STRUCT_KEYS, "qkv_bias"}, *v4[] = {"32", "4", "3", "10", "12", "2", "3", "maybe"};
    expect_arch_error(k4, v4, 8, NULL,
                      "__metadata__ 'qkv_bias': expected true/false, yes/no, on/off or 1/0, got 'maybe'");
    const char *k5[] = {STRUCT_KEYS, "crop_pct"}, *v5[] = {"32", "4", "3", "10", "12", "2", "3", "nan"};
    expect_arch_error(k5, v5, 8, NULL, "__metadata__ 'crop_pct': expected a number, got 'nan'");
    const char *k6[] = {"img_size", "patch_size"}, *v6[] = {"32", "4"};
    expect_arch_error(k6, v6, 2, NULL, "__metadata__ has no 'in_chans' (needed unless the architecture is a "
                      "built-in one; or pass --arch NAME)");
    const char *k7[] = {STRUCT_KEYS, "interpolation"}, *v7[] = {"32", "4", "3", "10", "12", "2", "3", "nearest"};
    expect_arch_error(k7, v7, 8, NULL, "__metadata__ 'interpolation': expected bicubic or bilinear, got 'nearest'");
}

/* Swin's own keys on a file read as a ViT (no arch = swin) are refused naming the key, not ignored: the arch
 * key is missing or wrong, or the model is a windowed ViT; and a ViT model cannot save them as extra keys. */
TEST(model_io_swin_keys_on_vit_refused) {
    const char *k[] = {STRUCT_KEYS, "window_size"}, *v[] = {"32", "4", "3", "10", "12", "2", "3", "7"};
    expect_arch_error(k, v, 8, NULL, "__metadata__ 'window_size' = '7': window_size is a timm SwinTransformer "
                      "argument on a file read as a ViT/DeiT (a Swin checkpoint needs arch = swin or a swin_* "
                      "built-in; a ViT with windowed attention is not supported)");
    const char *k2[] = {"arch", "depths"}, *v2[] = {"deit_tiny_patch16_224", "2,2,6,2"};
    expect_arch_error(k2, v2, 2, NULL, "__metadata__ 'depths' = '2,2,6,2': depths is a timm SwinTransformer "
                      "argument on a file read as a ViT/DeiT (a Swin checkpoint needs arch = swin or a swin_* "
                      "built-in; a ViT with windowed attention is not supported)");
    CHECK_EQ(vitq_arch_is_timm_key("window_size"), 1);
    CHECK_EQ(vitq_arch_is_timm_key("depths"), 1);
    CHECK_EQ(vitq_arch_is_timm_key("format"), 0);
    vitq_model *m = make_tiny();
    if (!m) return;
    char path[512];
    snprintf(path, sizeof path, "%s/x.safetensors", test_tmpdir());
    const char *xk[] = {"window_size"}, *xv[] = {"7"};
    vitq_err e = {{0}};
    CHECK_EQ(vitq_model_save(m, path, xk, xv, 1, &e), VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "extra metadata key 'window_size' is an architecture key");
    vitq_model_free(m);
}

TEST(model_io_metadata_over_builtin) {
    /* Metadata keys win over --arch; the rest comes from the built-in; origins say so. */
    const char *k[] = {"num_classes", "mean", "qkv_bias"}, *v[] = {"10", "0.5", "0"};
    char path[512];
    vitq_st_file *f = meta_file(k, v, 3, path, sizeof path);
    if (!f) return;
    vitq_arch a;
    vitq_arch_origin o;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_arch_from_st(f, "vit_small_patch16_224", &a, &o, &e) == 0, "%s", e.msg);
    CHECK_EQ(a.num_classes, 10);
    CHECK_EQ(a.embed_dim, 384);
    CHECK_EQ(a.num_heads, 6);
    CHECK_EQ(a.qkv_bias, 0);
    CHECK_EQ(a.mean[0], 0.5f);
    CHECK_EQ(a.mean[1], 0.5f);
    CHECK_EQ(a.mean[2], 0.5f);
    CHECK_EQ(a.std[0], 0.5f);
    CHECK(!strcmp(o.builtin, "vit_small_patch16_224"));
    CHECK_STREQ(o.from[4], "metadata");
    CHECK_STREQ(vitq_arch_key(4), "num_classes");
    CHECK_STREQ(o.from[5], "built-in");
    CHECK_STREQ(vitq_arch_key(5), "embed_dim");
    /* Without --arch, some structural keys are not enough. */
    CHECK(vitq_arch_from_st(f, NULL, &a, &o, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "__metadata__ has no 'img_size' (needed unless the architecture is a built-in one");
    vitq_st_close(f);

    /* A metadata `arch` that names a built-in is enough on its own. */
    const char *k2[] = {"arch"}, *v2[] = {"deit_base_patch16_224"};
    f = meta_file(k2, v2, 1, path, sizeof path);
    if (!f) return;
    CHECK(vitq_arch_from_st(f, NULL, &a, &o, &e) == 0);
    CHECK_EQ(a.embed_dim, 768);
    CHECK_EQ(a.num_heads, 12);
    CHECK_STREQ(a.name, "deit_base_patch16_224");
    vitq_st_close(f);

    /* All defaults for a custom architecture. */
    const char *k3[] = {STRUCT_KEYS}, *v3[] = {"28", "4", "1", "10", "96", "6", "3"};
    f = meta_file(k3, v3, 7, path, sizeof path);
    if (!f) return;
    CHECK(vitq_arch_from_st(f, NULL, &a, &o, &e) == 0);
    CHECK_STREQ(a.name, "custom");
    CHECK_EQ(a.mlp_ratio, 4.0f);
    CHECK_EQ(a.qkv_bias, 1);
    CHECK_EQ(a.crop_pct, 0.875); /* timm's resolve_data_config fallback (DEFAULT_CROP_PCT), as a double */
    CHECK_EQ(a.mean[0], 0.485f);
    CHECK_EQ(a.mean[2], 0.485f);
    CHECK_STREQ(a.interpolation, "bicubic");
    CHECK_STREQ(o.from[8], "default");
    CHECK_EQ(o.builtin[0], 0);
    vitq_st_close(f);
}

TEST(model_io_mlp_act_parse) {
    vitq_act_kind k[4];
    vitq_err e = {{0}};
    CHECK_EQ(vitq_mlp_act_parse("relu", 4, k, "f", &e), 0);
    CHECK_EQ(k[0], VITQ_ACT_RELU);
    CHECK_EQ(k[3], VITQ_ACT_RELU);
    CHECK(vitq_mlp_act_parse("gelu, relu,gelu ,RELU", 4, k, "f", &e) == 0);
    CHECK_EQ(k[0], VITQ_ACT_GELU);
    CHECK_EQ(k[1], VITQ_ACT_RELU);
    CHECK_EQ(k[2], VITQ_ACT_GELU);
    CHECK_EQ(k[3], VITQ_ACT_RELU);
    CHECK(vitq_mlp_act_parse("gelu,relu", 4, k, "m.safetensors: __metadata__", &e) == VITQ_EFORMAT);
    CHECK(!strcmp(e.msg, "m.safetensors: __metadata__: mlp_act: 2 values for depth 4 (give 4, or 1 for all blocks)"));
    CHECK(vitq_mlp_act_parse("silu", 4, k, "f", &e) == VITQ_EFORMAT);
    CHECK(!strcmp(e.msg, "f: mlp_act: expected gelu or relu (or a comma list of 4), got 'silu'"));
}

TEST(model_io_missing_tensor_and_extras) {
    vitq_model *m = make_tiny(), *b = NULL;
    if (!m) return;
    char path[512], want[1024];
    snprintf(path, sizeof path, "%s/miss.safetensors", test_tmpdir());
    const char *const *k = (const char *const[]){STRUCT_KEYS, "mlp_ratio"};
    const char *v[] = {"8", "4", "1", "5", "12", "3", "3", "2.5"};
    vitq_err e = {{0}};
    int row = -1;
    for (int i = 0; i < m->n_table; i++)
        if (!strcmp(m->table[i].name, "blocks.1.attn.qkv.bias")) row = i;
    CHECK(save_bare(m, path, k, v, 8, row, &e) == 0);
    CHECK(vitq_model_load(path, NULL, &b, &e) == VITQ_EFORMAT);
    snprintf(want, sizeof want, "%s: missing tensor 'blocks.1.attn.qkv.bias' (the file holds %d tensors); the "
             "architecture used was custom (embed_dim 12, depth 3, qkv_bias true)", path, m->n_table - 1);
    CHECK_MSG(!strcmp(e.msg, want), "got '%s'", e.msg);

    /* Extra tensors are refused by name: a file with qkv biases does not load as a qkv_bias=false model
     * (the biases would be silently ignored). */
    const char *v2[] = {"8", "4", "1", "5", "12", "3", "3", "2.5"};
    const char *k2[] = {STRUCT_KEYS, "mlp_ratio", "qkv_bias"}, *v2b[] = {v2[0], v2[1], v2[2], v2[3], v2[4], v2[5],
                                                                         v2[6], v2[7], "false"};
    CHECK(save_bare(m, path, k2, v2b, 9, -1, &e) == 0);
    CHECK(vitq_model_load(path, NULL, &b, &e) == VITQ_EFORMAT);
    snprintf(want, sizeof want, "%s: tensor 'blocks.0.attn.qkv.bias' is not used by the model custom (qkv biases, but "
             "the architecture used has qkv_bias = false)", path);
    CHECK_STREQ(e.msg, want);
    CHECK(b == NULL);

    /* Wrong shape: the metadata says 6 classes, the file's head has 5. */
    const char *v3[] = {"8", "4", "1", "6", "12", "3", "3", "2.5"};
    CHECK(save_bare(m, path, k, v3, 8, -1, &e) == 0);
    CHECK(vitq_model_load(path, NULL, &b, &e) == VITQ_EFORMAT);
    snprintf(want, sizeof want, "%s: tensor 'head.weight' has shape [5, 12], expected [6, 12]; the architecture "
             "used was custom (embed_dim 12, depth 3, qkv_bias true)", path);
    CHECK_MSG(!strcmp(e.msg, want), "got '%s'", e.msg);
    vitq_model_free(m);
}

TEST(model_io_nan_weight) {
    vitq_model *m = make_tiny(), *b = NULL;
    if (!m) return;
    const vitq_tensor_ref *r = vitq_model_param(m, "blocks.2.mlp.fc1.weight");
    r->data[7] = NAN;
    r->data[9] = INFINITY;
    char path[512], want[1024];
    snprintf(path, sizeof path, "%s/nan.safetensors", test_tmpdir());
    vitq_err e = {{0}};
    CHECK(vitq_model_save(m, path, NULL, NULL, 0, &e) == 0);
    CHECK(vitq_model_load(path, NULL, &b, &e) == VITQ_EFORMAT);
    CHECK(b == NULL);
    snprintf(want, sizeof want, "%s: tensor 'blocks.2.mlp.fc1.weight' holds 2 non-finite values (first: NaN at flat "
             "index 7)", path);
    CHECK_MSG(!strcmp(e.msg, want), "got '%s'", e.msg);
    vitq_model_free(m);
}

TEST(model_io_f16_checkpoint) {
    /* A tiny model stored as F16 (as `model.half()` + save_file would): values exactly representable. */
    vitq_model *m = make_tiny(), *b = NULL;
    if (!m) return;
    for (int64_t i = 0; i < m->n_params; i++) m->slab[i] = (float)((int)(i % 64) - 32) / 64.0f;
    /* Header by hand, data as F16. */
    size_t cap = 64 + (size_t)m->n_table * 160, hl = 0;
    char *json = malloc(cap);
    hl += (size_t)snprintf(json + hl, cap - hl, "{\"__metadata__\":{\"img_size\":\"8\",\"patch_size\":\"4\","
                           "\"in_chans\":\"1\",\"num_classes\":\"5\",\"embed_dim\":\"12\",\"depth\":\"3\","
                           "\"num_heads\":\"3\",\"mlp_ratio\":\"2.5\"}");
    uint16_t *h = malloc((size_t)m->n_params * 2);
    int64_t off = 0;
    for (int i = 0; i < m->n_table; i++) {
        const vitq_tensor_ref *r = &m->table[i];
        hl += (size_t)snprintf(json + hl, cap - hl, ",\"%s\":{\"dtype\":\"F16\",\"shape\":[", r->name);
        for (int d = 0; d < r->ndim; d++) hl += (size_t)snprintf(json + hl, cap - hl, "%s%lld", d ? "," : "", (long long)r->shape[d]);
        hl += (size_t)snprintf(json + hl, cap - hl, "],\"data_offsets\":[%lld,%lld]}", (long long)off * 2,
                               (long long)(off + r->numel) * 2);
        for (int64_t j = 0; j < r->numel; j++) {
            float x = r->data[j]; /* k/64 with |k| <= 32: exponent and 5 mantissa bits, by hand */
            uint16_t bits = 0;
            if (x != 0) {
                int ex;
                float fr = frexpf(fabsf(x), &ex); /* x = fr * 2^ex, fr in [0.5, 1) */
                bits = (uint16_t)((x < 0 ? 0x8000 : 0) | (uint16_t)((ex - 1 + 15) << 10) |
                                  (uint16_t)((fr * 2 - 1) * 1024));
            }
            h[off + j] = bits;
        }
        off += r->numel;
    }
    hl += (size_t)snprintf(json + hl, cap - hl, "}");
    char path[512];
    snprintf(path, sizeof path, "%s/half.safetensors", test_tmpdir());
    FILE *fp = fopen(path, "wb");
    uint64_t len = hl;
    fwrite(&len, 8, 1, fp);
    fwrite(json, 1, hl, fp);
    fwrite(h, 2, (size_t)off, fp);
    fclose(fp);
    vitq_err e = {{0}};
    CHECK_MSG(vitq_model_load(path, NULL, &b, &e) == 0, "%s", e.msg);
    if (b) CHECK(memcmp(b->slab, m->slab, (size_t)m->n_params * 4) == 0);
    free(json);
    free(h);
    vitq_model_free(b);
    vitq_model_free(m);
}

/* Runs `$VITQ_BIN inspect ARGS` and returns its stdout+stderr (malloc'd) and exit status. */
static char *run_inspect(const char *args, int *status) {
    const char *bin = getenv("VITQ_BIN");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' inspect %s 2>&1", bin, args);
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap);
    while (n + 1 < cap) {
        size_t got = fread(out + n, 1, cap - 1 - n, p);
        if (!got) break;
        n += got;
    }
    out[n] = 0;
    int st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

TEST(model_io_inspect_cli) {
    if (!getenv("VITQ_BIN")) test_skip("VITQ_BIN not set (the runner sets it)");
    vitq_model *m = make_tiny();
    if (!m) return;
    m->mlp_act[2] = VITQ_ACT_RELU;
    const char *dir = test_tmpdir();
    char path[512], bare[512], args[1200], want[1200];
    snprintf(path, sizeof path, "%s/tiny.safetensors", dir);
    snprintf(bare, sizeof bare, "%s/bare.safetensors", dir);
    const char *xk[] = {"note"}, *xv[] = {"hello"};
    vitq_err e = {{0}};
    CHECK(vitq_model_save(m, path, xk, xv, 1, &e) == 0);
    CHECK(save_bare(m, bare, NULL, NULL, 0, -1, &e) == 0);

    int st = -1;
    snprintf(args, sizeof args, "'%s'", path);
    char *out = run_inspect(args, &st);
    CHECK(st == 0);
    CHECK_STR_CONTAINS(out, "architecture: tiny_test\n");
    CHECK_STR_CONTAINS(out, "  embed_dim           12                       (metadata)\n");
    CHECK_STR_CONTAINS(out, "  mlp_act             gelu,gelu,relu           (metadata)\n");
    CHECK_STR_CONTAINS(out, "  global_pool         token                    (default)\n");
    CHECK_STR_CONTAINS(out, "  head.weight                F32   [5, 12]\n");
    CHECK_STR_CONTAINS(out, "\n4,667 parameters (18.2 KiB as float32)\n");
    CHECK_STR_CONTAINS(out, "  note = hello\n");
    free(out);

    /* No metadata: tensors listed, reason given, exit 1. */
    snprintf(args, sizeof args, "'%s'", bare);
    out = run_inspect(args, &st);
    CHECK(st == 1);
    CHECK_STR_CONTAINS(out, "architecture: unknown\n");
    CHECK_STR_CONTAINS(out, "  blocks.2.mlp.fc2.bias      F32   [12]\n");
    snprintf(want, sizeof want, "vitq: error: %s: no architecture in __metadata__; pass --arch NAME (one of", bare);
    CHECK_STR_CONTAINS(out, want);
    free(out);

    /* A built-in that does not fit: shapes flagged, exit 1. */
    snprintf(args, sizeof args, "'%s' --arch deit_tiny_patch16_224", bare);
    out = run_inspect(args, &st);
    CHECK(st == 1);
    CHECK_STR_CONTAINS(out, "  cls_token                  F32   [1, 1, 12]  (WRONG SHAPE: the model needs [1, 1, 192])\n");
    CHECK_STR_CONTAINS(out, "(MISSING: the model needs it)");
    CHECK_STR_CONTAINS(out, "5,717,416 parameters (21.8 MiB as float32)");
    free(out);

    out = run_inspect("", &st);
    CHECK(st == 2);
    free(out);
    out = run_inspect("--frobnicate x", &st);
    CHECK(st == 2);
    CHECK_STR_CONTAINS(out, "vitq: error: unknown option '--frobnicate'");
    free(out);
    vitq_model_free(m);
}

/* An architecture asked for (--arch) that is not the file's own (__metadata__ arch) is refused: the file's
 * metadata would override it key by key and it would be ignored without a word. Its name with a timm
 * pretrained tag is the same architecture. */
TEST(model_io_arch_asked_for_must_be_the_files) {
    const char *k[] = {"arch"}, *v[] = {"vit_small_patch16_224.augreg_in1k"};
    expect_arch_error(k, v, 1, "deit_tiny_patch16_224",
                      "architecture deit_tiny_patch16_224 asked for, but the file's __metadata__ names its own, "
                      "'vit_small_patch16_224.augreg_in1k' (leave the architecture out to use the file's)");
    char path[512];
    vitq_st_file *f = meta_file(k, v, 1, path, sizeof path);
    if (!f) return;
    vitq_arch a;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_arch_from_st(f, "vit_small_patch16_224", &a, NULL, &e) == 0, "%s", e.msg);
    CHECK_EQ(a.embed_dim, 384);
    vitq_st_close(f);
    const char *vg[] = {"custom"}; /* a family's generic name: no named architecture, the one asked for is used */
    if (!(f = meta_file(k, vg, 1, path, sizeof path))) return;
    CHECK_MSG(vitq_arch_from_st(f, "vit_small_patch16_224", &a, NULL, &e) == 0, "%s", e.msg);
    CHECK_EQ(a.embed_dim, 384);
    vitq_st_close(f);
}
