"""What blind denoising pays for its noise estimate: `aetool.noise.estimate_noise` against the
shipped default Gaussian denoiser's model time on the same image, and the estimate's accuracy.

    python benchmarks/noise_speed.py [--threads N] [--images 3] [--sizes 64x64,...] [--sigmas 5,15,25,50]
    git show COMMIT:aetool/noise.py > /tmp/noise_old.py
    python benchmarks/noise_speed.py --baseline /tmp/noise_old.py   # an older estimator, same run

Images: training photos only (DATA/train/bsd200, colour, 481x321; never the test sets), --images of
them spread over the set. Sizes that fit in a photo are centre crops of it; larger ones are mosaics
of whole photos (consecutive ones from that photo on, portrait ones turned), cropped to size. Grey
images are the same pictures converted to L. Without the data folder, synthetic pictures (smooth
shapes, edges and texture) are used instead, and the output says so.

Per image and sigma the protocol noise (`add_gaussian_noise`, a fixed seed per image and sigma) is
added and the estimate is timed on the uint8 pixels with data_range=255, as the denoiser calls
it for 8-bit files since 2b528a0 (before: on float32 pixels in [0, 1], data_range=1.0; the same
estimates) (median of repeated runs, at least --min-time seconds of them; wall time, or with
--clock cpu this process's CPU time). The model is timed as the command line runs it told the
sigma, so that no estimate is included: `Denoiser(None, EngineOptions(), "gaussian")(pixels,
sigma=25, bits=8)` on the uint8 pixels (what `Denoiser.picture` does for an 8-bit file), after a warm-up,
once per size and kind (its cost does not depend on sigma or content; one run when it takes 2 s
or more). Printed: per size, kind and
sigma the estimate's median time (over the images), the model time, their ratio, and the mean and
max |relative error| of the estimate (estimate / sigma - 1; the clean photos' own noise counts as
error); then the worst ratio per size and the accuracy per sigma. --baseline FILE (a copy of an
older aetool/noise.py) times and scores that file's `estimate_noise` on the same images in the same
run, interleaved, in extra columns. --out-json keeps every number.
Timings depend on the load of the machine (printed at start and end): run it on a quiet one to compare,
or with --clock cpu --threads 1 and OPENBLAS_NUM_THREADS=1 when others share it (wall time with idle-spinning
threads is then meaningless).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, list_images, machine, machine_line, md_table  # noqa: E402

SIZES = "64x64,128x128,256x256,512x512,1024x1536,2000x3000"  # HxW; the last is 6 MP


def parse_size(text: str) -> tuple[int, int]:
    h, _, w = text.lower().partition("x")
    return int(h), int(w)


CLOCK = time.perf_counter  # --clock cpu: time.process_time


def timed(fn, min_time: float, min_runs: int = 3, max_runs: int = 25) -> float:
    """Median time of fn() on CLOCK: at least min_runs runs, more until min_time seconds have passed."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < min_time):
        t0 = CLOCK()
        fn()
        times.append(CLOCK() - t0)
    return statistics.median(times)


def landscape(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        a = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return a if a.shape[1] >= a.shape[0] else np.ascontiguousarray(a.transpose(1, 0, 2))


def photo_scene(photos: list[Path], first: int, h: int, w: int) -> np.ndarray:
    """A centre crop of photo `first` when (h, w) fits in it, else a mosaic of whole photos from
    `first` on (row by row), cropped to h x w."""
    a = landscape(photos[first % len(photos)])
    ph, pw = a.shape[:2]
    if h <= ph and w <= pw:
        y, x = (ph - h) // 2, (pw - w) // 2
        return a[y:y + h, x:x + w].copy()
    rows, cols = -(-h // ph), -(-w // pw)
    out = np.empty((rows * ph, cols * pw, 3), np.uint8)
    k = first
    for r in range(rows):
        for c in range(cols):
            tile = landscape(photos[k % len(photos)])[:ph, :pw]
            out[r * ph:r * ph + tile.shape[0], c * pw:c * pw + tile.shape[1]] = tile
            k += 1
    return out[:h, :w].copy()


def synthetic_scene(seed: int, h: int, w: int) -> np.ndarray:
    """Smooth gradients, flat shapes with sharp edges, and a band of smooth random texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([60 + 120 * x + 40 * y, 90 + 80 * y, 200 - 90 * x], axis=-1)
    for _ in range(12):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.03, 0.2) * min(h, w)
        colour = rng.uniform(0, 255, 3)
        if rng.random() < 0.5:
            img[(y * max(h, w) - cy) ** 2 + (x * max(h, w) - cx) ** 2 < r * r] = colour
        else:
            img[int(cy):int(cy + r), int(cx):int(cx + 1.5 * r)] = colour
    tex = rng.normal(0, 1, (h, w))
    for axis in (0, 1):  # a cheap blur: mean of 5 shifted copies
        tex = sum(np.roll(tex, s, axis=axis) for s in range(-2, 3)) / 5
    band = slice(h // 2, h // 2 + max(h // 4, 1))
    img[band] += (12 * tex / tex.std())[band, :, None]
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def load_estimator(path: Path):
    """`estimate_noise` of a standalone copy of aetool/noise.py (it imports numpy and math only)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("noise_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.estimate_noise


def accuracy_table(records: list[dict], sigmas: list[float], names: list[str]) -> str:
    rows = []
    for sigma in sigmas + [None]:
        row = ["all" if sigma is None else f"{sigma:g}"]
        for name in names:
            errs = [abs(e) for r in records if sigma in (None, r["sigma"]) for e in r[name]["rel_errors"]]
            row += [f"{100 * np.mean(errs):.2f}", f"{100 * max(errs):.2f}"]
        rows.append(row + [str(len(errs))])
    header = ["sigma"] + [f"{n} {what}" for n in names for what in ("mean |err| %", "max |err| %")]
    return md_table(header + ["estimates"], rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--images", type=int, default=3, help="photos per size and kind")
    ap.add_argument("--sizes", default=SIZES, help="HxW list")
    ap.add_argument("--sigmas", default="5,15,25,50")
    ap.add_argument("--kinds", default="colour,grey")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds of repeated runs per timing")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: CPU time of this process (all its threads), steadier than wall time on a "
                         "shared machine; use it with --threads 1 and OPENBLAS_NUM_THREADS=1 (idle threads spin)")
    ap.add_argument("--no-model", action="store_true", help="time the estimate only (no model column)")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="a copy of an older aetool/noise.py whose estimate_noise is measured beside")
    ap.add_argument("--out-json", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from aetool.engine import EngineOptions
    from aetool.noise import add_gaussian_noise, estimate_noise
    from aetool.tasks.denoise import Denoiser

    global CLOCK
    if args.clock == "cpu":
        CLOCK = time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
    estimators = {"new": estimate_noise}
    if args.baseline:
        estimators["old"] = load_estimator(args.baseline)
    names = list(estimators)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    sigmas = [float(s) for s in args.sigmas.split(",") if s.strip()]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    folder = args.data / "train" / "bsd200"
    photos = list_images(folder) if folder.is_dir() else []
    source = f"{folder} ({len(photos)} photos)" if photos else "synthetic pictures (no training photos found)"
    picks = [i * len(photos) // args.images for i in range(args.images)] if photos else list(range(args.images))
    m = machine()
    print(f"# noise estimate vs model; {machine_line(m)}; torch threads {torch.get_num_threads()}; "
          f"{args.clock} time")
    print(f"# images: {source}, {args.images} per size and kind"
          + (f"; old = {args.baseline}" if args.baseline else ""))

    den = None if args.no_model else Denoiser(None, EngineOptions(), "gaussian")
    header = ["size (HxW)", "kind", "sigma", "model s"]
    for n in names:
        header += [f"{n} s", f"{n} ratio", f"{n} mean |err| %", f"{n} max |err| %"]
    rows, records = [], []
    print("\t".join(header))
    for h, w in sizes:
        for kind in kinds:
            cleans = []
            for i in picks:
                rgb = photo_scene(photos, i, h, w) if photos else synthetic_scene(i, h, w)
                cleans.append(rgb if kind == "colour" else np.asarray(Image.fromarray(rgb).convert("L"))[..., None])
            model_s = None
            if den is not None:
                pixels = np.ascontiguousarray(cleans[0])
                den(pixels[:32, :32].copy(), sigma=25, bits=8)  # warm-up: model loading, first-call costs
                single = CLOCK()
                den(pixels, sigma=25, bits=8)
                single = CLOCK() - single
                # A run of 2 s or more is measurement enough (6 MP takes tens of seconds on a CPU).
                model_s = single if single >= 2 else timed(lambda: den(pixels, sigma=25, bits=8), args.min_time)
            for sigma in sigmas:
                rec = {"h": h, "w": w, "kind": kind, "sigma": sigma, "model_s": model_s}
                per = {n: {"estimates": [], "seconds": [], "rel_errors": []} for n in names}
                for j, clean in enumerate(cleans):
                    noisy = add_gaussian_noise(clean, sigma, np.random.default_rng(1000 * j + int(sigma)))
                    pixels = np.ascontiguousarray(noisy)
                    for n in names:  # interleaved, so that both see the same load
                        fn = estimators[n]
                        est = fn(pixels, data_range=255.0)
                        per[n]["estimates"].append(est)
                        per[n]["seconds"].append(timed(lambda: fn(pixels, data_range=255.0), args.min_time))
                        per[n]["rel_errors"].append(est / sigma - 1)
                row = [f"{h}x{w}", kind, f"{sigma:g}", "-" if model_s is None else f"{model_s:.4f}"]
                for n in names:
                    est_s = statistics.median(per[n]["seconds"])
                    per[n]["estimate_s"] = est_s
                    per[n]["ratio"] = est_s / model_s if model_s else None
                    abs_err = [abs(e) for e in per[n]["rel_errors"]]
                    row += [f"{est_s:.4f}", "-" if model_s is None else f"{est_s / model_s:.3f}",
                            f"{100 * np.mean(abs_err):.2f}", f"{100 * max(abs_err):.2f}"]
                rec.update(per)
                records.append(rec)
                rows.append(row)
                print("\t".join(row), flush=True)

    print()
    print(md_table(header, rows))
    if den is not None:
        print("\nWorst ratio (estimate / model) per size, over kinds and sigmas:")
        worst = []
        for h, w in sizes:
            mine = [r for r in records if (r["h"], r["w"]) == (h, w)]
            row = [f"{h}x{w}"]
            for n in names:
                top = max(mine, key=lambda r: r[n]["ratio"])
                row += [f"{top[n]['ratio']:.3f}", f"{top['kind']}, sigma {top['sigma']:g}"]
            worst.append(row)
        print(md_table(["size"] + [f"{n} {what}" for n in names for what in ("worst ratio", "at")], worst))
    print("\nAccuracy per sigma (all sizes, kinds and images):")
    print(accuracy_table(records, sigmas, names))
    if len(names) > 1:
        diff = max(abs(a / b - 1) if b else abs(a) for r in records
                   for a, b in zip(r["new"]["estimates"], r["old"]["estimates"]))
        print(f"\nLargest |new / old - 1| over all estimates: {diff:.2e}")
    load_end = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    if load_end:
        print(f"\nLoad average at end: {load_end[0]:.2f} (1 min), {load_end[1]:.2f} (5 min)")
    if args.out_json:
        args.out_json.parent.mkdir(parents=True, exist_ok=True)
        args.out_json.write_text(json.dumps({"machine": m, "load_average_end": load_end,
                                             "torch_threads": torch.get_num_threads(),
                                             "clock": args.clock, "images": source, "baseline": str(args.baseline or ""),
                                             "rows": records}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
