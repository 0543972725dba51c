# eval_fmnist_torch.sh — issue 11, case 1, end to end: a Fashion-MNIST ViT trained one epoch by plain PyTorch
# (tests/reference/make_fmnist_torch_model.py: ToTensor + Normalize(0.2860, 0.3530), no crop_pct in its
# metadata) scores exactly what PyTorch scored on Debian's test split, 81.71 % (8171 of 10000), under a
# transform line without resize or crop; asking for crop_pct 0.9 reproduces the issue's wrong transform
# (resize 31, centre crop 28: 6857, PyTorch's count for it), so the transform is all that differed.
set -euo pipefail
BUILD=${BUILD:-build}
VITQ="$BUILD/vitq"
MODEL=tests/fixtures/fmnist_torch/vit_fmnist_torch.safetensors
[ -d /usr/share/datasets/fashion-mnist ] || { echo "skip: dataset-fashion-mnist not installed"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
out=$("$VITQ" eval --model "$MODEL" -q) || fail "vitq eval failed: $out"
echo "$out"
[ "$(echo "$out" | head -1)" = "transform: none (28x28 IDX images as they are), mean (0.286) std (0.353)" ] ||
    fail "first line is not the IDX transform"
echo "$out" | grep -qx 'top-1     81.71 % (8171 of 10000)' || fail "not PyTorch's 8171 of 10000"
out=$("$VITQ" eval --model "$MODEL" -q --crop-pct 0.9) || fail "vitq eval --crop-pct failed"
[ "$(echo "$out" | head -1)" = "transform: resize 31 bicubic, centre crop 28, mean (0.286) std (0.353)" ] ||
    fail "--crop-pct 0.9 transform: $(echo "$out" | head -1)"
echo "$out" | grep -qx 'top-1     68.57 % (6857 of 10000)' || fail "--crop-pct 0.9 is not the wrong transform's 6857"
echo "ok"
