"""Denoising: remove noise from an image with a denoising autoencoder, blind (the noise level
estimated from the image) or told the noise level (sigma, 0-255 units).

`Denoiser` loads the models and denoises (H, W, C) float arrays; the command line runs its
`picture` for every file. `denoise()` is the Python API for one PIL image, numpy array or torch
tensor."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..engine import EngineOptions, Runner
from ..errors import UsageError
from ..imageio import Picture
from ..registry import default_model, find_card, load_model, verify_model
from .cache import _cached
from .convert import _apply


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
                raise UsageError(f"model '{card.name}' is for the {card.task} task, not for denoising")
            verify_model(card)  # a damaged model fails here, once, not once per image
        else:
            from ..registry import pretrained_cards

            for channels in {c.channels for c in pretrained_cards("denoise")}:  # a missing one fails when needed
                verify_model(default_model("denoise", channels))

    def model_for(self, channels: int):
        key = 0 if self.model_name else channels
        if key not in self._models:
            card = find_card(self.model_name) if self.model_name else default_model("denoise", channels)
            self._models[key] = self.runner.prepare(load_model(card, "cpu"))
        return self._models[key]

    def __call__(self, pixels: np.ndarray, sigma: float | None = None, strength: float = 1.0) -> tuple[np.ndarray, dict]:
        from ..noise import estimate_noise, min_pixels_for_estimate

        if not 0.0 <= strength <= 1.0:
            raise UsageError("strength must be between 0 and 1")
        c = pixels.shape[2]
        info: dict = {}
        if sigma is None:
            # A tiny image's estimate is noise itself (3x5 read as sigma 29): leave it as it is
            # rather than denoise at an invented level; told sigma, it is denoised as told.
            h, w = pixels.shape[:2]
            need = min_pixels_for_estimate(c)
            if h * w < need:
                kind = "colour" if c >= 3 else "grey"
                info["sigma_estimated"] = None
                info["note"] = (f"image too small for a reliable noise estimate ({w}x{h} = {h * w} px < {need} px "
                                f"for {kind}); left unchanged, pass --sigma (sigma= in Python) to denoise it")
                return pixels.astype(np.float32), info
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


def denoise(image, sigma: float | None = None, strength: float = 1.0, model: str | None = None,
            device: str = "auto", tile: int | None = None, precision: str = "auto"):
    """Denoise one image; blind (noise level estimated) unless `sigma` (0-255 units) is given.
    Blind, an image under 1024 pixels (colour; 3072 grey) is returned unchanged: too small for a
    reliable noise estimate (aetool.noise.min_pixels_for_estimate).

    image: a PIL image (returned as a PIL image of the same mode), a numpy array (H, W) or
    (H, W, 3|4) of uint8 / uint16 / float in [0, 1] (returned with the same shape and dtype), or
    a torch tensor (C, H, W) or (N, C, H, W) float in [0, 1] (returned likewise). Alpha passes through.
    """
    den = _cached(Denoiser, model, device, tile, precision)
    return _apply(image, lambda colour, alpha: (den(colour, sigma, strength)[0], alpha), "denoise")
