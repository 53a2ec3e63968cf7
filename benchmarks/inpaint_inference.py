"""How the inpainter's network is best run, by measure on training photos (never the test sets):
the smooth fill's hole PSNR and time per mask kind for each tile size (`--tile`; 0: each crop
whole, the default) and self-ensemble (`--ensemble N`: the network on N flipped copies of each
tile, the fills averaged).

    python benchmarks/inpaint_inference.py [--images 12] [--first 10] [--model NAME|FILE]
        [--tiles 0,256] [--ensembles 1,2,4]

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
from common import ROOT, list_images, md_table, read_image  # noqa: E402

KINDS = ("thin", "thick", "box")


def hole_psnr(out: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> float:
    err = out[mask].astype(np.float64) - clean[mask]
    return float(10 * np.log10(255 ** 2 / np.mean(err ** 2)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--first", type=int, default=10)
    ap.add_argument("--model", default=None)
    ap.add_argument("--tiles", default="0")
    ap.add_argument("--ensembles", default="1,2,4,8")
    ap.add_argument("--kinds", default=",".join(KINDS))
    args = ap.parse_args(argv)
    from aetool.engine import EngineOptions
    from aetool.maskgen import protocol_mask
    from aetool.tasks import inpaint as task

    paths = list_images(args.data / "train" / "bsd200")[args.first:args.first + args.images]
    images = [read_image(p, "RGB") for p in paths]
    settings = [(int(t), int(n)) for t in args.tiles.split(",") for n in args.ensembles.split(",")]
    rows = []
    for kind in args.kinds.split(","):
        for tile, n in settings:
            inp = task.Inpainter(args.model, EngineOptions(tile=tile, ensemble=n), fill="smooth")
            inp.model  # loaded before the clock starts
            scores, seconds, mp = [], 0.0, 0.0
            for i, clean in enumerate(images, start=args.first):
                mask = protocol_mask(kind, *clean.shape[:2], 1000 + i)
                x = clean.astype(np.float32) / 255
                x[mask] = 0
                t = time.perf_counter()
                out, _ = inp(x, mask)
                seconds += time.perf_counter() - t
                mp += clean.shape[0] * clean.shape[1] / 1e6
                scores.append(hole_psnr(np.round(out * 255), clean, mask))
            rows.append((kind, tile, n, float(np.mean(scores)), seconds / mp))
            print(f"{kind} tile {tile} ensemble {n}: hole PSNR {rows[-1][3]:.2f} dB, {rows[-1][4]:.2f} s/MP",
                  file=sys.stderr, flush=True)
    base = {kind: psnr for kind, w, n, psnr, _ in rows if (w, n) == settings[0]}
    print(f"Smooth fill of {args.model or 'the default model'}, {len(images)} bsd200 training photos (files "
          f"{args.first}-{args.first + len(images) - 1} by name), protocol masks 1000 + i, in process:\n")
    print(md_table(["kind", "--tile (0: whole crops)", "--ensemble", "hole PSNR (dB)", "gain (dB)", "s/MP"],
                   [[kind, tile, n, f"{psnr:.2f}", f"{psnr - base[kind]:+.2f}", f"{spmp:.2f}"]
                    for kind, tile, n, psnr, spmp in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
