/* model_io.c — a checkpoint <-> vitq_model: the architecture (ViT/DeiT: model_meta.c: `__metadata__`, the
 * built-in table, the tensor names; Swin: swin_io.c), the family's own checks of the file (Swin's old
 * buffers), every tensor of the file used by the model or the load refused naming it (model_check.c), then
 * every row of the model's parameter table read by its timm name, converted to float32 and checked for
 * NaN/Inf. The model keeps the file's SHA-256 (the key results are stored under). The base keys are parsed
 * here (Swin's shared ones too, vitq_arch_meta_parse), the timm variants and the timm arguments vitq refuses
 * in model_meta.c. Saving writes every row as F32 with the architecture (the family's keys) and mlp_act in
 * `__metadata__`, so load(save(m)) gives back the same model bit for bit.
 *
 * Does not: rename foreign parameter names (a timm state_dict loads as it is), or resize pos_embed for
 * another img_size. */
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
    K_VARIANT, /* the variants (model_meta.c) from here: VITQ_ARCH_NBASE */
};

static const char *const arch_keys[VITQ_ARCH_NKEYS] = {
    [K_ARCH] = "arch",           [K_IMG] = "img_size",     [K_PATCH] = "patch_size", [K_CHANS] = "in_chans",
    [K_CLASSES] = "num_classes", [K_DIM] = "embed_dim",    [K_DEPTH] = "depth",      [K_HEADS] = "num_heads",
    [K_MLP] = "mlp_ratio",       [K_QKV] = "qkv_bias",     [K_MEAN] = "mean",        [K_STD] = "std",
    [K_CROP] = "crop_pct",       [K_INTERP] = "interpolation",
    [K_VARIANT] = "class_token", "no_embed_class", "init_values", "global_pool", "fc_norm", "representation_size",
    "distilled",
};

/* timm's VisionTransformer defaults, and resolve_data_config's fallbacks for the data config (timm
 * data/config.py: IMAGENET_DEFAULT_MEAN/STD, DEFAULT_CROP_PCT 0.875, bicubic), for fields neither metadata
 * nor --arch give. */
static const vitq_arch timm_defaults = {
    .name = "custom", .mlp_ratio = 4.0f, .qkv_bias = 1, .mean = {0.485f, 0.456f, 0.406f},
    .std = {0.229f, 0.224f, 0.225f}, .crop_pct = 0.875, .interpolation = "bicubic",
};

const char *vitq_arch_key(int i) { return i >= 0 && i < VITQ_ARCH_NKEYS ? arch_keys[i] : NULL; }

/* Shortest "%g" text that reads back as exactly v. */
static int fmt_float(char *buf, size_t n, float v) {
    int k = 0;
    for (int prec = 1; prec <= 9; prec++) {
        k = snprintf(buf, n, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    return k;
}

/* The same for a double (crop_pct, timm's Python float). */
static int fmt_double(char *buf, size_t n, double v) {
    int k = 0;
    for (int prec = 1; prec <= 17; prec++) {
        k = snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    return k;
}

const char *vitq_arch_value(const vitq_arch *a, int i, char *buf, size_t n) {
    const int *ints[VITQ_ARCH_NKEYS] = {
        [K_IMG] = &a->img_size,   [K_PATCH] = &a->patch_size, [K_CHANS] = &a->in_chans, [K_CLASSES] = &a->num_classes,
        [K_DIM] = &a->embed_dim,  [K_DEPTH] = &a->depth,      [K_HEADS] = &a->num_heads,
    };
    if (n) buf[0] = 0;
    if (i < 0 || i >= VITQ_ARCH_NKEYS) return buf;
    if (i >= K_VARIANT) return vitq_vit_variant_value(a, i - K_VARIANT, buf, n);
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

/* One number (a list item, already trimmed), as a double (crop_pct) or a float. */
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
    case K_QKV:
        if (vitq_bool_parse(s, &a->qkv_bias)) return bad_value(file, key, "true/false, yes/no, on/off or 1/0", s, e);
        return VITQ_OK;
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

int vitq_arch_meta_parse(const char *file, const char *key, const char *value, vitq_arch *a, vitq_err *e) {
    for (int k = 0; k < VITQ_ARCH_NBASE; k++)
        if (!strcmp(arch_keys[k], key)) return parse_field(file, k, value, a, e);
    return vitq_fail(e, VITQ_EINVAL, "%s: __metadata__ '%s': not an architecture key", file, key);
}

static void builtin_list(char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; vitq_arch_builtin_name(i) && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%s", i ? ", " : "", vitq_arch_builtin_name(i));
}

/* An architecture asked for (--arch, [model] arch) that is not the one the file's __metadata__ names (its
 * name, or its name with a timm pretrained tag: "vit_base_patch16_224.augreg_in1k") would be overridden by
 * the metadata key by key, silently: refused. A file without an `arch` key, or with a family's generic one
 * ("custom", "swin": no named architecture, the keys describe it), takes the one asked for. */
static int check_asked_arch(const vitq_st_file *f, const char *asked, vitq_err *e) {
    const char *meta = vitq_st_meta(f, "arch");
    size_t n = asked ? strlen(asked) : 0;
    if (!n || !meta || !strcmp(meta, timm_defaults.name) || !strcmp(meta, "swin")) return VITQ_OK;
    if (!strncmp(meta, asked, n) && (meta[n] == 0 || meta[n] == '.')) return VITQ_OK;
    return vitq_fail(e, VITQ_EINVAL, "%s: architecture %s asked for, but the file's __metadata__ names its own, "
                     "'%s' (leave the architecture out to use the file's)", f->path, asked, meta);
}

int vitq_arch_from_st(const vitq_st_file *f, const char *arch_name, vitq_arch *out, vitq_arch_origin *origin,
                      vitq_err *e) {
    int rc0 = check_asked_arch(f, arch_name, e);
    if (rc0) return rc0;
    if (vitq_swin_arch_wanted(f, arch_name)) return vitq_swin_arch_from_st(f, arch_name, out, origin, e);
    vitq_arch_origin org_local;
    vitq_arch_origin *org = origin ? origin : &org_local;
    memset(org, 0, sizeof *org);
    vitq_arch a = timm_defaults;
    const char *base = arch_name && *arch_name ? arch_name : NULL;
    const char *meta_arch = vitq_st_meta(f, "arch");
    if (!base && meta_arch) {
        vitq_arch probe;
        if (vitq_arch_builtin(meta_arch, &probe, NULL) == VITQ_OK) base = meta_arch;
    }
    if (base) {
        int rc = vitq_arch_builtin(base, &a, e);
        if (rc) return rc;
        snprintf(org->builtin, sizeof org->builtin, "%s", base);
    }
    int has_struct = 0;
    for (int k = K_IMG; k <= K_HEADS; k++) has_struct |= vitq_st_meta(f, arch_keys[k]) != NULL;
    if (!base && !has_struct) {
        char list[1024];
        builtin_list(list, sizeof list);
        return vitq_fail(e, VITQ_EINVAL, "%s: no architecture in __metadata__; pass --arch NAME (one of %s)",
                         f->path, list);
    }
    int given[VITQ_ARCH_NKEYS] = {0};
    for (int k = 0; k < VITQ_ARCH_NKEYS; k++) {
        const char *s = vitq_st_meta(f, arch_keys[k]);
        given[k] = s != NULL;
        org->from[k] = s ? "metadata" : base ? "built-in" : "default";
        if (s) {
            int rc = k >= K_VARIANT ? vitq_vit_variant_parse(f->path, k - K_VARIANT, s, &a, &given[k], e)
                                    : parse_field(f->path, k, s, &a, e);
            if (rc) return rc;
        } else if (!base && k >= K_IMG && k <= K_HEADS) {
            return vitq_fail(e, VITQ_EINVAL, "%s: __metadata__ has no '%s' (needed unless the architecture is a "
                             "built-in one; or pass --arch NAME)", f->path, arch_keys[k]);
        }
    }
    int rc = vitq_arch_check_unsupported(f, e); /* timm arguments vitq implements at their default only */
    if (rc) return rc;
    vitq_vit_variants_resolve(f, &a, !base, given + K_VARIANT, org->from + K_VARIANT);
    if (a.in_chans == 1) /* canonical: the unused channels repeat channel 0 */
        for (int c = 1; c < 3; c++) a.mean[c] = a.mean[0], a.std[c] = a.std[0];
    rc = vitq_arch_validate(&a, f->path, e);
    if (rc) return rc;
    *out = a;
    return VITQ_OK;
}

int vitq_mlp_act_parse(const char *s, int depth, vitq_act_kind *out, const char *what, vitq_err *e) {
    char **items = NULL;
    int n = 0, bad = vitq_list_split(s, ',', 0, &items, &n) != 0;
    for (int i = 0; !bad && i < n; i++) {
        vitq_act_kind k = !strcasecmp(items[i], "gelu") ? VITQ_ACT_GELU : VITQ_ACT_RELU;
        bad = strcasecmp(items[i], "gelu") && strcasecmp(items[i], "relu");
        if (i < depth) out[i] = k;
    }
    vitq_strs_free(items, n);
    if (bad)
        return vitq_fail(e, VITQ_EFORMAT, "%s: mlp_act: expected gelu or relu (or a comma list of %d), got '%.80s'",
                         what, depth, s);
    if (n == 1)
        for (int l = 1; l < depth; l++) out[l] = out[0];
    else if (n != depth)
        return vitq_fail(e, VITQ_EFORMAT, "%s: mlp_act: %d values for depth %d (give %d, or 1 for all blocks)", what, n,
                         depth, depth);
    return VITQ_OK;
}

int vitq_model_load_st(const vitq_st_file *f, const char *arch_name, vitq_model **out, vitq_err *e) {
    *out = NULL;
    vitq_arch a;
    int rc = vitq_arch_from_st(f, arch_name, &a, NULL, e);
    if (rc) return rc;
    vitq_model *m = NULL;
    rc = vitq_model_create(&a, &m, e);
    if (rc) return rc;
    snprintf(m->source, sizeof m->source, "%s", f->path);
    char what[600];
    snprintf(what, sizeof what, "%s: __metadata__", f->path);
    snprintf(m->sha256, sizeof m->sha256, "%s", f->sha256);
    const char *acts = vitq_st_meta(f, "mlp_act");
    if (acts && (rc = vitq_mlp_act_parse(acts, a.depth, m->mlp_act, what, e))) goto fail;
    /* the family's own checks first (Swin: old buffers verified by value, the original layout refused by
     * name), then every tensor used (the buffers the family reads pass through its uses_tensor) */
    if (m->fam->checkpoint && (rc = m->fam->checkpoint(m, f, e))) goto fail;
    if ((rc = vitq_model_check_tensors(f, m, e))) goto fail;
    for (int i = 0; i < m->n_table; i++) {
        const vitq_tensor_ref *r = &m->table[i];
        rc = vitq_st_read_f32(f, r->name, r->data, r->ndim, r->shape, e);
        if (rc) {
            /* The usual cause is an architecture that does not match the file: say which one was used. */
            size_t k = strlen(e ? e->msg : "");
            if (e && k + 1 < sizeof e->msg)
                snprintf(e->msg + k, sizeof e->msg - k, "; the architecture used was %s (embed_dim %d, "
                         "depth %d, qkv_bias %s)", a.name, a.embed_dim, a.depth,
                         a.qkv_bias ? "true" : "false");
            goto fail;
        }
        int64_t bad = 0, first = -1;
        for (int64_t j = 0; j < r->numel; j++)
            if (!isfinite(r->data[j])) bad++, first = first < 0 ? j : first;
        if (bad) {
            rc = vitq_fail(e, VITQ_EFORMAT, "%s: tensor '%s' holds %lld non-finite values (first: %s at flat index %lld)",
                           f->path, r->name, (long long)bad, isnan(r->data[first]) ? "NaN" : "Inf", (long long)first);
            goto fail;
        }
    }
    *out = m;
    return VITQ_OK;
fail:
    vitq_model_free(m);
    return rc;
}

int vitq_model_load(const char *path, const char *arch_name, vitq_model **out, vitq_err *e) {
    *out = NULL;
    vitq_st_file *f = NULL;
    int rc = vitq_st_open(path, &f, e);
    if (rc) return rc;
    rc = vitq_model_load_st(f, arch_name, out, e);
    vitq_st_close(f);
    return rc;
}

int vitq_model_save(const vitq_model *m, const char *path, const char *const *extra_keys,
                    const char *const *extra_vals, int n_extra, vitq_err *e) {
    if (n_extra < 0) n_extra = 0;
    const int nk = vitq_arch_nkeys(&m->arch);
    int n_meta = nk + 1 + n_extra, depth = m->arch.depth, rc = VITQ_OK;
    const char **keys = calloc((size_t)n_meta, sizeof *keys);
    const char **vals = calloc((size_t)n_meta, sizeof *vals);
    char(*text)[96] = calloc(VITQ_ARCH_MAXKEYS, sizeof *text);
    char *acts = calloc((size_t)depth * 5 + 8, 1);
    vitq_st_entry *t = calloc((size_t)m->n_table + 1, sizeof *t);
    if (!keys || !vals || !text || !acts || !t) {
        rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    int n = 0;
    for (int k = 0; k < nk; k++) {
        if (!vitq_arch_key_saved(&m->arch, k)) continue;
        keys[n] = vitq_arch_key_of(&m->arch, k);
        vals[n++] = vitq_arch_value_of(&m->arch, k, text[k], sizeof text[k]);
    }
    int uniform = 1;
    for (int l = 1; l < depth; l++) uniform &= m->mlp_act[l] == m->mlp_act[0];
    for (int l = 0; l < (uniform ? 1 : depth); l++)
        strcat(strcat(acts, l ? "," : ""), m->mlp_act[l] == VITQ_ACT_RELU ? "relu" : "gelu");
    keys[n] = "mlp_act";
    vals[n++] = acts;
    for (int i = 0; i < n_extra; i++) {
        int arch_key = !strcmp(extra_keys[i], "mlp_act") || vitq_arch_is_timm_key(extra_keys[i]);
        for (int k = 0; k < nk && !arch_key; k++) arch_key = !strcmp(extra_keys[i], vitq_arch_key_of(&m->arch, k));
        if (arch_key) {
            rc = vitq_fail(e, VITQ_EINVAL, "%s: extra metadata key '%s' is an architecture key", path, extra_keys[i]);
            goto done;
        }
        keys[n] = extra_keys[i];
        vals[n++] = extra_vals[i];
    }
    n_meta = n;
    for (int i = 0; i < m->n_table; i++) {
        const vitq_tensor_ref *r = &m->table[i];
        t[i] = (vitq_st_entry){.name = r->name, .data = r->data, .ndim = r->ndim};
        memcpy(t[i].shape, r->shape, sizeof r->shape);
    }
    rc = vitq_st_write(path, t, m->n_table, keys, vals, n_meta, e);
done:
    free(keys);
    free(vals);
    free(text);
    free(acts);
    free(t);
    return rc;
}
