# cli_usage.sh — the command line's usage rules: a usage error prints the usage on stderr (nothing on stdout)
# and exits 2, bare `vitq` as `vitq bogus`; a command without its argument says what is missing in one
# line; `vitq results --csv --curves` is refused as its usage line
# [--csv | --curves] says; every option in `vitq run --help` is in its usage lines (--keys was not); `vitq help
# run` is `vitq run --help`; `vitq eval` refuses a --limit beyond the split and takes --threads 0.
. tests/e2e/run_common.inc

for args in "" "bogus"; do
    set +e
    "$VITQ" $args >"$T/out" 2>"$T/err"
    rc=$?
    set -e
    [ $rc = 2 ] || fail "vitq $args: exit $rc, expected 2"
    [ ! -s "$T/out" ] || { cat "$T/out"; fail "vitq $args: usage on stdout"; }
    grep -q '^usage: vitq COMMAND' "$T/err" || { cat "$T/err"; fail "vitq $args: no usage on stderr"; }
done
"$VITQ" --help 2>/dev/null | grep -q '^usage: vitq COMMAND' || fail "vitq --help: usage not on stdout"
# a command without its argument: one error line naming what is missing, exit 2, nothing on stdout
for cmd in run inspect results plot train eval; do
    set +e
    "$VITQ" $cmd >"$T/out" 2>"$T/err"
    rc=$?
    set -e
    [ $rc = 2 ] || fail "vitq $cmd: exit $rc, expected 2"
    [ ! -s "$T/out" ] || fail "vitq $cmd: printed on stdout"
    [ "$(wc -l <"$T/err")" = 1 ] && grep -q "^vitq: error: .* is required.*(vitq $cmd --help)$" "$T/err" ||
        { cat "$T/err"; fail "vitq $cmd: not one 'is required' line"; }
done

mkdir "$T/run" # what `vitq results` reads is checked after the options
set +e
"$VITQ" results "$T/run" --csv --curves >"$T/out" 2>"$T/err"
rc=$?
set -e
[ $rc = 2 ] || fail "--csv --curves: exit $rc, expected 2"
grep -q '^vitq: error: --csv and --curves print different things: give one' "$T/err" || { cat "$T/err"; fail "message"; }
[ ! -s "$T/out" ] || fail "--csv --curves printed something"

"$VITQ" run --help >"$T/help" 2>/dev/null
usage=$(sed -n '1,/^$/p' "$T/help")
for opt in $(grep -o '^  --[a-z-]*' "$T/help"); do
    echo "$usage" | grep -q -- "$opt" || fail "vitq run --help lists $opt, its usage lines do not"
done
# vitq help COMMAND is vitq COMMAND --help
"$VITQ" help run 2>/dev/null | diff - "$T/help" >/dev/null || fail "vitq help run is not vitq run --help"

# vitq eval refuses a --limit beyond the split, as [data] eval_limit is refused; --threads 0 is all CPUs
set +e
"$VITQ" eval --model "$ROOT/tests/fixtures/vit_fmnist.safetensors" --limit 20000 -q >"$T/out" 2>"$T/err"
rc=$?
set -e
[ $rc = 1 ] || { cat "$T/err"; fail "eval --limit 20000: exit $rc, expected 1"; }
grep -q '^vitq: error: --limit 20000 exceeds the 10000 images of the test split' "$T/err" || { cat "$T/err"; fail "eval --limit message"; }
"$VITQ" eval --model "$ROOT/tests/fixtures/vit_fmnist.safetensors" --limit 100 --threads 0 -q >"$T/out" 2>"$T/err" ||
    { cat "$T/err"; fail "eval --threads 0 refused"; }
echo "ok"
