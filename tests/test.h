/* test.h — the smallest honest test framework (after redis's testhelp.h).
 * TEST(name) { ... } registers itself at load time, so each tests/test_*.c stands alone.
 * CHECK* record a failure with file:line and carry on; the runner prints one line per failing test
 * and ends with "tests: N passed, N failed" (non-zero exit on any failure). */
#ifndef VITQ_TEST_H
#define VITQ_TEST_H

#include <math.h>
#include <stdio.h>

#include "../harness/vitq.h"

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn, const char *file);
void test_failf(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Max |a-b| / (atol + rtol*|b|) style comparison of n floats; prints the worst index on failure. */
int test_allclose(const char *file, int line, const char *what, const float *a, const float *b, long n,
                  double rtol, double atol);
/* Path of the build folder (env BUILD, default "build") and of a file under it. */
const char *test_build_dir(void);
/* A fresh empty temporary folder for this test (removed at exit). */
const char *test_tmpdir(void);

#define TEST(name)                                                                   \
    static void name(void);                                                          \
    __attribute__((constructor)) static void register_##name(void) {                 \
        test_register(#name, name, __FILE__);                                        \
    }                                                                                \
    static void name(void)

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) test_failf(__FILE__, __LINE__, "CHECK(%s)", #cond);             \
    } while (0)

#define CHECK_MSG(cond, ...)                                                         \
    do {                                                                             \
        if (!(cond)) test_failf(__FILE__, __LINE__, __VA_ARGS__);                    \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                        \
    do {                                                                             \
        double a_ = (double)(a), b_ = (double)(b);                                   \
        if (!(fabs(a_ - b_) <= (tol)))                                               \
            test_failf(__FILE__, __LINE__, "%s = %.9g, expected %s = %.9g (tol %g)", \
                       #a, a_, #b, b_, (double)(tol));                               \
    } while (0)

#define CHECK_STR_CONTAINS(hay, needle)                                              \
    do {                                                                             \
        const char *h_ = (hay), *n_ = (needle);                                      \
        if (!h_ || !strstr(h_, n_))                                                  \
            test_failf(__FILE__, __LINE__, "'%s' does not contain '%s'", h_ ? h_ : "(null)", n_); \
    } while (0)

#define CHECK_ALLCLOSE(a, b, n, rtol, atol) test_allclose(__FILE__, __LINE__, #a, a, b, n, rtol, atol)

#endif
