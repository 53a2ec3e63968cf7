"""Building blocks shared by the model families (kept apart from the models, as in CompressAI)."""
from __future__ import annotations

import torch
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


def upsample(in_ch: int, out_ch: int) -> nn.Module:
    """Transposed 2x2 convolution: doubles height and width."""
    return nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
