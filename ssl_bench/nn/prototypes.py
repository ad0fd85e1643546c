"""SwAV's prototypes: a linear map without bias from L2-normalised embeddings onto K unit
vectors."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Prototypes(nn.Module):
    """Scores `normalize(z) @ C.T` of NxD embeddings against K prototypes C (KxD, rows kept on the
    unit sphere).

    The rows are normalised at construction and by `normalize_()`, which the method calls after
    every optimizer step, so each score is a cosine similarity in [-1, 1] (Caron et al. 2020, sec.
    3.1).
    """

    def __init__(self, dim: int, num_prototypes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_prototypes, dim))
        nn.init.normal_(self.weight)
        self.normalize_()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(z, dim=1), self.weight)  # N x K

    @torch.no_grad()
    def normalize_(self) -> None:
        self.weight.copy_(F.normalize(self.weight.float(), dim=1).to(self.weight.dtype))
