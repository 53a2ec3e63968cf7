"""Does entropy coding of the progressive codec's bits pay, and with which context?

    python benchmarks/progressive_contexts.py [--model compress-progressive] [--data DIR ...] [--limit N]

The recurrent codec's binariser emits a fixed number of +-1 bits per iteration. This script codes
images' bits (training-set photos: a design choice is never made on a test set) and reports, per
candidate probability model, the ideal code length in bits per raw bit (the empirical conditional
entropy, with the statistics fitted on half of the images and measured on the other half), next to
the real size of the range-coded files the shipped tables give:

- raw: 1 bit per bit (no entropy coding);
- iteration x channel: a probability per iteration and code channel;
- + previous bit: ... and the same bit of the previous iteration (the shipped choice, 3 contexts);
- + two previous bits: ... and the same bit of the two previous iterations;
- + left and up: ... and, in addition to the previous bit, the left and upper neighbours in the same
  iteration (a serial context: decoding could no longer be vectorised; shown to size what it leaves).

Prints a markdown table; writes nothing else.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def entropy_bits(fit: dict, test: dict) -> float:
    """Bits to code the test counts with probabilities from the fit counts (add-half smoothing)."""
    total = 0.0
    for key, (n0, n1) in test.items():
        f0, f1 = fit.get(key, (0, 0))
        p1 = (f1 + 0.5) / (f0 + f1 + 1.0)
        total -= n1 * np.log2(p1) + n0 * np.log2(1 - p1)
    return total


def add_counts(counts: dict, keys: np.ndarray, ones: np.ndarray) -> None:
    uniq, inverse = np.unique(keys, return_inverse=True)
    n1 = np.bincount(inverse, weights=ones, minlength=len(uniq))
    n = np.bincount(inverse, minlength=len(uniq))
    for u, a, b in zip(uniq.tolist(), n1.tolist(), n.tolist()):
        c0, c1 = counts.get(u, (0, 0))
        counts[u] = (c0 + b - a, c1 + a)


def contexts(codes: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Per candidate model, a key per bit of every iteration (ints)."""
    out = {"iteration x channel": [], "+ previous bit": [], "+ two previous bits": [], "+ left and up": []}
    for k, b in enumerate(codes):
        bits, h, w = b.shape
        base = (k * bits + np.arange(bits)[:, None, None]) * np.ones((1, h, w), np.int64)
        prev = codes[k - 1].astype(np.int64) + 1 if k else np.zeros_like(base)
        prev2 = codes[k - 2].astype(np.int64) + 1 if k > 1 else np.zeros_like(base)
        left = np.pad(b, ((0, 0), (0, 0), (1, 0)))[:, :, :-1].astype(np.int64)
        up = np.pad(b, ((0, 0), (1, 0), (0, 0)))[:, :-1, :].astype(np.int64)
        out["iteration x channel"].append(base)
        out["+ previous bit"].append(base * 3 + prev)
        out["+ two previous bits"].append((base * 3 + prev) * 3 + prev2)
        out["+ left and up"].append(((base * 3 + prev) * 2 + left) * 2 + up)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="compress-progressive")
    ap.add_argument("--data", type=Path, action="append",
                    default=None, help="image folders (default: ../shared/data/train/bsd200)")
    ap.add_argument("--limit", type=int, default=24, help="images (default 24)")
    args = ap.parse_args(argv)
    import torch
    from PIL import Image

    from aetool.container import unpack
    from aetool.tasks.progressive import ProgressiveCodec

    torch.set_num_threads(1)
    folders = args.data or [ROOT.parent / "shared" / "data" / "train" / "bsd200"]
    files = sorted(p for d in folders for p in d.iterdir() if p.suffix.lower() in (".png", ".jpg", ".bmp"))
    files = files[::max(1, len(files) // args.limit)][:args.limit]
    codec = ProgressiveCodec(args.model)
    started = time.time()
    per_image, real_bytes, raw_bits = [], 0, 0
    for path in files:
        pixels = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255
        codes, _ = codec.encode_all(pixels)
        per_image.append(contexts(codes))
        e = unpack(codec.encode_to_target(pixels)[0])
        real_bytes += sum(len(it) for it in e.iterations)
        raw_bits += sum(c.size for c in codes)
        per_image[-1]["_ones"] = [c.astype(np.float64) for c in codes]
    half = len(per_image) // 2
    rows = [("raw (no entropy coding)", 1.0)]
    for name in ("iteration x channel", "+ previous bit", "+ two previous bits", "+ left and up"):
        fit, test = {}, {}
        for i, d in enumerate(per_image):
            for keys, ones in zip(d[name], d["_ones"]):
                add_counts(fit if i < half else test, keys.ravel(), ones.ravel())
        test_bits = sum(n0 + n1 for n0, n1 in test.values())
        rows.append((name, entropy_bits(fit, test) / test_bits))
    print(f"model {codec.card.name}, {len(files)} images of {', '.join(str(f) for f in folders)} "
          f"(fit on {half}, measured on {len(files) - half}); {time.time() - started:.0f} s\n")
    print("| probability model | bits per raw bit | saving |")
    print("|---|---|---|")
    for name, v in rows:
        print(f"| {name} | {v:.4f} | {100 * (1 - v):.1f} % |")
    print(f"\nthe shipped tables, real range-coded iterations (all images, every iteration): "
          f"{8 * real_bytes / raw_bits:.4f} bits per raw bit ({100 * (1 - 8 * real_bytes / raw_bits):.1f} % saved)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
