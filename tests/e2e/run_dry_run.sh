# run_dry_run.sh — `vitq run --dry-run` validates and prints the expanded grid (one line per cell and
# the count) and writes nothing; a bad plugin parameter or an undefined ${axis} fails before any cell
# runs, naming the INI file and line, and creates no run folder.
. tests/e2e/run_common.inc

write_ini "$T/g.ini" "$T/out" 200
"$VITQ" run "$T/g.ini" --dry-run >"$T/dry" 2>"$T/log" || { cat "$T/log"; fail "dry run failed"; }
cat >"$T/want" <<'TXT'
fp32 float baseline (no quantizers)
bits=8,softmax=uniform bits=8 softmax=uniform
bits=8,softmax=log2 bits=8 softmax=log2
bits=4,softmax=uniform bits=4 softmax=uniform
bits=4,softmax=log2 bits=4 softmax=log2
TXT
head -n 5 "$T/dry" | tr -s ' ' | diff - "$T/want" || fail "dry-run cell lines differ"
tail -n 1 "$T/dry" | grep -q '^5 cells (4 grid, 1 baseline) -> .*/out; nothing run (--dry-run)$' || fail "no count line"
[ ! -e "$T/out" ] || fail "dry run created the output folder"

# --only narrows the listing
"$VITQ" run "$T/g.ini" --dry-run --only '*log2' >"$T/dry2" 2>/dev/null || fail "--only dry run failed"
[ "$(grep -c 'softmax=log2$' "$T/dry2")" = 2 ] && tail -n 1 "$T/dry2" | grep -q '^2 cells (2 grid, 0 baseline) of 5 ' ||
    { cat "$T/dry2"; fail "--only listing wrong"; }
"$VITQ" run "$T/g.ini" --dry-run --only fp32 2>/dev/null | tail -n 1 | grep -q '^1 cell (0 grid, 1 baseline) of 5 ' ||
    fail "--only fp32: the count line does not count what was selected"

# a plugin parameter out of range: error with file:line, exit 1, nothing written
sed "0,/^bits = \${bits}$/s//bits = 40/" "$T/g.ini" >"$T/bad.ini"
set +e
"$VITQ" run "$T/bad.ini" >/dev/null 2>"$T/err"
rc=$?
set -e
[ $rc = 1 ] || fail "bad parameter: exit $rc, expected 1"
grep -q "$T/bad.ini:18: \[quantizer weights\] bits: expected an integer in \[2, 16\], got .40. (plugin .uniform.)" "$T/err" || { cat "$T/err"; fail "bad parameter error does not name file:line"; }
[ ! -e "$T/out" ] || fail "failed validation created the output folder"

# a training INI given to vitq run: one line that says so, not an error per key
set +e
"$VITQ" run experiments/train-fmnist.ini --dry-run >/dev/null 2>"$T/err_train"
rc=$?
set -e
[ $rc = 1 ] || fail "training INI: exit $rc, expected 1"
[ "$(grep -c 'vitq: error:' "$T/err_train")" = 1 ] || { cat "$T/err_train"; fail "training INI: not one error line"; }
grep -qE 'experiments/train-fmnist.ini:[0-9]+: \[recipe\]: this is a training INI \(vitq train experiments/train-fmnist.ini\)' \
    "$T/err_train" || { cat "$T/err_train"; fail "training INI: no hint at vitq train"; }

# an undefined ${axis}: every error reported, sorted by line
sed -e 's/\${softmax}/${softmx}/' -e 's/^batch = 100$/batch = 0/' "$T/g.ini" >"$T/bad2.ini"
set +e
"$VITQ" run "$T/bad2.ini" --dry-run >/dev/null 2>"$T/err2"
rc=$?
set -e
[ $rc = 1 ] || fail "undefined axis: exit $rc"
grep -q "bad2.ini:12: \[data\] batch: expected an integer in \[1, 4096\], got '0'" "$T/err2" || { cat "$T/err2"; fail "no batch error"; }
grep -q 'bad2.ini:29: \[quantizer probs\] plugin: undefined ${softmx}' "$T/err2" || { cat "$T/err2"; fail "no undefined-axis error"; }
[ "$(grep -c 'vitq: error:' "$T/err2")" -ge 3 ] || { cat "$T/err2"; fail "not all errors reported"; }

# a results folder that exists as a file: --dry-run says so, as the run would (--output, and [run] output's line)
touch "$T/afile"
"$VITQ" run "$T/g.ini" --output "$T/afile" --dry-run >/dev/null 2>"$T/err3" && fail "dry run into a file: exit 0"
grep -q "^vitq: error: --output $T/afile: exists and is not a folder$" "$T/err3" || { cat "$T/err3"; fail "--output file"; }
sed "s#^output = .*#output = $T/afile/sub#" "$T/g.ini" >"$T/file.ini"
"$VITQ" run "$T/file.ini" --dry-run >/dev/null 2>"$T/err4" && fail "dry run into a file's child: exit 0"
grep -q "^vitq: error: $T/file.ini:3: \[run\] output: $T/afile: exists and is not a folder$" "$T/err4" ||
    { cat "$T/err4"; fail "[run] output under a file"; }
echo "ok"
