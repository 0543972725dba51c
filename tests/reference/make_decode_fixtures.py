#!/usr/bin/python3
"""make_decode_fixtures.py — decoding fixtures of issue 11: the PNG/JPEG kinds that tests/fixtures/images
(make_image_fixtures.py) does not hold yet, decoded by PIL 9.4 the way torchvision's loader does
(Image.open(f).convert('RGB'), or convert('L')), plus timm eval-transform outputs with BICUBIC and
BILINEAR. Run by hand (never by CI); outputs are committed.

  tests/fixtures/decode/src/NAME.EXT              the source files (<= 31 px a side)
  tests/fixtures/decode/decoded/STEM.rgb.u8       PIL's Image.open(src).convert('RGB')   (VQU8, HxWx3)
  tests/fixtures/decode/decoded/STEM.l.u8         PIL's Image.open(src).convert('L')     (VQU8, HxWx1)
  tests/fixtures/decode/transform/STEM_S_CROP_INTERP.f32
                                                  (1,C,S,S) timm eval transform (VQF4): resize the shorter
                                                  side to floor(S / crop_pct) with PIL BICUBIC or BILINEAR,
                                                  centre crop S (Python round, half to even), /255,
                                                  (x - mean) / std
  tests/fixtures/decode/manifest.json             every file: kind, PIL mode after open, size, PIL info
                                                  keys that matter, output names; transform parameters
STEM is the source file name with '.' replaced by '_' (png_named_13x12.JPEG -> png_named_13x12_JPEG).
VQU8 = b"VQU8", int32 w, h, c, then h*w*c bytes; VQF4 = b"VQF4", int32 ndim, dims, float32 data (LE).

Usage: /usr/bin/python3 tests/reference/make_decode_fixtures.py   (from the repository root)
"""
import io
import json
import os
import struct
import sys
import warnings
import zlib

import numpy as np
from PIL import Image
import PIL

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_image_fixtures import test_pattern, pack_bits  # noqa: E402
from timm_ref import write_u8, write_f32, eval_transform  # noqa: E402

OUT = os.path.join(HERE, "..", "fixtures", "decode")
SEED = 20240611
IMNET_MEAN, IMNET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def png_bytes(w, h, depth, color_type, rows, extra=b"", interlace=0, idat=None):
    """A minimal PNG: IHDR, `extra` chunks (PLTE, tRNS), one IDAT (filter 0 on every row), IEND."""
    raw = idat if idat is not None else b"".join(b"\x00" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, interlace))
            + extra + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def adam7_idat(pix):
    """Adam7-interlaced scanlines of an 8-bit HxWxC array (filter 0), passes in order, empty ones skipped."""
    h, w = pix.shape[:2]
    out = b""
    for x0, y0, dx, dy in [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                           (0, 1, 1, 2)]:
        sub = pix[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        out += b"".join(b"\x00" + r.tobytes() for r in sub)
    return out


def strip_app14(jpeg):
    """Removes the Adobe APP14 segment (FF EE) from a JPEG stream."""
    i = 2
    while i < len(jpeg):
        assert jpeg[i] == 0xFF
        marker, seglen = jpeg[i + 1], struct.unpack(">H", jpeg[i + 2:i + 4])[0]
        if marker == 0xEE:
            return jpeg[:i] + jpeg[i + 2 + seglen:]
        if marker == 0xDA:
            break
        i += 2 + seglen
    raise ValueError("no APP14 segment")


def sources(rng):
    """(file name, bytes, what it is) for every new kind."""
    S = []
    # 16-bit grey + alpha (colour type 4, depth 16): PIL 9.4 opens it as mode RGBA (rawmode LA;16B), i.e.
    # the HIGH byte of grey in R, G, B and the high byte of alpha in A. Row 0 holds chosen values.
    la = rng.randint(0, 65536, size=(21, 26, 2)).astype(">u2")
    la[0, :8, 0] = [0, 255, 256, 300, 511, 4095, 65280, 65535]
    S.append(("la16_26x21.png", png_bytes(26, 21, 16, 4, [r.tobytes() for r in la]),
              "16-bit grey+alpha PNG (colour type 4)"))
    rgba = rng.randint(0, 65536, size=(11, 14, 4)).astype(">u2")
    S.append(("rgba16_14x11.png", png_bytes(14, 11, 16, 6, [r.tobytes() for r in rgba]),
              "16-bit RGBA PNG (colour type 6)"))
    g16 = rng.randint(0, 65536, size=(10, 13)).astype(">u2")
    g16[0, :8] = [0, 1, 128, 254, 255, 256, 1000, 65535]
    S.append(("gray16full_13x10.png", png_bytes(13, 10, 16, 0, [r.tobytes() for r in g16]),
              "16-bit grey PNG, full 0..65535 range (PIL mode I: convert CLIPS to 0..255)"))
    g4 = rng.randint(0, 16, size=(7, 10))
    S.append(("gray4bit_10x7.png", png_bytes(10, 7, 4, 0, [pack_bits(r, 4) for r in g4]), "4-bit grey PNG"))
    g8 = test_pattern(rng, 23, 27, 1)[:, :, 0]
    S.append(("gray_trns_23x27.png", png_bytes(23, 27, 8, 0, [r.tobytes() for r in g8],
                                               extra=chunk(b"tRNS", struct.pack(">H", int(g8[3, 3])))),
              "8-bit grey PNG with tRNS (one transparent grey level)"))
    c8 = test_pattern(rng, 15, 12, 3)
    S.append(("rgb_trns_15x12.png", png_bytes(15, 12, 8, 2, [r.tobytes() for r in c8],
                                              extra=chunk(b"tRNS", struct.pack(">3H", *[int(v) for v in c8[2, 2]]))),
              "8-bit RGB PNG with tRNS (one transparent colour)"))
    b1 = (rng.rand(14, 21) > 0.5).astype(np.uint8) * 255
    bio = io.BytesIO()
    Image.fromarray(b1, "L").convert("1").save(bio, "PNG")
    S.append(("bit1_21x14.png", bio.getvalue(), "1-bit grey PNG (PIL mode '1')"))
    pal = rng.randint(0, 256, size=(2, 3)).astype(np.uint8)
    idx = rng.randint(0, 2, size=(9, 11))
    S.append(("pal1bit_11x9.png", png_bytes(11, 9, 1, 3, [pack_bits(r, 1) for r in idx],
                                            extra=chunk(b"PLTE", pal.tobytes())), "1-bit palette PNG"))
    pal = rng.randint(0, 256, size=(40, 3)).astype(np.uint8)
    idx = rng.randint(0, 40, size=(17, 19)).astype(np.uint8)
    S.append(("pal8_19x17.png", png_bytes(19, 17, 8, 3, [r.tobytes() for r in idx], extra=chunk(b"PLTE", pal.tobytes())),
              "8-bit palette PNG, no transparency"))
    pal = rng.randint(0, 256, size=(24, 3)).astype(np.uint8)
    trns = bytes([0, 64, 128, 192, 255, 7])  # alpha for entries 0..5; entries 6.. opaque
    idx = rng.randint(0, 24, size=(13, 17)).astype(np.uint8)
    S.append(("pal_trns_multi_17x13.png",
              png_bytes(17, 13, 8, 3, [r.tobytes() for r in idx], extra=chunk(b"PLTE", pal.tobytes()) + chunk(b"tRNS", trns)),
              "8-bit palette PNG, tRNS with several alpha values (PIL keeps it as bytes; convert('RGB') drops "
              "alpha and warns)"))
    a7 = test_pattern(rng, 19, 13, 3)
    S.append(("adam7_19x13.png", png_bytes(19, 13, 8, 2, None, interlace=1, idat=adam7_idat(a7)),
              "Adam7-interlaced 8-bit RGB PNG"))
    bio = io.BytesIO()
    Image.fromarray(test_pattern(rng, 13, 12, 3), "RGB").save(bio, "PNG")
    S.append(("png_named_13x12.JPEG", bio.getvalue(), "an RGB PNG whose name says .JPEG (PIL opens by content)"))
    bio = io.BytesIO()
    Image.fromarray(test_pattern(rng, 18, 14, 3), "RGB").save(bio, "JPEG", quality=90)
    S.append(("jpeg_named_18x14.png", bio.getvalue(), "an RGB JPEG whose name says .png"))
    bio = io.BytesIO()
    Image.fromarray(test_pattern(rng, 20, 31, 4), "CMYK").save(bio, "JPEG", quality=92)
    S.append(("cmyk_adobe_20x31.jpg", bio.getvalue(), "CMYK JPEG as Pillow writes it (Adobe APP14, transform 0, "
                                                      "inverted samples)"))
    S.append(("cmyk_noadobe_20x31.jpg", strip_app14(bio.getvalue()),
              "the same CMYK JPEG with its Adobe APP14 segment removed (PIL 9.4 inverts anyway)"))
    ex = Image.Exif()
    ex[0x0112] = 6  # Orientation: rotate 90 CW to display. PIL's open/convert does NOT apply it.
    bio = io.BytesIO()
    Image.fromarray(test_pattern(rng, 24, 16, 3), "RGB").save(bio, "JPEG", quality=90, exif=ex.tobytes())
    S.append(("exif_rot6_24x16.jpg", bio.getvalue(), "RGB JPEG with EXIF Orientation = 6 (not applied by PIL)"))
    bio = io.BytesIO()
    Image.fromarray(test_pattern(rng, 22, 18, 1)[:, :, 0], "L").save(bio, "JPEG", quality=90, progressive=True)
    S.append(("gray_prog_22x18.jpg", bio.getvalue(), "progressive greyscale JPEG"))
    return S


# (source, channels 'RGB' or 'L', img_size, crop_pct, mean, std): each with bicubic and bilinear.
# la16 26x21 at 16/0.9: short side 21 -> floor(16/0.9) = 17, long side int(17*26/21) = 21, so 21x17; crop
# offsets top = round(0.5) = 0, left = round(2.5) = 2 (Python rounds half to even; half-up gives 1 and 3).
TRANSFORMS = [
    ("la16_26x21.png", "RGB", 16, 0.9, IMNET_MEAN, IMNET_STD),
    ("cmyk_noadobe_20x31.jpg", "RGB", 16, 0.875, IMNET_MEAN, IMNET_STD),
    ("png_named_13x12.JPEG", "RGB", 16, 0.875, IMNET_MEAN, IMNET_STD),  # upsampling
    ("gray_trns_23x27.png", "L", 16, 0.9, (0.5,), (0.25,)),
]


def stem(fn):
    return fn.replace(".", "_")


def main():
    rng = np.random.RandomState(SEED)
    for d in ("src", "decoded", "transform"):
        os.makedirs(os.path.join(OUT, d), exist_ok=True)
    man = {"made_by": "tests/reference/make_decode_fixtures.py", "pillow": PIL.__version__, "seed": SEED,
           "decoded_format": "VQU8: 'VQU8', int32 w, h, c (LE), then h*w*c uint8, HWC",
           "transform_format": "VQF4: 'VQF4', int32 ndim, int32 dims[ndim], float32 data, C order (LE)",
           "sources": [], "transforms": []}
    for fn, data, what in sources(rng):
        p = os.path.join(OUT, "src", fn)
        with open(p, "wb") as f:
            f.write(data)
        im = Image.open(p)
        info = {k: (v if isinstance(v, (int, float, str)) else repr(v)) for k, v in im.info.items()
                if k in ("transparency", "adobe", "adobe_transform", "interlace", "progressive")}
        if "exif" in im.info:
            info["exif_orientation"] = im.getexif().get(0x0112)
        with warnings.catch_warnings(record=True) as wl:
            warnings.simplefilter("always")
            rgb = np.asarray(im.convert("RGB"))
            lum = np.asarray(Image.open(p).convert("L"))
        write_u8(os.path.join(OUT, "decoded", stem(fn) + ".rgb.u8"), rgb)
        write_u8(os.path.join(OUT, "decoded", stem(fn) + ".l.u8"), lum)
        man["sources"].append({"src": "src/" + fn, "kind": what, "format": im.format, "pil_mode": im.mode,
                               "w": im.size[0], "h": im.size[1], "pil_info": info,
                               "pil_warnings": sorted({str(w.message) for w in wl}),
                               "rgb": f"decoded/{stem(fn)}.rgb.u8", "l": f"decoded/{stem(fn)}.l.u8"})
        print(f"{fn:28s} {im.format:5s} mode {im.mode:5s} {im.size} {info}")
    for fn, ch, S, cp, mean, std in TRANSFORMS:
        for interp in ("bicubic", "bilinear"):
            img = Image.open(os.path.join(OUT, "src", fn)).convert(ch)
            x = eval_transform(img, S, cp, mean, std, interp)[None]
            name = f"transform/{stem(fn)}_{S}_{cp}_{interp}.f32"
            write_f32(os.path.join(OUT, name), x)
            man["transforms"].append({"src": "src/" + fn, "convert": ch, "img_size": S, "crop_pct": cp,
                                      "resize_short_side_to": int(np.floor(S / cp)), "interpolation": interp,
                                      "mean": list(mean), "std": list(std), "out": name, "shape": list(x.shape)})
    # a sanity check that the two interpolations really differ on each source
    for i in range(0, len(man["transforms"]), 2):
        a, b = man["transforms"][i], man["transforms"][i + 1]
        ra = np.fromfile(os.path.join(OUT, a["out"]), dtype="<f4", offset=8 + 16)
        rb = np.fromfile(os.path.join(OUT, b["out"]), dtype="<f4", offset=8 + 16)
        print(f"{a['src']}: max |bicubic - bilinear| = {np.abs(ra - rb).max():.4f}")
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(man, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
