# run_checkpoint_replaced.sh — results are keyed by content: a grid run on a checkpoint, rerun (every cell
# skipped), then the checkpoint replaced at the same path by another model (one weight changed): the rerun
# recomputes every cell instead of printing the old model's table, and each cell file and the index carry
# the new file's SHA-256 as `sha256sum` prints it.
. tests/e2e/run_common.inc

cp "$MODEL" "$T/model.safetensors"
write_ini "$T/g.ini" "$T/out" 100 8
sed -i "s|^path = .*|path = $T/model.safetensors|" "$T/g.ini"
"$VITQ" run "$T/g.ini" >/dev/null 2>"$T/log1" || { cat "$T/log1"; fail "first run failed"; }
sha1=$(sha256sum "$T/model.safetensors" | cut -c1-64)
for c in "$T"/out/cells/*.h5; do grep -aq "$sha1" "$c" || fail "$c does not hold the checkpoint's sha256"; done
grep -aq "$sha1" "$T/out/run.h5" || fail "the index does not hold the checkpoint's sha256"
"$VITQ" run "$T/g.ini" >/dev/null 2>"$T/log2" || { cat "$T/log2"; fail "rerun failed"; }
[ "$(grep -c 'already done, skipped' "$T/log2")" = 3 ] || { cat "$T/log2"; fail "rerun did not skip all 3 cells"; }

# the same path, another model: the last 4 bytes (head.bias[-1]) become 1.0f
size=$(stat -c %s "$T/model.safetensors")
printf '\000\000\200\077' | dd of="$T/model.safetensors" bs=1 seek=$((size - 4)) conv=notrunc status=none
sha2=$(sha256sum "$T/model.safetensors" | cut -c1-64)
[ "$sha1" != "$sha2" ] || fail "the checkpoint did not change"
"$VITQ" run "$T/g.ini" >/dev/null 2>"$T/log3" || { cat "$T/log3"; fail "run on the replaced checkpoint failed"; }
grep -q 'already done, skipped' "$T/log3" && { cat "$T/log3"; fail "a cell of the old checkpoint was kept"; }
[ "$(grep -c ': done  top1' "$T/log3")" = 3 ] || { cat "$T/log3"; fail "not every cell was recomputed"; }
for c in "$T"/out/cells/*.h5; do
    grep -aq "$sha2" "$c" || fail "$c does not hold the new sha256"
    grep -aq "$sha1" "$c" && fail "$c still holds the old sha256"
done
grep -aq "$sha2" "$T/out/run.h5" || fail "the index does not hold the new sha256"
echo "ok"
