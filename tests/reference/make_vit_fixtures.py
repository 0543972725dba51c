#!/usr/bin/python3
"""make_vit_fixtures.py — reference ViT forward fixtures for tests/test_vit.c (run by hand, never by CI).

Defines timm's VisionTransformer (eval mode) in plain torch with timm's parameter names — timm itself is
not installed — gives it random weights from a fixed seed, and writes for each of two models:
  tests/fixtures/vit_<name>.safetensors       the model, F32, architecture in __metadata__ (timm names)
  tests/fixtures/vit_<name>_ref.safetensors   inputs "images" (B,Cin,S,S), "logits" (B,K), and the
                                              residual stream "res.L" (B,N,C) entering block L
                                              (res.0 = embeddings, res.depth = last block's output)
computed in float32 by torch 1.13 (CPU). Models:
  fmnist:  28x28x1,  patch 4,  dim 48, depth 2, heads 3, 10 classes, 4 images
  in224:   224x224x3, patch 16, dim 64, depth 2, heads 2, 10 classes, 2 images

Mirrors timm 0.9 vision_transformer.py: PatchEmbed (Conv2d stride = kernel = P, flatten(2).transpose),
_pos_embed (cat cls_token, + pos_embed), Block (x + attn(norm1(x)); x + mlp(norm2(x))), Attention
(qkv.reshape(B,N,3,H,D).permute(2,0,3,1,4), (q*scale) @ k^T, softmax, @ v, transpose, reshape, proj),
Mlp (fc1, nn.GELU() exact, fc2), final norm, head on token 0. LayerNorm eps 1e-6.
Weights: linear trunc_normal (std per layer, larger than timm's 0.02 init so attention is not uniform and
activations look like a trained model's), LayerNorm weights 1 + 0.2 N(0,1), biases 0.1 N(0,1).

Usage: /usr/bin/python3 tests/reference/make_vit_fixtures.py   (from the repository root)
"""
import json
import os
import struct

import torch
import torch.nn as nn

FIXTURE_VERSION = "1"
SEED = 1234
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")


class PatchEmbed(nn.Module):
    def __init__(self, img, p, cin, dim):
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, kernel_size=p, stride=p)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim, heads, qkv_bias):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, qkv_bias):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    def __init__(self, img_size, patch_size, in_chans, num_classes, embed_dim, depth, num_heads, mlp_ratio,
                 qkv_bias):
        super().__init__()
        n = (img_size // patch_size) ** 2
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, embed_dim))
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x):
        """Returns logits and the residual stream entering each block plus the last output."""
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        res = [x]
        for b in self.blocks:
            x = b(x)
            res.append(x)
        x = self.norm(x)
        return self.head(x[:, 0]), res


def init_weights(m, g):
    def tn(t, std):  # a normal truncated at 2 std (redrawn by fmod, as a seeded stand-in for trunc_normal_)
        with torch.no_grad():
            t.copy_(torch.fmod(torch.randn(t.shape, generator=g), 2.0) * std)

    C = m.cls_token.shape[-1]
    pd = m.patch_embed.proj.weight[0].numel()
    tn(m.patch_embed.proj.weight, 1.0 / pd ** 0.5)
    tn(m.patch_embed.proj.bias, 0.1)
    tn(m.cls_token, 0.5)
    tn(m.pos_embed, 0.3)
    for b in m.blocks:
        for ln in (b.norm1, b.norm2):
            tn(ln.weight, 0.2)
            with torch.no_grad():
                ln.weight.add_(1.0)
            tn(ln.bias, 0.1)
        tn(b.attn.qkv.weight, 0.15)
        if b.attn.qkv.bias is not None:
            tn(b.attn.qkv.bias, 0.1)
        tn(b.attn.proj.weight, 1.0 / C ** 0.5)
        tn(b.attn.proj.bias, 0.1)
        tn(b.mlp.fc1.weight, 1.5 / C ** 0.5)
        tn(b.mlp.fc1.bias, 0.1)
        tn(b.mlp.fc2.weight, 1.0 / b.mlp.fc1.weight.shape[0] ** 0.5)
        tn(b.mlp.fc2.bias, 0.1)
    tn(m.norm.weight, 0.2)
    with torch.no_grad():
        m.norm.weight.add_(1.0)
    tn(m.norm.bias, 0.1)
    tn(m.head.weight, 1.0 / C ** 0.5)
    tn(m.head.bias, 0.1)


def write_safetensors(path, tensors, meta):
    """8-byte little-endian header length, JSON header (with __metadata__), raw little-endian F32 data."""
    header = {"__metadata__": meta}
    blobs, off = [], 0
    for name, t in tensors:
        b = t.detach().contiguous().to(torch.float32).numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    print(f"{path}: {os.path.getsize(path)} bytes")


def make(name, cfg, n_images, mean, std, crop_pct):
    g = torch.Generator().manual_seed(SEED)
    m = VisionTransformer(**cfg).eval()
    init_weights(m, g)
    meta = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in cfg.items()}
    meta.update({"mean": ",".join(str(x) for x in mean), "std": ",".join(str(x) for x in std),
                 "crop_pct": str(crop_pct), "fixture_version": FIXTURE_VERSION, "seed": str(SEED),
                 "made_by": "tests/reference/make_vit_fixtures.py"})
    write_safetensors(os.path.join(OUT, f"vit_{name}.safetensors"), list(m.state_dict().items()), meta)

    S, cin = cfg["img_size"], cfg["in_chans"]
    images = torch.randn(n_images, cin, S, S, generator=g)
    with torch.no_grad():
        logits, res = m(images)
    ref = [("images", images), ("logits", logits)] + [(f"res.{i}", r) for i, r in enumerate(res)]
    write_safetensors(os.path.join(OUT, f"vit_{name}_ref.safetensors"), ref,
                      {"fixture_version": FIXTURE_VERSION, "seed": str(SEED), "torch": torch.__version__})
    print(f"  {name}: logits[0] = {logits[0].tolist()}")


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    make("fmnist", dict(img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=48, depth=2,
                        num_heads=3, mlp_ratio=4.0, qkv_bias=True), 4, [0.286], [0.353], 1.0)
    make("in224", dict(img_size=224, patch_size=16, in_chans=3, num_classes=10, embed_dim=64, depth=2,
                       num_heads=2, mlp_ratio=4.0, qkv_bias=True), 2, [0.485, 0.456, 0.406],
         [0.229, 0.224, 0.225], 0.875)


if __name__ == "__main__":
    main()
