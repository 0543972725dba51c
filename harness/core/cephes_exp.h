/* cephes_exp.h — the body of Cephes's single-precision exp (x = n·ln 2 + r with |r| <= ln 2 / 2, a degree-6
 * polynomial in r, 2^n through the exponent bits; relative error < 2 ulp), for callers that choose n
 * themselves: the GELU backward kernel (ops_backward.c) and AdaRound's loops (plugins/adaround.h). Header
 * only, plain float operations in a fixed order: straight-line code that vectorises, and the same bits on
 * every build (vitq compiles with -std=c11, so no FMA contraction). A plugin may include it: it links
 * nothing. */
#ifndef VITQ_CEPHES_EXP_H
#define VITQ_CEPHES_EXP_H

#include <stdint.h>

/* exp(x) given ni = x / ln 2 rounded to an integer, -126 <= ni <= 127. */
static inline float vitq_cephes_exp_n(float x, int32_t ni) {
    float n = (float)ni;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = (ni + 127) * (1 << 23);
    float scale;
    __builtin_memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

#endif
