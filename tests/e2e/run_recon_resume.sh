# run_recon_resume.sh — aph_recon under `vitq run`: a grid (recon = qdrop, brecq) is killed with SIGKILL
# once the first cell's reconstruction has committed a unit (its partial/ state file appears) and rerun;
# the rerun resumes that cell after its committed units (its patch_embed is not reconstructed again) and
# the results equal an uninterrupted run's at the same thread count: the metrics (`vitq results --csv`
# without timings) and every recorded loss of every unit and iteration (`vitq results --curves`, 17
# digits), which the quantized weights of every committed unit feed. The curves are also read back per
# unit: one point per iteration, <unit>/loss and <unit>/round for the four units (the image is quantized
# with a learnable scale, so that patch_embed trains whether or not uniform has AdaRound). Last, the two
# cell files are compared whole (tests/tools/cellcmp).
. tests/e2e/run_common.inc

# AdaRound when this build's uniform has it (`rounding`), else nearest rounding with learnable scales only.
ROUNDING=
"$VITQ" plugins uniform | grep -q '^rounding ' && ROUNDING="rounding = adaround"

write_recon_ini() {
    cat >"$1" <<INI
[run]
output = $2
seed = 3
threads = 2
baseline = false

[model]
path = $MODEL

[data]
eval_limit = 200
batch = 100
calib_size = 32

[quantizer weights]
taps = *.weight
plugin = uniform
bits = 4
granularity = per_channel
$ROUNDING

[quantizer acts]
taps = patch_embed.proj.input, blocks.*.input, blocks.*.attn.q, blocks.*.attn.k, blocks.*.attn.v, blocks.*.attn.probs, head.input
plugin = uniform
bits = 4
learnable = true

[pass aph_recon]
images = 64
iters = 30
batch = 16
lr_scale = 1e-3
record_every = 1
importance = \${importance}
drop_prob = \${drop_prob}

[grid]
recon = qdrop, brecq

[recon = qdrop]
importance = none
drop_prob = 0.5

[recon = brecq]
importance = fisher
drop_prob = 1
INI
}

write_recon_ini "$T/a.ini" "$T/killed"
write_recon_ini "$T/b.ini" "$T/clean"
STATE="$T/killed/partial/recon=qdrop.h5"

"$VITQ" run "$T/a.ini" >/dev/null 2>"$T/log_a" &
pid=$!
for _ in $(seq 1 1200); do # up to 60 s
    [ -f "$STATE" ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.02
done
kill -KILL $pid 2>/dev/null || fail "the run ended before it could be killed"
wait $pid 2>/dev/null || true
[ -f "$STATE" ] || { cat "$T/log_a"; fail "no resume state $STATE before the kill"; }
[ ! -f "$T/killed/cells/recon=qdrop.h5" ] || fail "the cell finished before the kill; the test proves nothing"

"$VITQ" run "$T/a.ini" >/dev/null 2>"$T/log_resume" || { cat "$T/log_resume"; fail "resume failed"; }
[ ! -e "$STATE" ] || fail "the resume state outlived its cell"
# the resumed qdrop cell starts after its committed units: only the brecq cell reconstructs patch_embed
n=$(grep -c '^patch_embed recon \[####################\]' "$T/log_resume" || true)
[ "$n" = 1 ] || { cat "$T/log_resume"; fail "patch_embed reconstructed $n times in the resumed run, expected 1"; }
# and says so, naming the state file
grep -qE '^cell 1/2 recon=qdrop pass aph_recon: resuming after its [1-9][0-9]* committed unit\(s\) from .*/partial/recon=qdrop\.h5' \
    "$T/log_resume" || { cat "$T/log_resume"; fail "the resumed run does not say it resumed"; }

"$VITQ" run "$T/b.ini" >/dev/null 2>"$T/log_b" || { cat "$T/log_b"; fail "uninterrupted run failed"; }
n=$(grep -c '^patch_embed recon \[####################\]' "$T/log_b" || true)
[ "$n" = 2 ] || fail "patch_embed reconstructed $n times in the uninterrupted run, expected 2"

csv_no_time "$T/killed" >"$T/csv_killed"
csv_no_time "$T/clean" >"$T/csv_clean"
[ "$(grep -c ',done,' "$T/csv_clean")" = 2 ] || { cat "$T/csv_clean"; fail "uninterrupted run has not 2 done rows"; }
diff "$T/csv_killed" "$T/csv_clean" || fail "resumed metrics differ from an uninterrupted run"

"$VITQ" results "$T/killed" --curves >"$T/curves_killed" || fail "results --curves failed"
"$VITQ" results "$T/clean" --curves >"$T/curves_clean" || fail "results --curves failed"
diff "$T/curves_killed" "$T/curves_clean" >/dev/null || fail "resumed curves differ from an uninterrupted run"
for cell in 'recon=qdrop' 'recon=brecq'; do
    for u in patch_embed blocks.0 blocks.1 head; do
        for c in loss round; do
            n=$(awk -F'\t' -v id="$cell" -v name="$u/$c" '$1 == id && $2 == name' "$T/curves_killed" | wc -l)
            [ "$n" = 30 ] || fail "$cell: curve $u/$c has $n points, expected 30"
        done
    done
done
first=$(awk -F'\t' '$1 == "recon=qdrop" && $2 == "blocks.0/loss" && $3 == 1 {print $4}' "$T/curves_killed")
[ "$first" = 2 ] || fail "the current loss form starts at 2, got '$first'"
# every dataset and attribute of both cells, bit for bit: /layers too, whose weight rows are measured on the
# weights as evaluated (they were the calibration-time weights in an uninterrupted run, the reconstructed
# ones after a resume). Only shared_stage may differ: the resumed cell computed its calibration itself.
case "$BUILD" in
/*) CELLCMP="$BUILD/tests/tools/cellcmp" ;;
*) CELLCMP="$ROOT/$BUILD/tests/tools/cellcmp" ;;
esac
"$CELLCMP" "$T/killed" "$T/clean" >"$T/cmp" 2>&1 || true
grep -q '^2 cells in A, 2 in B' "$T/cmp" || { cat "$T/cmp"; fail "cellcmp did not compare the 2 cells"; }
if grep ' differs$' "$T/cmp" | grep -v ': / attribute shared_stage differs$'; then
    fail "resumed cells differ from an uninterrupted run's (above)"
fi
# Ctrl-C once a unit is committed: exit 130, and the line says where the committed units are
write_recon_ini "$T/c.ini" "$T/int"
"$VITQ" run "$T/c.ini" >/dev/null 2>"$T/log_int" &
pid=$!
for _ in $(seq 1 1200); do
    [ -f "$T/int/partial/recon=qdrop.h5" ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.02
done
kill -INT $pid 2>/dev/null || fail "the run ended before it could be interrupted"
rc=0
wait $pid 2>/dev/null || rc=$?
[ "$rc" = 130 ] || { cat "$T/log_int"; fail "Ctrl-C: exit $rc, expected 130"; }
grep -qF "recon=qdrop: interrupted; its committed units are in $T/int/partial/recon=qdrop.h5 (rerun to resume" \
    "$T/log_int" || { cat "$T/log_int"; fail "the interruption does not name the partial state"; }
echo "ok"
