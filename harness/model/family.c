/* family.c — the public model operations, dispatched to the architecture's family (vitq_family): the
 * activation buffers, the whole forward and backward, and the units of block-wise reconstruction with
 * their forward/backward over a range. A whole forward is the units in order and a whole backward the
 * units in reverse, so a unit computes exactly what the model computes there. Also the tap calls every
 * family's code makes (hooks, enabled flags, errors naming the tap). */
#include "model/model.h"

#include <string.h>

const vitq_family *vitq_family_of(const vitq_arch *a) {
    switch (a->family) {
    case VITQ_FAMILY_VIT: return &vitq_family_vit;
    case VITQ_FAMILY_SWIN: return &vitq_family_swin;
    default: return NULL;
    }
}

/* ---- metadata keys of a family ---------------------------------------------------------------------- */

int vitq_arch_nkeys(const vitq_arch *a) { return a->family == VITQ_FAMILY_SWIN ? vitq_swin_nkeys() : VITQ_ARCH_NKEYS; }

const char *vitq_arch_key_of(const vitq_arch *a, int i) {
    return a->family == VITQ_FAMILY_SWIN ? vitq_swin_key(i) : vitq_arch_key(i);
}

const char *vitq_arch_value_of(const vitq_arch *a, int i, char *buf, size_t n) {
    return a->family == VITQ_FAMILY_SWIN ? vitq_swin_value(a, i, buf, n) : vitq_arch_value(a, i, buf, n);
}

const char *vitq_arch_derived(const vitq_arch *a, char *buf, size_t n) {
    if (a->family == VITQ_FAMILY_SWIN) return vitq_swin_derived(a, buf, n);
    snprintf(buf, n, "%d tokens (%d prefix: %s), head width %d, MLP width %d, pooling %s%s, final norm %s",
             vitq_arch_tokens(a), vitq_arch_prefix(a),
             a->distilled ? "class + distillation token" : a->no_class_token ? "none" : "class token",
             a->num_heads ? a->embed_dim / a->num_heads : 0, vitq_arch_hidden(a),
             a->global_pool == VITQ_POOL_AVG ? "mean of the patch tokens" : "class token",
             a->distilled ? " (+ dist token, heads averaged)" : "", a->fc_norm ? "after pooling (fc_norm)" : "before pooling (norm)");
    return buf;
}

static const vitq_family *family_id(int id) {
    vitq_arch a = {.family = id};
    return vitq_family_of(&a);
}

int vitq_acts_create(const vitq_model *m, int B, int train, vitq_acts **out, vitq_err *e) {
    *out = NULL;
    if (B <= 0) return vitq_fail(e, VITQ_EINVAL, "activations: batch size must be positive, got %d", B);
    int rc = m->fam->acts_create(m, B, train, out, e);
    if (!rc) (*out)->family = m->arch.family;
    return rc;
}

void vitq_acts_free(vitq_acts *a) {
    if (a) family_id(a->family)->acts_free(a);
}

int vitq_grad_acts_create(const vitq_model *m, int B, vitq_grad_acts **out, vitq_err *e) {
    *out = NULL;
    if (B <= 0) return vitq_fail(e, VITQ_EINVAL, "gradient buffers: batch size must be positive, got %d", B);
    int rc = m->fam->grad_acts_create(m, B, out, e);
    if (!rc) (*out)->family = m->arch.family;
    return rc;
}

void vitq_grad_acts_free(vitq_grad_acts *g) {
    if (g) family_id(g->family)->grad_acts_free(g);
}

int vitq_unit_count(const vitq_model *m) { return m->n_units; }

int vitq_unit_ops(const vitq_model *m, int u, vitq_op_desc *out, int max) {
    return u >= 0 && u < m->n_units && m->fam->unit_ops ? m->fam->unit_ops(m, u, out, max) : 0;
}

const vitq_unit *vitq_unit_get(const vitq_model *m, int u) {
    return u >= 0 && u < m->n_units ? &m->units[u] : NULL;
}

int vitq_unit_of_param(const vitq_model *m, int row) {
    for (int u = 0; u < m->n_units; u++)
        if (row >= m->units[u].param_first && row < m->units[u].param_end) return u;
    return -1;
}

float *vitq_unit_in(const vitq_model *m, vitq_acts *a, int u) { return m->fam->unit_in(m, a, u); }
float *vitq_unit_out(const vitq_model *m, vitq_acts *a, int u) { return m->fam->unit_out(m, a, u); }
float *vitq_unit_din(const vitq_model *m, vitq_grad_acts *g, int u) { return m->fam->unit_din(m, g, u); }
float *vitq_unit_dout(const vitq_model *m, vitq_grad_acts *g, int u) { return m->fam->unit_dout(m, g, u); }

static int check_range(const vitq_model *m, int u0, int u1, const char *what, vitq_err *e) {
    if (u0 < 0 || u1 > m->n_units || u0 >= u1)
        return vitq_fail(e, VITQ_EINVAL, "%s: units [%d, %d) out of range [0, %d)", what, u0, u1, m->n_units);
    return VITQ_OK;
}

int vitq_forward_units(vitq_model *m, vitq_acts *a, int u0, int u1, int B, vitq_err *e) {
    int rc = check_range(m, u0, u1, "forward", e);
    if (!rc) rc = m->fam->check(m, a, B, e);
    for (int u = u0; !rc && u < u1; u++) {
        if (vitq_interrupted) return vitq_fail(e, VITQ_ECANCELLED, "forward interrupted");
        rc = m->fam->unit_forward(m, a, u, B, e);
    }
    return rc;
}

static int check_backward(const vitq_model *m, const vitq_acts *a, const vitq_grad_acts *g, int B, vitq_err *e) {
    if (!m->grad_slab)
        return vitq_fail(e, VITQ_EINVAL, "%s: backward needs parameter gradients (vitq_model_alloc_grads)",
                         m->source[0] ? m->source : "model");
    if (B <= 0 || B > a->B || B > g->B)
        return vitq_fail(e, VITQ_EINVAL, "backward: batch %d does not fit the buffers (acts %d, grads %d)", B,
                         a->B, g->B);
    if (a->family != m->arch.family || g->family != m->arch.family)
        return vitq_fail(e, VITQ_EINVAL, "backward: buffers were made for another architecture family");
    return m->fam->check(m, a, B, e);
}

int vitq_backward_units(vitq_model *m, vitq_acts *a, vitq_grad_acts *g, int u0, int u1, int B, vitq_err *e) {
    int rc = check_range(m, u0, u1, "backward", e);
    if (!rc) rc = check_backward(m, a, g, B, e);
    if (!rc && u1 - u0 > 1 && !a->train)
        return vitq_fail(e, VITQ_EINVAL, "backward over %d units: activations were made in eval mode (need train = 1)",
                         u1 - u0);
    const unsigned skip = m->grad_skip;
    for (int u = u1 - 1; !rc && u >= u0; u--) {
        if (vitq_interrupted) return vitq_fail(e, VITQ_ECANCELLED, "backward interrupted");
        if (u > u0) m->grad_skip = skip & ~VITQ_GRAD_SKIP_INPUT; /* a later unit's input gradient is needed */
        rc = m->fam->unit_backward(m, a, g, u, B, e);
        m->grad_skip = skip;
    }
    return rc;
}

int vitq_forward(vitq_model *m, vitq_acts *a, const float *images, int B, vitq_err *e) {
    int rc = m->fam->check(m, a, B, e);
    if (rc) return rc;
    float *in = vitq_unit_in(m, a, 0);
    if (images != in) memcpy(in, images, sizeof(float) * (size_t)(B * m->units[0].in_numel));
    return vitq_forward_units(m, a, 0, m->n_units, B, e);
}

int vitq_backward(vitq_model *m, vitq_acts *a, vitq_grad_acts *g, const float *dlogits, int B, vitq_err *e) {
    int rc = check_backward(m, a, g, B, e);
    if (rc) return rc;
    if (!a->train) return vitq_fail(e, VITQ_EINVAL, "backward: activations were made in eval mode (need train = 1)");
    const int last = m->n_units - 1;
    float *d = vitq_unit_dout(m, g, last);
    if (dlogits != d) memcpy(d, dlogits, sizeof(float) * (size_t)(B * m->units[last].out_numel));
    return vitq_backward_units(m, a, g, 0, m->n_units, B, e);
}

/* ---- taps ------------------------------------------------------------------------------------------ */

static int tap_failed(const vitq_model *m, int id, int rc, const char *what, vitq_err *e) {
    char name[96];
    return vitq_fail(e, rc < 0 ? rc : VITQ_EPLUGIN, "tap %s: %s hook failed (code %d)",
                     vitq_tap_name(m, id, name, sizeof name), what, rc);
}

int vitq_tap_call(const vitq_model *m, vitq_tap_site site, int block, float *x, int ndim, const int64_t *shape,
                  vitq_err *e) {
    const vitq_tap_hooks *h = m->hooks;
    if (!h || !h->act) return VITQ_OK;
    int id = m->tap_at[(block + 1) * VITQ_SITE_COUNT + site];
    if (id < 0 || (h->enabled && !h->enabled[id])) return VITQ_OK;
    int rc = h->act(h->ctx, id, x, ndim, shape);
    return rc ? tap_failed(m, id, rc, "activation", e) : VITQ_OK;
}

int vitq_tap_call_backward(const vitq_model *m, vitq_tap_site site, int block, float *x, float *dx, int ndim,
                           const int64_t *shape, vitq_err *e) {
    const vitq_tap_hooks *h = m->hooks;
    if (!h || !h->act_backward) return VITQ_OK;
    int id = m->tap_at[(block + 1) * VITQ_SITE_COUNT + site];
    if (id < 0 || (h->enabled && !h->enabled[id])) return VITQ_OK;
    int rc = h->act_backward(h->ctx, id, x, dx, ndim, shape);
    return rc ? tap_failed(m, id, rc, "backward", e) : VITQ_OK;
}

/* ---- single blocks ------------------------------------------------------------------------------- */

static int block_unit(const vitq_model *m, int l, const char *what, vitq_err *e) {
    for (int u = 0; u < m->n_units; u++)
        if (m->units[u].kind == VITQ_UNIT_BLOCK && m->units[u].block == l) return u;
    vitq_fail(e, VITQ_EINVAL, "%s: block %d out of range [0, %d)", what, l, m->n_blocks);
    return -1;
}

int vitq_block_forward(vitq_model *m, vitq_acts *a, int l, int B, vitq_err *e) {
    int u = block_unit(m, l, "block forward", e);
    return u < 0 ? VITQ_EINVAL : vitq_forward_units(m, a, u, u + 1, B, e);
}

int vitq_block_backward(vitq_model *m, vitq_acts *a, vitq_grad_acts *g, int l, int B, vitq_err *e) {
    int u = block_unit(m, l, "block backward", e);
    return u < 0 ? VITQ_EINVAL : vitq_backward_units(m, a, g, u, u + 1, B, e);
}
