"""Anomaly detection: score images against an autoencoder trained on normal ones, show where they
differ, and flag those above a threshold set on held-out normal images.

The model works at one declared size (its card's image_size): every image is resized to that
square, reconstructed, and the anomaly map is computed there and resized back to the image. Why
resize and not tile: the threshold and the score statistics are calibrated at that one scale,
so a 300 px cell and a 4000 px photo of the same part get comparable scores, and a whole part
is seen at once, as in training. Defects smaller than about one pixel at that size are lost:
train at a larger --size for those.

The anomaly map is a weighted sum of the structural error (1 - local SSIM, Bergmann et al. 2019)
and the absolute error of the reconstruction, averaged over the channels and smoothed with a
Gaussian; the image score is the mean of its highest `top_fraction` of pixels (a robust high
statistic: one hot pixel does not flag an image, a defect of a few hundred pixels does).

`AnomalyDetector` is the runtime (the command line runs its `picture` for every file);
`AnomalyResult` is what it returns for one image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..engine import EngineOptions, Runner
from ..errors import ModelError, UsageError
from ..imageio import Picture
from ..registry import find_card, load_model, verify_model
from ..resize import resize_to, to_model_channels

# How a map is made and scored, unless the model's calibration says otherwise. border: pixels of
# mirrored image added on each side before reconstructing (and cropped after), so that the image's
# edge is reconstructed with context like its inside: without it, the convolutions' zero padding
# made the edges the hottest part of every normal image's map (models calibrated before it have 0).
DEFAULT_MAP = {"ssim_weight": 0.5, "smooth_sigma": 4.0, "top_fraction": 0.01, "border": 0}
NORMAL, ANOMALOUS = "normal", "anomalous"


# ---------------------------------------------------------------- maps and scores (torch, batched)
def _gaussian_kernel(sigma: float, torch):
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return k / k.sum(), radius


def gaussian_blur(x, sigma: float):
    """Separable Gaussian blur of (B, C, H, W), reflected at the borders."""
    import torch
    import torch.nn.functional as F

    if sigma <= 0:
        return x
    k, r = _gaussian_kernel(sigma, torch)
    k = k.to(x.device, x.dtype)
    c = x.shape[1]
    r_h, r_w = min(r, x.shape[2] - 1), min(r, x.shape[3] - 1)  # reflect needs the pad below the size
    x = F.pad(x, (r_w, r_w, r_h, r_h), mode="reflect") if r_h > 0 and r_w > 0 else x
    kh, kw = k[r - r_h:r + r_h + 1], k[r - r_w:r + r_w + 1]
    x = F.conv2d(x, kh.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, kw.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def ssim_map(x, y, sigma: float = 1.5):
    """Local SSIM (Wang et al. 2004, Gaussian window of sigma 1.5, data range 1) of (B, C, H, W)
    tensors, per pixel and channel. Always in fp32: E[x^2] - E[x]^2 in bf16 cancels to noise, and
    a negative variance made training diverge."""
    import torch

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    with torch.autocast(x.device.type, enabled=False):
        x, y = x.float(), y.float()
        mx, my = gaussian_blur(x, sigma), gaussian_blur(y, sigma)
        vx = (gaussian_blur(x * x, sigma) - mx * mx).clamp_min(0)
        vy = (gaussian_blur(y * y, sigma) - my * my).clamp_min(0)
        cov = gaussian_blur(x * y, sigma) - mx * my
        return ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def anomaly_maps(x, recon, settings: dict = DEFAULT_MAP):
    """(B, H, W) maps from images and their reconstructions (B, C, H, W) in [0, 1]."""
    x, recon = x.float(), recon.float()
    w = settings["ssim_weight"]
    err = (1 - w) * (x - recon).abs() + w * (1 - ssim_map(x, recon)).clamp(0, 2) / 2
    return gaussian_blur(err.mean(dim=1, keepdim=True), settings["smooth_sigma"])[:, 0]


def image_scores(maps, top_fraction: float):
    """The mean of the highest `top_fraction` of each map's pixels: (B, H, W) -> (B,)."""
    flat = maps.flatten(1)
    k = max(1, int(round(top_fraction * flat.shape[1])))
    return flat.topk(k, dim=1).values.mean(dim=1)


def reconstruct(model, x, border: int):
    """The model's reconstruction of (B, C, H, W) x, with `border` pixels mirrored on each side
    while it runs (see DEFAULT_MAP)."""
    import torch.nn.functional as F

    if border <= 0:
        return model(x)
    b = min(border, x.shape[-2] - 1, x.shape[-1] - 1)
    return model(F.pad(x, (b, b, b, b), mode="reflect"))[..., b:-b, b:-b]


# ---------------------------------------------------------------- thresholds
def choose_threshold(normal: np.ndarray, anomalous: np.ndarray | None = None, fpr: float = 0.01) -> dict:
    """The threshold (scores above it are anomalous) from held-out normal scores: the lowest that
    flags at most `fpr` of them; or, given known anomalous scores, the one of best F1.
    Returns the threshold, how it was chosen, and the statistics the card records."""
    normal = np.sort(np.asarray(normal, np.float64))
    n = len(normal)
    if n == 0:
        raise UsageError("no held-out normal images to set the threshold from; give more images or --val-split")
    stats = {"count": n, "mean": float(normal.mean()), "std": float(normal.std()), "min": float(normal[0]),
             "median": float(np.median(normal)), "p99": float(np.quantile(normal, 0.99)), "max": float(normal[-1])}
    if anomalous is not None and len(anomalous):
        anomalous = np.asarray(anomalous, np.float64)
        best = (-1.0, float(normal[-1]))
        for t in np.unique(np.concatenate([normal, anomalous])):
            tp = float((anomalous > t).sum())
            fp = float((normal > t).sum())
            f1 = 2 * tp / (2 * tp + fp + (len(anomalous) - tp))
            if f1 > best[0]:
                best = (f1, float(t))
        return {"threshold": best[1], "method": "best F1 on --anomalous", "f1": round(best[0], 4),
                "anomalous_count": len(anomalous), "normal_scores": stats}
    allowed = int(math.floor(fpr * n))  # normal images that may score above the threshold
    threshold = float(normal[n - 1 - allowed])
    return {"threshold": threshold, "method": f"at most {fpr:g} of held-out normal images flagged", "fpr": fpr,
            "normal_scores": stats}


def normalizer(calibration: dict, threshold: float):
    """score -> 0..1 with 0.5 at the threshold: a logistic whose scale puts the median held-out
    normal image at 0.1, so a typical good part reads low and a clear defect near 1."""
    median = calibration.get("normal_scores", {}).get("median")
    spread = (threshold - median) / math.log(9) if median is not None and median < threshold else 0.0
    if not spread > 0:
        spread = max(abs(threshold) * 0.1, 1e-12)

    def normalize(score: float) -> float:
        z = (score - threshold) / spread
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    return normalize


# ---------------------------------------------------------------- the runtime
@dataclass
class AnomalyResult:
    score: float  # raw image score (the model's units; higher = more anomalous)
    normalized: float  # 0..1, 0.5 = the threshold
    label: str  # "normal" or "anomalous"
    map: np.ndarray  # (H, W) float32 anomaly map at the image's size, in the score's units
    threshold: float  # the threshold in use (after --sensitivity)

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool: the pixels whose map is above the threshold (the defect)."""
        return self.map > self.threshold


class AnomalyDetector:
    """Scores (H, W, C) float32 arrays in [0, 1] with an anomaly model and its calibration.

    threshold: overrides the card's; sensitivity: divides it (2 flags more, 0.5 fewer)."""

    def __init__(self, model: str, options: EngineOptions | None = None, threshold: float | None = None,
                 sensitivity: float = 1.0):
        if not sensitivity > 0:
            raise UsageError(f"sensitivity must be positive, got {sensitivity:g}")
        self.card = find_card(model)
        if self.card.task != "anomaly":
            raise UsageError(f"model '{self.card.name}' is for the {self.card.task} task, not for anomaly detection; "
                             "train one with `aetool train anomaly --data GOOD_IMAGES --out FILE.safetensors`")
        meta = verify_model(self.card)
        self.calibration = self.card.calibration or meta.get("calibration") or {}
        if threshold is None and "threshold" not in self.calibration:
            raise ModelError(f"model '{self.card.name}' has no anomaly threshold in its card or weights file (it was "
                             "not written by `aetool train anomaly`, or its card was edited); give --threshold, or "
                             "re-run the training command with --resume to calibrate it")
        base = float(threshold if threshold is not None else self.calibration["threshold"])
        self.threshold = base / sensitivity
        self.map_settings = {**DEFAULT_MAP, **self.calibration.get("map", {})}
        self.size = int(self.card.config.get("image_size", 256))
        self.channels = int(self.card.config.get("in_channels", 1))
        self.normalize = normalizer(self.calibration, self.threshold)
        self.runner = Runner(options)
        self._model = None

    @classmethod
    def load(cls, model: str, device: str = "auto", threshold: float | None = None, sensitivity: float = 1.0,
             precision: str = "auto") -> "AnomalyDetector":
        """A detector for a model name (`aetool models`) or a .safetensors file from `aetool train anomaly`."""
        return cls(model, EngineOptions(device=device, precision=precision, tile=0), threshold, sensitivity)

    @property
    def model(self):
        if self._model is None:
            self._model = self.runner.prepare(load_model(self.card, "cpu"))
        return self._model

    def map_and_score(self, pixels: np.ndarray) -> tuple[np.ndarray, float]:
        """The (H, W) map at the image's size and the image score of (H, W, C) float32 pixels."""
        import torch
        import torch.nn.functional as F

        h, w, _ = pixels.shape
        x = torch.from_numpy(np.ascontiguousarray(pixels, np.float32)).permute(2, 0, 1)[None]
        x = resize_to(to_model_channels(x, self.channels), (self.size, self.size)).clamp_(0, 1)
        work = x[0].permute(1, 2, 0).numpy()
        recon = torch.from_numpy(self.runner.run(lambda t: reconstruct(self.model, t, self.map_settings["border"]),
                                                 work)).permute(2, 0, 1)[None]
        maps = anomaly_maps(x, recon, self.map_settings)
        score = float(image_scores(maps, self.map_settings["top_fraction"])[0])
        full = F.interpolate(maps[:, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        return full.numpy().astype(np.float32), score

    def __call__(self, image) -> AnomalyResult:
        """Score one image: a PIL image, a numpy array (H, W) or (H, W, C) of uint8 / uint16 / float
        in [0, 1], or a torch tensor (C, H, W) in [0, 1]."""
        from .convert import to_float_planes

        pixels, _, _ = to_float_planes(image)
        return self.result(pixels)

    def result(self, pixels: np.ndarray) -> AnomalyResult:
        amap, score = self.map_and_score(pixels)
        label = ANOMALOUS if score > self.threshold else NORMAL
        return AnomalyResult(score, self.normalize(score), label, amap, self.threshold)

    def picture(self, pic: Picture) -> tuple[Picture, AnomalyResult, dict]:
        """The heatmap picture of one decoded file, its result, and the file's JSON fields."""
        r = self.result(pic.pixels)
        heat = heatmap_overlay(pic.pixels, r.map, r.threshold)
        out = replace(pic, pixels=heat, alpha=None, bit_depth=8, png_text=[])
        info = {"score": round(r.score, 6), "score_normalized": round(r.normalized, 4), "label": r.label,
                "threshold": round(r.threshold, 6), "model": self.card.name}
        return out, r, info


# ---------------------------------------------------------------- pictures
def heatmap_overlay(pixels: np.ndarray, amap: np.ndarray, threshold: float) -> np.ndarray:
    """The map, colour-mapped (turbo; the top of the scale is twice the threshold, so colours mean
    the same on every image of a model), over a grey copy of the image: (H, W, 3) float32."""
    from matplotlib import colormaps

    grey = pixels.mean(axis=2, keepdims=True) if pixels.shape[2] > 1 else pixels
    level = np.clip(amap / max(2 * threshold, 1e-12), 0, 1)
    colour = colormaps["turbo"](level)[..., :3].astype(np.float32)
    alpha = (0.25 + 0.6 * level)[..., None]
    return (1 - alpha) * grey + alpha * colour
