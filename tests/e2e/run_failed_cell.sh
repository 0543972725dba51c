# run_failed_cell.sh — a cell whose plugin fails during evaluation is recorded as failed (status and the
# plugin's message in its cell file and the summary), the grid goes on, the exit status is 1, a rerun
# retries only the failed cell; --fail-fast stops at the first failure. The failing plugin is built here.
. tests/e2e/run_common.inc

mkdir -p "$T/plugins"
cat >"$T/flaky.c" <<'C'
#include "vitq_plugin.h"
#include <stdlib.h>
#include <string.h>
typedef struct { int fail; } flaky_params;
typedef struct { const flaky_params *p; const vitq_host *h; } flaky;
static const vitq_param table[] = {
    {.name = "fail", .type = VITQ_P_BOOL, .offset = 0, .def = "false", .help = "fail in forward"},
};
static void *create(const void *params, const vitq_tap *tap, const vitq_host *host) {
    (void)tap;
    flaky *q = calloc(1, sizeof *q);
    if (q) q->p = params, q->h = host;
    return q;
}
static int observe(void *q, const vitq_view *x) { (void)q, (void)x; return 0; }
static int forward(void *qq, const vitq_view *x, vitq_view *y) {
    flaky *q = qq;
    if (q->p->fail) return q->h->fail(q->h, VITQ_EINVAL, "deliberate failure for the test");
    if (y->data != x->data) memcpy(y->data, x->data, sizeof(float) * (size_t)vitq_view_numel(x));
    return 0;
}
static void destroy(void *q) { free(q); }
static const vitq_quantizer_ops ops = {.size = sizeof(vitq_quantizer_ops), .create = create, .observe = observe,
                                       .forward = forward, .destroy = destroy};
static const vitq_plugin d = {.abi = VITQ_PLUGIN_ABI, .size = sizeof(vitq_plugin), .name = "flaky", .version = "1",
                              .summary = "fails on demand", .kind = VITQ_PLUGIN_QUANTIZER, .params = table,
                              .n_params = 1, .params_size = sizeof(flaky_params), .quantizer = &ops};
VITQ_PLUGIN_EXPORT const vitq_plugin *vitq_plugin_entry(void) { return &d; }
C
cc -std=c11 -O1 -fPIC -shared -I"$ROOT/harness" -o "$T/plugins/flaky.so" "$T/flaky.c" || fail "cannot build the test plugin"
export VITQ_PLUGIN_PATH="$T/plugins"

cat >"$T/f.ini" <<INI
[run]
output = $T/out
threads = 1
[model]
path = $MODEL
[data]
eval_limit = 100
calib_size = 8
batch = 50
[quantizer probs]
taps = blocks.*.attn.probs
plugin = flaky
fail = \${fail}
[grid]
fail = yes, no
INI

set +e
"$VITQ" run "$T/f.ini" >"$T/table" 2>"$T/log"
rc=$?
set -e
[ $rc = 1 ] || { cat "$T/log"; fail "exit $rc with a failed cell, expected 1"; }
grep -q 'cell 2/3 fail=yes: FAILED: .*deliberate failure for the test' "$T/log" || { cat "$T/log"; fail "no FAILED line"; }
grep -q 'cell 3/3 fail=no: done' "$T/log" || fail "the grid did not go on after the failure"
[ -f "$T/out/cells/fail=yes.h5" ] || fail "failed cell not recorded"
"$VITQ" results --csv "$T/out" >"$T/csv"
grep -q '^yes,fail=yes,failed,.*deliberate failure for the test' "$T/csv" || { cat "$T/csv"; fail "failed row missing in summary"; }
grep -q '^no,fail=no,done,' "$T/csv" || fail "done row missing"

# rerun: only the failed cell runs again
set +e
"$VITQ" run "$T/f.ini" >/dev/null 2>"$T/log2"
set -e
[ "$(grep -c 'already done, skipped' "$T/log2")" = 2 ] || { cat "$T/log2"; fail "rerun should skip 2 cells"; }
grep -q 'cell 2/3 fail=yes: FAILED' "$T/log2" || fail "failed cell not retried"

# --fail-fast: stops at the failing cell; the cell after it never runs
sed "s|^output = .*|output = $T/ff|" "$T/f.ini" >"$T/ff.ini"
set +e
"$VITQ" run "$T/ff.ini" --fail-fast >/dev/null 2>"$T/log3"
rc=$?
set -e
[ $rc = 1 ] || fail "--fail-fast exit $rc"
[ ! -e "$T/ff/cells/fail=no.h5" ] || fail "--fail-fast ran the cell after the failure"
[ -f "$T/ff/cells/fail=yes.h5" ] || fail "--fail-fast did not record the failed cell"
echo ok
