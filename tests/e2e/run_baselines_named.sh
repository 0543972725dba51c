# run_baselines_named.sh — a grid over two models with baseline = true: each float baseline is named by
# the grid value that picks its model ("fp32,m=final"), in the --dry-run list, the table (that value in
# its axis column), the CSV's cell_id and the plot's column (its legend).
. tests/e2e/run_common.inc

cat >"$T/m.ini" <<INI
[run]
output = $T/out
threads = 1

[model]
path = \${mp}

[data]
eval_limit = 50
calib_size = 8

[quantizer weights]
taps = blocks.*.weight
plugin = uniform
bits = \${bits}

[grid]
m = final, stage1
bits = 8, 4

[m = final]
mp = $MODEL

[m = stage1]
mp = $ROOT/models/vit-fmnist-stage1.safetensors
INI
"$VITQ" run "$T/m.ini" --dry-run >"$T/dry" 2>"$T/log" || { cat "$T/log"; fail "dry run failed"; }
head -n 2 "$T/dry" | tr -s ' ' >"$T/dry2"
printf 'fp32,m=final float baseline (no quantizers)\nfp32,m=stage1 float baseline (no quantizers)\n' |
    diff - "$T/dry2" || fail "dry-run baseline lines"
"$VITQ" run "$T/m.ini" >"$T/table" 2>"$T/log" || { cat "$T/log"; fail "run failed"; }
sed -n 3,4p "$T/table" | cut -d'|' -f2-4 | tr -s ' ' >"$T/rows"
printf ' final | - | done \n stage1 | - | done \n' | diff - "$T/rows" || { cat "$T/table"; fail "table baseline rows"; }
"$VITQ" results --csv "$T/out" | cut -d, -f1-5 | sed -n 2,3p >"$T/csv"
printf -- '-,-,"fp32,m=final",done\n-,-,"fp32,m=stage1",done\n' | diff - "$T/csv" || fail "csv baseline rows"
"$VITQ" plot "$T/out" >/dev/null 2>"$T/plot.log" || true # the .tsv is written before gnuplot draws
head -n 1 "$T/out/plots/top1_vs_bits.tsv" | grep -q $'\tfp32,m=final\tfp32,m=stage1$' ||
    { cat "$T/plot.log"; fail "the plot's columns (its legend) do not name the baselines"; }
echo "ok"
