"""Baseline inpainters run as a command over a folder, so that their wall time includes the same
per-folder overhead (interpreter start, imports, file I/O) as `aetool inpaint`.

    python benchmarks/inpaint_baselines.py telea IN_DIR MASK_DIR OUT_DIR
    python benchmarks/inpaint_baselines.py ns    IN_DIR MASK_DIR OUT_DIR

Each image of IN_DIR is read as RGB (grey as L) with its mask MASK_DIR/<stem>.png (any image
suffix is accepted; read as grey, non-zero = missing, as in docs/protocol.md where 255 =
missing). OpenCV gets the image with the holes set to 0 (BGR order) and the mask as uint8 255/0:
`cv2.inpaint(img, mask, radius, cv2.INPAINT_TELEA or cv2.INPAINT_NS)`, radius 5 unless --radius
says otherwise. Outputs are 8-bit PNGs named after the input's stem. Exit code 0 = all done,
1 = some failed (missing mask, size mismatch, ...: each named on stderr).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import IMAGE_SUFFIXES, each_file, list_images, write_png  # noqa: E402

METHODS = ("telea", "ns")


def find_mask(mask_dir: Path, stem: str) -> Path | None:
    for suffix in [".png"] + sorted(IMAGE_SUFFIXES - {".png"}):
        p = mask_dir / (stem + suffix)
        if p.is_file():
            return p
    return None


def inpaint(img: np.ndarray, mask: np.ndarray, method: str, radius: float) -> np.ndarray:
    """OpenCV inpainting of a uint8 RGB (H, W, 3) or grey (H, W) image; `mask` is boolean, True = missing."""
    import cv2

    flag = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}[method]
    holes = img.copy()
    holes[mask] = 0
    m = mask.astype(np.uint8) * 255
    if img.ndim == 2:
        return cv2.inpaint(holes, m, radius, flag)
    bgr = cv2.inpaint(np.ascontiguousarray(holes[..., ::-1]), m, radius, flag)
    return bgr[..., ::-1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("method", choices=METHODS)
    ap.add_argument("input", type=Path)
    ap.add_argument("masks", type=Path, help="folder with one mask per input, by file stem (non-zero = missing)")
    ap.add_argument("output", type=Path)
    ap.add_argument("--radius", type=float, default=5.0, help="inpaintRadius of cv2.inpaint (default 5)")
    args = ap.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)

    def work(path):
        mask_path = find_mask(args.masks, path.stem)
        if mask_path is None:
            raise FileNotFoundError(f"no mask {path.stem}.png in {args.masks}")
        with Image.open(path) as im:
            img = np.asarray(im.convert("L" if im.mode in ("L", "I;16", "I", "1") else "RGB"))
        with Image.open(mask_path) as im:
            mask = np.asarray(im.convert("L")) > 0
        if mask.shape != img.shape[:2]:
            raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]}, image is {img.shape[1]}x{img.shape[0]}")
        write_png(args.output / (path.stem + ".png"), inpaint(img, mask, args.method, args.radius))

    return each_file(list_images(args.input), work)

if __name__ == "__main__":
    sys.exit(main())
