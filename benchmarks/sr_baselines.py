"""Baseline upscalers run as a command over a folder, so that their wall time includes the same
per-folder overhead (interpreter start, imports, file I/O) as `aetool upscale`.

    python benchmarks/sr_baselines.py bicubic --scale 4 LR_DIR OUT_DIR
    python benchmarks/sr_baselines.py lanczos --scale 4 LR_DIR OUT_DIR

Each image is enlarged by the integer scale with Pillow's `Image.resize` (Image.BICUBIC or
Image.LANCZOS), in its own mode (grey stays grey; other modes are read as RGB), and written as an
8-bit PNG with the input's file name stem. Exit code 0 = all done, 1 = some failed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import each_file, list_images  # noqa: E402

METHODS = {"bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


def upscale(im: Image.Image, scale: int, method: str) -> Image.Image:
    im = im.convert("L" if im.mode in ("L", "I;16", "I", "1") else "RGB")
    return im.resize((im.width * scale, im.height * scale), METHODS[method])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("method", choices=sorted(METHODS))
    ap.add_argument("--scale", type=int, required=True, help="integer scale factor (2, 3, 4, ...)")
    ap.add_argument("input", type=Path)
    ap.add_argument("output", type=Path)
    args = ap.parse_args(argv)
    if args.scale < 1:
        ap.error("--scale must be a positive integer")
    args.output.mkdir(parents=True, exist_ok=True)

    def work(path):
        with Image.open(path) as im:
            upscale(im, args.scale, args.method).save(args.output / (path.stem + ".png"))

    return each_file(list_images(args.input), work)

if __name__ == "__main__":
    sys.exit(main())
