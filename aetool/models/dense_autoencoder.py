"""The vanilla (fully connected) autoencoder: the textbook model, for dimensionality reduction of
small images of a fixed size.

Paper:
- G. E. Hinton, R. R. Salakhutdinov, "Reducing the Dimensionality of Data with Neural Networks",
  Science 313, 2006 (deep fully connected autoencoders against PCA).

The image is flattened; `hidden` fully connected layers (leaky ReLU) lead to a linear code of
`latent` numbers, and the decoder mirrors them back to pixels (sigmoid). A dense model knows one
image size only: the runtime (aetool/tasks/autoencoder.py) resizes every input to it.
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers import image_size_pair, leaky_relu
from ..registry import register


def _mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with a leaky ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), leaky_relu()]
    return nn.Sequential(*layers[:-1])


class DenseAutoencoder(nn.Module):
    arch_name = "dense_autoencoder"
    kind = "dense"

    def __init__(self, in_channels: int = 1, image_size=28, latent: int = 16, hidden: tuple[int, ...] = (512, 256)):
        super().__init__()
        h, w = image_size_pair(image_size)
        self.config = {"in_channels": in_channels, "image_size": [h, w], "latent": latent, "hidden": list(hidden)}
        self.shape = (in_channels, h, w)
        pixels = in_channels * h * w
        self.encoder = _mlp([pixels, *hidden, latent])
        self.decoder = _mlp([latent, *reversed(hidden), pixels])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] at the model's size -> (B, latent)."""
        return self.encoder(x.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent) -> (B, C, H, W) in [0, 1]."""
        return torch.sigmoid(self.decoder(z)).view(-1, *self.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


@register("dense_autoencoder")
def dense_autoencoder(**config) -> DenseAutoencoder:
    return DenseAutoencoder(**config)
