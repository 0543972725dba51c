# scaleout_shared_folder.sh — many shards writing ONE run folder at the same time (issue 16): four shards
# started together (oversubscribing the machine, so their index rebuilds overlap) leave a readable index
# listing every cell, and the cells equal a single run bit for bit. Then two shards again, one of them
# SIGKILLed mid-cell (the test plugin on cell 5): the other finishes, the index stays readable and lists
# every finished cell, and rerunning the killed shard computes only what it had left, without touching a
# finished file; the result equals the single run.
. tests/e2e/scaleout_common.inc

write_grid "$T/g.ini" "$T/single"
"$VITQ" run "$T/g.ini" -q >/dev/null 2>"$T/log" || { cat "$T/log"; fail "single run failed"; }

# ---- 1. four shards at once into one folder
pids=()
for k in 0 1 2 3; do
    "$VITQ" run "$T/g.ini" --shard "$k/4" --output "$T/shared" -q >/dev/null 2>"$T/log$k" &
    pids+=($!)
done
for k in 0 1 2 3; do wait "${pids[$k]}" || { cat "$T/log$k"; fail "shard $k/4 failed"; }; done
"$VITQ" results --csv "$T/shared" >"$T/csv" || fail "index not readable"
[ "$(grep -c ',done,' "$T/csv")" = 9 ] || { cat "$T/csv"; fail "index does not list all 9 cells"; }
csv_no_time "$T/shared" | diff - <(csv_no_time "$T/single") || fail "shared-folder index differs from the single run's"
"$CELLCMP" "$T/single" "$T/shared" || fail "shared-folder cells differ from the single run"
[ -f "$T/shared/.run.lock" ] || fail "no .run.lock: the index was not rebuilt under the lock"
ls "$T/shared" "$T/shared/cells" | grep -q '\.tmp\.' && fail "temp file left"

# ---- 2. two shards at once, shard 1/2 killed on cell 5 (bits=4,softmax=uniform), then rerun
touch "$T/die.4-uniform"
"$VITQ" run "$T/g.ini" --shard 0/2 --output "$T/k" -q >/dev/null 2>"$T/logk0" &
p0=$!
set +e
"$VITQ" run "$T/g.ini" --shard 1/2 --output "$T/k" -q >/dev/null 2>"$T/logk1"
rc1=$?
wait $p0
rc0=$?
set -e
[ $rc1 = 137 ] || { cat "$T/logk1"; fail "shard 1/2: exit $rc1, expected 137 (SIGKILL)"; }
[ $rc0 = 0 ] || { cat "$T/logk0"; fail "shard 0/2: exit $rc0 (it should not notice the other's death)"; }
[ "$(ncells "$T/k")" = 7 ] || fail "after the kill: $(ncells "$T/k") cells, expected 7 (shard 0's 5 + shard 1's 2)"
[ ! -e "$T/k/cells/bits=4,softmax=uniform.h5" ] || fail "the killed cell has a file"
"$VITQ" results --csv "$T/k" >"$T/csvk" || fail "index unreadable after the kill"
[ "$(grep -c ',done,' "$T/csvk")" = 7 ] || { cat "$T/csvk"; fail "index does not list the 7 finished cells"; }
stat_cells "$T/k" >"$T/stat_before"
sleep 1.1
rm "$T/die.4-uniform"
"$VITQ" run "$T/g.ini" --shard 1/2 --output "$T/k" >/dev/null 2>"$T/logr" || { cat "$T/logr"; fail "rerun of shard 1/2"; }
[ "$(grep -c 'already done, skipped' "$T/logr")" = 2 ] || { cat "$T/logr"; fail "rerun should skip shard 1's 2 finished cells"; }
stat_cells "$T/k" | grep -F -f "$T/stat_before" | diff - "$T/stat_before" || fail "the rerun rewrote finished cells"
"$CELLCMP" "$T/single" "$T/k" || fail "killed + rerun differs from the single run"
csv_no_time "$T/k" | diff - <(csv_no_time "$T/single") || fail "index after the rerun differs"
echo ok
