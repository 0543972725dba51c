/* qplug.h — helpers for tests that drive a quantizer plugin through its ops (test_dfq.c,
 * test_softmax_baselines.c): an instance built from "key=value" strings, state kept in memory, and a
 * stand-in for the harness's vitq_search whose error is the attn·V output error computed in double
 * (err[h] = Σ over image b, row i, column d of ((P − P̂)·V)², every head written whatever per_group, as
 * qsearch.c does). Static functions only: each including file gets its own copy. */
#ifndef VITQ_TESTS_QPLUG_H
#define VITQ_TESTS_QPLUG_H

#include "test.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const vitq_plugin *p;
    void *params, *q;
    vitq_host host;
    vitq_host_ctx ctx;
    vitq_tap tap;
} qp_inst;

/* probs taps of (B, H, N, N) with H heads and N tokens */
static inline vitq_tap qp_probs_tap(int64_t H, int64_t N) {
    return (vitq_tap){.name = "blocks.0.attn.probs", .kind = VITQ_TAPK_PROBS, .id = 6, .ndim = 4, .shape = {0, H, N, N},
                      .dims = {VITQ_DIM_BATCH, VITQ_DIM_HEAD, VITQ_DIM_TOKEN, VITQ_DIM_KEY}, .row_groups = 1};
}

/* Loads `plugin`, parses kvs ("key=value"), creates the instance on tap; 0, or -1 (with the reason in
 * in->ctx.msg for a failed create). */
static inline int qp_make(qp_inst *in, const char *plugin, const vitq_tap *tap, const char *const *kvs, int nkv) {
    memset(in, 0, sizeof *in);
    vitq_err e;
    if (vitq_plugin_load(plugin, NULL, &in->p, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return -1;
    }
    vitq_kv kv[16];
    char keys[16][64];
    for (int i = 0; i < nkv && i < 16; i++) {
        const char *eq = strchr(kvs[i], '=');
        snprintf(keys[i], sizeof keys[i], "%.*s", (int)(eq - kvs[i]), kvs[i]);
        kv[i] = (vitq_kv){keys[i], (char *)(eq + 1), "t.ini", i + 1};
    }
    in->params = calloc(1, in->p->params_size);
    if (vitq_plugin_params_parse(in->p, "quantizer t", kv, nkv, in->params, &e)) {
        test_failf(__FILE__, __LINE__, "%s", e.msg);
        return -1;
    }
    in->tap = *tap;
    vitq_host_init(&in->host, &in->ctx, "test", in->tap.name, 1234);
    in->q = in->p->quantizer->create(in->params, &in->tap, &in->host);
    return in->q ? 0 : -1;
}

static inline void qp_drop(qp_inst *in) {
    if (in->p && in->q) in->p->quantizer->destroy(in->q);
    free(in->params);
    in->q = NULL;
    in->params = NULL;
}

static inline vitq_view qp_view4(float *x, int64_t B, int64_t H, int64_t N) {
    return (vitq_view){.data = x, .ndim = 4, .shape = {B, H, N, N}};
}

/* ---- state in memory ---------------------------------------------------------------------------- */
typedef struct {
    char name[8][32];
    float data[8][64];
    int64_t n[8];
    int count;
} qp_state;

static inline int qp_put(vitq_state_io *io, const char *name, const float *d, int64_t n) {
    qp_state *m = io->ctx;
    if (m->count == 8 || n > 64) return VITQ_EINVAL;
    snprintf(m->name[m->count], 32, "%s", name);
    memcpy(m->data[m->count], d, (size_t)n * sizeof(float));
    m->n[m->count++] = n;
    return 0;
}
static inline int qp_find(const qp_state *m, const char *name) {
    for (int i = 0; i < m->count; i++)
        if (!strcmp(m->name[i], name)) return i;
    return -1;
}
static inline int64_t qp_size(vitq_state_io *io, const char *name) {
    qp_state *m = io->ctx;
    int i = qp_find(m, name);
    return i < 0 ? -1 : m->n[i];
}
static inline int qp_get(vitq_state_io *io, const char *name, float *d, int64_t n) {
    qp_state *m = io->ctx;
    int i = qp_find(m, name);
    if (i < 0 || m->n[i] != n) return VITQ_EFORMAT;
    memcpy(d, m->data[i], (size_t)n * sizeof(float));
    return 0;
}
static inline vitq_state_io qp_io(qp_state *m) { return (vitq_state_io){m, qp_put, qp_size, qp_get}; }

/* ---- a stand-in for the harness's output-error search ------------------------------------------- */
typedef struct {
    vitq_search s;       /* first member */
    const float *P, *V;  /* float probs (B, H, N, N) and V (B, H, N, D) */
    int64_t B, H, N, D;
    int calls, per_group_seen[2];
    int64_t bad_shape;
} qp_search;

/* err[h] over every image and head; all H entries written whatever per_group (then err[0] = the total
 * when per_group = 0), as the harness does. */
static inline double qp_head_error(const float *P, const float *Pq, const float *V, int64_t B, int64_t H, int64_t N, int64_t D,
                            int64_t h) {
    double e = 0;
    for (int64_t b = 0; b < B; b++) {
        const float *p = P + (b * H + h) * N * N, *pq = Pq + (b * H + h) * N * N, *v = V + (b * H + h) * N * D;
        for (int64_t i = 0; i < N; i++)
            for (int64_t d = 0; d < D; d++) {
                double y = 0;
                for (int64_t j = 0; j < N; j++) y += ((double)pq[i * N + j] - (double)p[i * N + j]) * (double)v[j * D + d];
                e += y * y;
            }
    }
    return e;
}

static inline int qp_error(const vitq_search *s, const vitq_view *xq, int per_group, double *err) {
    qp_search *f = (qp_search *)s;
    f->calls++;
    f->per_group_seen[per_group ? 1 : 0]++;
    if (vitq_view_numel(xq) != f->B * f->H * f->N * f->N) {
        f->bad_shape++;
        return VITQ_EINVAL;
    }
    for (int64_t h = 0; h < f->H; h++) err[h] = qp_head_error(f->P, xq->data, f->V, f->B, f->H, f->N, f->D, h);
    if (!per_group)
        for (int64_t h = 1; h < f->H; h++) err[0] += err[h];
    return 0;
}

/* x: the view of P the search sees (kept by the caller); round `round` of `rounds`; V counts as changed. */
static inline void qp_search_init(qp_search *f, const vitq_view *x, const float *V, int64_t D, int round, int rounds) {
    memset(f, 0, sizeof *f);
    f->P = x->data;
    f->V = V;
    f->B = x->shape[0], f->H = x->shape[1], f->N = x->shape[2], f->D = D;
    f->s = (vitq_search){.size = sizeof(vitq_search), .round = round, .rounds = rounds, .x = x, .groups = f->H,
                         .group_dim = VITQ_DIM_HEAD, .error = qp_error, .ctx = f, .partner_changed = 1};
}

/* Softmax rows with a few large logits (peaky, as attention is), from a 64-bit LCG. */
static inline uint64_t qp_lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 11;
}
static inline double qp_unif(uint64_t *s) { return (double)qp_lcg(s) / 9007199254740992.0; }

static inline void qp_softmax_rows(float *P, int64_t rows, int64_t N, uint64_t seed) {
    uint64_t s = seed;
    for (int64_t r = 0; r < rows; r++) {
        double z[256], mx = -1e300, sum = 0;
        for (int64_t j = 0; j < N; j++) {
            z[j] = 3.0 * (qp_unif(&s) - 0.5) + (qp_unif(&s) < 0.15 ? 4.0 * qp_unif(&s) : 0.0);
            mx = z[j] > mx ? z[j] : mx;
        }
        for (int64_t j = 0; j < N; j++) sum += (z[j] = exp(z[j] - mx));
        for (int64_t j = 0; j < N; j++) P[r * N + j] = (float)(z[j] / sum);
    }
}

#endif
