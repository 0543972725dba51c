# models/vit-fmnist-stage1.png — training curve written by vitq 0.1.0 (vitq train); data: ARG1, output: ARG2
# re-draw: gnuplot -c models/vit-fmnist-stage1.gp models/vit-fmnist-stage1.tsv models/vit-fmnist-stage1.png
set terminal pngcairo size 1000,600 font "DejaVu Sans,11"
set output ARG2
set datafile separator "\t"
set title "vit-fmnist on fashion-mnist: 20 epochs, test top-1 89.74%" noenhanced
set xlabel "epoch"
set ylabel "train loss (label-smoothed cross-entropy)"
set y2label "test top-1 (%)"
set ytics nomirror
set y2tics
set grid
set key center right
plot ARG1 using 1:2 with linespoints lw 2 title "train loss" axes x1y1, \
     ARG1 using 1:($3 >= 0 ? $3 : NaN) with linespoints lw 2 title "test top-1" axes x1y2
