# run_quiet.sh — `vitq run -q` prints nothing but the final table: stderr empty, stdout the Markdown table
# (a header, a rule and one row per cell); an error still comes through with -q.
. tests/e2e/run_common.inc

write_ini "$T/g.ini" "$T/out" 100 8
"$VITQ" run -q "$T/g.ini" >"$T/out.md" 2>"$T/err" || { cat "$T/err"; fail "vitq run -q failed"; }
[ -s "$T/err" ] && { cat "$T/err"; fail "vitq run -q wrote to stderr"; }
grep -v '^|' "$T/out.md" && fail "stdout holds more than the table"
[ "$(wc -l <"$T/out.md")" = 5 ] || { cat "$T/out.md"; fail "expected header + rule + 3 rows"; }
# a rerun: still only the table (no 'skipped' lines)
"$VITQ" run -q "$T/g.ini" >"$T/out2.md" 2>"$T/err2" || fail "rerun failed"
[ -s "$T/err2" ] && { cat "$T/err2"; fail "rerun -q wrote to stderr"; }
# an error is still printed
sed -i 's|^path = .*|path = /nonexistent.safetensors|' "$T/g.ini"
"$VITQ" run -q "$T/g.ini" >"$T/out3.md" 2>"$T/err3" && fail "a missing model ran"
grep -q 'nonexistent.safetensors' "$T/err3" || fail "the error was not printed with -q"
echo "ok"
