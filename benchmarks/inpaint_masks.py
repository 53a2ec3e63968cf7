"""What finding each image's mask costs `aetool inpaint` per file, on the model's thread (where no
decode or encode overlaps it): aetool.masks against the whole-array formulas it replaced, side by
side in the same run, on a generated photo and its defect mask (aetool.bench: dust and scratches).

- mask image, RGB PNG (--mask-dir, or --mask FILE once): read_mask; before, read_image then
  .max(axis=2) > 0 (numpy's reduction over the short last axis);
- key colour (--mask-color magenta --tolerance 3): MaskSource.mask_for, channel by channel;
  before, (H, W, 3) temporaries reduced with .all(axis=2);
- shared mask, --dilate 3: MaskSource.mask_for with --mask FILE (dilated once, when the source is
  made); before, grow() on every call;
- per-image dilation, --dilate 3 (--mask-dir, --mask-color): grow(), the holes' bounding box only;
  before, the whole image through the filter.

Each row: CPU milliseconds on the calling thread (median of --repeat), and whether the masks are
identical (they must be).

    python benchmarks/inpaint_masks.py --size 1 --repeat 9
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, machine_line, md_table  # noqa: E402

from aetool.bench import defect_mask, image_shape, synthetic_photo  # noqa: E402
from aetool.imageio import Picture, encode_image, read_image  # noqa: E402
from aetool.masks import MaskOptions, MaskSource, grow, read_mask  # noqa: E402

DILATE = 3
KEY = (255, 0, 255)
TOLERANCE = 3


def cpu_ms(fn, repeat: int) -> tuple[float, object]:
    runs, result = [], None
    for _ in range(repeat):
        t0 = time.thread_time()
        result = fn()
        runs.append(time.thread_time() - t0)
    return 1000 * statistics.median(runs), result


def whole_filter(mask: np.ndarray, pixels: int) -> np.ndarray:
    from scipy import ndimage

    return ndimage.maximum_filter(mask, size=2 * pixels + 1, mode="nearest") if mask.any() else mask


def key_before(pic: Picture) -> np.ndarray:
    target = np.array(KEY, np.float32)
    values = np.round(pic.pixels * 255.0) * (255.0 / 255.0)
    return (np.abs(values - target) <= TOLERANCE + 0.5).all(axis=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=float, default=1.0, help="megapixels")
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    h, w = image_shape(args.size)
    holes = defect_mask(h, w)
    photo = synthetic_photo(h, w)
    photo[holes] = np.array(KEY, np.float32) / 255  # the defects painted in the key colour
    pic = read_image(encode_image(Picture(photo), ".png"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rgb = Path(tmp) / "mask.png"
        rgb.write_bytes(encode_image(Picture(np.repeat(holes[..., None], 3, axis=2).astype(np.float32)), ".png"))
        shared, undilated = MaskSource(MaskOptions(file=rgb, dilate=DILATE)), read_mask(rgb)
        cases = [
            ("mask image, RGB PNG", lambda: read_image(rgb).pixels.max(axis=2) > 0, lambda: read_mask(rgb)),
            (f"key colour, tolerance {TOLERANCE}", lambda: key_before(pic),
             lambda: MaskSource(MaskOptions(color=KEY, tolerance=TOLERANCE)).mask_for(None, pic)),
            (f"shared mask, --dilate {DILATE}", lambda: whole_filter(undilated, DILATE),
             lambda: shared.mask_for(None, pic)),
            (f"per-image dilation, --dilate {DILATE}", lambda: whole_filter(holes, DILATE),
             lambda: grow(holes, DILATE)),
        ]
        for name, before, after in cases:
            before_ms, want = cpu_ms(before, args.repeat)
            after_ms, got = cpu_ms(after, args.repeat)
            rows.append([name, f"{before_ms:.1f}", f"{after_ms:.1f}", "yes" if np.array_equal(want, got) else "NO"])
    print(f"{machine_line(machine())}; {w}x{h} ({args.size:g} MP), {int(holes.sum())} hole pixels, "
          f"median of {args.repeat}\n")
    print(md_table(["mask", "before: CPU ms", "after: CPU ms", "identical"], rows))


if __name__ == "__main__":
    main()
