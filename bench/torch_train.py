#!/usr/bin/python3
"""torch_train.py — PyTorch's side of bench_train.c: training images/s of vit-fmnist (28x28x1, patch 4,
dim 96, depth 6, heads 3, MLP 384, qkv bias, 10 classes) at batch 128 in plain torch (timm's layout and
semantics: conv patch embedding, class token, position embedding, pre-norm blocks, exact GELU), one step
= forward, CrossEntropyLoss(label_smoothing=0.1), backward, clip_grad_norm_(1.0), AdamW — the step of
`vitq train` — at torch.set_num_threads(1) and (2). Random data. Prints the BLAS torch uses.
Run by `make bench` from the repository root; optional (skipped when torch is missing)."""
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("PyTorch: not installed, skipped")
    sys.exit(77)  # skipped, as the e2e scripts: bench_torch says no more

B, STEPS, WARMUP = 128, 8, 2
IMG, PATCH, CIN, DIM, DEPTH, HEADS, K = 28, 4, 1, 96, 6, 3, 10


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(DIM, eps=1e-6)
        self.qkv = nn.Linear(DIM, 3 * DIM)
        self.proj = nn.Linear(DIM, DIM)
        self.norm2 = nn.LayerNorm(DIM, eps=1e-6)
        self.fc1 = nn.Linear(DIM, 4 * DIM)
        self.fc2 = nn.Linear(4 * DIM, DIM)

    def forward(self, x):
        b, n, c = x.shape
        d = c // HEADS
        qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, HEADS, d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        att = ((q @ k.transpose(-2, -1)) * d ** -0.5).softmax(dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, n, c))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    def __init__(self):
        super().__init__()
        n = (IMG // PATCH) ** 2 + 1
        self.patch = nn.Conv2d(CIN, DIM, PATCH, PATCH)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos_embed = nn.Parameter(torch.randn(1, n, DIM) * 0.02)
        self.blocks = nn.Sequential(*[Block() for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(DIM, eps=1e-6)
        self.head = nn.Linear(DIM, K)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


def rate(threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ViT()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    lossf = nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.randn(B, CIN, IMG, IMG)
    y = torch.randint(0, K, (B,))
    for s in range(WARMUP + STEPS):
        if s == WARMUP:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return STEPS * B / (time.perf_counter() - t0)


import re
cfg = torch.__config__.show()
blas = re.findall(r"(BLAS_INFO=[^,\s]+|LAPACK_INFO=[^,\s]+|USE_MKLDNN=[^,\s]+|USE_OPENMP=[^,\s]+)", cfg)
print("PyTorch %s config (torch.__config__.show()): %s" % (torch.__version__, ", ".join(blas) or "(no BLAS line)"))
torch.ones(64, 64) @ torch.ones(64, 64)  # make sure the BLAS is loaded, then name the file really mapped
import os
libs = set()
with open("/proc/self/maps") as f:
    for line in f:
        path = line.split()[-1] if len(line.split()) >= 6 else ""
        if "blas" in path.lower():
            libs.add(os.path.realpath(path))
print("PyTorch BLAS library loaded: %s" % (", ".join(sorted(libs)) if libs else "(none found in /proc/self/maps)"))
try:  # torch.set_num_threads does not reach OpenBLAS: its GEMMs keep OpenBLAS's own thread count
    import ctypes
    ob = [l for l in libs if "openblas" in l]
    if ob:
        n_ob = ctypes.CDLL(ob[0]).openblas_get_num_threads()
        print("PyTorch's OpenBLAS threads (also in the threads=1 run): %d" % n_ob)
except OSError:
    pass
for t in (1, 2):
    print("torch train threads=%d images_per_s=%.1f" % (t, rate(t)), flush=True)
