"""Output sizes for commands that enlarge images, and the final resize to an exact size."""
from __future__ import annotations

import numpy as np

from .errors import UsageError


def target_size(h: int, w: int, scale: int, outscale: float | None = None, width: int | None = None,
                height: int | None = None) -> tuple[int, int]:
    """(height, width) of the output: the model's `scale`, or `outscale`, or the largest size
    that fits `width` and/or `height` keeping the aspect ratio."""
    if width or height:
        factor = min(f for f in ((width / w) if width else None, (height / h) if height else None) if f)
        out_w = width if width and (not height or width / w <= height / h) else max(1, round(w * factor))
        out_h = height if height and (not width or height / h <= width / w) else max(1, round(h * factor))
        return out_h, out_w
    factor = outscale if outscale else scale
    return max(1, round(h * factor)), max(1, round(w * factor))


def model_scale_for(factor: float, available: list[int]) -> int:
    """The smallest model scale that reaches `factor` (downscaling its output loses little),
    or the largest one when none does."""
    if not available:
        raise UsageError("no upscaling model is installed")
    reaching = [s for s in sorted(available) if s >= factor - 1e-9]
    return reaching[0] if reaching else max(available)


def resize_float(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) float32 array to (height, width) with Lanczos, channel by
    channel in 32-bit float (so 16-bit images keep their precision); clipped to [0, 1]."""
    from PIL import Image

    h, w = size
    if arr.shape[:2] == (h, w):
        return arr
    planes = arr[..., None] if arr.ndim == 2 else arr
    out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(planes[..., k]), "F")
                               .resize((w, h), Image.LANCZOS)) for k in range(planes.shape[2])], axis=-1)
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    return out[..., 0] if arr.ndim == 2 else out
