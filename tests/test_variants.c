/* test_variants.c — timm's ViT/DeiT checkpoint variants (issue 11) against the PyTorch fixtures of
 * tests/reference/make_variant_fixtures.py (manifest: tests/reference/README.md, "variants/"): LayerScale,
 * the representation layer, average pooling with norm or fc_norm, token pooling with fc_norm, the distilled
 * DeiT, no class token, no_embed_class, format = pt, each with and without its variant metadata (the
 * `_nometa` twins: the layout read from the tensor names). Logits, the head's features and the token
 * sequence entering block 0 are compared as tests/test_vit.c does: |c - torch| <= 1e-4 |torch| + 1e-5 max|torch|,
 * in eval-mode and train-mode activations. The files a loader must refuse give their exact one-line error. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#define VAR "tests/fixtures/variants/"

static float *ref_tensor(vitq_st_file *f, const char *name, int64_t *numel) {
    const vitq_st_tensor *t = vitq_st_find(f, name);
    if (!t) return NULL;
    *numel = vitq_st_numel(t);
    float *p = malloc(sizeof(float) * (size_t)*numel);
    vitq_err e;
    if (vitq_st_read_f32(f, name, p, t->ndim, t->shape, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        free(p);
        return NULL;
    }
    return p;
}

/* max |c - torch| over n, and the test_vit.c tolerance check. */
static double compare(const char *what, const float *got, const float *ref, int64_t n) {
    double mx = 0, worst = 0;
    for (int64_t i = 0; i < n; i++) mx = fabs(ref[i]) > mx ? fabs(ref[i]) : mx;
    for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)got[i] - ref[i]));
    test_allclose(__FILE__, __LINE__, what, got, ref, (long)n, 1e-4, 1e-5 * mx);
    return worst;
}

/* The head's features as the fixture stores them: (B,F), or [cls, dist] (B,2C) for the distilled model. */
static void features(const vitq_model *m, const vitq_acts *a, int B, float *out) {
    const int64_t C = m->arch.embed_dim, R = m->arch.representation_size;
    for (int b = 0; b < B; b++) {
        if (m->arch.distilled) {
            memcpy(out + b * 2 * C, a->lnf + b * C, sizeof(float) * (size_t)C);
            memcpy(out + b * 2 * C + C, a->head.lnd + b * C, sizeof(float) * (size_t)C);
        } else if (R > 0) {
            memcpy(out + b * R, a->head.feat + b * R, sizeof(float) * (size_t)R);
        } else {
            memcpy(out + b * C, a->lnf + b * C, sizeof(float) * (size_t)C);
        }
    }
}

/* Loads VAR/<file>.safetensors, runs the images of VAR/<ref>_ref.safetensors in eval and train mode and
 * compares logits, features and res.0; returns the worst logit difference (or -1). */
static double check_case(const char *file, const char *ref) {
    char path[256];
    snprintf(path, sizeof path, VAR "%s.safetensors", file);
    vitq_model *m = NULL;
    vitq_err e = {{0}};
    if (vitq_model_load(path, NULL, &m, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return -1;
    }
    snprintf(path, sizeof path, VAR "%s_ref.safetensors", ref);
    vitq_st_file *f = NULL;
    CHECK_MSG(vitq_st_open(path, &f, &e) == 0, "%s", e.msg);
    int64_t ni = 0, nl = 0, nf = 0, nr = 0;
    float *images = f ? ref_tensor(f, "images", &ni) : NULL, *logits = f ? ref_tensor(f, "logits", &nl) : NULL;
    float *feat = f ? ref_tensor(f, "features", &nf) : NULL, *res0 = f ? ref_tensor(f, "res.0", &nr) : NULL;
    double worst = -1;
    const int B = 2;
    for (int train = 0; images && logits && feat && res0 && train < 2; train++) {
        vitq_acts *a = NULL;
        CHECK_MSG(vitq_acts_create(m, B, train, &a, &e) == 0, "%s", e.msg);
        CHECK_MSG(a && vitq_forward(m, a, images, B, &e) == 0, "%s", e.msg);
        if (!a) break;
        char what[96];
        snprintf(what, sizeof what, "%s logits (train %d)", file, train);
        worst = compare(what, a->logits, logits, nl);
        float *got = malloc(sizeof(float) * (size_t)nf);
        features(m, a, B, got);
        snprintf(what, sizeof what, "%s features (train %d)", file, train);
        compare(what, got, feat, nf);
        free(got);
        if (train) { /* res.0 survives in train mode */
            CHECK_EQ(nr, (int64_t)B * vitq_arch_tokens(&m->arch) * m->arch.embed_dim);
            snprintf(what, sizeof what, "%s res.0", file);
            compare(what, vitq_acts_res(a, 0), res0, nr);
        }
        vitq_acts_free(a);
    }
    printf("  %-24s max |logits - torch| %.2e\n", file, worst);
    free(images), free(logits), free(feat), free(res0);
    vitq_st_close(f);
    vitq_model_free(m);
    return worst;
}

/* logits of VAR/<ref>_ref differ from its tensor `bug` by more than `min`: the fixture tells the bug apart. */
static void differs_from(const char *ref, const char *bug, double min) {
    char path[256];
    snprintf(path, sizeof path, VAR "%s_ref.safetensors", ref);
    vitq_st_file *f = NULL;
    vitq_err e;
    CHECK_MSG(vitq_st_open(path, &f, &e) == 0, "%s", e.msg);
    if (!f) return;
    int64_t n = 0, n2 = 0;
    float *a = ref_tensor(f, "logits", &n), *b = ref_tensor(f, bug, &n2);
    double d = 0;
    for (int64_t i = 0; a && b && i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    CHECK_MSG(d > min, "%s: %s differs from logits by only %g", ref, bug, d);
    free(a), free(b);
    vitq_st_close(f);
}

TEST(variant_layerscale) {
    check_case("layerscale", "layerscale");
    check_case("layerscale_nometa", "layerscale");
    differs_from("layerscale", "logits_ignoring_gamma", 0.1);
}

TEST(variant_pre_logits) {
    check_case("pre_logits", "pre_logits");
    check_case("pre_logits_nometa", "pre_logits");
}

TEST(variant_avgpool_fcnorm) {
    check_case("avgpool_fcnorm", "avgpool_fcnorm");
    check_case("avgpool_fcnorm_nometa", "avgpool_fcnorm");
    differs_from("avgpool_fcnorm", "logits_token_pool", 0.01);
}

TEST(variant_avgpool_norm) {
    check_case("avgpool_norm", "avgpool_norm");
    differs_from("avgpool_norm", "logits_token_pool", 0.01);
}

TEST(variant_token_fcnorm) { check_case("token_fcnorm", "token_fcnorm"); }

TEST(variant_distilled) {
    check_case("distilled", "distilled");
    check_case("distilled_nometa", "distilled");
}

TEST(variant_no_class_token) {
    check_case("no_class_token", "no_class_token");
    check_case("no_class_token_nometa", "no_class_token");
}

TEST(variant_no_embed_class) {
    check_case("no_embed_class", "no_embed_class");
    check_case("no_embed_class_nometa", "no_embed_class");
    /* the class token enters the blocks as stored (no position embedding) */
    vitq_model *m = NULL;
    vitq_err e;
    CHECK(vitq_model_load(VAR "no_embed_class.safetensors", NULL, &m, &e) == 0);
    if (!m) return;
    CHECK(m->arch.no_embed_class);
    CHECK_EQ(vitq_model_param(m, "pos_embed")->shape[1], 16);
    vitq_acts *a = NULL;
    float img[3 * 16 * 16] = {0};
    CHECK(vitq_acts_create(m, 1, 1, &a, &e) == 0 && vitq_forward(m, a, img, 1, &e) == 0);
    if (a) CHECK_EQ(memcmp(vitq_acts_res(a, 0), m->p.cls_token, sizeof(float) * 12), 0);
    vitq_acts_free(a);
    vitq_model_free(m);
}

/* timm's own files carry format = pt: kept and ignored. */
TEST(variant_format_pt) {
    check_case("format_pt", "format_pt");
    vitq_st_file *f = NULL;
    vitq_err e;
    CHECK(vitq_st_open(VAR "format_pt.safetensors", &f, &e) == 0);
    if (f) CHECK_STREQ(vitq_st_meta(f, "format"), "pt");
    vitq_st_close(f);
}

/* The variant fields each file resolves to, and where they came from. */
TEST(variant_arch_resolution) {
    static const struct {
        const char *file;
        int no_cls, no_emb, ls, pool, fc, repr, dist;
        const char *pool_from;
    } c[] = {
        {"layerscale_nometa", 0, 0, 1, VITQ_POOL_TOKEN, 0, 0, 0, "default"},
        {"avgpool_fcnorm_nometa", 0, 0, 0, VITQ_POOL_AVG, 1, 0, 0, "tensor names"},
        {"avgpool_norm", 0, 0, 0, VITQ_POOL_AVG, 0, 0, 0, "metadata"},
        {"token_fcnorm", 0, 0, 0, VITQ_POOL_TOKEN, 1, 0, 0, "metadata"},
        {"no_class_token_nometa", 1, 0, 0, VITQ_POOL_AVG, 0, 0, 0, "tensor names"},
        {"no_embed_class_nometa", 0, 1, 0, VITQ_POOL_TOKEN, 0, 0, 0, "default"},
        {"pre_logits_nometa", 0, 0, 0, VITQ_POOL_TOKEN, 0, 20, 0, "default"},
        {"distilled_nometa", 0, 0, 0, VITQ_POOL_TOKEN, 0, 0, 1, "default"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, VAR "%s.safetensors", c[i].file);
        vitq_st_file *f = NULL;
        vitq_err e;
        vitq_arch a;
        vitq_arch_origin o;
        CHECK(vitq_st_open(path, &f, &e) == 0);
        if (!f) continue;
        CHECK_MSG(vitq_arch_from_st(f, NULL, &a, &o, &e) == 0, "%s", e.msg);
        CHECK_EQ(a.no_class_token, c[i].no_cls);
        CHECK_EQ(a.no_embed_class, c[i].no_emb);
        CHECK_EQ(a.layerscale, c[i].ls);
        CHECK_EQ(a.global_pool, c[i].pool);
        CHECK_EQ(a.fc_norm, c[i].fc);
        CHECK_EQ(a.representation_size, c[i].repr);
        CHECK_EQ(a.distilled, c[i].dist);
        CHECK_STREQ(o.from[17], c[i].pool_from);
        CHECK_STREQ(vitq_arch_key(17), "global_pool");
        vitq_st_close(f);
    }
}

/* The exact one-line refusal of VAR/<file>.safetensors. */
static void refused(const char *file, const char *msg_after_path) {
    char path[256], want[1200];
    snprintf(path, sizeof path, VAR "%s.safetensors", file);
    snprintf(want, sizeof want, "%s: %s", path, msg_after_path);
    vitq_model *m = NULL;
    vitq_err e = {{0}};
    int rc = vitq_model_load(path, NULL, &m, &e);
    CHECK_MSG(rc != 0, "%s loaded", file);
    CHECK(m == NULL);
    CHECK_STREQ(e.msg, want);
    CHECK(strchr(e.msg, '\n') == NULL);
    vitq_model_free(m);
}

TEST(variant_refusals) {
    refused("module_prefix", "tensor 'module.cls_token' is not used by the model (the names carry "
                             "DistributedDataParallel's 'module.' prefix: save model.module.state_dict(), or strip "
                             "'module.' from every name)");
    refused("extra_tensor", "tensor 'blocks.0.attn.relative_position_bias_table' is not used by the model custom (a "
                            "relative position bias (BEiT-style): not part of timm's VisionTransformer, not supported)");
    refused("layerscale_gamma_names", "tensor 'blocks.0.gamma_1' is not used by the model custom (facebookresearch/deit's "
                                      "name for a LayerScale gamma: rename blocks.N.gamma_1 / gamma_2 to "
                                      "blocks.N.ls1.gamma / ls2.gamma, as timm's checkpoint_filter_fn does)");
    refused("qk_norm", "__metadata__ 'qk_norm' = 'true': qk_norm is a timm VisionTransformer argument vitq does not "
                       "support (LayerNorm on q and k)");
    refused("trailing_bytes", "the file has 64 bytes after its data section (the tensors end at byte 11108 of 11172; "
                              "the safetensors reference parser refuses such files: MetadataIncompleteBuffer)");
    refused("hole_between", "tensor 'blocks.0.attn.proj.weight' starts at byte 5192 of the data section, but the tensor "
                            "before it, 'blocks.0.attn.qkv.bias', ends at 5184: the data offsets leave a hole (the "
                            "safetensors reference parser refuses it: InvalidOffset)");
}
