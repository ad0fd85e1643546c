"""CPC's context network: PixelCNN-style masked convolutions over the grid of patch embeddings.

Henaff et al. 2020 (sec. 2.1) summarise the grid z (B x D x G x G) with a masked-convolution network
g_phi whose output c_{i,j} depends only on z_{u,v} with u <= i (every column of the rows at or above i),
and predict the rows below from it. `MaskedConv2d` is a k x k convolution whose kernel rows below the
centre are zeroed (the vertical stack of PixelCNN, van den Oord et al. 2016, sec. 2.2), so each layer
reaches up and sideways but never down; 1x1 convolutions and ReLUs act per position. No normalisation
layer: batch statistics over the grid would carry information from the rows to be predicted (the reason
the paper moves its encoder from batch to layer normalisation, sec. 4.1).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaskedConv2d(nn.Conv2d):
    """k x k convolution (k odd, 'same' padding) that sees rows <= the output row: kernel rows below the centre
    are masked to zero, in the forward pass, so neither the output nor the gradient ever uses them."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True):
        if kernel_size % 2 == 0 or kernel_size < 1:
            raise ValueError(f"MaskedConv2d needs an odd kernel size, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
        mask = torch.ones(1, 1, kernel_size, kernel_size)
        mask[:, :, kernel_size // 2 + 1:, :] = 0                     # rows below the centre
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding)


class MaskedResidualBlock(nn.Module):
    """Pre-activation bottleneck: x + 1x1(ReLU(masked kxk(ReLU(1x1(ReLU(x))))))."""

    def __init__(self, dim: int, hidden: int, kernel_size: int = 3):
        super().__init__()
        self.reduce = nn.Conv2d(dim, hidden, 1)
        self.spatial = MaskedConv2d(hidden, hidden, kernel_size)
        self.expand = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.reduce(F.relu(x))
        h = self.spatial(F.relu(h))
        return x + self.expand(F.relu(h))


class ContextNetwork(nn.Module):
    """z [B, D, G, G] -> c [B, D, G, G], c[..., i, j] a function of z[..., :i+1, :] only.

    `num_blocks` masked residual blocks; each reaches kernel_size // 2 rows further up and as many
    columns to each side, so 3 blocks of 3x3 already see every column of a 7-wide grid.
    """

    def __init__(self, dim: int, hidden: int = 256, num_blocks: int = 5, kernel_size: int = 3):
        super().__init__()
        if num_blocks < 1 or hidden < 1:
            raise ValueError(f"ContextNetwork needs num_blocks >= 1 and hidden >= 1, got {num_blocks}, {hidden}")
        self.blocks = nn.Sequential(*[MaskedResidualBlock(dim, hidden, kernel_size) for _ in range(num_blocks)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.blocks(z)
