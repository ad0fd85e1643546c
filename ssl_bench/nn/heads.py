"""Projector / predictor heads shared by the methods."""
from __future__ import annotations

from torch import nn


class MLP(nn.Sequential):
    """`num_layers` linear layers; BatchNorm + ReLU between them.

    in_dim -> hidden_dim -> ... -> out_dim. `last_norm` adds a BatchNorm (without affine parameters when
    `last_affine` is False, as in SimSiam's projector) after the final layer.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2, norm: bool = True,
                 last_norm: bool = False, last_affine: bool = True, last_bias: bool = True):
        if num_layers < 1:
            raise ValueError("MLP needs at least one layer")
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(dim, hidden_dim, bias=not norm)]
            if norm:
                layers += [nn.BatchNorm1d(hidden_dim)]
            layers += [nn.ReLU(inplace=True)]
            dim = hidden_dim
        layers += [nn.Linear(dim, out_dim, bias=last_bias and not last_norm)]
        if last_norm:
            layers += [nn.BatchNorm1d(out_dim, affine=last_affine)]
        super().__init__(*layers)
        self.out_dim = out_dim
