"""Training data: the files (and the validation hold-out), the images held in memory, and
random patch sampling with flips and rotations."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..discovery import IMAGE_EXTENSIONS
from ..errors import UsageError

# Without --val, at most one file in this many is held out for validation (20 %), so the
# training set always keeps the large majority; fewer files than this hold none out.
HOLD_OUT_ONE_IN = 5
# Fewer training images than this get a warning: a useful model needs many varied photos.
FEW_IMAGES = 20


def list_images(dirs: list[Path], role: str = "training data") -> list[Path]:
    files: list[Path] = []
    for d in dirs:
        d = Path(d).expanduser()
        if d.is_file():
            files.append(d)
            continue
        if not d.is_dir():
            raise UsageError(f"{role} folder {d} does not exist")
        files.extend(sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
                            and not p.name.startswith(".")))
    if not files:
        kinds = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise UsageError(f"no images found in {', '.join(map(str, dirs))} (looked for {kinds} files, "
                         "subfolders included)")
    return files


@dataclass
class Split:
    """Training and validation files, whether validation is held out from training, and the
    warnings for the user about the data (printed by the training loop)."""

    train: list[Path]
    val: list[Path]
    held_out: bool
    warnings: list[str] = field(default_factory=list)


def split_files(data: list[Path], val: list[Path] | None, val_count: int) -> Split:
    """--val folders if given; else the last files (sorted by path) are held out: `val_count` at
    most, and never more than one file in HOLD_OUT_ONE_IN. When none can be held out (fewer
    files than that, or --val-count 0), validation runs on the training files, and says so."""
    if val_count < 0:
        raise UsageError(f"--val-count must be 0 or more, got {val_count}")
    files = list_images(data)
    if val:
        return Split(files, list_images(val, "validation"), held_out=True)
    n = len(files)
    count = min(val_count, n // HOLD_OUT_ONE_IN)
    if count == 0:
        if val_count == 0:
            why = "--val-count 0"
        else:
            why = f"{n} file{'s are' if n > 1 else ' is'} too few to hold any out: at most 1 in {HOLD_OUT_ONE_IN} is"
        return Split(files, files, held_out=False,
                     warnings=[f"validating on the training images ({why}); that shows fit, not how the model "
                               "does on new images: give --val FOLDER with other images for that"])
    split = Split(files[:-count], files[-count:], held_out=True)
    if count < val_count:
        split.warnings.append(f"holding out {count} of {n} files for validation, not --val-count {val_count}: "
                              f"at most 1 in {HOLD_OUT_ONE_IN} is held out, so that most are trained on")
    return split


def read_image(path: Path, channels: int) -> np.ndarray:
    """uint8 array (H, W, C) of one image file, upright (EXIF orientation applied)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im).convert("L" if channels == 1 else "RGB")
            a = np.asarray(im)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UsageError(f"cannot read {path}: {exc}; remove it from the folder or replace it") from None
    return a[:, :, None] if a.ndim == 2 else np.ascontiguousarray(a)


def _sizes(small: list[tuple[Path, int, int]], limit: int = 5) -> str:
    listed = ", ".join(f"{p.name} {w}x{h}" for p, w, h in small[:limit])
    return listed + (f" and {len(small) - limit} more" if len(small) > limit else "")


def load_images(files: list[Path], channels: int, min_size: int) -> tuple[list[np.ndarray], list[tuple]]:
    """uint8 arrays (H, W, C) of the images at least `min_size` on both sides, and (path, width,
    height) of those that are smaller. An unreadable file is a UsageError."""
    usable, small = [], []
    for f in files:
        a = read_image(f, channels)
        if min(a.shape[:2]) >= min_size:
            usable.append(a)
        else:
            small.append((f, a.shape[1], a.shape[0]))
    return usable, small


def load_split(split: Split, channels: int, min_size: int, why: str, val_min_size: int
               ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The training images (at least `min_size` on both sides, for the reason `why`, e.g.
    "--patch 64") and the validation images (at least `val_min_size`). Skipped images and a
    small data set are added to split.warnings; nothing usable is a UsageError with the sizes."""
    train, small = load_images(split.train, channels, min_size)
    if not train:
        raise UsageError(f"no training image is at least {min_size}x{min_size} pixels ({why}): {_sizes(small)}; "
                         "use larger images or a smaller --patch")
    if small:
        split.warnings.append(f"{len(small)} of {len(split.train)} training images are smaller than "
                              f"{min_size}x{min_size} ({why}) and are not used: {_sizes(small)}")
    if len(train) < FEW_IMAGES:
        mp = sum(a.shape[0] * a.shape[1] for a in train) / 1e6
        split.warnings.append(f"only {len(train)} training image{'s' if len(train) > 1 else ''} ({mp:.1f} MP): "
                              "fine for a trial run, but a useful model needs more, tens to hundreds of varied photos")
    val, small = load_images(split.val, channels, val_min_size)
    if not val:
        raise UsageError(f"no {'validation' if split.held_out else 'training'} image is at least "
                         f"{val_min_size}x{val_min_size} pixels, the smallest that validation uses: {_sizes(small)}; "
                         "give --val FOLDER with larger images")
    if small and split.held_out:
        split.warnings.append(f"{len(small)} of {len(split.val)} validation images are smaller than "
                              f"{val_min_size}x{val_min_size} and are not used: {_sizes(small)}")
    return train, val


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


def hold_out(files: list[Path], count: int, seed: int) -> tuple[list[Path], list[Path]]:
    """`count` of the files drawn at random (numpy default_rng(seed)) held out, the rest for
    training, both in the files' order."""
    held = set(np.random.default_rng(seed).permutation(len(files))[:count].tolist())
    return [f for i, f in enumerate(files) if i not in held], [f for i, f in enumerate(files) if i in held]


def detect_channels(files: list[Path]) -> int:
    """1 when every image is grey (its channels equal), else 3."""
    from PIL import Image

    for f in files:
        try:
            with Image.open(f) as im:
                if im.mode in ("L", "LA", "I", "I;16", "1"):
                    continue
                im.draft("RGB", (64, 64))
                a = np.asarray(im.convert("RGB").resize((64, 64)), np.int16)
        except OSError:
            continue  # read_image reports it, with the file name
        if np.abs(a[..., 0] - a[..., 1]).max() > 2 or np.abs(a[..., 1] - a[..., 2]).max() > 2:
            return 3
    return 1
