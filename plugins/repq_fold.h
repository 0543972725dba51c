/* repq_fold.h — RepQ-ViT's fold of per-channel quantization parameters into a LayerNorm and the linear
 * layer after it (specs/aphq-vit.md §2.4, oracle O8), header-only so the tests check the same code the
 * `repq` pass runs. Arithmetic in float32 as the reference (torch, CUDA float32). */
#ifndef VITQ_REPQ_FOLD_H
#define VITQ_REPQ_FOLD_H

#include <math.h>
#include <stdint.h>

/* From per-channel (s[c], z[c]), c < C: s̄ = mean s, z̄ = ⌊mean z⌉ (half to even, torch.round),
 * r[c] = s[c] / s̄, b[c] = s̄·(z̄ − z[c]). Returns s̄ (and *zbar). */
static inline float repq_factors(const float *s, const float *z, int64_t C, float *r, float *b, float *zbar) {
    double ss = 0, zs = 0;
    for (int64_t c = 0; c < C; c++) ss += s[c], zs += z[c];
    float sbar = (float)(ss / (double)C), zb = rintf((float)(zs / (double)C));
    for (int64_t c = 0; c < C; c++) {
        r[c] = s[c] / sbar;
        b[c] = sbar * (zb - z[c]);
    }
    if (zbar) *zbar = zb;
    return sbar;
}

/* LayerNorm γ, β (C) ← γ/r, β/r − b; linear W (OC, C) columns × r, then bias (OC) += W'·b (bias may be
 * NULL only when every b[c] is 0). */
static inline void repq_fold(float *gamma, float *beta, float *W, float *bias, int64_t OC, int64_t C,
                             const float *r, const float *b) {
    for (int64_t c = 0; c < C; c++) {
        gamma[c] /= r[c];
        beta[c] = beta[c] / r[c] - b[c];
    }
    for (int64_t o = 0; o < OC; o++) {
        double acc = 0;
        for (int64_t c = 0; c < C; c++) {
            W[o * C + c] *= r[c];
            acc += (double)W[o * C + c] * b[c];
        }
        if (bias) bias[o] += (float)acc;
    }
}

#endif
