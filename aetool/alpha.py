"""Transparency helpers for commands that change pixels near transparent areas."""
from __future__ import annotations

import numpy as np


def fill_transparent(pixels: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Give fully transparent pixels the colour of the nearest visible ones (push-pull, weighted
    by alpha).

    Their stored colour is arbitrary (often black or white) and invisible, but a filter or a
    network that looks across the edge mixes it into the visible pixels as a dark or light fringe.
    Visible pixels (alpha > 0) are returned unchanged. pixels: (H, W, C) float; alpha: (H, W) in [0, 1].
    """
    import torch

    from .layers import push_pull_fill

    hole = alpha <= 0
    if not hole.any() or hole.all():
        return pixels
    x = torch.from_numpy(np.ascontiguousarray(pixels, np.float32)).permute(2, 0, 1)[None]
    a = torch.from_numpy(np.ascontiguousarray(alpha, np.float32))[None, None]
    colour = push_pull_fill(x, a)[0].permute(1, 2, 0).numpy()
    return np.where(hole[..., None], colour, pixels).astype(pixels.dtype)
