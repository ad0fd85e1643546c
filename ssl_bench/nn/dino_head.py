"""DINO's projection head: an MLP to an L2-normalised bottleneck, then a weight-normalised linear
layer onto K prototypes (Caron et al. 2021, sec. 3.1 and appendix; facebookresearch/dino@cc72fe9
vision_transformer.py DINOHead)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WeightNormLinear(nn.Module):
    """A linear map without bias, weight = g * v / ||v|| per output row (Salimans & Kingma 2016), as
    torch's weight_norm over dim 0 writes it, with g starting at 1. `fixed_norm` (DINO's
    norm_last_layer) freezes g at 1: every row of the weight stays a unit vector, the prototypes
    live on the sphere. Written out rather than through torch.nn.utils.weight_norm (deprecated) or
    its parametrization, so the parameter names are plain (`weight_v`, `weight_g`)."""

    def __init__(self, in_dim: int, out_dim: int, fixed_norm: bool = True):
        super().__init__()
        v = nn.Linear(in_dim, out_dim, bias=False).weight.detach().clone()  # torch's default init
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(torch.ones(out_dim, 1), requires_grad=not fixed_norm)

    @property
    def weight(self) -> torch.Tensor:
        return self.weight_g * self.weight_v / self.weight_v.norm(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)


class DINOHead(nn.Module):
    """`num_layers` linear layers in_dim -> hidden_dim ... -> bottleneck_dim with GELU between them
    (BatchNorm after each hidden layer with `use_bn`), the output L2-normalised, then the
    weight-normalised `last_layer` onto `num_prototypes` logits. Linear weights start from a
    truncated normal of std 0.02, biases from 0 (the official `_init_weights`)."""

    def __init__(
        self,
        in_dim: int,
        num_prototypes: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        num_layers: int = 3,
        use_bn: bool = False,
        norm_last_layer: bool = True,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(max(num_layers, 1) - 1):
            layers.append(nn.Linear(dim, hidden_dim))
            if use_bn:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.GELU())
            dim = hidden_dim
        layers.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, num_prototypes, norm_last_layer)

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """The L2-normalised bottleneck embedding, N x bottleneck_dim."""
        return F.normalize(self.mlp(x), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(self.bottleneck(x))
