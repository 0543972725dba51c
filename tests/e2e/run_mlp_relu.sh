# run_mlp_relu.sh — the mlp_relu pass in a run: a grid over two bit-widths with MR before calibration
# computes MR once (the second cell loads the first one's ReLU model: its stage key holds no quantizer
# setting) and gives the same numbers as a run of that cell alone; the checkpoint it saves says
# mlp_act = relu and evaluates; blocks trained side by side give the same model; mlp_relu after a pass that changed the model fails the cell in one line.
. tests/e2e/run_common.inc

ini() { # ini FILE OUTPUT BITS FIRST_PASS SECOND_PASS
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

[$4]
$(if [ "$4" = "pass mlp_relu" ]; then echo "images = 32"; echo "iters = 5"; echo "batch = 8"; echo "save = mr.safetensors"; else echo "bits = \${bits}"; echo "images = 32"; fi)

[$5]
$(if [ "$5" = "pass mlp_relu" ]; then echo "images = 32"; echo "iters = 5"; echo "batch = 8"; else echo "bits = \${bits}"; echo "images = 32"; fi)

[quantizer weights]
taps = blocks.*.weight
plugin = uniform
bits = \${bits}
granularity = per_channel

[quantizer acts]
taps = blocks.*.input
plugin = uniform
bits = \${bits}

[hist]
taps = blocks.0.mlp.fc2.input
bins = 16

[grid]
bits = $3
INI
}

ini "$T/both.ini" "$T/both" "8, 4" "pass mlp_relu" "pass repq"
"$VITQ" run "$T/both.ini" >"$T/both.md" 2>"$T/both.log" || { cat "$T/both.log"; fail "the MR run failed"; }
n=$(grep -c "mlp_relu: loaded from" "$T/both.log" || true)
[ "$n" = 1 ] || { cat "$T/both.log"; fail "expected the second bit-width to load the first one's MR model, saw $n loads"; }
# save = mr.safetensors is relative: inside the run's output folder, not the working directory
[ ! -e "$ROOT/mr.safetensors" ] || { rm -f "$ROOT/mr.safetensors"; fail "the MR model was saved in the working directory"; }
[ -f "$T/both/mr.safetensors" ] || fail "no MR model in the run's output folder ($T/both/mr.safetensors)"
"$VITQ" inspect "$T/both/mr.safetensors" 2>/dev/null | grep -qE '^ +mlp_act +relu +\(metadata\)' || fail "the saved MR model does not say mlp_act = relu"
"$VITQ" eval -q --model "$T/both/mr.safetensors" --limit 100 >"$T/eval.txt" 2>&1 || { cat "$T/eval.txt"; fail "the saved MR model does not evaluate"; }
grep -q '^top-1' "$T/eval.txt" || { cat "$T/eval.txt"; fail "no top-1 from the MR model"; }

ini "$T/one.ini" "$T/one" "4" "pass mlp_relu" "pass repq"
"$VITQ" run "$T/one.ini" -q >/dev/null 2>"$T/one.log" || { cat "$T/one.log"; fail "bits=4 alone failed"; }
"$VITQ" results "$T/both" --csv | grep '^4,' | cut -d, -f1-6 >"$T/a.csv"
"$VITQ" results "$T/one" --csv | grep '^4,' | cut -d, -f1-6 >"$T/b.csv"
[ -s "$T/a.csv" ] || fail "no bits=4 row"
diff "$T/a.csv" "$T/b.csv" || fail "the cell that loaded the shared MR model differs from the cell run alone"

# Blocks trained side by side (2 threads: one block per thread) give the numbers of one block at a time with
# its steps split over the 2 threads (parallel_blocks = 1): the saved ReLU models and the cells' results agree.
for pb in 0 1; do
    ini "$T/pb$pb.ini" "$T/pb$pb" "4" "pass mlp_relu" "pass repq"
    sed -i -e 's/^threads = 1$/threads = 2/' -e "s/^iters = 5$/iters = 5\nparallel_blocks = $pb/" "$T/pb$pb.ini"
    grep -q "^parallel_blocks = $pb" "$T/pb$pb.ini" || fail "the test INI did not get parallel_blocks"
    "$VITQ" run "$T/pb$pb.ini" -q >/dev/null 2>"$T/pb$pb.log" || { cat "$T/pb$pb.log"; fail "parallel_blocks = $pb failed"; }
    { "$VITQ" results "$T/pb$pb" --csv | cut -d, -f1-7 && "$VITQ" results "$T/pb$pb" --curves; } >"$T/pb$pb.csv" # not the seconds
done
cmp "$T/pb0/mr.safetensors" "$T/pb1/mr.safetensors" || fail "MR's model differs when blocks train side by side"
diff "$T/pb0.csv" "$T/pb1.csv" || fail "the results or MR's loss curves differ when blocks train side by side"
grep -q 'blocks.1.mlp/loss' "$T/pb0.csv" || { head "$T/pb0.csv"; fail "no MR loss curve of the last block"; }

ini "$T/late.ini" "$T/late" "4" "pass repq" "pass mlp_relu"
set +e
"$VITQ" run "$T/late.ini" -q >"$T/late.md" 2>"$T/late.log"
set -e
"$VITQ" results "$T/late" --csv | grep -q 'failed' || { cat "$T/late.log"; fail "mlp_relu after repq did not fail the cell"; }
"$VITQ" results "$T/late" --csv | grep -q 'put \[pass mlp_relu\] first' || { "$VITQ" results "$T/late" --csv; fail "no one-line reason"; }
echo "ok: MR computed once for two bit-widths, same numbers as alone and with blocks side by side, relu checkpoint, refused after repq"
