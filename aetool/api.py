"""The Python API: `denoise(image)` and `upscale(image)` for PIL images, numpy arrays and torch
tensors, and the per-picture functions that the command line runs for every file."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import numpy as np

from .engine import EngineOptions, Runner
from .errors import UsageError
from .imageio import Picture
from .registry import default_model, find_card, load_model, verify_model


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
            from .registry import pretrained_cards

            for channels in {c.channels for c in pretrained_cards("denoise")}:  # a missing one fails when needed
                verify_model(default_model("denoise", channels))

    def model_for(self, channels: int):
        key = 0 if self.model_name else channels
        if key not in self._models:
            card = find_card(self.model_name) if self.model_name else default_model("denoise", channels)
            self._models[key] = self.runner.prepare(load_model(card, "cpu"))
        return self._models[key]

    def __call__(self, pixels: np.ndarray, sigma: float | None = None, strength: float = 1.0) -> tuple[np.ndarray, dict]:
        from .noise import estimate_noise, min_pixels_for_estimate

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
            from .registry import pretrained_cards

            self._scales = sorted({c.config.get("scale") for c in pretrained_cards("upscale") if c.channels == 3})
        return self._scales

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


class Inpainter:
    """Fills holes (mask True) of (H, W, C) float32 arrays in [0, 1]; every other pixel is returned
    exactly as it was.

    Only crops around the holes run through the network, each with a margin of the model's reach,
    so that a large photo with a few small holes costs the time of its holes. A hole wider than the
    model's reach is first filled at half resolution (recursively), and that coarse fill becomes
    known context for a full-resolution pass over the hole's outer band."""

    CELL = 32  # hole bookkeeping grid, a multiple of the model's downsampling factor

    def __init__(self, model: str | None = None, options: EngineOptions | None = None):
        self.runner = Runner(options)
        self.card = find_card(model) if model is not None else default_model("inpaint", 3)
        if self.card.task != "inpaint":
            raise UsageError(f"model '{self.card.name}' is for the {self.card.task} task, not for inpainting")
        verify_model(self.card)  # a damaged model fails here, once, not once per image
        self._model = None

    @property
    def model(self):
        if self._model is None:
            self._model = self.runner.prepare(load_model(self.card, "cpu"))
        return self._model

    def __call__(self, pixels: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, dict]:
        info = {"model": self.card.name, "hole_pixels": int(mask.sum())}
        if not mask.any():
            return pixels, info
        c = pixels.shape[2]
        work = np.repeat(pixels, 3, axis=2) if c == 1 else pixels
        out = work.copy()
        boxes = hole_boxes(mask, self.margin, self.CELL)
        info["regions"] = len(boxes)
        for (y0, y1, x0, x1), own in boxes:
            filled = self._fill(work[y0:y1, x0:x1], mask[y0:y1, x0:x1])
            take = mask[y0:y1, x0:x1] & own
            out[y0:y1, x0:x1][take] = filled[take]
        if c == 1:
            out = out.mean(axis=2, keepdims=True)
        out = np.where(mask[..., None], np.clip(out, 0.0, 1.0), pixels)  # known pixels: bit for bit
        return out.astype(np.float32), info

    @property
    def margin(self) -> int:
        m = self.model.multiple
        return -(-self.model.context // m) * m  # aligned, so crops keep the network's grid

    def _predict(self, crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
        model = self.model
        x = np.concatenate([crop, mask[..., None].astype(np.float32)], axis=2)
        return self.runner.run(lambda t: model(t[:, :3], t[:, 3:4]), x, out_channels=3, context=model.context)

    def _fill(self, crop: np.ndarray, mask: np.ndarray, depth: int = 0) -> np.ndarray:
        from .masks import shrink
        from .sizing import resize_float

        reach = self.model.context // 2
        deep = shrink(mask, reach)
        h, w = mask.shape
        out = crop.copy()
        if deep.any() and min(h, w) >= 4 * self.model.multiple and depth < 6:
            size = ((h + 1) // 2, (w + 1) // 2)
            small_mask = resize_float(mask.astype(np.float32), size) > 0.01  # a hole if partly a hole
            small = self._fill(resize_float(crop, size), small_mask, depth + 1)
            coarse = resize_float(small, (h, w))
            out[deep] = coarse[deep]
            band = mask & ~deep
            if band.any():
                pred = self._predict(out, band)
                out[band] = pred[band]
            return out
        pred = self._predict(crop, mask)
        out[mask] = pred[mask]
        return out

    def picture(self, pic: Picture, mask: np.ndarray, drop_alpha: bool = False) -> tuple[Picture, dict]:
        out, info = self(pic.pixels, mask)
        return replace(pic, pixels=out, alpha=None if drop_alpha else pic.alpha), info


def hole_boxes(mask: np.ndarray, margin: int, cell: int) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
    """Crops that cover the holes with `margin` pixels of context: cells of the grid that hold a
    hole, grown by the margin, grouped into connected regions; each region's bounding box, and the
    mask of the pixels it owns (its cells), so that overlapping boxes never fill a pixel twice.
    When the boxes would cover most of the image, one box: the whole image."""
    from .masks import grow

    h, w = mask.shape
    gh, gw = -(-h // cell), -(-w // cell)
    padded = np.zeros((gh * cell, gw * cell), bool)
    padded[:h, :w] = mask
    cells = padded.reshape(gh, cell, gw, cell).any(axis=(1, 3))
    reach = grow(cells, -(-margin // cell))
    labels = np.zeros((gh, gw), np.int32)
    regions = []
    for start in zip(*np.nonzero(reach)):  # flood fill on the small grid of cells
        if labels[start]:
            continue
        regions.append([])
        labels[start] = len(regions)
        stack = [start]
        while stack:
            cy, cx = stack.pop()
            regions[-1].append((cy, cx))
            for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                if 0 <= ny < gh and 0 <= nx < gw and reach[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = len(regions)
                    stack.append((ny, nx))
    boxes = []
    for k, region in enumerate(regions, start=1):
        ys, xs = zip(*region)
        cy0, cy1, cx0, cx1 = min(ys), max(ys) + 1, min(xs), max(xs) + 1
        y0, y1, x0, x1 = cy0 * cell, min(h, cy1 * cell), cx0 * cell, min(w, cx1 * cell)
        # Only this region's cells, expanded to pixels inside its box (not over the whole image).
        own = np.repeat(np.repeat(labels[cy0:cy1, cx0:cx1] == k, cell, axis=0), cell, axis=1)
        boxes.append(((y0, y1, x0, x1), own[:y1 - y0, :x1 - x0]))
    if sum((b[1] - b[0]) * (b[3] - b[2]) for b, _ in boxes) > 0.6 * h * w:
        return [((0, h, 0, w), np.ones((h, w), bool))]
    return boxes


_RUNNERS: dict[tuple, Any] = {}


def _cached(cls, model: str | None, device: str, tile: int | None, precision: str):
    """One Denoiser/Upscaler/Inpainter per settings, so that repeated API calls load a model once."""
    key = (cls, model, device, tile, precision)
    if key not in _RUNNERS:
        _RUNNERS[key] = cls(model, EngineOptions(device=device, tile=tile, precision=precision))
    return _RUNNERS[key]


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


def inpaint(image, mask, dilate: int = 0, model: str | None = None, device: str = "auto",
            tile: int | None = None, precision: str = "auto"):
    """Fill the holes of one image. mask: a boolean or 0/non-zero (H, W) array (numpy, or a PIL
    image), True / non-zero = fill; `dilate` grows it by N pixels. Takes and returns the same kinds
    as `denoise`; pixels outside the mask come back unchanged, alpha passes through.

        from aetool import inpaint
        clean = inpaint(pil_image, mask=pil_mask, dilate=3)
    """
    from .masks import grow

    m = np.asarray(mask)
    if m.ndim == 3:
        m = m.max(axis=2)
    m = grow(m > 0, dilate)
    inp = _cached(Inpainter, model, device, tile, precision)

    def run(colour, alpha):
        if m.shape != colour.shape[:2]:
            raise UsageError(f"the mask is {m.shape[1]}x{m.shape[0]} but the image is "
                             f"{colour.shape[1]}x{colour.shape[0]}")
        return inp(colour, m)[0], alpha

    return _apply(image, run, "inpaint")


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
