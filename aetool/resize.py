"""MATLAB-compatible bicubic resizing, to make low-resolution training inputs the way the
super-resolution test sets were made (docs/protocol.md: the LR images are MATLAB
`imresize(HR, 1/scale, 'bicubic')` of the HR image cropped to a multiple of the scale).

This follows the algorithm of MATLAB's `imresize` with a scale factor, method 'bicubic' and its
default antialiasing:

* the Keys cubic kernel with a = -0.5 on [-2, 2];
* when shrinking (scale < 1) the kernel is stretched by 1/scale and scaled by `scale`
  (antialiasing), so it spans 4/scale input pixels;
* output size ceil(scale * size) per dimension;
* output pixel x (1-based) samples the input at u = x / scale + 0.5 * (1 - 1 / scale);
* taps outside the image are clamped to the nearest edge pixel ("Clamp out-of-range indices;
  has the effect of replicating end-points" in imresize.m; some Python ports mirror instead,
  which changes the border pixels);
* the weights of each output pixel are normalised to sum to 1;
* the two dimensions are resized one after the other, the one with the smaller scale first
  (for equal scales: dimension 1, the height, first);
* for a uint8 input the intermediate image (after the first dimension) is uint8 too, so it is
  rounded half away from zero and clipped before the second dimension (`round_between`).

Pillow's BICUBIC and torch's `interpolate(mode="bicubic", antialias=True)` use the same kernel but
differ at the borders and in rounding; `benchmarks/sr_downscale_match.py` measures how far each
one is from the provided LR files.

At the end, `resize_to` and `to_model_channels`: how a model of one fixed input size (anomaly,
the vector-code autoencoders) gets any image, in torch.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["imresize", "downscale_uint8", "output_size"]


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel, a = -0.5 (MATLAB's `cubic`)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


def output_size(length: int, scale: float) -> int:
    """MATLAB's ceil(scale * length). A product that misses an integer by float rounding alone
    (relative error below 1e-12, e.g. 300 * 0.1) counts as that integer."""
    v = scale * length
    r = round(v)
    return int(r) if abs(v - r) <= 1e-12 * max(1.0, abs(v)) else int(math.ceil(v))


def _contributions(in_len: int, out_len: int, scale: float, antialias: bool = True):
    """Weights (out_len, P) and 0-based input indices (out_len, P) of each output pixel, as in
    MATLAB's `contributions` (imresize.m)."""
    kernel_width = 4.0
    if scale < 1 and antialias:
        def kernel(t):
            return scale * _cubic(scale * t)
        kernel_width /= scale
    else:
        kernel = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    ind = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based, may fall outside
    weights = kernel(u[:, None] - ind)
    weights /= weights.sum(axis=1, keepdims=True)
    ind = np.clip(ind.astype(np.int64) - 1, 0, in_len - 1)  # replicate the edge pixels
    keep = np.any(weights != 0, axis=0)  # MATLAB drops the tap columns that are zero everywhere
    return weights[:, keep], ind[:, keep]


def _resize_axis(a: np.ndarray, axis: int, scale: float, out_len: int, antialias: bool) -> np.ndarray:
    weights, ind = _contributions(a.shape[axis], out_len, scale, antialias)
    shape = [1] * a.ndim
    shape[axis] = out_len
    out = np.zeros(a.shape[:axis] + (out_len,) + a.shape[axis + 1:], dtype=np.float64)
    for k in range(weights.shape[1]):  # one tap at a time: memory stays at the output's size
        out += weights[:, k].reshape(shape) * np.take(a, ind[:, k], axis=axis)
    return out


def _round_half_away(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def imresize(image: np.ndarray, scale: float, antialias: bool = True,
             round_between: bool = False) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) image by `scale` like MATLAB `imresize(I, scale, 'bicubic')`.

    The result keeps the input's value range and is not rounded: float64 (float32 for a float32
    input), of size (ceil(H * scale), ceil(W * scale)[, C]).

    This is MATLAB's computation for a floating-point input. round_between=True rounds (half away
    from zero) and clips to 0..255 after the first dimension, which is what MATLAB does for a uint8
    input (its intermediate image has the input's class).
    """
    a = np.asarray(image)
    if a.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {a.shape}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    out_dtype = np.float32 if a.dtype == np.float32 else np.float64
    x = a.astype(np.float64)
    sizes = [output_size(a.shape[0], scale), output_size(a.shape[1], scale)]
    if min(sizes) < 1:
        raise ValueError(f"scale {scale} makes an empty image from {a.shape[:2]}")
    for i, axis in enumerate((0, 1)):  # equal scales: MATLAB resizes dimension 1 (height) first
        x = _resize_axis(x, axis, scale, sizes[axis], antialias)
        if round_between and i == 0:
            x = np.clip(_round_half_away(x), 0, 255)
    return x.astype(out_dtype, copy=False)


def downscale_uint8(hr: np.ndarray, scale: int, round_between: bool = True) -> np.ndarray:
    """The low-resolution uint8 image of a uint8 HR image: MATLAB imresize(hr, 1/scale, 'bicubic')
    on the uint8 image, with MATLAB's uint8 conversion (round half away from zero, clip to 0..255)
    after each dimension. round_between=False rounds only once, at the end (MATLAB's result for
    im2double(hr) converted with im2uint8).

    The HR image should be cropped to a multiple of `scale` first (as the test sets were)."""
    hr = np.asarray(hr)
    if hr.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {hr.dtype}")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    lr = imresize(hr, 1.0 / int(scale), round_between=round_between)
    return np.clip(_round_half_away(lr), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- models of one fixed input size
def resize_to(x, size: tuple[int, int]):
    """(B, C, H, W) torch tensor to (B, C, size[0], size[1]), bilinear with antialiasing when
    shrinking: how the anomaly models and the vector-code autoencoders bring any image to their size."""
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)


def to_model_channels(x, channels: int):
    """(B, C, H, W) torch tensor to the model's channel count: luminance (ITU-R BT.601) or a grey
    repeated."""
    import torch

    if x.shape[1] == channels:
        return x
    if channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x[:, :3] * weights).sum(dim=1, keepdim=True)
    return x[:, :1].expand(-1, channels, -1, -1)
