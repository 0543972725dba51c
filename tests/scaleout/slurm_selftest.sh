#!/usr/bin/env bash
# slurm_selftest.sh — proves tests/scaleout/slurm_local.sh on this machine with trivial jobs (no vitq):
#   1. a 4-task job array writes $SLURM_ARRAY_TASK_ID / $SLURM_ARRAY_TASK_COUNT into files, and a job
#      submitted with --dependency=afterok:ARRAY runs only after every task and sees all 4 files;
#   2. one task is scancel'ed while it runs and one kills itself (SIGKILL): the others finish, the
#      afterok job is cancelled by --kill-on-invalid-dep=yes, nothing of the cancelled task survives;
#      a rerun of the whole array skips the finished tasks (done markers), and the merge job then runs;
#   3. stop leaves no daemon, no slurmstepd, no state folder.
# Exit 0 pass, 1 fail, 77 skipped (the one-line reason from slurm_local.sh is printed).
# Not run by tests/run.c yet (it has no skip status): run by hand, `bash tests/scaleout/slurm_selftest.sh`.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SL=$HERE/slurm_local.sh
export VITQ_SLURM_DIR=${VITQ_SLURM_DIR:-$(mktemp -u /tmp/vitq-slurm-selftest.XXXXXX)}
W=$(mktemp -d /tmp/vitq-slurm-work.XXXXXX)
trap '"$SL" stop; rm -rf "$W"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }
dt() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# wait until none of the given jobs is pending/running (squeue; sbatch --wait polls far more slowly)
wait_jobs() {
    for _ in $(seq 300); do
        [ -z "$(squeue -h -j "$1" -t PD,R,CG,CF -o %i 2>/dev/null)" ] && return 0
        sleep 0.2
    done
    fail "jobs $1 still queued after 60 s"
}
# state of one job or array task, e.g. COMPLETED / CANCELLED / FAILED (kept MinJobAge=600 s)
state() { scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -n 1 | cut -d= -f2; }

T0=$(now)
"$SL" start
rc=$?
[ $rc = 77 ] && exit 77
[ $rc = 0 ] || fail "slurm_local.sh start exit $rc"
echo "start: $(dt "$T0") s"
eval "$("$SL" env)"
"$SL" status || fail "status after start"

# ---- 1. array + dependent job
cat >"$W/task.sh" <<'EOF'
#!/bin/bash
echo "$SLURM_ARRAY_TASK_ID $SLURM_ARRAY_TASK_COUNT" >"$1/out.$SLURM_ARRAY_TASK_ID"
EOF
cat >"$W/merge.sh" <<'EOF'
#!/bin/bash
ls "$1"/out.* | wc -l >"$1/merged"
EOF
t=$(now)
A=$(sbatch --parsable --array=0-3 -c 1 -o "$W/slurm-%A_%a.out" "$W/task.sh" "$W") || fail "sbatch array"
M=$(sbatch --parsable --dependency=afterok:"$A" -o "$W/slurm-%j.out" "$W/merge.sh" "$W") || fail "sbatch merge"
echo "submitted array $A, merge $M (afterok:$A)"
wait_jobs "$A,$M"
echo "array + merge: $(dt "$t") s"
for k in 0 1 2 3; do
    [ "$(cat "$W/out.$k" 2>/dev/null)" = "$k 4" ] || fail "task $k wrote '$(cat "$W/out.$k" 2>/dev/null)'"
    [ "$(state "${A}_$k")" = COMPLETED ] || fail "task $k state $(state "${A}_$k")"
done
[ "$(cat "$W/merged" 2>/dev/null)" = 4 ] || fail "merge job saw '$(cat "$W/merged" 2>/dev/null)' files, not 4"
[ "$(state "$M")" = COMPLETED ] || fail "merge state $(state "$M")"
echo "ok: 4 tasks wrote 'K 4', merge ran after them and saw 4 files"

# ---- 2. a cancelled task, a task that kills itself, then a rerun
mkdir "$W/r"
cat >"$W/cell.sh" <<'EOF'
#!/bin/bash
# one "shard": skip if done, else work; task 1 hangs and task 3 SIGKILLs itself while $1/broken exists
d=$1; k=$SLURM_ARRAY_TASK_ID
if [ -e "$d/done.$k" ]; then echo "skip $k" >>"$d/log"; exit 0; fi
echo "run $k" >>"$d/log"
if [ -e "$d/broken" ] && [ "$k" = 1 ]; then sleep 300 & echo $! >"$d/sleep.pid"; wait; fi
if [ -e "$d/broken" ] && [ "$k" = 3 ]; then kill -KILL $$; fi
touch "$d/done.$k"
EOF
touch "$W/r/broken"
t=$(now)
A=$(sbatch --parsable --array=0-3 -c 1 -o "$W/r/slurm-%A_%a.out" "$W/cell.sh" "$W/r") || fail "sbatch array 2"
M=$(sbatch --parsable --kill-on-invalid-dep=yes --dependency=afterok:"$A" -o "$W/r/slurm-%j.out" \
    "$W/merge.sh" "$W/r") || fail "sbatch merge 2"
for _ in $(seq 150); do [ -s "$W/r/sleep.pid" ] && break; sleep 0.2; done
SP=$(cat "$W/r/sleep.pid" 2>/dev/null) || fail "task 1 never started"
scancel "${A}_1" || fail "scancel ${A}_1"
echo "scancel ${A}_1 (its sleep pid $SP)"
wait_jobs "$A,$M"
echo "broken array: $(dt "$t") s"
squeue -h -j "$A,$M" -t all -o '%i %T %r' | sort | sed 's/^/  squeue: /'
[ "$(state "${A}_1")" = CANCELLED ] || fail "cancelled task state $(state "${A}_1")"
[ "$(state "${A}_3")" = FAILED ] || fail "self-killed task state $(state "${A}_3")"
scontrol show job "${A}_3" | grep -o 'ExitCode=[0-9:]*' | sed 's/^/  task 3 /'
[ "$(state "${A}_0")" = COMPLETED ] && [ "$(state "${A}_2")" = COMPLETED ] || fail "tasks 0, 2 did not complete"
[ "$(state "$M")" = CANCELLED ] || fail "merge after a failed task: state $(state "$M"), expected CANCELLED"
[ ! -e "$W/r/merged" ] || fail "merge ran although tasks failed"
for _ in $(seq 25); do
    st=$(awk '/^State:/ { print $2 }' "/proc/$SP/status" 2>/dev/null)
    [ -z "$st" ] || [ "$st" = Z ] && break
    sleep 0.2
done
[ -z "$st" ] || [ "$st" = Z ] || { ps -o pid,ppid,stat,etime,cmd -p "$SP"; fail "the cancelled task's sleep $SP still runs ($st) 5 s later"; }
echo "  task 1's sleep $SP: ${st:-gone}${st:+ (zombie, reaped by init later)}"
echo "ok: task 1 CANCELLED (its processes gone), task 3 FAILED, 0 and 2 COMPLETED, merge CANCELLED (invalid dependency)"

rm "$W/r/broken"
t=$(now)
A=$(sbatch --parsable --array=0-3 -c 1 -o "$W/r/slurm-%A_%a.out" "$W/cell.sh" "$W/r") || fail "sbatch rerun"
M=$(sbatch --parsable --kill-on-invalid-dep=yes --dependency=afterok:"$A" -o "$W/r/slurm-%j.out" \
    "$W/merge.sh" "$W/r") || fail "sbatch merge 3"
wait_jobs "$A,$M"
echo "rerun + merge: $(dt "$t") s"
sort "$W/r/log" | uniq -c | tr -s ' ' | sed 's/^/  log:/'
[ "$(grep -c '^skip' "$W/r/log")" = 2 ] && grep -qx 'skip 0' "$W/r/log" && grep -qx 'skip 2' "$W/r/log" ||
    fail "rerun did not skip tasks 0 and 2"
[ "$(grep -c '^run 1' "$W/r/log")" = 2 ] && [ "$(grep -c '^run 3' "$W/r/log")" = 2 ] || fail "tasks 1, 3 not rerun"
[ "$(state "$M")" = COMPLETED ] || fail "merge after the rerun: $(state "$M")"
echo "ok: rerun skipped 0 and 2, finished 1 and 3, merge COMPLETED"

# ---- 3. stop leaves nothing
t=$(now)
D=$VITQ_SLURM_DIR
"$SL" stop
echo "stop: $(dt "$t") s"
[ ! -e "$D" ] || fail "state folder $D left behind"
unset SLURM_CONF
anc=" $$ "
p=$$
while [ "$p" -gt 1 ]; do p=$(awk '/^PPid:/ { print $2 }' "/proc/$p/status"); anc+="$p "; done
for e in /proc/[0-9]*; do
    p=${e#/proc/}
    case $anc in *" $p "*) continue ;; esac
    { tr '\0' '\n' <"$e/environ" | grep -qx "SLURM_CONF=$D/slurm.conf" ||
        tr '\0' ' ' <"$e/cmdline" | grep -qF "$D"; } 2>/dev/null || continue
    kill -0 "$p" 2>/dev/null && fail "process $p ($(cat "$e/comm" 2>/dev/null)) of the test cluster survives stop"
done
"$SL" status 2>/dev/null && fail "status says up after stop"
"$SL" stop || fail "second stop (idempotent) failed"
echo "ok: nothing left after stop; total $(dt "$T0") s"
