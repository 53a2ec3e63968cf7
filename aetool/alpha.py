"""Transparency helpers for commands that change pixels near transparent areas."""
from __future__ import annotations

import numpy as np


def fill_transparent(pixels: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Give fully transparent pixels the colour of the nearest visible ones (push-pull).

    Their stored colour is arbitrary (often black or white) and invisible, but a filter or a
    network that looks across the edge mixes it into the visible pixels as a dark or light fringe.
    Visible pixels (alpha > 0) are returned unchanged. pixels: (H, W, C) float; alpha: (H, W) in [0, 1].
    """
    hole = alpha <= 0
    if not hole.any() or hole.all():
        return pixels
    # Push: a pyramid of alpha-weighted colour sums and weights, halving down to one pixel.
    levels = []
    c, a = pixels * alpha[..., None], alpha.astype(np.float32)
    while True:
        levels.append((c, a))
        h, w = a.shape
        if h == 1 and w == 1:
            break
        c = np.pad(c, ((0, h % 2), (0, w % 2), (0, 0)))
        a = np.pad(a, ((0, h % 2), (0, w % 2)))
        c = c[0::2, 0::2] + c[1::2, 0::2] + c[0::2, 1::2] + c[1::2, 1::2]
        a = a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]
    # Pull: where a level has no weight, take the colour of the coarser level.
    c, a = levels[-1]
    colour = c / a[..., None]
    for c, a in reversed(levels[:-1]):
        h, w = a.shape
        coarse = np.repeat(np.repeat(colour, 2, axis=0), 2, axis=1)[:h, :w]
        known = a > 0
        colour = np.where(known[..., None], c / np.where(known, a, 1.0)[..., None], coarse)
    return np.where(hole[..., None], colour, pixels).astype(pixels.dtype)
