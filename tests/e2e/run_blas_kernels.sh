# run_blas_kernels.sh — results depend on the OpenBLAS kernels (VITQ_BLAS_CORETYPE) as on the thread count,
# so both are treated alike: a stored shared stage computed with other kernels is not loaded (the stage key
# holds the kernels' name), and a rerun refuses, in one line naming the cell and both kernels (or both thread
# counts), to skip a done cell computed with others, before any cell runs; --force recomputes. Skipped where
# OpenBLAS cannot switch kernels (vitq --version names the same kernels for both choices).
. tests/e2e/run_common.inc
case "$BUILD" in
/*) export VITQ_PLUGIN_PATH="$BUILD/tests/plugins" ;;
*) export VITQ_PLUGIN_PATH="$ROOT/$BUILD/tests/plugins" ;;
esac
K1=Nehalem K2=Sandybridge
core() { VITQ_BLAS_CORETYPE=$1 "$VITQ" --version 2>/dev/null | sed -n 's/^OpenBLAS kernels: \([^ ]*\).*/\1/p'; }
[ "$(core $K1)" = $K1 ] && [ "$(core $K2)" = $K2 ] || { echo "OpenBLAS cannot switch to $K1 and $K2 here"; exit 77; }

# 1. A stored stage: cell p=0.25 calibrates (stored for the 2 other cells), then dies in evaluation.
ini() { # ini FILE OUTPUT
    cat >"$1" <<INI
[run]
output = $2
threads = 1
baseline = false
calib_mode = float

[model]
path = $MODEL

[data]
eval_limit = 100
calib_size = 32

[quantizer weights]
taps = blocks.*.weight
plugin = uniform
bits = 4

[quantizer die]
taps = head.input
plugin = die_on_marker
marker = $T/die

[pass noop_pass]
drop_prob = \${p}

[grid]
p = 0.25, 0.5, 0.75
INI
}
killed_then_resumed() { # killed_then_resumed OUTPUT KERNELS_OF_THE_RESUME: the resume's log on stdout
    ini "$T/s.ini" "$1"
    touch "$T/die"
    VITQ_BLAS_CORETYPE=$K1 "$VITQ" run "$T/s.ini" >/dev/null 2>"$T/killed.log" && fail "the run was not killed"
    ls "$1"/stages/*.h5 >/dev/null 2>&1 || { cat "$T/killed.log"; fail "no stored stage after the kill"; }
    rm "$T/die"
    VITQ_BLAS_CORETYPE=$2 "$VITQ" run "$T/s.ini" 2>&1 >/dev/null || fail "the resume with $2 failed"
}
same=$(killed_then_resumed "$T/same" $K1 | grep -c 'calibrate: loaded from' || true)
[ "$same" = 3 ] || fail "with the same kernels all 3 cells should load the stored calibration, $same did"
other=$(killed_then_resumed "$T/other" $K2 | grep -c 'calibrate: loaded from' || true)
[ "$other" = 2 ] || fail "with other kernels the first cell must calibrate anew ($other cells loaded a stage)"

# 2. Done cells: a rerun with other kernels or another thread count refuses, before any cell runs.
write_ini "$T/g.ini" "$T/out" 100 8
VITQ_BLAS_CORETYPE=$K1 "$VITQ" run "$T/g.ini" -q >/dev/null 2>"$T/log1" || { cat "$T/log1"; fail "first run"; }
stat -c '%i %Y %n' "$T"/out/cells/*.h5 >"$T/stat1"
sleep 1.1
VITQ_BLAS_CORETYPE=$K2 "$VITQ" run "$T/g.ini" >/dev/null 2>"$T/log2" && fail "a rerun with other kernels ran"
[ $? = 1 ] || fail "exit $?, expected 1"
err=$(grep '^vitq: error:' "$T/log2")
[ "$(echo "$err" | wc -l)" = 1 ] || { cat "$T/log2"; fail "expected one error line"; }
echo "$err" | grep -q "out/cells/fp32.h5: cell fp32 was computed with the OpenBLAS $K1 kernels, this run has $K2" ||
    { cat "$T/log2"; fail "the error names not the cell and both kernels"; }
grep -q 'already done\|: done ' "$T/log2" && fail "cells were skipped or run before the refusal"
VITQ_BLAS_CORETYPE=$K1 "$VITQ" run "$T/g.ini" --threads 2 >/dev/null 2>"$T/log3" && fail "a rerun with 2 threads ran"
grep -q 'cell fp32 was computed with 1 thread, this run has 2' "$T/log3" || { cat "$T/log3"; fail "threads error"; }
stat -c '%i %Y %n' "$T"/out/cells/*.h5 | diff - "$T/stat1" || fail "a refused rerun touched cell files"
VITQ_BLAS_CORETYPE=$K1 "$VITQ" run "$T/g.ini" 2>"$T/log4" >/dev/null || { cat "$T/log4"; fail "same-kernel rerun"; }
[ "$(grep -c 'already done, skipped' "$T/log4")" = 3 ] || { cat "$T/log4"; fail "same-kernel rerun did not skip"; }
VITQ_BLAS_CORETYPE=$K2 "$VITQ" run "$T/g.ini" --force -q >/dev/null 2>"$T/log5" || { cat "$T/log5"; fail "--force"; }
VITQ_BLAS_CORETYPE=$K2 "$VITQ" run "$T/g.ini" 2>"$T/log6" >/dev/null || { cat "$T/log6"; fail "rerun after --force"; }
[ "$(grep -c 'already done, skipped' "$T/log6")" = 3 ] || { cat "$T/log6"; fail "recomputed cells not skipped"; }
echo "ok: stage keys and done cells hold the kernels ($K1, $K2) and the thread count"
