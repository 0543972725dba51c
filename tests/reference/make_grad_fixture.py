#!/usr/bin/python3
"""make_grad_fixture.py — writes tests/fixtures/grad_tiny.safetensors: a tiny timm-layout ViT, a batch,
its loss and every gradient from PyTorch autograd, for tests/test_grad.c (grad_model_torch*).

Run by hand (never by CI), from the repository root:  /usr/bin/python3 tests/reference/make_grad_fixture.py
Needs only torch (Debian's python3-torch 1.13); the network is written out in plain torch with timm's
parameter names and timm's semantics (conv patch embedding, class token, learned position embedding,
pre-norm blocks with LayerNorm eps 1e-6, fused qkv scaled by head_dim^-0.5, exact-erf GELU, final norm,
head on the class token), so no timm install is needed. The file is safetensors written by hand:
8-byte little-endian header length, JSON header (with __metadata__), then F32 data.

Contents (all F32):
  every parameter under its timm name; "input" (B,1,8,8); "labels" (B) as floats; "logits" (B,K);
  "loss" (1) = cross-entropy, label smoothing 0.1, mean over the batch;
  "grad.<param>" for every parameter; "grad.blocks.<l>.out" (B,N,C) = dloss/d(output of block l);
  "grad.blocks.0.in" (B,N,C) = dloss/d(input of block 0).
Block 1 uses ReLU in its MLP when RELU_BLOCK is set (MLP reconstruction case): metadata "mlp_act" says
which activation each block uses.
"""
import json
import math
import struct

import torch
import torch.nn.functional as F

IMG, PATCH, CIN, DIM, DEPTH, HEADS, CLASSES, MLP_RATIO = 8, 4, 1, 12, 2, 2, 5, 4.0
B, SMOOTH, SEED = 3, 0.1, 20240601
MLP_ACTS = ["gelu", "relu"]  # block 0 GELU (timm), block 1 ReLU (after MLP reconstruction)
OUT = "tests/fixtures/grad_tiny.safetensors"

torch.manual_seed(SEED)
torch.set_default_dtype(torch.float32)
N = (IMG // PATCH) ** 2 + 1
HID = int(DIM * MLP_RATIO + 0.5)


def param(*shape, std=0.3, mean=0.0):
    return (torch.randn(*shape) * std + mean).requires_grad_(True)


# timm state_dict order
P = {}
P["cls_token"] = param(1, 1, DIM)
P["pos_embed"] = param(1, N, DIM)
P["patch_embed.proj.weight"] = param(DIM, CIN, PATCH, PATCH)
P["patch_embed.proj.bias"] = param(DIM, std=0.1)
for l in range(DEPTH):
    p = f"blocks.{l}."
    P[p + "norm1.weight"] = param(DIM, std=0.2, mean=1.0)
    P[p + "norm1.bias"] = param(DIM, std=0.1)
    P[p + "attn.qkv.weight"] = param(3 * DIM, DIM)
    P[p + "attn.qkv.bias"] = param(3 * DIM, std=0.1)
    P[p + "attn.proj.weight"] = param(DIM, DIM)
    P[p + "attn.proj.bias"] = param(DIM, std=0.1)
    P[p + "norm2.weight"] = param(DIM, std=0.2, mean=1.0)
    P[p + "norm2.bias"] = param(DIM, std=0.1)
    P[p + "mlp.fc1.weight"] = param(HID, DIM)
    P[p + "mlp.fc1.bias"] = param(HID, std=0.1)
    P[p + "mlp.fc2.weight"] = param(DIM, HID)
    P[p + "mlp.fc2.bias"] = param(DIM, std=0.1)
P["norm.weight"] = param(DIM, std=0.2, mean=1.0)
P["norm.bias"] = param(DIM, std=0.1)
P["head.weight"] = param(CLASSES, DIM)
P["head.bias"] = param(CLASSES, std=0.1)

x_img = torch.randn(B, CIN, IMG, IMG)
labels = torch.tensor([1, 4, 0])


def forward(img):
    x = F.conv2d(img, P["patch_embed.proj.weight"], P["patch_embed.proj.bias"], stride=PATCH)
    x = x.flatten(2).transpose(1, 2)  # (B, Np, C)
    x = torch.cat([P["cls_token"].expand(img.shape[0], -1, -1), x], dim=1) + P["pos_embed"]
    ins, outs = [], []
    D = DIM // HEADS
    for l in range(DEPTH):
        p = f"blocks.{l}."
        x.retain_grad()
        ins.append(x)
        h = F.layer_norm(x, (DIM,), P[p + "norm1.weight"], P[p + "norm1.bias"], eps=1e-6)
        qkv = F.linear(h, P[p + "attn.qkv.weight"], P[p + "attn.qkv.bias"])
        qkv = qkv.reshape(img.shape[0], N, 3, HEADS, D).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        att = (q @ k.transpose(-2, -1)) * D ** -0.5
        att = att.softmax(dim=-1)
        a = (att @ v).transpose(1, 2).reshape(img.shape[0], N, DIM)
        x = x + F.linear(a, P[p + "attn.proj.weight"], P[p + "attn.proj.bias"])
        h = F.layer_norm(x, (DIM,), P[p + "norm2.weight"], P[p + "norm2.bias"], eps=1e-6)
        h = F.linear(h, P[p + "mlp.fc1.weight"], P[p + "mlp.fc1.bias"])
        h = F.gelu(h) if MLP_ACTS[l] == "gelu" else F.relu(h)
        x = x + F.linear(h, P[p + "mlp.fc2.weight"], P[p + "mlp.fc2.bias"])
        x.retain_grad()
        outs.append(x)
    x = F.layer_norm(x, (DIM,), P["norm.weight"], P["norm.bias"], eps=1e-6)
    return F.linear(x[:, 0], P["head.weight"], P["head.bias"]), ins, outs


logits, ins, outs = forward(x_img)
loss = F.cross_entropy(logits, labels, label_smoothing=SMOOTH)
loss.backward()

T = {}
for k, v in P.items():
    T[k] = v.detach()
T["input"] = x_img
T["labels"] = labels.float()
T["logits"] = logits.detach()
T["loss"] = loss.detach().reshape(1)
for k, v in P.items():
    T["grad." + k] = v.grad
for l in range(DEPTH):
    T[f"grad.blocks.{l}.out"] = outs[l].grad
T["grad.blocks.0.in"] = ins[0].grad

meta = {
    "img_size": str(IMG), "patch_size": str(PATCH), "in_chans": str(CIN), "num_classes": str(CLASSES),
    "embed_dim": str(DIM), "depth": str(DEPTH), "num_heads": str(HEADS), "mlp_ratio": str(MLP_RATIO),
    "qkv_bias": "true", "mean": "0.5", "std": "0.5", "crop_pct": "1.0",
    "label_smoothing": str(SMOOTH), "mlp_act": ",".join(MLP_ACTS), "seed": str(SEED),
    "fixture": "grad_tiny", "fixture_version": "1", "torch_version": torch.__version__,
    "made_by": "tests/reference/make_grad_fixture.py",
}
header, blobs, off = {"__metadata__": meta}, [], 0
for k, v in T.items():
    b = v.detach().contiguous().numpy().astype("<f4").tobytes()
    header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
hj = json.dumps(header, separators=(",", ":")).encode()
hj += b" " * ((8 - len(hj) % 8) % 8)
with open(OUT, "wb") as f:
    f.write(struct.pack("<Q", len(hj)))
    f.write(hj)
    for b in blobs:
        f.write(b)
print(f"wrote {OUT}: {len(T)} tensors, loss {loss.item():.6f}")
