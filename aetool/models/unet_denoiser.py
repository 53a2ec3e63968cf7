"""Convolutional denoising autoencoder: a U-Net with residual blocks and a noise-level map input.

Papers:
- O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for Biomedical Image
  Segmentation", MICCAI 2015 (encoder-decoder with skip connections).
- K. Zhang, W. Zuo, L. Zhang, "FFDNet: Toward a Fast and Flexible Solution for CNN-Based Image
  Denoising", IEEE TIP 2018 (noise-level map as an extra input channel, non-blind and blind use).
- K. Zhang et al., "Plug-and-Play Image Restoration with Deep Denoiser Prior" (DRUNet), IEEE TPAMI
  2021 (residual U-Net, strided-conv down / transposed-conv up, additive skips, no batch norm).

The network reads an image in [0, 1] and a map of the noise standard deviation (in the same
[0, 1] units, i.e. sigma / 255) and returns the clean image estimate.
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers import ResBlock, conv3x3, downsample, pad_to_multiple, unet_pass, upsample
from ..registry import register


class UNetDenoiser(nn.Module):
    arch_name = "unet_denoiser"

    def __init__(self, in_channels: int = 3, channels: tuple[int, ...] = (32, 64, 128, 256),
                 blocks: int = 2):
        super().__init__()
        self.config = {"in_channels": in_channels, "channels": list(channels), "blocks": blocks}
        self.in_channels = in_channels
        self.levels = len(channels)
        self.head = conv3x3(in_channels + 1, channels[0])
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        for i in range(self.levels - 1):
            self.encoders.append(nn.Sequential(*[ResBlock(channels[i]) for _ in range(blocks)]))
            self.downs.append(downsample(channels[i], channels[i + 1]))
        self.body = nn.Sequential(*[ResBlock(channels[-1]) for _ in range(blocks)])
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in reversed(range(self.levels - 1)):
            self.ups.append(upsample(channels[i + 1], channels[i]))
            self.decoders.append(nn.Sequential(*[ResBlock(channels[i]) for _ in range(blocks)]))
        self.tail = conv3x3(channels[0], in_channels)

    @property
    def multiple(self) -> int:
        return 2 ** (self.levels - 1)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) in [0, 1]; sigma: (B, 1, H, W) or (B,) noise std in [0, 1] units."""
        if sigma.dim() == 1:
            sigma = sigma.view(-1, 1, 1, 1).expand(-1, 1, x.shape[2], x.shape[3])
        h, w = x.shape[-2:]
        x_in, sigma = pad_to_multiple(x, self.multiple), pad_to_multiple(sigma, self.multiple)
        feat = self.head(torch.cat([x_in, sigma.to(x_in.dtype)], dim=1))
        feat = unet_pass(feat, self.encoders, self.downs, self.body, self.ups, self.decoders)
        out = x_in + self.tail(feat)
        return out[..., :h, :w]


@register("unet_denoiser")
def unet_denoiser(**config) -> UNetDenoiser:
    return UNetDenoiser(**config)
