# aiqvit-ranks.gp — lowrank_nas's chosen ranks by depth and by layer type (the "architecture-informed" claim of
# AIQViT, specs/aiqvit.md §4.4 "Logging"), and alpha's entropy when the search switched, for one cell of a run.
# lowrank_nas records them as curves: <type>/rank_by_depth and <type>/alpha_entropy_by_depth (type = qkv, proj,
# fc1, fc2, ...; step = the block's index); `vitq plot` also draws each as a figure of its own. Usage:
#     vitq results --curves results/aiqvit-fmnist > ranks.tsv
#     gnuplot -c experiments/aiqvit-ranks.gp ranks.tsv 'bits=3,config=dfq_clamp.search.cl' ranks.png
# ARG1: the tab-separated curves (cell_id, curve, step, value); ARG2: the cell id; ARG3: the PNG to write.
if (ARGC < 3) {
    print "usage: gnuplot -c aiqvit-ranks.gp CURVES.tsv CELL_ID OUT.png"
    exit
}
set terminal pngcairo noenhanced size 1200,500 font "DejaVu Sans,11"
set output ARG3
set datafile separator "\t"
types = "qkv proj fc1 fc2 reduction head patch_embed qkv.q qkv.k qkv.v"
sel(curve) = sprintf("< awk -F'\t' -v c='%s' -v k='%s' '$1 == c && $2 == k' '%s'", ARG2, curve, ARG1)
has(curve) = system(sprintf("awk -F'\t' -v c='%s' -v k='%s' '$1 == c && $2 == k' '%s' | head -1 | wc -l", ARG2, curve, ARG1)) + 0
shown = ""
do for [t in types] { if (has(t."/rank_by_depth")) { shown = shown." ".t } }
if (shown eq "") {
    print sprintf("no <type>/rank_by_depth curves for cell '%s' in %s", ARG2, ARG1)
    exit
}
set multiplot layout 1,2 title sprintf("lowrank_nas, cell %s", ARG2)
set key outside right top
set grid
set xlabel "block (depth)"
set xtics 1
set ylabel "chosen rank"
set yrange [0:*]
set title "chosen rank by depth and layer type"
plot for [t in shown] sel(t."/rank_by_depth") using 3:4 with linespoints lw 2 pt 7 title t
set ylabel "alpha entropy at the switch (nats)"
set title "search: alpha's entropy (ln K = uniform)"
plot for [t in shown] sel(t."/alpha_entropy_by_depth") using 3:4 with linespoints lw 2 pt 7 title t
unset multiplot
