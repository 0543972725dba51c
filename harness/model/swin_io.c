/* swin_io.c — a Swin checkpoint's architecture and the tensors that are not parameters.
 *
 * Architecture: `__metadata__` with `arch = swin` (or a built-in Swin name, or `--arch` one) and timm's
 * SwinTransformer argument names: img_size, patch_size, in_chans, num_classes, embed_dim, depths and
 * num_heads (comma lists, one value per stage), window_size, mlp_ratio, qkv_bias, plus mean, std, crop_pct,
 * interpolation. Fields present in the metadata win over the built-in entry; without one, the eight
 * structural keys (img_size .. window_size) are required and the rest take timm's defaults (mlp_ratio 4,
 * qkv_bias true, ImageNet mean/std, crop_pct 0.9, bicubic). The keys ViT has too are parsed by model_io.c
 * (one vocabulary, one message format).
 *
 * Buffers (SWIN_NOTES.md section 10): timm 0.9 saves neither relative_position_index nor attn_mask; files
 * saved by timm <= 0.8 carry `layers.S.blocks.I.attn.relative_position_index` (I64, (N, N)) and, for shifted
 * blocks, `layers.S.blocks.I.attn_mask` (float, (nW, N, N)). They are accepted and VERIFIED against what
 * vitq computes (a mismatch means another window rule or layout, refused by name), never used
 * (vitq_swin_uses_tensor declares them to model_check.c's every-tensor-used check). A file in
 * the original Microsoft / timm <= 0.5 layout (downsample at the end of a stage, `head.weight`) is refused
 * with the way to convert it. */
#include "model/model.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

int vitq_swin_arch_wanted(const vitq_st_file *f, const char *arch_name) {
    vitq_arch probe;
    if (arch_name && *arch_name) return vitq_swin_arch_builtin(arch_name, &probe) == VITQ_OK;
    const char *meta = vitq_st_meta(f, "arch");
    if (meta) return !strcmp(meta, "swin") || vitq_swin_arch_builtin(meta, &probe) == VITQ_OK;
    return vitq_st_meta(f, "depths") != NULL;
}

static int bad_value(const char *file, const char *key, const char *what, const char *s, vitq_err *e) {
    return vitq_fail(e, VITQ_EFORMAT, "%s: __metadata__ '%s': expected %s, got '%.80s'", file, key, what, s);
}

static int parse_int(const char *s, int *out) {
    static const vitq_param p = {.type = VITQ_P_INT, .min = -2147483647.0, .max = 2147483647.0};
    vitq_value v;
    char why[128];
    if (!*s || isspace((unsigned char)*s) || vitq_value_parse(&p, s, &v, why, sizeof why)) return -1;
    *out = (int)v.i;
    return 0;
}

/* "2,2,6,2" -> v[], *n (1 .. VITQ_SWIN_MAX_STAGES values). */
static int parse_list(const char *file, const char *key, const char *s, int *v, int *n, vitq_err *e) {
    char **items = NULL;
    int k = 0, bad = vitq_list_split(s, ',', 0, &items, &k) != 0 || k < 1 || k > VITQ_SWIN_MAX_STAGES;
    for (int i = 0; !bad && i < k; i++) bad = parse_int(items[i], &v[i]);
    vitq_strs_free(items, k);
    if (bad) return bad_value(file, key, "a comma-separated list of 1 to 8 integers, one per stage", s, e);
    *n = k;
    return VITQ_OK;
}

static int parse_key(const vitq_st_file *f, int k, const char *s, vitq_arch *a, int *n_heads, vitq_err *e) {
    const char *key = vitq_swin_key(k);
    if (!strcmp(key, "depths")) return parse_list(f->path, key, s, a->depths, &a->n_stages, e);
    if (!strcmp(key, "num_heads")) return parse_list(f->path, key, s, a->stage_heads, n_heads, e);
    if (!strcmp(key, "window_size"))
        return parse_int(s, &a->window_size) ? bad_value(f->path, key, "an integer", s, e) : VITQ_OK;
    return vitq_arch_meta_parse(f->path, key, s, a, e);
}

/* Fields from the built-in entry (if any), then every metadata key present. */
static int read_keys(const vitq_st_file *f, const char *base, vitq_arch *a, vitq_arch_origin *org, vitq_err *e) {
    int n_heads = a->n_stages, rc;
    for (int k = 0; k < vitq_swin_nkeys(); k++) {
        const char *key = vitq_swin_key(k), *s = vitq_st_meta(f, key);
        org->from[k] = s ? "metadata" : base ? "built-in" : "default";
        const int structural = k >= 1 && k <= 8; /* img_size .. window_size */
        if (!s && !base && structural)
            return vitq_fail(e, VITQ_EINVAL, "%s: __metadata__ has no '%s' (needed for arch = swin unless the "
                             "architecture is a built-in one; or pass --arch NAME)", f->path, key);
        if (s && (rc = parse_key(f, k, s, a, &n_heads, e))) return rc;
    }
    if (n_heads != a->n_stages)
        return vitq_fail(e, VITQ_EFORMAT, "%s: __metadata__ 'num_heads': %d values for %d stages (one per entry of "
                         "depths)", f->path, n_heads, a->n_stages);
    return VITQ_OK;
}

int vitq_swin_arch_from_st(const vitq_st_file *f, const char *arch_name, vitq_arch *out, vitq_arch_origin *origin,
                           vitq_err *e) {
    vitq_arch_origin org_local;
    vitq_arch_origin *org = origin ? origin : &org_local;
    memset(org, 0, sizeof *org);
    vitq_arch a = {.family = VITQ_FAMILY_SWIN, .name = "swin", .mlp_ratio = 4.0f, .qkv_bias = 1,
                   .mean = {0.485f, 0.456f, 0.406f}, .std = {0.229f, 0.224f, 0.225f}, .crop_pct = 0.9,
                   .interpolation = "bicubic"};
    const char *base = arch_name && *arch_name ? arch_name : vitq_st_meta(f, "arch");
    if (base && vitq_swin_arch_builtin(base, &a) == VITQ_OK) snprintf(org->builtin, sizeof org->builtin, "%s", base);
    else base = NULL;
    int rc = read_keys(f, base, &a, org, e);
    if (rc) return rc;
    a.depth = 0;
    for (int s = 0; s < a.n_stages; s++) a.depth += a.depths[s];
    a.num_heads = a.stage_heads[0];
    if (a.in_chans == 1) /* canonical: the unused channels repeat channel 0 */
        for (int c = 1; c < 3; c++) a.mean[c] = a.mean[0], a.std[c] = a.std[0];
    if ((rc = vitq_arch_validate(&a, f->path, e))) return rc;
    *out = a;
    return VITQ_OK;
}

/* ---- old checkpoints' buffers -------------------------------------------------------------------------- */

/* If the file has tensor `name`, it must have shape (ndim, shape) and hold exactly want[0 .. n). */
static int verify(const vitq_st_file *f, const char *name, const float *want, const int32_t *want_i, int ndim,
                  const int64_t *shape, const char *what, vitq_err *e) {
    if (!vitq_st_find(f, name)) return VITQ_OK;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    float *got = malloc(sizeof(float) * (size_t)n);
    if (!got) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    int rc = vitq_st_read_f32(f, name, got, ndim, shape, e);
    for (int64_t i = 0; !rc && i < n; i++) {
        const float w = want ? want[i] : (float)want_i[i];
        if (got[i] != w)
            rc = vitq_fail(e, VITQ_EFORMAT, "%s: tensor '%s' differs from the %s vitq computes at flat index %lld (file "
                           "%g, computed %g): a checkpoint of another window rule or layout", f->path, name, what,
                           (long long)i, (double)got[i], (double)w);
    }
    free(got);
    return rc;
}

int vitq_swin_checkpoint(const vitq_model *m, const vitq_st_file *f, vitq_err *e) {
    if (!vitq_st_find(f, "head.fc.weight") && vitq_st_find(f, "head.weight"))
        return vitq_fail(e, VITQ_EFORMAT, "%s: has 'head.weight' and no 'head.fc.weight': a Swin checkpoint in the "
                         "original (Microsoft / timm <= 0.5) layout, with patch merging at the end of each stage; "
                         "load it in timm 0.9 (its checkpoint_filter_fn renames it) and save model.state_dict()",
                         f->path);
    const vitq_swin_layout *l = vitq_swin_p(m)->lay;
    char name[128];
    int rc = VITQ_OK;
    for (int b = 0; !rc && b < l->n_blocks; b++) {
        const vitq_swin_block_geom *g = &l->blk[b];
        const int64_t rs[2] = {g->N, g->N}, ms[3] = {g->nw, g->N, g->N};
        snprintf(name, sizeof name, "layers.%d.blocks.%d.attn.relative_position_index", g->stage, g->index);
        rc = verify(f, name, NULL, g->rpi, 2, rs, "relative position index", e);
        snprintf(name, sizeof name, "layers.%d.blocks.%d.attn_mask", g->stage, g->index);
        if (!rc && !g->shift && vitq_st_find(f, name))
            rc = vitq_fail(e, VITQ_EFORMAT, "%s: tensor '%s': a shift mask for a block that timm's window rule does "
                           "not shift (stage side %d, window %d)", f->path, name, g->res, l->window);
        if (!rc && g->shift) rc = verify(f, name, g->mask, NULL, 3, ms, "shift mask", e);
    }
    return rc;
}

/* The buffers vitq_swin_checkpoint verifies: relative_position_index at every block, attn_mask at the shifted
 * ones (a mask at an unshifted block is refused by the hook before the every-tensor-used check runs). */
int vitq_swin_uses_tensor(const vitq_model *m, const char *name) {
    const vitq_swin_layout *l = vitq_swin_p(m)->lay;
    char want[128];
    if (strncmp(name, "layers.", 7)) return 0;
    for (int b = 0; b < l->n_blocks; b++) {
        const vitq_swin_block_geom *g = &l->blk[b];
        snprintf(want, sizeof want, "layers.%d.blocks.%d.attn.relative_position_index", g->stage, g->index);
        if (!strcmp(name, want)) return 1;
        snprintf(want, sizeof want, "layers.%d.blocks.%d.attn_mask", g->stage, g->index);
        if (g->shift && !strcmp(name, want)) return 1;
    }
    return 0;
}
