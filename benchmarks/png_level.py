"""What Pillow's PNG compression level costs on photos: bytes and encoding CPU time of zlib levels
1, 3, 6 and 9 against level 6 (Pillow's default), on training photos (never test images) as they
are and after `aetool denoise` (smoother: what the commands write).

    python benchmarks/png_level.py                       # 24 photos of ../shared/data/train/bsd200
    python benchmarks/png_level.py --data DIR --images 12
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

LEVELS = (1, 3, 6, 9)


def cost(im: Image.Image, level: int) -> tuple[int, float]:
    buf = io.BytesIO()
    t0 = time.thread_time()
    im.save(buf, "PNG", compress_level=level)
    return len(buf.getvalue()), time.thread_time() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / "../shared/data/train/bsd200")
    ap.add_argument("--images", type=int, default=24)
    args = ap.parse_args(argv)
    from aetool import denoise

    files = sorted(p for p in args.data.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:args.images]
    totals = {kind: {lv: [0, 0.0] for lv in LEVELS} for kind in ("photo", "denoised")}
    for f in files:
        photo = Image.open(f).convert("RGB")
        for kind, im in (("photo", photo), ("denoised", denoise(photo, sigma=5))):
            for lv in LEVELS:
                size, cpu = cost(im, lv)
                totals[kind][lv][0] += size
                totals[kind][lv][1] += cpu
    mp = sum(np.prod(Image.open(f).size) for f in files) / 1e6
    print(f"{len(files)} photos of {args.data} ({mp:.2f} MP), Pillow {Image.__version__}")
    print("| images | level | bytes vs level 6 | encode CPU s/MP | CPU vs level 6 |")
    print("| --- | --- | --- | --- | --- |")
    for kind, by_level in totals.items():
        b6, c6 = by_level[6]
        for lv, (b, c) in by_level.items():
            print(f"| {kind} | {lv} | {b / b6:.3f} | {c / mp:.3f} | {c / c6:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
