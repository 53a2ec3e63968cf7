"""Convolutional super-resolution autoencoder: residual blocks in low-resolution space and a
sub-pixel (pixel-shuffle) decoder, added to a bicubic enlargement of the input.

Papers:
- W. Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel
  Convolutional Neural Network" (ESPCN), CVPR 2016: all convolutions at low resolution, the last
  one emits scale^2 sub-pixels per channel that a pixel shuffle rearranges.
- B. Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution" (EDSR),
  CVPRW 2017: residual blocks without batch normalisation, a long skip around the body.
- J. Kim, J. K. Lee, K. M. Lee, "Accurate Image Super-Resolution Using Very Deep Convolutional
  Networks" (VDSR), CVPR 2016: learn only the residual over the bicubic enlargement.

The network reads an RGB (or grey) image in [0, 1] and returns it `scale` times larger.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import ResBlock, conv3x3
from ..registry import register


class SubpixelSR(nn.Module):
    arch_name = "subpixel_sr"

    def __init__(self, in_channels: int = 3, scale: int = 2, width: int = 64, blocks: int = 8):
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {scale}")
        self.config = {"in_channels": in_channels, "scale": scale, "width": width, "blocks": blocks}
        self.in_channels = in_channels
        self.scale = scale
        self.head = conv3x3(in_channels, width)
        self.body = nn.Sequential(*[ResBlock(width) for _ in range(blocks)], conv3x3(width, width))
        self.to_subpixels = conv3x3(width, in_channels * scale * scale)

    @property
    def context(self) -> int:
        """Low-resolution pixels each output pixel depends on, on each side (the receptive radius)."""
        return 2 * len(self.body) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, h, w) in [0, 1] -> (B, C, h * scale, w * scale)."""
        feat = self.head(x)
        feat = feat + self.body(feat)
        detail = F.pixel_shuffle(self.to_subpixels(feat), self.scale)
        base = F.interpolate(x.float(), scale_factor=self.scale, mode="bicubic", align_corners=False)
        return base + detail.float()  # the sum in fp32: bf16 would round the image itself to ~1/256


@register("subpixel_sr")
def subpixel_sr(**config) -> SubpixelSR:
    return SubpixelSR(**config)
