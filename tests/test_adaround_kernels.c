/* test_adaround_kernels.c — plugins/adaround.h: its exp and log against libm (Cephes's bound, 2e-7
 * relative), and each AVX-512 loop bit-identical to the scalar loop it stands for, on weights that cross
 * every branch (h clamped at 0 and 1, x/s on both sides of the grid's ends, dy of both signs). The scalar
 * loops themselves are checked against hand-derived numbers and finite differences in test_aphq_quant.c;
 * here the scalar reference is the same function called on runs shorter than 16, which never take the
 * vector path. */
#include "test.h"

#include <stdint.h>
#include <stdlib.h>

#define ADA_GAMMA (-0.1f)
#define ADA_SPAN 1.2f
#include "../plugins/adaround.h"

TEST(adaround_exp_log_against_libm) {
    double worst_e = 0, worst_l = 0;
    for (float x = -87.0f; x <= 88.0f; x += 0.00731f) {
        double r = fabs((double)ada_exp(x) - exp((double)x)) / exp((double)x);
        worst_e = r > worst_e ? r : worst_e;
    }
    for (float a = 1e-30f; a <= 1.0f; a *= 1.0137f) {
        double want = log((double)a), r = fabs((double)ada_log(a) - want) / (fabs(want) > 1 ? fabs(want) : 1);
        worst_l = r > worst_l ? r : worst_l;
    }
    CHECK_MSG(worst_e < 2.5e-7, "ada_exp relative error %.3g", worst_e);
    CHECK_MSG(worst_l < 2.5e-7, "ada_log error %.3g", worst_l);
    CHECK_EQ(ada_floor(-2.5f), -3.0f);
    CHECK_EQ(ada_floor(2.0f), 2.0f);
    CHECK_EQ(ada_floor(-0.0f), 0.0f);
    CHECK_EQ(ada_floor(3e12f), 1073741824.0f); /* clamped: beyond any grid */
}

enum { N = 1024 };
typedef struct {
    float x[N], dy[N], alpha[N];
} ada_data;

/* Weights around a 3-bit grid of scale 0.05 and zero point 4, α spread so that raw h covers (−0.1, 1.1). */
static void fill(ada_data *d) {
    srand(7);
    for (int i = 0; i < N; i++) {
        d->x[i] = 0.05f * (float)(rand() % 400 - 200) / 20.0f + (float)(rand() % 1000) * 1e-6f;
        d->dy[i] = (float)(rand() % 2001 - 1000) / 1000.0f;
        d->alpha[i] = (float)(rand() % 2001 - 1000) / 100.0f; /* σ(α) from ~0 to ~1 */
    }
    d->alpha[3] = 0.0f, d->x[5] = 0.0f, d->dy[9] = 0.0f;
}

static int same_bits(const float *a, const float *b, int n) {
    return memcmp(a, b, sizeof(float) * (size_t)n) == 0;
}

TEST(adaround_avx512_loops_match_scalar) {
    if (!has_avx512()) test_skip("this CPU has no AVX-512F (only the scalar loops run)");
#ifdef HAVE_ADA16
    static ada_data d;
    fill(&d);
    const float s = 0.05f, z = 4.0f, qlo = 0, qhi = 7;
    static float y16[N], h16[N], a16[N], y1[N], h1[N], a1[N];
    CHECK_EQ(ada_fwd_soft16(y16, d.x, d.alpha, h16, a16, N, s, z, qlo, qhi), (int64_t)N);
    for (int i = 0; i < N; i += 15) /* runs of < 16: the scalar loop */
        ada_fwd_soft(y1 + i, d.x + i, d.alpha + i, h1 + i, a1 + i, N - i < 15 ? N - i : 15, s, z, qlo, qhi);
    CHECK(same_bits(y16, y1, N));
    CHECK(same_bits(h16, h1, N));
    CHECK(same_bits(a16, d.alpha, N));
    CHECK_EQ(ada_fresh(d.alpha, a1, N), 1);
    CHECK_EQ(ada_fresh(d.alpha, a1, N - 3), 1); /* a part block at the end */
    const float last = a1[N - 1];
    a1[N - 1] = nextafterf(last, 1e9f); /* one ulp, in the last block's last place */
    CHECK_EQ(ada_fresh(d.alpha, a1, N), 0);
    CHECK_EQ(ada_fresh(d.alpha, a1, N - 1), 1);
    a1[N - 1] = last;
    a1[700] = NAN; /* no forward yet */
    CHECK_EQ(ada_fresh(d.alpha, a1, N), 0);
    int lo = 0, hi = 0, mid = 0;
    for (int i = 0; i < N; i++) lo += h1[i] < 0, hi += h1[i] > 1, mid += h1[i] >= 0 && h1[i] <= 1;
    CHECK_MSG(lo > 20 && hi > 20 && mid > 20, "h below 0: %d, above 1: %d, inside: %d", lo, hi, mid);

    static float g16[N], g1[N], dx16[N], dx1[N];
    CHECK_EQ(ada_bwd_soft16(d.x, d.dy, dx16, h1, g16, N, s, z, qlo, qhi), (int64_t)N);
    for (int i = 0; i < N; i += 15)
        ada_bwd_soft(d.x + i, d.dy + i, dx1 + i, h1 + i, g1 + i, N - i < 15 ? N - i : 15, s, z, qlo, qhi);
    CHECK(same_bits(g16, g1, N));
    CHECK(same_bits(dx16, dx1, N));
    int clipped = 0;
    for (int i = 0; i < N; i++) clipped += dx1[i] == 0 && d.dy[i] != 0;
    CHECK_MSG(clipped > 20, "only %d weights outside the grid", clipped);

    for (int beta = 2; beta <= 20; beta += 18) {
        static float r16[N], r1[N];
        memset(r16, 0, sizeof r16), memset(r1, 0, sizeof r1);
        float lane[16] = {0};
        CHECK_EQ(ada_reg16(h1, r16, N, (float)beta, 0.01f, lane), (int64_t)N);
        double l16 = 0, l1 = 0;
        for (int l = 0; l < 16; l++) l16 += lane[l];
        for (int i = 0; i < N; i += 15) l1 += ada_reg(h1 + i, r1 + i, N - i < 15 ? N - i : 15, (float)beta, 0.01f);
        CHECK(same_bits(r16, r1, N));
        CHECK_NEAR(l16, l1, 1e-6 * l1);
    }
#endif
}
