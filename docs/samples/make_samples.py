"""Make the bundled sample images: public-domain / CC0 photos that ship with scikit-image,
cropped to 256x256 and given Gaussian noise exactly as in docs/protocol.md; and, in anomaly/,
four 128x128 crops of the bottom half of scikit-image's brick texture (CC0), two as they are and
two with a defect drawn here (a dark scratch; a patch of the gravel texture), for trying
`aetool anomaly --model anomaly-brick` (a model trained on crops of the top half only).

    pip install scikit-image && python docs/samples/make_samples.py

Sources and licences (from scikit-image's data module):
- astronaut: Eileen Collins, NASA Great Images database; public domain.
- chelsea: Chelsea the cat, photo by Stefan van der Walt; CC0.
- coffee: coffee cup, photo by Rachel Michetti (courtesy of Pikolo Espresso Bar); CC0.
- rocket: DSCOVR launch on Falcon 9, SpaceX; released into the public domain.
- camera: grey photo by Lav Varshney; CC0.
- brick, gravel: textures by Stéfan van der Walt; CC0.
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


def anomaly_samples() -> None:
    from PIL import ImageDraw

    brick, gravel = data.brick(), data.gravel()
    folder = HERE / "anomaly"
    folder.mkdir(exist_ok=True)
    crops = {"brick-good-1": (300, 40), "brick-good-2": (360, 300), "brick-scratch": (280, 200),
             "brick-gravel-patch": (330, 120)}
    for name, (y, x) in crops.items():
        crop = brick[y:y + 128, x:x + 128].copy()
        if name == "brick-scratch":
            im = Image.fromarray(crop)
            ImageDraw.Draw(im).line([(20, 30), (70, 60), (110, 64)], fill=40, width=3)
            crop = np.asarray(im)
        elif name == "brick-gravel-patch":
            yy, xx = np.mgrid[:128, :128]
            blob = ((yy - 70) ** 2 / 18 ** 2 + (xx - 50) ** 2 / 26 ** 2) < 1
            crop[blob] = gravel[100:228, 100:228][blob]
        Image.fromarray(crop).save(folder / f"{name}.png", optimize=True)
        print(f"anomaly/{name}.png")


if __name__ == "__main__":
    main()
    anomaly_samples()
