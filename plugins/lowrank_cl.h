/* lowrank_cl.h — lowrank_nas's curriculum over the reconstruction samples (specs/aiqvit.md §4.5 [S2a for
 * the idea, I for the constants]), header-only so that tests check it on a hand-made set:
 *   - order: the samples sorted by their loss under the initialised quantized unit, ascending (easiest
 *     first); ties by index, so the order is a function of the losses alone;
 *   - share: at step t (0-based) of T, f(t) = min(1, f0 + (1 − f0)·t/(ρ·T)) with f0 = cl_start, ρ = cl_ramp
 *     (ρ·T = 0: f = 1 from the start);
 *   - batches: B distinct samples drawn uniformly from the first ⌈f(t)·N⌉ of the order (at least B, at most
 *     N), a partial Fisher–Yates over positions that keeps perm[0, n) a permutation of [0, n) as n grows.
 * cl = off is the share 1 throughout: batches uniform over all N, as aph_recon draws them. */
#ifndef LOWRANK_CL_H
#define LOWRANK_CL_H

#include "aph_loss.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* f(t) for step t (0-based) of T. */
static inline double lr_cl_share(int64_t t, int64_t T, double f0, double rho) {
    const double span = rho * (double)T;
    if (!(span > 0)) return 1.0;
    double f = f0 + (1.0 - f0) * (double)t / span;
    return f < 1.0 ? f : 1.0;
}

/* Samples in use at share f of N: ⌈f·N⌉, clipped to [B, N]. */
static inline int64_t lr_cl_count(double f, int64_t N, int B) {
    int64_t c = (int64_t)ceil(f * (double)N - 1e-9);
    if (c < B) c = B;
    return c > N ? N : c;
}

typedef struct {
    double loss;
    int64_t i;
} lr_cl_pair;

/* By loss (NaN as +inf), then by index: a total order, so the sorted order is unique. */
static inline int lr_cl_cmp(const void *a, const void *b) {
    const lr_cl_pair *x = a, *y = b;
    const double u = isnan(x->loss) ? INFINITY : x->loss, v = isnan(y->loss) ? INFINITY : y->loss;
    if (u != v) return u < v ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* order[0..N) = the sample indices by ascending loss (ties: by index; NaN last). -1: no memory. */
static inline int lr_cl_order(const double *loss, int64_t N, int64_t *order) {
    lr_cl_pair *v = malloc(sizeof *v * (size_t)(N > 0 ? N : 1));
    if (!v) return -1;
    for (int64_t i = 0; i < N; i++) v[i] = (lr_cl_pair){loss[i], i};
    qsort(v, (size_t)N, sizeof *v, lr_cl_cmp);
    for (int64_t i = 0; i < N; i++) order[i] = v[i].i;
    free(v);
    return 0;
}

/* idx[0..B) = B distinct samples from the first `count` of `order` (order NULL: samples [0, count) as they
 * are), uniformly; perm is a permutation of [0, N) kept between calls (identity at start). */
static inline void lr_cl_draw(aph_rng *r, int64_t *perm, int64_t count, int B, const int64_t *order, int64_t *idx) {
    aph_draw_batch(r, perm, count, B, idx);
    if (order)
        for (int b = 0; b < B; b++) idx[b] = order[idx[b]];
}

#endif
