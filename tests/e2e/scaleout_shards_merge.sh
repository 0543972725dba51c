# scaleout_shards_merge.sh — `vitq run --shard K/N` and `vitq merge` (issue 16): three shards, each into
# its own folder, merged, equal a single run cell by cell and bit for bit (same thread count); the merged
# index lists every cell in the run's order; merging again copies nothing and touches no file; `vitq merge
# OUT OUT` rebuilds an index; a shard past the last cell writes an empty run; bad --shard values are
# usage errors; runs of a different INI text are refused with one line naming the line that differs.
. tests/e2e/scaleout_common.inc

write_grid "$T/g.ini" "$T/single"
"$VITQ" run "$T/g.ini" -q >/dev/null 2>"$T/log" || { cat "$T/log"; fail "single run failed"; }
[ "$(ncells "$T/single")" = 9 ] || fail "single run: $(ncells "$T/single") cells, expected 9"

# which cells a shard owns: stable index mod N (the --dry-run order)
"$VITQ" run "$T/g.ini" --shard 1/3 --dry-run >"$T/dry1" 2>/dev/null || fail "--shard 1/3 --dry-run"
[ "$(awk 'NR<=3 { print $1 }' "$T/dry1" | tr '\n' ' ')" = "bits=8,softmax=uniform bits=6,softmax=log2 bits=3,softmax=uniform " ] ||
    { cat "$T/dry1"; fail "shard 1/3 should own cells 1, 4, 7"; }
grep -q '^3 cells (3 grid, 0 baseline) of 9 ' "$T/dry1" || { cat "$T/dry1"; fail "shard 1/3 dry-run count"; }

for k in 0 1 2; do
    "$VITQ" run "$T/g.ini" --shard "$k/3" --output "$T/s$k" -q >/dev/null 2>"$T/log$k" || { cat "$T/log$k"; fail "shard $k/3"; }
    [ "$(ncells "$T/s$k")" = 3 ] || fail "shard $k/3 wrote $(ncells "$T/s$k") cells, expected 3"
done
"$VITQ" merge "$T/m" "$T/s0" "$T/s1" "$T/s2" 2>"$T/mlog" || { cat "$T/mlog"; fail "merge"; }
grep -q 'vitq merge: 3 runs -> .*: 9 cells (9 done, 0 failed): 9 copied, 0 already there$' "$T/mlog" || { cat "$T/mlog"; fail "merge summary"; }
"$CELLCMP" "$T/single" "$T/m" || fail "merged shards differ from the single run"
csv_no_time "$T/single" >"$T/csv_single"
csv_no_time "$T/m" | diff - "$T/csv_single" || fail "merged index differs from the single run's (rows, order or values)"

# idempotent: nothing copied, no file touched, same index rows
stat_cells "$T/m" >"$T/stat1"
sleep 1.1
"$VITQ" merge "$T/m" "$T/s2" "$T/s0" "$T/s1" 2>"$T/mlog2" || { cat "$T/mlog2"; fail "second merge"; }
grep -q ': 0 copied, 9 already there' "$T/mlog2" || { cat "$T/mlog2"; fail "second merge copied something"; }
stat_cells "$T/m" | diff - "$T/stat1" || fail "second merge rewrote cell files"
csv_no_time "$T/m" | diff - "$T/csv_single" || fail "index changed on the second merge"
ls "$T/m" "$T/m/cells" | grep -q '\.tmp\.' && fail "temp file left in the merged folder"

# OUT OUT: rebuilds the index of a run folder (here: a cell file that arrived without an index rebuild,
# as with a writer on a filesystem without flock)
mv "$T/m/cells/fp32.h5" "$T/fp32.h5"
"$VITQ" merge -q "$T/m" "$T/m" || fail "vitq merge OUT OUT"
[ "$(csv_no_time "$T/m" | grep -c ',done,')" = 8 ] || fail "index of 8 cells not rebuilt"
mv "$T/fp32.h5" "$T/m/cells/fp32.h5"
"$VITQ" merge -q "$T/m" "$T/m" || fail "vitq merge OUT OUT"
csv_no_time "$T/m" | diff - "$T/csv_single" || fail "index not rebuilt by vitq merge OUT OUT"

# merge into an existing run: a partial merge completed later
"$VITQ" merge -q "$T/p" "$T/s0" || fail "partial merge"
[ "$(ncells "$T/p")" = 3 ] || fail "partial merge: $(ncells "$T/p") cells"
"$VITQ" merge "$T/p" "$T/s1" "$T/s2" 2>"$T/plog" || { cat "$T/plog"; fail "completing merge"; }
"$CELLCMP" "$T/single" "$T/p" >/dev/null || fail "completed merge differs from the single run"

# more shards than cells: a shard with nothing to do still writes its (empty) run folder
"$VITQ" run "$T/g.ini" --shard 11/12 --output "$T/s11" -q >/dev/null 2>"$T/log11" || { cat "$T/log11"; fail "empty shard"; }
[ -f "$T/s11/run.h5" ] && [ "$(ncells "$T/s11")" = 0 ] || fail "empty shard: no empty run folder"
"$VITQ" merge -q "$T/m" "$T/s11" || fail "merging an empty shard"

# usage errors: exit 2, one line naming the flag
for bad in 3/3 -1/2 a/2 1/0 1 1/2/3; do
    set +e
    "$VITQ" run "$T/g.ini" --shard "$bad" 2>"$T/err" >/dev/null
    rc=$?
    set -e
    [ $rc = 2 ] || fail "--shard $bad: exit $rc, expected 2"
    [ "$(nlines "$T/err")" = 1 ] && grep -q '^vitq: error: --shard: ' "$T/err" || { cat "$T/err"; fail "--shard $bad: message"; }
done
set +e
"$VITQ" merge "$T/m" 2>"$T/err"
rc=$?
set -e
[ $rc = 2 ] || fail "merge without RUN: exit $rc"

# a shard of a different INI text is refused, naming the line; OUT is not touched
sed 's/^eval_limit = 100$/eval_limit = 50/' "$T/g.ini" >"$T/h.ini"
"$VITQ" run "$T/h.ini" --shard 0/3 --output "$T/h0" -q >/dev/null 2>&1 || fail "shard of h.ini"
stat_cells "$T/m" >"$T/stat2"
set +e
"$VITQ" merge "$T/m" "$T/h0" 2>"$T/err"
rc=$?
set -e
[ $rc = 1 ] || fail "merge of a different INI: exit $rc, expected 1"
cat "$T/err"
[ "$(nlines "$T/err")" = 1 ] || fail "refusal is not one line"
grep -q "^vitq: error: merge: .*/h0 and .*/m come from different INI texts (.*h.ini: line 11: 'eval_limit = 50' vs 'eval_limit = 100')$" "$T/err" ||
    fail "refusal does not name the differing line"
stat_cells "$T/m" | diff - "$T/stat2" || fail "a refused merge touched OUT"
echo ok
