"""Design checks of `aetool.noise.estimate_noise` on training photos: the patch size of small
colour images, and the clipping model's rescaling check (the evidence behind both choices).

    python benchmarks/noise_design.py [--sizes 64,96,128,192,256] [--crops 3] [--out-json F]

Images: random crops (fixed seed) of the training photos DATA/train/bsd200 (every 4th, from the
second) and DATA/train/t91 (every 3rd), never the test sets; crops of a size that does not fit
in a photo are skipped. Each crop gets the protocol noise (`add_gaussian_noise`) at sigma 5, 15,
25 and 50 in turn (one sigma per crop), with its own seed.

Compared, on the same noisy crops:
  patch    colour patches of 5 x 5 against 7 x 7, at every size (the module constants
           _PATCH_SMALL_COLOUR and _SMALL_COLOUR_PIXELS overridden): mean |estimate / sigma - 1|
           of each, and their paired difference with its standard error. aetool uses 5 x 5 for
           colour images under 256 x 256.
  rescale  the clipping model's rescaling check on (as shipped) and off (_RESCALE_TOL = 0, steps
           until one moves sigma by at most 2 %), colour and grey crops: covariance measurements
           counted, how far the estimates move, and the mean |error| of each.
Accuracy only; benchmarks/noise_speed.py times the estimate against the model.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from unittest import mock

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, list_images, machine, machine_line, md_table  # noqa: E402

SIGMAS = (5.0, 15.0, 25.0, 50.0)


def noisy_crops(photos: list[Path], size: int, crops: int, seed: int, grey: bool = False
                ) -> list[tuple[float, np.ndarray]]:
    """(sigma, noisy crop) pairs; grey crops are the same crops converted to L before the noise."""
    from aetool.noise import add_gaussian_noise

    rng = np.random.default_rng(seed)
    out = []
    for path in photos:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        h, w = rgb.shape[:2]
        if h < size or w < size:
            continue
        for _ in range(crops):
            y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            sigma = SIGMAS[len(out) % len(SIGMAS)]
            clean = rgb[y:y + size, x:x + size]
            if grey:
                clean = np.asarray(Image.fromarray(clean).convert("L"))
            out.append((sigma, add_gaussian_noise(clean, sigma, np.random.default_rng(seed + len(out)))))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--sizes", default="64,96,128,192,256", help="square crop sides")
    ap.add_argument("--crops", type=int, default=3, help="random crops per photo and size")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out-json", type=Path, default=None)
    args = ap.parse_args(argv)

    import aetool.noise as noise

    photos = (list_images(args.data / "train" / "bsd200")[1::4] + list_images(args.data / "train" / "t91")[::3])
    if not photos:
        print(f"no training photos under {args.data / 'train'}", file=sys.stderr)
        return 2
    print(f"# noise estimate design checks; {machine_line(machine())}")
    print(f"# images: {len(photos)} training photos (bsd200 every 4th from the 2nd, t91 every 3rd), "
          f"{args.crops} random crops each per size, seed {args.seed}")

    calls = [0]
    measure = noise._select_and_measure

    def counted(*a, **k):
        calls[0] += 1
        return measure(*a, **k)

    noise._select_and_measure = counted
    patch_rows, rescale_rows, record = [], [], {"sizes": {}}
    for size in [int(s) for s in args.sizes.split(",") if s.strip()]:
        cases = noisy_crops(photos, size, args.crops, args.seed + size)
        grey_cases = noisy_crops(photos, size, args.crops, args.seed + size, grey=True)
        sigma = np.array([s for s, _ in cases])
        err = {}
        for side in (7, 5):
            with mock.patch.multiple(noise, _PATCH_SMALL_COLOUR=side, _SMALL_COLOUR_PIXELS=math.inf):
                err[side] = np.abs(np.array([noise.estimate_noise(im) for _, im in cases]) / sigma - 1)
        diff = err[5] - err[7]
        se = diff.std(ddof=1) / math.sqrt(len(diff))
        patch_rows.append([size, len(cases), f"{100 * err[7].mean():.2f}", f"{100 * err[5].mean():.2f}",
                           f"{100 * diff.mean():+.3f} +- {100 * se:.3f}",
                           f"{100 * np.quantile(err[7], 0.9):.1f}", f"{100 * np.quantile(err[5], 0.9):.1f}"])
        res = {}
        for name, tol in (("on", noise._RESCALE_TOL), ("off", 0.0)):
            with mock.patch.multiple(noise, _RESCALE_TOL=tol):
                calls[0] = 0
                res[name] = (np.array([noise.estimate_noise(im) for _, im in cases + grey_cases]), calls[0])
        both = np.concatenate([sigma, sigma])
        moved = np.abs(res["on"][0] / res["off"][0] - 1)
        rescale_rows.append([size, len(both), res["on"][1], res["off"][1], f"{100 * moved.mean():.3f}",
                             f"{100 * moved.max():.2f}",
                             f"{100 * np.mean(np.abs(res['on'][0] / both - 1)):.3f}",
                             f"{100 * np.mean(np.abs(res['off'][0] / both - 1)):.3f}"])
        record["sizes"][size] = {"crops": len(cases), "err_7x7": err[7].tolist(), "err_5x5": err[5].tolist(),
                                 "rescale_on": res["on"][0].tolist(), "rescale_off": res["off"][0].tolist(),
                                 "measurements_on": res["on"][1], "measurements_off": res["off"][1],
                                 "sigma": both.tolist()}
        print(f"# {size}: done", flush=True)
    noise._select_and_measure = measure

    print("\nColour patch size (mean |error| %, paired difference 5x5 - 7x7 in points, 90th percentile %):")
    print(md_table(["size", "crops", "7x7 mean", "5x5 mean", "5x5 - 7x7", "7x7 p90", "5x5 p90"], patch_rows))
    print("\nRescaling check (colour and grey crops; measurements = covariance sets ranked and measured):")
    print(md_table(["size", "estimates", "measurements on", "measurements off", "moved mean %", "moved max %",
                    "mean |err| on %", "mean |err| off %"], rescale_rows))
    if args.out_json:
        args.out_json.write_text(json.dumps({"machine": machine(), "args": vars(args) | {"data": str(args.data)},
                                             **record}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
