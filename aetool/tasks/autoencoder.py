"""Runtime of the autoencoders whose code is a vector (dense, conv, VAE; aetool/models/):
embeddings of images, reconstructions, and, for a VAE, new images and walks between two images.

Every model works at one image size and channel count, declared in its weights file with the
rest of its preprocessing (see `preprocess`): inputs of any size are brought to it exactly as the
training images were, so an embedding never depends on how the image reached the model.

    from aetool import embed, Autoencoder
    vectors = embed(["a.png", "b.png"], model="fashion-conv")      # (2, latent) numpy array
    ae = Autoencoder.load("fashion-vae")
    images = ae.generate(16, seed=0, temperature=0.8)               # (16, H, W, C) floats in [0, 1]
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UsageError

FITS = ("stretch", "crop")
VECTOR_ARCHS = ("dense_autoencoder", "vector_conv_autoencoder", "conv_vae")


def default_preprocessing(channels: int, size: tuple[int, int], fit: str = "stretch") -> dict:
    """What the trainer records and the runtime applies (written to the weights and the card)."""
    return {"image_size": [int(size[0]), int(size[1])], "channels": channels, "fit": fit,
            "resize": "bilinear with antialiasing (torch), then rounded to 8-bit levels",
            "grey": "ITU-R BT.601 luma of RGB" if channels == 1 else None,
            "alpha": "ignored (the colour channels are used as they are)"}


def preprocess(pixels: np.ndarray, channels: int, size: tuple[int, int], fit: str = "stretch") -> np.ndarray:
    """One image (H, W, C) float in [0, 1] or uint8, to the model's input (size[0], size[1],
    channels) uint8: grey by BT.601 luma (or a grey repeated), `fit` "stretch" (the whole image,
    aspect ratio not kept) or "crop" (the largest centred crop of the model's aspect ratio), then
    a bilinear, antialiased resize. Rounded to 8-bit levels, as the training images were."""
    import torch

    from ..resize import resize_to, to_model_channels

    a = np.asarray(pixels)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[2] in (2, 4):  # grey or colour with alpha: the alpha is ignored
        a = a[:, :, :a.shape[2] - 1]
    if not a.flags.writeable or not a.flags.c_contiguous:
        a = np.array(a)  # torch wants a writable, contiguous buffer
    x = torch.from_numpy(a).permute(2, 0, 1)[None]
    x = x.float() / 255 if a.dtype == np.uint8 else x.float()
    x = to_model_channels(x[:, :3], channels)
    h, w = x.shape[-2:]
    if fit == "crop":
        th, tw = size
        if h * tw > w * th:  # taller than the model's aspect: crop rows
            ch = max(1, round(w * th / tw))
            x = x[..., (h - ch) // 2:(h - ch) // 2 + ch, :]
        else:
            cw = max(1, round(h * tw / th))
            x = x[..., (w - cw) // 2:(w - cw) // 2 + cw]
    x = resize_to(x, size)
    out = (x[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8)
    return out.numpy()


def _as_pixels(image) -> np.ndarray:
    """A path, PIL image or array to (H, W, C) pixels (uint8 or float in [0, 1])."""
    from PIL import Image

    if isinstance(image, (str, Path)):
        from ..imageio import read_image

        return read_image(image).pixels
    if isinstance(image, Image.Image):
        im = image.convert("L" if image.mode in ("L", "LA", "I", "I;16", "1") else "RGB")
        return np.asarray(im)
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = a.astype(np.float32)
        if a.max(initial=0) > 1.0 + 1e-6:
            raise UsageError("a float image array must hold values in [0, 1]; pass uint8 for 0-255")
    return a


class Autoencoder:
    """A loaded vector-code autoencoder (dense, conv or VAE) and its preprocessing."""

    def __init__(self, model, device: str = "cpu"):
        self.model = model
        self.device = device
        self.card = model.card
        if model.meta["arch"] not in VECTOR_ARCHS:
            raise UsageError(f"model '{self.card.name}' is a {model.card.task} model ({model.meta['arch']}); embed, "
                             "generate and reconstruct take one from `aetool train autoencoder`")
        pre = model.meta.get("preprocessing") or default_preprocessing(
            model.config["in_channels"], tuple(model.config["image_size"]))
        self.preprocessing = pre
        self.size = tuple(pre["image_size"])
        self.channels = int(pre["channels"])
        self.fit = pre.get("fit", "stretch")
        self.latent = int(model.config["latent"])
        self.kind = model.kind

    @classmethod
    def load(cls, model: str = "fashion-conv", device: str = "auto") -> "Autoencoder":
        from ..device import resolve_device
        from ..registry import load_model

        device = resolve_device(device)
        return cls(load_model(model, device), device)

    def inputs(self, images) -> np.ndarray:
        """Images (paths, PIL, arrays; any size) to the model's inputs, (N, h, w, C) uint8."""
        arrays = [preprocess(_as_pixels(im), self.channels, self.size, self.fit) for im in images]
        return np.stack(arrays) if arrays else np.zeros((0, *self.size, self.channels), np.uint8)

    def _tensor(self, batch: np.ndarray):
        import torch

        if not batch.flags.writeable:
            batch = batch.copy()  # torch.from_numpy warns on read-only buffers (np.frombuffer, mmap)
        return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div(255).to(self.device)

    def _run(self, fn, arrays: np.ndarray, batch_size: int = 256) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(arrays), batch_size):
                out.append(fn(self._tensor(arrays[i:i + batch_size])).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0,), np.float32)

    def embed_inputs(self, arrays: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Model inputs (from `inputs`) to codes (N, latent) float32; a VAE gives its posterior mean."""
        if not len(arrays):
            return np.zeros((0, self.latent), np.float32)
        codes = self._run(self.model.encode, arrays, batch_size).reshape(len(arrays), self.latent)
        if not np.isfinite(codes).all():
            from ..errors import NonFiniteOutputError

            raise NonFiniteOutputError("the model produced NaN or infinite codes: its weights are damaged or its "
                                       "training diverged; re-train or restore it")
        return codes.astype(np.float32)

    def embed(self, images, batch_size: int = 256) -> np.ndarray:
        return self.embed_inputs(self.inputs(images), batch_size)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Codes (N, latent) to images (N, h, w, C) float32 in [0, 1]."""
        import torch

        with torch.inference_mode():
            z = torch.as_tensor(np.asarray(codes, np.float32), device=self.device)
            return self.model.decode(z).float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()

    def reconstruct(self, images) -> np.ndarray:
        """What the model keeps of each image: decode(encode(x)), at the model's size."""
        return self.decode(self.embed(images))

    def generate(self, n: int, seed: int | None = None, temperature: float = 1.0) -> np.ndarray:
        """n new images (VAE only): codes from N(0, temperature^2 I), decoded."""
        import torch

        if self.kind != "vae":
            raise UsageError(f"model '{self.card.name}' is a {self.kind} autoencoder: only a variational one (train "
                             "with --arch vae) has a prior to draw new images from; its codes can still be "
                             "interpolated (--interpolate)")
        if n < 1:
            raise UsageError(f"-n must be at least 1, got {n}")
        if not temperature >= 0:
            raise UsageError(f"--temperature must be 0 or more, got {temperature:g}")
        if seed is None:  # fresh images, without touching torch's global generator
            import secrets

            seed = secrets.randbits(63)
        gen = torch.Generator().manual_seed(int(seed))
        z = torch.randn((n, self.latent), generator=gen) * temperature
        return self.decode(z.numpy())

    def interpolate(self, a, b, steps: int = 8) -> np.ndarray:
        """`steps` images walking from a to b in code space (linear; the ends are the two
        reconstructions)."""
        if steps < 2:
            raise UsageError(f"--steps must be at least 2, got {steps}")
        za, zb = self.embed([a, b])
        t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
        return self.decode((1 - t) * za + t * zb)


def embed(images, model: str = "fashion-conv", device: str = "auto", batch_size: int = 256) -> np.ndarray:
    """Embeddings (N, latent) float32 of images (paths, PIL images or arrays) by a model from
    `aetool train autoencoder` (a name or a .safetensors file)."""
    return Autoencoder.load(model, device).embed(list(images), batch_size)


# ---------------------------------------------------------------- pictures of a set
def grid(images: np.ndarray, columns: int | None = None, zoom: int = 1, gap: int = 2) -> np.ndarray:
    """(N, h, w, C) float images tiled into one (H, W, C) picture on white, `gap` pixels apart,
    each enlarged `zoom` times (nearest: the model's pixels stay visible)."""
    n, h, w, c = images.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    if zoom > 1:
        images = images.repeat(zoom, axis=1).repeat(zoom, axis=2)
        h, w = h * zoom, w * zoom
    out = np.ones((rows * h + (rows + 1) * gap, columns * w + (columns + 1) * gap, c), np.float32)
    for i, im in enumerate(images):
        r, k = divmod(i, columns)
        y, x = gap + r * (h + gap), gap + k * (w + gap)
        out[y:y + h, x:x + w] = im
    return out


def nearest_neighbours(codes: np.ndarray, k: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """For each row its k nearest other rows by Euclidean distance (exact, in chunks):
    (indices (N, k), distances (N, k)), nearest first."""
    n = len(codes)
    k = min(k, n - 1)
    codes = codes.astype(np.float64)
    sq = (codes ** 2).sum(1)
    idx = np.zeros((n, k), np.int64)
    dist = np.zeros((n, k), np.float64)
    for s in range(0, n, chunk):
        d2 = sq[s:s + chunk, None] + sq[None, :] - 2 * codes[s:s + chunk] @ codes.T
        rows = np.arange(s, min(n, s + chunk))
        d2[rows - s, rows] = np.inf  # not itself
        part = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < n - 1 else np.argsort(d2, axis=1)[:, :k]
        pd = np.take_along_axis(d2, part, 1)
        order = np.argsort(pd, axis=1, kind="stable")
        idx[s:s + chunk] = np.take_along_axis(part, order, 1)
        dist[s:s + chunk] = np.sqrt(np.maximum(np.take_along_axis(pd, order, 1), 0))
    return idx, dist


def project_2d(codes: np.ndarray) -> tuple[np.ndarray, str]:
    """Points for a 2-D map: the codes themselves when they are 2-D, else their first two
    principal components. Returns (N, 2) and how they were made."""
    if codes.shape[1] == 2:
        return codes.astype(np.float64), "the model's 2-D code"
    centred = codes.astype(np.float64) - codes.mean(0)
    if len(codes) < 2:
        return np.zeros((len(codes), 2)), "principal components of the codes"
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    pts = centred @ vt[:2].T
    if pts.shape[1] < 2:
        pts = np.pad(pts, ((0, 0), (0, 2 - pts.shape[1])))
    share = (s[:2] ** 2).sum() / max((s ** 2).sum(), 1e-12)
    return pts, f"first two principal components of the {codes.shape[1]}-D codes ({share:.0%} of their variance)"
