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
in bytes per output pixel; the model's weights are listed once (their file size). The same command
on a 64x64 image gives the fixed cost of Python, torch and the model's weights, and on one tile's
input (512x512 for x4, 1024x1024 for denoise: the engine's CPU tiles) that plus one tile's
activations; the big run's peak above each, per output pixel, is `bytes_per_output_pixel_above_tiny`
and `..._above_tile` (the two readings of the issue's "4 bytes per output pixel plus the model"). Outputs are PNG
(the format whose encoder Pillow gives no strip-by-strip path for; see docs/scale.md).

    python benchmarks/peak_memory.py                                   # both, full size (~15 min, 2 cores)
    python benchmarks/peak_memory.py --upscale-size 1500x1000 --denoise-size 2500x2500  # a quick check
"""
from __future__ import annotations

import argparse
import json
import math
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


# The engine's CPU tile for each job (Runner.default_tile: 512 for an enlargement, 1024 otherwise):
# an input of that size runs as one tile, so its peak holds the model and one tile's activations.
TILE = {"upscale": 512, "denoise": 1024}


def fixed(big: dict, small: dict, kind: str = "tiny") -> None:
    """The big run's peak above the peak of the same command on a small image, per output pixel:
    kind "tiny" (64x64: the Python process, torch and the model's weights) or "tile" (one tile's
    input: the same plus the activations of one tile), the two readings of the target's "plus the
    model"."""
    if "peak_mib" in big and "peak_mib" in small:
        big[f"{kind}_mib"] = small["peak_mib"]
        big[f"bytes_per_output_pixel_above_{kind}"] = round((big["peak_mib"] - small["peak_mib"]) * 2**20
                                                           / (big["output_mp"] * 1e6), 2)
        print(json.dumps({"job": big["job"], f"above_{kind}": big[f"bytes_per_output_pixel_above_{kind}"]}),
              flush=True)


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
            mp = math.ceil(out_px / 1e6 * 1.05)
            rows.append(row("upscale x4", "aetool", AETOOL + ["upscale", str(src), "-o", str(work / "x4.png"),
                                                               "--scale", "4", "--max-pixels", f"{mp:.0f}"], out_px))
            rows.append(row("upscale x4", "Pillow bicubic", [sys.executable, "-c", PILLOW_UPSCALE, str(src),
                                                               str(work / "bicubic.png")], out_px))
            # The fixed cost (Python, torch, the model): the same command on a 64x64 image.
            Image.fromarray(photo(64, 64)).save(work / "tiny.jpg", quality=92)
            rows.append(row("upscale x4", "aetool on 64x64", AETOOL + [
                "upscale", str(work / "tiny.jpg"), "-o", str(work / "tiny-x4.png"), "--scale", "4"], 16 * 64 * 64))
            fixed(rows[-3], rows[-1])
            Image.fromarray(photo(TILE["upscale"], TILE["upscale"])).save(work / "tile.jpg", quality=92)
            rows.append(row("upscale x4", f"aetool on {TILE['upscale']}x{TILE['upscale']} (one tile)", AETOOL + [
                "upscale", str(work / "tile.jpg"), "-o", str(work / "tile-x4.png"), "--scale", "4"],
                16 * TILE["upscale"] ** 2))
            fixed(rows[-4], rows[-1], "tile")
            card = default_model("upscale", 3, 4)
            rows[-4]["model"] = card.name
            rows[-4]["model_bytes"] = (Path(card.path).stat().st_size if getattr(card, "path", None) else None)
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
            mp = math.ceil(out_px / 1e6 * 1.1)
            rows.append(row("denoise", "aetool", AETOOL + ["denoise", str(src), "-o", str(work / "dn.png"),
                                                            "--sigma", "15", "--max-pixels", f"{mp:.0f}"], out_px))
            rows.append(row("denoise", "Pillow median 3x3", [sys.executable, "-c", PILLOW_MEDIAN, str(src),
                                                             str(work / "median.png")], out_px))
            Image.fromarray(photo(64, 64)).save(work / "tiny.png")
            rows.append(row("denoise", "aetool on 64x64", AETOOL + [
                "denoise", str(work / "tiny.png"), "-o", str(work / "tiny-dn.png"), "--sigma", "15"], 64 * 64))
            fixed(rows[-3], rows[-1])
            Image.fromarray(photo(TILE["denoise"], TILE["denoise"])).save(work / "tile.png")
            rows.append(row("denoise", f"aetool on {TILE['denoise']}x{TILE['denoise']} (one tile)", AETOOL + [
                "denoise", str(work / "tile.png"), "-o", str(work / "tile-dn.png"), "--sigma", "15"],
                TILE["denoise"] ** 2))
            fixed(rows[-4], rows[-1], "tile")
    result = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "rows": rows}
    if args.out_json:
        args.out_json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
