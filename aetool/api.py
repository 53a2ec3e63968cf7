"""The Python API: `denoise(image)` for PIL images, numpy arrays and torch tensors, and the
per-picture function that the command line runs for every file."""
from __future__ import annotations

from typing import Any

import numpy as np

from .engine import EngineOptions, Runner
from .errors import UsageError
from .imageio import Picture
from .registry import default_model, find_card, load_model


class Denoiser:
    """Loads models on first use (the grey one for grey images, the colour one otherwise, or the
    one the user names) and denoises (H, W, C) float32 arrays in [0, 1]."""

    def __init__(self, model: str | None = None, options: EngineOptions | None = None):
        self.model_name = model
        self.runner = Runner(options)
        self._models: dict[int, Any] = {}
        if model is not None:
            card = find_card(model)
            if card.task != "denoise":
                raise UsageError(f"model '{card.name}' is a {card.task} model, not a denoiser")

    def model_for(self, channels: int):
        key = 0 if self.model_name else channels
        if key not in self._models:
            card = find_card(self.model_name) if self.model_name else default_model("denoise", channels)
            self._models[key] = self.runner.prepare(load_model(card, "cpu"))
        return self._models[key]

    def __call__(self, pixels: np.ndarray, sigma: float | None = None, strength: float = 1.0) -> tuple[np.ndarray, dict]:
        from .noise import estimate_noise

        if not 0.0 <= strength <= 1.0:
            raise UsageError("strength must be between 0 and 1")
        c = pixels.shape[2]
        info: dict = {}
        if sigma is None:
            sigma = float(estimate_noise(pixels, data_range=1.0))
            info["sigma_estimated"] = round(sigma, 2)
        else:
            info["sigma"] = sigma
        model = self.model_for(1 if c == 1 else 3)
        torch = self.runner.torch
        s = torch.tensor([sigma / 255.0], device=self.runner.device)
        mc = model.in_channels
        if mc == c:
            out = self.runner.run(lambda x: model(x, s.expand(x.shape[0])), pixels)
        elif mc == 1:  # grey model, colour image: the noise is independent per channel
            out = np.stack([self.runner.run(lambda x: model(x, s.expand(x.shape[0])), pixels[..., k:k + 1])[..., 0]
                            for k in range(c)], axis=-1)
        else:  # colour model, grey image
            out = self.runner.run(lambda x: model(x, s.expand(x.shape[0])), np.repeat(pixels, mc, axis=2))
            out = out.mean(axis=2, keepdims=True)
        out = np.clip(out, 0.0, 1.0)
        if strength < 1.0:
            out = pixels + strength * (out - pixels)
        info["model"] = model.card.name
        return out.astype(np.float32), info

    def picture(self, pic: Picture, sigma: float | None = None, strength: float = 1.0) -> tuple[Picture, dict]:
        out, info = self(pic.pixels, sigma, strength)
        return pic.with_pixels(out), info


_CACHE: dict[tuple, Denoiser] = {}


def denoise(image, sigma: float | None = None, strength: float = 1.0, model: str | None = None,
            device: str = "auto", tile: int | None = None, precision: str = "auto"):
    """Denoise one image; blind (noise level estimated) unless `sigma` (0-255 units) is given.

    image: a PIL image (returned as a PIL image of the same mode), a numpy array (H, W) or
    (H, W, 3|4) of uint8 / uint16 / float in [0, 1] (returned with the same shape and dtype), or
    a torch tensor (C, H, W) or (N, C, H, W) float in [0, 1] (returned likewise). Alpha passes through.
    """
    key = (model, device, tile, precision)
    if key not in _CACHE:
        _CACHE[key] = Denoiser(model, EngineOptions(device=device, tile=tile, precision=precision))
    den = _CACHE[key]

    def run(pixels: np.ndarray) -> np.ndarray:
        return den(pixels, sigma, strength)[0]

    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        return _denoise_pil(image, run)
    if isinstance(image, np.ndarray):
        return _denoise_array(image, run)
    import torch

    if isinstance(image, torch.Tensor):
        t = image.detach().float().cpu()
        batch = t if t.dim() == 4 else t[None]
        outs = [torch.from_numpy(_denoise_array(b.permute(1, 2, 0).numpy(), run)).permute(2, 0, 1) for b in batch]
        out = torch.stack(outs).to(image.dtype).to(image.device)
        return out if image.dim() == 4 else out[0]
    raise TypeError(f"denoise() takes a PIL image, numpy array or torch tensor, not {type(image).__name__}")


def _denoise_array(a: np.ndarray, run) -> np.ndarray:
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 2, 3, 4)):
        raise UsageError(f"expected an (H, W) or (H, W, C) image array with C in 1-4, got shape {a.shape}")
    if a.dtype == np.uint8:
        scale = 255.0
    elif a.dtype == np.uint16:
        scale = 65535.0
    else:
        scale = 1.0
    x = a.astype(np.float32) / scale
    x3 = x[..., None] if x.ndim == 2 else x
    alpha = x3.shape[2] in (2, 4)
    colour = x3[..., :-1] if alpha else x3
    out = run(np.ascontiguousarray(colour))
    if alpha:
        out = np.concatenate([out, x3[..., -1:]], axis=2)
    out = out[..., 0] if a.ndim == 2 else out
    if scale == 1.0:
        return out.astype(a.dtype if np.issubdtype(a.dtype, np.floating) else np.float32)
    return np.round(np.clip(out, 0, 1) * scale).astype(a.dtype)


def _denoise_pil(im, run):
    from PIL import Image

    mode = im.mode
    work = im if mode in ("L", "LA", "RGB", "RGBA", "I;16") else im.convert("RGBA" if "A" in mode or
                                                                         "transparency" in im.info else "RGB")
    out = _denoise_array(np.asarray(work), run)
    res = Image.fromarray(out, work.mode)
    res.info = dict(im.info)
    return res if res.mode == mode or mode not in ("L", "LA", "RGB", "RGBA") else res.convert(mode)
