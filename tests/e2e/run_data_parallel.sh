# run_data_parallel.sh — [run] data_parallel = true under `vitq run` at 2 threads (train/session_parts.c):
# - a folder whose cell was computed one batch at a time is not reused by a data-parallel run of the same
#   experiment (the key is in the cell's hash once on): the rerun computes the cell again;
# - its first loss is one batch's (the forward is row by row; drop_prob = 1: no QDrop mask), and its later
#   losses differ (the gradients are summed over the parts, so the updates round differently);
# - it is deterministic: a fresh data-parallel run gives the same cell, every dataset and attribute
#   (tests/tools/cellcmp);
# - a data-parallel run killed after its first committed unit and rerun resumes and ends with that cell too;
# - at 1 thread it warns that the units trained one batch at a time, and why;
# - a grid over data_parallel calibrates once (the key joins the stage keys at the first pass after calibration).
. tests/e2e/run_common.inc

write_dp_ini() { # FILE OUTPUT DATA_PARALLEL
    cat >"$1" <<INI
[run]
name = dp
output = $2
seed = 3
threads = 2
baseline = false
data_parallel = $3

[model]
path = $MODEL

[data]
eval_limit = 200
batch = 100
calib_size = 32

[quantizer weights]
taps = *.weight
plugin = uniform
bits = 4
granularity = per_channel
rounding = adaround

[quantizer acts]
taps = patch_embed.proj.input, blocks.*.input, blocks.*.attn.q, blocks.*.attn.k, blocks.*.attn.v, blocks.*.attn.probs, head.input
plugin = uniform
bits = 4
learnable = true

[pass aph_recon]
images = 64
iters = 30
batch = 16
lr_scale = 1e-3
record_every = 1
drop_prob = 1
INI
}
case "$BUILD" in
/*) CELLCMP="$BUILD/tests/tools/cellcmp" ;;
*) CELLCMP="$ROOT/$BUILD/tests/tools/cellcmp" ;;
esac
same_cells() { # A B: every dataset and attribute equal (shared_stage may differ after a resume)
    "$CELLCMP" "$1" "$2" >"$T/cmp" 2>&1 || true
    grep -q '^1 cells in A, 1 in B' "$T/cmp" || { cat "$T/cmp"; fail "cellcmp did not compare the cell"; }
    if grep ' differs$' "$T/cmp" | grep -v ': / attribute shared_stage differs$'; then fail "$3 (above)"; fi
}

write_dp_ini "$T/one.ini" "$T/a" false
"$VITQ" run "$T/one.ini" >/dev/null 2>"$T/log_one" || { cat "$T/log_one"; fail "one-batch run failed"; }
"$VITQ" results "$T/a" --curves >"$T/curves_one"
write_dp_ini "$T/dp.ini" "$T/a" true
"$VITQ" run "$T/dp.ini" >/dev/null 2>"$T/log_dp" || { cat "$T/log_dp"; fail "data-parallel run failed"; }
! grep -q 'already done, skipped' "$T/log_dp" || { cat "$T/log_dp"; fail "the one-batch cell was reused"; }
"$VITQ" results "$T/a" --curves >"$T/curves_dp"
! diff -q "$T/curves_one" "$T/curves_dp" >/dev/null || fail "data_parallel = true changed no loss: were the parts used?"
first() { awk -F'\t' '$2 == "patch_embed/loss" && $3 == 1 {print $4}' "$1"; }
[ -n "$(first "$T/curves_one")" ] || fail "no patch_embed/loss at iteration 1"
[ "$(first "$T/curves_one")" = "$(first "$T/curves_dp")" ] ||
    fail "the first loss differs: $(first "$T/curves_one") without data_parallel, $(first "$T/curves_dp") with it"

write_dp_ini "$T/fresh.ini" "$T/b" true
"$VITQ" run "$T/fresh.ini" >/dev/null 2>"$T/log_b" || { cat "$T/log_b"; fail "second data-parallel run failed"; }
same_cells "$T/a" "$T/b" "two data-parallel runs differ"

write_dp_ini "$T/kill.ini" "$T/k" true
STATE="$T/k/partial/default.h5"
"$VITQ" run "$T/kill.ini" >/dev/null 2>"$T/log_k" &
pid=$!
for _ in $(seq 1 1200); do # up to 60 s
    [ -n "$(ls "$T/k/partial/"*.h5 2>/dev/null)" ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.02
done
kill -KILL $pid 2>/dev/null || fail "the run ended before it could be killed"
wait $pid 2>/dev/null || true
[ -n "$(ls "$T/k/partial/"*.h5 2>/dev/null)" ] || { cat "$T/log_k"; fail "no resume state before the kill"; }
"$VITQ" run "$T/kill.ini" >/dev/null 2>"$T/log_r" || { cat "$T/log_r"; fail "resume failed"; }
grep -q 'resuming after its [1-9][0-9]* committed unit' "$T/log_r" || { cat "$T/log_r"; fail "the rerun did not resume"; }
same_cells "$T/k" "$T/b" "a resumed data-parallel run differs from an uninterrupted one"

"$VITQ" run "$T/fresh.ini" --threads 1 --output "$T/one_thread" >/dev/null 2>"$T/log_1" || { cat "$T/log_1"; fail "1-thread run failed"; }
grep -q "data_parallel: 4 of 4 unit(s) trained one batch at a time (1 thread)" "$T/log_1" ||
    { cat "$T/log_1"; fail "no warning that data_parallel fell back at 1 thread"; }

sed -e 's/^data_parallel = true$/data_parallel = ${dp}/' "$T/fresh.ini" >"$T/grid.ini"
printf '[grid]\ndp = false, true\n' >>"$T/grid.ini"
"$VITQ" run "$T/grid.ini" --output "$T/g" >/dev/null 2>"$T/log_g" || { cat "$T/log_g"; fail "grid over data_parallel failed"; }
grep -q 'calibrate.*loaded from .*computed by another cell' "$T/log_g" ||
    { cat "$T/log_g"; fail "the grid over data_parallel did not share its calibration"; }
echo "ok"
