#!/usr/bin/python3
"""make_swin_fixtures.py — reference Swin Transformer fixtures for the C Swin (issue 15); run by hand, never by CI.

Defines timm 0.9's SwinTransformer (eval mode) in plain torch with timm's parameter names — timm itself is not
installed — gives it random weights from a fixed seed, and writes (F32 safetensors, written by hand):

  tests/fixtures/swin_tiny56.safetensors       the model; architecture in __metadata__ (timm argument names)
  tests/fixtures/swin_tiny56_ref.safetensors   forward reference: images, logits, every stage/block/merge output
                                               (NHWC), window-attention probabilities of two blocks, the shift
                                               mask and relative position index used
  tests/fixtures/swin_tiny56_grad.safetensors  backward reference: cross-entropy loss on fixed labels, dlogits,
                                               grad.<param> for every parameter, grad.images, grad.<block>.out
  tests/fixtures/swin_pad40.safetensors        second model: 40x40 input, so stage 1 is 10x10 with window 7
  tests/fixtures/swin_pad40_ref.safetensors    (zero-padded to 14x14 windows, the post-2023 timm behaviour) and
                                               stage 2 is 5x5 (window shrinks to 5, bias table 9x9 = 81 rows)

Models (tests/reference/README.md and SWIN_NOTES.md describe every tensor and every op):
  tiny56: 56x56x3, patch 4, embed_dim 32, depths (2,2), heads (2,4), window 7, mlp_ratio 4, 10 classes, 2 images.
          Stage 1 is 14x14: 2x2 windows of 7x7, block 1 shifted by 3 with the -100 mask. Stage 2 is 7x7 = one
          window, no shift (timm's rule: resolution <= window -> window = resolution, shift 0).
  pad40:  40x40x3, patch 4, embed_dim 16, depths (2,2), heads (2,4), window 7, mlp_ratio 4, 10 classes, 2 images.

All reference values are computed in float64 from the F32-rounded weights and inputs (the model is built in F32,
the stored values are what the C side loads, then the model is cast to float64), and rounded to F32 on writing.
The script checks itself before writing: the timm-style tensor code against a per-window loop written straight
from SWIN_NOTES.md (explicit pixel gather, explicit bias index and region-id mask), patch merging against the
original x0,x1,x2,x3 concatenation, float32 against float64, and autograd against central differences.

Usage: /usr/bin/python3 tests/reference/make_swin_fixtures.py   (from anywhere; writes next to this script)
"""
import json
import math
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

FIXTURE_VERSION = "1"
SEED = 20240615
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
LN_EPS = 1e-5          # timm's Swin uses nn.LayerNorm with its default eps everywhere
MASK_VALUE = -100.0    # timm: attn_mask.masked_fill(attn_mask != 0, float(-100.0))


# ----------------------------------------------------------------------------------------------------------------
# window helpers (timm 0.9 swin_transformer.py: window_partition, window_reverse, get_relative_position_index,
# SwinTransformerBlock._calc_window_shift / the attn_mask construction); written from their description
# ----------------------------------------------------------------------------------------------------------------

def calc_window_shift(res, window, shift):
    """Per dimension: a resolution not larger than the window makes the window the whole resolution, no shift."""
    ws = tuple(r if r <= w else w for r, w in zip(res, window))
    ss = tuple(0 if r <= w else s for r, w, s in zip(res, ws, shift))
    return ws, ss


def window_partition(x, ws):
    """(B, H, W, C) -> (B*nWh*nWw, wh, ww, C); windows batch-major, then window row, then window column."""
    B, H, W, C = x.shape
    x = x.view(B, H // ws[0], ws[0], W // ws[1], ws[1], C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, ws[0], ws[1], C)


def window_reverse(windows, ws, H, W):
    C = windows.shape[-1]
    x = windows.view(-1, H // ws[0], W // ws[1], ws[0], ws[1], C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, H, W, C)


def relative_position_index(wh, ww):
    """(wh*ww, wh*ww) int64: idx[p, q] = (ip - iq + wh - 1) * (2*ww - 1) + (jp - jq + ww - 1)."""
    ii, jj = torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")
    i, j = ii.flatten(), jj.flatten()
    di = i[:, None] - i[None, :] + (wh - 1)
    dj = j[:, None] - j[None, :] + (ww - 1)
    return di * (2 * ww - 1) + dj


def shift_attn_mask(H, W, ws, ss, dtype=torch.float32):
    """(nW, N, N) additive mask for a shifted block: 0 where two tokens carry the same region id, -100 elsewhere.
    The id grid is built on the window-padded size (ceil to a multiple of the window), regions counted row-major
    over the three row bands [0, Hp-wh), [Hp-wh, Hp-sh), [Hp-sh, Hp) times the three column bands."""
    Hp = math.ceil(H / ws[0]) * ws[0]
    Wp = math.ceil(W / ws[1]) * ws[1]
    img = torch.zeros(1, Hp, Wp, 1, dtype=dtype)
    cnt = 0
    for h0, h1 in ((0, Hp - ws[0]), (Hp - ws[0], Hp - ss[0]), (Hp - ss[0], Hp)):
        for w0, w1 in ((0, Wp - ws[1]), (Wp - ws[1], Wp - ss[1]), (Wp - ss[1], Wp)):
            img[:, h0:h1, w0:w1, :] = cnt
            cnt += 1
    mw = window_partition(img, ws).reshape(-1, ws[0] * ws[1])
    diff = mw.unsqueeze(1) - mw.unsqueeze(2)
    return torch.where(diff != 0, torch.full_like(diff, MASK_VALUE), torch.zeros_like(diff))


# ----------------------------------------------------------------------------------------------------------------
# modules, timm 0.9 parameter names; NHWC between modules as in timm 0.9
# ----------------------------------------------------------------------------------------------------------------

class PatchEmbed(nn.Module):
    def __init__(self, patch_size, in_chans, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)

    def forward(self, x):                       # (B, Cin, S, S) NCHW image
        x = self.proj(x).permute(0, 2, 3, 1)    # NCHW -> NHWC, (B, S/P, S/P, C)
        return self.norm(x)


class WindowAttention(nn.Module):
    def __init__(self, dim, num_heads, ws, qkv_bias):
        super().__init__()
        self.num_heads = num_heads
        self.ws = ws
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * ws[0] - 1) * (2 * ws[1] - 1), num_heads))
        # computed, never stored (timm 0.9: persistent=False)
        self.register_buffer("relative_position_index", relative_position_index(*ws), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def rel_pos_bias(self):
        N = self.ws[0] * self.ws[1]
        b = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(N, N, -1)
        return b.permute(2, 0, 1).unsqueeze(0)  # (1, heads, N, N)

    def forward(self, x, mask=None, taps=None, name=None):  # x (B_, N, C) windows
        B_, N, C = x.shape
        qkv = self.qkv(x).reshape(B_, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)                                 # (B_, heads, N, hd) each
        q = q * self.scale                                      # scale q BEFORE the product
        attn = q @ k.transpose(-2, -1)
        attn = attn + self.rel_pos_bias()
        if mask is not None:
            nW = mask.shape[0]
            attn = attn.view(-1, nW, self.num_heads, N, N) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, N, N)
        attn = attn.softmax(dim=-1)
        if taps is not None:
            taps[name + ".attn.probs"] = attn
        x = (attn @ v).transpose(1, 2).reshape(B_, N, C)       # heads concatenated: channel = h*hd + d
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))   # exact erf GELU (nn.GELU default)


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim, res, num_heads, window, shift, mlp_ratio, qkv_bias, pad_windows):
        super().__init__()
        self.res = res
        self.ws, self.ss = calc_window_shift(res, (window, window), (shift, shift))
        self.pad_windows = pad_windows
        if not pad_windows:  # timm 0.9.0-era: window_partition's view needs exact multiples
            assert res[0] % self.ws[0] == 0 and res[1] % self.ws[1] == 0, "resolution not a multiple of window"
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = WindowAttention(dim, num_heads, self.ws, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = shift_attn_mask(res[0], res[1], self.ws, self.ss) if any(self.ss) else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def _attn(self, x, taps, name):                              # x (B, H, W, C), already norm1'd
        B, H, W, C = x.shape
        shifted = any(self.ss)
        if shifted:
            x = torch.roll(x, shifts=(-self.ss[0], -self.ss[1]), dims=(1, 2))
        ph = (self.ws[0] - H % self.ws[0]) % self.ws[0]
        pw = (self.ws[1] - W % self.ws[1]) % self.ws[1]
        if ph or pw:
            x = F.pad(x, (0, 0, 0, pw, 0, ph))                   # zeros at the bottom / right, after the roll
        Hp, Wp = H + ph, W + pw
        xw = window_partition(x, self.ws).reshape(-1, self.ws[0] * self.ws[1], C)
        yw = self.attn(xw, mask=self.attn_mask, taps=taps, name=name)
        y = window_reverse(yw.view(-1, self.ws[0], self.ws[1], C), self.ws, Hp, Wp)[:, :H, :W, :]
        if shifted:
            y = torch.roll(y, shifts=self.ss, dims=(1, 2))
        return y

    def forward(self, x, taps=None, name=None):                  # (B, H, W, C) -> same
        a = self._attn(self.norm1(x), taps, name)
        if taps is not None:
            taps[name + ".attn_out"] = a
        x = x + a
        if taps is not None:
            taps[name + ".mid"] = x
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=LN_EPS)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x, taps=None, name=None):                  # (B, H, W, C) -> (B, H/2, W/2, 2C)
        B, H, W, C = x.shape
        assert H % 2 == 0 and W % 2 == 0
        # (B, H/2, dh, W/2, dw, C) -> (B, H/2, W/2, dw, dh, C): channel = (2*dw + dh)*C + c
        x = x.reshape(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 4, 2, 5).flatten(3)
        x = self.norm(x)
        if taps is not None:
            taps[name + ".reduction_in"] = x
        return self.reduction(x)


class SwinTransformerStage(nn.Module):
    def __init__(self, dim, out_dim, res, depth, downsample, num_heads, window, mlp_ratio, qkv_bias, pad_windows):
        super().__init__()
        if downsample:
            assert out_dim == 2 * dim
            self.downsample = PatchMerging(dim)
            res = (res[0] // 2, res[1] // 2)
        else:
            self.downsample = None
        self.blocks = nn.ModuleList([
            SwinTransformerBlock(out_dim, res, num_heads, window, 0 if i % 2 == 0 else window // 2,
                                 mlp_ratio, qkv_bias, pad_windows) for i in range(depth)])


class Head(nn.Module):
    def __init__(self, dim, num_classes):
        super().__init__()
        self.fc = nn.Linear(dim, num_classes)


class SwinTransformer(nn.Module):
    def __init__(self, img_size, patch_size, in_chans, num_classes, embed_dim, depths, num_heads, window_size,
                 mlp_ratio, qkv_bias, pad_windows=False):
        super().__init__()
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        grid = (img_size // patch_size, img_size // patch_size)
        stages, dim, res = [], embed_dim, grid
        for i, (d, h) in enumerate(zip(depths, num_heads)):
            out_dim = embed_dim * 2 ** i
            stages.append(SwinTransformerStage(dim, out_dim, res, d, i > 0, h, window_size, mlp_ratio, qkv_bias,
                                               pad_windows))
            if i > 0:
                res = (res[0] // 2, res[1] // 2)
            dim = out_dim
        self.layers = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.head = Head(dim, num_classes)

    def forward(self, img, taps=None):
        x = self.patch_embed(img)
        if taps is not None:
            taps["patch_embed.out"] = x
        for li, st in enumerate(self.layers):
            if st.downsample is not None:
                x = st.downsample(x, taps, f"layers.{li}.downsample")
                if taps is not None:
                    taps[f"layers.{li}.downsample.out"] = x
            for bi, blk in enumerate(st.blocks):
                x = blk(x, taps, f"layers.{li}.blocks.{bi}")
                if taps is not None:
                    taps[f"layers.{li}.blocks.{bi}.out"] = x
        x = self.norm(x)
        pooled = x.mean(dim=(1, 2))                               # ClassifierHead: NHWC avg pool over H, W
        if taps is not None:
            taps["norm.out"] = x
            taps["pooled"] = pooled
        return self.head.fc(pooled)


# ----------------------------------------------------------------------------------------------------------------
# independent checks written from SWIN_NOTES.md (loops, explicit indices) — not the tensor code above
# ----------------------------------------------------------------------------------------------------------------

def naive_window_attention(blk, x):
    """x: (B, H, W, C) norm1 output. Per window, per token: gather the source pixel of the rolled, padded frame,
    bias index (di+wh-1)*(2ww-1)+(dj+ww-1), region id of the padded frame's bands; returns (B, H, W, C)."""
    B, H, W, C = x.shape
    (wh, ww), (sh, sw) = blk.ws, blk.ss
    Hp, Wp = math.ceil(H / wh) * wh, math.ceil(W / ww) * ww
    heads = blk.attn.num_heads
    hd = C // heads
    table = blk.attn.relative_position_bias_table
    Wqkv, bqkv = blk.attn.qkv.weight, blk.attn.qkv.bias
    out = torch.zeros_like(x)
    shifted = sh > 0 or sw > 0

    def band(r, n, w, s):
        return 0 if r < n - w else (1 if r < n - s else 2)

    for b in range(B):
        for wy in range(Hp // wh):
            for wx in range(Wp // ww):
                feats, src, rid, pos = [], [], [], []
                for i in range(wh):
                    for j in range(ww):
                        r, c = wy * wh + i, wx * ww + j          # position in the rolled, padded frame
                        if r < H and c < W:
                            sy, sx = (r + sh) % H, (c + sw) % W  # roll by -s: frame (r, c) holds pixel (r+s, c+s)
                            feats.append(x[b, sy, sx])
                            src.append((sy, sx))
                        else:
                            feats.append(torch.zeros(C, dtype=x.dtype))
                            src.append(None)
                        rid.append(band(r, Hp, wh, sh) * 3 + band(c, Wp, ww, sw))
                        pos.append((i, j))
                t = torch.stack(feats)                            # (N, C)
                qkv = t @ Wqkv.t() + (bqkv if bqkv is not None else 0)
                q, k, v = qkv[:, :C], qkv[:, C:2 * C], qkv[:, 2 * C:]
                N = wh * ww
                o = torch.zeros(N, C, dtype=x.dtype)
                for h in range(heads):
                    sl = slice(h * hd, (h + 1) * hd)
                    logits = torch.empty(N, N, dtype=x.dtype)
                    for p in range(N):
                        for qq in range(N):
                            di = pos[p][0] - pos[qq][0] + wh - 1
                            dj = pos[p][1] - pos[qq][1] + ww - 1
                            val = (q[p, sl] * hd ** -0.5) @ k[qq, sl] + table[di * (2 * ww - 1) + dj, h]
                            if shifted and rid[p] != rid[qq]:
                                val = val + MASK_VALUE
                            logits[p, qq] = val
                    o[:, sl] = logits.softmax(-1) @ v[:, sl]
                o = o @ blk.attn.proj.weight.t() + blk.attn.proj.bias
                for p in range(N):
                    if src[p] is not None:
                        out[b, src[p][0], src[p][1]] = o[p]
    return out


def naive_patch_merge_input(x):
    """The original Swin / timm <= 0.6 order: cat(x[0::2,0::2], x[1::2,0::2], x[0::2,1::2], x[1::2,1::2])."""
    return torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)


def self_check(m, images, name):
    m64 = m.double()
    x = images.double()
    with torch.no_grad():
        taps = {}
        m64(x, taps)
        # every block's window attention against the loop version
        h = taps["patch_embed.out"]
        for li, st in enumerate(m64.layers):
            if st.downsample is not None:
                h = taps[f"layers.{li}.downsample.out"]
            for bi, blk in enumerate(st.blocks):
                ref = naive_window_attention(blk, blk.norm1(h))
                got = taps[f"layers.{li}.blocks.{bi}.attn_out"]
                err = (ref - got).abs().max().item()
                assert err < 1e-10, (name, li, bi, err)
                h = taps[f"layers.{li}.blocks.{bi}.out"]
        # patch merging channel order
        for li, st in enumerate(m64.layers):
            if st.downsample is not None:
                prev = taps[f"layers.{li - 1}.blocks.{len(m64.layers[li - 1].blocks) - 1}.out"]
                ref = st.downsample.norm(naive_patch_merge_input(prev))
                err = (ref - taps[f"layers.{li}.downsample.reduction_in"]).abs().max().item()
                assert err < 1e-12, (name, li, err)
    m.float()
    print(f"  {name}: window attention and patch merging match the per-window loop reference")


# ----------------------------------------------------------------------------------------------------------------
# weights, files
# ----------------------------------------------------------------------------------------------------------------

def init_weights(m, g):
    def tn(t, std, mean=0.0):  # normal truncated at 2 std (fmod), seeded stand-in for trunc_normal_
        with torch.no_grad():
            t.copy_(torch.fmod(torch.randn(t.shape, generator=g), 2.0) * std + mean)

    for n, p in m.named_parameters():
        if n.endswith("relative_position_bias_table"):
            tn(p, 1.0)                                  # trained tables are O(1); timm inits 0.02
        elif ("norm" in n.split(".")[-2]) and n.endswith(".weight"):
            tn(p, 0.2, 1.0)                             # every LayerNorm weight
        elif n.endswith(".bias"):
            tn(p, 0.1)
        elif n == "patch_embed.proj.weight":
            tn(p, 1.0 / p[0].numel() ** 0.5)
        elif n.endswith("attn.qkv.weight"):
            tn(p, 0.9 / p.shape[1] ** 0.5)
        elif n.endswith("mlp.fc1.weight"):
            tn(p, 1.5 / p.shape[1] ** 0.5)
        elif n.endswith(".weight"):                     # attn.proj, mlp.fc2, downsample.reduction, head.fc
            tn(p, 1.0 / p.shape[1] ** 0.5)
        else:
            raise ValueError(n)


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
    print(f"  {os.path.relpath(path)}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


def model_meta(cfg, extra):
    meta = {"arch": "swin"}
    for k, v in cfg.items():
        if k == "pad_windows":
            continue
        if isinstance(v, bool):
            meta[k] = str(v).lower()
        elif isinstance(v, (tuple, list)):
            meta[k] = ",".join(str(x) for x in v)
        else:
            meta[k] = str(v)
    meta.update({"mean": "0.485,0.456,0.406", "std": "0.229,0.224,0.225", "crop_pct": "0.9",
                 "interpolation": "bicubic", "fixture_version": FIXTURE_VERSION, "seed": str(SEED),
                 "made_by": "tests/reference/make_swin_fixtures.py"})
    meta.update(extra)
    return meta


def build(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    m = SwinTransformer(**cfg).eval()
    init_weights(m, g)
    sd = m.state_dict()
    assert not any(("relative_position_index" in k) or ("attn_mask" in k) for k in sd), "buffers leaked"
    return m, g


def ref_list(taps, keep):
    return [(k, taps[k]) for k in keep]


def forward_taps(m, images):
    m64 = m.double()
    with torch.no_grad():
        taps = {}
        logits = m64(images.double(), taps)
    m.float()
    with torch.no_grad():                                       # float32 run, for the record only
        l32 = m(images)
    rel = ((l32.double() - logits).abs().max() / logits.abs().max()).item()
    print(f"  float32 vs float64 logits: max rel err {rel:.2e}")
    return logits, taps


def block_names(m):
    return [(li, bi) for li, st in enumerate(m.layers) for bi in range(len(st.blocks))]


def make_tiny56():
    name = "swin_tiny56"
    cfg = dict(img_size=56, patch_size=4, in_chans=3, num_classes=10, embed_dim=32, depths=(2, 2),
               num_heads=(2, 4), window_size=7, mlp_ratio=4.0, qkv_bias=True)
    m, g = build(cfg, SEED)
    images = torch.randn(2, 3, 56, 56, generator=g)
    labels = torch.tensor([3, 7])
    print(name)
    self_check(m, images, name)
    write_safetensors(os.path.join(OUT, f"{name}.safetensors"), list(m.state_dict().items()),
                      model_meta(cfg, {}))

    logits, taps = forward_taps(m, images)
    keep = ["patch_embed.out"]
    for li, bi in block_names(m):
        if bi == 0 and li > 0:
            keep += [f"layers.{li}.downsample.reduction_in", f"layers.{li}.downsample.out"]
        keep += [f"layers.{li}.blocks.{bi}.out"]
    keep += ["layers.0.blocks.1.attn_out", "layers.0.blocks.1.mid",
             "layers.0.blocks.0.attn.probs", "layers.0.blocks.1.attn.probs", "layers.1.blocks.0.attn.probs",
             "norm.out", "pooled"]
    blk = m.layers[0].blocks[1]
    ref = [("images", images), ("logits", logits)] + ref_list(taps, keep) + [
        ("layers.0.blocks.1.attn_mask", blk.attn_mask),
        ("relative_position_index.7x7", relative_position_index(7, 7).float())]
    write_safetensors(os.path.join(OUT, f"{name}_ref.safetensors"), ref,
                      {"fixture_version": FIXTURE_VERSION, "seed": str(SEED), "torch": torch.__version__,
                       "precision": "float64 reference rounded to F32", "layout": "NHWC",
                       "window_order": "b*nW + wy*nWw + wx; token i*ww + j; shifted frame"})
    print(f"  logits[0] = {[round(v, 4) for v in logits[0].tolist()]}")
    make_grad(m, images, labels, name)


def make_grad(m, images, labels, name):
    m64 = m.double()
    params = dict(m64.named_parameters())
    x = images.double().clone().requires_grad_(True)
    taps = {}
    logits = m64(x, taps)
    logits.retain_grad()
    outs = {}
    for li, bi in block_names(m64):
        k = f"layers.{li}.blocks.{bi}.out"
        taps[k].retain_grad()
        outs[k] = taps[k]
    probs = taps["layers.0.blocks.1.attn.probs"]
    probs.retain_grad()
    loss = F.cross_entropy(logits, labels)
    m64.zero_grad()
    loss.backward()

    # dlogits = (softmax - onehot) / B
    dl = (logits.detach().softmax(-1) - F.one_hot(labels, logits.shape[1]).double()) / logits.shape[0]
    assert (dl - logits.grad).abs().max().item() < 1e-14

    # central differences on a few parameter entries and image pixels (float64)
    def loss_at():
        with torch.no_grad():
            return F.cross_entropy(m64(x.detach()), labels).item()

    gen = torch.Generator().manual_seed(7)
    checks = ["layers.0.blocks.1.attn.relative_position_bias_table", "layers.1.downsample.reduction.weight",
              "layers.0.blocks.1.attn.qkv.weight", "patch_embed.norm.weight", "head.fc.bias"]
    worst = 0.0
    for pname in checks:
        p = params[pname]
        for _ in range(3):
            idx = tuple(torch.randint(s, (1,), generator=gen).item() for s in p.shape)
            with torch.no_grad():
                old = p[idx].item()
                p[idx] = old + 1e-6
                lp = loss_at()
                p[idx] = old - 1e-6
                lm = loss_at()
                p[idx] = old
            fd = (lp - lm) / 2e-6
            worst = max(worst, abs(fd - p.grad[idx].item()) / max(1e-6, abs(fd)))
    for _ in range(4):
        idx = tuple(torch.randint(s, (1,), generator=gen).item() for s in x.shape)
        with torch.no_grad():
            old = x[idx].item()
            x[idx] = old + 1e-6
            lp = loss_at()
            x[idx] = old - 1e-6
            lm = loss_at()
            x[idx] = old
        fd = (lp - lm) / 2e-6
        worst = max(worst, abs(fd - x.grad[idx].item()) / max(1e-6, abs(fd)))
    assert worst < 1e-5, worst
    print(f"  autograd vs central differences: worst rel err {worst:.1e}")

    T = [("images", images), ("labels", labels.float()), ("logits", logits.detach()),
         ("loss", loss.detach().reshape(1)), ("dlogits", logits.grad)]
    T += [("grad." + n, p.grad) for n, p in m64.named_parameters()]
    T += [("grad.images", x.grad)]
    T += [("grad." + k, v.grad) for k, v in outs.items()]
    T += [("grad.layers.0.blocks.1.attn.probs", probs.grad)]
    m.float()
    write_safetensors(os.path.join(OUT, f"{name}_grad.safetensors"), T,
                      {"fixture_version": FIXTURE_VERSION, "seed": str(SEED), "torch": torch.__version__,
                       "loss": "cross_entropy(logits, labels), mean over the batch, no label smoothing",
                       "model": f"tests/fixtures/{name}.safetensors", "precision": "float64 rounded to F32"})
    print(f"  loss = {loss.item():.6f}")


def make_pad40():
    name = "swin_pad40"
    cfg = dict(img_size=40, patch_size=4, in_chans=3, num_classes=10, embed_dim=16, depths=(2, 2),
               num_heads=(2, 4), window_size=7, mlp_ratio=4.0, qkv_bias=True, pad_windows=True)
    m, g = build(cfg, SEED + 1)
    images = torch.randn(2, 3, 40, 40, generator=g)
    print(name)
    # timm 0.9.0-era behaviour: no padding, so this configuration cannot be built
    try:
        SwinTransformer(**dict(cfg, pad_windows=False))
        raise AssertionError("expected the unpadded model to refuse 10x10 with window 7")
    except AssertionError as e:
        if "expected" in str(e):
            raise
    self_check(m, images, name)
    extra = {"window_padding": "stage resolutions not a multiple of the window are zero-padded bottom/right "
                               "after the cyclic shift (timm after PR 1900, 2023; 1.0.x); timm 0.9.0-era raises"}
    write_safetensors(os.path.join(OUT, f"{name}.safetensors"), list(m.state_dict().items()),
                      model_meta(cfg, extra))
    logits, taps = forward_taps(m, images)
    keep = ["patch_embed.out"]
    for li, bi in block_names(m):
        if bi == 0 and li > 0:
            keep += [f"layers.{li}.downsample.reduction_in", f"layers.{li}.downsample.out"]
        keep += [f"layers.{li}.blocks.{bi}.out"]
    keep += ["layers.0.blocks.0.attn.probs", "layers.0.blocks.1.attn.probs", "layers.1.blocks.0.attn.probs",
             "norm.out", "pooled"]
    ref = [("images", images), ("logits", logits)] + ref_list(taps, keep) + [
        ("layers.0.blocks.1.attn_mask", m.layers[0].blocks[1].attn_mask),
        ("relative_position_index.5x5", relative_position_index(5, 5).float())]
    write_safetensors(os.path.join(OUT, f"{name}_ref.safetensors"), ref,
                      {"fixture_version": FIXTURE_VERSION, "seed": str(SEED + 1), "torch": torch.__version__,
                       "precision": "float64 reference rounded to F32", "layout": "NHWC",
                       "window_order": "b*nW + wy*nWw + wx over the padded 14x14 frame; token i*ww + j"})
    print(f"  logits[0] = {[round(v, 4) for v in logits[0].tolist()]}")


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    make_tiny56()
    make_pad40()


if __name__ == "__main__":
    main()
