"""Convolutional inpainting autoencoder: a U-Net whose encoder uses gated convolutions and whose
bottleneck stacks dilated residual blocks, so that a hole is filled from context far away.

Papers:
- J. Yu, Z. Lin, J. Yang, X. Shen, X. Lu, T. Huang, "Free-Form Image Inpainting with Gated
  Convolution" (DeepFill v2), ICCV 2019: a learned soft gate per feature and pixel, so the
  network learns which inputs are valid instead of trusting the zeros in the hole.
- O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for Biomedical Image
  Segmentation", MICCAI 2015: encoder-decoder with skip connections.
- F. Yu, V. Koltun, "Multi-Scale Context Aggregation by Dilated Convolutions", ICLR 2016: dilated
  convolutions widen the reach without more downsampling.
- S. J. Gortler et al., "The Lumigraph", SIGGRAPH 1996: push-pull interpolation, the smooth
  parameter-free first fill that the network corrects.
- R. Suvorov et al., "Resolution-robust Large Mask Inpainting with Fourier Convolutions" (LaMa),
  WACV 2022: the mask kinds used in training (strokes of random width and length, boxes).

The network reads an image in [0, 1] and the mask (1 = hole). The holes are first filled by
push-pull (smooth colours from around each hole); the U-Net sees that image and the mask and adds
a correction (edges, texture). Starting from a fill that is already about as good as OpenCV's is
what lets a short training run beat it. It returns a full image; callers keep the known pixels
and take only the holes from it.
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers import ResBlock, conv3x3, pad_to_multiple, push_pull_fill, unet_pass, upsample
from ..registry import register


class GatedConv(nn.Module):
    """features * sigmoid(gate), both from one convolution (DeepFill v2)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, dilation: int = 1):
        super().__init__()
        pad = dilation * (kernel - 1) // 2
        self.conv = nn.Conv2d(in_ch, 2 * out_ch, kernel, stride=stride, padding=pad, dilation=dilation)
        self.act = nn.ELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat, gate = self.conv(x).chunk(2, dim=1)
        return self.act(feat) * torch.sigmoid(gate)


class DilatedResBlock(nn.Module):
    def __init__(self, ch: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=dilation, dilation=dilation)
        self.conv2 = conv3x3(ch, ch)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class GatedUNetInpaint(nn.Module):
    arch_name = "gated_unet_inpaint"

    def __init__(self, in_channels: int = 3, channels: tuple[int, ...] = (32, 64, 96, 128),
                 dilations: tuple[int, ...] = (1, 2, 4, 8, 1)):
        super().__init__()
        self.config = {"in_channels": in_channels, "channels": list(channels), "dilations": list(dilations)}
        self.in_channels = in_channels
        self.levels = len(channels)
        self.head = GatedConv(in_channels + 1, channels[0], kernel=5)
        self.encoders = nn.ModuleList(GatedConv(channels[i], channels[i]) for i in range(self.levels - 1))
        self.downs = nn.ModuleList(GatedConv(channels[i], channels[i + 1], kernel=4, stride=2)
                                   for i in range(self.levels - 1))
        self.body = nn.Sequential(*[DilatedResBlock(channels[-1], d) for d in dilations])
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in reversed(range(self.levels - 1)):
            self.ups.append(upsample(channels[i + 1], channels[i]))
            self.decoders.append(ResBlock(channels[i]))
        self.tail = conv3x3(channels[0], in_channels)
        nn.init.zeros_(self.tail.weight)  # untrained, the model returns the push-pull fill
        nn.init.zeros_(self.tail.bias)

    @property
    def multiple(self) -> int:
        return 2 ** (self.levels - 1)

    @property
    def context(self) -> int:
        """Pixels of context on each side that reach a pixel (the receptive radius, approximately)."""
        bottom = sum(d + 1 for d in self.config["dilations"])  # each block: a dilated and a plain 3x3
        return 2 + self.multiple * (bottom + 2) + 2 * (self.levels - 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) in [0, 1]; mask: (B, 1, H, W), 1 = hole. Returns the full prediction."""
        h, w = x.shape[-2:]
        base = push_pull_fill(x, 1 - mask.float())  # whatever the hole held is not looked at
        feat = self.head(pad_to_multiple(torch.cat([base.to(x.dtype), mask.to(x.dtype)], dim=1), self.multiple))
        feat = unet_pass(feat, self.encoders, self.downs, self.body, self.ups, self.decoders)
        return base + self.tail(feat)[..., :h, :w].float()  # the sum in fp32, even under bf16 autocast


@register("gated_unet_inpaint")
def gated_unet_inpaint(**config) -> GatedUNetInpaint:
    return GatedUNetInpaint(**config)
