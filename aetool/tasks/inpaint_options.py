"""The inpaint command's choices and defaults, apart from the task's runtime (aetool.tasks.inpaint,
which re-exports them) so that the command line shows them in --help without loading numpy."""
from __future__ import annotations

from ..errors import UsageError

FILLS = ("auto", "smooth", "texture")
# `auto`: the parts of holes at least this wide (a morphological opening of this width) get
# texture. benchmarks/inpaint_fill_width.py (bands of 4-32 px on training photos): from 12 px
# up the smooth fill keeps under 15 % of the photo's gradient energy and texture over half, at
# 0.6-0.8 dB of hole PSNR; at 4-8 px the smooth fill keeps 17-28 % and texture gains less.
TEXTURE_MIN_WIDTH = 16
# --ensemble's default (the network on flipped copies of each crop, averaged):
# benchmarks/inpaint_inference.py on training photos (docs/benchmarks.md): a second, turned pass
# adds 0.11 / 0.05 / 0.01 dB (thin / thick / box) to the smooth fill for 1.7-2x the time.
ENSEMBLE = 1


def check_fill(fill: str) -> str:
    """The fill mode, or a usage error naming the choices (the CLI calls it before any file)."""
    if fill not in FILLS:
        raise UsageError(f"--fill must be one of {', '.join(FILLS)}, got '{fill}'")
    return fill
