"""What the inpainter's self-ensemble (`--ensemble N`: the network on N flipped copies of each crop,
the fills averaged) buys and costs: the smooth fill's hole PSNR and its time, per mask kind, for
N = 1, 2, 4 and 8, on training photos (never the test sets), with the shipped default model.

    python benchmarks/inpaint_ensemble.py [--images 12] [--first 10] [--model NAME|FILE]

Images: DATA/train/bsd200 sorted by name, --images of them from index --first (RGB); masks:
`aetool.maskgen.protocol_mask(kind, h, w, 1000 + i)` (not the test sets' 7000 + i). Everything runs
in process (`Inpainter(fill="smooth")`, torch's default threads); the time is the fill's alone
(no decoding, no start-up), in seconds per megapixel. Printed: a markdown table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, list_images, read_image  # noqa: E402

KINDS = ("thin", "thick", "box")
ENSEMBLES = (1, 2, 4, 8)


def hole_psnr(out: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> float:
    err = out[mask].astype(np.float64) - clean[mask]
    return float(10 * np.log10(255 ** 2 / np.mean(err ** 2)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--first", type=int, default=10)
    ap.add_argument("--model", default=None)
    args = ap.parse_args(argv)
    from aetool.engine import EngineOptions
    from aetool.maskgen import protocol_mask
    from aetool.tasks.inpaint import Inpainter

    paths = list_images(args.data / "train" / "bsd200")[args.first:args.first + args.images]
    images = [read_image(p, "RGB") for p in paths]
    fills = {n: Inpainter(args.model, EngineOptions(ensemble=n), fill="smooth") for n in ENSEMBLES}
    rows = []
    for kind in KINDS:
        for n, inp in fills.items():
            scores, seconds, mp = [], 0.0, 0.0
            for i, clean in enumerate(images, start=args.first):
                mask = protocol_mask(kind, *clean.shape[:2], 1000 + i)
                x = clean.astype(np.float32) / 255
                x[mask] = 0
                inp.model  # loaded before the clock starts
                t = time.perf_counter()
                out, _ = inp(x, mask)
                seconds += time.perf_counter() - t
                mp += clean.shape[0] * clean.shape[1] / 1e6
                scores.append(hole_psnr(np.round(out * 255), clean, mask))
            rows.append((kind, n, float(np.mean(scores)), seconds / mp))
            print(f"{kind} ensemble {n}: hole PSNR {rows[-1][2]:.2f} dB, {rows[-1][3]:.2f} s/MP", file=sys.stderr,
                  flush=True)
    base = {kind: psnr for kind, n, psnr, _ in rows if n == 1}
    print(f"Smooth fill, {len(images)} bsd200 training photos (files {args.first}-{args.first + len(images) - 1} "
          "by name), protocol masks 1000 + i, in process:\n")
    print("| kind | --ensemble | hole PSNR (dB) | gain (dB) | s/MP |")
    print("|---|---|---|---|---|")
    for kind, n, psnr, spmp in rows:
        print(f"| {kind} | {n} | {psnr:.2f} | {psnr - base[kind]:+.2f} | {spmp:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
