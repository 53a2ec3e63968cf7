"""Write clean photos that are not in ../shared (public-domain / CC0 photos shipped with
scikit-image) to a folder, for measuring with the same protocol on images nobody tuned to:

    python benchmarks/heldout_photos.py /tmp/heldout
    python benchmarks/denoise.py --sets cbsd68,kodak24,mcmaster,heldout=/tmp/heldout/colour \\
        --gray-sets set12,bsd68,heldout-grey=/tmp/heldout/grey
    python benchmarks/upscale.py --sets heldout=/tmp/heldout/sr --section upscale-heldout
    python benchmarks/inpaint.py --sets heldout=/tmp/heldout/colour --section inpaint-heldout

For super-resolution it also writes sr/x<scale>/{hr,lr}: the colour photos cropped to a multiple
of 12 pixels (HR) and their MATLAB-style bicubic downscales (aetool.resize.downscale_uint8, which
reproduces the LR files of the test sets bit for bit: docs/benchmarks.md).

Sources (scikit-image data module): astronaut (NASA, public domain), chelsea (CC0, Stefan van der
Walt), coffee (CC0, Rachel Michetti), rocket (SpaceX, public domain), camera (CC0, Lav Varshney), plus the grey versions of the colour photos.
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from aetool.resize import downscale_uint8

COLOUR = {"astronaut": data.astronaut, "chelsea": data.chelsea, "coffee": data.coffee, "rocket": data.rocket}


def main(out: Path) -> None:
    (out / "colour").mkdir(parents=True, exist_ok=True)
    (out / "grey").mkdir(parents=True, exist_ok=True)
    for name, load in COLOUR.items():
        img = load()
        Image.fromarray(img).save(out / "colour" / f"{name}.png")
        Image.fromarray(img).convert("L").save(out / "grey" / f"{name}.png")
    Image.fromarray(data.camera()).save(out / "grey" / "camera.png")
    for scale in (2, 3, 4):
        for sub in ("hr", "lr"):
            (out / "sr" / f"x{scale}" / sub).mkdir(parents=True, exist_ok=True)
        for name, load in COLOUR.items():
            img = load()
            hr = img[:img.shape[0] // 12 * 12, :img.shape[1] // 12 * 12]
            Image.fromarray(hr).save(out / "sr" / f"x{scale}" / "hr" / f"{name}.png")
            Image.fromarray(downscale_uint8(hr, scale)).save(out / "sr" / f"x{scale}" / "lr" / f"{name}.png")
    print(f"wrote {len(COLOUR)} colour and {len(COLOUR) + 1} grey photos, and x2/x3/x4 SR pairs, under {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/heldout"))
