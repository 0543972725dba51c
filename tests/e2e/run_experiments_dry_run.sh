# run_experiments_dry_run.sh — the APHQ experiment files validate: experiments/aphq-fmnist.ini as it is
# (21 cells: the float baseline, bits 4 and 3 x recon none/brecq/qdrop/aphq/aphq_diag x mr off/on; aph_recon
# off where recon = none, mlp_relu off where mr = off, and first of the passes),
# and experiments/aphq-imagenet.ini on a copy whose checkpoints and dataset point at the test fixture and
# Fashion-MNIST, and as it is (its absent checkpoints checked against their built-in architectures).
# Skipped while this build's uniform lacks init = aphq (the uniform branch's ABI-2 upgrade).
. tests/e2e/run_common.inc
"$VITQ" plugins uniform | grep -q 'aphq' || { echo "skip: uniform has no init = aphq yet"; exit 77; }

"$VITQ" run experiments/aphq-fmnist.ini --dry-run >"$T/fm" 2>"$T/fm.err" || { cat "$T/fm.err"; fail "aphq-fmnist.ini does not validate"; }
tail -1 "$T/fm" | grep -qF '21 cells (20 grid, 1 baseline)' || { cat "$T/fm"; fail "aphq-fmnist.ini: not 21 cells"; }
[ "$(grep -c 'mr=on .*passes: mlp_relu, repq, aph_recon$' "$T/fm")" = 8 ] || { cat "$T/fm"; fail "aphq-fmnist.ini: MR + reconstruction not in 8 cells"; }
[ "$(grep -c 'mr=off .*passes: mlp_relu (off), repq, aph_recon$' "$T/fm")" = 8 ] || { cat "$T/fm"; fail "aphq-fmnist.ini: reconstruction alone not in 8 cells"; }
[ "$(grep -c 'recon=none,mr=on .*passes: mlp_relu, repq, aph_recon (off)$' "$T/fm")" = 2 ] || { cat "$T/fm"; fail "aphq-fmnist.ini: MR + calibration not in 2 cells"; }
[ "$(grep -c 'recon=none,mr=off .*passes: mlp_relu (off), repq, aph_recon (off)$' "$T/fm")" = 2 ] || { cat "$T/fm"; fail "aphq-fmnist.ini: calibration only not in 2 cells"; }

sed -e "s|^model_path = .*|model_path = $MODEL|" -e 's|^model_arch = .*|model_arch =|' -e 's|^dataset = .*|dataset = fashion-mnist|' \
    experiments/aphq-imagenet.ini >"$T/in.ini"
"$VITQ" run "$T/in.ini" --dry-run >"$T/in" 2>"$T/in.err" || { cat "$T/in.err"; fail "aphq-imagenet.ini (fixture paths) does not validate"; }
tail -1 "$T/in" | grep -qF '101 cells (100 grid, 1 baseline)' || { cat "$T/in"; fail "aphq-imagenet.ini: not 100 grid cells"; }
grep -q '^model=deit_base,bits=3,recon=aphq,mr=on .*passes: mlp_relu, repq, aph_recon$' "$T/in" || fail "aphq-imagenet.ini: no deit_base W3A3 APHQ + MR cell"

# as it is, without checkpoints or ImageNet: --dry-run checks each model against its built-in architecture and
# names what is absent; a real run refuses, naming the checkpoint, and writes nothing
if [ ! -f checkpoints/deit_tiny_patch16_224.safetensors ]; then
    "$VITQ" run experiments/aphq-imagenet.ini --dry-run >"$T/real" 2>"$T/real.err" || { cat "$T/real.err"; fail "aphq-imagenet.ini as it is does not validate"; }
    grep -qF 'not here: checkpoints/deit_tiny_patch16_224.safetensors: absent; validated against the built-in architecture deit_tiny_patch16_224' "$T/real" || { cat "$T/real"; fail "no 'not here' line for the absent checkpoint"; }
    grep -q '^not here: /data/imagenet/val: absent' "$T/real" || { cat "$T/real"; fail "no 'not here' line for the absent dataset"; }
    set +e
    (cd "$T" && "$VITQ" run "$ROOT/experiments/aphq-imagenet.ini" --only 'model=deit_tiny,bits=4,recon=none,mr=off' >/dev/null 2>"$T/run.err")
    rc=$?
    set -e
    [ $rc = 1 ] || fail "aphq-imagenet.ini without checkpoints: a real run exits $rc, expected 1"
    grep -qF 'checkpoints/deit_tiny_patch16_224.safetensors: cannot open' "$T/run.err" || { cat "$T/run.err"; fail "no missing-checkpoint error"; }
    [ ! -e "$T/results" ] || fail "a refused run wrote a results folder"
fi
echo "ok"
