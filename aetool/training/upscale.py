"""Training task for the super-resolution autoencoder: pairs of a high-resolution patch and its
low-resolution version, L1 loss on the enlargement.

Two degradations make the low-resolution inputs:
- "bicubic": MATLAB-compatible antialiased bicubic downscale (aetool.resize, which reproduces the
  benchmark's LR files bit for bit), rounded to 8 bits. Computed once per image and orientation.
- "photo": for real photos that are not clean downscales, a random mix per patch of Gaussian blur,
  a downscale filter (bicubic, bilinear, box or Lanczos), Gaussian noise (colour or grey) and JPEG
  compression (first-order degradations in the spirit of Real-ESRGAN, Wang et al., ICCVW 2021).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..errors import UsageError
from .data import center_crops, load_split, split_files

DEGRADATIONS = ("bicubic", "photo")
VAL_CROP = 192  # a multiple of 2, 3 and 4


def y_channel(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of uint8/float RGB in 0-255, in [16, 235], as in the benchmark protocol."""
    x = rgb.astype(np.float64) / 255.0
    return 16.0 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]


def psnr_y(out: np.ndarray, ref: np.ndarray, border: int) -> float:
    a, b = y_channel(out), y_channel(ref)
    if border:
        a, b = a[border:-border, border:-border], b[border:-border, border:-border]
    mse = np.mean((a - b) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def crop_to_multiple(a: np.ndarray, m: int) -> np.ndarray:
    h, w = a.shape[:2]
    return a[:h - h % m, :w - w % m]


def flip(a: np.ndarray, t: int) -> np.ndarray:
    """Flip an (H, W, C) array left-right (bit 0 of t) and/or up-down (bit 1)."""
    if t & 1:
        a = a[:, ::-1]
    if t & 2:
        a = a[::-1]
    return a


def degrade_photo(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A random real-photo degradation of a uint8 (H, W, 3) patch whose sides are multiples of `scale`."""
    from PIL import Image, ImageFilter

    im = Image.fromarray(np.ascontiguousarray(hr))
    if rng.random() < 0.7:
        im = im.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.5 + 0.5 * scale))))
    filters = [Image.BICUBIC, Image.BILINEAR, Image.BOX, Image.LANCZOS]
    im = im.resize((hr.shape[1] // scale, hr.shape[0] // scale), filters[rng.integers(len(filters))])
    lr = np.asarray(im).astype(np.float64)
    if rng.random() < 0.6:
        sigma = rng.uniform(1.0, 25.0)
        shape = lr.shape[:2] + ((1,) if rng.random() < 0.4 else (3,))
        lr = lr + rng.normal(0.0, sigma, shape)
    lr = np.clip(np.round(lr), 0, 255).astype(np.uint8)
    if rng.random() < 0.7:
        buf = io.BytesIO()
        Image.fromarray(lr).save(buf, "JPEG", quality=int(rng.integers(40, 96)))
        lr = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return lr


class UpscaleTask:
    task = "upscale"

    def __init__(self, data: list[Path], scale: int = 4, width: int = 64, blocks: int = 8, patch: int = 48,
                 degradation: str = "bicubic", val: list[Path] | None = None, val_count: int = 8):
        if scale not in (2, 3, 4):
            raise UsageError(f"--scale must be 2, 3 or 4, got {scale}")
        if degradation not in DEGRADATIONS:
            raise UsageError(f"--degradation must be one of {', '.join(DEGRADATIONS)}, got '{degradation}'")
        self.data = [Path(d) for d in data]
        self.scale, self.width, self.blocks, self.patch = scale, width, blocks, patch
        self.degradation = degradation
        self.val = [Path(v) for v in val] if val else None
        self.val_count = val_count
        self.name = f"upscale x{scale}" + (" photo" if degradation == "photo" else "")

    def build_model(self):
        from ..models.subpixel_sr import SubpixelSR

        return SubpixelSR(in_channels=3, scale=self.scale, width=self.width, blocks=self.blocks)

    def adopt_init(self, model):
        """The --init model; an upscaler of another scale lends its feature layers (head and body)
        and gets a new sub-pixel layer for this scale, zeroed so that training starts from bicubic
        (EDSR's trick: x3/x4 from a trained x2 converge faster than from scratch)."""
        import torch

        from ..models.subpixel_sr import SubpixelSR

        if getattr(model, "arch_name", None) != "subpixel_sr":
            raise UsageError(f"--init model '{model.card.name}' is for the {model.card.task} task, not an upscaler; "
                             "give one from `aetool models` or a file from `aetool train upscale`")
        if model.config.get("in_channels") != 3:
            raise UsageError(f"--init model '{model.card.name}' has {model.config.get('in_channels')} channels; "
                             "upscalers are trained on colour (3 channels)")
        if model.config["scale"] == self.scale:
            return model
        config = dict(model.config, scale=self.scale)
        rescaled = SubpixelSR(**config)
        features = {k: v for k, v in model.state_dict().items() if not k.startswith("to_subpixels.")}
        rescaled.load_state_dict(features, strict=False)
        with torch.no_grad():
            rescaled.to_subpixels.weight.zero_()
            rescaled.to_subpixels.bias.zero_()
        return rescaled

    def _low_res(self, hr: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        from ..resize import downscale_uint8

        if self.degradation == "photo" and rng is not None:
            return degrade_photo(hr, self.scale, rng)
        return downscale_uint8(hr, self.scale)

    def prepare(self, device: str) -> None:
        import torch

        self.split = split_files(self.data, self.val, self.val_count)
        self.warnings = self.split.warnings
        hr_size = self.patch * self.scale
        images, val_images = load_split(self.split, 3, hr_size, f"--patch {self.patch} x --scale {self.scale}", 48)
        self.hr = [crop_to_multiple(a, self.scale) for a in images]
        # Bicubic pairs are made once per image and per orientation: the downscale commutes exactly
        # with flips but not with a transpose (MATLAB rounds between its two passes), so the
        # transposed image gets its own downscale. Transpose x flips = the 8 flips/rotations.
        if self.degradation == "bicubic":
            self.lr = [self._low_res(a) for a in self.hr]
            self.lr_t = [self._low_res(np.ascontiguousarray(a.transpose(1, 0, 2))) for a in self.hr]
        else:
            self.lr = self.lr_t = None
        areas = np.array([(a.shape[0] - hr_size + 1) * (a.shape[1] - hr_size + 1) for a in self.hr], float)
        self.weights = areas / areas.sum()
        crops = [crop_to_multiple(c, 12) for c in center_crops(val_images, VAL_CROP)]
        self.val_pairs = [(self._low_res(c, np.random.default_rng(20_000 + i)), c) for i, c in enumerate(crops)]
        self._torch = torch

    def sample_batch(self, rng: np.random.Generator, gen, batch_size: int, device: str):
        torch = self._torch
        p, s = self.patch, self.scale
        lrs = np.empty((batch_size, p, p, 3), np.uint8)
        hrs = np.empty((batch_size, p * s, p * s, 3), np.uint8)
        for k, i in enumerate(rng.choice(len(self.hr), size=batch_size, p=self.weights)):
            transpose, t = bool(rng.integers(0, 2)), int(rng.integers(0, 4))
            hr = self.hr[i].transpose(1, 0, 2) if transpose else self.hr[i]
            y = int(rng.integers(0, (hr.shape[0] - p * s) // s + 1))
            x = int(rng.integers(0, (hr.shape[1] - p * s) // s + 1))
            hrs[k] = flip(hr[y * s:(y + p) * s, x * s:(x + p) * s], t)
            if self.lr is not None:
                lr = self.lr_t[i] if transpose else self.lr[i]
                lrs[k] = flip(lr[y:y + p, x:x + p], t)
            else:
                lrs[k] = degrade_photo(hrs[k], s, rng)
        to = dict(device=device, memory_format=torch.channels_last, non_blocking=True)
        lr = torch.from_numpy(lrs).permute(0, 3, 1, 2).float().div_(255).to(**to)
        hr = torch.from_numpy(hrs).permute(0, 3, 1, 2).float().div_(255).to(**to)
        return lr, hr

    def loss(self, model, batch):
        lr, hr = batch
        return (model(lr).float() - hr).abs().mean()

    def validate(self, model, device: str) -> float:
        torch = self._torch
        psnrs = []
        for lr, hr in self.val_pairs:
            x = torch.from_numpy(np.array(lr)).permute(2, 0, 1)[None].float().div(255).to(device)
            y = model(x).float().clamp(0, 1).mul(255).round().cpu()[0].permute(1, 2, 0).numpy()
            psnrs.append(psnr_y(y, hr, self.scale))
        return float(np.mean(psnrs))

    def description(self) -> str:
        how = ("MATLAB-style bicubic downscales" if self.degradation == "bicubic" else
               "real photos (blur, downscale, noise and JPEG mixed at random)")
        return (f"Convolutional super-resolution autoencoder (residual blocks at low resolution, sub-pixel "
                f"decoder over a bicubic base), x{self.scale}, trained for {how}.")

    def data_description(self) -> dict:
        return {"folders": [str(d) for d in self.data], "train_images": len(self.hr),
                "degradation": self.degradation, "lr_patch": self.patch, "hr_patch": self.patch * self.scale}

    def validation_description(self) -> dict:
        return {"files": [f.name for f in self.split.val], "held_out": self.split.held_out, "crop": VAL_CROP,
                "degradation": self.degradation,
                "metric": f"mean Y-channel PSNR (BT.601), {self.scale}-pixel border cropped"}
