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
        self.val_clean, self.val_noisy = [], []
        for i, crop in enumerate(center_crops(val_images, 128)):
            for degraded, condition in self.validation_inputs(crop, i):
                self.val_clean.append(crop)
                self.val_noisy.append((degraded, condition))
        self.device = device
        self._torch = torch

    def validation_inputs(self, crop: np.ndarray, index: int) -> list[tuple[np.ndarray, float]]:
        """The degraded versions of one validation crop, each with its condition map's value (the
        same every validation: fixed seeds)."""
        return [(add_gaussian_noise(crop, s, np.random.default_rng(10_000 + 100 * s + index)), s / 255)
                for s in self.val_sigmas]

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
        for clean, (noisy, cond) in zip(self.val_clean, self.val_noisy):
            # A copy: decoded codec images are read-only arrays, which torch.from_numpy warns about.
            x = torch.tensor(noisy).permute(2, 0, 1)[None].float().div(255).to(device)
            y = model(x, torch.full((1,), cond, device=device)).float()
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


class CodecArtefactTask(DenoiseTask):
    """The denoising autoencoder as a post-filter for classical codecs: clean patches compressed on
    the fly by Pillow (JPEG, WebP, AVIF) at qualities drawn over each codec's useful range, L1 loss
    against the clean patch. The condition map is the JPEG quality's (codecs.jpeg_condition) for a
    JPEG model, and a constant per codec for WebP and AVIF, whose files state no quality."""

    name = "codec artefacts"

    def __init__(self, data: list[Path], codecs: tuple[str, ...] = ("jpeg",), grey_fraction: float = 0.0, **kw):
        from .. import codecs as codec_lib

        super().__init__(data, **kw)
        for c in codecs:
            codec_lib.get_codec(c)  # an unknown or unavailable codec fails before any training
        if "jpeg" in codecs and len(codecs) > 1:
            from ..errors import UsageError

            raise UsageError("train JPEG alone (its condition is its quality); WebP, AVIF and JPEG XL can share a model")
        self.codecs = tuple(codecs)
        self.grey_fraction = grey_fraction
        self._codec_lib = codec_lib
        self.val_settings = [(c, q) for c in self.codecs for q in self.VAL_QUALITIES[c]]

    def condition_table(self) -> dict:
        """What the condition map holds, saved in the weights file so that the runtime does the same."""
        if self.codecs == ("jpeg",):
            return {"jpeg": "quality"}
        return {c: round(0.02 * (i + 1), 4) for i, c in enumerate(self.codecs)}

    def metadata(self) -> dict:
        return {"degradation": {"codecs": list(self.codecs), "condition": self.condition_table()}}

    def _draw(self, rng: np.random.Generator) -> tuple[str, int, str]:
        codec = self.codecs[rng.integers(len(self.codecs))]
        lo, hi = self._codec_lib.CODECS[codec].quality_range
        quality = int(round(lo + (hi - lo) * rng.random() ** 1.5))  # more of the low qualities, where artefacts are
        subsampling = rng.choice(["4:2:0", "4:2:0", "4:2:0", "4:2:2", "4:4:4"]) if codec == "jpeg" else None
        return codec, quality, subsampling

    def condition(self, codec: str, quality: float) -> float:
        table = self.condition_table()
        return self._codec_lib.jpeg_condition(quality) if table[codec] == "quality" else table[codec]

    def degrade(self, clean: np.ndarray, codec: str, quality: int, subsampling=None, grey: bool = False) -> np.ndarray:
        """(h, w, C) uint8 through the codec and back; grey: as a one-channel file, repeated to C."""
        lib = self._codec_lib
        if grey and clean.shape[2] == 3:
            from PIL import Image

            luma = np.asarray(Image.fromarray(clean).convert("L"))[..., None]
            return np.repeat(lib.decode(lib.encode(luma, codec, quality), 1), 3, axis=2)
        return lib.decode(lib.encode(clean, codec, quality, subsampling), clean.shape[2])

    def validation_inputs(self, crop: np.ndarray, index: int) -> list[tuple[np.ndarray, float]]:
        return [(self.degrade(crop, codec, q), self.condition(codec, q)) for codec, q in self.val_settings]

    VAL_QUALITIES = {"jpeg": (10, 20, 40), "webp": (20, 60), "avif": (25, 50), "jxl": (30, 70)}

    def sample_batch(self, rng: np.random.Generator, gen, batch_size: int, device: str):
        torch = self._torch
        clean = self.sampler.sample(rng, batch_size)
        degraded = np.empty_like(clean)
        cond = np.empty(batch_size, np.float32)
        for k in range(batch_size):
            codec, quality, subsampling = self._draw(rng)
            grey = rng.random() < self.grey_fraction
            if grey:  # the target is the grey image too
                from PIL import Image

                clean[k] = np.asarray(Image.fromarray(clean[k]).convert("L"))[..., None]
            degraded[k] = self.degrade(clean[k], codec, quality, subsampling, grey)
            cond[k] = self.condition(codec, quality)
        to = dict(device=device, memory_format=torch.channels_last, non_blocking=True)
        as_tensor = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float().div_(255).to(**to)  # noqa: E731
        return as_tensor(degraded), torch.from_numpy(cond).to(device), as_tensor(clean)

    def description(self) -> str:
        kind = "grey" if self.channels == 1 else ("colour and grey" if self.grey_fraction else "colour")
        names = ", ".join(c.upper() for c in self.codecs)
        how = "told the JPEG quality (from the file's tables or its pixels)" if self.codecs == ("jpeg",) \
            else "blind to the quality"
        return (f"Post-filter for {names} (residual U-Net denoising autoencoder trained on the codec's own output) "
                f"for {kind} images; {how}.")

    def data_description(self) -> dict:
        ranges = {c: list(self._codec_lib.CODECS[c].quality_range) for c in self.codecs}
        return {"folders": [str(d) for d in self.data], "train_images": self.train_count, "codecs": list(self.codecs),
                "quality_range": ranges, "grey_fraction": self.grey_fraction,
                "degradation": "Pillow encode and decode of each patch at quality lo + (hi - lo) * u^1.5; "
                               "JPEG chroma 4:2:0 (3 in 5), 4:2:2 or 4:4:4"}

    def validation_description(self) -> dict:
        return {"files": [f.name for f in self.split.val], "held_out": self.split.held_out, "crop": 128,
                "settings": [list(s) for s in self.val_settings], "metric": "mean RGB PSNR of the filtered decode"}
