"""Peak host memory of the commands whose images are largest, as a user runs them, against the
memory a plain Pillow operation needs for an output of the same size (the floor any tool that
decodes and encodes with Pillow pays).

Jobs (--jobs, default both):

- upscale: `aetool upscale big.jpg -o big-x4.png --scale 4 --max-pixels 400` of a 6000x4000 photo
  (24 MP in, 384 MP out; --upscale-size WxH for a quicker check), beside Pillow's bicubic x4 of
  the same file to PNG;
- denoise: `aetool denoise huge.png -o out.png --sigma 15 --max-pixels 110` of a 10000x10000 photo
  with Gaussian noise (100 MP; --denoise-size), beside Pillow's 3x3 median filter of the same file.

Each row: wall time, peak resident memory of the command's process (ru_maxrss, through the bare
launcher of benchmarks/large_photo.py, so this script's own memory is not counted), and that peak
in bytes per output pixel; the model's weights are listed once (their file size). Outputs are PNG
(the format whose encoder Pillow gives no strip-by-strip path for; see docs/scale.md).

    python benchmarks/peak_memory.py                                   # both, full size (~15 min, 2 cores)
    python benchmarks/peak_memory.py --upscale-size 1500x1000 --denoise-size 2500x2500  # a quick check
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from large_photo import photo, run_measured  # noqa: E402

AETOOL = [sys.executable, "-m", "aetool"]

PILLOW_UPSCALE = ("import sys; from PIL import Image; Image.MAX_IMAGE_PIXELS = None; im = Image.open(sys.argv[1]); "
                  "im.resize((im.width * 4, im.height * 4), Image.BICUBIC).save(sys.argv[2], compress_level=6)")
PILLOW_MEDIAN = ("import sys; from PIL import Image, ImageFilter; Image.MAX_IMAGE_PIXELS = None; "
                 "Image.open(sys.argv[1]).filter(ImageFilter.MedianFilter(3)).save(sys.argv[2], compress_level=6)")


def size_arg(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def row(job: str, method: str, cmd: list[str], out_pixels: int) -> dict:
    r = run_measured(cmd)
    r.pop("stdout", None)
    r.update(job=job, method=method, output_mp=round(out_pixels / 1e6, 1))
    if "peak_mib" in r:
        r["bytes_per_output_pixel"] = round(r["peak_mib"] * 2**20 / out_pixels, 2)
    print(json.dumps(r), flush=True)
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", default="upscale,denoise")
    ap.add_argument("--upscale-size", type=size_arg, default=(6000, 4000))
    ap.add_argument("--denoise-size", type=size_arg, default=(10000, 10000))
    ap.add_argument("--out-json", type=Path, default=None)
    args = ap.parse_args(argv)
    from aetool.noise import add_gaussian_noise
    from aetool.registry import default_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "upscale" in args.jobs:
            w, h = args.upscale_size
            src = work / "big.jpg"
            Image.fromarray(photo(w, h)).save(src, quality=92)
            out_px = 16 * w * h
            mp = out_px / 1e6 * 1.05
            rows.append(row("upscale x4", "aetool", AETOOL + ["upscale", str(src), "-o", str(work / "x4.png"),
                                                               "--scale", "4", "--max-pixels", f"{mp:.0f}"], out_px))
            rows.append(row("upscale x4", "Pillow bicubic", [sys.executable, "-c", PILLOW_UPSCALE, str(src),
                                                               str(work / "bicubic.png")], out_px))
            card = default_model("upscale", 3, 4)
            rows[-2]["model"] = card.name
            rows[-2]["model_bytes"] = (Path(card.path).stat().st_size if getattr(card, "path", None) else None)
            for f in work.glob("*.png"):
                f.unlink()
        if "denoise" in args.jobs:
            w, h = args.denoise_size
            src = work / "huge.png"
            rng = np.random.default_rng(0)
            img = np.empty((h, w, 3), np.uint8)
            tile = photo(2000, 2000)  # the photo repeated: decoding and encoding cost what a real one does
            for y in range(0, h, 2000):
                for x in range(0, w, 2000):
                    part = tile[:min(2000, h - y), :min(2000, w - x)]
                    img[y:y + part.shape[0], x:x + part.shape[1]] = add_gaussian_noise(part, 15, rng)
            Image.fromarray(img).save(src, compress_level=1)
            del img
            out_px = w * h
            mp = out_px / 1e6 * 1.1
            rows.append(row("denoise", "aetool", AETOOL + ["denoise", str(src), "-o", str(work / "dn.png"),
                                                            "--sigma", "15", "--max-pixels", f"{mp:.0f}"], out_px))
            rows.append(row("denoise", "Pillow median 3x3", [sys.executable, "-c", PILLOW_MEDIAN, str(src),
                                                             str(work / "median.png")], out_px))
    result = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "rows": rows}
    if args.out_json:
        args.out_json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
