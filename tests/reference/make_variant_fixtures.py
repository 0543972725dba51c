#!/usr/bin/python3
"""make_variant_fixtures.py — checkpoint-variant fixtures of issue 11 (run by hand, never by CI).

Writes tests/fixtures/variants/: tiny random ViTs in timm 0.9's exact parameter names and semantics
(tests/reference/timm_ref.py), one per checkpoint layout people post (DeiT-III LayerScale, the old
representation layer, average pooling with and without fc_norm, distilled DeiT, no class token,
no_embed_class, ...) and the files a loader must refuse (DDP `module.` prefix, an unknown tensor,
bytes after the data section, a hole between tensors).

For every case CASE:
  CASE.safetensors         the model (F32); __metadata__ = the base architecture keys (img_size,
                           patch_size, in_chans, num_classes, embed_dim, depth, num_heads, mlp_ratio,
                           qkv_bias), the data config (mean, std, crop_pct, interpolation) and the timm
                           VisionTransformer arguments the case needs (init_values, class_token,
                           no_embed_class, global_pool, fc_norm, representation_size, distilled, qk_norm)
  CASE_nometa.safetensors  (the inferable cases) the same tensors, bit for bit, but __metadata__ holds
                           ONLY the 9 base architecture keys: none of the variant keys and no data config.
                           (num_heads cannot be read from tensors and the built-in --arch names are
                           224-px models, so the base keys stay.)
  CASE_ref.safetensors     (cases that must load) F32 "images" (B,3,16,16) and "logits" (B,5) computed by
                           torch 1.13 in float32, plus diagnostics: "features" (what the head reads),
                           "res.0" (B,T,C) the token sequence entering block 0 (after patch embedding,
                           prefix tokens and position embedding), and per case "logits_cls"/"logits_dist" (distilled),
                           "logits_token_pool" (avg-pool cases: what reading the class token would give),
                           "logits_ignoring_gamma" (LayerScale cases: what ignoring ls*.gamma would give).
The manifest with the expected C behaviour per file is tests/reference/README.md (section "Issue 11").

Usage: /usr/bin/python3 tests/reference/make_variant_fixtures.py   (from the repository root)
"""
import copy
import json
import math
import os
import struct
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import timm_ref as T  # noqa: E402
import torch  # noqa: E402

FIXTURE_VERSION = "1"
SEED = 110011
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "variants")
FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "images", "folder")
B = 2

BASE = dict(img_size=16, patch_size=4, in_chans=3, num_classes=5, embed_dim=12, depth=1, num_heads=2,
            mlp_ratio=4.0, qkv_bias=True)
DEPTH2 = ("layerscale",)  # per-block gammas: depth 2; every other case has depth 1
DATA = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_pct=0.9, interpolation="bicubic")
# timm's vit_base_patch16_224_miil data config (the MIIL ViTs are the bilinear ones)
DATA_MIIL = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop_pct=0.875, interpolation="bilinear")

# name: (extra VisionTransformer kwargs, keys of them that go to the metadata, nometa variant?)
MODELS = {
    "layerscale": (dict(init_values=1e-6), ["init_values"], True),
    "pre_logits": (dict(representation_size=20), ["representation_size"], True),
    "avgpool_fcnorm": (dict(global_pool="avg", fc_norm=True), ["global_pool", "fc_norm"], True),
    "avgpool_norm": (dict(global_pool="avg", fc_norm=False), ["global_pool", "fc_norm"], False),
    "distilled": (dict(distilled=True), ["distilled"], True),
    "no_class_token": (dict(class_token=False, global_pool="avg", fc_norm=False),
                       ["class_token", "global_pool", "fc_norm"], True),
    "no_embed_class": (dict(no_embed_class=True), ["no_embed_class"], True),
    "plain": (dict(), [], False),  # not written itself: format_pt and the refusal files are made from it
    "bilinear": (dict(), [], False),
    # extras beyond the issue's list
    "token_fcnorm": (dict(global_pool="token", fc_norm=True), ["global_pool", "fc_norm"], False),
    "qk_norm": (dict(qk_norm=True), ["qk_norm"], False),
}

sizes = {}


def base_of(name):
    if name == "bilinear":  # evaluated on tests/fixtures/images/folder, which has 2 classes
        return dict(BASE, num_classes=2)
    return dict(BASE, depth=2) if name in DEPTH2 else dict(BASE)


def meta_of(name, kw, keys, data, extra=None):
    meta = {k: T.meta_str(v) for k, v in base_of(name).items()}
    meta.update({k: T.meta_str(kw[k]) for k in keys})
    meta.update({k: T.meta_str(v) for k, v in data.items()})
    meta.update({"fixture_version": FIXTURE_VERSION, "seed": str(SEED),
                 "made_by": "tests/reference/make_variant_fixtures.py"})
    meta.update(extra or {})
    return meta


def write(name, tensors, meta, trailing=b""):
    path = os.path.join(OUT, name + ".safetensors")
    sizes[name] = T.write_safetensors(path, tensors, meta, trailing)


def build(name, seed_offset):
    kw, keys, nometa = MODELS[name]
    g = torch.Generator().manual_seed(SEED + seed_offset)
    m = T.VisionTransformer(**base_of(name), **kw).eval()
    T.init_weights(m, g)
    return m, kw, keys, nometa, g


def forward_ref(m, images, kw):
    with torch.no_grad():
        logits, ex = m(images)
        ref = [("images", images), ("logits", logits), ("features", ex["features"])]
        ref += [(k, ex[k]) for k in ("logits_cls", "logits_dist") if k in ex]
        ref.append(("res.0", ex["res.0"]))
        if kw.get("global_pool") == "avg" and m.cls_token is not None:
            m2 = copy.deepcopy(m)
            m2.global_pool = "token"
            ref.append(("logits_token_pool", m2(images)[0]))
        if kw.get("init_values"):
            m2 = copy.deepcopy(m)
            for b in m2.blocks:
                b.ls1, b.ls2 = torch.nn.Identity(), torch.nn.Identity()
            ref.append(("logits_ignoring_gamma", m2(images)[0]))
    return logits, ref


def ref_meta(extra=None):
    d = {"fixture_version": FIXTURE_VERSION, "seed": str(SEED), "torch": torch.__version__}
    d.update(extra or {})
    return d


def main():
    os.makedirs(OUT, exist_ok=True)
    for i, name in enumerate(MODELS):
        m, kw, keys, nometa, g = build(name, i)
        tensors = list(m.state_dict().items())
        images = torch.randn(B, BASE["in_chans"], BASE["img_size"], BASE["img_size"], generator=g)

        if name == "plain":
            # format_pt: timm's own safetensors carry format=pt in __metadata__: must load as usual.
            write("format_pt", tensors, meta_of(name, kw, keys, DATA, {"format": "pt"}))
            logits, ref = forward_ref(m, images, kw)
            write("format_pt_ref", ref, ref_meta())
            # module_prefix: a DistributedDataParallel state_dict saved as it is.
            write("module_prefix", [("module." + k, v) for k, v in tensors], meta_of(name, kw, keys, DATA))
            # extra_tensor: a BEiT-style relative position table the ViT has no use for.
            extra = torch.randn(52, 2, generator=g)  # ((2*4-1)^2 + 3, num_heads), as BEiT's table
            t2 = []
            for k, v in tensors:
                t2.append((k, v))
                if k == "blocks.0.attn.qkv.bias":
                    t2.append(("blocks.0.attn.relative_position_bias_table", extra))
            write("extra_tensor", t2, meta_of(name, kw, keys, DATA))
            # trailing_bytes: a valid file plus 64 bytes after the data section (a zip-like tail, as a
            # polyglot would carry). The reference parser (safetensors, Rust) refuses this
            # (MetadataIncompleteBuffer: 8 + header + data end != file length).
            junk = b"PK\x05\x06" + bytes(range(60))
            write("trailing_bytes", tensors, meta_of(name, kw, keys, DATA), trailing=junk)
            # hole_between: 8 unused bytes between the data of two tensors (data_offsets not contiguous;
            # the reference parser refuses: InvalidOffset). Built by hand below.
            write_hole(tensors, meta_of(name, kw, keys, DATA))
            print(f"  plain/format_pt: logits[0] = {[round(v, 5) for v in logits[0].tolist()]}")
            continue

        if name == "bilinear":
            write_bilinear(m, tensors, kw, keys)
            continue

        write(name, tensors, meta_of(name, kw, keys, DATA))
        if nometa:
            write(name + "_nometa", tensors, {k: T.meta_str(v) for k, v in base_of(name).items()})
        logits, ref = forward_ref(m, images, kw)
        write(name + "_ref", ref, ref_meta())
        if name == "layerscale":
            # the same model as facebookresearch/deit's models_v2.py names it: blocks.N.gamma_1 / gamma_2
            # (timm's checkpoint_filter_fn(adapt_layer_scale=True) renames gamma_1 -> ls1.gamma).
            ren = [(k.replace("ls1.gamma", "gamma_1").replace("ls2.gamma", "gamma_2"), v) for k, v in tensors]
            write("layerscale_gamma_names", ren, meta_of(name, kw, keys, DATA))
        print(f"  {name}: logits[0] = {[round(v, 5) for v in logits[0].tolist()]}")

    total = 0
    for n in sorted(sizes):
        print(f"{n}.safetensors: {sizes[n]} bytes")
        total += sizes[n]
    print(f"total {total} bytes")


def write_hole(tensors, meta):
    h = {"__metadata__": meta}
    blobs, off = [], 0
    for idx, (name, t) in enumerate(tensors):
        b = t.detach().contiguous().numpy().astype("<f4").tobytes()
        if name == "blocks.0.attn.proj.weight":  # 8 bytes of zeros before this tensor's data
            blobs.append(b"\0" * 8)
            off += 8
        h[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hb = json.dumps(h, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    path = os.path.join(OUT, "hole_between.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))
    sizes["hole_between"] = os.path.getsize(path)


def write_bilinear(m, tensors, kw, keys):
    """A model whose metadata says interpolation = bilinear (timm's MIIL config: mean 0, std 1,
    crop_pct 0.875), and the eval transform of tests/fixtures/images/folder through it, bilinear (what
    timm does) and bicubic (what ignoring the key gives)."""
    write("bilinear", tensors, meta_of("bilinear", kw, keys, DATA_MIIL))
    files = []
    for cls in sorted(os.listdir(FOLDER)):
        for fn in sorted(os.listdir(os.path.join(FOLDER, cls))):
            if fn.lower().endswith((".jpg", ".jpeg", ".png")):
                files.append((cls, fn))
    classes = sorted({c for c, _ in files})
    S, cp = BASE["img_size"], DATA_MIIL["crop_pct"]
    xs = {}
    for interp in ("bilinear", "bicubic"):
        xs[interp] = np.stack([T.eval_transform(Image.open(os.path.join(FOLDER, c, f)).convert("RGB"), S, cp,
                                                DATA_MIIL["mean"], DATA_MIIL["std"], interp) for c, f in files])
    labels = torch.tensor([float(classes.index(c)) for c, _ in files])
    with torch.no_grad():
        lb, _ = m(torch.from_numpy(xs["bilinear"]))
        lc, _ = m(torch.from_numpy(xs["bicubic"]))
    diff = float(np.abs(xs["bilinear"] - xs["bicubic"]).max())
    ref = [("images", torch.from_numpy(xs["bilinear"])), ("logits", lb), ("labels", labels),
           ("logits_bicubic", lc)]
    write("bilinear_ref", ref, ref_meta({"folder": "tests/fixtures/images/folder",
                                         "files": ",".join(f"{c}/{f}" for c, f in files),
                                         "transform": f"resize {math.floor(S / cp)} bilinear, centre crop {S}, "
                                                      "mean 0,0,0 std 1,1,1"}))
    print(f"  bilinear: {len(files)} images {files}; max |bilinear - bicubic| input = {diff:.4f}; "
          f"logits[0] = {[round(v, 5) for v in lb[0].tolist()]}")


if __name__ == "__main__":
    main()
