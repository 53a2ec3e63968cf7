"""Training images held in memory and random patch sampling with flips and rotations."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..discovery import IMAGE_EXTENSIONS
from ..errors import UsageError


def list_images(dirs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for d in dirs:
        d = Path(d).expanduser()
        if d.is_file():
            files.append(d)
            continue
        if not d.is_dir():
            raise UsageError(f"training data folder {d} does not exist")
        files.extend(sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
                            and not p.name.startswith(".")))
    if not files:
        raise UsageError(f"no images found in {', '.join(map(str, dirs))}")
    return files


def split_files(data: list[Path], val: list[Path] | None, val_count: int) -> tuple[list[Path], list[Path]]:
    """Training and validation files: --val folders if given, else the last `val_count` training
    files (sorted by path) held out, the declared validation split."""
    files = list_images(data)
    if val:
        return files, list_images(val)
    return files[:-val_count], files[-val_count:]


def load_images(files: list[Path], channels: int, min_size: int) -> list[np.ndarray]:
    """uint8 arrays (H, W, C); images smaller than `min_size` are skipped."""
    from PIL import Image, ImageOps

    out = []
    for f in files:
        with Image.open(f) as im:
            im = ImageOps.exif_transpose(im).convert("L" if channels == 1 else "RGB")
            a = np.asarray(im)
        if a.ndim == 2:
            a = a[:, :, None]
        if min(a.shape[:2]) >= min_size:
            out.append(np.ascontiguousarray(a))
    return out


class PatchSampler:
    """Draws random patches (uniform over images, weighted by area) with the 8 dihedral transforms."""

    def __init__(self, images: list[np.ndarray], patch: int):
        self.images = images
        self.patch = patch
        areas = np.array([(a.shape[0] - patch + 1) * (a.shape[1] - patch + 1) for a in images], float)
        self.weights = areas / areas.sum()

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        p = self.patch
        idx = rng.choice(len(self.images), size=n, p=self.weights)
        out = np.empty((n, p, p, self.images[0].shape[2]), np.uint8)
        for k, i in enumerate(idx):
            a = self.images[i]
            y = rng.integers(0, a.shape[0] - p + 1)
            x = rng.integers(0, a.shape[1] - p + 1)
            patch = a[y:y + p, x:x + p]
            t = rng.integers(0, 8)
            if t & 4:
                patch = patch[:, ::-1]
            out[k] = np.rot90(patch, t & 3)
        return out  # (N, p, p, C) uint8


def center_crops(images: list[np.ndarray], size: int) -> list[np.ndarray]:
    out = []
    for a in images:
        h, w = a.shape[:2]
        s = min(size, h, w)
        y, x = (h - s) // 2, (w - s) // 2
        out.append(a[y:y + s, x:x + s])
    return out
