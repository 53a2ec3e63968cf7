"""The Python API, kept for backward compatibility: each task now lives in its own module under
`aetool/tasks/` (denoise.py, upscale.py, inpaint.py, with the runtime class and the function),
and what they share in `aetool/tasks/convert.py` (PIL image / numpy array / torch tensor to and
from float arrays) and `aetool/tasks/cache.py` (one runner per settings). The names below are
the same objects as there; new code imports from `aetool` (`from aetool import denoise`) or from
the task modules."""
from __future__ import annotations

from .tasks.denoise import Denoiser, denoise
from .tasks.inpaint import Inpainter, hole_boxes, inpaint
from .tasks.upscale import Upscaler, upscale

__all__ = ["Denoiser", "Upscaler", "Inpainter", "denoise", "upscale", "inpaint", "hole_boxes"]
