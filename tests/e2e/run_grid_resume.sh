# run_grid_resume.sh — `vitq run` end to end: a small grid runs to completion (baseline + 4 cells, HDF5
# index and cell files), --dry-run then marks every cell done, a rerun skips every cell without touching its
# file, and --only with --force recomputes exactly the selected cells.
. tests/e2e/run_common.inc

write_ini "$T/g.ini" "$T/out" 200
"$VITQ" run "$T/g.ini" >"$T/table1.md" 2>"$T/log1" || { cat "$T/log1"; fail "first run failed"; }
n=$(ls "$T/out/cells" | grep -c '\.h5$')
[ "$n" = 5 ] || fail "expected 5 cell files, got $n"
[ -f "$T/out/run.h5" ] || fail "no run.h5"
for id in fp32 'bits=8,softmax=uniform' 'bits=8,softmax=log2' 'bits=4,softmax=uniform' 'bits=4,softmax=log2'; do
    [ -f "$T/out/cells/$id.h5" ] || fail "missing cell $id"
done
grep -q 'cell 2/5 bits=8,softmax=uniform calibrate' "$T/log1" || fail "no calibrate progress line"
grep -q 'cell 5/5 bits=4,softmax=log2: done  top1' "$T/log1" || fail "no per-cell summary line"
[ "$(grep -c '| done ' "$T/table1.md")" = 5 ] || { cat "$T/table1.md"; fail "summary table has not 5 done rows"; }
csv_no_time "$T/out" >"$T/csv1"
[ "$(grep -c ',done,' "$T/csv1")" = 5 ] || fail "csv has not 5 done rows"

# --dry-run marks the done cells, and says what --force would do
"$VITQ" run "$T/g.ini" --dry-run 2>/dev/null >"$T/dry"
[ "$(grep -c '(done: skipped)$' "$T/dry")" = 5 ] || { cat "$T/dry"; fail "--dry-run did not mark 5 done cells"; }
grep -q -- "-> $T/out, 5 already done; nothing run (--dry-run)$" "$T/dry" || { cat "$T/dry"; fail "no done count"; }
"$VITQ" run "$T/g.ini" --dry-run --force --only 'bits=4,*' 2>/dev/null >"$T/dry"
[ "$(grep -c '(done: --force recomputes it)$' "$T/dry")" = 2 ] || { cat "$T/dry"; fail "--dry-run --force marks"; }
# ... and the cells the run would refuse: computed with 1 thread ([run] threads = 1), listed at 2
"$VITQ" run "$T/g.ini" --dry-run --threads 2 2>/dev/null >"$T/dry"
[ "$(grep -c '(done: with 1 thread, so the run refuses: --threads 1 or --force)$' "$T/dry")" = 5 ] ||
    { cat "$T/dry"; fail "--dry-run --threads 2 does not say the run refuses"; }

# rerun: everything skipped, files untouched (same inode and mtime)
stat -c '%i %Y %n' "$T"/out/cells/*.h5 >"$T/stat1"
sleep 1.1
"$VITQ" run "$T/g.ini" >"$T/table2.md" 2>"$T/log2" || { cat "$T/log2"; fail "rerun failed"; }
[ "$(grep -c 'already done, skipped' "$T/log2")" = 5 ] || { cat "$T/log2"; fail "rerun did not skip all 5 cells"; }
stat -c '%i %Y %n' "$T"/out/cells/*.h5 | diff - "$T/stat1" || fail "rerun touched cell files"
csv_no_time "$T/out" | diff - "$T/csv1" || fail "results changed on rerun"

# --only + --force: exactly the two bits=4 cells are recomputed, to the same values
"$VITQ" run "$T/g.ini" --only 'bits=4,*' --force -q >/dev/null 2>"$T/log3" || { cat "$T/log3"; fail "--only --force failed"; }
stat -c '%i %Y %n' "$T"/out/cells/*.h5 >"$T/stat3"
changed=$(diff "$T/stat1" "$T/stat3" | grep -c '^>' || true)
[ "$changed" = 2 ] || { diff "$T/stat1" "$T/stat3"; fail "expected 2 recomputed cells, got $changed"; }
grep '^>' <(diff "$T/stat1" "$T/stat3") | grep -vq 'bits=4' && fail "a cell outside --only was recomputed"
csv_no_time "$T/out" | diff - "$T/csv1" || fail "recomputed cells differ (not reproducible)"
echo "ok"
