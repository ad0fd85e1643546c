"""Bootstrap losses: an online prediction regresses a target embedding, no negatives (BYOL,
SimSiam).

What keeps them from collapse is outside the loss: BYOL's EMA target (nn/ema.py), SimSiam's
stop-gradient. The callers pass the targets without gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss (Grill et al. 2020, eq. 2), mean over N:
        L = || p / |p| - z / |z| ||^2 = 2 - 2 cos(p, z).

    p: NxD online predictions, z: NxD target projections (the caller passes them without gradient).
    The method sums the two directions, L = L(v, v') + L(v', v), as the paper's symmetrised loss.
    """
    return (2 - 2 * F.cosine_similarity(p.float(), z.float(), dim=1)).mean()


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """SimSiam's D(p, z) = -(p / |p|) . (z / |z|) (Chen & He 2020, eq. 1), mean over N.

    The stop-gradient on z (eq. 3) is the caller's."""
    return -F.cosine_similarity(p.float(), z.float(), dim=1).mean()
