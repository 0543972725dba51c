/* swin_arch.c — Swin architectures: the built-in table (timm 0.9 `default_cfgs` of swin_transformer.py:
 * swin_{tiny,small,base}_patch4_window7_224, ImageNet mean/std, crop_pct 0.9, bicubic; SWIN_NOTES.md
 * section 9), the checks a Swin architecture passes on top of the common ones (arch.c), its metadata keys
 * and their text, and the derived line `vitq inspect` prints. Does not: read files (swin_io.c does). */
#include "model/model.h"

#include <string.h>

#define IMNET_MEAN {0.485f, 0.456f, 0.406f}
#define IMNET_STD {0.229f, 0.224f, 0.225f}
#define SWIN224(NAME, DIM, D2, H0)                                                                            \
    {.family = VITQ_FAMILY_SWIN, .name = NAME, .img_size = 224, .patch_size = 4, .in_chans = 3,             \
     .num_classes = 1000, .embed_dim = DIM, .depth = 6 + (D2), .num_heads = H0, .mlp_ratio = 4.0f,           \
     .qkv_bias = 1, .mean = IMNET_MEAN, .std = IMNET_STD, .crop_pct = 0.9, .interpolation = "bicubic",      \
     .n_stages = 4, .depths = {2, 2, D2, 2}, .stage_heads = {H0, 2 * (H0), 4 * (H0), 8 * (H0)}, .window_size = 7}

static const vitq_arch builtin[] = {
    SWIN224("swin_tiny_patch4_window7_224", 96, 6, 3),
    SWIN224("swin_small_patch4_window7_224", 96, 18, 3),
    SWIN224("swin_base_patch4_window7_224", 128, 18, 4),
};
#define N_BUILTIN ((int)(sizeof builtin / sizeof builtin[0]))

const char *vitq_swin_arch_builtin_name(int i) { return i >= 0 && i < N_BUILTIN ? builtin[i].name : NULL; }

int vitq_swin_arch_builtin(const char *name, vitq_arch *out) {
    for (int i = 0; i < N_BUILTIN; i++)
        if (!strcmp(builtin[i].name, name)) {
            *out = builtin[i];
            return VITQ_OK;
        }
    return VITQ_EINVAL;
}

/* Called by vitq_arch_validate before the common checks (which then see depth and num_heads as derived). */
int vitq_swin_arch_validate(const vitq_arch *a, const char *w, vitq_err *e) {
#define NEED(cond, ...) \
    if (!(cond)) return vitq_fail(e, VITQ_EFORMAT, __VA_ARGS__)
    NEED(a->n_stages >= 1 && a->n_stages <= VITQ_SWIN_MAX_STAGES, "%s: depths must list 1 to %d stages, got %d", w,
         VITQ_SWIN_MAX_STAGES, a->n_stages);
    NEED(a->window_size >= 1 && a->window_size <= 64, "%s: window_size must be in [1, 64], got %d", w,
         a->window_size);
    int sum = 0;
    for (int s = 0; s < a->n_stages; s++) {
        NEED(a->depths[s] >= 1, "%s: depths[%d] must be positive, got %d", w, s, a->depths[s]);
        NEED(a->stage_heads[s] >= 1, "%s: num_heads[%d] must be positive, got %d", w, s, a->stage_heads[s]);
        sum += a->depths[s];
        NEED(sum <= 256, "%s: depths add up to more than 256 blocks", w);
        const long long C = (long long)a->embed_dim << s;
        NEED(a->embed_dim > 0 && C <= 16384, "%s: stage %d width embed_dim * 2^%d = %lld is not in [1, 16384]", w, s,
             s, C);
        NEED(C % a->stage_heads[s] == 0, "%s: stage %d width %lld is not divisible by num_heads[%d] = %d", w, s, C, s,
             a->stage_heads[s]);
    }
    NEED(a->depth == sum, "%s: depth %d must be the sum of depths (%d)", w, a->depth, sum);
    NEED(a->num_heads == a->stage_heads[0], "%s: num_heads %d must be num_heads[0] (%d)", w, a->num_heads,
         a->stage_heads[0]);
    if (a->patch_size > 0 && a->img_size > 0 && a->img_size % a->patch_size == 0)
        for (int s = 1; s < a->n_stages; s++) {
            const int res = (a->img_size / a->patch_size) >> (s - 1);
            NEED(res % 2 == 0 && res >= 2, "%s: stage %d is %dx%d tokens (img_size %d / patch_size %d / 2^%d): patch "
                 "merging needs an even side (timm 0.9 asserts it)", w, s - 1, res, res, a->img_size, a->patch_size,
                 s - 1);
        }
#undef NEED
    return VITQ_OK;
}

/* ---- metadata keys ------------------------------------------------------------------------------------- */

enum { SK_DEPTHS = 6, SK_HEADS = 7, SK_WINDOW = 8, SK_COUNT = 15 };
_Static_assert(SK_COUNT <= VITQ_ARCH_MAXKEYS, "vitq_arch_origin.from holds VITQ_ARCH_MAXKEYS keys");
static const char *const swin_keys[SK_COUNT] = {
    "arch", "img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depths", "num_heads", "window_size",
    "mlp_ratio", "qkv_bias", "mean", "std", "crop_pct", "interpolation",
};

int vitq_swin_nkeys(void) { return SK_COUNT; }
const char *vitq_swin_key(int i) { return i >= 0 && i < SK_COUNT ? swin_keys[i] : NULL; }

static const char *int_list(const int *v, int n, char *buf, size_t sz) {
    size_t k = 0;
    if (sz) buf[0] = 0;
    for (int i = 0; i < n && k < sz; i++) k += (size_t)snprintf(buf + k, sz - k, "%s%d", i ? "," : "", v[i]);
    return buf;
}

const char *vitq_swin_value(const vitq_arch *a, int i, char *buf, size_t n) {
    if (n) buf[0] = 0;
    if (i == SK_DEPTHS) return int_list(a->depths, a->n_stages, buf, n);
    if (i == SK_HEADS) return int_list(a->stage_heads, a->n_stages, buf, n);
    if (i == SK_WINDOW) {
        snprintf(buf, n, "%d", a->window_size);
        return buf;
    }
    for (int k = 0; i >= 0 && i < SK_COUNT && k < VITQ_ARCH_NBASE; k++) /* a base key ViT has: its text */
        if (!strcmp(vitq_arch_key(k), swin_keys[i])) return vitq_arch_value(a, k, buf, n);
    return buf;
}

/* "stages 56x56x96 (2 blocks, 3 heads, window 7, shift 3 on odd blocks), ...; head width 32" */
const char *vitq_swin_derived(const vitq_arch *a, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "stages");
    const int grid = a->patch_size > 0 ? a->img_size / a->patch_size : 0;
    for (int s = 0; s < a->n_stages && k < n; s++) {
        const int res = grid >> s, win = res <= a->window_size ? res : a->window_size;
        const int shift = res > win ? a->window_size / 2 : 0, pad = win > 0 && res % win ? win - res % win : 0;
        char sh[48] = "no shift";
        if (shift) snprintf(sh, sizeof sh, "shift %d on odd blocks", shift);
        k += (size_t)snprintf(buf + k, n - k, "%s %dx%dx%d (%d block%s, %d heads, window %d, %s%s)", s ? "," : "",
                              res, res, a->embed_dim << s, a->depths[s], a->depths[s] == 1 ? "" : "s",
                              a->stage_heads[s], win, sh, pad ? ", zero-padded" : "");
    }
    if (k < n) snprintf(buf + k, n - k, "; head width %d", a->stage_heads[0] ? a->embed_dim / a->stage_heads[0] : 0);
    return buf;
}
