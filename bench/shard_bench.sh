#!/usr/bin/env bash
# shard_bench.sh — the speed-up of sharding (issue 16): an 8-cell grid on the bundled vit-fmnist model
# (bits 8/6/4/3 x post-Softmax uniform/log2, no float baseline; EVAL_LIMIT test images, 64 calibration
# images per cell), run as 1 shard and as 2 shards at once, each process with 1 thread. Prints both wall
# times and their ratio; checks that the 2 shards merged equal the 1-shard run bit for bit.
#
#   bench/shard_bench.sh              (make bench-shard; VITQ=path/to/vitq, EVAL_LIMIT=N to change)
#
# The wall-clock ratio is near 2 only when two cores are free: on a machine others are using it measures
# the share of the machine the two shards got (the script prints the load average before and after). The
# CPU seconds of each process (user + sys) do not depend on the load: 1 shard's CPU time over the larger
# shard's is the speed-up two free cores would give.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VITQ=${VITQ:-$ROOT/build/vitq}
CELLCMP=${CELLCMP:-$(dirname "$VITQ")/tests/tools/cellcmp}
EVAL_LIMIT=${EVAL_LIMIT:-2000}
[ -x "$VITQ" ] || { echo "shard_bench: $VITQ not built (make)" >&2; exit 1; }
T=$(mktemp -d /tmp/vitq-shard-bench.XXXXXX)
trap 'rm -rf "$T"' EXIT

cat >"$T/g.ini" <<INI
[run]
output = $T/one
seed = 0
threads = 1
baseline = false
[model]
path = $ROOT/models/vit-fmnist.safetensors
[data]
eval_limit = $EVAL_LIMIT
batch = 100
calib_size = 64
[quantizer weights]
taps = blocks.*.weight
plugin = uniform
bits = \${bits}
symmetric = true
granularity = per_channel
[quantizer inputs]
taps = blocks.*.input
plugin = uniform
bits = \${bits}
[quantizer probs]
taps = blocks.*.attn.probs
plugin = \${softmax}
bits = \${bits}
[grid]
bits = 8, 6, 4, 3
softmax = uniform, log2
INI

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
echo "shard_bench: 8 cells, $EVAL_LIMIT images each, 1 thread per process, $(nproc) CPUs, load average$(cut -d' ' -f1-3 /proc/loadavg | sed 's/^/ /')"
"$VITQ" run "$T/g.ini" --dry-run -q >/dev/null # validation and page cache warm-up, not timed

# run K N OUT: one shard, its CPU seconds (user + sys) into OUT.cpu
run() {
    /usr/bin/time -f '%U %S' -o "$3.cpu" "$VITQ" run "$T/g.ini" --shard "$1/$2" --output "$3" --threads 1 -q \
        >/dev/null 2>"$3.log"
}
cpu() { awk '{ printf "%.2f", $1 + $2 }' "$1.cpu"; }
[ -x /usr/bin/time ] || { echo "shard_bench: /usr/bin/time not found (apt-get install time)" >&2; exit 1; }

t0=$(now)
run 0 1 "$T/one" || { cat "$T/one.log"; exit 1; }
t1=$(now)
run 0 2 "$T/s0" &
p0=$!
run 1 2 "$T/s1" &
p1=$!
wait $p0 && wait $p1 || { cat "$T"/s*.log; echo "shard_bench: a shard failed" >&2; exit 1; }
t2=$(now)
"$VITQ" merge -q "$T/two" "$T/s0" "$T/s1"
t3=$(now)

one=$(secs "$t0" "$t1") two=$(secs "$t1" "$t2") merge=$(secs "$t2" "$t3")
echo "1 shard : $one s"
echo "2 shards: $two s (both at once), merge $merge s"
awk -v a="$one" -v b="$two" -v m="$merge" 'BEGIN { printf "speed-up: %.2fx (%.2fx including the merge)\n", a / b, a / (b + m) }'
c1=$(cpu "$T/one") c2=$(cpu "$T/s0") c3=$(cpu "$T/s1")
echo "CPU (user + sys): 1 shard $c1 s; 2 shards $c2 s + $c3 s"
awk -v a="$c1" -v b="$c2" -v c="$c3" 'BEGIN { m = b > c ? b : c; printf "speed-up on 2 free cores (CPU-bound): %.2fx\n", a / m }'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -x "$CELLCMP" ]; then
    "$CELLCMP" "$T/one" "$T/two" >/dev/null && echo "results: 2 shards merged == 1 shard, cell by cell, bit for bit" ||
        { echo "shard_bench: merged shards differ from the single run" >&2; exit 1; }
fi
