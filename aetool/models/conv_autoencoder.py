"""Plain convolutional autoencoder with a narrow bottleneck, for anomaly detection by
reconstruction error: trained on normal images only, it reconstructs what it has seen and fails
where an image departs from it.

Papers:
- J. Masci, U. Meier, D. Ciresan, J. Schmidhuber, "Stacked Convolutional Auto-Encoders for
  Hierarchical Feature Extraction", ICANN 2011 (the convolutional autoencoder).
- P. Bergmann, S. Löwe, M. Fauser, D. Sattlegger, C. Steger, "Improving Unsupervised Defect
  Segmentation by Applying Structural Similarity to Autoencoders", VISAPP 2019 (SSIM loss and
  SSIM residual maps for defect segmentation).

Strided convolutions halve the image `len(channels)` times; a 1x1 convolution then squeezes the
features to `latent` channels, the bottleneck that keeps the network from copying its input.
The decoder mirrors the encoder (nearest-neighbour upsampling and convolutions, no checkerboard).
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers import conv3x3, leaky_relu, pad_to_multiple, strided_encoder, upsampling_decoder
from ..registry import register


class ConvAutoencoder(nn.Module):
    arch_name = "conv_autoencoder"

    def __init__(self, in_channels: int = 1, channels: tuple[int, ...] = (32, 64, 96, 128), latent: int = 16,
                 image_size: int = 256):
        super().__init__()
        self.config = {"in_channels": in_channels, "channels": list(channels), "latent": latent,
                       "image_size": image_size}
        self.in_channels = in_channels
        self.multiple = 2 ** len(channels)
        self.encoder = nn.Sequential(*strided_encoder(in_channels, channels), nn.Conv2d(channels[-1], latent, 1))
        ups = [max(ch, 16) for ch in reversed((in_channels,) + tuple(channels[:-1]))]
        self.decoder = nn.Sequential(nn.Conv2d(latent, channels[-1], 1), leaky_relu(),
                                     *upsampling_decoder(channels[-1], ups), conv3x3(ups[-1], in_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) in [0, 1]; returns the reconstruction, same shape, in [0, 1]."""
        h, w = x.shape[-2:]
        y = self.decoder(self.encoder(pad_to_multiple(x, self.multiple)))
        return torch.sigmoid(y[..., :h, :w])


@register("conv_autoencoder")
def conv_autoencoder(**config) -> ConvAutoencoder:
    return ConvAutoencoder(**config)
