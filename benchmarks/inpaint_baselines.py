"""Baseline inpainters run as a command over a folder, so that their wall time includes the same
per-folder overhead (interpreter start, imports, file I/O) as `aetool inpaint`.

    python benchmarks/inpaint_baselines.py telea    IN_DIR MASK_DIR OUT_DIR
    python benchmarks/inpaint_baselines.py ns       IN_DIR MASK_DIR OUT_DIR
    python benchmarks/inpaint_baselines.py fsr      IN_DIR MASK_DIR OUT_DIR
    python benchmarks/inpaint_baselines.py shiftmap IN_DIR MASK_DIR OUT_DIR

Each image of IN_DIR is read as RGB (grey as L) with its mask MASK_DIR/<stem>.png (any image
suffix is accepted; read as grey, non-zero = missing, as in docs/protocol.md where 255 =
missing). Every method gets the image with the holes set to 0, in BGR order for colour. Outputs
are 8-bit PNGs named after the input's stem. Exit code 0 = all done, 1 = some failed (missing
mask, size mismatch, ...: each named on stderr).

- telea, ns: `cv2.inpaint(img, mask, radius, cv2.INPAINT_TELEA or cv2.INPAINT_NS)`, the mask as
  uint8 255 = missing / 0 = known, radius 5 unless --radius says otherwise. The known pixels come
  back unchanged.
- fsr: frequency-selective reconstruction (Seiler et al. 2015, Genser et al. 2018) from
  opencv-contrib's xphoto module, `cv2.xphoto.inpaint(bgr, known, dst, cv2.xphoto.INPAINT_FSR_FAST)`.
  Note the mask convention of xphoto, the opposite of cv2.inpaint: `known` is uint8 with 255 =
  KNOWN pixel and 0 = missing. The source is 8-bit BGR (xphoto converts it to YCrCb itself and
  back, so known pixels can move by 1 level: they are pasted back from the input). `dst` is a
  preallocated array of the source's shape and type that the call fills (the Python binding
  returns None). INPAINT_FSR_FAST rather than INPAINT_FSR_BEST: on one 768x512 photo (set14
  img_011, the 2 CPU cores of the benchmark machine) FAST took 1.8 s for the protocol's box mask
  and 13 s for its thick-stroke mask, BEST 301 s for the thick mask (FAST 15.7 dB hole PSNR there,
  BEST 15.4 dB): BEST would take hours per set.
- shiftmap: the shift-map exemplar method (He and Sun 2012) from the same module,
  `cv2.xphoto.inpaint(lab, known, dst, cv2.xphoto.INPAINT_SHIFTMAP)`, the same 255 = known mask
  (it must be exactly 255 there: the implementation zeroes every pixel whose mask is not 255).
  OpenCV documents that for 3-channel images it expects CIE Lab or a similar space whose first
  channel is intensity, so the source is `cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab)` (8-bit Lab) and the
  result goes back with COLOR_Lab2BGR. ShiftMap relabels a band of about 4 pixels of known pixels
  around each hole, and the 8-bit Lab round trip moves other known pixels by up to 3 levels: the
  known pixels of the input are pasted back over its output. Images larger than 800x600 are
  worked on downscaled inside OpenCV (its default `dsize`); the benchmark's sets are smaller.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import IMAGE_SUFFIXES, each_file, list_images, write_png  # noqa: E402

METHODS = ("telea", "ns", "fsr", "shiftmap")


def find_mask(mask_dir: Path, stem: str) -> Path | None:
    for suffix in [".png"] + sorted(IMAGE_SUFFIXES - {".png"}):
        p = mask_dir / (stem + suffix)
        if p.is_file():
            return p
    return None


def inpaint(img: np.ndarray, mask: np.ndarray, method: str, radius: float) -> np.ndarray:
    """Inpaint a uint8 RGB (H, W, 3) or grey (H, W) image; `mask` is boolean, True = missing.
    The known pixels of the result are those of `img`."""
    import cv2

    holes = img.copy()
    holes[mask] = 0
    colour = img.ndim == 3
    src = np.ascontiguousarray(holes[..., ::-1]) if colour else holes  # OpenCV's BGR order
    if method in ("telea", "ns"):
        flag = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}[method]
        out = cv2.inpaint(src, mask.astype(np.uint8) * 255, radius, flag)
    elif method in ("fsr", "shiftmap"):
        known = np.where(mask, 0, 255).astype(np.uint8)  # xphoto: non-zero = KNOWN (cv2.inpaint: missing)
        if method == "shiftmap" and colour:
            src = cv2.cvtColor(src, cv2.COLOR_BGR2Lab)
        dst = np.zeros_like(src)
        cv2.xphoto.inpaint(src, known, dst,
                           cv2.xphoto.INPAINT_FSR_FAST if method == "fsr" else cv2.xphoto.INPAINT_SHIFTMAP)
        out = cv2.cvtColor(dst, cv2.COLOR_Lab2BGR) if method == "shiftmap" and colour else dst
    else:
        raise ValueError(f"unknown method {method}")
    out = np.ascontiguousarray(out[..., ::-1]) if colour else out
    out[~mask] = img[~mask]  # the known pixels as given (xphoto's colour round trips and ShiftMap's seams move them)
    return out


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
