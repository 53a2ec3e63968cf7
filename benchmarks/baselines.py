"""Baseline denoisers run as a command over a folder, so that their wall time includes the same
per-folder overhead (interpreter start, imports, file I/O) as `aetool denoise`.

    python benchmarks/baselines.py bm3d --sigma 25 IN_DIR OUT_DIR
    python benchmarks/baselines.py nlm  --sigma 25 IN_DIR OUT_DIR

Grey (mode L) images get the grey variant, all others are read as RGB and get the colour one.
Outputs are 8-bit PNGs with the input's file name. Exit code 0 = all done, 1 = some failed.

bm3d: `bm3d.bm3d` / `bm3d.bm3d_rgb` (CBM3D, opponent colour space, default profile), told the true
sigma in the units of the data it gets (floats in [0, 1], so sigma / 255); output clipped and rounded.

nlm: OpenCV `fastNlMeansDenoising` / `fastNlMeansDenoisingColored`, templateWindowSize 7,
searchWindowSize 21, with h fixed by NLM_H below.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import each_file, list_images, to_uint8, write_png  # noqa: E402

# OpenCV's weight is exp(-d2 / h^2), d2 the mean squared difference per channel between two 7x7
# patches (no noise-variance subtraction). Two patches of the same content differ by 2 s^2 on
# average, s the noise std of the channels filtered, so h = s gives such patches the weight e^-2
# while a patch whose content differs by one more noise variance gets e^-3: a match is judged in
# units of the noise itself. Grey images are filtered as they are, so s = sigma. The colour
# function filters the 8-bit CIELAB channels (L with h, a/b with hColor), where iid RGB noise of
# std sigma has a std of about 0.7 sigma in each of L, a and b (measured once on flat synthetic
# grey patches at sigma 15/25/50, never on the test sets), hence h = hColor = 0.7 sigma.
# The rule is fixed by this reasoning, not tuned on the benchmark images.
NLM_H = {"gray": 1.0, "color": 0.7}
NLM_RULE = ("OpenCV NLM, 7x7 patches, 21x21 search: h = sigma (grey); h = hColor = 0.7 sigma (colour: "
            "the noise std in OpenCV's 8-bit CIELAB channels, where it filters)")


def denoise_bm3d(img: np.ndarray, sigma: float) -> np.ndarray:
    import bm3d

    z = img.astype(np.float64) / 255.0
    out = bm3d.bm3d_rgb(z, sigma / 255.0) if img.ndim == 3 else bm3d.bm3d(z, sigma / 255.0)
    return to_uint8(out, 255.0)


def denoise_nlm(img: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    if img.ndim == 2:
        return cv2.fastNlMeansDenoising(img, None, h=NLM_H["gray"] * sigma,
                                        templateWindowSize=7, searchWindowSize=21)
    h = NLM_H["color"] * sigma
    bgr = cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(img[..., ::-1]), None, h, h, 7, 21)
    return bgr[..., ::-1]


METHODS = {"bm3d": denoise_bm3d, "nlm": denoise_nlm}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("method", choices=sorted(METHODS))
    ap.add_argument("--sigma", type=float, required=True, help="noise std in 0-255 units")
    ap.add_argument("input", type=Path)
    ap.add_argument("output", type=Path)
    args = ap.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)

    def work(path):
        with Image.open(path) as im:
            img = np.asarray(im.convert("L" if im.mode in ("L", "I;16", "I") else "RGB"))
        write_png(args.output / (path.stem + ".png"), METHODS[args.method](img, args.sigma))

    return each_file(list_images(args.input), work)

if __name__ == "__main__":
    sys.exit(main())
