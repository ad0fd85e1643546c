"""Barlow Twins: Self-Supervised Learning via Redundancy Reduction.
Zbontar, Jing, Misra, LeCun, Deny, 2021. https://arxiv.org/abs/2103.03230
"""

from __future__ import annotations

import torch
from torch import nn

from ssl_bench.errors import ConfigError
from ssl_bench.losses.redundancy import barlow_twins_loss
from ssl_bench.methods.base import SSLMethod, embedding_std
from ssl_bench.nn.heads import MLP, check_head_sizes


class BarlowTwins(SSLMethod):
    """Two views through one encoder (backbone + projector); the loss drives the cross-correlation
    of the two views' batch-standardised embeddings to the identity: invariance on the diagonal,
    redundancy reduction off it, weighted by `lambd` (paper, eq. 1; losses/redundancy.py).

    Projector: `proj_layers` linear layers, BN + ReLU after each hidden one, a plain linear output
    (paper, sec. 2: 3 layers of 8192; official code facebookresearch/barlowtwins@8e8d284 main.py
    `projector`). The official output layer has no bias; ours has one (MLP's rule), which changes
    nothing: the loss standardises each dimension over the batch, so the bias gets no gradient.
    Under DDP the standardisation and the cross-correlation are over the global batch (the paper
    sums the per-rank matrices). `scale_loss` multiplies the loss (solo-learn's CIFAR recipe: 0.1).

    One call per view, BN statistics per view, as the official code (main.py `forward`:
    projector(backbone(y1)), projector(backbone(y2))): `bn_stats: per_view`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        proj_hidden_dim: int = 8192,
        proj_output_dim: int = 8192,
        proj_layers: int = 3,
        lambd: float = 0.0051,
        scale_loss: float = 1.0,
        bn_stats: str = "per_view",
        **kwargs,
    ):
        super().__init__(backbone, bn_stats=bn_stats, **kwargs)
        check_head_sizes(
            proj_hidden_dim=proj_hidden_dim,
            proj_output_dim=proj_output_dim,
            proj_layers=proj_layers,
        )
        if lambd < 0:
            raise ConfigError(
                "method.lambd",
                f"must be >= 0, got {lambd}.",
                "use the paper's 0.0051 (about 1 / the embedding width).",
            )
        if scale_loss <= 0:
            raise ConfigError("method.scale_loss", f"must be positive, got {scale_loss}.")
        self.lambd, self.scale_loss = float(lambd), float(scale_loss)
        self.projector = MLP(
            self.feat_dim, proj_hidden_dim, proj_output_dim, num_layers=proj_layers, bn="hidden"
        )

    def training_loss(self, views, labels, index):
        feats = self.forward_views(self.backbone, views[:2])  # 2 x (N x F), grouped by bn_stats
        z1, z2 = self.forward_views(self.projector, feats)  # N x D each
        loss, terms = barlow_twins_loss(z1, z2, self.lambd, self.scale_loss, return_terms=True)
        return {
            "loss": loss,
            "representation": torch.cat(feats),
            "z_std": embedding_std(torch.cat([z1, z2])),
            **terms,
        }
