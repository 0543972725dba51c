# scaleout_merge_checkpoint.sh — vitq merge refuses shards computed on different checkpoints at the same
# path (issue 16, with issue 11's checkpoint SHA-256 in every cell): shard 0/2 runs, the checkpoint file
# is replaced by a different one (one weight's low mantissa byte changed), shard 1/2 runs, and the merge
# must refuse with one line naming the model path. merge.c compares every cell attribute whose name ends
# in "sha256" (the cells' checkpoint_sha256) between cells that read the same [model] path. Should cells
# ever lack such an attribute the refusal cannot happen: the test then SKIPS saying so (and FAILS if they
# hold a hash under a name the merge does not compare).
. tests/e2e/scaleout_common.inc

cp "$MODEL" "$T/m.safetensors"
MODEL=$T/m.safetensors
write_grid "$T/g.ini" "$T/out"
"$VITQ" run "$T/g.ini" --shard 0/2 --output "$T/s0" -q >/dev/null 2>"$T/log0" || { cat "$T/log0"; fail "shard 0/2"; }
size=$(stat -c %s "$MODEL")
old=$(od -An -tu1 -j $((size - 4)) -N1 "$MODEL" | tr -d ' ')
printf "$(printf '\\%03o' $(((old + 1) % 256)))" | dd of="$MODEL" bs=1 seek=$((size - 4)) conv=notrunc status=none
cmp -s "$MODEL" "$ROOT/tests/fixtures/vit_fmnist.safetensors" && fail "the checkpoint was not changed"
"$VITQ" run "$T/g.ini" --shard 1/2 --output "$T/s1" -q >/dev/null 2>"$T/log1" || { cat "$T/log1"; fail "shard 1/2"; }

set +e
"$VITQ" merge "$T/m" "$T/s0" "$T/s1" 2>"$T/err"
rc=$?
set -e
cat "$T/err"
if [ $rc = 1 ]; then
    [ "$(nlines "$T/err")" = 1 ] || fail "refusal is not one line"
    grep -q "^vitq: error: merge: .* were computed on different checkpoints of $MODEL (.*sha256 [0-9a-f]* vs [0-9a-f]*)$" "$T/err" ||
        fail "refusal does not name the checkpoint and its hashes"
    [ ! -e "$T/m/run.h5" ] || fail "a refused merge wrote an index"
    echo ok
    exit 0
fi
[ $rc = 0 ] || fail "merge: exit $rc"
if grep -aqi sha256 "$T"/s0/cells/*.h5; then
    fail "cells hold a sha256 field but vitq merge did not compare it (merge.c compares attributes named *sha256)"
fi
echo "cells do not store the checkpoint's SHA-256: a checkpoint replaced between shards is not detected by vitq merge"
exit 77
