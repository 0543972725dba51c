/* test_swin_io.c — Swin architectures and checkpoints (model/swin_arch.c, swin_io.c): the built-ins and timm's
 * parameter counts, the architecture from `__metadata__` (keys, origins, errors naming the key), save/load
 * round trip, and old checkpoints' buffers (relative_position_index as I64, attn_mask) verified against the
 * computed ones, the original layout refused by name; every other tensor refused by name, the ViT metadata
 * policy not applied to Swin files, one head width symbol per family. Files are written here, byte by byte
 * where a dtype other than F32 is needed. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

TEST(swin_builtin_parameter_counts) {
    /* timm 0.9: sum(p.numel() for p in model.parameters()) of the pretrained configs (Swin-S 49,606,258 and
     * Swin-B 87,768,224 too, checked by hand: 200 and 350 MB to allocate here) */
    const char *names[3] = {"swin_tiny_patch4_window7_224", "swin_small_patch4_window7_224",
                            "swin_base_patch4_window7_224"};
    const int64_t want[1] = {28288354};
    for (int i = 0; i < 1; i++) {
        vitq_arch a;
        vitq_err e;
        CHECK_MSG(vitq_arch_builtin(names[i], &a, &e) == 0, "%s", e.msg);
        CHECK_EQ(a.family, VITQ_FAMILY_SWIN);
        vitq_model *m = NULL;
        CHECK_MSG(vitq_model_create(&a, &m, &e) == 0, "%s", e.msg);
        if (!m) continue;
        CHECK_EQ(m->n_params, want[i]);
        CHECK_EQ(vitq_unit_count(m), 2 + a.depth + 3);
        CHECK_EQ(vitq_tap_count(m), 2 + 8 * a.depth + 3);
        vitq_model_free(m);
    }
    int found = 0;
    for (int i = 0; vitq_arch_builtin_name(i); i++) found += !strcmp(vitq_arch_builtin_name(i), names[2]);
    CHECK_EQ(found, 1);
}

/* Writes a safetensors file: each tensor (name, dtype, shape, bytes); metadata pairs. */
typedef struct {
    const char *name, *dtype;
    int ndim;
    int64_t shape[4];
    const void *data;
    size_t bytes;
} raw_tensor;

static int write_st(const char *path, const raw_tensor *t, int n, const char *const *kv, int nkv) {
    vitq_sb h = {0};
    size_t off = 0;
    vitq_sb_fmt(&h, "{\"__metadata__\": {");
    for (int i = 0; i < nkv; i++) vitq_sb_fmt(&h, "%s\"%s\": \"%s\"", i ? ", " : "", kv[2 * i], kv[2 * i + 1]);
    vitq_sb_fmt(&h, "}");
    for (int i = 0; i < n; i++) {
        vitq_sb_fmt(&h, ", \"%s\": {\"dtype\": \"%s\", \"shape\": [", t[i].name, t[i].dtype);
        for (int d = 0; d < t[i].ndim; d++) vitq_sb_fmt(&h, "%s%lld", d ? ", " : "", (long long)t[i].shape[d]);
        vitq_sb_fmt(&h, "], \"data_offsets\": [%zu, %zu]}", off, off + t[i].bytes);
        off += t[i].bytes;
    }
    vitq_sb_fmt(&h, "}");
    char *hdr = vitq_sb_take(&h);
    FILE *f = hdr ? fopen(path, "wb") : NULL;
    if (!f) {
        free(hdr);
        return -1;
    }
    const uint64_t len = strlen(hdr);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(len >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(hdr, 1, len, f);
    for (int i = 0; i < n; i++) fwrite(t[i].data, 1, t[i].bytes, f);
    free(hdr);
    return fclose(f);
}

/* The tensors of m as F32 entries (into t), returns their count. */
static int params_of(const vitq_model *m, raw_tensor *t) {
    for (int i = 0; i < m->n_table; i++) {
        const vitq_tensor_ref *r = &m->table[i];
        t[i] = (raw_tensor){r->name, "F32", r->ndim, {r->shape[0], r->shape[1], r->shape[2], r->shape[3]}, r->data,
                            sizeof(float) * (size_t)r->numel};
    }
    return m->n_table;
}

static const char *const tiny_meta[] = {"arch", "swin", "img_size", "56", "patch_size", "4", "in_chans", "3",
                                        "num_classes", "10", "embed_dim", "32", "depths", "2,2", "num_heads", "2,4",
                                        "window_size", "7"};

TEST(swin_old_checkpoint_buffers) {
    vitq_model *m = NULL;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_model_load("tests/fixtures/swin_tiny56.safetensors", NULL, &m, &e) == 0, "%s", e.msg);
    if (!m) return;
    raw_tensor t[80];
    int n = params_of(m, t);
    const vitq_swin_layout *l = vitq_swin_p(m)->lay;
    int64_t rpi[49 * 49];
    for (int i = 0; i < 49 * 49; i++) rpi[i] = l->blk[0].rpi[i];
    char names[4][64];
    for (int b = 0; b < 4; b++) { /* timm <= 0.8: an int64 index in every block, a mask in the shifted one */
        snprintf(names[b], sizeof names[b], "layers.%d.blocks.%d.attn.relative_position_index", b / 2, b % 2);
        t[n++] = (raw_tensor){names[b], "I64", 2, {49, 49}, rpi, sizeof rpi};
    }
    t[n++] = (raw_tensor){"layers.0.blocks.1.attn_mask", "F32", 3, {4, 49, 49}, l->blk[1].mask, 4 * 49 * 49 * 4};
    char path[512];
    snprintf(path, sizeof path, "%s/old.safetensors", test_tmpdir());
    CHECK(write_st(path, t, n, tiny_meta, 9) == 0);
    vitq_model *o = NULL;
    CHECK_MSG(vitq_model_load(path, NULL, &o, &e) == 0, "%s", e.msg);
    if (o) CHECK_EQ(memcmp(o->slab, m->slab, sizeof(float) * (size_t)m->n_params), 0);
    vitq_model_free(o);

    rpi[50] = 7; /* another window rule */
    CHECK(write_st(path, t, n, tiny_meta, 9) == 0);
    CHECK_EQ(vitq_model_load(path, NULL, &o, &e), VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "tensor 'layers.0.blocks.0.attn.relative_position_index' differs from the relative "
                              "position index vitq computes at flat index 50");
    rpi[50] = l->blk[0].rpi[50];
    t[n - 1].name = "layers.1.blocks.1.attn_mask"; /* a mask where timm's rule does not shift */
    t[n - 1].shape[0] = 1;
    t[n - 1].bytes = 49 * 49 * 4;
    CHECK(write_st(path, t, n, tiny_meta, 9) == 0);
    CHECK_EQ(vitq_model_load(path, NULL, &o, &e), VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "'layers.1.blocks.1.attn_mask': a shift mask for a block that timm's window rule does "
                              "not shift (stage side 7, window 7)");
    n -= 5;
    t[n - 2].name = "head.weight"; /* the original layout's head */
    CHECK(write_st(path, t, n, tiny_meta, 9) == 0);
    CHECK_EQ(vitq_model_load(path, NULL, &o, &e), VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "a Swin checkpoint in the original (Microsoft / timm <= 0.5) layout");
    vitq_model_free(m);
}

/* vitq_model_save writes Swin's keys; loading gives the same architecture and parameters bit for bit. */
TEST(swin_save_load_round_trip) {
    vitq_model *m = NULL, *b = NULL;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_model_load("tests/fixtures/swin_pad40.safetensors", NULL, &m, &e) == 0, "%s", e.msg);
    if (!m) return;
    m->mlp_act[1] = VITQ_ACT_RELU;
    char path[512];
    snprintf(path, sizeof path, "%s/rt.safetensors", test_tmpdir());
    CHECK_MSG(vitq_model_save(m, path, NULL, NULL, 0, &e) == 0, "%s", e.msg);
    vitq_st_file *f = NULL;
    CHECK(vitq_st_open(path, &f, &e) == 0);
    if (f) {
        CHECK_STREQ(vitq_st_meta(f, "depths"), "2,2");
        CHECK_STREQ(vitq_st_meta(f, "num_heads"), "2,4");
        CHECK_STREQ(vitq_st_meta(f, "window_size"), "7");
        CHECK_STREQ(vitq_st_meta(f, "mlp_act"), "gelu,relu,gelu,gelu");
        CHECK(vitq_st_meta(f, "depth") == NULL);
        vitq_st_close(f);
    }
    CHECK_MSG(vitq_model_load(path, NULL, &b, &e) == 0, "%s", e.msg);
    if (b) {
        CHECK_EQ(memcmp(&b->arch, &m->arch, sizeof m->arch), 0);
        CHECK_EQ(memcmp(b->slab, m->slab, sizeof(float) * (size_t)m->n_params), 0);
        CHECK_EQ(b->mlp_act[1], VITQ_ACT_RELU);
    }
    vitq_model_free(b);
    vitq_model_free(m);
}

/* Metadata with only some keys: the architecture from them (+ a built-in, or timm's defaults). */
static int arch_of(const char *const *kv, int nkv, const char *arch_name, vitq_arch *a, vitq_arch_origin *o,
                   vitq_err *e) {
    char path[512];
    snprintf(path, sizeof path, "%s/meta.safetensors", test_tmpdir());
    const float z = 0;
    raw_tensor t = {"x", "F32", 1, {1}, &z, 4};
    if (write_st(path, &t, 1, kv, nkv)) return -1;
    vitq_st_file *f = NULL;
    int rc = vitq_st_open(path, &f, e);
    if (!rc) rc = vitq_arch_from_st(f, arch_name, a, o, e);
    vitq_st_close(f);
    return rc;
}

TEST(swin_arch_from_metadata) {
    vitq_arch a;
    vitq_arch_origin o;
    vitq_err e = {{0}};
    const char *over[] = {"arch", "swin_small_patch4_window7_224", "num_classes", "10"};
    CHECK_MSG(arch_of(over, 2, NULL, &a, &o, &e) == 0, "%s", e.msg);
    CHECK_EQ(a.family, VITQ_FAMILY_SWIN);
    CHECK_EQ(a.depths[2], 18);
    CHECK_EQ(a.depth, 24);
    CHECK_EQ(a.num_classes, 10);
    CHECK_STREQ(o.from[4], "metadata");
    CHECK_STREQ(o.from[7], "built-in");
    CHECK_STREQ(o.builtin, "swin_small_patch4_window7_224");
    CHECK_MSG(arch_of(over + 2, 1, "swin_base_patch4_window7_224", &a, &o, &e) == 0, "%s", e.msg); /* --arch */
    CHECK_EQ(a.embed_dim, 128);
    CHECK_EQ(a.stage_heads[3], 32);
    CHECK_MSG(arch_of(tiny_meta, 9, NULL, &a, &o, &e) == 0, "%s", e.msg); /* arch = swin: timm's defaults */
    CHECK_EQ(a.mlp_ratio, 4.0f);
    CHECK_STREQ(o.from[9], "default");
    char text[64];
    CHECK_STREQ(vitq_arch_value_of(&a, 6, text, sizeof text), "2,2");
    CHECK_STREQ(vitq_arch_key_of(&a, 8), "window_size");

    const char *no_window[16];
    memcpy(no_window, tiny_meta, sizeof(char *) * 16);
    CHECK_EQ(arch_of(no_window, 8, NULL, &a, &o, &e), VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "__metadata__ has no 'window_size' (needed for arch = swin");
    const char *bad_heads[] = {"arch", "swin_tiny_patch4_window7_224", "num_heads", "3,6,12"};
    CHECK_EQ(arch_of(bad_heads, 2, NULL, &a, &o, &e), VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "'num_heads': 3 values for 4 stages");
    const char *bad_list[] = {"arch", "swin_tiny_patch4_window7_224", "depths", "2,x"};
    CHECK_EQ(arch_of(bad_list, 2, NULL, &a, &o, &e), VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "'depths': expected a comma-separated list of 1 to 8 integers, one per stage, got '2,x'");
    const char *odd[] = {"arch", "swin_tiny_patch4_window7_224", "img_size", "200"}; /* 50 -> 25 -> odd */
    CHECK_EQ(arch_of(odd, 2, NULL, &a, &o, &e), VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "stage 1 is 25x25 tokens (img_size 200 / patch_size 4 / 2^1): patch merging needs an "
                              "even side");
    const char *heads[] = {"arch", "swin_tiny_patch4_window7_224", "num_heads", "3,6,12,25"};
    CHECK_EQ(arch_of(heads, 2, NULL, &a, &o, &e), VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "stage 3 width 768 is not divisible by num_heads[3] = 25");
}

/* Every tensor of a Swin file is used (model_check.c, as for ViT): the old buffers pass because the family
 * declares them (vitq_family.uses_tensor) and verifies them (its checkpoint hook); anything else is refused by
 * name, without the ViT-only hints (a relative_position_* name is not BEiT's here). */
TEST(swin_every_tensor_used) {
    vitq_model *m = NULL;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_model_load("tests/fixtures/swin_tiny56.safetensors", NULL, &m, &e) == 0, "%s", e.msg);
    if (!m) return;
    CHECK_EQ(vitq_model_uses_tensor(m, "layers.0.blocks.0.attn.relative_position_bias_table"), 1);
    CHECK_EQ(vitq_model_uses_tensor(m, "layers.1.blocks.1.attn.relative_position_index"), 1);
    CHECK_EQ(vitq_model_uses_tensor(m, "layers.0.blocks.1.attn_mask"), 1); /* 14x14, window 7: shifted */
    CHECK_EQ(vitq_model_uses_tensor(m, "layers.0.blocks.0.attn_mask"), 0);
    CHECK_EQ(vitq_model_uses_tensor(m, "layers.1.blocks.1.attn_mask"), 0); /* 7x7: one window, no shift */
    CHECK_EQ(vitq_model_uses_tensor(m, "layers.1.blocks.2.attn.relative_position_index"), 0);
    CHECK_EQ(vitq_model_uses_tensor(m, "head.weight"), 0);

    raw_tensor t[80];
    int n = params_of(m, t);
    const float one = 1.0f;
    t[n++] = (raw_tensor){"layers.1.blocks.2.attn.relative_position_index", "F32", 1, {1}, &one, 4};
    char path[512], want[700];
    snprintf(path, sizeof path, "%s/extra.safetensors", test_tmpdir());
    CHECK(write_st(path, t, n, tiny_meta, 9) == 0);
    vitq_model *o = NULL;
    CHECK_EQ(vitq_model_load(path, NULL, &o, &e), VITQ_EFORMAT);
    snprintf(want, sizeof want, "%s: tensor 'layers.1.blocks.2.attn.relative_position_index' is not used by the model "
             "swin (not a parameter of the architecture used)", path);
    CHECK_STREQ(e.msg, want);
    t[n - 1].name = "module.head.fc.bias";
    CHECK(write_st(path, t, n, tiny_meta, 9) == 0);
    CHECK_EQ(vitq_model_load(path, NULL, &o, &e), VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "tensor 'module.head.fc.bias' is not used by the model (the names carry "
                              "DistributedDataParallel's 'module.' prefix");
    CHECK(o == NULL);
    vitq_model_free(m);
}

/* `vitq inspect` on an old file: the buffers are marked as checked buffers, not as unused tensors. */
TEST(swin_inspect_old_buffers) {
    const char *bin = getenv("VITQ_BIN");
    if (!bin) test_skip("VITQ_BIN not set (the runner sets it)");
    vitq_model *m = NULL;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_model_load("tests/fixtures/swin_tiny56.safetensors", NULL, &m, &e) == 0, "%s", e.msg);
    if (!m) return;
    raw_tensor t[80];
    int n = params_of(m, t);
    const vitq_swin_layout *l = vitq_swin_p(m)->lay;
    int64_t rpi[49 * 49];
    for (int i = 0; i < 49 * 49; i++) rpi[i] = l->blk[0].rpi[i];
    t[n++] = (raw_tensor){"layers.0.blocks.0.attn.relative_position_index", "I64", 2, {49, 49}, rpi, sizeof rpi};
    t[n++] = (raw_tensor){"layers.0.blocks.1.attn_mask", "F32", 3, {4, 49, 49}, l->blk[1].mask, 4 * 49 * 49 * 4};
    char path[512], cmd[1200];
    snprintf(path, sizeof path, "%s/old.safetensors", test_tmpdir());
    CHECK(write_st(path, t, n, tiny_meta, 9) == 0);
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s' 2>&1", bin, path);
    FILE *p = popen(cmd, "r");
    if (!p) return;
    static char out[1 << 16];
    size_t k = fread(out, 1, sizeof out - 1, p);
    out[k] = 0;
    CHECK_EQ(pclose(p), 0);
    CHECK_STR_CONTAINS(out, "0 not used by the model, 0 missing");
    CHECK_STR_CONTAINS(out, "  layers.0.blocks.0.attn.relative_position_index       I64   [49, 49]  (a buffer: "
                            "checked against the one vitq computes, not a parameter)\n");
    CHECK_STR_CONTAINS(out, "  window_size    7 ");
    vitq_model_free(m);
}

/* The ViT policy on timm arguments (model_meta.c) is not applied to a Swin file: SwinTransformer's own
 * arguments that ViT would read or refuse load; saving refuses extra keys of either family. */
TEST(swin_metadata_timm_arguments) {
    vitq_model *m = NULL, *o = NULL;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_model_load("tests/fixtures/swin_tiny56.safetensors", NULL, &m, &e) == 0, "%s", e.msg);
    if (!m) return;
    raw_tensor t[80];
    const int n = params_of(m, t);
    const char *kv[32];
    memcpy(kv, tiny_meta, sizeof tiny_meta);
    const char *more[] = {"global_pool", "avg", "drop_path_rate", "0.2", "norm_layer", "LayerNorm", "embed_layer",
                          "PatchEmbed", "format", "pt"};
    memcpy(kv + 18, more, sizeof more);
    char path[512];
    snprintf(path, sizeof path, "%s/args.safetensors", test_tmpdir());
    CHECK(write_st(path, t, n, kv, 14) == 0);
    CHECK_MSG(vitq_model_load(path, NULL, &o, &e) == 0, "%s", e.msg);
    if (o) CHECK_EQ(memcmp(&o->arch, &m->arch, sizeof m->arch), 0);
    vitq_model_free(o);

    const char *bad[] = {"window_size", "depth", "class_token", "mlp_act"}, *val[] = {"x"};
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(vitq_model_save(m, path, &bad[i], val, 1, &e), VITQ_EINVAL);
        CHECK_STR_CONTAINS(e.msg, "is an architecture key");
    }
    const char *note[] = {"note"};
    CHECK_MSG(vitq_model_save(m, path, note, val, 1, &e) == 0, "%s", e.msg);
    vitq_model_free(m);
}

/* One VITQ_SZ_FEATURES, resolved by each family: what the head reads (ViT: representation_size or C; Swin:
 * the last stage's width); every family's key count fits VITQ_ARCH_MAXKEYS; ViT variants on a Swin
 * architecture are refused. */
TEST(families_head_width_and_keys) {
    vitq_model *s = NULL, *v = NULL;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_model_load("tests/fixtures/swin_tiny56.safetensors", NULL, &s, &e) == 0, "%s", e.msg);
    if (!s) return;
    CHECK_EQ(vitq_tap_get(s, vitq_tap_id(s, VITQ_SITE_HEAD_IN, -1))->shape[1], 64);
    CHECK_EQ(vitq_tap_id(s, VITQ_SITE_PRE_LOGITS_IN, -1), -1);
    CHECK_EQ(vitq_tap_id(s, VITQ_SITE_HEAD_DIST_IN, -1), -1);
    vitq_arch a = {.name = "t", .img_size = 8, .patch_size = 4, .in_chans = 1, .num_classes = 5, .embed_dim = 12,
                   .depth = 1, .num_heads = 3, .mlp_ratio = 2, .qkv_bias = 1, .std = {1, 1, 1}, .crop_pct = 1,
                   .interpolation = "bicubic", .representation_size = 7};
    CHECK_MSG(vitq_model_create(&a, &v, &e) == 0, "%s", e.msg);
    if (v) {
        CHECK_EQ(vitq_tap_get(v, vitq_tap_id(v, VITQ_SITE_PRE_LOGITS_IN, -1))->shape[1], 12);
        CHECK_EQ(vitq_tap_get(v, vitq_tap_id(v, VITQ_SITE_HEAD_IN, -1))->shape[1], 7);
        CHECK_EQ(vitq_tap_id(v, VITQ_SITE_REDUCTION_IN, 0), -1);
    }
    vitq_model_free(v);

    for (int i = 0; vitq_arch_builtin_name(i); i++) {
        vitq_arch b;
        CHECK(vitq_arch_builtin(vitq_arch_builtin_name(i), &b, &e) == 0);
        CHECK(vitq_arch_nkeys(&b) <= VITQ_ARCH_MAXKEYS);
        CHECK(vitq_arch_key_of(&b, vitq_arch_nkeys(&b) - 1) != NULL);
        CHECK(vitq_arch_key_of(&b, vitq_arch_nkeys(&b)) == NULL);
    }
    vitq_arch w = s->arch;
    w.distilled = 1;
    CHECK_EQ(vitq_arch_validate(&w, "x", &e), VITQ_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "x: the ViT/DeiT variants (class_token, no_embed_class, init_values, global_pool, "
                              "fc_norm, representation_size, distilled) do not apply to a Swin architecture");
    vitq_model_free(s);
}
