"""Denoising ("repair") autoencoder for anomaly detection: trained to turn normal images with
synthetic defects pasted in back into the normal images, it learns to repair whatever does not
look normal, so that a real defect is removed from the reconstruction and stands out in the
difference, while normal detail (which it was never asked to change) is kept sharp.

Papers:
- P. Vincent, H. Larochelle, Y. Bengio, P.-A. Manzagol, "Extracting and Composing Robust
  Features with Denoising Autoencoders", ICML 2008 (the denoising autoencoder).
- V. Zavrtanik, M. Kristan, D. Skočaj, "DRAEM - A Discriminatively Trained Reconstruction
  Embedding for Surface Anomaly Detection", ICCV 2021 (its reconstructive sub-network: an
  encoder-decoder without skip connections trained on Perlin-noise masks of pasted texture).

No skip connections: a skip would carry a defect straight to the output. The bottleneck is at
1/2^len(channels) of the image with dilated residual blocks, which see far enough around a
defect to fill it from the texture about it.
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers import conv3x3, leaky_relu, pad_to_multiple, strided_encoder, upsampling_decoder
from ..registry import register


class DilatedResBlock(nn.Module):
    def __init__(self, ch: int, dilation: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=dilation, dilation=dilation), leaky_relu(), conv3x3(ch, ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class RepairAutoencoder(nn.Module):
    arch_name = "repair_autoencoder"

    def __init__(self, in_channels: int = 1, channels: tuple[int, ...] = (32, 64, 128),
                 dilations: tuple[int, ...] = (1, 2, 4), image_size: int = 256):
        super().__init__()
        self.config = {"in_channels": in_channels, "channels": list(channels), "dilations": list(dilations),
                       "image_size": image_size}
        self.in_channels = in_channels
        self.multiple = 2 ** len(channels)
        self.encoder = nn.Sequential(*strided_encoder(in_channels, channels))
        self.body = nn.Sequential(*[DilatedResBlock(channels[-1], d) for d in dilations])
        self.decoder = nn.Sequential(*upsampling_decoder(channels[-1], tuple(reversed(channels))),
                                     conv3x3(channels[0], in_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) in [0, 1]; returns the repaired image, same shape, in [0, 1]."""
        h, w = x.shape[-2:]
        y = self.decoder(self.body(self.encoder(pad_to_multiple(x, self.multiple))))
        return torch.sigmoid(y[..., :h, :w])


@register("repair_autoencoder")
def repair_autoencoder(**config) -> RepairAutoencoder:
    return RepairAutoencoder(**config)
