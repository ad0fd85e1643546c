"""SSL objectives as pure functions of embeddings. Each names its paper and follows its formula."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ssl_bench.nn.dist import gather_with_grad, world


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5, gather: bool = True) -> torch.Tensor:
    """NT-Xent of SimCLR (Chen et al. 2020, eq. 1), averaged over all 2N anchors.

    z1, z2: NxD projections of two views of the same N images (row i of z1 and z2 is a positive pair).
    For anchor i the positive is its other view; the 2N - 2 other embeddings of the (global) batch are
    negatives. With `gather`, negatives come from every rank (with gradients) and the loss is the mean
    over this rank's anchors, so DDP's gradient averaging reproduces the single-process gradient.
    """
    if z1.shape != z2.shape:
        raise ValueError(f"nt_xent: view shapes differ, {tuple(z1.shape)} vs {tuple(z2.shape)}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)                      # queries: 2N x D
    rank, size = world() if gather else (0, 1)
    if size > 1:
        k1, k2 = gather_with_grad(z[:n]), gather_with_grad(z[n:])         # keys: (W*N) x D each
        keys = torch.cat([k1, k2])                                         # 2WN x D
    else:
        keys = z
    total = keys.shape[0] // 2                                             # W*N images in the global batch
    logits = z @ keys.T / temperature                                      # 2N x 2WN
    local = torch.arange(n, device=z.device) + rank * n                    # global index of local images
    self_idx = torch.cat([local, local + total])                           # each query's own column
    pos_idx = torch.cat([local + total, local])                            # each query's positive column
    logits = logits.masked_fill(
        F.one_hot(self_idx, keys.shape[0]).bool(), float("-inf")
    )
    return F.cross_entropy(logits, pos_idx)
