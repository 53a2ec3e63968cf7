"""Denoising: remove noise from an image with a denoising autoencoder, blind (the noise level
estimated from the image) or told the noise level (sigma, 0-255 units).

`Denoiser` loads the models and denoises (H, W, C) float arrays; the command line runs its
`picture` for every file. `denoise()` is the Python API for one PIL image, numpy array or torch
tensor."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..engine import EngineOptions, Runner
from ..errors import ModelError, UsageError
from ..imageio import Picture, as_float
from ..registry import default_model, find_card, load_model, verify_model
from .cache import _cached
from .convert import _apply


KINDS = ("gaussian", "jpeg", "webp", "avif", "jxl")


def model_kinds(card) -> list[str]:
    """What a denoiser removes: the codecs of a post-filter, or ["gaussian"]."""
    return list(card.degradation.get("codecs") or ["gaussian"])


def resolve_kind(model: str | None, kind: str | None) -> str:
    """The kind a run removes: `kind` checked against the named model's, or the model's own, or
    gaussian; a UsageError (or ModelError: nothing of that kind installed) before any file is read."""
    if kind is not None and kind not in KINDS:
        raise UsageError(f"unknown kind '{kind}'; choose one of {', '.join(KINDS)}")
    if model is None:
        kind = kind or "gaussian"
        from ..registry import pretrained_cards

        if not any(kind in model_kinds(c) for c in pretrained_cards("denoise")):
            default_model("denoise", 3, codec=kind)  # raises: none installed, and says how to train one
        return kind
    card = find_card(model)
    if card.task != "denoise":
        raise UsageError(f"model '{card.name}' is for the {card.task} task, not for denoising")
    kinds = model_kinds(card)
    if kind is not None and kind not in kinds:
        raise UsageError(f"model '{card.name}' removes {' and '.join(kinds)} artefacts, not {kind}; "
                         f"leave out --kind or give a {kind} model")
    return kind or kinds[0]


class Denoiser:
    """Loads models on first use (the grey one for grey images, the colour one otherwise, or the
    one the user names) and denoises (H, W, C) float32 arrays in [0, 1].

    kind: "gaussian" (noise; the map is sigma, told or estimated), or the codec whose artefacts to
    remove, "jpeg" (the map is made from the JPEG quality: told, read from the file's quantisation
    tables, or estimated from the pixels) or "webp" / "avif" (blind); None: the named model's kind,
    else gaussian."""

    def __init__(self, model: str | None = None, options: EngineOptions | None = None, kind: str | None = None):
        self.model_name = model
        self.kind = resolve_kind(model, kind)
        self.runner = Runner(options)
        self._models: dict[int, Any] = {}
        if model is not None:
            verify_model(find_card(model))  # a damaged model fails here, once, not once per image
        else:
            from ..registry import pretrained_cards

            for channels in {c.channels for c in pretrained_cards("denoise") if self.kind in model_kinds(c)}:
                verify_model(default_model("denoise", channels, codec=self.codec))  # a missing one fails when needed

    @property
    def codec(self) -> str | None:
        """The codec whose artefacts this denoiser removes; None for Gaussian noise."""
        return None if self.kind == "gaussian" else self.kind

    def model_for(self, channels: int):
        key = 0 if self.model_name else channels
        if key not in self._models:
            if self.model_name:
                card = find_card(self.model_name)
            else:
                try:
                    card = default_model("denoise", channels, codec=self.codec)
                except ModelError:
                    if self.codec is None or channels == 3:
                        raise
                    card = default_model("denoise", 3, codec=self.codec)  # post-filters serve grey images in colour
            self._models[key] = self.runner.prepare(load_model(card, "cpu"))
        return self._models[key]

    def _condition(self, model, pixels: np.ndarray, sigma: float | None, quality: float | None,
                   file_quality: float | None, info: dict) -> float | None:
        """The condition map's value for this image (None: leave the image as it is; info says why)."""
        from ..noise import estimate_noise, min_pixels_for_estimate

        c = pixels.shape[2]
        if self.codec is not None:
            table = model.card.degradation.get("condition", {})
            if table.get(self.kind) != "quality":
                return float(table[self.kind])  # blind: a constant per codec
            from ..codecs import jpeg_condition, jpeg_quality_from_pixels

            if quality is not None:
                info["jpeg_quality"] = quality
            elif file_quality is not None:
                quality = file_quality
                info.update(jpeg_quality=quality, jpeg_quality_from="file")
            else:
                # 8-bit pixels as they are (the same values as their float copy, which it would round back)
                quality = jpeg_quality_from_pixels(pixels if pixels.dtype == np.uint8 else as_float(pixels))
                info.update(jpeg_quality=quality, jpeg_quality_from="pixels")
                if quality is None:
                    info["note"] = ("no JPEG grid found in the pixels (never a JPEG, or resized or cropped since); "
                                    "left unchanged: pass the quality it was saved at (--jpeg-quality; quality= in Python)")
                    return None
            return jpeg_condition(quality)
        if sigma is not None:
            info["sigma"] = sigma
            return sigma / 255.0
        # A tiny image's estimate is noise itself (3x5 read as sigma 29): leave it as it is
        # rather than denoise at an invented level; told sigma, it is denoised as told.
        h, w = pixels.shape[:2]
        need = min_pixels_for_estimate(c)
        if h * w < need:
            kind = "colour" if c >= 3 else "grey"
            info["sigma_estimated"] = None
            info["note"] = (f"image too small for a reliable noise estimate ({w}x{h} = {h * w} px < {need} px "
                            f"for {kind}); left unchanged, pass --sigma (sigma= in Python) to denoise it")
            return None
        # Integer pixels are measured as they are (the same estimate as their float copy, which
        # for a 100 MP photo would be 1.2 GB).
        top = float(np.iinfo(pixels.dtype).max) if pixels.dtype.kind in "ui" else 1.0
        sigma = float(estimate_noise(pixels, data_range=top))
        info["sigma_estimated"] = round(sigma, 2)
        return sigma / 255.0

    def __call__(self, pixels: np.ndarray, sigma: float | None = None, strength: float = 1.0,
                 quality: float | None = None, file_quality: float | None = None,
                 bits: int | None = None, in_place: bool = False) -> tuple[np.ndarray, dict]:
        """quality: the JPEG quality (1-100) for the JPEG post-filter; file_quality: what the file's
        tables say (used when quality is None). `bits` 8 or 16: where nothing follows the model
        (full strength, the model's channel count), the output is assembled as uint8/uint16 tile by
        tile instead of float32 (a 100 MP photo: 0.3 GB instead of 1.2 GB, and no blend weights).
        `in_place`: integer pixels of that type may be overwritten by the output (the command line's
        decoded files, which nothing else reads): one image's memory instead of two."""
        if not 0.0 <= strength <= 1.0:
            raise UsageError("strength must be between 0 and 1")
        if quality is not None and not 1 <= quality <= 100:
            raise UsageError("the JPEG quality must be between 1 and 100")
        c = pixels.shape[2]
        info: dict = {} if self.kind == "gaussian" else {"kind": self.kind}
        model = self.model_for(1 if c == 1 else 3)
        mc = model.in_channels
        direct = mc == c and strength == 1.0 and bits in (8, 16)
        if not direct:  # integer pixels (read_image(integer=True)) go to the model as they are only here
            pixels = as_float(pixels)
        cond = self._condition(model, pixels, sigma, quality, file_quality, info)
        if cond is None:
            return as_float(pixels).astype(np.float32), info
        torch = self.runner.torch
        s = torch.tensor([cond], device=self.runner.device)
        info["model"] = model.card.name
        if direct:
            dtype = np.uint16 if bits == 16 else np.uint8
            over = in_place and pixels.dtype == dtype and pixels.flags.writeable and pixels.flags.c_contiguous
            out = self.runner.run(lambda x: model(x, s.expand(x.shape[0])), pixels, out_dtype=dtype,
                                  into=pixels if over else None)
            return out, info
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
        return out.astype(np.float32), info

    def picture(self, pic: Picture, sigma: float | None = None, strength: float = 1.0,
                quality: float | None = None, in_place: bool = False) -> tuple[Picture, dict]:
        """`in_place`: pic's pixels may become the output's (see __call__)."""
        out, info = self(pic.pixels, sigma, strength, quality, pic.jpeg_quality, bits=pic.bit_depth,
                         in_place=in_place)
        return pic.with_pixels(out), info


def denoise(image, sigma: float | None = None, strength: float = 1.0, model: str | None = None,
            device: str = "auto", tile: int | None = None, precision: str = "auto", kind: str | None = None,
            quality: float | None = None):
    """Denoise one image; blind (noise level estimated) unless `sigma` (0-255 units) is given.
    Blind, an image under 1024 pixels (colour; 3072 grey) is returned unchanged: too small for a
    reliable noise estimate (aetool.noise.min_pixels_for_estimate).

    kind="jpeg" removes JPEG artefacts instead (the model denoise-jpeg), told the JPEG `quality`
    or reading it from a PIL JPEG image's quantisation tables or, failing both, from the pixels;
    kind="webp" or "avif" removes those codecs' artefacts (blind).

    image: a PIL image (returned as a PIL image of the same mode), a numpy array (H, W) or
    (H, W, 3|4) of uint8 / uint16 / float in [0, 1] (returned with the same shape and dtype), or
    a torch tensor (C, H, W) or (N, C, H, W) float in [0, 1] (returned likewise). Alpha passes through.
    """
    den = _cached(Denoiser, model, device, tile, precision, kind=kind)
    file_quality = None
    if getattr(image, "format", None) == "JPEG" and getattr(image, "quantization", None):
        from ..codecs import jpeg_quality_from_tables

        file_quality = jpeg_quality_from_tables(image.quantization)
    return _apply(image, lambda colour, alpha: (den(colour, sigma, strength, quality, file_quality)[0], alpha),
                  "denoise")
