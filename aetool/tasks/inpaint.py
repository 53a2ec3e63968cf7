"""Inpainting: fill the holes of an image (the pixels a mask marks) with an inpainting
autoencoder; every other pixel comes back exactly as it was.

`Inpainter` loads the model and fills (H, W, C) float arrays, running the network only on crops
around the holes (`hole_boxes`); the command line runs its `picture` for every file. `inpaint()`
is the Python API for one PIL image, numpy array or torch tensor and a mask.

Fill modes: `smooth` is the network's fill (the best PSNR; right for scratches, dust and text);
`texture` then puts texture back into each hole by exemplar-based synthesis from the known pixels
of the same image, guided by the network's fill (aetool.texture; for removing objects); `auto`
gives texture to the holes at least TEXTURE_MIN_WIDTH pixels wide and the smooth fill to the
others."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..engine import EngineOptions, Runner
from ..errors import UsageError
from ..imageio import Picture
from ..registry import default_model, find_card, load_model, verify_model
from .cache import _cached
from .convert import _apply
from .inpaint_options import ENSEMBLE, FILLS, TEXTURE_MIN_WIDTH, check_fill  # noqa: F401 (re-exported)


class Inpainter:
    """Fills holes (mask True) of (H, W, C) float32 arrays in [0, 1]; every other pixel is returned
    exactly as it was.

    Only crops around the holes run through the network, each with a margin of the model's reach,
    so that a large photo with a few small holes costs the time of its holes. A hole wider than the
    model's reach is first filled at half resolution (recursively), and that coarse fill becomes
    known context for a full-resolution pass over the hole's outer band."""

    CELL = 32  # hole bookkeeping grid, a multiple of the model's downsampling factor

    def __init__(self, model: str | None = None, options: EngineOptions | None = None, fill: str = "auto",
                 seed: int = 0):
        self.fill, self.seed = check_fill(fill), int(seed)
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
        info = {"model": self.card.name, "fill": self.fill, "ensemble": self.runner.options.ensemble,
                "hole_pixels": int(mask.sum())}
        if not mask.any():
            return pixels, info
        # Only the hole pixels of the copy are written, crop by crop: a large photo with a few
        # small holes costs one copy of it, not whole-image passes (benchmarks/large_photo.py).
        out = pixels.astype(np.float32, copy=True)
        boxes = hole_boxes(mask, self.margin, self.CELL)
        info["regions"] = len(boxes)
        for (y0, y1, x0, x1), own in boxes:
            filled = self._fill(_rgb(pixels[y0:y1, x0:x1]), mask[y0:y1, x0:x1])
            take = mask[y0:y1, x0:x1] & own
            out[y0:y1, x0:x1][take] = np.clip(_like(filled, pixels)[take], 0.0, 1.0)
        if self.fill != "smooth":
            info["textured_holes"] = self._texture(out, mask)
        return out, info

    def _texture(self, out: np.ndarray, mask: np.ndarray) -> int:
        """Texture for the hole pixels that the fill mode picks, in place on the smooth fill `out`;
        returns how many separate regions got it. `auto` picks the parts of the holes at least
        TEXTURE_MIN_WIDTH pixels wide (a morphological opening: a thin scratch running into a big
        hole keeps its smooth fill). Each group of nearby regions is synthesized in a crop wide
        enough to hold texture to copy (three times the deepest hole's depth, at least 48 pixels,
        on the CELL grid); the other holes of the crop are no source of texture. All the work is
        done in crops around the holes."""
        from scipy import ndimage

        from ..masks import grow, shrink
        from ..texture import hole_depth, synthesize

        if mask.all():  # nothing known: no texture to copy
            return 0
        textured = np.zeros_like(mask)
        depth = 0
        # The opening only looks TEXTURE_MIN_WIDTH pixels around a hole pixel: exact in crops
        # with that margin.
        for (y0, y1, x0, x1), own in hole_boxes(mask, TEXTURE_MIN_WIDTH, self.CELL):
            m = mask[y0:y1, x0:x1]
            if self.fill == "auto":
                radius = TEXTURE_MIN_WIDTH // 2
                m = m & grow(shrink(m, radius), radius)
            m = m & own
            textured[y0:y1, x0:x1] |= m
            depth = max(depth, hole_depth(m))
        if not depth:
            return 0
        regions = 0
        for (y0, y1, x0, x1), own in hole_boxes(textured, max(48, 3 * depth), self.CELL):
            hole = textured[y0:y1, x0:x1] & own
            if not hole.any():
                continue
            regions += ndimage.label(hole, structure=np.ones((3, 3), bool))[1]
            # The seed of a crop: the user's seed and the crop's place, so that one hole's texture
            # does not depend on how many holes came before it.
            crop = _rgb(out[y0:y1, x0:x1])
            filled = synthesize(crop, hole, crop, seed=[self.seed, y0, x0], unknown=mask[y0:y1, x0:x1])
            out[y0:y1, x0:x1][hole] = _like(filled, out)[hole]
        return regions

    @property
    def margin(self) -> int:
        m = self.model.multiple
        return -(-self.model.context // m) * m  # aligned, so crops keep the network's grid

    def _predict(self, crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
        model = self.model
        x = np.concatenate([crop, mask[..., None].astype(np.float32)], axis=2)
        return self.runner.run(lambda t: model(t[:, :3], t[:, 3:4]), x, out_channels=3, context=model.context)

    def _fill(self, crop: np.ndarray, mask: np.ndarray, depth: int = 0) -> np.ndarray:
        from ..masks import shrink
        from ..sizing import resize_float

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


def _rgb(pixels: np.ndarray) -> np.ndarray:
    """Three channels for the network and the texture synthesis (grey repeated)."""
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def _like(rgb: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Back to the channels of `pixels` (grey: the mean)."""
    return rgb.mean(axis=2, keepdims=True) if pixels.shape[2] == 1 else rgb


def hole_boxes(mask: np.ndarray, margin: int, cell: int) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
    """Crops that cover the holes with `margin` pixels of context: cells of the grid that hold a
    hole, grown by the margin, grouped into connected regions; each region's bounding box, and the
    mask of the pixels it owns (its cells), so that overlapping boxes never fill a pixel twice.
    When the boxes would cover most of the image, one box: the whole image."""
    from ..masks import grow

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


def inpaint(image, mask, dilate: int = 0, model: str | None = None, device: str = "auto",
            tile: int | None = None, precision: str = "auto", fill: str = "auto", seed: int = 0,
            ensemble: int = ENSEMBLE):
    """Fill the holes of one image. mask: a boolean or 0/non-zero (H, W) array (numpy, or a PIL
    image), True / non-zero = fill; `dilate` grows it by N pixels. fill: "auto" (texture for holes
    at least TEXTURE_MIN_WIDTH pixels wide, the smooth fill for thinner ones), "smooth" (the
    network's fill: best for scratches and dust) or "texture" (object removal); seed: the texture
    synthesis's random seed (the same seed gives the same pixels); ensemble: the network runs on 1,
    2, 4 or 8 flipped copies of each tile and their fills are averaged (default ENSEMBLE; N times
    the network's time). Takes and returns the same kinds as `denoise`; pixels outside the mask
    come back unchanged, alpha passes through.

        from aetool import inpaint
        clean = inpaint(pil_image, mask=pil_mask, dilate=3)
        removed = inpaint(pil_image, mask=object_mask, fill="texture", seed=1)
    """
    from ..masks import channel_max, grow

    m = np.asarray(mask)
    if m.ndim == 3:
        m = channel_max(m)
    m = grow(m > 0, dilate)
    inp = _cached(Inpainter, model, device, tile, precision, ensemble=ensemble, fill=fill, seed=seed)

    def run(colour, alpha):
        if m.shape != colour.shape[:2]:
            raise UsageError(f"the mask is {m.shape[1]}x{m.shape[0]} but the image is "
                             f"{colour.shape[1]}x{colour.shape[0]}")
        return inp(colour, m)[0], alpha

    return _apply(image, run, "inpaint")
