# swin_run.sh — the Swin fixture model (tests/fixtures/swin_tiny56.safetensors: 56x56x3, stages 14x14 with a
# shifted block and 7x7) through the command line: `vitq inspect` (architecture keys and derived stages), `vitq
# eval` on Fashion-MNIST (grey images to the RGB model with --convert-channels), and `vitq run` of a grid cell
# per (bits, softmax quantizer): weights and every linear input uniform (the patch-merging reduction input
# included), window-attention probabilities uniform or log2: calibration (sequential, and search), histograms,
# evaluation, results, plots; and experiments/aphq-swin-imagenet.ini validated with stand-ins.
. tests/e2e/run_common.inc

SWIN="$ROOT/tests/fixtures/swin_tiny56.safetensors"
"$VITQ" inspect "$SWIN" >"$T/inspect" 2>&1 || { cat "$T/inspect"; fail "inspect failed"; }
grep -q '^  depths         2,2 ' "$T/inspect" || fail "inspect: no depths line"
grep -q '^  window_size    7 ' "$T/inspect" || fail "inspect: no window_size line"
grep -q 'derived: stages 14x14x32 (2 blocks, 2 heads, window 7, shift 3 on odd blocks), 7x7x64' "$T/inspect" ||
    fail "inspect: no derived stages"
grep -q '0 not used by the model, 0 missing' "$T/inspect" || fail "inspect: tensors do not match"

"$VITQ" eval --model "$SWIN" --convert-channels --limit 64 --batch 32 -q >"$T/eval" 2>"$T/log" ||
    { cat "$T/log"; fail "eval failed"; }
grep -q '^model .*swin_tiny56.safetensors (swin, 10 classes)$' "$T/eval" || { cat "$T/eval"; fail "eval: no model line"; }
grep -q '^top-1 ' "$T/eval" || fail "eval: no top-1"

cat >"$T/swin.ini" <<INI
; a Swin grid: W/A bits x post-Softmax quantizer
[run]
output = $T/out
seed = 3
threads = 2

[model]
path = $SWIN

[data]
eval_limit = 64
batch = 32
calib_size = 16
convert_channels = true

[quantizer weights]
taps = layers.*.weight, head.fc.weight
plugin = uniform
bits = \${bits}
symmetric = true
granularity = per_channel

[quantizer inputs]
taps = layers.*.input, head.input
plugin = uniform
bits = \${bits}

[quantizer probs]
taps = layers.*.attn.probs
plugin = \${softmax}
bits = \${bits}

[hist]
taps = layers.0.blocks.1.attn.probs, layers.1.downsample.reduction.input
bins = 16

[grid]
bits = 8, 4
softmax = uniform, log2
INI
"$VITQ" run "$T/swin.ini" --dry-run >"$T/dry" 2>"$T/log" || { cat "$T/log"; fail "dry run failed"; }
tail -n 1 "$T/dry" | grep -q '^5 cells (4 grid, 1 baseline)' || { cat "$T/dry"; fail "dry run: wrong cell count"; }
"$VITQ" run "$T/swin.ini" >"$T/run" 2>"$T/log" || { cat "$T/log"; fail "run failed"; }
"$VITQ" results --csv "$T/out" >"$T/csv" || fail "results failed"
[ "$(grep -c ',done,' "$T/csv")" = 5 ] || { cat "$T/csv"; fail "not every cell done"; }
[ -f "$T/out/cells/bits=4,softmax=log2.h5" ] || { ls "$T/out/cells"; fail "no bits=4 log2 cell file"; }
# the histograms of the window probabilities and of the reduction input were recorded (and can be drawn)
"$VITQ" plot "$T/out" >"$T/plots" 2>"$T/log" || { cat "$T/log"; fail "plot failed"; }
grep -q 'hist_bits=4_softmax=log2__layers.1.downsample.reduction.input' "$T/plots" || { cat "$T/plots"; fail "no reduction histogram"; }
grep -q 'hist_bits=4_softmax=log2__layers.0.blocks.1.attn.probs' "$T/plots" || fail "no probs histogram"

# calib_mode = search (output-error-guided calibration, unit by unit over the Swin units, window taps captured
# per image)
sed -e "s|^output = .*|output = $T/out2|" -e 's|^seed = 3$|seed = 3\ncalib_mode = search|' "$T/swin.ini" >"$T/search.ini"
"$VITQ" run "$T/search.ini" --only 'bits=4,*' >/dev/null 2>"$T/log" || { cat "$T/log"; fail "search calibration run failed"; }
[ "$(ls "$T/out2/cells" | grep -c '^bits=4')" = 2 ] || { ls "$T/out2/cells"; fail "search run: not 2 cells"; }

# APHQ-ViT on Swin, a few iterations: MLP reconstruction of every Swin block (GELU -> ReLU, APH-weighted), then
# block reconstruction over the Swin units (patch_embed, each block, each patch merging, the head) with QDrop
# and AdaRound; every block's MLP and every unit records a loss curve and the cell is evaluated
cat >"$T/recon.ini" <<INI
[run]
output = $T/out3
seed = 3
threads = 2
calib_mode = search
[model]
path = $SWIN
[data]
eval_limit = 64
batch = 32
calib_size = 16
convert_channels = true
[quantizer weights]
taps = patch_embed.proj.weight, layers.*.weight, head.fc.weight
plugin = uniform
bits = \${bits}
granularity = per_channel
init = aphq
rounding = adaround
[quantizer inputs]
taps = layers.*.input, head.input
plugin = uniform
bits = \${bits}
init = aphq
learnable = true
[pass mlp_relu]
images = 32
iters = 6
batch = 8
importance = aph
[pass aph_recon]
images = 32
iters = 12
batch = 8
drop_prob = 0.5
[grid]
bits = 4
INI
"$VITQ" run "$T/recon.ini" >/dev/null 2>"$T/log" || { cat "$T/log"; fail "Swin reconstruction run failed"; }
"$VITQ" results --curves "$T/out3" >"$T/curves" || fail "results --curves failed"
for u in layers.0.blocks.0.mlp layers.1.blocks.1.mlp patch_embed layers.0.blocks.0 layers.0.blocks.1 layers.1.downsample layers.1.blocks.1 head; do
    grep -q "	$u/loss	" "$T/curves" || { head -5 "$T/curves"; fail "no reconstruction curve of unit $u"; }
done
"$VITQ" results --csv "$T/out3" | grep -q ',done,' || fail "the reconstructed Swin cell is not done"

# experiments/aphq-swin-imagenet.ini validates: its ImageNet checkpoints and data replaced by the fixture (under
# the three Swin names) and Fashion-MNIST, every key, plugin parameter and tap glob is checked against a Swin
grep -q '^path = checkpoints/${model}.safetensors$' "$ROOT/experiments/aphq-swin-imagenet.ini" ||
    fail "aphq-swin-imagenet.ini: checkpoints not in checkpoints/ as in the other ImageNet INIs"
mkdir "$T/models"
for n in swin_tiny_patch4_window7_224 swin_small_patch4_window7_224 swin_base_patch4_window7_224; do
    ln -s "$SWIN" "$T/models/$n.safetensors"
done
sed -e "s|^path = .*|path = $T/models/\${model}.safetensors|" \
    -e 's|^dataset = .*|dataset = fashion-mnist\nconvert_channels = true|' \
    "$ROOT/experiments/aphq-swin-imagenet.ini" >"$T/aphq.ini"
"$VITQ" run "$T/aphq.ini" --dry-run >"$T/aphq.dry" 2>"$T/log" || { cat "$T/log"; fail "aphq-swin-imagenet.ini does not validate"; }
tail -n 1 "$T/aphq.dry" | grep -q '^27 cells (24 grid, 3 baseline)' || { cat "$T/aphq.dry"; fail "aphq-swin-imagenet.ini: wrong cells"; }
echo "ok"
