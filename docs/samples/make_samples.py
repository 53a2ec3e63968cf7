"""Make the bundled sample images: public-domain / CC0 photos that ship with scikit-image,
cropped to 256x256 and given Gaussian noise exactly as in docs/protocol.md.

    pip install scikit-image && python docs/samples/make_samples.py

Sources and licences (from scikit-image's data module):
- astronaut: Eileen Collins, NASA Great Images database; public domain.
- chelsea: Chelsea the cat, photo by Stefan van der Walt; CC0.
- coffee: coffee cup, photo by Rachel Michetti (courtesy of Pikolo Espresso Bar); CC0.
- rocket: DSCOVR launch on Falcon 9, SpaceX; released into the public domain.
- camera: grey photo by Lav Varshney; CC0.
"""
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

HERE = Path(__file__).resolve().parent
# (name, loader, crop top-left (y, x), sigma)
SAMPLES = [
    ("astronaut", data.astronaut, (40, 150), 15),
    ("chelsea", data.chelsea, (20, 140), 25),
    ("coffee", data.coffee, (60, 170), 25),
    ("rocket", data.rocket, (120, 200), 50),
    ("camera-grey", data.camera, (60, 180), 25),
]


def main() -> None:
    for i, (name, load, (y, x), sigma) in enumerate(SAMPLES):
        clean = load()[y:y + 256, x:x + 256]
        rng = np.random.default_rng(1000 * sigma + i)
        noisy = np.clip(np.round(clean + rng.normal(0, sigma, clean.shape)), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(HERE / f"{name}-sigma{sigma}.png", optimize=True)
        print(f"{name}-sigma{sigma}.png")


if __name__ == "__main__":
    main()
