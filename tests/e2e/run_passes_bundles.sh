# run_passes_bundles.sh — `vitq run --dry-run` on a grid whose `recon` axis names bundles of settings
# ([recon = none|qdrop|brecq]) feeding a [pass NAME] section: the cells keep the bundle names in their
# ids, each lists its passes in file order (a pass its bundle switches off marked "(off)"); a bad value
# in one bundle and a quantizer named as a pass are reported together, with file:line, before anything
# runs. The passes are the test plugins build/tests/plugins/noop_{pre,}pass.so.
. tests/e2e/run_common.inc
case "$BUILD" in
/*) export VITQ_PLUGIN_PATH="$BUILD/tests/plugins" ;;
*) export VITQ_PLUGIN_PATH="$ROOT/$BUILD/tests/plugins" ;;
esac

cat >"$T/r.ini" <<INI
[run]
output = $T/out
threads = 1
baseline = false

[model]
path = $MODEL

[data]
eval_limit = 100
calib_size = 32

[quantizer weights]
taps = blocks.*.weight
plugin = uniform
bits = \${bits}

[pass noop_prepass]
iters = 5

[pass noop_pass]
enabled = \${recon_enabled}
importance = \${importance}
drop_prob = \${drop_prob}

[grid]
bits = 4, 3
recon = none, qdrop, brecq

[recon = none]
recon_enabled = false
importance = none
drop_prob = 1.0

[recon = qdrop]
recon_enabled = true
importance = none
drop_prob = 0.5

[recon = brecq]
recon_enabled = true
importance = fisher
drop_prob = 1.0
INI

"$VITQ" run "$T/r.ini" --dry-run >"$T/dry" 2>"$T/log" || { cat "$T/log"; fail "dry run failed"; }
cat >"$T/want" <<'TXT'
bits=4,recon=none bits=4 recon=none passes: noop_prepass, noop_pass (off)
bits=4,recon=qdrop bits=4 recon=qdrop passes: noop_prepass, noop_pass
bits=4,recon=brecq bits=4 recon=brecq passes: noop_prepass, noop_pass
bits=3,recon=none bits=3 recon=none passes: noop_prepass, noop_pass (off)
bits=3,recon=qdrop bits=3 recon=qdrop passes: noop_prepass, noop_pass
bits=3,recon=brecq bits=3 recon=brecq passes: noop_prepass, noop_pass
6 cells (6 grid, 0 baseline) -> T/out; nothing run (--dry-run)
TXT
sed "s|$T|T|" "$T/dry" | tr -s ' ' | diff - "$T/want" || fail "dry-run listing differs"

# one bundle's bad value (line 38) reaches the pass's parameter (line 24); a quantizer named as a pass
sed -e 's/^drop_prob = 0.5$/drop_prob = 1.5/' -e 's/^\[pass noop_prepass\]$/[pass uniform]/' -e 's/^iters = 5$/bits = 4/' \
    "$T/r.ini" >"$T/bad.ini"
set +e
"$VITQ" run "$T/bad.ini" --dry-run >"$T/out.txt" 2>"$T/err"
rc=$?
set -e
[ $rc = 1 ] || { cat "$T/err"; fail "bad pass sections: exit $rc, expected 1"; }
grep -qF "bad.ini:18: [pass uniform]: plugin 'uniform' is a quantizer, not a pass" "$T/err" || { cat "$T/err"; fail "no quantizer-as-pass error"; }
grep -qF "bad.ini:24: [pass noop_pass] drop_prob: expected a number in [0, 1], got '1.5' (plugin 'noop_pass')" "$T/err" ||
    { cat "$T/err"; fail "no bad-parameter error"; }
[ ! -s "$T/out.txt" ] || fail "a failed validation printed cells"
[ ! -e "$T/out" ] || fail "a dry run created the output folder"
echo "ok"
