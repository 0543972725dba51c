#!/usr/bin/python3
"""make_layout_fixtures.py — data-set layout fixtures of issue 11 (run by hand, never by CI).

Writes tests/fixtures/layouts/:
  imagenet_root/{train,val}/<wnid>/*.JPEG   3 classes; the first val image of the first class is a grey
                                            JPEG; one val file is a PNG named .JPEG; one train file is a
                                            CMYK JPEG (ImageNet's train split has 22 of those) and one a grey
                                            JPEG that does not sort first; a stray synsets.txt at the root
  val_only/val/<wnid>/*.JPEG                a root holding only val/ (2 classes)
  validation_root/{train,validation}/<wnid>/*.JPEG
                                            the other name of the evaluation split (2 classes)
  model_3cls.safetensors                    a tiny ViT (img 16, patch 4, 3 classes) for end-to-end
                                            evaluation of imagenet_root
  model_3cls_ref.safetensors                its PyTorch results on imagenet_root: "val.images" (7,3,16,16)
                                            (eval transform 16 / 0.875 bicubic, ImageNet mean/std),
                                            "val.logits" (7,3), "val.labels" (7), "train.logits" (6,3),
                                            "train.labels" (6); labels as F32
  manifest.json                             per root: the splits, the class list (sorted, torchvision
                                            ImageFolder), every split's files in ImageFolder order with their
                                            label and PIL mode, the counts

Usage: /usr/bin/python3 tests/reference/make_layout_fixtures.py   (from the repository root)
"""
import io
import json
import os
import shutil
import sys

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_image_fixtures import test_pattern  # noqa: E402
import timm_ref as T  # noqa: E402
import torch  # noqa: E402

OUT = os.path.join(HERE, "..", "fixtures", "layouts")
SEED = 20240612
IMG_EXT = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision 0.14
MODEL = dict(img_size=16, patch_size=4, in_chans=3, num_classes=3, embed_dim=12, depth=1, num_heads=2,
             mlp_ratio=4.0, qkv_bias=True)
DATA = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_pct=0.875, interpolation="bicubic")

# root -> split -> class -> [(file name, kind, w, h)]; kind: rgb | gray | cmyk | png (PNG bytes, .JPEG name)
LAYOUT = {
    "imagenet_root": {
        "train": {
            "n01440764": [("n01440764_10026.JPEG", "rgb", 21, 16), ("n01440764_10027.JPEG", "rgb", 16, 22)],
            "n01443537": [("n01443537_10007.JPEG", "rgb", 18, 18), ("n01443537_2772.JPEG", "cmyk", 20, 17)],
            "n01484850": [("n01484850_10016.JPEG", "rgb", 24, 17), ("n01484850_4496.JPEG", "gray", 17, 19)],
        },
        "val": {
            "n01440764": [("ILSVRC2012_val_00000001.JPEG", "gray", 22, 17), ("ILSVRC2012_val_00000293.JPEG", "rgb", 19, 23),
                          ("ILSVRC2012_val_00002138.JPEG", "png", 17, 17)],
            "n01443537": [("ILSVRC2012_val_00000236.JPEG", "rgb", 23, 18), ("ILSVRC2012_val_00000262.JPEG", "rgb", 16, 16)],
            "n01484850": [("ILSVRC2012_val_00000020.JPEG", "rgb", 20, 24), ("ILSVRC2012_val_00000128.JPEG", "gray", 18, 21)],
        },
    },
    "val_only": {
        "val": {
            "n01440764": [("ILSVRC2012_val_00000001.JPEG", "gray", 18, 16), ("ILSVRC2012_val_00000293.JPEG", "rgb", 16, 20)],
            "n01443537": [("ILSVRC2012_val_00000236.JPEG", "rgb", 20, 16)],
        },
    },
    "validation_root": {
        "train": {
            "cat": [("cat_0001.JPEG", "rgb", 17, 16), ("cat_0002.JPEG", "rgb", 16, 18)],
            "dog": [("dog_0001.JPEG", "rgb", 19, 16)],
        },
        "validation": {
            "cat": [("cat_0101.JPEG", "rgb", 16, 17)],
            "dog": [("dog_0101.JPEG", "gray", 18, 16), ("dog_0102.JPEG", "rgb", 16, 16)],
        },
    },
}


def make_image(rng, kind, w, h):
    bio = io.BytesIO()
    if kind == "gray":
        Image.fromarray(test_pattern(rng, w, h, 1)[:, :, 0], "L").save(bio, "JPEG", quality=90)
    elif kind == "cmyk":
        Image.fromarray(test_pattern(rng, w, h, 4), "CMYK").save(bio, "JPEG", quality=90)
    elif kind == "png":
        Image.fromarray(test_pattern(rng, w, h, 3), "RGB").save(bio, "PNG")
    else:
        Image.fromarray(test_pattern(rng, w, h, 3), "RGB").save(bio, "JPEG", quality=90)
    return bio.getvalue()


def image_folder(split_dir):
    """torchvision 0.14 ImageFolder: classes = sorted sub-folders; samples = for each class, sorted(os.walk)
    then sorted file names, keeping names whose lower-case ends in IMG_EXT."""
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir())
    samples = []
    for ci, c in enumerate(classes):
        for root, _, fnames in sorted(os.walk(os.path.join(split_dir, c), followlinks=True)):
            for fn in sorted(fnames):
                if fn.lower().endswith(IMG_EXT):
                    samples.append((os.path.relpath(os.path.join(root, fn), split_dir), ci))
    return classes, samples


def main():
    rng = np.random.RandomState(SEED)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    for root, splits in LAYOUT.items():
        for split, classes in splits.items():
            for c, files in classes.items():
                d = os.path.join(OUT, root, split, c)
                os.makedirs(d, exist_ok=True)
                for fn, kind, w, h in files:
                    with open(os.path.join(d, fn), "wb") as f:
                        f.write(make_image(rng, kind, w, h))
    with open(os.path.join(OUT, "imagenet_root", "synsets.txt"), "w") as f:
        f.write("n01440764 tench\nn01443537 goldfish\nn01484850 great white shark\n")

    man = {"made_by": "tests/reference/make_layout_fixtures.py", "seed": SEED,
           "rule": "torchvision 0.14 ImageFolder on each split folder: classes = sorted sub-folder names, "
                   "label = index; files sorted; every image decoded with PIL convert('RGB')",
           "roots": {}}
    for root in LAYOUT:
        r = {"splits": {}}
        for split in sorted(os.listdir(os.path.join(OUT, root))):
            sd = os.path.join(OUT, root, split)
            if not os.path.isdir(sd):
                continue
            classes, samples = image_folder(sd)
            files = []
            for rel, lab in samples:
                im = Image.open(os.path.join(sd, rel))
                files.append({"file": rel, "label": lab, "format": im.format, "pil_mode": im.mode,
                              "w": im.size[0], "h": im.size[1]})
            r["splits"][split] = {"classes": classes, "count": len(samples),
                                  "per_class": [sum(1 for _, l in samples if l == i) for i in range(len(classes))],
                                  "files": files}
        man["roots"][root] = r

    # a tiny 3-class model and its PyTorch logits on imagenet_root (both splits), eval transform 16 / 0.875
    g = torch.Generator().manual_seed(SEED)
    m = T.VisionTransformer(**MODEL).eval()
    T.init_weights(m, g)
    meta = {k: T.meta_str(v) for k, v in MODEL.items()}
    meta.update({k: T.meta_str(v) for k, v in DATA.items()})
    meta.update({"made_by": "tests/reference/make_layout_fixtures.py", "seed": str(SEED)})
    T.write_safetensors(os.path.join(OUT, "model_3cls.safetensors"), list(m.state_dict().items()), meta)
    ref = []
    for split in ("val", "train"):
        sd = os.path.join(OUT, "imagenet_root", split)
        _, samples = image_folder(sd)
        x = np.stack([T.eval_transform(Image.open(os.path.join(sd, rel)).convert("RGB"), MODEL["img_size"],
                                       DATA["crop_pct"], DATA["mean"], DATA["std"], DATA["interpolation"])
                      for rel, _ in samples])
        with torch.no_grad():
            logits, _ = m(torch.from_numpy(x))
        labels = torch.tensor([float(l) for _, l in samples])
        correct = int((logits.argmax(1) == labels.long()).sum())
        if split == "val":
            ref.append(("val.images", torch.from_numpy(x)))
        ref += [(f"{split}.logits", logits), (f"{split}.labels", labels)]
        man["roots"]["imagenet_root"]["splits"][split]["model_3cls_correct"] = correct
        print(f"imagenet_root/{split}: {len(samples)} images, model_3cls top-1 {correct}/{len(samples)}")
    T.write_safetensors(os.path.join(OUT, "model_3cls_ref.safetensors"), ref,
                        {"made_by": "tests/reference/make_layout_fixtures.py", "torch": torch.__version__,
                         "transform": "resize 18 bicubic, centre crop 16, mean 0.485,0.456,0.406 "
                                      "std 0.229,0.224,0.225"})
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(man, f, indent=1)
        f.write("\n")
    for root, r in man["roots"].items():
        for split, s in r["splits"].items():
            print(f"{root}/{split}: classes {s['classes']} count {s['count']} per class {s['per_class']}; "
                  f"first file {s['files'][0]['file']} mode {s['files'][0]['pil_mode']}")


if __name__ == "__main__":
    main()
