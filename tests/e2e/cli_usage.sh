# cli_usage.sh — the command line's usage rules: a usage error prints the usage on stderr (nothing on stdout)
# and exits 2, bare `vitq` as `vitq bogus`; `vitq results --csv --curves` is refused as its usage line
# [--csv | --curves] says; every option in `vitq run --help` is in its usage lines (--keys was not).
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
echo "ok"
