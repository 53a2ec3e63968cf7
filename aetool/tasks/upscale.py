"""Upscaling (super-resolution): enlarge an image x2, x3 or x4 with a super-resolution model, or
to any other factor or size (the model's enlargement, then resized); alpha is enlarged too.

`Upscaler` loads the models and enlarges (H, W, C) float arrays; the command line runs its
`picture` for every file. `upscale()` is the Python API for one PIL image, numpy array or torch
tensor."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..engine import EngineOptions, Runner
from ..errors import UsageError
from ..imageio import Picture, as_float
from ..registry import default_model, find_card, load_model, verify_model
from .cache import _cached
from .convert import _apply


class Upscaler:
    """Enlarges (H, W, C) float32 arrays in [0, 1] with a super-resolution model: the one the
    user names, or the shipped default for the scale each image needs. Alpha is enlarged by the
    same model after the invisible colour under transparent pixels is filled from its visible
    neighbours, so that edges get no dark or light fringe."""

    def __init__(self, model: str | None = None, options: EngineOptions | None = None):
        self.runner = Runner(options)
        self.card = None
        self._models: dict[int, Any] = {}
        self._scales: list[int] | None = None
        if model is not None:
            self.card = find_card(model)
            if self.card.task != "upscale":
                raise UsageError(f"model '{self.card.name}' is for the {self.card.task} task, not for upscaling")
            verify_model(self.card)  # a damaged model fails here, once, not once per image
        else:
            for scale in self.available_scales():
                verify_model(default_model("upscale", 3, scale))

    def available_scales(self) -> list[int]:
        if self.card is not None:
            return [self.card.config["scale"]]
        if self._scales is None:  # read the cards once, not per image
            from ..registry import pretrained_cards

            self._scales = sorted({c.config.get("scale") for c in pretrained_cards("upscale") if c.channels == 3})
        return self._scales

    def model_for(self, scale: int):
        if scale not in self._models:
            card = self.card or default_model("upscale", 3, scale)
            self._models[scale] = self.runner.prepare(load_model(card, "cpu"))
        return self._models[scale]

    def enlarge(self, pixels: np.ndarray, scale: int, bits: int | None = None) -> np.ndarray:
        """(H, W, C) -> (H * scale, W * scale, C) with the model of that scale, clipped to [0, 1].
        `bits` 8 or 16: the output as uint8 or uint16 instead, assembled tile by tile, so that a
        large enlargement is never held as floats (a x4 of 24 MP is 384 MP: 4.6 GB in float32)."""
        model = self.model_for(scale)
        c, mc = pixels.shape[2], model.in_channels
        run = lambda x, dtype=None: self.runner.run(model, x, scale, context=model.context, out_dtype=dtype)  # noqa: E731
        if c == mc and bits in (8, 16):
            return run(pixels, np.uint16 if bits == 16 else np.uint8)
        if c == mc:
            out = run(pixels)
        elif mc == 3:  # grey image, colour model: the three channels are equal in and out
            out = run(np.repeat(pixels, 3, axis=2)).mean(axis=2, keepdims=True)
        else:  # colour image, grey model: channel by channel
            out = np.concatenate([run(pixels[..., k:k + 1]) for k in range(c)], axis=2)
        return np.clip(out, 0.0, 1.0, out=out)  # in place: no second float copy of the output

    def __call__(self, pixels: np.ndarray, alpha: np.ndarray | None = None, scale: int | None = None,
                 outscale: float | None = None, width: int | None = None, height: int | None = None,
                 bits: int | None = None) -> tuple[np.ndarray, np.ndarray | None, dict]:
        """The enlarged pixels (float32, or uint8/uint16 for `bits` 8/16 where no resize follows),
        the enlarged alpha (float32) and the record's info."""
        from ..alpha import fill_transparent
        from ..sizing import model_scale_for, resize_float, target_size

        h, w = pixels.shape[:2]
        if self.card is not None:
            scale = self.card.config["scale"]
        size = target_size(h, w, scale or 4, outscale, width, height)
        if scale is None:
            scale = model_scale_for(max(size[0] / h, size[1] / w), self.available_scales())
        exact = (h * scale, w * scale) == tuple(size)
        if alpha is not None and alpha.min() < 1.0:
            out = self.enlarge(fill_transparent(as_float(pixels), alpha), scale)
            out_alpha = self.enlarge(alpha[..., None], scale)[..., 0]
        else:
            # Integer pixels (read_image(integer=True)) reach the model as they are only when its
            # output is written as it comes; every other path works in floats.
            direct = exact and bits in (8, 16) and pixels.shape[2] == self.model_for(scale).in_channels
            out = self.enlarge(pixels if direct else as_float(pixels), scale, bits if exact else None)
            out_alpha = None if alpha is None else np.ones(out.shape[:2], np.float32)
        if out.shape[:2] != size:
            out = resize_float(out, size)
            out_alpha = None if out_alpha is None else resize_float(out_alpha, size)
        info = {"model": self.model_for(scale).card.name, "scale": scale, "size": [size[1], size[0]]}
        return out, out_alpha, info

    def picture(self, pic: Picture, scale: int | None = None, outscale: float | None = None,
                width: int | None = None, height: int | None = None) -> tuple[Picture, dict]:
        out, alpha, info = self(pic.pixels, pic.alpha, scale, outscale, width, height, bits=pic.bit_depth)
        dpi = None
        if pic.dpi:  # more pixels over the same print size
            dpi = (pic.dpi[0] * out.shape[1] / pic.width, pic.dpi[1] * out.shape[0] / pic.height)
        return replace(pic, pixels=out, alpha=alpha, dpi=dpi), info


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
    up = _cached(Upscaler, model, device, tile, precision)
    if scale is None and outscale is None and not (width or height):
        scale = 4

    def run(colour, alpha):
        out, out_alpha, _ = up(colour, alpha, scale, outscale, width, height)
        return out, out_alpha

    return _apply(image, run, "upscale")
