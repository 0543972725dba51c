/* model_io.c — a ViT/DeiT checkpoint <-> vitq_model: the architecture (model_meta.c: `__metadata__`, the
 * built-in table, the tensor names), every tensor of the file used by the model or the load refused naming
 * it (model_check.c), then every row of the model's parameter table read by its timm name, converted to
 * float32 and checked for NaN/Inf. The model keeps the file's SHA-256 (the key results are stored under).
 * Saving writes every row as F32 with the architecture (and mlp_act) in `__metadata__`, so
 * load(save(m)) gives back the same model bit for bit.
 *
 * Does not: rename foreign parameter names (a timm state_dict loads as it is), or resize pos_embed for
 * another img_size. */
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
    int n_meta = VITQ_ARCH_NKEYS + 1 + n_extra, depth = m->arch.depth, rc = VITQ_OK;
    const char **keys = calloc((size_t)n_meta, sizeof *keys);
    const char **vals = calloc((size_t)n_meta, sizeof *vals);
    char(*text)[96] = calloc(VITQ_ARCH_NKEYS, sizeof *text);
    char *acts = calloc((size_t)depth * 5 + 8, 1);
    vitq_st_entry *t = calloc((size_t)m->n_table + 1, sizeof *t);
    if (!keys || !vals || !text || !acts || !t) {
        rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    int nk = 0;
    for (int k = 0; k < VITQ_ARCH_NKEYS; k++) {
        if (!vitq_arch_key_saved(&m->arch, k)) continue;
        keys[nk] = vitq_arch_key(k);
        vals[nk++] = vitq_arch_value(&m->arch, k, text[k], sizeof text[k]);
    }
    int uniform = 1;
    for (int l = 1; l < depth; l++) uniform &= m->mlp_act[l] == m->mlp_act[0];
    for (int l = 0; l < (uniform ? 1 : depth); l++)
        strcat(strcat(acts, l ? "," : ""), m->mlp_act[l] == VITQ_ACT_RELU ? "relu" : "gelu");
    keys[nk] = "mlp_act";
    vals[nk++] = acts;
    for (int i = 0; i < n_extra; i++) {
        if (!strcmp(extra_keys[i], "mlp_act") || vitq_arch_is_timm_key(extra_keys[i])) {
            rc = vitq_fail(e, VITQ_EINVAL, "%s: extra metadata key '%s' is an architecture key", path, extra_keys[i]);
            goto done;
        }
        keys[nk] = extra_keys[i];
        vals[nk++] = extra_vals[i];
    }
    n_meta = nk;
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
