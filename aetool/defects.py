"""Synthetic defects for training the repair autoencoder (DRAEM-style, Zavrtanik et al. 2021):
a normal patch gets a region replaced, and the network learns to put it back.

Regions are thresholded fractal noise (octaves of smoothly enlarged random grids, as Perlin
noise is used in DRAEM) or thin scratches. They are filled with a patch cut from another normal
image (CutPaste, Li et al. 2021) under a random brightness and contrast change, with noise, or
with a flat shade, blended at a random opacity. Nothing here comes from a test set: the
benchmark draws its own test defects with other code."""
from __future__ import annotations

import numpy as np


def fractal_noise(rng: np.random.Generator, h: int, w: int, octaves: int = 4, base: int = 2) -> np.ndarray:
    """Smooth noise in about [-1, 1]: random grids of base * 2^o cells, enlarged bicubically, summed
    with amplitude 2^-o."""
    from PIL import Image

    out = np.zeros((h, w), np.float32)
    for o in range(octaves):
        cells = base * 2 ** o + 1
        grid = rng.standard_normal((cells, cells)).astype(np.float32)
        out += 0.5 ** o * np.asarray(Image.fromarray(grid, "F").resize((w, h), Image.BICUBIC))
    return out / 1.9


def blob_mask(rng: np.random.Generator, h: int, w: int, area: tuple[float, float] = (0.01, 0.2)) -> np.ndarray:
    """(h, w) float32 mask in {0, 1}: fractal noise above the quantile that covers a random share of
    the patch; a random window keeps it to one part of the patch."""
    noise = fractal_noise(rng, h, w, base=int(rng.integers(1, 4)))
    share = rng.uniform(*area)
    mask = noise > np.quantile(noise, 1 - min(1.0, 3 * share))
    wh, ww = max(4, int(h * rng.uniform(0.2, 0.7))), max(4, int(w * rng.uniform(0.2, 0.7)))
    y0, x0 = int(rng.integers(0, h - wh + 1)), int(rng.integers(0, w - ww + 1))
    window = np.zeros((h, w), bool)
    window[y0:y0 + wh, x0:x0 + ww] = True
    return (mask & window).astype(np.float32)


def scratch_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w) float32 mask of 1-3 thin polylines of 1-3 pixels."""
    from PIL import Image, ImageDraw

    im = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(1, 4))):
        points = [(float(rng.uniform(0, w)), float(rng.uniform(0, h)))]
        for _ in range(int(rng.integers(1, 4))):
            step = rng.uniform(0.1, 0.4) * max(h, w)
            angle = rng.uniform(0, 2 * np.pi)
            points.append((points[-1][0] + step * np.cos(angle), points[-1][1] + step * np.sin(angle)))
        draw.line(points, fill=255, width=int(rng.integers(1, 4)))
    return (np.asarray(im) > 0).astype(np.float32)


def corrupt(rng: np.random.Generator, clean: np.ndarray, donors: np.ndarray, clean_share: float = 0.3
            ) -> tuple[np.ndarray, np.ndarray]:
    """Defects pasted into a batch of patches.

    clean: (N, H, W, C) float32 in [0, 1]; donors: patches of the same shape to cut fills from
    (other normal images). `clean_share` of the patches are left as they are, so that the network
    also learns to keep normal images unchanged. Returns the corrupted batch and the masks (N, H, W)."""
    n, h, w, c = clean.shape
    out = clean.copy()
    masks = np.zeros((n, h, w), np.float32)
    for i in range(n):
        if rng.random() < clean_share:
            continue
        mask = scratch_mask(rng, h, w) if rng.random() < 0.3 else blob_mask(rng, h, w)
        kind = rng.random()
        if kind < 0.5:  # another normal patch, turned and re-lit
            fill = np.rot90(donors[int(rng.integers(0, len(donors)))], int(rng.integers(0, 4)))
            fill = (fill - fill.mean()) * rng.uniform(0.5, 1.5) + fill.mean() + rng.uniform(-0.3, 0.3)
        elif kind < 0.75:  # noise about the local level
            fill = clean[i] + rng.normal(0, rng.uniform(0.05, 0.3), (h, w, c))
        else:  # a flat shade, darker or lighter
            fill = np.full((h, w, c), rng.uniform(0, 1), np.float32)
        opacity = rng.uniform(0.5, 1.0)
        m = (mask * opacity)[..., None]
        out[i] = np.clip((1 - m) * clean[i] + m * fill, 0, 1)
        masks[i] = mask
    return out.astype(np.float32), masks
