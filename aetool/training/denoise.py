"""Training task for the denoising autoencoder: clean patches, Gaussian noise with a random sigma,
rounded and clipped to 8 bits exactly like the benchmark protocol, L1 loss against the clean patch."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..noise import add_gaussian_noise
from .data import PatchSampler, center_crops, load_split, split_files


class DenoiseTask:
    task = "denoise"
    name = "denoise"

    def __init__(self, data: list[Path], channels: int = 3, width: tuple[int, ...] = (32, 64, 128, 192),
                 blocks: int = 2, patch: int = 64, sigma_min: float = 0.0, sigma_max: float = 55.0,
                 val: list[Path] | None = None, val_count: int = 8, val_sigmas=(15, 25, 50)):
        self.data = [Path(d) for d in data]
        self.channels = channels
        self.width = tuple(width)
        self.blocks = blocks
        self.patch = patch
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.val = [Path(v) for v in val] if val else None
        self.val_count = val_count
        self.val_sigmas = tuple(val_sigmas)

    def build_model(self):
        from ..models.unet_denoiser import UNetDenoiser

        return UNetDenoiser(in_channels=self.channels, channels=self.width, blocks=self.blocks)

    def adopt_init(self, model):
        """The --init model, checked to fit this task."""
        from ..errors import UsageError

        if getattr(model, "arch_name", None) != "unet_denoiser":
            raise UsageError(f"--init model '{model.card.name}' is for the {model.card.task} task, not a denoiser; "
                             "give one from `aetool models` or a file from `aetool train denoise`")
        if model.config.get("in_channels") != self.channels:
            raise UsageError(f"--init model '{model.card.name}' has {model.config.get('in_channels')} channels, "
                             f"but --channels is {self.channels}; give --channels {model.config.get('in_channels')}")
        return model

    def prepare(self, device: str) -> None:
        import torch

        self.split = split_files(self.data, self.val, self.val_count)
        self.warnings = self.split.warnings
        images, val_images = load_split(self.split, self.channels, self.patch, f"--patch {self.patch}", 32)
        self.train_count = len(images)
        self.sampler = PatchSampler(images, self.patch)
        crops = center_crops(val_images, 128)
        self.val_clean, self.val_noisy = [], []
        for i, c in enumerate(crops):
            for s in self.val_sigmas:
                noisy = add_gaussian_noise(c, s, np.random.default_rng(10_000 + 100 * s + i))
                self.val_clean.append(c)
                self.val_noisy.append((noisy, s))
        self.device = device
        self._torch = torch

    def sample_batch(self, rng: np.random.Generator, gen, batch_size: int, device: str):
        torch = self._torch
        clean = torch.from_numpy(self.sampler.sample(rng, batch_size)).permute(0, 3, 1, 2).float()
        sigma = torch.rand(batch_size, generator=gen) * (self.sigma_max - self.sigma_min) + self.sigma_min
        noise = torch.randn(clean.shape, generator=gen) * sigma.view(-1, 1, 1, 1)
        noisy = (clean + noise).round_().clamp_(0, 255)
        to = dict(device=device, memory_format=torch.channels_last, non_blocking=True)
        return noisy.div_(255).to(**to), (sigma / 255).to(device), clean.div_(255).to(**to)

    def loss(self, model, batch):
        noisy, sigma, clean = batch
        return (model(noisy, sigma).float() - clean).abs().mean()

    def validate(self, model, device: str) -> float:
        torch = self._torch
        psnrs = []
        for clean, (noisy, s) in zip(self.val_clean, self.val_noisy):
            x = torch.from_numpy(noisy).permute(2, 0, 1)[None].float().div(255).to(device)
            y = model(x, torch.full((1,), s / 255, device=device)).float()
            out = (y.clamp(0, 1) * 255).round().cpu()[0].permute(1, 2, 0).numpy()
            mse = np.mean((out.astype(np.float64) - clean.astype(np.float64)) ** 2)
            psnrs.append(10 * np.log10(255 ** 2 / max(mse, 1e-10)))
        return float(np.mean(psnrs))

    def description(self) -> str:
        kind = "grey" if self.channels == 1 else "colour"
        return (f"Convolutional denoising autoencoder (residual U-Net with a noise-level map) for {kind} "
                f"images, Gaussian noise sigma {self.sigma_min:g}-{self.sigma_max:g}; blind or told sigma.")

    def data_description(self) -> dict:
        return {"folders": [str(d) for d in self.data], "train_images": self.train_count,
                "sigma_range": [self.sigma_min, self.sigma_max],
                "noise": "clip(round(x + N(0, sigma^2)), 0, 255), as in docs/protocol.md"}

    def validation_description(self) -> dict:
        return {"files": [f.name for f in self.split.val], "held_out": self.split.held_out, "crop": 128,
                "sigmas": list(self.val_sigmas),
                "metric": "mean RGB PSNR, told the true sigma"}
