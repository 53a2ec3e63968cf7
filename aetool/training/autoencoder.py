"""Training task of the autoencoders with a vector code (`aetool train autoencoder`): the vanilla
dense autoencoder, the convolutional one and the variational one (aetool/models/). Every image is
brought to the model's size by the runtime's own `preprocess` (aetool/tasks/autoencoder.py), so
that embed, generate and reconstruct see exactly what training saw; the preprocessing travels in
the weights file and the card.

Losses: the dense and conv autoencoders minimise the mean squared error of the reconstruction
(of the clean image, from an input with --input-dropout of its pixels zeroed: a denoising
autoencoder, Vincent et al. 2008, whose code keeps structure rather than single pixels);
the VAE minimises -ELBO = -log p(x|z) + beta * KL(q(z|x) || N(0, I)) in nats (discretised
logistic likelihood of the 8-bit pixels), with beta ramped from 0 over --kl-warmup steps."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UsageError
from .data import FEW_IMAGES, detect_channels, hold_out, list_images, read_image

ARCHS = {"dense": "dense_autoencoder", "conv": "vector_conv_autoencoder", "vae": "conv_vae"}
AUGMENTS = {"none": "none", "flip": "left-right mirror at random",
            "crop": "random crops of 35-100 % of the image's area (aspect ratio within 20 % of the model's), "
                    "mirrored at random, then resized"}
MAX_PIXELS = 512 * 512  # per image at the model's size: a vector-code model is for small images


def seeded_hold_out(files: list[Path], count: int, seed: int) -> tuple[list[Path], list[Path]]:
    """At most `count` files (and never more than 1 in 5) held out at random (seeded), the rest
    trained on; with fewer than 5 files none is held out (validation then uses the training set)."""
    count = min(count, len(files) // 5)
    return hold_out(files, count, seed) if count > 0 else (files, [])


class AutoencoderTask:
    task = "autoencoder"

    def __init__(self, data: list[Path], arch: str = "conv", latent: int = 16, size: tuple[int, int] = (28, 28),
                 channels: int = 0, fit: str = "stretch", hidden: tuple[int, ...] = (512, 256),
                 width: tuple[int, ...] = (32, 64), beta: float = 1.0, kl_warmup: int = 2000, augment: str = "none",
                 input_dropout: float = 0.0,
                 val: list[Path] | None = None, val_count: int = 1000, seed: int = 0):
        from ..tasks.autoencoder import FITS

        if arch not in ARCHS:
            raise UsageError(f"--arch must be one of {', '.join(ARCHS)}, got '{arch}'")
        if not 1 <= latent <= 4096:
            raise UsageError(f"--latent must be between 1 and 4096, got {latent}")
        if min(size) < 4 or size[0] * size[1] > MAX_PIXELS:
            raise UsageError(f"--size must be at least 4 pixels a side and at most {MAX_PIXELS:,} pixels in all "
                             f"(a vector code summarises a small image), got {size[1]}x{size[0]}")
        if channels not in (0, 1, 3):
            raise UsageError("--channels must be 0 (from the data), 1 (grey) or 3 (colour)")
        if fit not in FITS:
            raise UsageError(f"--fit must be one of {', '.join(FITS)}, got '{fit}'")
        if augment not in AUGMENTS:
            raise UsageError(f"--augment must be one of {', '.join(AUGMENTS)}, got '{augment}'")
        if not 0 <= input_dropout < 1:
            raise UsageError(f"--input-dropout must be at least 0 and below 1, got {input_dropout:g}")
        if beta < 0 or kl_warmup < 0:
            raise UsageError("--beta and --kl-warmup must be 0 or more")
        if any(w < 1 for w in hidden + width):
            raise UsageError("--hidden and --width must be positive integers")
        self.data = [Path(d) for d in data]
        self.arch, self.latent, self.size, self.channels, self.fit = arch, latent, tuple(size), channels, fit
        self.hidden, self.width, self.beta, self.kl_warmup, self.augment = hidden, width, beta, kl_warmup, augment
        self.val, self.val_count, self.seed = val, val_count, seed
        self.input_dropout = input_dropout
        self.name = f"autoencoder ({arch})"
        self.step = 0
        self.warnings: list[str] = []
        self.plot_labels = (("training loss (-ELBO, nats per pixel)" if arch == "vae" else "training loss (MSE)"),
                            "validation PSNR of the reconstruction (dB)")

    # ------------------------------------------------------------ model
    def build_model(self):
        from ..registry import create_architecture

        if not self.channels:
            self.channels = detect_channels(list_images(self.data))
        config = {"in_channels": self.channels, "image_size": list(self.size), "latent": self.latent}
        if self.arch == "dense":
            config["hidden"] = list(self.hidden)
        else:
            config["channels"] = list(self.width)
        return create_architecture(ARCHS[self.arch], config)

    def adopt_init(self, model):
        if getattr(model, "arch_name", None) != ARCHS[self.arch]:
            raise UsageError(f"--init model '{model.card.name}' is not a {self.arch} autoencoder; give one from "
                             f"`aetool train autoencoder --arch {self.arch}` or change --arch")
        self.channels = self.channels or model.config["in_channels"]
        for key, value in (("in_channels", self.channels), ("image_size", list(self.size)),
                           ("latent", self.latent)):
            if model.config.get(key) != value:
                raise UsageError(f"--init model '{model.card.name}' has {key} {model.config.get(key)}, not {value}")
        return model

    # ------------------------------------------------------------ data
    def prepare(self, device: str) -> None:
        import torch

        files = list_images(self.data)
        if self.val:
            self.train_files, self.val_files = files, list_images(self.val, "validation")
        else:
            self.train_files, self.val_files = seeded_hold_out(files, self.val_count, self.seed)
            if not self.val_files:
                self.val_files = self.train_files
                self.warnings.append("validating on the training images (too few files to hold any out); give "
                                     "--val FOLDER with other images to see how the model does on new ones")
        self._torch = torch
        self.images = self._load(self.train_files)
        if self.augment == "crop":  # whole images, shrunk to twice the model's size, to crop from each step
            self.sources = [self._source(f) for f in self.train_files]
        self.val_images = self._load(self.val_files)
        if len(self.train_files) < FEW_IMAGES:
            self.warnings.append(f"only {len(self.train_files)} training images: fine for a trial run, but a useful "
                                 "model needs thousands")
        self.device = device
        self.val_eps = torch.randn((len(self.val_images), self.latent), generator=torch.Generator().manual_seed(1))

    def _load(self, files: list[Path]) -> np.ndarray:
        """(N, h, w, C) uint8 at the model's size, made by the runtime's own preprocessing."""
        from ..tasks.autoencoder import preprocess

        out = np.empty((len(files), *self.size, self.channels), np.uint8)
        for i, f in enumerate(files):
            # Read as RGB: grey conversion (float BT.601 luma) and rounding happen in preprocess, as at run time.
            out[i] = preprocess(read_image(f, 3), self.channels, self.size, self.fit)
        return out

    def _source(self, path: Path) -> np.ndarray:
        from PIL import Image

        a = read_image(path, 3)
        h, w = a.shape[:2]
        shrink = min(1.0, 2 * max(self.size) / min(h, w))
        if shrink < 1:
            im = Image.fromarray(a).resize((max(1, round(w * shrink)), max(1, round(h * shrink))), Image.BILINEAR,
                                           reducing_gap=2.0)
            a = np.asarray(im)
        return a

    def _random_crop(self, rng: np.random.Generator, a: np.ndarray) -> np.ndarray:
        from ..tasks.autoencoder import preprocess

        h, w = a.shape[:2]
        area = rng.uniform(0.35, 1.0) * h * w
        aspect = self.size[1] / self.size[0] * float(np.exp(rng.uniform(-0.2, 0.2)))  # width / height
        cw = int(min(w, max(1, round(np.sqrt(area * aspect)))))
        ch = int(min(h, max(1, round(np.sqrt(area / aspect)))))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        return preprocess(a[y:y + ch, x:x + cw], self.channels, self.size, "stretch")

    def set_step(self, step: int) -> None:
        self.step = step

    def sample_batch(self, rng: np.random.Generator, gen, batch_size: int, device: str):
        torch = self._torch
        idx = rng.integers(0, len(self.images), size=batch_size)
        if self.augment == "crop":
            x = np.stack([self._random_crop(rng, self.sources[i]) for i in idx])
        else:
            x = self.images[idx]
        if self.augment != "none":
            flips = rng.random(batch_size) < 0.5
            x[flips] = x[flips, :, ::-1]
        x = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255).to(device)
        eps = torch.randn((batch_size, self.latent), generator=gen).to(device)
        inputs = x
        if self.input_dropout:  # masking noise: the encoder sees a corrupted image, the loss the clean one
            # Kept pixels are scaled by 1 / (1 - p) (inverted dropout): a clean image at run time then has the
            # brightness the encoder saw in training (unscaled, clean images were reconstructed far worse).
            keep = torch.rand(x.shape[0], 1, *x.shape[2:], generator=gen) >= self.input_dropout
            inputs = x * keep.to(device) / (1 - self.input_dropout)
        return inputs, x, eps

    # ------------------------------------------------------------ loss and validation
    def kl_weight(self) -> float:
        return self.beta * (min(1.0, self.step / self.kl_warmup) if self.kl_warmup else 1.0)

    def loss(self, model, batch):
        inputs, x, eps = batch
        if self.arch == "vae":
            nll, kl = model.loss_terms(x, eps, inputs)
            return (nll + self.kl_weight() * kl).mean() / x[0].numel()
        return (model(inputs).float() - x).pow(2).mean()

    def validate(self, model, device: str) -> float:
        torch = self._torch
        psnrs = []
        for i in range(0, len(self.val_images), 512):
            x = torch.from_numpy(self.val_images[i:i + 512]).permute(0, 3, 1, 2).float().div(255).to(device)
            recon = torch.round(model(x).float().clamp(0, 1) * 255)
            mse = (recon - torch.round(x * 255)).pow(2).flatten(1).mean(1).clamp_min(1e-10)
            psnrs.append((10 * torch.log10(255 ** 2 / mse)).cpu().numpy())
        return float(np.mean(np.concatenate(psnrs)))

    # ------------------------------------------------------------ what travels with the weights
    def metadata(self) -> dict:
        from ..tasks.autoencoder import default_preprocessing

        return {"preprocessing": default_preprocessing(self.channels, self.size, self.fit)}

    def description(self) -> str:
        kind = "grey" if self.channels == 1 else "colour"
        what = {"dense": "vanilla (fully connected) autoencoder", "conv": "convolutional autoencoder",
                "vae": "variational autoencoder"}[self.arch]
        return (f"A {what} of {kind} {self.size[1]}x{self.size[0]} images with a {self.latent}-number code: "
                "embeddings (aetool embed), reconstructions" + (", new images (aetool generate)" if self.arch == "vae"
                                                                else "") + ".")

    def data_description(self) -> dict:
        return {"folders": [str(d) for d in self.data], "train_images": len(self.train_files),
                "held_out_images": len(self.val_files) if self.val_files is not self.train_files else 0,
                "arch": self.arch, "latent": self.latent, "beta": self.beta if self.arch == "vae" else None,
                "kl_warmup": self.kl_warmup if self.arch == "vae" else None,
                "augment": self.augment, "input_dropout": self.input_dropout, "preprocessing": self.metadata()["preprocessing"]}

    def validation_description(self) -> dict:
        return {"files": len(self.val_files), "metric": "mean PSNR of the reconstruction of the held-out images "
                "(8-bit, at the model's size)"}
