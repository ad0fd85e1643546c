"""MoCo: Momentum Contrast for Unsupervised Visual Representation Learning. He, Fan, Wu, Xie,
Girshick, 2019. https://arxiv.org/abs/1911.05722 (v1) Chen, Fan, Girshick, He, 2020, "Improved
Baselines with Momentum Contrastive Learning". https://arxiv.org/abs/2003.04297 (v2: MLP head,
T=0.2, blur, cosine schedule - the same class, other YAML)

A query encoder (backbone + head) is trained with InfoNCE against the key of the other view,
computed by a momentum (EMA) copy of the encoder, and against a queue of keys from earlier batches.
The key encoder is the method's momentum target (nn/ema.py): tau = `base_tau` (the paper's m),
constant, or with `final_tau` a cosine ramp to it (solo-learn's MoCo v2+). `proj_norm` (off: the
papers' heads) puts BN in the head, as MoCo v3: needed for short runs (see the tests). Keys are
encoded with shuffled BN (nn/multicrop.py `shuffled_key_forward`).

The symmetric loss is the official CIFAR demo's (facebookresearch/moco@f736491,
colab/moco_cifar10_demo.ipynb, `ModelMoCo.forward`): loss = loss_12 + loss_21, each crop a query in
one term and a key in the other, every encoder call on one crop (`contrastive_loss(im1, im2)` then
`contrastive_loss(im2, im1)`: `bn_stats: per_view`). The sum, not the mean: at the same lr a
symmetric step is twice an asymmetric one, as in the demo.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_bench.errors import ConfigError
from ssl_bench.losses.contrastive import info_nce
from ssl_bench.methods.base import SSLMethod, embedding_std
from ssl_bench.nn.heads import MLP
from ssl_bench.nn.multicrop import shuffled_key_forward
from ssl_bench.nn.queue import FeatureQueue


class MoCo(SSLMethod):
    min_batch_size = 2

    def __init__(
        self,
        backbone: nn.Module,
        temperature: float = 0.07,
        queue_size: int = 65536,
        proj_layers: int = 1,
        proj_hidden_dim: int | None = None,
        proj_output_dim: int = 128,
        base_tau: float = 0.999,
        final_tau: float | None = None,
        symmetric: bool = False,
        bn_splits: int = 8,
        proj_norm: bool = False,
        bn_stats: str = "per_view",
        **kwargs,
    ):
        super().__init__(backbone, bn_stats=bn_stats, **kwargs)
        if temperature <= 0:
            raise ConfigError(
                "method.temperature",
                f"must be positive, got {temperature}.",
                "use MoCo's 0.07 (v1) or 0.2 (v2).",
            )
        if queue_size < 1:
            raise ConfigError(
                "method.queue_size",
                f"must be a positive number of keys, got {queue_size}.",
                "use MoCo's 65536 (ImageNet) or 4096 (CIFAR).",
            )
        if proj_layers < 1 or bn_splits < 1:
            key = "method.proj_layers" if proj_layers < 1 else "method.bn_splits"
            raise ConfigError(
                key, f"must be >= 1, got {proj_layers if proj_layers < 1 else bn_splits}."
            )
        self.temperature, self.symmetric, self.bn_splits = temperature, symmetric, bn_splits
        # v1: fc to 128-d; v2: fc-ReLU-fc (hidden = the backbone's width, no BN, as the official
        # code). proj_norm: BatchNorm after the hidden layers and on the output (no affine), as MoCo
        # v3's head
        self.projector = MLP(
            self.feat_dim,
            proj_hidden_dim or self.feat_dim,
            proj_output_dim,
            num_layers=proj_layers,
            bn="all" if proj_norm else "none",
            last_scale=False,
            last_shift=False,
        )
        # key encoder: the EMA of the query encoder (backbone + head)
        self.add_momentum_encoder(base_tau, final_tau)
        self.queue = FeatureQueue(queue_size, proj_output_dim)

    # ---- forward pieces ------------------------------------------------------------------------
    def encode_keys(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Keys (N x D each, no gradient) of the views by the momentum encoder, with shuffled BN
        over bn_splits virtual devices; grouped into calls by bn_stats (per_view: each crop shuffled
        alone)."""
        encoder = lambda b: self.target_projector(self.target_backbone(b))  # noqa: E731
        modules = (self.target_backbone, self.target_projector)  # one call, BN grouped by split
        return self.forward_views(
            lambda x: shuffled_key_forward(encoder, x, self.bn_splits, modules), views
        )

    def encode_queries(
        self, views: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(backbone features, queries) of the views, over bn_splits unshuffled virtual devices
        (each module one call on the whole batch, its BN grouped by device: nn/multicrop.py)."""
        feats = self.forward_views(self.backbone, views, self.bn_splits)  # N x F each
        return feats, self.forward_views(self.projector, feats, self.bn_splits)  # N x D each

    # ---- the loss -----------------------------------------------------------------------------
    def training_loss(self, views, labels, index):
        negatives = self.queue()  # K x D
        if self.symmetric:  # both crops are queries and keys (the official CIFAR demo's option)
            feats, (q1, q2) = self.encode_queries(views[:2])
            k1, k2 = self.encode_keys(views[:2])
            loss12, t12 = info_nce(q1, k2, negatives, self.temperature, return_terms=True)
            loss21, t21 = info_nce(q2, k1, negatives, self.temperature, return_terms=True)
            loss = loss12 + loss21  # the demo's sum (module docstring)
            terms = {name: (t12[name] + t21[name]) / 2 for name in t12}  # logged: the mean of both
            q, k = torch.cat([q1, q2]), torch.cat([k1, k2])  # queue: k1 then k2, as the demo
        else:
            feats, (q,) = self.encode_queries(views[:1])  # queries: N x D
            (k,) = self.encode_keys(views[1:2])  # keys: N x D
            loss, terms = info_nce(q, k, negatives, self.temperature, return_terms=True)
        self.queue.enqueue(F.normalize(k.float(), dim=1))  # newest keys replace the oldest
        return {
            "loss": loss,
            "representation": torch.cat(feats),
            "z_std": embedding_std(q),
            **terms,
        }
