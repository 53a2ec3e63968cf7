"""The Python API: `denoise(image)` and `upscale(image)` for PIL images, numpy arrays and torch
tensors, and the per-picture functions that the command line runs for every file."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

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


class Upscaler:
    """Enlarges (H, W, C) float32 arrays in [0, 1] with a super-resolution model: the one the
    user names, or the shipped default for the scale each image needs. Alpha is enlarged by the
    same model after the invisible colour under transparent pixels is filled from its visible
    neighbours, so that edges get no dark or light fringe."""

    def __init__(self, model: str | None = None, options: EngineOptions | None = None):
        self.runner = Runner(options)
        self.card = None
        self._models: dict[int, Any] = {}
        if model is not None:
            self.card = find_card(model)
            if self.card.task != "upscale":
                raise UsageError(f"model '{self.card.name}' is a {self.card.task} model, not an upscaler")

    def available_scales(self) -> list[int]:
        if self.card is not None:
            return [self.card.config["scale"]]
        from .registry import pretrained_cards

        return sorted({c.config.get("scale") for c in pretrained_cards("upscale") if c.channels == 3})

    def model_for(self, scale: int):
        if scale not in self._models:
            card = self.card or default_model("upscale", 3, scale)
            self._models[scale] = self.runner.prepare(load_model(card, "cpu"))
        return self._models[scale]

    def enlarge(self, pixels: np.ndarray, scale: int) -> np.ndarray:
        """(H, W, C) -> (H * scale, W * scale, C) with the model of that scale, clipped to [0, 1]."""
        model = self.model_for(scale)
        c, mc = pixels.shape[2], model.in_channels
        run = lambda x: self.runner.run(model, x, scale, context=model.context)  # noqa: E731
        if c == mc:
            out = run(pixels)
        elif mc == 3:  # grey image, colour model: the three channels are equal in and out
            out = run(np.repeat(pixels, 3, axis=2)).mean(axis=2, keepdims=True)
        else:  # colour image, grey model: channel by channel
            out = np.concatenate([run(pixels[..., k:k + 1]) for k in range(c)], axis=2)
        return np.clip(out, 0.0, 1.0)

    def __call__(self, pixels: np.ndarray, alpha: np.ndarray | None = None, scale: int | None = None,
                 outscale: float | None = None, width: int | None = None, height: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None, dict]:
        from .alpha import fill_transparent
        from .sizing import model_scale_for, resize_float, target_size

        h, w = pixels.shape[:2]
        if self.card is not None:
            scale = self.card.config["scale"]
        size = target_size(h, w, scale or 4, outscale, width, height)
        if scale is None:
            scale = model_scale_for(max(size[0] / h, size[1] / w), self.available_scales())
        if alpha is not None and alpha.min() < 1.0:
            out = self.enlarge(fill_transparent(pixels, alpha), scale)
            out_alpha = self.enlarge(alpha[..., None], scale)[..., 0]
        else:
            out = self.enlarge(pixels, scale)
            out_alpha = None if alpha is None else np.ones(out.shape[:2], np.float32)
        if out.shape[:2] != size:
            out = resize_float(out, size)
            out_alpha = None if out_alpha is None else resize_float(out_alpha, size)
        info = {"model": self.model_for(scale).card.name, "scale": scale, "size": [size[1], size[0]]}
        return out.astype(np.float32), out_alpha, info

    def picture(self, pic: Picture, scale: int | None = None, outscale: float | None = None,
                width: int | None = None, height: int | None = None) -> tuple[Picture, dict]:
        out, alpha, info = self(pic.pixels, pic.alpha, scale, outscale, width, height)
        dpi = None
        if pic.dpi:  # more pixels over the same print size
            dpi = (pic.dpi[0] * out.shape[1] / pic.width, pic.dpi[1] * out.shape[0] / pic.height)
        return replace(pic, pixels=out, alpha=alpha, dpi=dpi), info


_DENOISERS: dict[tuple, Denoiser] = {}
_UPSCALERS: dict[tuple, Upscaler] = {}


def denoise(image, sigma: float | None = None, strength: float = 1.0, model: str | None = None,
            device: str = "auto", tile: int | None = None, precision: str = "auto"):
    """Denoise one image; blind (noise level estimated) unless `sigma` (0-255 units) is given.

    image: a PIL image (returned as a PIL image of the same mode), a numpy array (H, W) or
    (H, W, 3|4) of uint8 / uint16 / float in [0, 1] (returned with the same shape and dtype), or
    a torch tensor (C, H, W) or (N, C, H, W) float in [0, 1] (returned likewise). Alpha passes through.
    """
    key = (model, device, tile, precision)
    if key not in _DENOISERS:
        _DENOISERS[key] = Denoiser(model, EngineOptions(device=device, tile=tile, precision=precision))
    den = _DENOISERS[key]
    return _apply(image, lambda colour, alpha: (den(colour, sigma, strength)[0], alpha), "denoise")


def upscale(image, scale: int | None = None, outscale: float | None = None, width: int | None = None,
            height: int | None = None, model: str | None = None, device: str = "auto", tile: int | None = None,
            precision: str = "auto"):
    """Enlarge one image with a super-resolution model: `scale` 2, 3 or 4 (default 4), or any
    `outscale`, or to fit `width` and/or `height`. Takes and returns the same kinds as `denoise`
    (PIL image, numpy array, torch tensor); alpha is enlarged too.

        from aetool import upscale
        big = upscale(pil_image, scale=2)
    """
    if scale is not None and scale not in (2, 3, 4):
        raise UsageError(f"scale must be 2, 3 or 4, got {scale} (use outscale for other factors)")
    key = (model, device, tile, precision)
    if key not in _UPSCALERS:
        _UPSCALERS[key] = Upscaler(model, EngineOptions(device=device, tile=tile, precision=precision))
    up = _UPSCALERS[key]
    if scale is None and outscale is None and not (width or height):
        scale = 4

    def run(colour, alpha):
        out, out_alpha, _ = up(colour, alpha, scale, outscale, width, height)
        return out, out_alpha

    return _apply(image, run, "upscale")


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


def _apply_array(a: np.ndarray, run: Transform) -> np.ndarray:
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
    has_alpha = x3.shape[2] in (2, 4)
    colour = np.ascontiguousarray(x3[..., :-1] if has_alpha else x3)
    out, out_alpha = run(colour, x3[..., -1] if has_alpha else None)
    if has_alpha:
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
