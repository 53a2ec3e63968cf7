"""How closely each available bicubic downscaler reproduces the LR images of the super-resolution
test sets, which were made with MATLAB's imresize (bicubic, antialiased) from the HR images
(docs/protocol.md, "Super-resolution"). Training inputs should be made the same way; this measures which
downscaler does that.

For every HR image of set5/set14 x2, x3, x4 and bsd100 x4 (DATA/test/sr/<set>/x<s>/hr), each method
downscales it by 1/s to uint8, and the result is compared with the provided LR file:

* aetool.resize: `aetool.resize.downscale_uint8` (MATLAB's algorithm on the uint8 image: rounded
  to uint8 after each dimension, as MATLAB does for uint8 input);
* aetool.resize, one rounding: `aetool.resize.imresize` on the float image, rounded once at the end
  (what MATLAB gives for a double input);
* Pillow: `Image.resize(size, Image.BICUBIC, reducing_gap=None)` on the uint8 image;
* torch: `F.interpolate(mode="bicubic", antialias=True, align_corners=False)` on float64, rounded
  and clipped to uint8.

Reported per method and scale: PSNR (dB, RGB, range 255) of the pooled squared error over all
images of that scale against the provided LR ("inf" when every pixel matches), the largest absolute
difference, and the fractions of pixel values that are identical and within 1 (in the --out-json file
a PSNR of null means identical). The markdown section
between <!-- sr-downscale:begin --> and <!-- sr-downscale:end --> of --out-md is replaced.

    python benchmarks/sr_downscale_match.py --out-md /tmp/sr-downscale.md
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from aetool.resize import downscale_uint8, imresize

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, list_images, machine, machine_line, md_table, write_section  # noqa: E402

SETS = {"set5": (2, 3, 4), "set14": (2, 3, 4), "bsd100": (4,)}


def read_native(path: Path) -> np.ndarray:
    """uint8 array in the file's own mode: (H, W) for grey files, (H, W, 3) for the others."""
    with Image.open(path) as im:
        return np.asarray(im.convert("L" if im.mode in ("L", "I;16", "I", "1") else "RGB"), dtype=np.uint8)


def by_aetool(hr: np.ndarray, s: int) -> np.ndarray:
    return downscale_uint8(hr, s)


def by_aetool_float(hr: np.ndarray, s: int) -> np.ndarray:
    return np.clip(np.floor(imresize(hr, 1.0 / s) + 0.5), 0, 255).astype(np.uint8)


def by_pillow(hr: np.ndarray, s: int) -> np.ndarray:
    h, w = hr.shape[:2]
    return np.asarray(Image.fromarray(hr).resize((w // s, h // s), Image.BICUBIC, reducing_gap=None))


def by_torch(hr: np.ndarray, s: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(hr, dtype=np.float64))
    x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]
    h, w = hr.shape[:2]
    y = F.interpolate(x, size=(h // s, w // s), mode="bicubic", antialias=True, align_corners=False)
    y = y[0, 0] if hr.ndim == 2 else y[0].permute(1, 2, 0)
    return np.clip(np.round(y.numpy()), 0, 255).astype(np.uint8)


METHODS = {
    "aetool.resize (downscale_uint8)": by_aetool,
    "aetool.resize, float, one rounding": by_aetool_float,
    "Pillow BICUBIC": by_pillow,
    "torch bicubic antialias": by_torch,
}


def main(argv=None) -> int:
    csv = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                    help="data folder (default: ../shared/data from the project root)")
    ap.add_argument("--sets", type=csv, default=list(SETS), help="subset of set5,set14,bsd100")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images of each folder")
    ap.add_argument("--out-md", type=Path, default=ROOT / "docs" / "benchmarks.md",
                    help="markdown file whose sr-downscale section is replaced (created if missing)")
    ap.add_argument("--out-json", type=Path, default=None, help="also write the numbers as JSON here")
    args = ap.parse_args(argv)

    # [sum of squared errors, values, values identical, values within 1, max |diff|, images]
    stats: dict[int, dict[str, list]] = {}  # per scale and method
    per_set: dict[str, dict[str, list]] = {}  # per "set xS" and method
    for name in args.sets:
        for s in SETS[name]:
            folder = args.data / "test" / "sr" / name / f"x{s}"
            paths = list_images(folder / "hr")[:args.limit]
            if not paths:
                raise SystemExit(f"no images in {folder / 'hr'}")
            pairs = [(p.name, read_native(p), read_native(folder / "lr" / p.name)) for p in paths]
            for method, fn in METHODS.items():
                accs = (stats.setdefault(s, {}).setdefault(method, [0.0, 0, 0, 0, 0, 0]),
                        per_set.setdefault(f"{name} x{s}", {}).setdefault(method, [0.0, 0, 0, 0, 0, 0]))
                for fname, hr, lr in pairs:
                    out = fn(hr, s)
                    if out.shape != lr.shape:
                        raise SystemExit(f"{method}: {fname} x{s} gives {out.shape}, the LR file is {lr.shape}")
                    d = out.astype(np.float64) - lr
                    ad = np.abs(d)
                    for a in accs:
                        a[0] += float(np.sum(d * d))
                        a[1] += d.size
                        a[2] += int(np.sum(ad == 0))
                        a[3] += int(np.sum(ad <= 1))
                        a[4] = max(a[4], int(ad.max()))
                        a[5] += 1
            print(f"{name} x{s}: {len(paths)} images", file=sys.stderr, flush=True)

    def db(sse, n):
        return float("inf") if sse == 0 else 10 * np.log10(255.0 ** 2 / (sse / n))

    rows, out_json = [], {"scales": {}, "per_set": {}}
    for s in sorted(stats):
        for method, (sse, n, same, near, mx, imgs) in stats[s].items():
            p = db(sse, n)
            rows.append([f"x{s}", method, imgs, "inf (identical)" if p == float("inf") else f"{p:.2f}", mx,
                         f"{100 * same / n:.3f}", f"{100 * near / n:.3f}"])
            out_json["scales"].setdefault(f"x{s}", {})[method] = {
                "images": imgs, "psnr": None if p == float("inf") else p, "max_abs_diff": mx,
                "identical": same / n, "within_1": near / n}
    set_rows = []
    for key, cells in per_set.items():
        row = [key]
        for method in METHODS:
            sse, n, same, _, mx, _ = cells[method]
            p = db(sse, n)
            row.append(f"{'inf' if p == float('inf') else f'{p:.2f}'} / {mx} / {100 * same / n:.2f}")
            out_json["per_set"].setdefault(key, {})[method] = {
                "psnr": None if p == float("inf") else p, "max_abs_diff": mx, "identical": same / n}
        set_rows.append(row)

    info = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "command": shlex.join([sys.executable] + (sys.argv if argv is None else [__file__, *argv]))}
    subset = f" **Subset: first {args.limit} images per folder (--limit).**" if args.limit else ""
    text = "\n".join([
        "## Super-resolution: which downscaler reproduces the test sets' LR images", "",
        f"Measured {info['date']} on {machine_line(info['machine'])}.  ",
        f"Command: `{info['command']}`.{subset}", "",
        "Each HR image of DATA/test/sr (set5, set14 x2/x3/x4, bsd100 x4) downscaled by 1/scale to uint8 "
        "and compared with the provided LR file (made with MATLAB imresize, bicubic). PSNR (dB, RGB, "
        "range 255) of the squared error pooled over all images of that scale; max abs diff = largest absolute "
        "difference; identical / within 1 = share of pixel values (%).", "",
        md_table(["scale", "method", "images", "PSNR vs LR (dB)", "max abs diff", "identical (%)", "within 1 (%)"],
                 rows), "",
        "Per set (PSNR dB / max abs diff / identical %):", "",
        md_table(["set"] + list(METHODS), set_rows),
    ]) + "\n"
    write_section(args.out_md, "sr-downscale", text)
    if args.out_json:
        args.out_json.parent.mkdir(parents=True, exist_ok=True)
        args.out_json.write_text(json.dumps({**info, **out_json}, indent=1) + "\n")
    print(text)
    print(f"wrote {args.out_md}" + (f" and {args.out_json}" if args.out_json else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
