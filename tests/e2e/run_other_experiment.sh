# run_other_experiment.sh — one experiment per run folder: `vitq run` (and --dry-run) into a folder whose
# index holds another experiment (another [run] name, or the same name over other grid axes) is refused
# with one line naming the folder and both experiments, before anything is written; the same experiment
# with a setting changed still runs there and recomputes exactly the cells whose configuration changed; a copy
# of the INI under another file name is another experiment; a [run] name built from an axis names one.
. tests/e2e/run_common.inc

write_ini "$T/g.ini" "$T/out" 200 8
"$VITQ" run "$T/g.ini" -q >/dev/null 2>"$T/log1" || { cat "$T/log1"; fail "first run failed"; }
[ "$(ls "$T/out/cells" | grep -c '\.h5$')" = 3 ] || fail "expected 3 cell files"
stat -c '%i %Y %s %n' "$T/out/run.h5" "$T"/out/cells/*.h5 >"$T/stat1"

# another experiment: the same grid on fewer images under another name (the default [run] name is the INI's
# base name)
sed -e 's/^eval_limit = 200$/eval_limit = 100/' "$T/g.ini" >"$T/other.ini"
grep -q '^eval_limit = 100$' "$T/other.ini" || fail "the edit did not apply"
for dry in "" --dry-run; do
    if "$VITQ" run "$T/other.ini" $dry -q >"$T/out2" 2>"$T/err2"; then fail "other experiment ran ($dry)"; fi
    want="^vitq: error: $T/out: holds the results of experiment 'g', not 'other' ($T/other.ini): use another"
    grep -q "$want --output" "$T/err2" || { cat "$T/err2"; fail "no refusal line naming both experiments ($dry)"; }
    [ "$(wc -l <"$T/err2")" = 1 ] || { cat "$T/err2"; fail "more than one error line ($dry)"; }
done

stat -c '%i %Y %s %n' "$T/out/run.h5" "$T"/out/cells/*.h5 | diff - "$T/stat1" || fail "a refused run touched the folder"

# the same name over other axes: softmax renamed to sm
mkdir "$T/axes"
sed -e 's/\${softmax}/${sm}/' -e 's/^softmax = /sm = /' "$T/g.ini" >"$T/axes/g.ini"
if "$VITQ" run "$T/axes/g.ini" -q >/dev/null 2>"$T/err3"; then fail "a grid over other axes ran"; fi
grep -q "holds a grid of experiment 'g' over (bits, softmax), and $T/axes/g.ini's grid is over (bits, sm)" "$T/err3" ||
    { cat "$T/err3"; fail "no refusal naming both axis lists"; }
stat -c '%i %Y %s %n' "$T/out/run.h5" "$T"/out/cells/*.h5 | diff - "$T/stat1" || fail "a refused run touched the folder"

# the same experiment edited (the probabilities' quantizer at 6 bits): both grid cells change configuration
# and are recomputed, the float baseline is skipped
sed -i -e '/^\[quantizer probs\]$/,/^$/ s/^bits = .*/bits = 6/' "$T/g.ini"
grep -q '^bits = 6$' "$T/g.ini" || fail "the edit did not apply"
"$VITQ" run "$T/g.ini" 2>"$T/log4" >/dev/null || { cat "$T/log4"; fail "the edited experiment did not run"; }
[ "$(grep -c 'already done, skipped' "$T/log4")" = 1 ] || { cat "$T/log4"; fail "expected the baseline alone skipped"; }
grep -q '2 cells computed, 1 skipped' "$T/log4" || { cat "$T/log4"; fail "not 2 cells recomputed"; }

# a copy of the INI under another file name, without a [run] name, is another experiment
cp "$T/g.ini" "$T/copy.ini"
if "$VITQ" run "$T/copy.ini" -q >/dev/null 2>"$T/err5"; then fail "a renamed copy ran"; fi
grep -q "holds the results of experiment 'g', not 'copy'" "$T/err5" || { cat "$T/err5"; fail "copy: no refusal"; }

# a [run] name built from an axis names one experiment: a value put first in that axis still runs
sed -e 's|^output = .*|output = '"$T"'/named\nname = g_${bits}|' "$T/g.ini" >"$T/n.ini"
"$VITQ" run "$T/n.ini" -q >/dev/null 2>"$T/log6" || { cat "$T/log6"; fail "the named experiment failed"; }
sed -i -e 's/^bits = 8$/bits = 4, 8/' "$T/n.ini"
grep -q '^bits = 4, 8$' "$T/n.ini" || fail "the axis edit did not apply"
"$VITQ" run "$T/n.ini" --dry-run 2>"$T/log7" >"$T/dry7" || { cat "$T/log7"; fail "the named experiment refused"; }
[ "$(grep -c '(done: skipped)$' "$T/dry7")" = 3 ] || { cat "$T/dry7"; fail "not 3 cells marked done"; }
echo "ok"
