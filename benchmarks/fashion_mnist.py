"""Fashion-MNIST (Xiao, Rasul, Vollgraf 2017; MIT licence) for the autoencoder benchmark: read
from the Debian package's idx.gz files and, for `aetool train autoencoder`, written once as PNG
files (a folder per split, file names in the set's order) with the labels in a CSV beside them.

    apt-get install dataset-fashion-mnist        # /usr/share/datasets/fashion-mnist/
    python benchmarks/fashion_mnist.py export    # -> benchmarks/.cache/fashion-mnist/{train,test}/
"""
from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

import numpy as np

SOURCE = Path("/usr/share/datasets/fashion-mnist")
EXPORT = Path(__file__).resolve().parent / ".cache" / "fashion-mnist"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) uint8) of 'train' (60,000) or 'test' (10,000)."""
    if not SOURCE.is_dir():
        sys.exit(f"Fashion-MNIST is not installed: run `apt-get install dataset-fashion-mnist` ({SOURCE})")
    images, labels = FILES[split]
    return _idx(SOURCE / images), _idx(SOURCE / labels)


def export(root: Path = EXPORT) -> Path:
    """PNG files of both splits (skipped when already there) and labels.csv (file,label) in each."""
    from PIL import Image

    for split in FILES:
        folder = root / split
        images, labels = load(split)
        done = folder / "labels.csv"
        if done.is_file() and len(done.read_text().splitlines()) == len(images) + 1:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        rows = ["file,label"]
        for i, (im, lab) in enumerate(zip(images, labels)):
            name = f"{i:05d}.png"
            Image.fromarray(im).save(folder / name, optimize=False, compress_level=1)
            rows.append(f"{name},{CLASSES[lab]}")
        done.write_text("\n".join(rows) + "\n")
    return root


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["export"])
    ap.add_argument("--root", type=Path, default=EXPORT)
    args = ap.parse_args()
    print(export(args.root))
