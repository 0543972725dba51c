/* test_uq_kernels.c — plugins/uq_kernels.h: the fake quant's and the nearest-rounding backward's AVX-512
 * loops give the SSE2 / scalar loops' bits, on values that cross every branch (x/s below, inside and above
 * the grid, halves that round to even, dy of both signs, dx starting at −0), over runs that end inside a
 * flush window, and with a negative scale. The loops' arithmetic itself is checked against hand-derived
 * values through the plugin in test_uniform.c and test_aphq_quant.c. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#define ADA_GAMMA (-0.1f)
#define ADA_SPAN 1.2f
#include "../plugins/uq_kernels.h"

enum { N = 5000 };

static void fill(float *x, float *dy, float *dx, float s) {
    srand(11);
    for (int i = 0; i < N; i++) {
        x[i] = s * ((float)(rand() % 4001 - 2000) / 100.0f); /* x/s in [−20, 20]: beyond a 3-bit grid both ways */
        if (i % 7 == 0) x[i] = s * ((float)(rand() % 9) - 4.5f); /* exact halves: ties to even */
        dy[i] = (float)(rand() % 2001 - 1000) / 1000.0f;
        dx[i] = i % 5 == 0 ? -0.0f : (float)(rand() % 201 - 100) / 100.0f;
    }
}

TEST(uq_kernels_avx512_backward_matches_sse2) {
    if (!has_avx512()) test_skip("this CPU has no AVX-512F (only the SSE2 loops run)");
    static float x[N], dy[N], dx1[N], dx16[N];
    const float scales[2] = {0.05f, -0.05f}, zs[2] = {4.0f, -1.4f};
    const int64_t lens[4] = {N, 1024, 2048 + 37, 3000};
    int checked = 0;
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++)
            for (int l = 0; l < 4; l++) {
                fill(x, dy, dx1, scales[a]);
                memcpy(dx16, dx1, sizeof dx1);
                double t1 = uq_bwd_nearest(x, dy, dx1, lens[l], scales[a], zs[b], 0, 7, 0);
                double t16 = uq_bwd_nearest(x, dy, dx16, lens[l], scales[a], zs[b], 0, 7, 1);
                CHECK_MSG(memcmp(&t1, &t16, sizeof t1) == 0, "s %g z %g len %lld: scale gradient %.17g vs %.17g",
                          scales[a], zs[b], (long long)lens[l], t1, t16);
                CHECK_MSG(memcmp(dx1, dx16, sizeof dx1) == 0, "s %g z %g len %lld: dx differs", scales[a], zs[b],
                          (long long)lens[l]);
                checked++;
            }
    CHECK_EQ(checked, 16);
    /* and the SSE2 loop is the scalar reference's arithmetic, value by value (dx), up to the sum's order */
    fill(x, dy, dx1, 0.05f);
    memcpy(dx16, dx1, sizeof dx1);
    double ref = 0;
    for (int i = 0; i < N; i++) ref += (double)dy[i] * uq_bwd_nearest_one(x[i], dy[i], dx16 + i, 0.05f, 4.0f, 0, 7);
    double t = uq_bwd_nearest(x, dy, dx1, N, 0.05f, 4.0f, 0, 7, 1);
    int same = 1;
    for (int i = 0; i < N; i++) same &= dx1[i] == dx16[i]; /* == : −0 and +0 agree */
    CHECK(same);
    CHECK_NEAR(t, ref, 1e-4 * fabs(ref) + 1e-6);
}

TEST(uq_kernels_avx512_fake_quant_matches_scalar) {
    if (!has_avx512()) test_skip("this CPU has no AVX-512F (only the SSE2 loops run)");
    static float x[N], dy[N], dx[N], y[N];
    fill(x, dy, dx, 0.05f);
    fq_run(y, x, N, 0.05f, 4.0f, 0, 7);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        float want = fq(x[i], 0.05f, 4.0f, 0, 7);
        bad += memcmp(&want, y + i, sizeof want) != 0;
    }
    CHECK_EQ(bad, 0);
}
