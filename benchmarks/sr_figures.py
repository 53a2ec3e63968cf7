"""Pictures for the docs of `aetool upscale` (numbers come from benchmarks/upscale.py; these only show).

1. docs/upscale-comparison.png: for a few test images (LR files of ../shared/data/test/sr), one crop
   side by side: bicubic, Lanczos, aetool and the ground truth, each titled with its Y-PSNR over
   the whole image (protocol of docs/protocol.md).
2. docs/upscale-photo-rni15.png: real noisy photos with no ground truth (test/denoise/rni15),
   a crop enlarged x4 by bicubic, by the bicubic-trained model and by the "photo" model.

Crops are chosen by the script, not by hand: for the test sets the most detailed window (largest
gradient energy of the original), shown at twice its size (nearest); for rni15 the centre 64x64
of the photo (its most detailed window would be its noisiest), shown enlarged x4.

    python benchmarks/sr_figures.py                     # both figures, shipped default models
    python benchmarks/sr_figures.py --photo-model upscale-photo-x4 --only rni15
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT  # noqa: E402

CROP_HR = 120  # pixels of the high-resolution image shown per panel (before the 2x display zoom)
ZOOM = 2
TITLE_H = 18


def y_channel(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float64) / 255.0
    return 16.0 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]


def psnr_y(out: np.ndarray, ref: np.ndarray, border: int) -> float:
    a, b = y_channel(out)[border:-border, border:-border], y_channel(ref)[border:-border, border:-border]
    return float(10 * np.log10(255.0 ** 2 / np.mean((a - b) ** 2)))


def detailed_window(img: np.ndarray, size: int, step: int = 8) -> tuple[int, int]:
    """Top-left corner of the size x size window with the most gradient energy (on luma)."""
    y = y_channel(img) if img.ndim == 3 else img.astype(np.float64)
    g = np.abs(np.diff(y, axis=0))[:, :-1] + np.abs(np.diff(y, axis=1))[:-1, :]
    s = np.pad(g, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    best, where = -1.0, (0, 0)
    for top in range(0, max(1, g.shape[0] - size), step):
        for left in range(0, max(1, g.shape[1] - size), step):
            b, r = min(top + size, g.shape[0]), min(left + size, g.shape[1])
            e = s[b, r] - s[top, r] - s[b, left] + s[top, left]
            if e > best:
                best, where = e, (top, left)
    return where


def panel(img: np.ndarray, title: str, zoom: int = ZOOM) -> Image.Image:
    im = Image.fromarray(img).resize((img.shape[1] * zoom, img.shape[0] * zoom), Image.NEAREST)
    out = Image.new("RGB", (im.width, im.height + TITLE_H), "white")
    out.paste(im, (0, TITLE_H))
    ImageDraw.Draw(out).text((4, 3), title, fill="black")
    return out


def grid(rows: list[list[Image.Image]], gap: int = 6) -> Image.Image:
    w = max(sum(p.width for p in r) + gap * (len(r) - 1) for r in rows)
    h = sum(max(p.height for p in r) for r in rows) + gap * (len(rows) - 1)
    sheet = Image.new("RGB", (w, h), "white")
    y = 0
    for r in rows:
        x = 0
        for p in r:
            sheet.paste(p, (x, y))
            x += p.width + gap
        y += max(p.height for p in r) + gap
    return sheet


def enlarge(lr: np.ndarray, scale: int, how: str, model: str | None = None) -> np.ndarray:
    if how in ("bicubic", "lanczos"):
        resample = Image.BICUBIC if how == "bicubic" else Image.LANCZOS
        return np.asarray(Image.fromarray(lr).resize((lr.shape[1] * scale, lr.shape[0] * scale), resample))
    from aetool import upscale

    return upscale(lr, scale=None if model else scale, model=model)


def comparison(args) -> Path:
    rows = []
    for item in args.images:
        set_name, scale, fname = item.split(":")
        scale = int(scale)
        base = args.data / "test" / "sr" / set_name / f"x{scale}"
        hr = np.asarray(Image.open(base / "hr" / fname).convert("RGB"))
        lr = np.asarray(Image.open(base / "lr" / fname).convert("RGB"))
        outs = {"bicubic": enlarge(lr, scale, "bicubic"), "Lanczos": enlarge(lr, scale, "lanczos"),
                "aetool": enlarge(lr, scale, "aetool", args.model_template.format(scale=scale)
                                  if args.model_template else None)}
        top, left = detailed_window(hr, CROP_HR)
        crop = np.s_[top:top + CROP_HR, left:left + CROP_HR]
        row = [panel(o[crop], f"{name} {psnr_y(o, hr, scale):.2f} dB") for name, o in outs.items()]
        row.append(panel(hr[crop], f"{set_name} {fname} x{scale}: original"))
        rows.append(row)
    out = args.out_dir / "upscale-comparison.png"
    grid(rows).save(out, optimize=True)
    return out


def rni15(args) -> Path:
    rows = []
    folder = args.data / "test" / "denoise" / "rni15"
    crop_lr = 64  # input pixels -> 256 output pixels per panel
    for fname in args.rni15:
        lr = np.asarray(Image.open(folder / fname).convert("RGB"))
        # The centre: the most detailed window of a noisy photo is its noisiest, not its most telling.
        top, left = (lr.shape[0] - crop_lr) // 2, (lr.shape[1] - crop_lr) // 2
        patch = lr[top:top + crop_lr, left:left + crop_lr]
        outs = {"bicubic x4": enlarge(patch, 4, "bicubic"),
                f"{args.model_template.format(scale=4) if args.model_template else 'default'} x4":
                    enlarge(patch, 4, "aetool", args.model_template.format(scale=4) if args.model_template else None),
                f"{args.photo_model} x4": enlarge(patch, 4, "aetool", args.photo_model)}
        rows.append([panel(patch, f"{fname}: input (centre {crop_lr}x{crop_lr})", zoom=4)]
                    + [panel(o, f"{name}", zoom=1) for name, o in outs.items()])
    out = args.out_dir / "upscale-photo-rni15.png"
    grid(rows).save(out, optimize=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "docs")
    ap.add_argument("--images", nargs="+", default=["set14:4:img_005.png", "bsd100:4:img_010.png",
                                                    "set5:2:img_002.png"],
                    help="SET:SCALE:FILE of the super-resolution test sets")
    ap.add_argument("--rni15", nargs="+", default=["Dog.png", "Flowers.png", "Postcards.png"])
    ap.add_argument("--model-template", default=None,
                    help="model name per scale, e.g. 'upscale-x{scale}' (default: the shipped default)")
    ap.add_argument("--photo-model", default="upscale-photo-x4")
    ap.add_argument("--only", choices=["comparison", "rni15"], default=None)
    args = ap.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "comparison"):
        print(f"wrote {comparison(args)}")
    if args.only in (None, "rni15"):
        print(f"wrote {rni15(args)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
