"""Convolutional autoencoder with a vector code: strided convolutions summarise the image, a
linear layer gives `latent` numbers, and a mirrored upsampling decoder rebuilds the image. Its
code is a feature vector for the whole image (embeddings, near-duplicates), unlike the anomaly
autoencoders' spatial code (conv_autoencoder.py).

Paper:
- J. Masci, U. Meier, D. Ciresan, J. Schmidhuber, "Stacked Convolutional Auto-Encoders for
  Hierarchical Feature Extraction", ICANN 2011.
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers import ConvToVector, VectorToConv, image_size_pair
from ..registry import register


class VectorConvAutoencoder(nn.Module):
    arch_name = "vector_conv_autoencoder"
    kind = "conv"

    def __init__(self, in_channels: int = 1, image_size=28, latent: int = 16, channels: tuple[int, ...] = (32, 64)):
        super().__init__()
        size = image_size_pair(image_size)
        self.config = {"in_channels": in_channels, "image_size": list(size), "latent": latent,
                       "channels": list(channels)}
        self.encoder = ConvToVector(in_channels, channels, size, latent)
        self.decoder = VectorToConv(latent, channels, size, in_channels)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] at the model's size -> (B, latent)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent) -> (B, C, H, W) in [0, 1]."""
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


@register("vector_conv_autoencoder")
def vector_conv_autoencoder(**config) -> VectorConvAutoencoder:
    return VectorConvAutoencoder(**config)
