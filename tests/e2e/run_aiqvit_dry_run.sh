# run_aiqvit_dry_run.sh — the AIQViT experiment files validate: experiments/aiqvit-fmnist.ini as it is (25
# cells: the float baseline, bits 4 and 3 x 12 configurations, lowrank_nas off only in the calibration-only
# ones; each cell binds exactly one of the four post-Softmax sections), and experiments/aiqvit-imagenet.ini on
# a copy whose checkpoints and dataset point at the test fixture and Fashion-MNIST, and as it is (without the
# checkpoints and ImageNet: validated against the built-in architectures, a real run refused).
. tests/e2e/run_common.inc

"$VITQ" run experiments/aiqvit-fmnist.ini --dry-run >"$T/fm" 2>"$T/fm.err" || { cat "$T/fm.err"; fail "aiqvit-fmnist.ini does not validate"; }
tail -1 "$T/fm" | grep -qF '25 cells (24 grid, 1 baseline)' || { cat "$T/fm"; fail "aiqvit-fmnist.ini: not 25 cells"; }
[ "$(grep -c 'passes: repq, lowrank_nas$' "$T/fm")" = 22 ] || { cat "$T/fm"; fail "aiqvit-fmnist.ini: lowrank_nas not on in 22 cells"; }
[ "$(grep -c 'passes: repq, lowrank_nas (off)$' "$T/fm")" = 2 ] || { cat "$T/fm"; fail "aiqvit-fmnist.ini: lowrank_nas not off in 2 cells"; }
grep -q '^bits=3,config=logsqrt2.search.cl ' "$T/fm" || fail "aiqvit-fmnist.ini: no W3A3 log-sqrt2 cell"

sed -e "s|^model_path = .*|model_path = $MODEL|" -e 's|^model_arch = .*|model_arch =|' -e 's|^dataset = .*|dataset = fashion-mnist|' \
    experiments/aiqvit-imagenet.ini >"$T/in.ini"
"$VITQ" run "$T/in.ini" --dry-run >"$T/in" 2>"$T/in.err" || { cat "$T/in.err"; fail "aiqvit-imagenet.ini (fixture paths) does not validate"; }
tail -1 "$T/in" | grep -qF '46 cells (45 grid, 1 baseline)' || { cat "$T/in"; fail "aiqvit-imagenet.ini: not 45 grid cells"; }
grep -q '^model=deit_small,bits=4,config=r100 ' "$T/in" || fail "aiqvit-imagenet.ini: no DeiT-S W4A4 r100 cell"

# as it is, without checkpoints or ImageNet: --dry-run checks each model against its built-in architecture and
# names what is absent; a real run refuses, naming the checkpoint, and writes nothing
if [ ! -f checkpoints/deit_tiny_patch16_224.safetensors ]; then
    "$VITQ" run experiments/aiqvit-imagenet.ini --dry-run >"$T/real" 2>"$T/real.err" || { cat "$T/real.err"; fail "aiqvit-imagenet.ini as it is does not validate"; }
    grep -qF 'not here: checkpoints/deit_tiny_patch16_224.safetensors: absent; validated against the built-in architecture deit_tiny_patch16_224' "$T/real" || { cat "$T/real"; fail "no 'not here' line for the absent checkpoint"; }
    grep -q '^not here: /data/imagenet/val: absent' "$T/real" || { cat "$T/real"; fail "no 'not here' line for the absent dataset"; }
    set +e
    (cd "$T" && "$VITQ" run "$ROOT/experiments/aiqvit-imagenet.ini" --only 'model=deit_tiny,bits=4,config=r20' >/dev/null 2>"$T/run.err")
    rc=$?
    set -e
    [ $rc = 1 ] || fail "aiqvit-imagenet.ini without checkpoints: a real run exits $rc, expected 1"
    grep -qF 'checkpoints/deit_tiny_patch16_224.safetensors: cannot open' "$T/run.err" || { cat "$T/run.err"; fail "no missing-checkpoint error"; }
    [ ! -e "$T/results" ] || fail "a refused run wrote a results folder"
fi
echo "ok"
