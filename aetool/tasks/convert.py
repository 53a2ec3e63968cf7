"""What every task's Python API shares: an image given as a PIL image, a numpy array or a torch
tensor becomes (H, W, C) float32 colour in [0, 1] plus alpha, a task's transform runs on that, and
the result is converted back to the kind, shape, dtype and mode the image came in."""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import UsageError


Transform = Callable[[np.ndarray, "np.ndarray | None"], "tuple[np.ndarray, np.ndarray | None]"]


def _apply(image, run: Transform, name: str):
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        return _apply_pil(image, run)
    if isinstance(image, np.ndarray):
        return _apply_array(image, run)
    import torch

    if isinstance(image, torch.Tensor):
        t = image.detach().float().cpu()
        batch = t if t.dim() == 4 else t[None]
        outs = [torch.from_numpy(_apply_array(b.permute(1, 2, 0).numpy(), run)).permute(2, 0, 1) for b in batch]
        out = torch.stack(outs).to(image.dtype).to(image.device)
        return out if image.dim() == 4 else out[0]
    raise TypeError(f"{name}() takes a PIL image, numpy array or torch tensor, not {type(image).__name__}")


def _split_array(a: np.ndarray) -> tuple[np.ndarray, "np.ndarray | None", float]:
    """An (H, W) or (H, W, C) array as (H, W, C') float32 colour in [0, 1], its alpha plane or None,
    and the scale its integers had (255, 65535, or 1 for floats)."""
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 2, 3, 4)):
        raise UsageError(f"expected an (H, W) or (H, W, C) image array with C in 1-4, got shape {a.shape}")
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(a.dtype, 1.0)
    x = a.astype(np.float32) / scale
    x3 = x[..., None] if x.ndim == 2 else x
    if x3.shape[2] in (2, 4):
        return np.ascontiguousarray(x3[..., :-1]), np.ascontiguousarray(x3[..., -1]), scale
    return np.ascontiguousarray(x3), None, scale


def _apply_array(a: np.ndarray, run: Transform) -> np.ndarray:
    colour, alpha, scale = _split_array(a)
    out, out_alpha = run(colour, alpha)
    if alpha is not None:
        out = np.concatenate([out, out_alpha[..., None]], axis=2)
    out = out[..., 0] if a.ndim == 2 else out
    if scale == 1.0:
        return out.astype(a.dtype if np.issubdtype(a.dtype, np.floating) else np.float32)
    return np.round(np.clip(out, 0, 1) * scale).astype(a.dtype)


def _apply_pil(im, run: Transform):
    from PIL import Image

    mode = im.mode
    work = im if mode in ("L", "LA", "RGB", "RGBA", "I;16") else im.convert("RGBA" if "A" in mode or
                                                                         "transparency" in im.info else "RGB")
    out = _apply_array(np.asarray(work), run)
    res = Image.fromarray(out, work.mode)
    res.info = dict(im.info)
    return res if res.mode == mode or mode not in ("L", "LA", "RGB", "RGBA") else res.convert(mode)


def to_float_planes(image) -> tuple[np.ndarray, "np.ndarray | None", int]:
    """An image (PIL, numpy (H, W) / (H, W, C), torch (C, H, W)) as (H, W, C) float32 colour in
    [0, 1], its alpha plane or None, and its bit depth (16 for uint16 data and 16-bit PIL modes)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None
    bits = 8
    if Image is not None and isinstance(image, Image.Image):
        bits = 16 if image.mode.startswith("I;16") else 8
        work = image if image.mode in ("L", "LA", "RGB", "RGBA", "I;16") else image.convert(
            "RGBA" if "A" in image.mode or "transparency" in image.info else "RGB")
        a = np.asarray(work)
    elif isinstance(image, np.ndarray):
        a = image
    else:
        import torch

        if not isinstance(image, torch.Tensor):
            raise TypeError(f"expected a PIL image, numpy array or torch tensor, not {type(image).__name__}")
        a = image.detach().float().cpu().permute(1, 2, 0).numpy()
    colour, alpha, scale = _split_array(a)
    return colour, alpha, 16 if scale == 65535.0 else bits
