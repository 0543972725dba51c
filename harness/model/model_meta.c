/* model_meta.c — the architecture of a checkpoint: `__metadata__` keys named as timm's VisionTransformer
 * arguments (values strings, parsed strictly by core's typed-value parser), the built-in table, and what
 * the tensor names say when neither gives a variant.
 *
 * Every metadata key that names a timm VisionTransformer argument (timm 0.9 .. 1.0 vision_transformer.py
 * VisionTransformer.__init__, plus timm <= 0.5's representation_size and distilled) is honoured or refused
 * by name: structural keys and the variants vitq implements are read; training-only ones (drop rates,
 * weight_init) are honoured by being irrelevant in eval mode; the rest are accepted at timm's default value
 * only (qk_norm = false, reg_tokens = 0, ...), anything else is one error line naming the key. Keys that are
 * not timm arguments (format = pt, made_by, ...) are kept in the file and ignored.
 *
 * Precedence, field by field: metadata > the built-in entry (--arch, or a built-in name in the `arch` key)
 * > the tensor names (variants only: ls1.gamma, fc_norm.*, cls_token, dist_token, pos_embed rows,
 * pre_logits.fc) > timm's defaults. A model with neither a built-in entry nor metadata for its data config
 * gets timm's resolve_data_config fallbacks (ImageNet mean/std, crop_pct 0.875, bicubic). */
#include "model/model.h"

#include <ctype.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    K_ARCH, K_IMG, K_PATCH, K_CHANS, K_CLASSES, K_DIM, K_DEPTH, K_HEADS, /* structural: K_IMG..K_HEADS */
    K_MLP, K_QKV, K_MEAN, K_STD, K_CROP, K_INTERP,
    K_CLS, K_NOEMB, K_INIT, K_POOL, K_FCNORM, K_REPR, K_DIST, /* the variants: K_CLS..K_DIST */
};

static const char *const arch_keys[VITQ_ARCH_NKEYS] = {
    [K_ARCH] = "arch",           [K_IMG] = "img_size",     [K_PATCH] = "patch_size", [K_CHANS] = "in_chans",
    [K_CLASSES] = "num_classes", [K_DIM] = "embed_dim",    [K_DEPTH] = "depth",      [K_HEADS] = "num_heads",
    [K_MLP] = "mlp_ratio",       [K_QKV] = "qkv_bias",     [K_MEAN] = "mean",        [K_STD] = "std",
    [K_CROP] = "crop_pct",       [K_INTERP] = "interpolation", [K_CLS] = "class_token", [K_NOEMB] = "no_embed_class",
    [K_INIT] = "init_values",    [K_POOL] = "global_pool", [K_FCNORM] = "fc_norm",   [K_REPR] = "representation_size",
    [K_DIST] = "distilled",
};

/* timm's VisionTransformer defaults, and resolve_data_config's fallbacks for the data config (timm
 * data/config.py: IMAGENET_DEFAULT_MEAN/STD, DEFAULT_CROP_PCT 0.875, bicubic). */
static const vitq_arch timm_defaults = {
    .name = "custom", .mlp_ratio = 4.0f, .qkv_bias = 1, .mean = {0.485f, 0.456f, 0.406f},
    .std = {0.229f, 0.224f, 0.225f}, .crop_pct = 0.875, .interpolation = "bicubic",
};

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

const char *vitq_arch_key(int i) { return i >= 0 && i < VITQ_ARCH_NKEYS ? arch_keys[i] : NULL; }

/* Shortest "%g" text that reads back as exactly v (a float, or a double for crop_pct). */
static int fmt_float(char *buf, size_t n, float v) {
    int k = 0;
    for (int prec = 1; prec <= 9; prec++) {
        k = snprintf(buf, n, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    return k;
}

static int fmt_double(char *buf, size_t n, double v) {
    int k = 0;
    for (int prec = 1; prec <= 17; prec++) {
        k = snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    return k;
}

static const char *variant_value(const vitq_arch *a, int i, char *buf, size_t n) {
    switch (i) {
    case K_CLS: return snprintf(buf, n, "%s", a->no_class_token ? "false" : "true"), buf;
    case K_NOEMB: return snprintf(buf, n, "%s", a->no_embed_class ? "true" : "false"), buf;
    case K_INIT: return snprintf(buf, n, "%s", a->layerscale ? "set (LayerScale on; gammas from the file)" : "none"), buf;
    case K_POOL: return snprintf(buf, n, "%s", a->global_pool == VITQ_POOL_AVG ? "avg" : "token"), buf;
    case K_FCNORM: return snprintf(buf, n, "%s", a->fc_norm ? "true" : "false"), buf;
    case K_REPR: return snprintf(buf, n, "%d", a->representation_size), buf;
    case K_DIST: return snprintf(buf, n, "%s", a->distilled ? "true" : "false"), buf;
    }
    return buf;
}

const char *vitq_arch_value(const vitq_arch *a, int i, char *buf, size_t n) {
    const int *ints[VITQ_ARCH_NKEYS] = {
        [K_IMG] = &a->img_size,   [K_PATCH] = &a->patch_size, [K_CHANS] = &a->in_chans, [K_CLASSES] = &a->num_classes,
        [K_DIM] = &a->embed_dim,  [K_DEPTH] = &a->depth,      [K_HEADS] = &a->num_heads,
    };
    if (n) buf[0] = 0;
    if (i < 0 || i >= VITQ_ARCH_NKEYS) return buf;
    if (i >= K_CLS) return variant_value(a, i, buf, n);
    if (ints[i]) {
        snprintf(buf, n, "%d", *ints[i]);
    } else if (i == K_ARCH) {
        snprintf(buf, n, "%s", a->name);
    } else if (i == K_MLP) {
        fmt_float(buf, n, a->mlp_ratio);
    } else if (i == K_CROP) {
        fmt_double(buf, n, a->crop_pct);
    } else if (i == K_QKV) {
        snprintf(buf, n, "%s", a->qkv_bias ? "true" : "false");
    } else if (i == K_MEAN || i == K_STD) {
        const float *v = i == K_MEAN ? a->mean : a->std;
        size_t k = 0;
        for (int c = 0; c < a->in_chans && c < 3 && k < n; c++) {
            if (c) k += (size_t)snprintf(buf + k, n - k, ",");
            if (k < n) k += (size_t)fmt_float(buf + k, n - k, v[c]);
        }
    } else if (i == K_INTERP) {
        snprintf(buf, n, "%s", a->interpolation);
    }
    return buf;
}

int vitq_arch_key_saved(const vitq_arch *a, int i) {
    if (i < 0 || i >= VITQ_ARCH_NKEYS) return 0;
    switch (i) {
    case K_CLS: return a->no_class_token;
    case K_NOEMB: return a->no_embed_class;
    case K_INIT: return 0; /* the init value is not kept; the ls*.gamma tensors say LayerScale on reload */
    case K_POOL: return a->global_pool != VITQ_POOL_TOKEN;
    case K_FCNORM: return a->fc_norm || a->global_pool == VITQ_POOL_AVG; /* explicit: avg alone means fc_norm */
    case K_REPR: return a->representation_size > 0;
    case K_DIST: return a->distilled;
    }
    return 1;
}

/* --- strict parsing of metadata strings ------------------------------------------------------ */

static int bad_value(const char *file, const char *key, const char *what, const char *s, vitq_err *e) {
    return vitq_fail(e, VITQ_EFORMAT, "%s: __metadata__ '%s': expected %s, got '%.80s'", file, key, what, s);
}

/* Metadata values go through core's typed-value parser (the same integers, numbers and booleans as INI
 * values), plus: no surrounding spaces in a single value. */
static int parse_int(const char *file, const char *key, const char *s, int *out, vitq_err *e) {
    static const vitq_param p = {.type = VITQ_P_INT, .min = -2147483647.0, .max = 2147483647.0};
    vitq_value v;
    char why[128];
    if (isspace((unsigned char)*s) || vitq_value_parse(&p, s, &v, why, sizeof why))
        return bad_value(file, key, "an integer", s, e);
    *out = (int)v.i;
    return VITQ_OK;
}

/* One number (a list item, already trimmed). */
static int parse_double(const char *s, double *out) {
    static const vitq_param p = {.type = VITQ_P_FLOAT, .min = -FLT_MAX, .max = FLT_MAX};
    vitq_value v;
    char why[128];
    if (!*s || isspace((unsigned char)*s) || vitq_value_parse(&p, s, &v, why, sizeof why)) return -1;
    *out = v.f;
    return 0;
}

static int parse_float(const char *s, float *out) {
    double d;
    if (parse_double(s, &d)) return -1;
    *out = (float)d;
    return 0;
}

/* "a,b,c" with one value per channel, or one value for all. */
static int parse_channels(const char *file, const char *key, const char *s, int in_chans, float out[3],
                          vitq_err *e) {
    char **items = NULL;
    int n = 0, bad = vitq_list_split(s, ',', 0, &items, &n) != 0 || n > 3;
    float v[3] = {0};
    for (int i = 0; !bad && i < n; i++) bad = parse_float(items[i], &v[i]);
    vitq_strs_free(items, n);
    if (bad) {
        char what[96];
        snprintf(what, sizeof what, "%d comma-separated numbers (one per channel) or one number", in_chans);
        return bad_value(file, key, what, s, e);
    }
    if (n != 1 && n != in_chans)
        return vitq_fail(e, VITQ_EFORMAT, "%s: __metadata__ '%s': %d values for in_chans %d (give %d, or 1 for all)",
                         file, key, n, in_chans, in_chans);
    for (int c = 0; c < 3; c++) out[c] = v[n == 1 || c >= n ? 0 : c];
    return VITQ_OK;
}

/* Python's None as a metadata string (timm configs write it for an unset optional argument). */
static int is_none(const char *s) { return !*s || !strcmp(s, "none") || !strcmp(s, "None") || !strcmp(s, "null"); }

static int parse_bool(const char *file, const char *key, const char *s, int *out, vitq_err *e) {
    if (vitq_bool_parse(s, out)) return bad_value(file, key, "true/false, yes/no, on/off or 1/0", s, e);
    return VITQ_OK;
}

/* A variant key; *fc_set = 0 for fc_norm = None (timm: follow global_pool). */
static int parse_variant(const char *file, int k, const char *s, vitq_arch *a, int *fc_set, vitq_err *e) {
    const char *key = arch_keys[k];
    int b = 0, rc = VITQ_OK;
    double d;
    switch (k) {
    case K_CLS: rc = parse_bool(file, key, s, &b, e), a->no_class_token = !b; break;
    case K_NOEMB: rc = parse_bool(file, key, s, &a->no_embed_class, e); break;
    case K_DIST: rc = parse_bool(file, key, s, &a->distilled, e); break;
    case K_INIT: /* timm: LayerScale `if init_values` — None and 0 mean none; the gammas come from the file */
        if (is_none(s)) a->layerscale = 0;
        else if (parse_double(s, &d)) return bad_value(file, key, "a number or None", s, e);
        else a->layerscale = d != 0.0;
        break;
    case K_POOL:
        if (!strcmp(s, "token") || !strcmp(s, "avg")) a->global_pool = !strcmp(s, "avg") ? VITQ_POOL_AVG : VITQ_POOL_TOKEN;
        else if (!strcmp(s, "") || !strcmp(s, "avgmax") || !strcmp(s, "max") || !strcmp(s, "map") || !strcmp(s, "prr"))
            return vitq_fail(e, VITQ_EINVAL, "%s: __metadata__ 'global_pool' = '%s': a timm pooling vitq does not support "
                             "(vitq supports token and avg)", file, s);
        else return bad_value(file, key, "token or avg", s, e);
        break;
    case K_FCNORM:
        *fc_set = !is_none(s);
        if (*fc_set) rc = parse_bool(file, key, s, &a->fc_norm, e);
        break;
    case K_REPR:
        if (is_none(s)) a->representation_size = 0;
        else if ((rc = parse_int(file, key, s, &a->representation_size, e)) == 0 && a->representation_size < 0)
            return bad_value(file, key, "a non-negative integer or None", s, e);
        break;
    }
    return rc;
}

static int parse_field(const char *file, int k, const char *s, vitq_arch *a, vitq_err *e) {
    const char *key = arch_keys[k];
    int *ints[VITQ_ARCH_NKEYS] = {
        [K_IMG] = &a->img_size,   [K_PATCH] = &a->patch_size, [K_CHANS] = &a->in_chans, [K_CLASSES] = &a->num_classes,
        [K_DIM] = &a->embed_dim,  [K_DEPTH] = &a->depth,      [K_HEADS] = &a->num_heads,
    };
    if (ints[k]) return parse_int(file, key, s, ints[k], e);
    switch (k) {
    case K_ARCH:
        if (!*s || strlen(s) >= sizeof a->name) return bad_value(file, key, "a name of 1 to 63 bytes", s, e);
        snprintf(a->name, sizeof a->name, "%s", s);
        return VITQ_OK;
    case K_MLP:
        if (parse_float(s, &a->mlp_ratio)) return bad_value(file, key, "a number", s, e);
        return VITQ_OK;
    case K_CROP: /* a double, as timm's Python float */
        if (parse_double(s, &a->crop_pct)) return bad_value(file, key, "a number", s, e);
        return VITQ_OK;
    case K_QKV: return parse_bool(file, key, s, &a->qkv_bias, e);
    case K_MEAN:
    case K_STD:
        return parse_channels(file, key, s, a->in_chans, k == K_MEAN ? a->mean : a->std, e);
    case K_INTERP:
        if (strcmp(s, "bicubic") && strcmp(s, "bilinear")) return bad_value(file, key, "bicubic or bilinear", s, e);
        snprintf(a->interpolation, sizeof a->interpolation, "%s", s);
        return VITQ_OK;
    }
    return VITQ_OK;
}

/* Every metadata key naming a timm argument vitq does not implement: accepted at timm's default only. */
static int check_unsupported(const vitq_st_file *f, vitq_err *e) {
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
        if (!strcmp(key, arch_keys[k])) return 1;
    for (size_t i = 0; i < sizeof default_only / sizeof default_only[0]; i++)
        if (!strcmp(key, default_only[i].key)) return 1;
    for (size_t i = 0; i < sizeof train_only / sizeof train_only[0]; i++)
        if (!strcmp(key, train_only[i])) return 1;
    return 0;
}

/* The variants the tensor names say, for the fields nothing else gave (given[k] = 0). */
static void infer_variants(const vitq_st_file *f, vitq_arch *a, const int *given, vitq_arch_origin *org) {
    const char *names = "tensor names";
    const vitq_st_tensor *pre = vitq_st_find(f, "pre_logits.fc.weight"), *pos = vitq_st_find(f, "pos_embed");
    int fc_names = vitq_st_find(f, "fc_norm.weight") && !vitq_st_find(f, "norm.weight");
    if (!given[K_INIT] && vitq_st_find(f, "blocks.0.ls1.gamma")) a->layerscale = 1, org->from[K_INIT] = names;
    if (!given[K_CLS] && !vitq_st_find(f, "cls_token")) a->no_class_token = 1, org->from[K_CLS] = names;
    if (!given[K_DIST] && (vitq_st_find(f, "dist_token") || vitq_st_find(f, "head_dist.weight")))
        a->distilled = 1, org->from[K_DIST] = names;
    if (!given[K_REPR] && pre && pre->ndim == 2 && pre->shape[0] > 0 && pre->shape[0] < INT32_MAX)
        a->representation_size = (int)pre->shape[0], org->from[K_REPR] = names;
    if (!given[K_FCNORM] && !given[K_POOL] && fc_names) a->fc_norm = 1, org->from[K_FCNORM] = names;
    /* timm: fc_norm = None -> use_fc_norm = (global_pool == 'avg'); no class token -> pooling must be avg */
    if (!given[K_POOL] && (a->no_class_token || (a->fc_norm && !given[K_FCNORM])))
        a->global_pool = VITQ_POOL_AVG, org->from[K_POOL] = names;
    int g = a->patch_size > 0 ? a->img_size / a->patch_size : 0;
    if (!given[K_NOEMB] && pos && pos->ndim == 3 && vitq_arch_prefix(a) > 0 && pos->shape[1] == (int64_t)g * g)
        a->no_embed_class = 1, org->from[K_NOEMB] = names;
}

static void builtin_list(char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; vitq_arch_builtin_name(i) && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%s", i ? ", " : "", vitq_arch_builtin_name(i));
}

/* The base: the built-in entry named by --arch or by the metadata's `arch` key, or timm's defaults. */
static int arch_base(const vitq_st_file *f, const char *arch_name, vitq_arch *a, vitq_arch_origin *org, vitq_err *e) {
    *a = timm_defaults;
    const char *base = arch_name && *arch_name ? arch_name : NULL;
    const char *meta_arch = vitq_st_meta(f, "arch");
    if (!base && meta_arch) {
        vitq_arch probe;
        if (vitq_arch_builtin(meta_arch, &probe, NULL) == VITQ_OK) base = meta_arch;
    }
    if (base) {
        int rc = vitq_arch_builtin(base, a, e);
        if (rc) return rc;
        snprintf(org->builtin, sizeof org->builtin, "%s", base);
        return VITQ_OK;
    }
    int has_struct = 0;
    for (int k = K_IMG; k <= K_HEADS; k++) has_struct |= vitq_st_meta(f, arch_keys[k]) != NULL;
    if (!has_struct) {
        char list[1024];
        builtin_list(list, sizeof list);
        return vitq_fail(e, VITQ_EINVAL, "%s: no architecture in __metadata__; pass --arch NAME (one of %s)",
                         f->path, list);
    }
    return VITQ_OK;
}

int vitq_arch_from_st(const vitq_st_file *f, const char *arch_name, vitq_arch *out, vitq_arch_origin *origin,
                      vitq_err *e) {
    vitq_arch_origin org_local;
    vitq_arch_origin *org = origin ? origin : &org_local;
    memset(org, 0, sizeof *org);
    vitq_arch a;
    int rc = arch_base(f, arch_name, &a, org, e);
    if (rc) return rc;
    const int builtin = org->builtin[0] != 0;
    int given[VITQ_ARCH_NKEYS] = {0}, fc_set = 1;
    for (int k = 0; k < VITQ_ARCH_NKEYS; k++) {
        const char *s = vitq_st_meta(f, arch_keys[k]);
        given[k] = s != NULL;
        org->from[k] = s ? "metadata" : builtin ? "built-in" : "default";
        if (!s && !builtin && k >= K_IMG && k <= K_HEADS)
            return vitq_fail(e, VITQ_EINVAL, "%s: __metadata__ has no '%s' (needed unless the architecture is a "
                             "built-in one; or pass --arch NAME)", f->path, arch_keys[k]);
        if (s && (rc = k >= K_CLS ? parse_variant(f->path, k, s, &a, &fc_set, e) : parse_field(f->path, k, s, &a, e)))
            return rc;
    }
    if ((rc = check_unsupported(f, e))) return rc;
    if (given[K_FCNORM] && !fc_set) given[K_FCNORM] = 0; /* fc_norm = None: as absent */
    if (!builtin) infer_variants(f, &a, given, org);
    if (!given[K_FCNORM] && given[K_POOL]) { /* timm: use_fc_norm = global_pool == 'avg' when fc_norm is None */
        a.fc_norm = a.global_pool == VITQ_POOL_AVG;
        org->from[K_FCNORM] = "global_pool";
    }
    if (a.in_chans == 1) /* canonical: the unused channels repeat channel 0 */
        for (int c = 1; c < 3; c++) a.mean[c] = a.mean[0], a.std[c] = a.std[0];
    if ((rc = vitq_arch_validate(&a, f->path, e))) return rc;
    *out = a;
    return VITQ_OK;
}
