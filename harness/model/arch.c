/* arch.c — the built-in table of timm architectures and the sanity checks every architecture passes.
 * Values are timm's: the model functions of vision_transformer.py and deit.py (v0.9) for the architecture,
 * their pretrained `_cfg` for the data config (the default tag's). crop_pct 0.9 and bicubic unless noted;
 * DeiT, DeiT-III and distilled DeiT use ImageNet's mean/std, the ViTs (AugReg, gap) 0.5/0.5.
 *   deit3_*: no_embed_class, init_values 1e-6 (LayerScale), `.fb_in1k` crop_pct 0.9
 *   deit_*_distilled: VisionTransformerDistilled (dist_token, head_dist)
 *   vit_base_patch16_gap_224: class_token False, global_pool avg, fc_norm False, 16 heads (`_cfg()`)
 *   vit_medium_patch16_gap_256: the same pooling, 256 px, qkv_bias False, init_values 1e-6;
 *     `.sw_in12k_ft_in1k` crop_pct 0.95
 * Swin's built-ins and own checks are in swin_arch.c; the names listed here are ViT's, then Swin's. */
#include "model/model.h"

#include <string.h>

#define IMNET .mean = {0.485f, 0.456f, 0.406f}, .std = {0.229f, 0.224f, 0.225f}
#define HALF .mean = {0.5f, 0.5f, 0.5f}, .std = {0.5f, 0.5f, 0.5f}
#define VIT(NAME, IMG, DIM, HEADS, CROP, QB, ...)                                                           \
    {.name = NAME, .img_size = IMG, .patch_size = 16, .in_chans = 3, .num_classes = 1000,                 \
     .embed_dim = DIM, .depth = 12, .num_heads = HEADS, .mlp_ratio = 4.0f, .qkv_bias = QB,                 \
     .crop_pct = CROP, .interpolation = "bicubic", __VA_ARGS__}
#define DEIT3 .no_embed_class = 1, .layerscale = 1
#define GAP .no_class_token = 1, .global_pool = VITQ_POOL_AVG, .fc_norm = 0

static const vitq_arch builtin[] = {
    VIT("deit_tiny_patch16_224", 224, 192, 3, 0.9, 1, IMNET),
    VIT("deit_small_patch16_224", 224, 384, 6, 0.9, 1, IMNET),
    VIT("deit_base_patch16_224", 224, 768, 12, 0.9, 1, IMNET),
    VIT("deit_tiny_distilled_patch16_224", 224, 192, 3, 0.9, 1, IMNET, .distilled = 1),
    VIT("deit_small_distilled_patch16_224", 224, 384, 6, 0.9, 1, IMNET, .distilled = 1),
    VIT("deit_base_distilled_patch16_224", 224, 768, 12, 0.9, 1, IMNET, .distilled = 1),
    VIT("deit3_small_patch16_224", 224, 384, 6, 0.9, 1, IMNET, DEIT3),
    VIT("deit3_base_patch16_224", 224, 768, 12, 0.9, 1, IMNET, DEIT3),
    VIT("vit_tiny_patch16_224", 224, 192, 3, 0.9, 1, HALF),
    VIT("vit_small_patch16_224", 224, 384, 6, 0.9, 1, HALF),
    VIT("vit_base_patch16_224", 224, 768, 12, 0.9, 1, HALF),
    VIT("vit_base_patch16_gap_224", 224, 768, 16, 0.9, 1, HALF, GAP),
    VIT("vit_medium_patch16_gap_256", 256, 512, 8, 0.95, 0, HALF, GAP, .layerscale = 1),
};
#define N_BUILTIN ((int)(sizeof builtin / sizeof builtin[0]))

const char *vitq_arch_builtin_name(int i) {
    return i >= 0 && i < N_BUILTIN ? builtin[i].name : vitq_swin_arch_builtin_name(i - N_BUILTIN);
}

int vitq_arch_builtin(const char *name, vitq_arch *out, vitq_err *e) {
    for (int i = 0; i < N_BUILTIN; i++) {
        if (strcmp(builtin[i].name, name) == 0) {
            *out = builtin[i];
            return VITQ_OK;
        }
    }
    if (vitq_swin_arch_builtin(name, out) == VITQ_OK) return VITQ_OK;
    char list[1024] = "";
    for (int i = 0; vitq_arch_builtin_name(i); i++) {
        strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
        strncat(list, vitq_arch_builtin_name(i), sizeof list - strlen(list) - 1);
    }
    return vitq_fail(e, VITQ_EINVAL, "unknown architecture '%s' (built-in: %s)", name, list);
}

int vitq_arch_validate(const vitq_arch *a, const char *what, vitq_err *e) {
    const char *w = what && *what ? what : "architecture";
#define NEED(cond, ...) \
    if (!(cond)) return vitq_fail(e, VITQ_EFORMAT, __VA_ARGS__)
    NEED(a->family == VITQ_FAMILY_VIT || a->family == VITQ_FAMILY_SWIN, "%s: unknown architecture family %d", w,
         a->family);
    if (a->family == VITQ_FAMILY_SWIN) { /* stages first; depth and num_heads are then checked as derived */
        int rc = vitq_swin_arch_validate(a, w, e);
        if (rc) return rc;
    }
    NEED(a->img_size > 0 && a->img_size <= 4096, "%s: img_size must be in [1, 4096], got %d", w, a->img_size);
    NEED(a->patch_size > 0, "%s: patch_size must be positive, got %d", w, a->patch_size);
    NEED(a->img_size % a->patch_size == 0, "%s: img_size %d is not a multiple of patch_size %d", w, a->img_size,
         a->patch_size);
    NEED(a->in_chans == 1 || a->in_chans == 3, "%s: in_chans must be 1 or 3, got %d", w, a->in_chans);
    NEED(a->num_classes > 0 && a->num_classes <= 100000, "%s: num_classes must be in [1, 100000], got %d", w,
         a->num_classes);
    NEED(a->embed_dim > 0 && a->embed_dim <= 16384, "%s: embed_dim must be in [1, 16384], got %d", w, a->embed_dim);
    NEED(a->depth > 0 && a->depth <= 256, "%s: depth must be in [1, 256], got %d", w, a->depth);
    NEED(a->num_heads > 0, "%s: num_heads must be positive, got %d", w, a->num_heads);
    NEED(a->embed_dim % a->num_heads == 0, "%s: embed_dim %d is not divisible by num_heads %d", w, a->embed_dim,
         a->num_heads);
    NEED(a->mlp_ratio > 0 && a->mlp_ratio <= 64, "%s: mlp_ratio must be in (0, 64], got %g", w, (double)a->mlp_ratio);
    NEED(a->qkv_bias == 0 || a->qkv_bias == 1, "%s: qkv_bias must be true or false", w);
    NEED(a->crop_pct > 0 && a->crop_pct <= 1, "%s: crop_pct must be in (0, 1], got %g", w, a->crop_pct);
    for (int c = 0; c < a->in_chans; c++)
        NEED(a->std[c] > 0, "%s: std[%d] must be positive, got %g", w, c, (double)a->std[c]);
    NEED(a->family == VITQ_FAMILY_VIT || !(a->no_class_token || a->no_embed_class || a->layerscale || a->global_pool ||
                                           a->fc_norm || a->representation_size || a->distilled),
         "%s: the ViT/DeiT variants (class_token, no_embed_class, init_values, global_pool, fc_norm, "
         "representation_size, distilled) do not apply to a Swin architecture", w);
    /* the variants: timm's own assertions (vision_transformer.py, deit.py) */
    NEED(a->global_pool == VITQ_POOL_TOKEN || a->global_pool == VITQ_POOL_AVG, "%s: global_pool must be token or avg", w);
    NEED(!a->no_class_token || a->global_pool == VITQ_POOL_AVG,
         "%s: class_token = false needs global_pool = avg (timm asserts class_token or global_pool != 'token')", w);
    NEED(!a->distilled || (!a->no_class_token && a->global_pool == VITQ_POOL_TOKEN && !a->representation_size &&
                           !a->fc_norm),
         "%s: a distilled DeiT has a class token, global_pool = token, its final norm before the heads and no "
         "representation layer (deit.py VisionTransformerDistilled)", w);
    NEED(a->representation_size >= 0 && a->representation_size <= 65536,
         "%s: representation_size must be in [0, 65536], got %d", w, a->representation_size);
#undef NEED
    return VITQ_OK;
}
