"""timm_ref.py — shared helpers of the issue-11 fixture scripts (make_variant_fixtures.py,
make_decode_fixtures.py, make_layout_fixtures.py, make_fmnist_torch_model.py). Not a script.

* VisionTransformer: timm 0.9's VisionTransformer (eval mode) re-written in plain torch with timm's
  parameter names, plus the two variants timm keeps elsewhere: the distillation token of deit.py's
  VisionTransformerDistilled, and the representation layer (`pre_logits.fc` + Tanh) of timm <= 0.5
  (timm 0.6 removed `representation_size`; 0.9's checkpoint_filter_fn silently drops `pre_logits.*`).
  Semantics followed (timm 0.9 vision_transformer.py / deit.py):
    - num_prefix_tokens = class_token (+1 if distilled); pos_embed rows = N if no_embed_class else
      N + num_prefix_tokens;
    - _pos_embed: no_embed_class -> x + pos_embed, then cat(prefix tokens); else cat, then + pos_embed;
    - Block: x + ls1(attn(norm1(x))); x + ls2(mlp(norm2(x))); LayerScale is x * gamma;
      Attention with optional qk_norm (LayerNorm over head_dim applied to q and k after the split);
    - use_fc_norm = (global_pool == 'avg') if fc_norm is None else fc_norm;
      norm = LayerNorm if not use_fc_norm else Identity; fc_norm = LayerNorm if use_fc_norm else Identity;
    - forward_head: 'avg' -> x[:, num_prefix_tokens:].mean(1); 'token' -> x[:, 0]; then fc_norm,
      (pre_logits fc + tanh, timm <= 0.5), head;
    - distilled: (head(x[:, 0]) + head_dist(x[:, 1])) / 2 at eval.
  LayerNorm eps 1e-6 everywhere, GELU exact (erf).
* init_weights: seeded, deliberately larger than timm's init so attention is not uniform.
* write_safetensors: the format by hand (Debian has no python3-safetensors).
* write_u8 / write_f32: the VQU8 / VQF4 raw formats of tests/fixtures/images (make_image_fixtures.py).
* eval_transform: timm 0.9 transforms_imagenet_eval on a PIL image, torchvision 0.14 semantics, with
  BICUBIC or BILINEAR.
"""
import json
import math
import os
import struct

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

torch.set_num_threads(1)

LN_EPS = 1e-6


class PatchEmbed(nn.Module):
    def __init__(self, patch, cin, dim):
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim, heads, qkv_bias, qk_norm):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=LN_EPS) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=LN_EPS) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class LayerScale(nn.Module):
    def __init__(self, dim, init_values):
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, qkv_bias, qk_norm, init_values):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads, qkv_bias, qk_norm)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """timm 0.9 VisionTransformer (+ distilled, + timm<=0.5 pre_logits) in eval mode."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=768, depth=12,
                 num_heads=12, mlp_ratio=4.0, qkv_bias=True, qk_norm=False, init_values=None, class_token=True,
                 no_embed_class=False, global_pool="token", fc_norm=None, representation_size=None,
                 distilled=False):
        super().__init__()
        assert global_pool in ("", "avg", "token")
        assert class_token or global_pool != "token"
        assert not distilled or (class_token and global_pool == "token")
        use_fc_norm = global_pool == "avg" if fc_norm is None else fc_norm
        self.global_pool = global_pool
        self.no_embed_class = no_embed_class
        self.distilled = distilled
        self.num_prefix_tokens = (1 if class_token else 0) + (1 if distilled else 0)
        n = (img_size // patch_size) ** 2
        # parameters in timm's registration order (state_dict order)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        embed_len = n if no_embed_class else n + self.num_prefix_tokens
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_len, embed_dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if distilled else None
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio, qkv_bias, qk_norm, init_values)
                                      for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS) if not use_fc_norm else nn.Identity()
        self.fc_norm = nn.LayerNorm(embed_dim, eps=LN_EPS) if use_fc_norm else nn.Identity()
        if representation_size:
            self.pre_logits = nn.Sequential()
            self.pre_logits.add_module("fc", nn.Linear(embed_dim, representation_size))
            self.pre_logits.add_module("act", nn.Tanh())
            feat = representation_size
        else:
            self.pre_logits = nn.Identity()
            feat = embed_dim
        self.head = nn.Linear(feat, num_classes)
        self.head_dist = nn.Linear(embed_dim, num_classes) if distilled else None

    def _pos_embed(self, x):
        pre = []
        if self.cls_token is not None:
            pre.append(self.cls_token.expand(x.shape[0], -1, -1))
        if self.dist_token is not None:
            pre.append(self.dist_token.expand(x.shape[0], -1, -1))
        if self.no_embed_class:
            x = x + self.pos_embed
            return torch.cat(pre + [x], dim=1) if pre else x
        x = torch.cat(pre + [x], dim=1) if pre else x
        return x + self.pos_embed

    def forward(self, x):
        """Returns (logits, extras): extras has res.L (the residual stream entering block L, res.depth =
        the last block's output), 'features' (what the head reads) and, for the distilled model,
        logits_cls / logits_dist."""
        ex = {}
        x = self._pos_embed(self.patch_embed(x))
        for i, b in enumerate(self.blocks):
            ex[f"res.{i}"] = x
            x = b(x)
        ex[f"res.{len(self.blocks)}"] = x
        x = self.norm(x)
        if self.distilled:
            a, d = self.head(x[:, 0]), self.head_dist(x[:, 1])
            ex["features"] = x[:, 0:2].reshape(x.shape[0], -1)
            ex["logits_cls"], ex["logits_dist"] = a, d
            return (a + d) / 2, ex
        if self.global_pool == "avg":
            x = x[:, self.num_prefix_tokens:].mean(dim=1)
        elif self.global_pool == "token":
            x = x[:, 0]
        x = self.pre_logits(self.fc_norm(x))
        ex["features"] = x
        return self.head(x), ex


def init_weights(m, g, gamma_mean=0.5, gamma_std=0.5):
    """Seeded weights, larger than timm's init (as make_vit_fixtures.py) so attention is far from
    uniform; LayerScale gammas ~ gamma_mean + gamma_std * N(0,1) (clearly not 1, some negative)."""
    def tn(t, std, mean=0.0):
        with torch.no_grad():
            t.copy_(torch.fmod(torch.randn(t.shape, generator=g), 2.0) * std + mean)

    for name, p in m.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        mod = name[: -len(leaf) - 1]
        if name in ("cls_token", "dist_token"):
            tn(p, 0.5)
        elif name == "pos_embed":
            tn(p, 0.3)
        elif leaf == "gamma":
            tn(p, gamma_std, gamma_mean)
        elif p.dim() == 1 and ("norm" in mod):
            tn(p, 0.2, 1.0) if leaf == "weight" else tn(p, 0.1)
        elif leaf == "bias":
            tn(p, 0.1)
        elif mod.endswith("attn.qkv"):
            tn(p, 0.15 * (32.0 / p.shape[1]) ** 0.5)
        else:  # every other weight: conv or linear, fan-in scaled
            fan_in = p[0].numel()
            tn(p, (1.5 if mod.endswith("fc1") else 1.0) / fan_in ** 0.5)


def st_header(tensors, meta):
    """(header bytes padded with spaces to a multiple of 8, list of data blobs). tensors: (name, tensor)
    in file order; meta None = no __metadata__ entry at all."""
    header = {} if meta is None else {"__metadata__": meta}
    blobs, off = [], 0
    for name, t in tensors:
        b = t.detach().contiguous().to(torch.float32).numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return h, blobs


def write_safetensors(path, tensors, meta, trailing=b""):
    """8-byte little-endian header length, JSON header, raw little-endian F32 data, then `trailing`
    (empty for a valid file)."""
    h, blobs = st_header(tensors, meta)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
        f.write(trailing)
    return os.path.getsize(path)


def meta_str(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return str(v)


def write_u8(path, arr):
    """VQU8: b"VQU8", int32 w, h, c (little-endian), then h*w*c bytes, HWC."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    h, w, c = arr.shape
    with open(path, "wb") as f:
        f.write(b"VQU8" + struct.pack("<3i", w, h, c) + arr.tobytes())


def write_f32(path, arr):
    """VQF4: b"VQF4", int32 ndim, int32 dims[ndim], then float32 data in C order (little-endian)."""
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    with open(path, "wb") as f:
        f.write(b"VQF4" + struct.pack("<i", arr.ndim) + struct.pack("<%di" % arr.ndim, *arr.shape) + arr.tobytes())


def eval_transform(img, size, crop_pct, mean, std, interpolation="bicubic"):
    """timm 0.9 transforms_imagenet_eval (crop_mode 'center', square img_size) on a PIL image with
    torchvision 0.14's Resize(int) / CenterCrop / ToTensor / Normalize:
      scale = math.floor(size / crop_pct)            (Python floats, i.e. double)
      Resize(scale): shorter side -> scale, longer -> int(scale * long / short); skipped if the shorter
                     side already equals scale; PIL's img.resize((w, h), BICUBIC or BILINEAR)
      CenterCrop(size): top = int(round((h - size) / 2.0)), left likewise (Python round: half to even)
      ToTensor: uint8 / 255 in float32; Normalize: (x - mean) / std in float32."""
    from PIL import Image
    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[interpolation]
    scale = math.floor(size / crop_pct)
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    if short != scale:
        new_short, new_long = scale, int(scale * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        img = img.resize((new_w, new_h), resample)
    w, h = img.size
    assert w >= size and h >= size
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    img = img.crop((left, top, left + size, top + size))
    x = np.asarray(img, dtype=np.uint8).astype(np.float32) / np.float32(255)
    x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
    m = np.array(mean, dtype=np.float32)[:, None, None]
    s = np.array(std, dtype=np.float32)[:, None, None]
    return (x - m) / s
