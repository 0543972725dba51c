# scaleout_mpi.sh — `mpirun -np 2 --oversubscribe vitq run` with a `make MPI=1` vitq (issue 16): the ranks
# share the cells (both compute some) and the results equal a serial run bit for bit; the table is printed
# once; a rerun skips everything; a rank SIGKILLed mid-cell ends the job (OpenMPI kills every rank), the
# finished cells stay whole and a rerun computes only the rest, leaving finished files untouched; recorded
# cell failures do not abort the job (ranks exit 0, rank 0 exits 1 with every cell run); a bad INI gives
# one error line, not one per rank. Skipped (exit 77) when vitq is built without MPI or mpirun is missing:
# `make check MPI=1` (CI) runs it.
. tests/e2e/scaleout_common.inc

"$VITQ" --version | grep -q '(MPI)' || { echo "$VITQ is built without MPI (make check MPI=1 runs this test)"; exit 77; }
command -v mpirun >/dev/null || { echo "mpirun not found (apt-get install openmpi-bin, or make deps-scaleout)"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 # CI runs as root
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" # OpenMPI's own allocations at exit
MPIRUN=(mpirun --oversubscribe --bind-to none -x ASAN_OPTIONS -x VITQ_PLUGIN_PATH -np 2)

write_grid "$T/g.ini" "$T/single"
"$VITQ" run "$T/g.ini" -q >/dev/null 2>"$T/log" || { cat "$T/log"; fail "serial run failed"; } # no mpirun: no MPI_Init

# ---- 1. two ranks share the grid
"${MPIRUN[@]}" "$VITQ" run "$T/g.ini" --output "$T/mpi" >"$T/table" 2>"$T/log1" || { cat "$T/log1"; fail "mpirun exit $?"; }
cat "$T/log1"
"$CELLCMP" "$T/single" "$T/mpi" || fail "MPI run differs from the serial run"
for r in 0 1; do grep -q "^\[rank $r\] cell [0-9]/9 .*: done  top1" "$T/log1" || fail "rank $r computed no cell"; done
[ "$(grep -c '| done ' "$T/table")" = 9 ] || { cat "$T/table"; fail "table not printed once with 9 rows"; }
grep -q '^vitq run: 9 cells computed, 0 skipped (already done), 0 failed in .* by 2 ranks' "$T/log1" || fail "verdict line"
csv_no_time "$T/mpi" | diff - <(csv_no_time "$T/single") || fail "MPI index differs from the serial run's"

# ---- 2. rerun: nothing to do
stat_cells "$T/mpi" >"$T/stat1"
"${MPIRUN[@]}" "$VITQ" run "$T/g.ini" --output "$T/mpi" >/dev/null 2>"$T/log2" || { cat "$T/log2"; fail "rerun"; }
grep -q '^vitq run: 0 cells computed, 9 skipped' "$T/log2" || { cat "$T/log2"; fail "rerun did not skip all"; }
stat_cells "$T/mpi" | diff - "$T/stat1" || fail "rerun touched cell files"

# ---- 3. a rank dies mid-cell (cell 5 SIGKILLs whichever rank runs it), then a rerun
touch "$T/die.4-uniform"
set +e
"${MPIRUN[@]}" "$VITQ" run "$T/g.ini" --output "$T/k" >/dev/null 2>"$T/log3"
rc=$?
set -e
echo "mpirun after a killed rank: exit $rc"
grep -E 'exited on signal|Killed|cell' "$T/log3" | tail -n 5
[ $rc != 0 ] || fail "mpirun exit 0 although a rank was killed"
grep -q 'signal 9' "$T/log3" || fail "mpirun did not report the rank killed by signal 9"
[ ! -e "$T/k/cells/bits=4,softmax=uniform.h5" ] || fail "the killed cell has a file"
n=$(ncells "$T/k")
echo "finished before the kill: $n of 9"
[ "$n" -ge 1 ] && [ "$n" -lt 9 ] || fail "$n cells finished before the kill"
"$VITQ" merge -q "$T/k" "$T/k" || fail "finished cells not readable (index rebuild)"
[ "$(csv_no_time "$T/k" | grep -c ',done,')" = "$n" ] || fail "a finished cell is not whole"
stat_cells "$T/k" >"$T/stat3"
sleep 1.1
rm "$T/die.4-uniform"
"${MPIRUN[@]}" "$VITQ" run "$T/g.ini" --output "$T/k" >/dev/null 2>"$T/log4" || { cat "$T/log4"; fail "rerun after the kill"; }
grep -q "^vitq run: $((9 - n)) cells\{0,1\} computed, $n skipped" "$T/log4" || { cat "$T/log4"; fail "rerun did not compute exactly the missing cells"; }
stat_cells "$T/k" | grep -F -f "$T/stat3" | diff - "$T/stat3" || fail "the rerun rewrote finished cells"
"$CELLCMP" "$T/single" "$T/k" || fail "killed + rerun differs from the serial run"
ls "$T/k" "$T/k/cells" | grep -q '\.tmp\.' && fail "temp file left after the rerun"

# ---- 4. recorded failures: every cell still runs, only rank 0's exit status says so
sed -e 's/^marker = .*/fail = ${fail}/' -e 's/^softmax = uniform, log2$/fail = no, yes/' -e 's/plugin = \${softmax}/plugin = uniform/' \
    -e "s|^output = .*|output = $T/f|" "$T/g.ini" >"$T/f.ini"
set +e
"${MPIRUN[@]}" "$VITQ" run "$T/f.ini" -q >/dev/null 2>"$T/log5"
rc=$?
set -e
[ $rc = 1 ] || { cat "$T/log5"; fail "recorded failures: mpirun exit $rc, expected 1"; }
[ "$(ncells "$T/f")" = 9 ] || { cat "$T/log5"; fail "recorded failures stopped the job: $(ncells "$T/f") of 9 cells"; }
[ "$("$VITQ" results --csv "$T/f" | grep -c ',failed,')" = 4 ] || fail "not 4 failed cells in the index"

# ---- 5. a bad INI: one error line, not one per rank
printf '[run]\nbogus = 1\n' >"$T/bad.ini"
set +e
"${MPIRUN[@]}" "$VITQ" run "$T/bad.ini" >/dev/null 2>"$T/log6"
rc=$?
set -e
[ $rc = 1 ] || { cat "$T/log6"; fail "bad INI: exit $rc"; }
[ "$(grep -c '^vitq: error:' "$T/log6")" = "$(grep -c 'error' <("$VITQ" run "$T/bad.ini" 2>&1))" ] || { cat "$T/log6"; fail "errors printed by every rank"; }
echo ok
