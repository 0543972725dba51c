/* test_runner.c — the runner's own behaviour, driven by tests/e2e/runner_selfcheck.sh, which runs
 * `tests/run runner_selfcheck` with VITQ_TEST_SELFCHECK=1: then one test crashes, one skips, one fails an
 * equality check and one passes, and the script reads the verdict lines. Without the variable (a normal
 * `make check`) all four simply pass. */
#include "test.h"

#include <signal.h>
#include <stdlib.h>

static int selfcheck(void) { return getenv("VITQ_TEST_SELFCHECK") != NULL; }

TEST(runner_selfcheck_crash) {
    if (selfcheck()) raise(SIGSEGV);
}

TEST(runner_selfcheck_skip) {
    if (selfcheck()) test_skip("asked to by the self-check");
}

TEST(runner_selfcheck_equality) {
    int two = selfcheck() ? 3 : 2;
    CHECK_EQ(two, 2);
    CHECK_STREQ(selfcheck() ? "left" : "right", "right");
}

TEST(runner_selfcheck_pass) { CHECK_EQ(1 + 1, 2); }
