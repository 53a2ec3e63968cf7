"""Random hole masks for training and measuring inpainting (True = hole): thin strokes, thick
strokes and boxes, in the spirit of LaMa's mask generators (Suvorov et al., WACV 2022).

`protocol_mask(kind, h, w, i)` is the benchmark's mask of image i (docs/protocol.md,
"Inpainting"): drawn from numpy.random.default_rng(7000 + i); thin strokes cover 5-10% of the
pixels, thick strokes 20-30%, and a box 1/16 of the image area.
"""
from __future__ import annotations

import math

import numpy as np

KINDS = ("thin", "thick", "box")
# Stroke widths in pixels per 512 pixels of the shorter side, and the covered fraction.
STROKES = {"thin": ((2.0, 6.0), (0.05, 0.10)), "thick": ((14.0, 32.0), (0.20, 0.30))}


def _stroke(draw, h: int, w: int, rng: np.random.Generator, width_range: tuple[float, float]) -> None:
    """One stroke: a polyline of 2-6 segments with round joints."""
    unit = min(h, w) / 512.0
    width = max(1, int(round(rng.uniform(*width_range) * unit)))
    y, x = rng.uniform(0, h), rng.uniform(0, w)
    angle = rng.uniform(0, 2 * math.pi)
    points = [(x, y)]
    for _ in range(int(rng.integers(2, 7))):
        angle += rng.uniform(-1.2, 1.2)
        length = rng.uniform(0.05, 0.25) * max(h, w)
        nx, ny = x + length * math.cos(angle), y + length * math.sin(angle)
        if not (0 <= nx < w and 0 <= ny < h):  # turn back rather than run along the border
            angle += math.pi
            nx, ny = x + length * math.cos(angle), y + length * math.sin(angle)
        x, y = float(np.clip(nx, 0, w - 1)), float(np.clip(ny, 0, h - 1))
        points.append((x, y))
    draw.line(points, fill=255, width=width)
    r = width / 2
    for px, py in points:
        draw.ellipse((px - r, py - r, px + r, py + r), fill=255)


def stroke_mask(h: int, w: int, rng: np.random.Generator, width_range: tuple[float, float],
                fraction: tuple[float, float]) -> np.ndarray:
    """Strokes until their cover reaches a target drawn from `fraction`; a stroke that would
    overshoot the range's top is dropped (up to a few tries)."""
    from PIL import Image, ImageDraw

    target = rng.uniform(*fraction)
    im = Image.new("L", (w, h), 0)
    cover = 0.0
    for _ in range(200):
        if cover >= target:
            break
        trial = im.copy()
        _stroke(ImageDraw.Draw(trial), h, w, rng, width_range)
        new_cover = float(np.count_nonzero(np.asarray(trial))) / (h * w)
        if new_cover <= fraction[1] or cover == 0.0:
            im, cover = trial, new_cover
    return np.asarray(im) > 0


def box_mask(h: int, w: int, rng: np.random.Generator, area: float = 1 / 16) -> np.ndarray:
    """One axis-aligned box of `area` times the image area, aspect ratio 1:2 to 2:1, inside the image."""
    aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    bh = min(h, max(1, int(round(math.sqrt(area * h * w / aspect)))))
    bw = min(w, max(1, int(round(area * h * w / bh))))
    y = int(rng.integers(0, h - bh + 1))
    x = int(rng.integers(0, w - bw + 1))
    mask = np.zeros((h, w), bool)
    mask[y:y + bh, x:x + bw] = True
    return mask


def protocol_mask(kind: str, h: int, w: int, i: int) -> np.ndarray:
    """The benchmark's mask of kind `kind` for image index i (sorted by file name)."""
    rng = np.random.default_rng(7000 + i)
    if kind == "box":
        return box_mask(h, w, rng)
    widths, fraction = STROKES[kind]
    return stroke_mask(h, w, rng, widths, fraction)


def training_mask(h: int, w: int, rng: np.random.Generator, kinds: tuple[str, ...] = KINDS,
                  max_fraction: float = 0.5) -> np.ndarray:
    """A random training mask: one kind drawn from `kinds`, sizes spread around the protocol's
    (thin 2-15%, thick 10-40%, boxes 1/64 to 1/6 of the area), never more than `max_fraction`."""
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "box":
        mask = box_mask(h, w, rng, area=min(max_fraction, math.exp(rng.uniform(math.log(1 / 64), math.log(1 / 6)))))
    elif kind == "thin":
        mask = stroke_mask(h, w, rng, STROKES["thin"][0], (0.02, min(0.15, max_fraction)))
    else:
        mask = stroke_mask(h, w, rng, STROKES["thick"][0], (0.10, min(0.40, max_fraction)))
    return mask
