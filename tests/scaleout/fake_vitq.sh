#!/bin/bash
# fake_vitq.sh — a stand-in for the `vitq run --shard` / `vitq merge` interface of issue 16, so the
# Slurm templates in experiments/slurm/ can be exercised before the real flags exist. Test-only.
#
#   fake_vitq.sh run FILE.ini --dry-run
#   fake_vitq.sh run FILE.ini --shard K/N --output DIR [--threads T]
#   fake_vitq.sh merge OUT RUN...
#
# FILE.ini needs `output = DIR` and `cells = C`. Cell i belongs to shard i mod N; a finished cell is
# DIR/cells/c<i> (written to a temp file, then renamed) and is skipped by a rerun. With
# FAKE_VITQ_HANG_CELL=i the shard owning cell i sleeps (until killed) before writing it.
set -euo pipefail
key() { sed -n "s/^$1 *= *//p" "$2" | head -n 1; }
case ${1:-} in
run)
    ini=$2; shift 2
    shard='' out='' threads=1 dry=0
    while [ $# -gt 0 ]; do
        case $1 in
            --dry-run) dry=1; shift ;;
            --shard) shard=$2; shift 2 ;;
            --output) out=$2; shift 2 ;;
            --threads) threads=$2; shift 2 ;;
            *) echo "vitq: error: unknown option '$1'" >&2; exit 2 ;;
        esac
    done
    c=$(key cells "$ini"); [ -n "$out" ] || out=$(key output "$ini")
    if [ $dry = 1 ]; then
        for ((i = 0; i < c; i++)); do echo "c$i cell=$i"; done
        echo "$c cells ($c grid, 0 baseline) -> $out; nothing run (--dry-run)"
        exit 0
    fi
    k=${shard%/*} n=${shard#*/}
    mkdir -p "$out/cells"
    echo "shard $k/$n task ${SLURM_ARRAY_TASK_ID:-} count ${SLURM_ARRAY_TASK_COUNT:-} threads $threads host $(hostname -s)" >>"$out/shard.log"
    for ((i = k; i < c; i += n)); do
        if [ -e "$out/cells/c$i" ]; then echo "skip c$i" >>"$out/shard.log"; continue; fi
        [ "${FAKE_VITQ_HANG_CELL:-}" = "$i" ] && sleep 300
        echo "cell $i by shard $k/$n" >"$out/cells/.c$i.tmp"
        mv "$out/cells/.c$i.tmp" "$out/cells/c$i"
        echo "done c$i" >>"$out/shard.log"
    done
    ;;
merge)
    out=$2; shift 2
    mkdir -p "$out/cells"
    for r in "$@"; do
        for f in "$r"/cells/c*; do
            [ -e "$f" ] || continue
            cp -p "$f" "$out/cells/.$(basename "$f").tmp" && mv "$out/cells/.$(basename "$f").tmp" "$out/cells/$(basename "$f")"
        done
    done
    ls "$out/cells" | wc -l >"$out/merged"
    echo "merged $# runs into $out: $(cat "$out/merged") cells"
    ;;
*) echo "usage: fake_vitq.sh run|merge ..." >&2; exit 2 ;;
esac
