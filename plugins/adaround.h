/* adaround.h — AdaRound's per-weight arithmetic (Nagel et al. 2020, §3.3; specs/aphq-vit.md §2.7) as
 * loops the compiler vectorises: h(α), the soft-rounded forward, the backward to α and the rounding term.
 * A reconstruction step runs each over every weight of its unit (~110k for a vit-fmnist block), and the
 * scalar versions with libm's expf/logf per weight cost as much as a fifth of the step.
 *
 * exp and log are Cephes's single-precision polynomials (|relative error| < 2e-7, within 2 ulp of libm)
 * written with plain float operations, so every build and every vector width computes the same bits
 * (vitq compiles with -std=c11: no FMA contraction). torch's sigmoid is itself a vectorised
 * approximation, not libm's: neither matches the reference bit for bit.
 *
 * Each loop has an AVX-512F version (16 weights per instruction) chosen at run time, and a scalar one for
 * other CPUs and the tail; both do the same IEEE operations per element in the same order, so their
 * results are identical. Included by uniform.c only; ADA_GAMMA and ADA_SPAN come from there. */
#ifndef VITQ_ADAROUND_H
#define VITQ_ADAROUND_H

#include <stdint.h>

#include "uq_kernels.h" /* has_avx512 */
#include "vectorize.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_ADA16 1
#endif

/* exp(x), x clamped to [-87, 88] (the float range's edge, where the sigmoid is 0 or 1 to float anyway). */
static inline float ada_exp(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float t = x * 1.44269504088896341f;
    float n = (t + 12582912.0f) - 12582912.0f; /* round to nearest even (exact: |t| < 2^22) */
    int32_t ni = (int32_t)n;
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

/* log(x) for normal x > 0 (Cephes logf: x = m·2^e with m in [√½, √2)). */
static inline float ada_log(float x) {
    int32_t bits;
    __builtin_memcpy(&bits, &x, sizeof bits);
    int32_t e = ((bits >> 23) & 0xff) - 126;
    bits = (bits & 0x807fffff) | 0x3f000000; /* m in [0.5, 1) */
    float m;
    __builtin_memcpy(&m, &bits, sizeof m);
    int small = m < 0.70710678f;
    e -= small;
    m = small ? m + m - 1.0f : m - 1.0f;
    float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    float fe = (float)e;
    y += -2.12194440e-4f * fe;
    y += -0.5f * z;
    return m + y + 0.693359375f * fe;
}

/* ⌊v⌋ without SSE4.1's ROUNDPS, v first clamped to ±2^30 (NaN to −2^30): beyond it the caller's clamp to
 * [qlo, qhi] gives the same result as the true floor. */
static inline float ada_floor(float v) {
    v = v > -1073741824.0f ? v : -1073741824.0f;
    v = v < 1073741824.0f ? v : 1073741824.0f;
    float t = (float)(int32_t)v;
    return t > v ? t - 1.0f : t;
}

#ifdef HAVE_ADA16
#define ADA16 __attribute__((target("avx512f")))
/* ada_exp, ada_log and ada_floor on 16 lanes: the same operations in the same order. MINPS/MAXPS with the
 * bound as first operand return x when x is NaN, as the scalar ternaries do. */
ADA16 static inline __m512 ada_exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(88.0f), _mm512_max_ps(_mm512_set1_ps(-87.0f), x));
    const __m512 M = _mm512_set1_ps(12582912.0f);
    __m512 n = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), M), M);
    __m512 r = _mm512_add_ps(_mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(0.693359375f))),
                             _mm512_mul_ps(n, _mm512_set1_ps(2.12194440e-4f)));
    static const float C[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                               4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
    __m512 p = _mm512_set1_ps(C[0]);
    for (int i = 1; i < 6; i++) p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(C[i]));
    p = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(p, r), r), r), _mm512_set1_ps(1.0f));
    __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
}

ADA16 static inline __m512 ada_log16(__m512 x) {
    __m512i bits = _mm512_castps_si512(x);
    __m512i e = _mm512_sub_epi32(_mm512_and_si512(_mm512_srli_epi32(bits, 23), _mm512_set1_epi32(0xff)),
                                 _mm512_set1_epi32(126));
    bits = _mm512_or_si512(_mm512_and_si512(bits, _mm512_set1_epi32((int)0x807fffff)), _mm512_set1_epi32(0x3f000000));
    __m512 m = _mm512_castsi512_ps(bits), one = _mm512_set1_ps(1.0f);
    __mmask16 small = _mm512_cmp_ps_mask(m, _mm512_set1_ps(0.70710678f), _CMP_LT_OQ);
    e = _mm512_mask_sub_epi32(e, small, e, _mm512_set1_epi32(1));
    m = _mm512_mask_blend_ps(small, _mm512_sub_ps(m, one), _mm512_sub_ps(_mm512_add_ps(m, m), one));
    __m512 z = _mm512_mul_ps(m, m);
    static const float C[9] = {7.0376836292e-2f,  -1.1514610310e-1f, 1.1676998740e-1f,
                               -1.2420140846e-1f, 1.4249322787e-1f,  -1.6668057665e-1f,
                               2.0000714765e-1f,  -2.4999993993e-1f, 3.3333331174e-1f};
    __m512 y = _mm512_set1_ps(C[0]);
    for (int i = 1; i < 9; i++) y = _mm512_add_ps(_mm512_mul_ps(y, m), _mm512_set1_ps(C[i]));
    y = _mm512_mul_ps(_mm512_mul_ps(y, m), z);
    __m512 fe = _mm512_cvtepi32_ps(e);
    y = _mm512_add_ps(y, _mm512_mul_ps(_mm512_set1_ps(-2.12194440e-4f), fe));
    y = _mm512_add_ps(y, _mm512_mul_ps(_mm512_set1_ps(-0.5f), z));
    return _mm512_add_ps(_mm512_add_ps(m, y), _mm512_mul_ps(_mm512_set1_ps(0.693359375f), fe));
}

ADA16 static inline __m512 ada_floor16(__m512 v) {
    v = _mm512_max_ps(v, _mm512_set1_ps(-1073741824.0f)); /* NaN -> the bound, as ada_floor */
    v = _mm512_min_ps(v, _mm512_set1_ps(1073741824.0f));
    __m512 t = _mm512_cvtepi32_ps(_mm512_cvttps_epi32(v));
    return _mm512_mask_sub_ps(t, _mm512_cmp_ps_mask(t, v, _CMP_GT_OQ), t, _mm512_set1_ps(1.0f));
}

/* h = clamp(raw, 0, 1) as the scalar ternaries (NaN stays NaN). */
ADA16 static inline __m512 ada_clamp01_16(__m512 raw) {
    return _mm512_min_ps(_mm512_set1_ps(1.0f), _mm512_max_ps(_mm512_setzero_ps(), raw));
}

ADA16 static int64_t ada_fwd_soft16(float *y, const float *x, const float *alpha, float *hraw, float *afwd,
                                    int64_t n, float s, float z, float qlo, float qhi) {
    const __m512 S = _mm512_set1_ps(s), Z = _mm512_set1_ps(z), QLO = _mm512_set1_ps(qlo), QHI = _mm512_set1_ps(qhi);
    const __m512 one = _mm512_set1_ps(1.0f);
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        __m512 a = _mm512_loadu_ps(alpha + k);
        __m512 sg = _mm512_div_ps(one, _mm512_add_ps(one, ada_exp16(_mm512_sub_ps(_mm512_setzero_ps(), a))));
        __m512 raw = _mm512_add_ps(_mm512_mul_ps(sg, _mm512_set1_ps(ADA_SPAN)), _mm512_set1_ps(ADA_GAMMA));
        _mm512_storeu_ps(hraw + k, raw);
        _mm512_storeu_ps(afwd + k, a);
        __m512 fl = ada_floor16(_mm512_div_ps(_mm512_loadu_ps(x + k), S));
        __m512 v = _mm512_add_ps(_mm512_add_ps(fl, ada_clamp01_16(raw)), Z);
        v = _mm512_min_ps(QHI, _mm512_max_ps(QLO, v));
        _mm512_storeu_ps(y + k, _mm512_mul_ps(_mm512_sub_ps(v, Z), S));
    }
    return k;
}

ADA16 static int64_t ada_bwd_soft16(const float *x, const float *dy, float *dx, const float *hraw, float *galpha,
                                    int64_t n, float s, float z, float qlo, float qhi) {
    const __m512 S = _mm512_set1_ps(s), Z = _mm512_set1_ps(z), QLO = _mm512_set1_ps(qlo), QHI = _mm512_set1_ps(qhi);
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        __m512 raw = _mm512_loadu_ps(hraw + k), g = _mm512_loadu_ps(dy + k);
        __m512 fl = ada_floor16(_mm512_div_ps(_mm512_loadu_ps(x + k), S));
        __m512 u = _mm512_add_ps(_mm512_add_ps(fl, ada_clamp01_16(raw)), Z);
        __mmask16 in = _mm512_cmp_ps_mask(u, QLO, _CMP_GE_OQ) & _mm512_cmp_ps_mask(u, QHI, _CMP_LE_OQ);
        __mmask16 soft = _mm512_cmp_ps_mask(raw, zero, _CMP_GE_OQ) & _mm512_cmp_ps_mask(raw, one, _CMP_LE_OQ);
        __m512 sg = _mm512_div_ps(_mm512_sub_ps(raw, _mm512_set1_ps(ADA_GAMMA)), _mm512_set1_ps(ADA_SPAN));
        __m512 ga = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(g, S), _mm512_set1_ps(ADA_SPAN)), sg),
                                  _mm512_sub_ps(one, sg));
        __m512 gl = _mm512_loadu_ps(galpha + k);
        _mm512_storeu_ps(galpha + k, _mm512_mask_add_ps(gl, in & soft, gl, ga));
        if (dx) {
            __m512 d = _mm512_loadu_ps(dx + k);
            _mm512_storeu_ps(dx + k, _mm512_mask_add_ps(d, in, d, g));
        }
    }
    return k;
}

/* Adds 16 rounding terms to *lane and their gradients to galpha. */
ADA16 static int64_t ada_reg16(const float *hraw, float *galpha, int64_t n, float beta, float lam, float lane[16]) {
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps(), two = _mm512_set1_ps(2.0f);
    const __m512 B1 = _mm512_set1_ps(beta - 1.0f), NB = _mm512_set1_ps(-beta), L = _mm512_set1_ps(lam);
    __m512 acc = _mm512_loadu_ps(lane);
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        __m512 raw = _mm512_loadu_ps(hraw + k);
        __m512 d = _mm512_sub_ps(_mm512_mul_ps(two, ada_clamp01_16(raw)), one);
        __m512 a = _mm512_abs_ps(d);
        __mmask16 pos = _mm512_cmp_ps_mask(a, zero, _CMP_GT_OQ);
        __m512 la = ada_log16(_mm512_max_ps(a, _mm512_set1_ps(1e-30f))); /* a > 1e-30 ? a : 1e-30 */
        __m512 pm1 = _mm512_maskz_mov_ps(pos, ada_exp16(_mm512_mul_ps(B1, la)));
        acc = _mm512_add_ps(acc, _mm512_sub_ps(one, _mm512_mul_ps(pm1, a)));
        __m512 sgn = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(d, zero, _CMP_GT_OQ), _mm512_set1_ps(-2.0f), two);
        __m512 df = _mm512_mul_ps(_mm512_mul_ps(NB, pm1), sgn);
        __m512 sg = _mm512_div_ps(_mm512_sub_ps(raw, _mm512_set1_ps(ADA_GAMMA)), _mm512_set1_ps(ADA_SPAN));
        __m512 t = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(L, df), _mm512_set1_ps(ADA_SPAN)), sg),
                                 _mm512_sub_ps(one, sg));
        __mmask16 on = _mm512_cmp_ps_mask(raw, zero, _CMP_GE_OQ) & _mm512_cmp_ps_mask(raw, one, _CMP_LE_OQ) & pos;
        __m512 gl = _mm512_loadu_ps(galpha + k);
        _mm512_storeu_ps(galpha + k, _mm512_mask_add_ps(gl, on, gl, t));
    }
    _mm512_storeu_ps(lane, acc);
    return k;
}
#endif


/* Soft AdaRound forward of n weights sharing scale s and zero point z: raw = σ(α)(ζ−γ) + γ (kept in hraw, and
 * α in afwd, for backward and the regulariser), h = clamp(raw, 0, 1), y = s·(clamp(⌊x/s⌋ + h + z, qlo, qhi) − z). */
static void ada_fwd_soft(float *y, const float *x, const float *alpha, float *hraw, float *afwd, int64_t n, float s,
                         float z, float qlo, float qhi) {
    int64_t k = 0;
#ifdef HAVE_ADA16
    if (has_avx512()) k = ada_fwd_soft16(y, x, alpha, hraw, afwd, n, s, z, qlo, qhi);
#endif
    for (; k < n; k++) {
        float a = alpha[k], raw = (1.0f / (1.0f + ada_exp(0.0f - a))) * ADA_SPAN + ADA_GAMMA;
        hraw[k] = raw, afwd[k] = a;
        float h = raw < 0 ? 0 : (raw > 1 ? 1 : raw);
        float v = ada_floor(x[k] / s) + h + z;
        v = v < qlo ? qlo : (v > qhi ? qhi : v);
        y[k] = (v - z) * s;
    }
}

/* One weight's rounding term 1 − |2h − 1|^β from its raw h; adds λ·d/dα of it to *galpha (0 where h's clamp is
 * active, as torch's). */
static inline float ada_reg_one(float raw, float beta, float lam, float *galpha) {
    float h = raw < 0 ? 0 : (raw > 1 ? 1 : raw);
    float d = 2.0f * h - 1.0f, a = __builtin_fabsf(d);
    float pm1 = a > 0 ? ada_exp((beta - 1.0f) * ada_log(a > 1e-30f ? a : 1e-30f)) : 0.0f; /* a^(β−1) */
    float sg = (raw - ADA_GAMMA) / ADA_SPAN, df = -beta * pm1 * (d > 0 ? 2.0f : -2.0f);
    if (raw >= 0 && raw <= 1 && a > 0) *galpha += lam * df * ADA_SPAN * sg * (1.0f - sg);
    return 1.0f - pm1 * a;
}

/* The rounding term over n weights from the cached raw h: returns Σ ada_reg_one (float partial sums in 16
 * lanes, added in double) and adds its gradient to galpha. */
static double ada_reg(const float *hraw, float *galpha, int64_t n, float beta, float lam) {
    float lane[16] = {0};
    int64_t k = 0;
#ifdef HAVE_ADA16
    if (has_avx512()) k = ada_reg16(hraw, galpha, n, beta, lam, lane);
#endif
    for (; k + 16 <= n; k += 16)
        for (int l = 0; l < 16; l++) lane[l] += ada_reg_one(hraw[k + l], beta, lam, &galpha[k + l]);
    double acc = 0;
    for (int l = 0; l < 16; l++) acc += lane[l];
    for (; k < n; k++) acc += ada_reg_one(hraw[k], beta, lam, &galpha[k]);
    return acc;
}

/* Soft AdaRound backward of n weights (scale not learned) from the cached raw h: where ⌊x/s⌋ + h + z is inside
 * [qlo, qhi], galpha += dy·s·(ζ−γ)·σ(1−σ) (0 where h's clamp is active) and dx += dy (dx may be NULL). */
static void ada_bwd_soft(const float *x, const float *dy, float *dx, const float *hraw, float *galpha, int64_t n,
                         float s, float z, float qlo, float qhi) {
    int64_t k = 0;
#ifdef HAVE_ADA16
    if (has_avx512()) k = ada_bwd_soft16(x, dy, dx, hraw, galpha, n, s, z, qlo, qhi);
#endif
    for (; k < n; k++) {
        float raw = hraw[k], h = raw < 0 ? 0 : (raw > 1 ? 1 : raw);
        float u = ada_floor(x[k] / s) + h + z;
        if (!(u >= qlo && u <= qhi)) continue;
        float sg = (raw - ADA_GAMMA) / ADA_SPAN;
        if (raw >= 0 && raw <= 1) galpha[k] += dy[k] * s * ADA_SPAN * sg * (1.0f - sg);
        if (dx) dx[k] += dy[k];
    }
}

/* 1 when the cached raw h is from the current α for all n weights (afwd[k] == α[k]; NaN before any forward).
 * Asked twice a step over every weight of the unit, on the calling thread: 256 compares at a time without an
 * early exit inside, so that the loop vectorises (an exact compare: the same answer as one at a time). */
PLUGIN_VECTORIZE static int ada_fresh(const float *alpha, const float *afwd, int64_t n) {
    for (int64_t k0 = 0; k0 < n; k0 += 256) {
        const int64_t k1 = n - k0 < 256 ? n : k0 + 256;
        int same = 1;
        for (int64_t k = k0; k < k1; k++) same &= afwd[k] == alpha[k];
        if (!same) return 0;
    }
    return 1;
}

#endif
