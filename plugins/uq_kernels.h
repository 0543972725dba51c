/* uq_kernels.h — uniform.c's loops over one run of values sharing a (scale, zero point): the fake quant
 * y = (clamp(round(x/s) + z) − z)·s and its straight-through backward with the scale's gradient (LSQ's
 * dQ/ds, §2.8 of specs/aphq-vit.md), each as a scalar reference and SSE2 / AVX-512F loops that give its
 * bits. Header-only so that tests/test_uq_kernels.c runs both widths on the same values. */
#ifndef UQ_KERNELS_H
#define UQ_KERNELS_H

#include <math.h>
#include <stdint.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

/* 1 when the CPU runs AVX-512F (checked once; uniform.c's loops and adaround.h's ask it). */
static inline int has_avx512(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    static int on = -1;
    if (on < 0) on = __builtin_cpu_supports("avx512f") ? 1 : 0; /* a benign race: same value */
    return on;
#else
    return 0;
#endif
}

/* |z| small enough for the vector loops' rounding (x/s clamped within 2^16 + 1 of the grid, |v| < 2^22). */
static inline int fast_ok(float z) { return fabsf(z) + 65538.0f < 4194304.0f; }

static inline float fq(float x, float s, float z, float qlo, float qhi) {
    float v = rintf(x / s) + z;
    v = v < qlo ? qlo : (v > qhi ? qhi : v);
    return (v - z) * s;
}

/* y[i] = fq(x[i]) for n values, bit-identical to fq: x/s is first clamped to one level beyond the range
 * (which changes nothing after the final clamp), then rounded half to even by adding and subtracting
 * 1.5·2^23, exact for |v| < 2^22. SSE2 does 4 values at a time; MAXPS/MINPS with the bound as FIRST
 * operand return the second (x's value) when it is NaN, so NaN propagates as in fq. y may equal x.
 * The caller checks |z| + 2^16 + 2 < 2^22 (fast_ok). */
#if defined(__x86_64__) && defined(__GNUC__)
/* The same arithmetic 16 values at a time (AVX-512F; VMINPS/VMAXPS have SSE's NaN rule, VDIVPS is IEEE
 * division like DIVPS): bit-identical to the SSE2 loop. The division dominates a candidate sweep, and
 * AVX-512 does four times the values per instruction. Chosen at run time (fq_run). */
__attribute__((target("avx512f"))) static inline int64_t fq_run16(float *y, const float *x, int64_t n, float s, float z,
                                                          float qlo, float qhi) {
    const __m512 M = _mm512_set1_ps(12582912.0f), S = _mm512_set1_ps(s), Z = _mm512_set1_ps(z);
    const __m512 VLO = _mm512_set1_ps(qlo - z - 1), VHI = _mm512_set1_ps(qhi - z + 1);
    const __m512 QLO = _mm512_set1_ps(qlo), QHI = _mm512_set1_ps(qhi);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_div_ps(_mm512_loadu_ps(x + i), S);
        v = _mm512_min_ps(VHI, _mm512_max_ps(VLO, v));
        v = _mm512_add_ps(_mm512_sub_ps(_mm512_add_ps(v, M), M), Z);
        v = _mm512_min_ps(QHI, _mm512_max_ps(QLO, v));
        _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_sub_ps(v, Z), S));
    }
    return i;
}
#define HAVE_FQ_RUN16 1
#endif

static inline void fq_run(float *y, const float *x, int64_t n, float s, float z, float qlo, float qhi) {
    int64_t i = 0;
#ifdef HAVE_FQ_RUN16
    if (has_avx512() && n >= 16) {
        i = fq_run16(y, x, n, s, z, qlo, qhi);
        x += i, y += i, n -= i;
        i = 0;
    }
#endif
#ifdef __SSE2__
    const __m128 M = _mm_set1_ps(12582912.0f), S = _mm_set1_ps(s), Z = _mm_set1_ps(z);
    const __m128 VLO = _mm_set1_ps(qlo - z - 1), VHI = _mm_set1_ps(qhi - z + 1);
    const __m128 QLO = _mm_set1_ps(qlo), QHI = _mm_set1_ps(qhi);
    for (; i + 4 <= n; i += 4) {
        __m128 v = _mm_div_ps(_mm_loadu_ps(x + i), S);
        v = _mm_min_ps(VHI, _mm_max_ps(VLO, v));
        v = _mm_add_ps(_mm_sub_ps(_mm_add_ps(v, M), M), Z);
        v = _mm_min_ps(QHI, _mm_max_ps(QLO, v));
        _mm_storeu_ps(y + i, _mm_mul_ps(_mm_sub_ps(v, Z), S));
    }
#endif
    for (; i < n; i++) y[i] = fq(x[i], s, z, qlo, qhi);
}

/* ---- the straight-through backward with nearest rounding ------------------------------------------ */
/* One value (zr = rint(z)): adds dy to *dx inside the range and returns dQ/ds / s's factor: round(x/s) − x/s
 * inside, the clamped level − zr outside (LSQ's gradient; the caller multiplies by dy). */
static inline float uq_bwd_nearest_one(float x, float dy, float *dx, float s, float zr, float qlo, float qhi) {
    float v = x / s, r = rintf(v), u = r + zr;
    if (u < qlo) return qlo - zr;
    if (u > qhi) return qhi - zr;
    if (dx) *dx += dy;
    return r - v;
}

/* uq_bwd_nearest's loop 16 values at a time, with the SSE2 loop's bits: the same operations per value, and
 * the 16 products g·d added into the 4-lane float accumulator as four 4-lane adds in order — the additions
 * the SSE2 loop makes, one per 4 values — flushed to double every 1024 values as there. Returns the values
 * done (whole 1024s, so that the SSE2 loop carries on at a flush); *acc_io and *total_io carry on. */
#ifdef HAVE_FQ_RUN16
__attribute__((target("avx512f"))) static inline int64_t uq_bwd_run16(const float *x, const float *dy, float *dx,
                                                                     int64_t len, float s, float zr, float qlo,
                                                                     float qhi, __m128 *acc_io, double *total_io) {
    const __m512 S = _mm512_set1_ps(s), Z = _mm512_set1_ps(zr), LO = _mm512_set1_ps(qlo), HI = _mm512_set1_ps(qhi);
    const __m512 VLO = _mm512_set1_ps(qlo - zr - 1), VHI = _mm512_set1_ps(qhi - zr + 1);
    const __m512 M = _mm512_set1_ps(12582912.0f);
    const __m512 DLO = _mm512_set1_ps(qlo - zr), DHI = _mm512_set1_ps(qhi - zr);
    __m128 acc = *acc_io;
    double total = *total_io;
    int64_t i = 0;
    for (; i + 1024 <= len; i += 1024) {
        for (int64_t k = i; k < i + 1024; k += 16) {
            __m512 v = _mm512_div_ps(_mm512_loadu_ps(x + k), S);
            __m512 r = _mm512_sub_ps(_mm512_add_ps(_mm512_min_ps(VHI, _mm512_max_ps(VLO, v)), M), M);
            __m512 u = _mm512_add_ps(r, Z);
            __mmask16 below = _mm512_cmp_ps_mask(u, LO, _CMP_LT_OS), above = _mm512_cmp_ps_mask(u, HI, _CMP_GT_OS);
            __mmask16 in = (__mmask16)~(below | above);
            __m512 d = _mm512_mask_mov_ps(_mm512_mask_mov_ps(_mm512_setzero_ps(), below, DLO), above, DHI);
            d = _mm512_mask_sub_ps(d, in, r, v);
            __m512 g = _mm512_loadu_ps(dy + k), gd = _mm512_mul_ps(g, d);
            if (dx) /* + 0 outside the range, as SSE2's andnot: −0 becomes +0 there too */
                _mm512_storeu_ps(dx + k, _mm512_add_ps(_mm512_loadu_ps(dx + k), _mm512_maskz_mov_ps(in, g)));
            acc = _mm_add_ps(acc, _mm512_extractf32x4_ps(gd, 0));
            acc = _mm_add_ps(acc, _mm512_extractf32x4_ps(gd, 1));
            acc = _mm_add_ps(acc, _mm512_extractf32x4_ps(gd, 2));
            acc = _mm_add_ps(acc, _mm512_extractf32x4_ps(gd, 3));
        }
        float l[4];
        _mm_storeu_ps(l, acc);
        total += (double)l[0] + l[1] + l[2] + l[3];
        acc = _mm_setzero_ps();
    }
    *acc_io = acc, *total_io = total;
    return i;
}
#endif

/* Over a run of len values with nearest rounding: Σ dy·dQ/ds (returned, in double) and dx += dy inside the
 * range (dx may be NULL). SSE2 4 lanes: x/s pre-clamped one level beyond the range, then rounded half to
 * even by adding and subtracting 1.5·2^23 (exact there, as in fq_run), so every lane takes
 * uq_bwd_nearest_one's branch; float partial sums over 1024 values flushed to double. wide: the first
 * whole 1024s 16 values at a time (uq_bwd_run16, the same bits; the caller passes has_avx512()). The caller
 * checks fast_ok(rint(z)). */
static inline double uq_bwd_nearest(const float *x, const float *dy, float *dx, int64_t len, float s, float z,
                                    float qlo, float qhi, int wide) {
    const float zr = rintf(z);
    double total = 0;
    int64_t i = 0;
    (void)wide;
#ifdef __SSE2__
    const __m128 S = _mm_set1_ps(s), Z = _mm_set1_ps(zr), LO = _mm_set1_ps(qlo), HI = _mm_set1_ps(qhi);
    const __m128 VLO = _mm_set1_ps(qlo - zr - 1), VHI = _mm_set1_ps(qhi - zr + 1), M = _mm_set1_ps(12582912.0f);
    const __m128 DLO = _mm_set1_ps(qlo - zr), DHI = _mm_set1_ps(qhi - zr);
    __m128 acc = _mm_setzero_ps();
    int cnt = 0;
#ifdef HAVE_FQ_RUN16
    if (wide) i = uq_bwd_run16(x, dy, dx, len, s, zr, qlo, qhi, &acc, &total);
#endif
    for (; i + 4 <= len; i += 4) {
        __m128 v = _mm_div_ps(_mm_loadu_ps(x + i), S);
        __m128 r = _mm_sub_ps(_mm_add_ps(_mm_min_ps(VHI, _mm_max_ps(VLO, v)), M), M);
        __m128 u = _mm_add_ps(r, Z);
        __m128 below = _mm_cmplt_ps(u, LO), above = _mm_cmpgt_ps(u, HI), out = _mm_or_ps(below, above);
        __m128 d = _mm_or_ps(_mm_andnot_ps(out, _mm_sub_ps(r, v)),
                             _mm_or_ps(_mm_and_ps(below, DLO), _mm_and_ps(above, DHI)));
        __m128 g = _mm_loadu_ps(dy + i);
        if (dx) _mm_storeu_ps(dx + i, _mm_add_ps(_mm_loadu_ps(dx + i), _mm_andnot_ps(out, g)));
        acc = _mm_add_ps(acc, _mm_mul_ps(g, d));
        if (++cnt == 256) {
            float l[4];
            _mm_storeu_ps(l, acc);
            total += (double)l[0] + l[1] + l[2] + l[3];
            acc = _mm_setzero_ps();
            cnt = 0;
        }
    }
    float l[4];
    _mm_storeu_ps(l, acc);
    total += (double)l[0] + l[1] + l[2] + l[3];
#endif
    for (; i < len; i++) total += (double)dy[i] * uq_bwd_nearest_one(x[i], dy[i], dx ? dx + i : NULL, s, zr, qlo, qhi);
    return total;
}

#endif
