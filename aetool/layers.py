"""Building blocks shared by the model families (kept apart from the models, as in CompressAI)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv3x3(in_ch: int, out_ch: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=bias)


class ResBlock(nn.Module):
    """conv-ReLU-conv with an identity skip; no normalisation (it hurts restoration, see EDSR)."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = conv3x3(ch, ch)
        self.conv2 = conv3x3(ch, ch)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


def downsample(in_ch: int, out_ch: int) -> nn.Module:
    """Strided 2x2 convolution: halves height and width."""
    return nn.Conv2d(in_ch, out_ch, 2, stride=2)


def leaky_relu() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


def strided_encoder(in_ch: int, channels) -> list[nn.Module]:
    """Per level a stride-2 4x4 convolution and a 3x3 one, each with a leaky ReLU: halves height
    and width len(channels) times (the anomaly autoencoders' encoders)."""
    layers: list[nn.Module] = []
    for ch in channels:
        layers += [nn.Conv2d(in_ch, ch, 4, stride=2, padding=1), leaky_relu(), conv3x3(ch, ch), leaky_relu()]
        in_ch = ch
    return layers


def upsampling_decoder(in_ch: int, channels) -> list[nn.Module]:
    """Per level a nearest-neighbour doubling and a 3x3 convolution with a leaky ReLU (no
    checkerboard, unlike transposed convolutions)."""
    layers: list[nn.Module] = []
    for ch in channels:
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), conv3x3(in_ch, ch), leaky_relu()]
        in_ch = ch
    return layers


def upsample(in_ch: int, out_ch: int) -> nn.Module:
    """Transposed 2x2 convolution: doubles height and width."""
    return nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)


def pad_to_multiple(t: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad height and width at the bottom and right up to a multiple (replicate: reflect fails on
    inputs thinner than the pad). Crop the result back with [..., :h, :w]."""
    pad_h, pad_w = (-t.shape[-2]) % multiple, (-t.shape[-1]) % multiple
    return F.pad(t, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else t


def unet_pass(feat: torch.Tensor, encoders, downs, body, ups, decoders) -> torch.Tensor:
    """The U-Net walk: encode and downsample level by level keeping each level's features, run
    the bottom, then upsample and add the kept features back on the way up."""
    skips = []
    for enc, down in zip(encoders, downs):
        feat = enc(feat)
        skips.append(feat)
        feat = down(feat)
    feat = body(feat)
    for up, dec, skip in zip(ups, decoders, reversed(skips)):
        feat = dec(up(feat) + skip)
    return feat


def push_pull_fill(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Fill the pixels of zero weight from their weighted neighbours at growing distances
    (push-pull: Gortler et al., "The Lumigraph", SIGGRAPH 1996).

    Push: a pyramid of weighted means, halving down to one pixel. Pull: from the coarsest level
    up, a pixel with no weight takes the bilinear enlargement of the level below. The result is a
    smooth fill that follows the colours around each hole, in fp32, with no parameters.
    x: (B, C, H, W); weight: (B, 1, H, W) in [0, 1] (0 = unknown). Known pixels are returned as is.
    """
    x, weight = x.float(), weight.float()
    levels = []
    c, a = x * weight, weight
    while True:
        levels.append((c, a))
        if max(c.shape[-2:]) <= 1:
            break
        c, a = F.avg_pool2d(c, 2, ceil_mode=True), F.avg_pool2d(a, 2, ceil_mode=True)
    c, a = levels.pop()
    colour = c / a.clamp(min=1e-12)
    for c, a in reversed(levels):
        # Exactly 2x, then cropped: a coarse pixel stands for fine pixels 2j and 2j + 1 (ceil_mode),
        # also when a side is odd. Interpolating to the fine size instead stretched odd sides by
        # (2n + 1) / 2n, shifting the fill by up to half a pixel towards the far edges: the network
        # (trained on even patches) filled 481x321 photos 1.2 dB worse than their even-sized tiles
        # (benchmarks/inpaint_inference.py, docs/benchmarks.md).
        coarse = F.interpolate(colour, scale_factor=2, mode="bilinear", align_corners=False)
        coarse = coarse[..., :a.shape[-2], :a.shape[-1]]
        colour = torch.where(a > 0, c / a.clamp(min=1e-12), coarse)
    return torch.where(weight > 0, x, colour)


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé, Laparra, Simoncelli, ICLR 2016 and 2017):
    y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2); `inverse=True` multiplies instead (IGDN, for
    the synthesis transform). beta and gamma are kept non-negative by squaring a free parameter
    (with a small floor so that the gradient never vanishes at zero)."""

    _floor = 2.0 ** -18

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta_min = beta_min
        self.beta_param = nn.Parameter(torch.sqrt(torch.ones(channels) + self._floor ** 2))
        self.gamma_param = nn.Parameter(torch.sqrt(gamma_init * torch.eye(channels) + self._floor ** 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.beta_param.square().clamp_min(self.beta_min + self._floor ** 2) - self._floor ** 2
        gamma = self.gamma_param.square() - self._floor ** 2
        c = gamma.shape[0]
        norm = F.conv2d(x.square(), gamma.view(c, c, 1, 1), beta)
        norm = norm.clamp_min(1e-12).sqrt()  # clamp: bf16 can round a tiny sum to 0
        return x * norm if self.inverse else x / norm


def conv_down(in_ch: int, out_ch: int, kernel: int = 5) -> nn.Conv2d:
    """Stride-2 convolution that halves height and width (analysis transforms)."""
    return nn.Conv2d(in_ch, out_ch, kernel, stride=2, padding=kernel // 2)


def conv_up(in_ch: int, out_ch: int, kernel: int = 5) -> nn.ConvTranspose2d:
    """Stride-2 transposed convolution that doubles height and width (synthesis transforms)."""
    return nn.ConvTranspose2d(in_ch, out_ch, kernel, stride=2, padding=kernel // 2, output_padding=1)


class ConvToVector(nn.Module):
    """An image of a fixed size to one vector: the strided encoder's levels, then a linear map of
    the flattened features (the encoders of the autoencoders whose code is a vector: embed,
    generate). Sizes that are not a multiple of 2**levels are padded (replicate) first."""

    def __init__(self, in_ch: int, channels, size: tuple[int, int], out_features: int):
        super().__init__()
        self.multiple = 2 ** len(channels)
        self.features = nn.Sequential(*strided_encoder(in_ch, channels))
        grid = (-(-size[0] // self.multiple), -(-size[1] // self.multiple))
        self.linear = nn.Linear(channels[-1] * grid[0] * grid[1], out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(pad_to_multiple(x, self.multiple)).flatten(1))


class VectorToConv(nn.Module):
    """One vector to an image of a fixed size: a linear map to a coarse grid of features, then the
    upsampling decoder's levels (the mirror of ConvToVector), cropped to the size."""

    def __init__(self, in_features: int, channels, size: tuple[int, int], out_ch: int):
        super().__init__()
        multiple = 2 ** len(channels)
        self.size = tuple(size)
        self.grid = (channels[-1], -(-size[0] // multiple), -(-size[1] // multiple))
        self.linear = nn.Linear(in_features, self.grid[0] * self.grid[1] * self.grid[2])
        ups = list(reversed(channels[:-1])) + [channels[0]]
        self.body = nn.Sequential(leaky_relu(), *upsampling_decoder(channels[-1], ups), conv3x3(ups[-1], out_ch))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = self.body(self.linear(z).view(-1, *self.grid))
        return y[..., :self.size[0], :self.size[1]]


def image_size_pair(image_size) -> tuple[int, int]:
    """A model's image size as (height, width), from an int (square) or a [height, width] pair."""
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


class ConvGRUCell(nn.Module):
    """A convolutional GRU (Cho et al. 2014, with convolutions in place of the matrix products):
    the input is convolved with `stride` (so the cell can also downsample), the hidden state with
    a `hidden_kernel` convolution; h' = (1 - z) h + z tanh(Wx + r * Uh)."""

    def __init__(self, in_ch: int, hidden: int, kernel: int = 3, stride: int = 1, hidden_kernel: int = 1):
        super().__init__()
        self.hidden = hidden
        self.stride = stride
        self.input_conv = nn.Conv2d(in_ch, 3 * hidden, kernel, stride=stride, padding=kernel // 2)
        self.hidden_conv = nn.Conv2d(hidden, 3 * hidden, hidden_kernel, padding=hidden_kernel // 2, bias=False)

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        """The zero state for input x (its size after this cell's stride)."""
        h, w = -(-x.shape[2] // self.stride), -(-x.shape[3] // self.stride)
        return x.new_zeros(x.shape[0], self.hidden, h, w)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        xr, xz, xn = self.input_conv(x).chunk(3, 1)
        hr, hz, hn = self.hidden_conv(state).chunk(3, 1)
        reset = torch.sigmoid(xr + hr)
        update = torch.sigmoid(xz + hz)
        candidate = torch.tanh(xn + reset * hn)
        return state + update.to(state.dtype) * (candidate.to(state.dtype) - state)
