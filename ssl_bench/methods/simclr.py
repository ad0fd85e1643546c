"""SimCLR: A Simple Framework for Contrastive Learning of Visual Representations.
Chen, Kornblith, Norouzi, Hinton, 2020. https://arxiv.org/abs/2002.05709

As the official code (google-research/simclr@be133b3, the v1 release): both views in one backbone
call, so BN statistics are over 2N images (model.py: `tf.concat(features_list, 0)`; `bn_stats:
joint`), and the projection head g(.) is Linear-BN-ReLU-Linear-BN, the last BN with a scale but no
shift (model_util.py `projection_head`, `linear_layer(..., use_bn=True)` with `center=use_bias`;
`proj_bn: all`). `bn_stats: per_view` and `proj_bn: none` give solo-learn's variant (one call per
view, a head without BN).
"""

from __future__ import annotations

import torch
from torch import nn

from ssl_bench.errors import ConfigError
from ssl_bench.losses.contrastive import nt_xent
from ssl_bench.methods.base import SSLMethod, embedding_std
from ssl_bench.nn.heads import MLP, check_bn_placement


class SimCLR(SSLMethod):
    min_batch_size = 2

    def __init__(
        self,
        backbone: nn.Module,
        temperature: float = 0.5,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 128,
        proj_layers: int = 2,
        proj_bn: str = "all",
        bn_stats: str = "joint",
        **kwargs,
    ):
        super().__init__(backbone, bn_stats=bn_stats, **kwargs)
        if temperature <= 0:
            raise ConfigError(
                "method.temperature",
                f"must be positive, got {temperature}.",
                "use e.g. method.temperature=0.5 (SimCLR's CIFAR value) or 0.1.",
            )
        self.temperature = temperature
        # g(.): MLP with one hidden layer (the paper's projection head); BN where proj_bn says
        self.projector = MLP(
            self.feat_dim,
            proj_hidden_dim,
            proj_output_dim,
            num_layers=proj_layers,
            bn=check_bn_placement(proj_bn, "method.proj_bn"),
            last_shift=False,
        )

    def training_loss(self, views, labels, index):
        # 2 x (N x F); calls grouped by bn_stats
        feats = self.forward_views(self.backbone, views[:2])
        z1, z2 = self.forward_views(self.projector, feats)  # N x D each; the head grouped alike
        loss = nt_xent(z1, z2, self.temperature)
        return {
            "loss": loss,
            "representation": torch.cat(feats),
            "z_std": embedding_std(torch.cat([z1, z2])),
        }
