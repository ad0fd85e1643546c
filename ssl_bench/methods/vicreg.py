"""VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning.
Bardes, Ponce, LeCun, 2022. https://arxiv.org/abs/2105.04906
"""

from __future__ import annotations

import torch
from torch import nn

from ssl_bench.errors import ConfigError
from ssl_bench.losses.redundancy import vicreg_loss
from ssl_bench.methods.base import SSLMethod, embedding_std
from ssl_bench.nn.heads import MLP, check_head_sizes


class VICReg(SSLMethod):
    """Two views through one encoder (backbone + expander); the loss (paper, eq. 6) pulls the two
    embeddings together (invariance, MSE), keeps each dimension's std above `gamma` (variance
    hinge) and decorrelates the dimensions (covariance), with the weights `sim_loss_weight`,
    `var_loss_weight`, `cov_loss_weight` (25, 25, 1); losses/redundancy.py. Under DDP variance and
    covariance are statistics of the global batch (embeddings gathered with gradients).

    Expander: `proj_layers` linear layers, BN + ReLU after each hidden one, a plain linear output
    (paper, sec. 4.1: 3 layers of 8192; official code facebookresearch/vicreg@4e12602
    main_vicreg.py `Projector`; its output layer has no bias, ours has one).

    One call per view, BN statistics per view, as the official code (main_vicreg.py `forward`:
    projector(backbone(x)), projector(backbone(y))): `bn_stats: per_view`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        proj_hidden_dim: int = 8192,
        proj_output_dim: int = 8192,
        proj_layers: int = 3,
        sim_loss_weight: float = 25.0,
        var_loss_weight: float = 25.0,
        cov_loss_weight: float = 1.0,
        gamma: float = 1.0,
        eps: float = 1e-4,
        bn_stats: str = "per_view",
        **kwargs,
    ):
        super().__init__(backbone, bn_stats=bn_stats, **kwargs)
        check_head_sizes(
            proj_hidden_dim=proj_hidden_dim,
            proj_output_dim=proj_output_dim,
            proj_layers=proj_layers,
        )
        weights = {
            "sim_loss_weight": sim_loss_weight,
            "var_loss_weight": var_loss_weight,
            "cov_loss_weight": cov_loss_weight,
        }
        for key, value in weights.items():
            if value < 0:
                raise ConfigError(
                    f"method.{key}", f"must be >= 0, got {value}.", "the paper uses 25, 25, 1."
                )
        if gamma <= 0 or eps <= 0:
            raise ConfigError(
                "method.gamma" if gamma <= 0 else "method.eps",
                f"must be positive (got gamma={gamma}, eps={eps}).",
                "the paper uses gamma 1 and eps 1e-4.",
            )
        self.weights = {k: float(v) for k, v in weights.items()}
        self.gamma, self.eps = float(gamma), float(eps)
        self.projector = MLP(
            self.feat_dim, proj_hidden_dim, proj_output_dim, num_layers=proj_layers, bn="hidden"
        )

    def training_loss(self, views, labels, index):
        feats = self.forward_views(self.backbone, views[:2])  # 2 x (N x F), grouped by bn_stats
        z1, z2 = self.forward_views(self.projector, feats)  # N x D each
        loss, terms = vicreg_loss(
            z1,
            z2,
            self.weights["sim_loss_weight"],
            self.weights["var_loss_weight"],
            self.weights["cov_loss_weight"],
            gamma=self.gamma,
            eps=self.eps,
            return_terms=True,
        )
        return {
            "loss": loss,
            "representation": torch.cat(feats),
            "z_std": embedding_std(torch.cat([z1, z2])),
            **terms,
        }
