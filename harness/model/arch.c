/* arch.c — the built-in table of timm architectures and the sanity checks every architecture passes.
 * Values are timm's (v0.9 `_cfg` of deit.py and vision_transformer.py): crop_pct 0.9, bicubic;
 * DeiT uses ImageNet's mean/std, ViT (AugReg) uses 0.5/0.5. Swin's built-ins and own checks are in
 * swin_arch.c; the names listed here are ViT's, then Swin's. */
#include "model/model.h"

#include <string.h>

#define IMNET_MEAN {0.485f, 0.456f, 0.406f}
#define IMNET_STD {0.229f, 0.224f, 0.225f}
#define HALF {0.5f, 0.5f, 0.5f}
#define VIT224(NAME, DIM, HEADS, MEAN, STD)                                                          \
    {.name = NAME, .img_size = 224, .patch_size = 16, .in_chans = 3, .num_classes = 1000,          \
     .embed_dim = DIM, .depth = 12, .num_heads = HEADS, .mlp_ratio = 4.0f, .qkv_bias = 1,           \
     .mean = MEAN, .std = STD, .crop_pct = 0.9f, .interpolation = "bicubic"}

static const vitq_arch builtin[] = {
    VIT224("deit_tiny_patch16_224", 192, 3, IMNET_MEAN, IMNET_STD),
    VIT224("deit_small_patch16_224", 384, 6, IMNET_MEAN, IMNET_STD),
    VIT224("deit_base_patch16_224", 768, 12, IMNET_MEAN, IMNET_STD),
    VIT224("vit_tiny_patch16_224", 192, 3, HALF, HALF),
    VIT224("vit_small_patch16_224", 384, 6, HALF, HALF),
    VIT224("vit_base_patch16_224", 768, 12, HALF, HALF),
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
    char list[512] = "";
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
    NEED(a->crop_pct > 0 && a->crop_pct <= 1, "%s: crop_pct must be in (0, 1], got %g", w, (double)a->crop_pct);
    for (int c = 0; c < a->in_chans; c++)
        NEED(a->std[c] > 0, "%s: std[%d] must be positive, got %g", w, c, (double)a->std[c]);
#undef NEED
    return VITQ_OK;
}
