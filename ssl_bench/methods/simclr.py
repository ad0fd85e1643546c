"""SimCLR: A Simple Framework for Contrastive Learning of Visual Representations.
Chen, Kornblith, Norouzi, Hinton, 2020. https://arxiv.org/abs/2002.05709
"""
from __future__ import annotations

import torch
from torch import nn

from ssl_bench.errors import ConfigError
from ssl_bench.losses import nt_xent
from ssl_bench.methods.base import SSLMethod, embedding_std
from ssl_bench.nn.heads import MLP


class SimCLR(SSLMethod):
    min_batch_size = 2

    def __init__(self, backbone: nn.Module, temperature: float = 0.5, proj_hidden_dim: int = 2048,
                 proj_output_dim: int = 128, proj_layers: int = 2, **kwargs):
        super().__init__(backbone, **kwargs)
        if temperature <= 0:
            raise ConfigError("method.temperature", f"must be positive, got {temperature}.",
                              "use e.g. method.temperature=0.5 (SimCLR's CIFAR value) or 0.1.")
        self.temperature = temperature
        # g(.): MLP with one hidden layer (the paper's projection head), BN between layers as in SimCLR v2
        self.projector = MLP(self.feat_dim, proj_hidden_dim, proj_output_dim, num_layers=proj_layers)

    def training_loss(self, views, labels, index):
        feats = self.backbone(torch.cat(views[:2]))        # 2N x F, both views in one backbone call
        z = self.projector(feats)                           # 2N x D
        z1, z2 = z.chunk(2)
        loss = nt_xent(z1, z2, self.temperature)
        return {"loss": loss, "feats": feats, "z_std": embedding_std(z)}
