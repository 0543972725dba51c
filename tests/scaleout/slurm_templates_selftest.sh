#!/usr/bin/env bash
# slurm_templates_selftest.sh — experiments/slurm/{submit.sh,run_array.sbatch,merge.sbatch} on the
# local one-node cluster (slurm_local.sh), with tests/scaleout/fake_vitq.sh standing in for the
# `vitq run --shard` / `vitq merge` flags until they exist:
#   1. submit.sh FILE.ini 4: 4 shards x 2 cells, the merge job after them: 8 cells in OUT;
#   2. a shard hangs and is scancel'ed: the merge is cancelled (invalid dependency); resubmitting
#      only that task (--tasks 1) runs shard 1/4 again (not 1/1), skips its finished cell, merges.
# Exit 0 pass, 1 fail, 77 skipped (reason printed by slurm_local.sh).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SL=$ROOT/tests/scaleout/slurm_local.sh
export VITQ_SLURM_DIR=${VITQ_SLURM_DIR:-$(mktemp -u /tmp/vitq-slurm-selftest.XXXXXX)}
W=$(mktemp -d /tmp/vitq-slurm-work.XXXXXX)
trap '"$SL" stop; rm -rf "$W"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
wait_jobs() {
    for _ in $(seq 300); do
        [ -z "$(squeue -h -j "$1" -t PD,R,CG,CF -o %i 2>/dev/null)" ] && return 0
        sleep 0.2
    done
    fail "jobs $1 still queued after 60 s"
}
state() { scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -n 1 | cut -d= -f2; }
t0=$(date +%s.%N)

"$SL" start
rc=$?
[ $rc = 77 ] && exit 77
[ $rc = 0 ] || fail "slurm_local.sh start exit $rc"
eval "$("$SL" env)"
export VITQ=$ROOT/tests/scaleout/fake_vitq.sh
printf 'output = %s\ncells = 8\n' "$W/res" >"$W/exp.ini"
cd "$W" || fail "cd $W"

# ---- 1. the whole grid
sub=$("$ROOT/experiments/slurm/submit.sh" exp.ini 4 -c 1 --mem=100M) || fail "submit.sh"
echo "$sub"
A=$(echo "$sub" | sed -n 's/^array job \([0-9]*\).*/\1/p') M=$(echo "$sub" | sed -n 's/^merge job \([0-9]*\).*/\1/p')
[ -n "$A" ] && [ -n "$M" ] || fail "no job ids in '$sub'"
wait_jobs "$A,$M"
[ "$(state "$M")" = COMPLETED ] || { cat "$W"/slurm-vitq-merge-*.out; fail "merge state $(state "$M")"; }
[ "$(cat "$W/res/merged")" = 8 ] || fail "merged $(cat "$W/res/merged") cells, not 8"
for k in 0 1 2 3; do
    grep -q "^shard $k/4 task $k count 4 threads 1 " "$W/res.shards/shard-$k-of-4/shard.log" || fail "shard $k log"
done
grep -h '^shard' "$W"/res.shards/*/shard.log | sed 's/^/  /'
cat "$W/slurm-vitq-merge-$M.out" | sed 's/^/  merge: /'
echo "ok: 4 shards, merge COMPLETED, 8 cells in res/"

# ---- 2. a hung shard is cancelled, then only that task is resubmitted
rm -rf "$W/res" "$W/res.shards"
sub=$(FAKE_VITQ_HANG_CELL=5 "$ROOT/experiments/slurm/submit.sh" exp.ini 4 -c 1 --mem=100M) || fail "submit.sh 2"
A=$(echo "$sub" | sed -n 's/^array job \([0-9]*\).*/\1/p') M=$(echo "$sub" | sed -n 's/^merge job \([0-9]*\).*/\1/p')
for _ in $(seq 100); do [ -e "$W/res.shards/shard-1-of-4/cells/c1" ] && break; sleep 0.2; done
sleep 0.5
scancel "${A}_1"
wait_jobs "$A,$M"
echo "  after scancel ${A}_1: $(for k in 0 1 2 3; do printf '%s=%s ' "${A}_$k" "$(state "${A}_$k")"; done)merge $M=$(state "$M")"
[ "$(state "${A}_1")" = CANCELLED ] && [ "$(state "$M")" = CANCELLED ] || fail "expected task 1 and merge CANCELLED"
[ ! -e "$W/res/merged" ] || fail "merge ran"
sub=$("$ROOT/experiments/slurm/submit.sh" --tasks 1 exp.ini 4 -c 1 --mem=100M) || fail "resubmit"
echo "$sub"
A=$(echo "$sub" | sed -n 's/^array job \([0-9]*\).*/\1/p') M=$(echo "$sub" | sed -n 's/^merge job \([0-9]*\).*/\1/p')
wait_jobs "$A,$M"
[ "$(state "$M")" = COMPLETED ] && [ "$(cat "$W/res/merged")" = 8 ] || fail "merge after the resubmission"
sed 's/^/  shard 1 log: /' "$W/res.shards/shard-1-of-4/shard.log"
grep -q '^shard 1/4 task 1 count 1 ' "$W/res.shards/shard-1-of-4/shard.log" && grep -q '^skip c1$' "$W/res.shards/shard-1-of-4/shard.log" ||
    fail "the resubmitted task did not run shard 1/4 skipping c1"
echo "ok: cancelled shard -> merge CANCELLED; --tasks 1 reran shard 1/4 (task count 1), skipped c1, merged 8 cells"
echo "total $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
