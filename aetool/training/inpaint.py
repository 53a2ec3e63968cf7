"""Training task for the inpainting autoencoder: clean patches, random hole masks (thin strokes,
thick strokes, boxes; aetool.maskgen), holes set to 0, and a loss on the composite (known pixels
kept, holes from the network): L1 in the holes (weighted 6x, as Liu et al. 2018 weigh hole over
valid pixels), L1 elsewhere, and L1 between the image gradients of composite and clean, a structure
term that penalises the blur that plain L1/MSE fills drift to."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..maskgen import KINDS, training_mask
from .data import PatchSampler, center_crops, load_split, split_files

HOLE_WEIGHT = 6.0
GRADIENT_WEIGHT = 1.0
VAL_CROP = 256


def gradient_l1(a, b):
    """Mean L1 distance between the horizontal and vertical finite differences of a and b."""
    dx = (a[..., :, 1:] - a[..., :, :-1]) - (b[..., :, 1:] - b[..., :, :-1])
    dy = (a[..., 1:, :] - a[..., :-1, :]) - (b[..., 1:, :] - b[..., :-1, :])
    return dx.abs().mean() + dy.abs().mean()


def hole_psnr(out: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> float:
    """PSNR over the hole pixels only (all channels), data range 255, as in the benchmark protocol."""
    diff = out[mask].astype(np.float64) - clean[mask].astype(np.float64)
    return float(10 * np.log10(255.0 ** 2 / max(np.mean(diff ** 2), 1e-10)))


class InpaintTask:
    task = "inpaint"
    name = "inpaint"

    def __init__(self, data: list[Path], channels: tuple[int, ...] = (32, 64, 96, 128),
                 dilations: tuple[int, ...] = (1, 2, 4, 8, 1), patch: int = 128, kinds: tuple[str, ...] = KINDS,
                 max_hole: float = 0.5, val: list[Path] | None = None, val_count: int = 8):
        bad = set(kinds) - set(KINDS)
        if bad or not kinds:
            raise UsageError(f"--masks must be a comma-separated subset of {','.join(KINDS)}")
        if not 0 < max_hole <= 0.9:
            raise UsageError("--max-hole must be in (0, 0.9]")
        self.data = [Path(d) for d in data]
        self.channels, self.dilations, self.patch = tuple(channels), tuple(dilations), patch
        self.kinds, self.max_hole = tuple(kinds), max_hole
        self.val = [Path(v) for v in val] if val else None
        self.val_count = val_count

    def build_model(self):
        from ..models.gated_unet_inpaint import GatedUNetInpaint

        return GatedUNetInpaint(in_channels=3, channels=self.channels, dilations=self.dilations)

    def adopt_init(self, model):
        """The --init model, checked to fit this task."""
        if getattr(model, "arch_name", None) != "gated_unet_inpaint":
            raise UsageError(f"--init model '{model.card.name}' is for the {model.card.task} task, not an inpainting "
                             "model; give one from `aetool models` or a file from `aetool train inpaint`")
        return model

    def prepare(self, device: str) -> None:
        import torch

        self.split = split_files(self.data, self.val, self.val_count)
        self.warnings = self.split.warnings
        images, val_images = load_split(self.split, 3, self.patch, f"--patch {self.patch}", 64)
        self.train_count = len(images)
        self.sampler = PatchSampler(images, self.patch)
        crops = center_crops(val_images, VAL_CROP)
        self.val_items = []
        for i, c in enumerate(crops):
            rng = np.random.default_rng(30_000 + i)
            for kind in self.kinds:  # every kind on every crop, fixed masks
                self.val_items.append((c, training_mask(c.shape[0], c.shape[1], rng, (kind,), self.max_hole)))
        self._torch = torch

    def sample_batch(self, rng: np.random.Generator, gen, batch_size: int, device: str):
        torch = self._torch
        clean = self.sampler.sample(rng, batch_size)
        masks = np.stack([training_mask(self.patch, self.patch, rng, self.kinds, self.max_hole)
                          for _ in range(batch_size)])
        to = dict(device=device, memory_format=torch.channels_last, non_blocking=True)
        x = torch.from_numpy(clean).permute(0, 3, 1, 2).float().div_(255).to(**to)
        m = torch.from_numpy(masks[:, None].astype(np.float32)).to(**to)
        return x, m

    def loss(self, model, batch):
        clean, mask = batch
        pred = model(clean, mask).float()
        composite = clean * (1 - mask) + pred * mask
        hole = ((pred - clean).abs() * mask).sum() / (mask.sum() * clean.shape[1]).clamp(min=1)
        valid = ((pred - clean).abs() * (1 - mask)).sum() / ((1 - mask).sum() * clean.shape[1]).clamp(min=1)
        return HOLE_WEIGHT * hole + valid + GRADIENT_WEIGHT * gradient_l1(composite, clean)

    def validate(self, model, device: str) -> float:
        return float(np.mean(self.validation_scores(model, device)))

    def validation_scores(self, model, device: str) -> list[float]:
        """Hole PSNR of every validation item (each crop with each of self.kinds in turn)."""
        torch = self._torch
        psnrs = []
        for clean, mask in self.val_items:
            x = torch.from_numpy(np.array(clean)).permute(2, 0, 1)[None].float().div(255).to(device)
            m = torch.from_numpy(mask[None, None].astype(np.float32)).to(device)
            pred = model(x, m).float()
            out = (x * (1 - m) + pred * m).clamp(0, 1).mul(255).round().cpu()[0].permute(1, 2, 0).numpy()
            psnrs.append(hole_psnr(out, clean, mask))
        return psnrs

    def description(self) -> str:
        return ("Convolutional inpainting autoencoder (U-Net with gated convolutions and dilated residual "
                "blocks) for colour images; fills thin and thick strokes and boxes.")

    def data_description(self) -> dict:
        return {"folders": [str(d) for d in self.data], "train_images": self.train_count,
                "masks": list(self.kinds), "max_hole": self.max_hole,
                "loss": f"{HOLE_WEIGHT:g} x L1(holes) + L1(known) + {GRADIENT_WEIGHT:g} x L1(gradients of the composite)"}

    def validation_description(self) -> dict:
        return {"files": [f.name for f in self.split.val], "held_out": self.split.held_out, "crop": VAL_CROP,
                "masks": list(self.kinds),
                "metric": "mean hole-only PSNR (RGB), one fixed mask of each kind per crop"}
