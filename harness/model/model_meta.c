/* model_meta.c — the timm variants of a ViT checkpoint's architecture, and the timm arguments vitq refuses
 * (model_io.c parses the base keys and calls these).
 *
 * Every metadata key that names a timm VisionTransformer argument (timm 0.9 .. 1.0 vision_transformer.py
 * VisionTransformer.__init__, plus timm <= 0.5's representation_size and distilled) is honoured or refused
 * by name: structural keys and the variants vitq implements are read; training-only ones (drop rates,
 * weight_init) are honoured by being irrelevant in eval mode; the rest are accepted at timm's default value
 * only (qk_norm = false, reg_tokens = 0, ...), anything else is one error line naming the key. Swin's own
 * keys (depths, window_size) on a file read as a ViT are refused too (a Swin file says arch = swin; its keys
 * are read by swin_io.c, which this policy does not apply to). Keys that are not timm arguments (format =
 * pt, made_by, ...) are kept in the file and ignored.
 *
 * Precedence, field by field: metadata > the built-in entry > the tensor names (ls1.gamma, fc_norm.*,
 * cls_token, dist_token, pos_embed rows, pre_logits.fc; only without a built-in entry) > timm's defaults;
 * and timm's coupling: fc_norm = None follows global_pool (use_fc_norm = global_pool == 'avg'). */
#include "model/model.h"

#include <ctype.h>
#include <float.h>
#include <stdlib.h>
#include <string.h>

enum { V_CLS, V_NOEMB, V_INIT, V_POOL, V_FCNORM, V_REPR, V_DIST, V_COUNT };

/* timm VisionTransformer arguments vitq accepts only at timm's default (the values listed, '|'-separated;
 * booleans in any spelling of core's vocabulary), with what they would change. */
static const struct {
    const char *key, *ok, *what;
} default_only[] = {
    {"qk_norm", "false", "LayerNorm on q and k"},
    {"scale_attn_norm", "false", "a LayerNorm inside attention"},
    {"scale_mlp_norm", "false", "a LayerNorm inside the MLP"},
    {"proj_bias", "true", "projections without bias"},
    {"pos_embed", "learn", "another position embedding"},
    {"reg_tokens", "0", "register tokens"},
    {"pre_norm", "false", "a LayerNorm before the blocks (CLIP)"},
    {"final_norm", "true", "no final LayerNorm"},
    {"pool_include_prefix", "false", "prefix tokens in the pooling"},
    {"dynamic_img_size", "false", "resampled position embeddings"},
    {"dynamic_img_pad", "false", "padded patches"},
    {"embed_layer", "PatchEmbed", "another patch embedding"},
    {"embed_norm_layer", "none|None", "a LayerNorm in the patch embedding"},
    {"norm_layer", "LayerNorm|layernorm|none|None", "another normalisation"},
    {"act_layer", "gelu|GELU|none|None", "another MLP activation"},
    {"block_fn", "Block", "another block (ResPostBlock, ParallelScalingBlock, ...)"},
    {"mlp_layer", "Mlp", "another MLP (SwiGLU, ...)"},
    {"attn_layer", "attn|Attention", "another attention"},
    {"crop_mode", "center", "a crop other than timm's centre crop"},
};
/* Training-only arguments: nothing to do in eval mode. */
static const char *const train_only[] = {"drop_rate", "pos_drop_rate", "patch_drop_rate", "proj_drop_rate",
                                         "attn_drop_rate", "drop_path_rate", "weight_init", "fix_init"};

const char *vitq_vit_variant_value(const vitq_arch *a, int v, char *buf, size_t n) {
    switch (v) {
    case V_CLS: snprintf(buf, n, "%s", a->no_class_token ? "false" : "true"); break;
    case V_NOEMB: snprintf(buf, n, "%s", a->no_embed_class ? "true" : "false"); break;
    case V_INIT: snprintf(buf, n, "%s", a->layerscale ? "set (LayerScale on; gammas from the file)" : "none"); break;
    case V_POOL: snprintf(buf, n, "%s", a->global_pool == VITQ_POOL_AVG ? "avg" : "token"); break;
    case V_FCNORM: snprintf(buf, n, "%s", a->fc_norm ? "true" : "false"); break;
    case V_REPR: snprintf(buf, n, "%d", a->representation_size); break;
    case V_DIST: snprintf(buf, n, "%s", a->distilled ? "true" : "false"); break;
    default: if (n) buf[0] = 0;
    }
    return buf;
}

int vitq_arch_key_saved(const vitq_arch *a, int i) {
    if (a->family != VITQ_FAMILY_VIT) return i >= 0 && i < vitq_arch_nkeys(a); /* Swin: every key */
    if (i < 0 || i >= VITQ_ARCH_NKEYS) return 0;
    switch (i - VITQ_ARCH_NBASE) {
    case V_CLS: return a->no_class_token;
    case V_NOEMB: return a->no_embed_class;
    case V_INIT: return 0; /* the init value is not kept; the ls*.gamma tensors say LayerScale on reload */
    case V_POOL: return a->global_pool != VITQ_POOL_TOKEN;
    case V_FCNORM: return a->fc_norm || a->global_pool == VITQ_POOL_AVG; /* explicit: avg alone means fc_norm */
    case V_REPR: return a->representation_size > 0;
    case V_DIST: return a->distilled;
    }
    return 1; /* a base key */
}

static int bad_value(const char *file, const char *key, const char *what, const char *s, vitq_err *e) {
    return vitq_fail(e, VITQ_EFORMAT, "%s: __metadata__ '%s': expected %s, got '%.80s'", file, key, what, s);
}

/* Python's None as a metadata string (timm configs write it for an unset optional argument). */
static int is_none(const char *s) { return !*s || !strcmp(s, "none") || !strcmp(s, "None") || !strcmp(s, "null"); }

/* A number through core's typed-value parser (no surrounding spaces), as model_io.c's. */
static int number(const char *s, int integer, double *out) {
    const vitq_param p = {.type = integer ? VITQ_P_INT : VITQ_P_FLOAT, .min = integer ? -2147483647.0 : -FLT_MAX,
                          .max = integer ? 2147483647.0 : FLT_MAX};
    vitq_value v;
    char why[128];
    if (!*s || isspace((unsigned char)*s) || vitq_value_parse(&p, s, &v, why, sizeof why)) return -1;
    *out = integer ? (double)v.i : v.f;
    return 0;
}

static int boolean(const char *file, const char *key, const char *s, int *out, vitq_err *e) {
    return vitq_bool_parse(s, out) ? bad_value(file, key, "true/false, yes/no, on/off or 1/0", s, e) : VITQ_OK;
}

int vitq_vit_variant_parse(const char *file, int v, const char *s, vitq_arch *a, int *given, vitq_err *e) {
    const char *key = vitq_arch_key(VITQ_ARCH_NBASE + v);
    int b = 0, rc = VITQ_OK;
    double d = 0.0;
    switch (v) {
    case V_CLS: rc = boolean(file, key, s, &b, e), a->no_class_token = !b; break;
    case V_NOEMB: rc = boolean(file, key, s, &a->no_embed_class, e); break;
    case V_DIST: rc = boolean(file, key, s, &a->distilled, e); break;
    case V_INIT: /* timm: LayerScale `if init_values` — None and 0 mean none; the gammas come from the file */
        if (!is_none(s) && number(s, 0, &d)) return bad_value(file, key, "a number or None", s, e);
        a->layerscale = !is_none(s) && d != 0.0;
        break;
    case V_POOL:
        if (!strcmp(s, "token") || !strcmp(s, "avg")) a->global_pool = !strcmp(s, "avg") ? VITQ_POOL_AVG : VITQ_POOL_TOKEN;
        else if (!strcmp(s, "") || !strcmp(s, "avgmax") || !strcmp(s, "max") || !strcmp(s, "map") || !strcmp(s, "prr"))
            return vitq_fail(e, VITQ_EINVAL, "%s: __metadata__ 'global_pool' = '%s': a timm pooling vitq does not support "
                             "(vitq supports token and avg)", file, s);
        else return bad_value(file, key, "token or avg", s, e);
        break;
    case V_FCNORM: /* None: as if absent (timm: follow global_pool) */
        if (is_none(s)) *given = 0;
        else rc = boolean(file, key, s, &a->fc_norm, e);
        break;
    case V_REPR:
        if (is_none(s)) a->representation_size = 0;
        else if (number(s, 1, &d) || d < 0) return bad_value(file, key, "a non-negative integer or None", s, e);
        else a->representation_size = (int)d;
        break;
    }
    return rc;
}

/* Swin's keys that ViT does not have (depths, window_size): on a file read as a ViT they mean the arch key is
 * missing or wrong, or a windowed ViT (SAM, ViTDet) vitq does not implement. */
static int refuse_swin_keys(const vitq_st_file *f, vitq_err *e) {
    for (int i = 0; vitq_swin_key(i); i++) {
        const char *key = vitq_swin_key(i), *s = vitq_st_meta(f, key);
        int vit = 0;
        for (int k = 0; k < VITQ_ARCH_NKEYS && !vit; k++) vit = !strcmp(key, vitq_arch_key(k));
        if (s && !vit)
            return vitq_fail(e, VITQ_EINVAL, "%s: __metadata__ '%s' = '%.40s': %s is a timm SwinTransformer argument "
                             "on a file read as a ViT/DeiT (a Swin checkpoint needs arch = swin or a swin_* built-in; "
                             "a ViT with windowed attention is not supported)", f->path, key, s, key);
    }
    return VITQ_OK;
}

int vitq_arch_check_unsupported(const vitq_st_file *f, vitq_err *e) {
    int rc = refuse_swin_keys(f, e);
    if (rc) return rc;
    for (size_t i = 0; i < sizeof default_only / sizeof default_only[0]; i++) {
        const char *s = vitq_st_meta(f, default_only[i].key);
        if (!s) continue;
        int b, want, ok = 0;
        if (!vitq_bool_parse(default_only[i].ok, &want)) {
            ok = !vitq_bool_parse(s, &b) && b == want;
        } else {
            char **alts = NULL;
            int n = 0;
            if (vitq_list_split(default_only[i].ok, '|', 0, &alts, &n) == 0)
                for (int j = 0; j < n && !ok; j++) ok = !strcmp(s, alts[j]);
            vitq_strs_free(alts, n);
        }
        if (!ok)
            return vitq_fail(e, VITQ_EINVAL, "%s: __metadata__ '%s' = '%.40s': %s is a timm VisionTransformer argument "
                             "vitq does not support (%s)", f->path, default_only[i].key, s, default_only[i].key,
                             default_only[i].what);
    }
    return VITQ_OK;
}

int vitq_arch_is_timm_key(const char *key) {
    for (int k = 0; k < VITQ_ARCH_NKEYS; k++)
        if (!strcmp(key, vitq_arch_key(k))) return 1;
    for (size_t i = 0; i < sizeof default_only / sizeof default_only[0]; i++)
        if (!strcmp(key, default_only[i].key)) return 1;
    for (size_t i = 0; i < sizeof train_only / sizeof train_only[0]; i++)
        if (!strcmp(key, train_only[i])) return 1;
    for (int i = 0; vitq_swin_key(i); i++) /* Swin's keys: read on a Swin file, refused on a ViT one */
        if (!strcmp(key, vitq_swin_key(i))) return 1;
    return 0;
}

/* The variants the tensor names say, for the fields nothing else gave (given[v] = 0). */
static void infer(const vitq_st_file *f, vitq_arch *a, const int *given, const char **from) {
    const char *names = "tensor names";
    const vitq_st_tensor *pre = vitq_st_find(f, "pre_logits.fc.weight"), *pos = vitq_st_find(f, "pos_embed");
    int fc_names = vitq_st_find(f, "fc_norm.weight") && !vitq_st_find(f, "norm.weight");
    if (!given[V_INIT] && vitq_st_find(f, "blocks.0.ls1.gamma")) a->layerscale = 1, from[V_INIT] = names;
    if (!given[V_CLS] && !vitq_st_find(f, "cls_token")) a->no_class_token = 1, from[V_CLS] = names;
    if (!given[V_DIST] && (vitq_st_find(f, "dist_token") || vitq_st_find(f, "head_dist.weight")))
        a->distilled = 1, from[V_DIST] = names;
    if (!given[V_REPR] && pre && pre->ndim == 2 && pre->shape[0] > 0 && pre->shape[0] < INT32_MAX)
        a->representation_size = (int)pre->shape[0], from[V_REPR] = names;
    if (!given[V_FCNORM] && !given[V_POOL] && fc_names) a->fc_norm = 1, from[V_FCNORM] = names;
    /* timm: fc_norm = None -> use_fc_norm = (global_pool == 'avg'); no class token -> pooling must be avg */
    if (!given[V_POOL] && (a->no_class_token || (a->fc_norm && !given[V_FCNORM])))
        a->global_pool = VITQ_POOL_AVG, from[V_POOL] = names;
    int g = a->patch_size > 0 ? a->img_size / a->patch_size : 0;
    if (!given[V_NOEMB] && pos && pos->ndim == 3 && vitq_arch_prefix(a) > 0 && pos->shape[1] == (int64_t)g * g)
        a->no_embed_class = 1, from[V_NOEMB] = names;
}

void vitq_vit_variants_resolve(const vitq_st_file *f, vitq_arch *a, int from_names, const int *given, const char **from) {
    if (from_names) infer(f, a, given, from);
    if (!given[V_FCNORM] && given[V_POOL]) { /* timm: use_fc_norm = global_pool == 'avg' when fc_norm is None */
        a->fc_norm = a->global_pool == VITQ_POOL_AVG;
        from[V_FCNORM] = "global_pool";
    }
}
