# runner_selfcheck.sh — the test runner itself: a crashing test fails alone and the closing line still
# comes; a skipped test is printed and counted as skipped, never as passed; CHECK_EQ / CHECK_STREQ print
# both sides. Runs `tests/run runner_selfcheck` with VITQ_TEST_SELFCHECK=1 (see tests/test_runner.c).
set -euo pipefail
BUILD=${BUILD:-build}
out=$(VITQ_TEST_SELFCHECK=1 "$BUILD/tests/run" runner_selfcheck 2>&1) && { echo "$out"; echo "FAIL: exit 0"; exit 1; }
echo "$out"
fail() { echo "FAIL: $*" >&2; exit 1; }
# a plain build reports the signal; under AddressSanitizer the sanitizer catches it and exits non-zero
grep -Eq '^FAIL runner_selfcheck_crash .*\((crashed: signal 11|exit status [0-9]+: a sanitizer report)' <<<"$out" ||
    fail "crash not reported"
grep -q '^skip runner_selfcheck_skip' <<<"$out" || fail "skip not reported"
grep -q '^skipped: 1 (runner_selfcheck_skip)$' <<<"$out" || fail "skip not counted"
grep -q 'two == 2: 3 vs 2' <<<"$out" || fail "CHECK_EQ does not print both sides"
grep -q "== \"right\": 'left' vs 'right'" <<<"$out" || fail "CHECK_STREQ does not print both sides"
grep -q '^ok   runner_selfcheck_pass' <<<"$out" || fail "passing test not ok"
[ "$(tail -n 1 <<<"$out")" = "tests: 1 passed, 2 failed" ] || fail "closing line: $(tail -n 1 <<<"$out")"
echo ok
