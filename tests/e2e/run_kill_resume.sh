# run_kill_resume.sh — a grid killed with SIGKILL in the middle (after its first grid cell file
# appears) and resumed: the finished cells are not recomputed (inode and mtime unchanged) and the final
# results equal those of an uninterrupted run (`vitq results --csv` without the timing column).
. tests/e2e/run_common.inc

write_ini "$T/a.ini" "$T/killed" 300 "8, 4, 3"
write_ini "$T/b.ini" "$T/clean" 300 "8, 4, 3"

"$VITQ" run "$T/a.ini" -q >/dev/null 2>"$T/log_a" &
pid=$!
for _ in $(seq 1 1200); do # up to 60 s
    n=$(ls "$T/killed/cells" 2>/dev/null | grep -c '^bits=.*\.h5$' || true)
    [ "$n" -ge 1 ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.05
done
kill -KILL $pid 2>/dev/null || fail "the run ended before it could be killed"
wait $pid 2>/dev/null || true
done_before=$(ls "$T/killed/cells" | grep -c '\.h5$' || true)
[ "$done_before" -ge 2 ] || fail "expected fp32 and one grid cell before the kill, got $done_before"
[ "$done_before" -lt 7 ] || fail "the whole grid finished before the kill; the test proves nothing"
stat -c '%i %Y %n' "$T"/killed/cells/*.h5 >"$T/stat_before"
sleep 1.1

"$VITQ" run "$T/a.ini" >/dev/null 2>"$T/log_resume" || { cat "$T/log_resume"; fail "resume failed"; }
skipped=$(grep -c 'already done, skipped' "$T/log_resume" || true)
[ "$skipped" = "$done_before" ] || { cat "$T/log_resume"; fail "resume skipped $skipped cells, $done_before were done"; }
stat -c '%i %Y %n' "$T"/killed/cells/*.h5 | grep -F -f "$T/stat_before" | diff - "$T/stat_before" ||
    fail "finished cells were rewritten by the resume"
[ "$(ls "$T/killed/cells" | grep -c '\.h5$')" = 7 ] || fail "resumed run has not 7 cells"
ls "$T/killed" "$T/killed/cells" | grep -q '\.tmp\.' && fail "stray temp file left after resume"

"$VITQ" run "$T/b.ini" -q >/dev/null 2>"$T/log_b" || { cat "$T/log_b"; fail "uninterrupted run failed"; }
csv_no_time "$T/killed" >"$T/csv_killed"
csv_no_time "$T/clean" >"$T/csv_clean"
[ "$(grep -c ',done,' "$T/csv_clean")" = 7 ] || fail "uninterrupted run has not 7 done rows"
diff "$T/csv_killed" "$T/csv_clean" || fail "resumed results differ from an uninterrupted run"
echo "ok ($done_before cells done before the kill)"
