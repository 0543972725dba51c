# scaleout_slurm.sh — experiments/slurm/ (submit.sh, run_array.sbatch, merge.sbatch) with the real vitq on
# a real one-node Slurm cluster started here (tests/scaleout/slurm_local.sh: Debian's slurm-wlm and
# munge on localhost, private state, no systemd) — issue 16:
#   1. submit.sh FILE.ini 3: an array of 3 shards (one per task, --shard K/3) and the merge job after
#      them (afterok): the merged run equals a single run cell by cell, bit for bit;
#   2. a task killed mid-cell (SIGKILL, the test plugin on cell 5 = shard 2/3): the task FAILED, the merge
#      job CANCELLED (invalid dependency); `submit.sh --tasks 2` reruns shard 2/3 only, which skips its
#      finished cell, and the new merge completes: again equal to the single run;
#   3. with a `make MPI=1` vitq (make check MPI=1): one job of 2 tasks, `srun --mpi=pmix vitq run`, the
#      ranks sharing the grid through Slurm's PMIx: equal to the single run.
# Skipped (exit 77, the reason as the last line) only when the cluster cannot start here (not root,
# slurm-wlm/munge not installed: make deps-scaleout).
. tests/e2e/scaleout_common.inc

SL=$ROOT/tests/scaleout/slurm_local.sh
export VITQ_SLURM_DIR=$(mktemp -u /tmp/vitq-slurm-e2e.XXXXXX) # not under $T: munged wants a world-executable path
trap '"$SL" stop; rm -rf "$T"' EXIT
wait_jobs() {
    for _ in $(seq 600); do
        [ -z "$(squeue -h -j "$1" -t PD,R,CG,CF -o %i 2>/dev/null)" ] && return 0
        sleep 0.2
    done
    fail "jobs $1 still queued after 120 s"
}
state() { scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -n 1 | cut -d= -f2; }
ids() { A=$(sed -n 's/^array job \([0-9]*\).*/\1/p' <<<"$1") M=$(sed -n 's/^merge job \([0-9]*\).*/\1/p' <<<"$1"); }

set +e
"$SL" start
rc=$?
set -e
[ $rc = 77 ] && exit 77 # slurm_local printed the reason
[ $rc = 0 ] || fail "slurm_local.sh start: exit $rc"
eval "$("$SL" env)"
export VITQ # submit.sh passes this binary to the jobs (sbatch exports the environment)

cd "$T"
write_grid g.ini "$T/res"
"$VITQ" run g.ini --output "$T/single" -q >/dev/null 2>single.log || { cat single.log; fail "single run failed"; }

# ---- 1. the whole grid: 3 array tasks, then the merge
sub=$("$ROOT/experiments/slurm/submit.sh" g.ini 3 -c 1 --mem=500M) || fail "submit.sh"
echo "$sub"
ids "$sub"
[ -n "$A" ] && [ -n "$M" ] || fail "no job ids in '$sub'"
wait_jobs "$A,$M"
for k in 0 1 2; do
    [ "$(state "${A}_$k")" = COMPLETED ] || { cat slurm-vitq-shard-"${A}_$k".out; fail "task $k: $(state "${A}_$k")"; }
    [ "$(ncells "res.shards/shard-$k-of-3")" = 3 ] || fail "shard $k/3 wrote $(ncells "res.shards/shard-$k-of-3") cells"
done
[ "$(state "$M")" = COMPLETED ] || { cat slurm-vitq-merge-"$M".out; fail "merge job: $(state "$M")"; }
sed 's/^/  merge job: /' slurm-vitq-merge-"$M".out
"$CELLCMP" "$T/single" "$T/res" || fail "the Slurm run differs from the single run"
csv_no_time "$T/res" | diff - <(csv_no_time "$T/single") || fail "merged index differs"

# ---- 2. shard 2/3 killed on cell 5; the merge is cancelled; only that task is resubmitted
rm -rf res res.shards
touch "$T/die.4-uniform"
sub=$("$ROOT/experiments/slurm/submit.sh" g.ini 3 -c 1 --mem=500M) || fail "submit.sh (2)"
ids "$sub"
wait_jobs "$A,$M"
echo "  after the kill: ${A}_0=$(state "${A}_0") ${A}_1=$(state "${A}_1") ${A}_2=$(state "${A}_2") merge=$(state "$M")"
[ "$(state "${A}_2")" = FAILED ] || fail "task 2: $(state "${A}_2"), expected FAILED"
[ "$(state "${A}_0")" = COMPLETED ] && [ "$(state "${A}_1")" = COMPLETED ] || fail "tasks 0 and 1 should complete"
[ "$(state "$M")" = CANCELLED ] || fail "merge: $(state "$M"), expected CANCELLED"
[ ! -e res/run.h5 ] || fail "the merge ran"
[ "$(ncells res.shards/shard-2-of-3)" = 1 ] || fail "shard 2/3 should have finished cell 2 before the kill"
stat_cells res.shards/shard-2-of-3 >stat_before
rm "$T/die.4-uniform"
sub=$("$ROOT/experiments/slurm/submit.sh" --tasks 2 g.ini 3 -c 1 --mem=500M) || fail "resubmission"
echo "$sub"
ids "$sub"
wait_jobs "$A,$M"
[ "$(state "${A}_2")" = COMPLETED ] && [ "$(state "$M")" = COMPLETED ] || fail "resubmitted task $(state "${A}_2"), merge $(state "$M")"
grep -q 'cell 1/3 bits=8,softmax=log2: already done, skipped' slurm-vitq-shard-"${A}_2".out ||
    { cat slurm-vitq-shard-"${A}_2".out; fail "the rerun of shard 2/3 did not skip its finished cell"; }
stat_cells res.shards/shard-2-of-3 | grep -F -f stat_before | diff - stat_before || fail "the rerun rewrote a finished cell"
"$CELLCMP" "$T/single" "$T/res" || fail "killed task + rerun differs from the single run"

# ---- 3. MPI inside one allocation (srun starts the ranks; only with an MPI build)
if "$VITQ" --version | grep -q '(MPI)'; then
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
    J=$(sbatch --parsable -n 2 -c 1 --mem=1G -o srun.out --wrap "srun --mpi=pmix '$VITQ' run g.ini --output '$T/srun'") ||
        fail "sbatch of the srun job"
    wait_jobs "$J"
    [ "$(state "$J")" = COMPLETED ] || { cat srun.out; fail "srun --mpi=pmix job: $(state "$J")"; }
    for r in 0 1; do grep -q "^\[rank $r\] cell .*: done" srun.out || { cat srun.out; fail "rank $r ran no cell under srun"; }; done
    "$CELLCMP" "$T/single" "$T/srun" || fail "srun --mpi=pmix run differs from the single run"
    echo "ok: srun --mpi=pmix with 2 ranks"
else
    echo "(part 3, srun --mpi=pmix, needs a make MPI=1 vitq: not run)"
fi
echo ok
