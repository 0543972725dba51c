#!/usr/bin/python3
"""make_image_fixtures.py — writes the image fixtures of tests/test_data_image.c (run by hand, outputs
are committed; CI never runs Python).

Run from the repository root:  /usr/bin/python3 tests/reference/make_image_fixtures.py

Everything comes from PIL 9.4 + numpy, the way torchvision 0.14's ImageFolder loader and timm's eval
transform see it (torchvision itself is not needed: the transform below repeats its steps):
  tests/fixtures/images/src/*.{png,jpg}        small source images of many PNG/JPEG kinds
  tests/fixtures/images/decoded/NAME.rgb.u8    PIL's Image.open(src).convert('RGB')
  tests/fixtures/images/decoded/NAME.l.u8      PIL's Image.open(src).convert('L')
  tests/fixtures/images/resize/NAME_WxH.u8     PIL's convert('RGB' or 'L').resize((W, H), BICUBIC);
                                               proc_200x150 is procedural() below, not stored
  tests/fixtures/images/folder/{cat,dog}/...   a tiny image folder (2 classes, a stray .txt file)
  tests/fixtures/images/transform_rgb.f32      (5,3,32,32) eval transform of the folder, DeiT mean/std
  tests/fixtures/images/transform_l.f32        (5,1,32,32) the same after convert('L'), mean .5 std .25
  tests/fixtures/images/fmnist0_32.f32         (1,1,32,32) Fashion-MNIST test image 0 at 32 / 0.875

Formats (little-endian): .u8  = b"VQU8", int32 w, h, c, then h*w*c bytes (HWC);
                         .f32 = b"VQF4", int32 ndim, int32 dims[ndim], then float32 data (C order).
"""
import gzip
import math
import os
import struct
import zlib

import numpy as np
from PIL import Image

OUT = "tests/fixtures/images"
DEIT_MEAN = (0.485, 0.456, 0.406)
DEIT_STD = (0.229, 0.224, 0.225)


def write_u8(path, arr):
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    h, w, c = arr.shape
    with open(path, "wb") as f:
        f.write(b"VQU8" + struct.pack("<3i", w, h, c) + arr.tobytes())


def write_f32(path, arr):
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    with open(path, "wb") as f:
        f.write(b"VQF4" + struct.pack("<i", arr.ndim) + struct.pack("<%di" % arr.ndim, *arr.shape) + arr.tobytes())


def png_raw(path, w, h, depth, color_type, rows_bytes):
    """A minimal PNG writer for the kinds PIL cannot save (16-bit RGB, 2-bit gray)."""
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + r for r in rows_bytes)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(chunk(b"IEND", b""))


def pack_bits(row, depth):
    """Packs samples of `depth` bits, first sample in the high bits, rows padded to whole bytes."""
    bits = "".join(format(int(v), "0%db" % depth) for v in row)
    bits += "0" * (-len(bits) % 8)
    return bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))


def test_pattern(rng, w, h, c):
    """Noise plus gradients plus a hard edge: exercises ringing, clipping and every tap position."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = [255.0 * x / max(w - 1, 1), 255.0 * y / max(h - 1, 1), 127.5 + 127.5 * np.sin(x * 0.7 + y * 0.3)]
    planes = []
    for k in range(c):
        p = 0.6 * base[k % 3] + rng.uniform(-90, 90, size=(h, w))
        p[:, w // 3: w // 3 + 2] = 255 if k % 2 == 0 else 0  # a sharp vertical bar
        planes.append(np.clip(np.round(p), 0, 255))
    return np.stack(planes, axis=-1).astype(np.uint8)


def procedural(w, h):
    """RGB pixels from integer arithmetic only, rebuilt identically by tests/test_data_image.c."""
    y, x, c = np.mgrid[0:h, 0:w, 0:3].astype(np.int64)
    return ((x * x * 3 + y * 7 + c * 85 + ((x * y) % 31) * 5 + ((x // 16 + y // 16) % 2) * 128) & 255).astype(np.uint8)


def eval_transform(img, size, crop_pct, mean, std):
    """timm transforms_imagenet_eval with torchvision 0.14 semantics on a PIL image."""
    scale = math.floor(size / crop_pct)
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    if short != scale:
        new_short, new_long = scale, int(scale * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        img = img.resize((new_w, new_h), Image.BICUBIC)
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


def main():
    rng = np.random.RandomState(20240601)
    for d in ("src", "decoded", "resize", "folder/cat", "folder/dog"):
        os.makedirs(os.path.join(OUT, d), exist_ok=True)
    src = os.path.join(OUT, "src")

    # --- source images of every kind the decoders handle ---
    rgb = test_pattern(rng, 37, 23, 3)
    Image.fromarray(rgb, "RGB").save(f"{src}/rgb_37x23.png")
    Image.fromarray(rgb, "RGB").save(f"{src}/rgb_37x23.jpg", quality=90)           # 4:2:0
    Image.fromarray(rgb, "RGB").save(f"{src}/rgb444_37x23.jpg", quality=95, subsampling=0)
    Image.fromarray(rgb, "RGB").save(f"{src}/prog_37x23.jpg", quality=85, progressive=True)
    gray = test_pattern(rng, 29, 31, 1)[:, :, 0]
    Image.fromarray(gray, "L").save(f"{src}/gray_29x31.png")
    Image.fromarray(gray, "L").save(f"{src}/gray_29x31.jpg", quality=90)
    rgba = test_pattern(rng, 20, 17, 4)
    Image.fromarray(rgba, "RGBA").save(f"{src}/rgba_20x17.png")
    la = test_pattern(rng, 15, 12, 2)
    Image.fromarray(la, "LA").save(f"{src}/la_15x12.png")
    pal = Image.fromarray(test_pattern(rng, 19, 21, 3), "RGB").quantize(colors=37)
    pal.info["transparency"] = 3
    pal.save(f"{src}/pal_19x21.png", transparency=3)
    pal4 = Image.fromarray(test_pattern(rng, 13, 9, 3), "RGB").quantize(colors=16)
    pal4.save(f"{src}/pal4bit_13x9.png", bits=4)
    g16 = (rng.randint(0, 700, size=(11, 13))).astype(">u2")                      # PIL mode 'I': clips
    png_raw(f"{src}/gray16_13x11.png", 13, 11, 16, 0, [r.tobytes() for r in g16])
    c16 = rng.randint(0, 65536, size=(9, 10, 3)).astype(">u2")
    png_raw(f"{src}/rgb16_10x9.png", 10, 9, 16, 2, [r.tobytes() for r in c16])
    g2 = rng.randint(0, 4, size=(7, 9))
    png_raw(f"{src}/gray2bit_9x7.png", 9, 7, 2, 0, [pack_bits(r, 2) for r in g2])
    cmyk = Image.fromarray(test_pattern(rng, 16, 12, 4), "CMYK")
    cmyk.save(f"{src}/cmyk_16x12.jpg", quality=92)

    # --- what PIL decodes ---
    for name in sorted(os.listdir(src)):
        im = Image.open(os.path.join(src, name))
        stem = name.rsplit(".", 1)[0] + ("_jpg" if name.endswith(".jpg") else "")
        write_u8(f"{OUT}/decoded/{stem}.rgb.u8", np.asarray(im.convert("RGB")))
        write_u8(f"{OUT}/decoded/{stem}.l.u8", np.asarray(im.convert("L")))

    # --- PIL bicubic resizes: down by non-integer factors, up, one dimension only ---
    im = Image.open(f"{src}/rgb_37x23.png").convert("RGB")
    for w, h in [(20, 13), (64, 41), (37, 50), (15, 23), (11, 7), (5, 3), (100, 23), (36, 22), (1, 1)]:
        write_u8(f"{OUT}/resize/rgb_37x23_{w}x{h}.u8", np.asarray(im.resize((w, h), Image.BICUBIC)))
    im = Image.open(f"{src}/gray_29x31.png")
    for w, h in [(17, 40), (8, 9), (29, 7), (58, 62)]:
        write_u8(f"{OUT}/resize/gray_29x31_{w}x{h}.u8", np.asarray(im.resize((w, h), Image.BICUBIC)))

    # --- a larger procedural source (not committed: tests rebuild it from the same formula) ---
    big = procedural(200, 150)
    im = Image.fromarray(big, "RGB")
    for w, h in [(73, 55), (23, 17), (223, 167), (200, 37)]:
        write_u8(f"{OUT}/resize/proc_200x150_{w}x{h}.u8", np.asarray(im.resize((w, h), Image.BICUBIC)))

    # --- a tiny image folder and its eval transform ---
    folder = os.path.join(OUT, "folder")
    files = {
        "cat/a.png": Image.fromarray(test_pattern(rng, 37, 23, 3), "RGB"),
        "cat/b.JPG": Image.fromarray(test_pattern(rng, 23, 40, 3), "RGB"),
        "dog/c.jpeg": Image.fromarray(test_pattern(rng, 50, 33, 3), "RGB"),
        "dog/d.png": Image.fromarray(test_pattern(rng, 36, 36, 3), "RGB"),
        "dog/e_gray.png": Image.fromarray(test_pattern(rng, 31, 45, 1)[:, :, 0], "L"),
    }
    for rel, img in files.items():
        img.save(os.path.join(folder, rel), quality=90) if rel.lower().endswith(("jpg", "jpeg")) \
            else img.save(os.path.join(folder, rel))
    with open(os.path.join(folder, "dog/notes.txt"), "w") as f:
        f.write("not an image: ImageFolder skips files without an image extension\n")
    xs_rgb, xs_l = [], []
    for rel in sorted(files):  # class order then file order, as ImageFolder (byte order)
        img = Image.open(os.path.join(folder, rel))
        xs_rgb.append(eval_transform(img.convert("RGB"), 32, 0.875, DEIT_MEAN, DEIT_STD))
        xs_l.append(eval_transform(img.convert("RGB").convert("L"), 32, 0.875, (0.5,), (0.25,)))
    write_f32(f"{OUT}/transform_rgb.f32", np.stack(xs_rgb))
    write_f32(f"{OUT}/transform_l.f32", np.stack(xs_l))

    # --- Fashion-MNIST test image 0 through the same transform (needs dataset-fashion-mnist) ---
    p = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
    with gzip.open(p, "rb") as f:
        raw = f.read(16 + 784)
    img = Image.fromarray(np.frombuffer(raw[16:], dtype=np.uint8).reshape(28, 28), "L")
    write_f32(f"{OUT}/fmnist0_32.f32", eval_transform(img, 32, 0.875, (0.2860,), (0.3530,))[None])


if __name__ == "__main__":
    main()
