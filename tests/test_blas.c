/* test_blas.c — the choice of OpenBLAS kernels (kernels/blas.c): the decision table of
 * VITQ_BLAS_CORETYPE against the environment and the CPU, and the self-check on the kernels this test
 * runs with (the environment's). The re-execution itself is exercised by every e2e test that starts the
 * `vitq` command. */
#include "test.h"

TEST(blas_target_decision) {
    /* auto: SkylakeX on AVX-512 CPUs unless already so */
    CHECK_STREQ(vitq_blas_target("auto", "Haswell", "Haswell", 1), "SkylakeX");
    CHECK_STREQ(vitq_blas_target(NULL, NULL, "Haswell", 1), "SkylakeX");
    CHECK(vitq_blas_target("auto", "Haswell", "Haswell", 0) == NULL);      /* no AVX-512: the environment's */
    CHECK(vitq_blas_target("auto", "skylakex", "SkylakeX", 1) == NULL);    /* already (any case) */
    CHECK(vitq_blas_target("auto", NULL, "SkylakeX", 1) == NULL);          /* OpenBLAS chose it itself */
    /* env: never change anything */
    CHECK(vitq_blas_target("env", "Haswell", "Haswell", 1) == NULL);
    CHECK(vitq_blas_target("ENV", NULL, "Zen", 1) == NULL);
    /* a name: that core, whatever the CPU */
    CHECK_STREQ(vitq_blas_target("Haswell", "SkylakeX", "SkylakeX", 1), "Haswell");
    CHECK(vitq_blas_target("Haswell", "Haswell", "Haswell", 1) == NULL);
}

TEST(blas_selfcheck_passes_on_these_kernels) {
    double worst = -1;
    CHECK_EQ(vitq_blas_selfcheck(&worst), VITQ_OK);
    CHECK(worst >= 0 && worst <= 1.0);
    printf("  %s kernels: worst error %.3g of the bound\n", vitq_blas_core(), worst);
}
