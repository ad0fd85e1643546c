"""BYOL: Bootstrap Your Own Latent - A New Approach to Self-Supervised Learning.
Grill et al., 2020. https://arxiv.org/abs/2006.07733
"""

from __future__ import annotations

import torch
from torch import nn

from ssl_bench.losses.bootstrap import byol_loss
from ssl_bench.methods.base import SSLMethod, embedding_std
from ssl_bench.nn.heads import MLP, check_head_sizes


class BYOL(SSLMethod):
    """Online network (backbone, projector, predictor) regresses the EMA target's projection of the
    other view.

    The target (backbone + projector) is an exponential moving average of the online weights, with
    tau rising from `base_tau` to `final_tau` on a cosine over all optimizer steps (paper, sec.
    3.2): the momentum targets of nn/ema.py, updated after each real optimizer step (gradient
    accumulation does not speed them up) and logged as `train/tau`.

    Both networks see one view per call, BN statistics per view, as the official code
    (deepmind-research@d8df415, byol/byol_experiment.py `_forward`: `apply_once_fn` on view1, then
    on view2): `bn_stats: per_view`; `joint` puts both views in one call.
    """

    def __init__(
        self,
        backbone: nn.Module,
        proj_hidden_dim: int = 4096,
        proj_output_dim: int = 256,
        pred_hidden_dim: int = 4096,
        base_tau: float = 0.99,
        final_tau: float = 1.0,
        bn_stats: str = "per_view",
        **kwargs,
    ):
        super().__init__(backbone, bn_stats=bn_stats, **kwargs)
        check_head_sizes(
            proj_hidden_dim=proj_hidden_dim,
            proj_output_dim=proj_output_dim,
            pred_hidden_dim=pred_hidden_dim,
        )
        # online: f -> g (projector) -> q (predictor); both MLPs with one hidden layer, BN + ReLU
        # (paper, 3.3)
        self.projector = MLP(self.feat_dim, proj_hidden_dim, proj_output_dim)
        self.predictor = MLP(proj_output_dim, pred_hidden_dim, proj_output_dim)
        # target: f' -> g', never trained by gradients; the EMA of f -> g
        self.add_momentum_encoder(base_tau, final_tau)

    # ---- the loss on two views -------------------------------------------------------------------
    def training_loss(self, views, labels, index):
        # 2 x (N x F); calls grouped by bn_stats
        feats = self.forward_views(self.backbone, views[:2])
        z = self.forward_views(self.projector, feats)  # 2 x (N x D)
        p1, p2 = self.forward_views(self.predictor, z)  # N x D each
        t1, t2 = self.target_projections(views[:2])  # N x D each, no grad
        # the paper's symmetrised loss: the SUM of both directions, each 2 - 2 cos averaged over the
        # batch
        loss = byol_loss(p1, t2) + byol_loss(p2, t1)
        return {
            "loss": loss,
            "representation": torch.cat(feats),
            "z_std": embedding_std(torch.cat(z)),
        }
