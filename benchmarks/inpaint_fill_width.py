"""Where `--fill auto` switches from the smooth fill to texture: both fills of straight bands of
growing width on training photos (never the test sets), the hole PSNR and the gradient-energy
ratio (docs/protocol.md) of each.

    python benchmarks/inpaint_fill_width.py [--images 8] [--widths 4,8,12,16,24,32]

Each image of DATA/train/bsd200 (the first --images by name, RGB) gets, per width w, three
horizontal bands of w pixels at 1/4, 1/2 and 3/4 of the height, from 10 % to 90 % of the width.
Both fills run in process (`Inpainter(fill="smooth" | "texture")`, seed 0); printed: the means per
width, and a markdown table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, list_images, md_table, read_image  # noqa: E402
from inpaint import gradient_energy_ratio  # noqa: E402


def bands(h: int, w: int, width: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    for f in (0.25, 0.5, 0.75):
        y = int(f * h) - width // 2
        m[y:y + width, int(0.1 * w):int(0.9 * w)] = True
    return m


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--widths", default="4,8,12,16,24,32")
    args = ap.parse_args(argv)
    from aetool.tasks.inpaint import Inpainter

    widths = [int(x) for x in args.widths.split(",")]
    fills = {f: Inpainter(fill=f) for f in ("smooth", "texture")}
    paths = list_images(args.data / "train" / "bsd200")[:args.images]
    rows = []
    for width in widths:
        scores = {f: [] for f in fills}
        for p in paths:
            clean = read_image(p, "RGB")
            mask = bands(*clean.shape[:2], width)
            x = clean.astype(np.float32) / 255
            x[mask] = 0
            for f, inp in fills.items():
                out = np.round(np.clip(inp(x, mask)[0], 0, 1) * 255)
                err = np.mean((out[mask] - clean[mask].astype(np.float64)) ** 2)
                scores[f].append((10 * np.log10(255 ** 2 / err), gradient_energy_ratio(clean, out, mask)))
        s, t = np.mean(scores["smooth"], axis=0), np.mean(scores["texture"], axis=0)
        rows.append((width, *s, *t))
        print(f"width {width}: smooth {s[0]:.2f} dB, energy {s[1]:.3f}; texture {t[0]:.2f} dB, energy {t[1]:.3f}",
              file=sys.stderr, flush=True)
    print(f"{len(paths)} training photos (bsd200), 3 bands per photo\n")
    print(md_table(["width (px)", "smooth hole PSNR", "smooth gradient energy", "texture hole PSNR",
                    "texture gradient energy"],
                   [[w, f"{sp:.2f}", f"{se:.3f}", f"{tp:.2f}", f"{te:.3f}"] for w, sp, se, tp, te in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
