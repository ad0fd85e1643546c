"""SimSiam: Exploring Simple Siamese Representation Learning.
Chen & He, 2020. https://arxiv.org/abs/2011.10566
"""

from __future__ import annotations

import torch
from torch import nn

from ssl_bench.errors import ConfigError
from ssl_bench.losses.bootstrap import negative_cosine
from ssl_bench.methods.base import SSLMethod, embedding_std
from ssl_bench.nn.heads import MLP, check_head_sizes
from ssl_bench.optim import split_decay_groups


class SimSiam(SSLMethod):
    """Two views through one encoder f (backbone + projector) and a predictor h; the loss is the
    symmetrised negative cosine D(p1, stopgrad(z2)) / 2 + D(p2, stopgrad(z1)) / 2 (paper, eq. 2).

    `stop_gradient=False` removes the stop-gradient, which the paper (fig. 2) shows collapses the
    representation; it exists to demonstrate that, not for training. With `fixed_predictor_lr` the
    predictor keeps the base lr while the rest follows the schedule (paper, sec. 4.1 / table 1).

    One view per call, BN statistics per view, as the official code
    (facebookresearch/simsiam@a7bc177, simsiam/builder.py `forward`: encoder(x1), encoder(x2),
    predictor(z1), predictor(z2)): `bn_stats: per_view`; `joint` puts both views in one call.
    """

    def __init__(
        self,
        backbone: nn.Module,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 2048,
        proj_layers: int = 3,
        pred_hidden_dim: int = 512,
        fixed_predictor_lr: bool = True,
        stop_gradient: bool = True,
        bn_stats: str = "per_view",
        **kwargs,
    ):
        super().__init__(backbone, bn_stats=bn_stats, **kwargs)
        check_head_sizes(
            proj_hidden_dim=proj_hidden_dim,
            proj_output_dim=proj_output_dim,
            pred_hidden_dim=pred_hidden_dim,
        )
        if proj_layers < 1:
            raise ConfigError(
                "method.proj_layers",
                f"needs at least 1 layer, got {proj_layers}.",
                "use 3 (ImageNet) or 2 (the paper's CIFAR variant).",
            )
        self.fixed_predictor_lr = bool(fixed_predictor_lr)
        self.stop_gradient = bool(stop_gradient)
        # projector: Linear-BN-ReLU x (layers - 1), Linear, BN without affine (paper, sec. 4.1)
        self.projector = MLP(
            self.feat_dim,
            proj_hidden_dim,
            proj_output_dim,
            num_layers=proj_layers,
            bn="all",
            last_scale=False,
            last_shift=False,
        )
        # predictor: bottleneck Linear(d, d/4)-BN-ReLU-Linear(d/4, d), no BN on the output
        self.predictor = MLP(proj_output_dim, pred_hidden_dim, proj_output_dim)

    def training_loss(self, views, labels, index):
        feats = self.forward_views(self.backbone, views[:2])  # 2 x (N x F), grouped by bn_stats
        z = self.forward_views(self.projector, feats)  # 2 x (N x D)
        p1, p2 = self.forward_views(self.predictor, z)  # N x D each
        # the stop-gradient of the paper
        z1, z2 = (t.detach() if self.stop_gradient else t for t in z)
        loss = 0.5 * negative_cosine(p1, z2) + 0.5 * negative_cosine(p2, z1)
        return {
            "loss": loss,
            "representation": torch.cat(feats),
            "z_std": embedding_std(torch.cat(z)),
        }

    def parameter_groups(self, exclude_bias_and_norm: bool) -> list[dict]:
        groups = super().parameter_groups(exclude_bias_and_norm)
        if not self.fixed_predictor_lr:
            return groups
        predictor = {id(p) for p in self.predictor.parameters()}
        for g in groups:
            g["params"] = [p for p in g["params"] if id(p) not in predictor]
        fixed = split_decay_groups(self.predictor, exclude_bias_and_norm)
        for g in fixed:
            g["fixed_lr"] = True
        return [g for g in groups if g["params"]] + fixed
