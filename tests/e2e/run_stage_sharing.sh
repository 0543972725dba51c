# run_stage_sharing.sh — stage sharing across cells: a grid whose 3 cells differ only in an
# after-calibration pass's parameter calibrates once (counted in the log: the two others load the first
# cell's calibrated state) and gives exactly the numbers the cells give when each runs alone (every
# cell's state computed by itself); the stored states go once every cell is done. A before-calibration
# pass shared by all cells is stored as a checkpoint and loaded likewise.
. tests/e2e/run_common.inc
case "$BUILD" in
/*) export VITQ_PLUGIN_PATH="$BUILD/tests/plugins" ;;
*) export VITQ_PLUGIN_PATH="$ROOT/$BUILD/tests/plugins" ;;
esac

ini() { # ini FILE OUTPUT ONLY_AXIS_VALUES
    cat >"$1" <<INI
[run]
output = $2
threads = 1
baseline = false
calib_mode = float

[model]
path = $MODEL

[data]
eval_limit = 300
calib_size = 32

[pass noop_prepass]
iters = 5

[quantizer weights]
taps = blocks.*.weight
plugin = uniform
bits = 4
granularity = per_channel

[quantizer acts]
taps = blocks.*.input
plugin = uniform
bits = 4

[pass noop_pass]
drop_prob = \${p}

[grid]
p = $3
INI
}

ini "$T/all.ini" "$T/all" "0.25, 0.5, 0.75"
"$VITQ" run "$T/all.ini" >"$T/all.md" 2>"$T/all.log" || { cat "$T/all.log"; fail "the shared run failed"; }
n=$(grep -c "calibrate: loaded from" "$T/all.log" || true)
[ "$n" = 2 ] || { cat "$T/all.log"; fail "expected 2 cells to load the calibration, saw $n"; }
m=$(grep -c "noop_prepass: loaded from" "$T/all.log" || true)
[ "$m" = 0 ] || fail "the calibration (deeper) should be what the later cells load, not the pre-pass"
[ ! -e "$T/all/stages" ] || { ls -R "$T/all/stages"; fail "stored stages remain after every cell is done"; }
for p in 0.25 0.5 0.75; do
    ini "$T/one.ini" "$T/one-$p" "$p"
    "$VITQ" run "$T/one.ini" -q >/dev/null 2>"$T/one.log" || { cat "$T/one.log"; fail "cell p=$p alone failed"; }
    ! grep -q "loaded from" "$T/one.log" || fail "a run of one cell shares nothing"
done
"$VITQ" results "$T/all" --csv | cut -d, -f1-7 | sort >"$T/a.csv"
for p in 0.25 0.5 0.75; do "$VITQ" results "$T/one-$p" --csv | tail -n +2 | cut -d, -f1-7; done | sort >"$T/b.csv"
grep -v "^p," "$T/a.csv" >"$T/a3.csv"
diff "$T/a3.csv" "$T/b.csv" || fail "shared and unshared cells give different numbers"
echo "ok: 3 cells, 1 calibration, the same numbers as 3 separate runs"
