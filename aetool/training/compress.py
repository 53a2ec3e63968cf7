"""Training task for the learned codec (a variational autoencoder with a scale hyperprior and gain
units): random patches, a random quality level per patch, and the rate-distortion loss of that
level, rate (bits per pixel, from the entropy models) + lambda * 255^2 * MSE, so that one model
learns every rate (Cui et al., CVPR 2021)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..models.hyperprior import LAMBDAS
from .data import PatchSampler, center_crops, load_split, split_files

VAL_CROP = 256
VAL_BPP = 0.5  # validation reports the PSNR the model reaches at this rate


def psnr_at_rate(rates: list[float], psnrs: list[float], target: float) -> float:
    """PSNR at `target` bpp on the piecewise-linear curve through (rate, psnr) points sorted by rate;
    beyond the ends, the nearest segment extended."""
    order = np.argsort(rates)
    r, p = np.asarray(rates, float)[order], np.asarray(psnrs, float)[order]
    if len(r) == 1:
        return float(p[0])
    k = int(np.clip(np.searchsorted(r, target) - 1, 0, len(r) - 2))
    if r[k + 1] == r[k]:
        return float(p[k])
    return float(p[k] + (p[k + 1] - p[k]) * (target - r[k]) / (r[k + 1] - r[k]))


class CompressTask:
    task = "compress"
    name = "compress"
    plot_labels = ("training loss (bpp + lambda 255^2 MSE)", f"validation PSNR at {VAL_BPP} bpp (dB)")

    def __init__(self, data: list[Path], channels: int = 3, n: int = 64, m: int = 96, patch: int = 128,
                 val: list[Path] | None = None, val_count: int = 8):
        if patch % 64:
            raise UsageError(f"--patch must be a multiple of 64 (the codec downsamples 64x), got {patch}")
        if channels not in (1, 3):
            raise UsageError("--channels must be 1 (grey) or 3 (colour)")
        self.data = [Path(d) for d in data]
        self.channels, self.n, self.m, self.patch = channels, n, m, patch
        self.val = [Path(v) for v in val] if val else None
        self.val_count = val_count

    def build_model(self):
        from ..models.hyperprior import ScaleHyperprior

        return ScaleHyperprior(in_channels=self.channels, n=self.n, m=self.m)

    def adopt_init(self, model):
        if getattr(model, "arch_name", None) != "scale_hyperprior":
            raise UsageError(f"--init model '{model.card.name}' is for the {model.card.task} task, not a codec; "
                             "give one from `aetool models` or a file from `aetool train compress`")
        if model.config.get("in_channels") != self.channels:
            raise UsageError(f"--init model '{model.card.name}' has {model.config.get('in_channels')} channels, "
                             f"but --channels is {self.channels}")
        return model

    def prepare(self, device: str) -> None:
        import torch

        self.split = split_files(self.data, self.val, self.val_count)
        self.warnings = self.split.warnings
        images, val_images = load_split(self.split, self.channels, self.patch, f"--patch {self.patch}", 64)
        self.train_count = len(images)
        self.sampler = PatchSampler(images, self.patch)
        self.val_crops = []
        for c in center_crops(val_images, VAL_CROP):
            h, w = (c.shape[0] // 64) * 64, (c.shape[1] // 64) * 64
            self.val_crops.append(np.ascontiguousarray(c[:h, :w]))
        self._torch = torch

    def sample_batch(self, rng: np.random.Generator, gen, batch_size: int, device: str):
        torch = self._torch
        x = torch.from_numpy(self.sampler.sample(rng, batch_size)).permute(0, 3, 1, 2).float().div_(255)
        # Quality levels 1..L, drawn per patch: every level is trained in every batch on average.
        quality = torch.randint(1, len(LAMBDAS) + 1, (batch_size,), generator=gen).float()
        return x.to(device=device, memory_format=torch.channels_last), quality.to(device)

    def loss(self, model, batch):
        from ..entropy import bits

        x, quality = batch
        out = model(x, quality)
        pixels = x.shape[2] * x.shape[3]
        rate = (bits(out["y_likelihood"]) + bits(out["z_likelihood"])) / pixels
        mse = (out["x_hat"].float() - x).square().flatten(1).mean(1)
        lam = model.lambdas[(quality - 1).long().clamp(0, model.levels - 1)]
        return (rate + lam * 255 ** 2 * mse).mean()

    def validate(self, model, device: str) -> float:
        """PSNR (RGB, 8-bit rounded) at VAL_BPP of the estimated rate, over the validation crops:
        each crop coded at every quality level, the mean (rate, PSNR) curve interpolated."""
        torch = self._torch
        rates, psnrs = [], []
        for q in range(1, model.levels + 1):
            total_bits, total_pixels, level_psnr = 0.0, 0, []
            for c in self.val_crops:
                x = torch.from_numpy(c).permute(2, 0, 1)[None].float().div(255).to(device)
                x_hat, b = model.estimate(x, q)
                out = (x_hat * 255).round().cpu()[0].permute(1, 2, 0).numpy()
                mse = np.mean((out.astype(np.float64) - c.astype(np.float64)) ** 2)
                level_psnr.append(10 * np.log10(255 ** 2 / max(mse, 1e-10)))
                total_bits += b
                total_pixels += c.shape[0] * c.shape[1]
            rates.append(total_bits / total_pixels)
            psnrs.append(float(np.mean(level_psnr)))
        self.last_curve = {"bpp": [round(r, 4) for r in rates], "psnr": [round(p, 3) for p in psnrs]}
        return psnr_at_rate(rates, psnrs, VAL_BPP)

    def description(self) -> str:
        kind = "grey" if self.channels == 1 else "colour"
        return (f"Variational autoencoder with a scale hyperprior (GDN transforms, N={self.n}, M={self.m}) and gain "
                f"units for a continuous quality 1-8, for {kind} images; no autoregressive context.")

    def data_description(self) -> dict:
        return {"folders": [str(d) for d in self.data], "train_images": self.train_count, "patch": self.patch,
                "loss": "bpp + lambda * 255^2 * MSE, lambda of a random quality level 1-8 per patch"}

    def validation_description(self) -> dict:
        return {"files": [f.name for f in self.split.val], "held_out": self.split.held_out, "crop": VAL_CROP,
                "metric": f"RGB PSNR at {VAL_BPP} bpp of the model's estimated rate (8 quality levels, "
                          "interpolated)", "curve": getattr(self, "last_curve", None)}


def add_coding_tables(path: Path) -> None:
    """Write the integer coding tables into a codec's weights file that lacks them (one exported
    by a trainer older than the tables), and update its card's sha256: the weights themselves
    are unchanged. `python -c "from aetool.training.compress import add_coding_tables as a; a('F')"`."""
    import json
    import os

    from ..registry import find_card, load_model, save_weights, sha256_of

    path = Path(path)
    card = find_card(str(path))
    model = load_model(card, "cpu")
    if model.tables_ready:
        return
    model.update_tables()
    tmp = path.with_name(path.name + ".tmp")
    save_weights(model, tmp, "compress")
    os.replace(tmp, path)
    card_path = path.with_suffix(".json")
    data = json.loads(card_path.read_text())
    data["sha256"] = sha256_of(path)
    data.setdefault("training", {})["tables"] = ("added after training by aetool.training.compress."
                                                 "add_coding_tables (the run's trainer predated them)")
    card_path.write_text(json.dumps(data, indent=2) + "\n")


PROGRESSIVE_VAL_ITERATIONS = 4  # validation reports the PSNR after this many iterations (0.5 bpp of raw bits)


class ProgressiveCompressTask:
    """Training task for the progressive codec (a recurrent autoencoder, aetool/models/recurrent.py):
    random patches, every iteration unrolled, and a loss that weighs every iteration alike: the
    mean over iterations of log MSE, i.e. minus the mean PSNR of the refinements (an MSE loss
    would be ruled by the first, coarse iterations, whose errors are the largest)."""

    task = "compress"
    name = "compress (recurrent)"
    plot_labels = ("training loss (mean over iterations of ln MSE)",
                   f"validation PSNR after {PROGRESSIVE_VAL_ITERATIONS} iterations (dB)")

    def __init__(self, data: list[Path], channels: int = 3, bits: int = 32, iterations: int = 16, patch: int = 64,
                 val: list[Path] | None = None, val_count: int = 8, decoder: tuple[int, ...] = (128, 128, 64, 32)):
        if patch % 16:
            raise UsageError(f"--patch must be a multiple of 16 (the recurrent codec downsamples 16x), got {patch}")
        if channels not in (1, 3):
            raise UsageError("--channels must be 1 (grey) or 3 (colour)")
        if not 1 <= iterations <= 64:
            raise UsageError(f"--iterations must be 1 to 64, got {iterations}")
        if not 1 <= bits <= 256:
            raise UsageError(f"--bits must be 1 to 256, got {bits}")
        if len(decoder) != 4 or any(c < 4 or c % 4 for c in decoder):
            raise UsageError(f"--decoder must be 4 channel counts, each a multiple of 4, got {decoder}")
        self.data = [Path(d) for d in data]
        self.channels, self.bits, self.iterations, self.patch = channels, bits, iterations, patch
        self.decoder = tuple(decoder)
        self.val = [Path(v) for v in val] if val else None
        self.val_count = val_count

    def build_model(self):
        from ..models.recurrent import RecurrentCodec

        return RecurrentCodec(in_channels=self.channels, bits=self.bits, iterations=self.iterations,
                              decoder=self.decoder)

    def adopt_init(self, model):
        if getattr(model, "arch_name", None) != "recurrent_codec":
            raise UsageError(f"--init model '{model.card.name}' is not a recurrent codec; give one from "
                             "`aetool models` or a file from `aetool train compress --arch recurrent`")
        if model.in_channels != self.channels:
            raise UsageError(f"--init model '{model.card.name}' has {model.in_channels} channels, "
                             f"but --channels is {self.channels}")
        self.bits, self.iterations = model.bits, model.iterations
        return model

    def prepare(self, device: str) -> None:
        import torch

        self.split = split_files(self.data, self.val, self.val_count)
        self.warnings = self.split.warnings
        images, val_images = load_split(self.split, self.channels, self.patch, f"--patch {self.patch}", 16)
        self.train_count = len(images)
        self.sampler = PatchSampler(images, self.patch)
        self.val_crops = [np.ascontiguousarray(c[:c.shape[0] // 16 * 16, :c.shape[1] // 16 * 16])
                          for c in center_crops(val_images, VAL_CROP)]
        self._torch = torch

    def sample_batch(self, rng: np.random.Generator, gen, batch_size: int, device: str):
        torch = self._torch
        x = torch.from_numpy(self.sampler.sample(rng, batch_size)).permute(0, 3, 1, 2).float().div_(255)
        return x.to(device=device, memory_format=torch.channels_last)

    def loss(self, model, batch):
        errors = model(batch)  # (iterations, B)
        return self._torch.log(errors + 1e-6).mean()

    def validate(self, model, device: str) -> float:
        """PSNR (8-bit rounded) after every iteration over the validation crops, with sign
        binarisation as at inference; also gathers the bit statistics of the coding tables."""
        torch = self._torch
        model.bit_counts.zero_()
        psnrs = np.zeros((len(self.val_crops), model.iterations))
        for i, c in enumerate(self.val_crops):
            x = torch.from_numpy(c).permute(2, 0, 1)[None].float().div(255).to(device)
            codes, images = model.code(x)
            model.count_bits([b.float() for b in codes])
            for k, image in enumerate(images):
                out = (image.float() * 255).round().cpu()[0].permute(1, 2, 0).numpy()
                mse = np.mean((out.astype(np.float64) - c.astype(np.float64)) ** 2)
                psnrs[i, k] = 10 * np.log10(255 ** 2 / max(mse, 1e-10))
        curve = psnrs.mean(0)
        self.last_curve = {"bpp_raw": [round((k + 1) * model.bits / 256, 4) for k in range(model.iterations)],
                           "psnr": [round(float(p), 3) for p in curve]}
        return float(curve[min(PROGRESSIVE_VAL_ITERATIONS, model.iterations) - 1])

    def description(self) -> str:
        kind = "grey" if self.channels == 1 else "colour"
        return (f"Recurrent autoencoder (ConvGRU encoder and decoder, Toderici et al. 2017) for progressive "
                f"compression of {kind} images: {self.iterations} iterations of {self.bits} bits per 16x16 "
                f"pixels ({self.bits / 256:g} bpp each before entropy coding), scaled-additive reconstruction.")

    def data_description(self) -> dict:
        return {"folders": [str(d) for d in self.data], "train_images": self.train_count, "patch": self.patch,
                "loss": "mean over iterations of ln MSE (stochastic binarisation)"}

    def validation_description(self) -> dict:
        return {"files": [f.name for f in self.split.val], "held_out": self.split.held_out, "crop": VAL_CROP,
                "metric": f"RGB PSNR after {PROGRESSIVE_VAL_ITERATIONS} iterations (sign binarisation)",
                "curve": getattr(self, "last_curve", None)}
