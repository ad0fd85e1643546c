"""CPC v2's context network: the appendix's PixelCNN-style stack over the grid of patch embeddings.

Henaff et al. 2020 (sec. 2.1) summarise the grid z (B x D x G x G) with a network g_phi whose output
c_{i,j} depends only on z_{u,v} with u <= i (every column of the rows at or above i), and predict
the rows below from it. The appendix pseudo-code (`pixelCNN`) builds it from 5 residual blocks, each
    1x1 conv (256) -> ReLU -> 1x3 conv ('same') -> pad one row on top -> 2x1 conv ('valid') -> ReLU
    -> 1x1 conv (back to D),  added to its input,
and a ReLU on the sum of the last block. The 1x3 convolution mixes a row sideways, the padded 2x1
convolution mixes each row with the one above it, so every block reaches one row further up and
never down; 1x1 convolutions act per position. No normalisation layer: batch statistics over the
grid would carry information from the rows to be predicted (the reason the paper moves its encoder
from batch to layer norm, sec. 4.1). `width` generalises the 1x3 kernel to 1 x width (odd); the
paper's is 3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CausalResidualBlock(nn.Module):
    """x + 1x1(ReLU(2x1 'valid'(pad_top(1xw 'same'(ReLU(1x1(x))))))): output row i sees rows i - 1,
    i."""

    def __init__(self, dim: int, hidden: int, width: int = 3):
        super().__init__()
        if width % 2 == 0 or width < 1:
            raise ValueError(f"the context network needs an odd kernel width, got {width}")
        self.reduce = nn.Conv2d(dim, hidden, 1)
        # along the row
        self.across = nn.Conv2d(hidden, hidden, (1, width), padding=(0, width // 2))
        self.down = nn.Conv2d(hidden, hidden, (2, 1))  # the row above + this one
        self.expand = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.reduce(x))
        h = F.pad(self.across(h), (0, 0, 1, 0))  # one zero row on top: (left, right, top, bottom)
        h = F.relu(self.down(h))
        return x + self.expand(h)


class ContextNetwork(nn.Module):
    """z [B, D, G, G] -> c [B, D, G, G], c[..., i, j] a function of z[..., :i+1, :] only (appendix
    pixelCNN).

    `num_blocks` causal residual blocks then a ReLU; each block reaches one row further up and width
    // 2 columns to each side, so 3 blocks of width 3 already see every column of a 7-wide grid.
    """

    def __init__(self, dim: int, hidden: int = 256, num_blocks: int = 5, kernel_size: int = 3):
        super().__init__()
        if num_blocks < 1 or hidden < 1:
            raise ValueError(
                f"ContextNetwork needs num_blocks >= 1 and hidden >= 1, got {num_blocks}, {hidden}"
            )
        self.blocks = nn.Sequential(
            *[CausalResidualBlock(dim, hidden, kernel_size) for _ in range(num_blocks)]
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.relu(self.blocks(z))
