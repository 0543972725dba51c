/* test.h — the smallest honest test framework (after redis's testhelp.h).
 * TEST(name) { ... } registers itself at load time, so each tests/test_*.c stands alone.
 * CHECK* record a failure with file:line and carry on. The runner (run.c) runs every test in its own
 * process, so a crash fails that test alone; it prints one line per test (ok / FAIL / skip) and ends with
 * "tests: N passed, N failed" (non-zero exit on any failure). A skipped test is never counted as passed.
 *
 * Prefer the checks that print both sides: CHECK_EQ (numbers), CHECK_STREQ (strings), CHECK_NEAR,
 * CHECK_STR_CONTAINS, CHECK_ALLCLOSE; one fact per check, not CHECK(a == b && c == d). */
#ifndef VITQ_TEST_H
#define VITQ_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "vitq.h"

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn, const char *file);
void test_failf(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Ends the current test as skipped (never passed), with a reason printed by the runner. */
void test_skip(const char *why) __attribute__((noreturn));
/* Max |a-b| / (atol + rtol*|b|) style comparison of n floats; prints the worst index on failure. */
int test_allclose(const char *file, int line, const char *what, const float *a, const float *b, long n,
                  double rtol, double atol);
/* Path of the build folder (env BUILD, default "build"). */
const char *test_build_dir(void);
/* A fresh empty temporary folder for this test (made by the runner, removed after the test ends). */
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

/* Both sides as text, by type: integers exactly, floating point with %.9g. */
void test_fmt_i(char *buf, long long v);
void test_fmt_u(char *buf, unsigned long long v);
void test_fmt_d(char *buf, double v);
#define TEST_FMT(buf, x)                                                             \
    _Generic((x), float: test_fmt_d, double: test_fmt_d, unsigned: test_fmt_u,       \
             unsigned long: test_fmt_u, unsigned long long: test_fmt_u,              \
             default: test_fmt_i)(buf, x)

/* a == b for numbers (integers, enums, floats compared exactly); prints both values. */
#define CHECK_EQ(a, b)                                                               \
    do {                                                                             \
        __typeof__(a) a_ = (a);                                                      \
        __typeof__(b) b_ = (b);                                                      \
        if (!((long double)a_ == (long double)b_)) { /* exact for any int64 / uint64 */ \
            char sa_[48], sb_[48];                                                   \
            TEST_FMT(sa_, a_);                                                       \
            TEST_FMT(sb_, b_);                                                       \
            test_failf(__FILE__, __LINE__, "%s == %s: %s vs %s", #a, #b, sa_, sb_);  \
        }                                                                            \
    } while (0)

/* Two strings equal (NULL is a failure); prints both. */
#define CHECK_STREQ(a, b)                                                            \
    do {                                                                             \
        const char *a_ = (a), *b_ = (b);                                             \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                       \
            test_failf(__FILE__, __LINE__, "%s == %s: '%s' vs '%s'", #a, #b,         \
                       a_ ? a_ : "(null)", b_ ? b_ : "(null)");                      \
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
