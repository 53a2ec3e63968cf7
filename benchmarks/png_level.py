"""What a PNG encoder and its compression level cost on photos: bytes and encoding CPU time of
Pillow's zlib levels 1, 3, 6 and 9 and of aetool's own writer (aetool.pngstream: "Up" filter on
every row, strip by strip, deflated as aetool writes it: ISA-L at pngstream.DEFLATE_LEVEL) against
Pillow's level 6 (its default), on training photos (never test images) as they are, after `aetool denoise`
(smoother: what the commands write) and enlarged x2 by Pillow's bicubic (as smooth as an
upscale's output).

    python benchmarks/png_level.py                       # 24 photos of ../shared/data/train/bsd200
    python benchmarks/png_level.py --data DIR --images 12
    python benchmarks/png_level.py --compressors zlib-1,isal-3   # aetool's writer with other compressors
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
# aetool's writer with another zlib-stream compressor (--compressors): name -> (module, level)
COMPRESSORS = {"zlib-1": ("zlib", 1), "isal-0": ("isal.isal_zlib", 0), "isal-1": ("isal.isal_zlib", 1), "isal-2": ("isal.isal_zlib", 2), "isal-3": ("isal.isal_zlib", 3),
               "zlib-ng-1": ("zlib_ng.zlib_ng", 1), "zlib-ng-2": ("zlib_ng.zlib_ng", 2)}


def cost(im: Image.Image, level: int | str) -> tuple[int, float]:
    """Bytes and encoding CPU seconds: Pillow at zlib `level`, or "aetool" (its writer and level)."""
    buf = io.BytesIO()
    if level == "aetool":
        from aetool.pngstream import write_png

        arr = np.asarray(im)
        t0 = time.thread_time()
        write_png(buf, arr)
    elif level in COMPRESSORS:
        import importlib

        from aetool.pngstream import write_png

        module, lv = COMPRESSORS[level]
        make = importlib.import_module(module).compressobj
        arr = np.asarray(im)
        t0 = time.thread_time()
        write_png(buf, arr, compressobj=lambda: make(lv))
    else:
        t0 = time.thread_time()
        im.save(buf, "PNG", compress_level=level)
    return len(buf.getvalue()), time.thread_time() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / "../shared/data/train/bsd200")
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--compressors", default="",
                    help=f"also aetool's writer with these compressors, comma-separated: {', '.join(COMPRESSORS)} "
                         "(pip install isal zlib-ng)")
    args = ap.parse_args(argv)
    extra = tuple(c for c in args.compressors.split(",") if c)
    for c in extra:
        if c not in COMPRESSORS:
            ap.error(f"unknown compressor {c!r}: one of {', '.join(COMPRESSORS)}")
    from aetool import denoise
    from aetool.pngstream import DEFLATE_LEVEL

    files = sorted(p for p in args.data.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:args.images]
    kinds = ("photo", "denoised", "enlarged x2")
    totals = {kind: {lv: [0, 0.0] for lv in LEVELS + ("aetool",) + extra} for kind in kinds}
    mp = {kind: 0.0 for kind in kinds}
    for f in files:
        photo = Image.open(f).convert("RGB")
        enlarged = photo.resize((photo.width * 2, photo.height * 2), Image.BICUBIC)
        for kind, im in zip(kinds, (photo, denoise(photo, sigma=5), enlarged)):
            mp[kind] += im.width * im.height / 1e6
            for lv in totals[kind]:
                size, cpu = cost(im, lv)
                totals[kind][lv][0] += size
                totals[kind][lv][1] += cpu
    print(f"{len(files)} photos of {args.data} ({mp['photo']:.2f} MP), Pillow {Image.__version__}")
    print("| images | encoder, level | bytes vs Pillow 6 | encode CPU s/MP | CPU vs Pillow 6 |")
    print("| --- | --- | --- | --- | --- |")
    for kind, by_level in totals.items():
        b6, c6 = by_level[6]
        for lv, (b, c) in by_level.items():
            name = (f"aetool writer (Up), ISA-L level {DEFLATE_LEVEL} (shipped)" if lv == "aetool"
                    else f"aetool writer (Up), {lv}" if lv in COMPRESSORS else f"Pillow, level {lv}")
            print(f"| {kind} | {name} | {b / b6:.3f} | {c / mp[kind]:.3f} | {c / c6:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
