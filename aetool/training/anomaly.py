"""Training task for anomaly detection: an autoencoder fitted to normal images only (no labels),
then calibrated: the threshold is set from held-out normal images (or, given some known anomalous
images, at the best F1) and travels in the weights file and the card with the score statistics.

Two families (aetool/models/): `plain`, a convolutional autoencoder with a narrow bottleneck that
reconstructs its clean input; `repair`, a denoising autoencoder that gets the input with
synthetic defects pasted in (aetool/defects.py) and must return the clean image. Both minimise
L1 + (1 - SSIM) of the reconstruction. Every image is resized to --size (the model's declared
size, see aetool/tasks/anomaly.py) and the network trains on random --patch crops of it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UsageError
from .data import FEW_IMAGES, detect_channels, hold_out, list_images, read_image

FAMILIES = {"plain": "conv_autoencoder", "repair": "repair_autoencoder"}
MIN_NORMAL_IMAGES = 5  # fewer cannot be split into training and a held-out set for the threshold


def split_fraction(files: list[Path], fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """A seeded random share of the files held out (at least one), the rest for training."""
    if not 0 < fraction < 1:
        raise UsageError(f"--val-split must be between 0 and 1, got {fraction:g}")
    if len(files) < MIN_NORMAL_IMAGES:
        raise UsageError(f"{len(files)} normal image(s) found; anomaly training needs at least {MIN_NORMAL_IMAGES} "
                         "(some are held out to set the threshold), and a useful model tens to hundreds")
    return hold_out(files, max(1, int(round(fraction * len(files)))), seed)


class AnomalyTask:
    task = "anomaly"
    name = "anomaly"
    plot_labels = ("training loss (L1 + 1 - SSIM)", "validation PSNR of the reconstruction (dB)")

    def __init__(self, data: list[Path], family: str = "repair", channels: int = 0, size: int = 256,
                 patch: int = 128, val_split: float = 0.1, val: list[Path] | None = None,
                 anomalous: list[Path] | None = None, fpr: float = 0.01,
                 ssim_weight: float = 0.5, augment: bool = True, width: tuple[int, ...] | None = None,
                 latent: int = 16, seed: int = 0):
        if family not in FAMILIES:
            raise UsageError(f"--family must be one of {', '.join(FAMILIES)}, got '{family}'")
        if channels not in (0, 1, 3):
            raise UsageError("--channels must be 0 (from the data), 1 (grey) or 3 (colour)")
        if not 32 <= size <= 1024:
            raise UsageError(f"--size must be between 32 and 1024 pixels, got {size}")
        if not 16 <= patch <= size:
            raise UsageError(f"--patch must be between 16 and --size ({size}), got {patch}")
        if not 0 < fpr < 1:
            raise UsageError(f"--fpr must be between 0 and 1, got {fpr:g}")
        if not 0 <= ssim_weight <= 1:
            raise UsageError(f"--ssim-weight must be between 0 and 1, got {ssim_weight:g}")
        self.data = [Path(d) for d in data]
        self.family, self.channels, self.size, self.patch = family, channels, size, patch
        self.val_split, self.val, self.anomalous, self.fpr = val_split, val, anomalous, fpr
        self.map_settings = {"ssim_weight": ssim_weight, "smooth_sigma": max(1.0, size / 64), "top_fraction": 0.01,
                             "border": size // 8}
        self.augment, self.width, self.latent, self.seed = augment, width, latent, seed
        self.warnings: list[str] = []

    # ------------------------------------------------------------ model
    def build_model(self):
        from ..registry import create_architecture

        if not self.channels:
            self.channels = detect_channels(list_images(self.data))
        config = {"in_channels": self.channels, "image_size": self.size}
        if self.width:
            config["channels"] = list(self.width)
        if self.family == "plain":
            config["latent"] = self.latent
        return create_architecture(FAMILIES[self.family], config)

    def adopt_init(self, model):
        if not self.channels:
            self.channels = model.config.get("in_channels", 1)
        if getattr(model, "arch_name", None) != FAMILIES[self.family]:
            raise UsageError(f"--init model '{model.card.name}' is not a {self.family} anomaly autoencoder; give "
                             f"one from `aetool train anomaly --family {self.family}` or change --family")
        for key, value in (("in_channels", self.channels), ("image_size", self.size)):
            if value and model.config.get(key) != value:
                raise UsageError(f"--init model '{model.card.name}' has {key} {model.config.get(key)}, not {value}")
        return model

    # ------------------------------------------------------------ data
    def prepare(self, device: str) -> None:
        import torch

        files = list_images(self.data)
        if self.val:  # normal images set aside by the user (another batch, another day): all of --data trains
            self.train_files, self.val_files = files, list_images(self.val, "--val")
        else:
            self.train_files, self.val_files = split_fraction(files, self.val_split, self.seed)
        self._torch = torch
        self.images = np.stack([self._load(f, as_uint8=True) for f in self.train_files])
        self.val_images = np.stack([self._load(f) for f in self.val_files])
        self.anomalous_images = (np.stack([self._load(f) for f in list_images(self.anomalous, "--anomalous")])
                                 if self.anomalous else None)
        if len(self.train_files) < FEW_IMAGES:
            self.warnings.append(f"only {len(self.train_files)} training images: fine for a trial run, but a useful "
                                 "model needs tens to hundreds of normal images")
        if len(self.val_files) < 20:
            self.warnings.append(f"the threshold is set from {len(self.val_files)} held-out normal image(s): with so "
                                 "few it is rough; more images (or a larger --val-split) make it steadier")
        # The validation inputs: clean for the plain family, with fixed synthetic defects for repair.
        self.val_inputs = self.val_images
        if self.family == "repair":
            from ..defects import corrupt

            self.val_inputs, _ = corrupt(np.random.default_rng(12345), self.val_images, self.val_images, 0.0)
        self.device = device

    def _load(self, path: Path, as_uint8: bool = False) -> np.ndarray:
        """(size, size, C) float32 in [0, 1] (uint8 for the training set, to hold thousands)."""
        from ..resize import resize_to

        torch = self._torch
        a = read_image(path, self.channels)
        x = resize_to(torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float() / 255, (self.size, self.size))
        out = x[0].permute(1, 2, 0).clamp(0, 1).numpy()
        return np.round(out * 255).astype(np.uint8) if as_uint8 else np.ascontiguousarray(out, np.float32)

    def sample_batch(self, rng: np.random.Generator, gen, batch_size: int, device: str):
        torch = self._torch
        p, s = self.patch, self.size
        idx = rng.integers(0, len(self.images), size=batch_size)
        clean = np.empty((batch_size, p, p, self.images.shape[3]), np.float32)
        for k, i in enumerate(idx):
            y, x = rng.integers(0, s - p + 1, size=2)
            patch = self.images[i, y:y + p, x:x + p]
            if self.augment:
                t = int(rng.integers(0, 8))
                patch = np.rot90(patch[:, ::-1] if t & 4 else patch, t & 3)
            clean[k] = patch / 255.0
        inputs = clean
        if self.family == "repair":
            from ..defects import corrupt

            donors = self.images[rng.integers(0, len(self.images), size=batch_size), :p, :p] / np.float32(255)
            inputs, _ = corrupt(rng, clean, donors)
        to = dict(device=device, memory_format=torch.channels_last)
        return (torch.from_numpy(inputs).permute(0, 3, 1, 2).contiguous().to(**to),
                torch.from_numpy(clean).permute(0, 3, 1, 2).contiguous().to(**to))

    # ------------------------------------------------------------ loss, validation, calibration
    def loss(self, model, batch):
        from ..tasks.anomaly import ssim_map

        inputs, clean = batch
        recon = model(inputs).float()
        return (recon - clean).abs().mean() + (1 - ssim_map(recon, clean)).mean()

    def _run(self, model, images: np.ndarray, device: str, batch: int = 16):
        """(input, reconstruction) batches on the CPU, reconstructed as `aetool anomaly` does."""
        from ..tasks.anomaly import reconstruct

        torch = self._torch
        outs = []
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i:i + batch]).permute(0, 3, 1, 2).contiguous().to(device)
            outs.append((x.float().cpu(), reconstruct(model, x, self.map_settings["border"]).float().cpu()))
        return outs

    def validate(self, model, device: str) -> float:
        psnrs = []
        recons = [r for _, r in self._run(model, self.val_inputs, device)]
        for clean, recon in zip(self.val_images, np.concatenate([r.permute(0, 2, 3, 1).numpy() for r in recons])):
            mse = float(np.mean((np.round(recon.clip(0, 1) * 255) - np.round(clean * 255)) ** 2))
            psnrs.append(10 * np.log10(255 ** 2 / max(mse, 1e-10)))
        return float(np.mean(psnrs))

    def scores(self, model, images: np.ndarray, device: str) -> np.ndarray:
        """Image scores exactly as `aetool anomaly` computes them (maps at the model's size)."""
        from ..tasks.anomaly import anomaly_maps, image_scores

        torch = self._torch
        out = []
        with torch.no_grad():
            for x, recon in self._run(model, images, device):
                out.append(image_scores(anomaly_maps(x, recon, self.map_settings),
                                        self.map_settings["top_fraction"]).numpy())
        return np.concatenate(out)

    def calibrate(self, model, device: str) -> dict:
        """The threshold and score statistics, from the held-out normal images (and --anomalous)."""
        from ..tasks.anomaly import choose_threshold

        model.eval()
        normal = self.scores(model, self.val_images, device)
        bad = self.scores(model, self.anomalous_images, device) if self.anomalous_images is not None else None
        cal = choose_threshold(normal, bad, self.fpr)
        cal.update({"family": self.family, "map": self.map_settings, "image_size": self.size, "held_out_images": len(self.val_files),
                    "resize": "every image is resized to image_size x image_size (bilinear, antialiased)"})
        return cal

    # ------------------------------------------------------------ the card
    def description(self) -> str:
        kind = "grey" if self.channels == 1 else "colour"
        what = ("plain convolutional autoencoder with a narrow bottleneck" if self.family == "plain" else
                "denoising (repair) autoencoder trained to undo synthetic defects")
        return (f"Anomaly detection for {kind} images at {self.size}x{self.size}: a {what}, trained on normal images; "
                "the anomaly map is its SSIM + L1 reconstruction error.")

    def data_description(self) -> dict:
        return {"folders": [str(d) for d in self.data], "train_images": len(self.train_files),
                "held_out_images": len(self.val_files), "val_split": None if self.val else self.val_split,
                "val": [str(v) for v in self.val] if self.val else None, "seed": self.seed,
                "anomalous": [str(d) for d in self.anomalous] if self.anomalous else None,
                "family": self.family, "augment": "flips and quarter turns" if self.augment else "none"}

    def validation_description(self) -> dict:
        return {"files": len(self.val_files), "metric": "mean PSNR of the reconstruction of held-out normal images"
                + (" with fixed synthetic defects (the repair)" if self.family == "repair" else "")}
