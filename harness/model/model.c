/* model.c — a model's parameters as one slab plus a table of (timm name, pointer, shape, weight tap)
 * rows. The table drives loading, saving, `vitq inspect`, the optimiser and weight taps; the rows come
 * from the architecture's family (vit_params.c for ViT/DeiT), written once there. On creation the
 * activation taps (taps.c) and the units (the family's) are built too. */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

int vitq_model_create(const vitq_arch *arch, vitq_model **out, vitq_err *e) {
    *out = NULL;
    int rc = vitq_arch_validate(arch, arch->name, e);
    if (rc) return rc;
    const vitq_family *f = vitq_family_of(arch);
    if (!f) return vitq_fail(e, VITQ_EINVAL, "%s: unknown architecture family %d", arch->name, arch->family);
    vitq_model *m = calloc(1, sizeof *m);
    if (!m) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    m->arch = *arch;
    m->fam = f;
    m->n_blocks = f->n_blocks(arch);
    if ((m->n_table = f->params(m, 0, NULL, &m->n_params, e)) < 0) {
        vitq_model_free(m);
        return VITQ_ENOMEM;
    }
    m->slab = vitq_alloc((size_t)m->n_params * sizeof(float));
    m->table = calloc((size_t)m->n_table, sizeof *m->table);
    m->mlp_act = calloc((size_t)m->n_blocks, sizeof *m->mlp_act);
    if (!m->slab || !m->table || !m->mlp_act) {
        vitq_model_free(m);
        return vitq_fail(e, VITQ_ENOMEM, "out of memory allocating %lld parameters", (long long)m->n_params);
    }
    if (f->params(m, 0, m->table, NULL, e) < 0 || (rc = vitq_taps_build(m, e)) || (rc = f->units(m, e))) {
        vitq_model_free(m);
        return rc ? rc : VITQ_ENOMEM;
    }
    *out = m;
    return VITQ_OK;
}

void vitq_model_free(vitq_model *m) {
    if (!m) return;
    if (m->fam) m->fam->params_free(m);
    vitq_free(m->slab);
    vitq_free(m->grad_slab);
    free(m->table);
    free(m->mlp_act);
    free(m->taps);
    free(m->tap_at);
    free(m->units);
    free(m);
}

int vitq_model_alloc_grads(vitq_model *m, vitq_err *e) {
    if (m->grad_slab) return VITQ_OK;
    m->grad_slab = vitq_alloc((size_t)m->n_params * sizeof(float));
    if (!m->grad_slab) return vitq_fail(e, VITQ_ENOMEM, "out of memory allocating gradients");
    return m->fam->params(m, 1, NULL, NULL, e) < 0 ? VITQ_ENOMEM : VITQ_OK;
}

void vitq_model_zero_grads(vitq_model *m) {
    if (m->grad_slab) memset(m->grad_slab, 0, (size_t)m->n_params * sizeof(float));
}

int vitq_model_clone(const vitq_model *src, vitq_model **out, vitq_err *e) {
    int rc = vitq_model_create(&src->arch, out, e);
    if (rc) return rc;
    memcpy((*out)->slab, src->slab, (size_t)src->n_params * sizeof(float));
    memcpy((*out)->mlp_act, src->mlp_act, (size_t)src->n_blocks * sizeof *src->mlp_act);
    snprintf((*out)->source, sizeof (*out)->source, "%s", src->source);
    snprintf((*out)->sha256, sizeof (*out)->sha256, "%s", src->sha256);
    return VITQ_OK;
}

int vitq_model_shadowable(const vitq_model *m) { return m->fam->params == vitq_vit_params; }

int vitq_model_shadow(const vitq_model *m, vitq_model **out, vitq_err *e) {
    *out = NULL;
    if (!vitq_model_shadowable(m))
        return vitq_fail(e, VITQ_EINVAL, "data-parallel training: %s models are not supported", m->fam->name);
    vitq_model *s = malloc(sizeof *s);
    if (!s) return vitq_fail(e, VITQ_ENOMEM, "out of memory");
    *s = *m;
    s->g = (vitq_params){0};
    s->fam_g = NULL;
    s->hooks = NULL;
    s->grad_skip = 0;
    s->grad_slab = vitq_alloc((size_t)m->n_params * sizeof(float));
    if (!s->grad_slab || m->fam->params(s, 1, NULL, NULL, e) < 0) {
        vitq_model_shadow_free(s);
        return vitq_fail(e, VITQ_ENOMEM, "out of memory allocating gradients");
    }
    memset(s->grad_slab, 0, (size_t)m->n_params * sizeof(float));
    *out = s;
    return VITQ_OK;
}

void vitq_model_shadow_free(vitq_model *s) {
    if (!s) return;
    free(s->g.blocks);
    vitq_free(s->grad_slab);
    free(s);
}

const vitq_tensor_ref *vitq_model_param(const vitq_model *m, const char *name) {
    for (int i = 0; i < m->n_table; i++)
        if (strcmp(m->table[i].name, name) == 0) return &m->table[i];
    return NULL;
}

float *vitq_model_grad_of(const vitq_model *m, const vitq_tensor_ref *r) {
    if (!m->grad_slab) return NULL;
    return m->grad_slab + (r->data - m->slab);
}
