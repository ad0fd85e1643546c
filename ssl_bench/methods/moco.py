"""MoCo: Momentum Contrast for Unsupervised Visual Representation Learning.
He, Fan, Wu, Xie, Girshick, 2019. https://arxiv.org/abs/1911.05722 (v1)
Chen, Fan, Girshick, He, 2020, "Improved Baselines with Momentum Contrastive Learning".
https://arxiv.org/abs/2003.04297 (v2: MLP head, T=0.2, blur, cosine schedule - the same class, other YAML)

A query encoder (backbone + head) is trained with InfoNCE against the key of the other view, computed by
a momentum (EMA) copy of the encoder, and against a queue of keys from earlier batches.
`proj_norm` (off: the papers' heads) puts BN in the head, as MoCo v3: needed for short runs (see the tests).

The symmetric loss is the official CIFAR demo's (facebookresearch/moco@f736491,
colab/moco_cifar10_demo.ipynb, `ModelMoCo.forward`): loss = loss_12 + loss_21, each crop a query in one
term and a key in the other, every encoder call on one crop (`contrastive_loss(im1, im2)` then
`contrastive_loss(im2, im1)`: `bn_stats: per_view`). The sum, not the mean: at the same lr a symmetric step
is twice an asymmetric one, as in the demo.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

from ssl_bench.errors import ConfigError
from ssl_bench.losses.contrastive import info_nce
from ssl_bench.methods.base import SSLMethod, embedding_std
from ssl_bench.nn.dist import gather_no_grad, world
from ssl_bench.nn.ema import cosine_tau, ema_update, make_target
from ssl_bench.nn.heads import MLP
from ssl_bench.nn.multicrop import split_forward
from ssl_bench.nn.queue import FeatureQueue


@torch.no_grad()
def shuffled_key_forward(
    encoder: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, bn_splits: int = 1
) -> torch.Tensor:
    """Keys whose BatchNorm statistics cannot reveal which key is a query's positive (MoCo sec. 3.3).

    Under DDP this is the paper's Shuffling BN: the key images of all ranks are gathered, permuted by a
    random permutation broadcast from rank 0, each rank encodes its slice of the shuffled batch, and the
    keys are gathered back and un-shuffled. On one device the same effect comes from `bn_splits` virtual
    devices: the batch is permuted and encoded as `bn_splits` sub-batches, each normalised by its own BN
    statistics (like the official CIFAR demo's SplitBatchNorm, bn_splits=8; 1 = one BN over the batch).
    The queries are encoded in the same number of (unshuffled) sub-batches (`forward_views`), as in the demo,
    where SplitBatchNorm sits in both encoders (with one BN over the whole batch for the queries, a query and
    its key share this batch's statistics while the queue's keys do not). Note, measured on short CPU runs:
    this alone does not stop the other shortcut of a fast key encoder (m=0.9), the whole embedding drifting
    away from the stale queue (acc 100% by step 14, z_std 0.035 -> 0.01); BN in the head does (`proj_norm`).
    Sub-batches never fall below 2 images. Returns the keys in the order of `x`.
    """

    def encode(batch):
        return split_forward(encoder, batch, bn_splits)

    rank, size = world()
    if size == 1:
        perm = torch.randperm(x.shape[0], device=x.device)
        return encode(x[perm])[torch.argsort(perm)]
    x_all = gather_no_grad(x.contiguous())  # (W*N) x C x H x W
    perm = torch.randperm(x_all.shape[0], device=x.device)
    dist.broadcast(perm, src=0)  # one permutation for all ranks
    mine = perm.view(size, -1)[rank]  # this rank's slice of shuffled images
    k_all = gather_no_grad(encode(x_all[mine]).contiguous())  # keys in shuffled order, (W*N) x D
    return k_all[torch.argsort(perm)].view(size, -1, k_all.shape[1])[rank]


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
        momentum_tau: float = 0.999,
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
        for key, tau in (("momentum_tau", momentum_tau), ("final_tau", final_tau)):
            if tau is not None and not 0.0 <= tau <= 1.0:
                raise ConfigError(
                    f"method.{key}",
                    f"must be in [0, 1], got {tau}.",
                    "use MoCo's 0.999 (0.99 for short CIFAR runs).",
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
        self.tau, self.final_tau = (
            momentum_tau,
            final_tau,
        )  # final_tau: BYOL's cosine ramp (solo-learn's)
        # v1: fc to 128-d; v2: fc-ReLU-fc (hidden = the backbone's width, no BN, as the official code).
        # proj_norm: BatchNorm after the hidden layers and on the output (no affine), as MoCo v3's head
        self.projector = MLP(
            self.feat_dim,
            proj_hidden_dim or self.feat_dim,
            proj_output_dim,
            num_layers=proj_layers,
            bn="all" if proj_norm else "none",
            last_scale=False,
            last_shift=False,
        )
        self.target_backbone = make_target(self.backbone)  # key encoder: EMA of the query encoder
        self.target_projector = make_target(self.projector)
        self.queue = FeatureQueue(queue_size, proj_output_dim)

    # ---- forward pieces ------------------------------------------------------------------------
    def encode_keys(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Keys (N x D each, no gradient) of the views by the momentum encoder, with shuffled BN over
        bn_splits virtual devices; grouped into calls by bn_stats (per_view: each crop shuffled alone)."""
        encoder = lambda b: self.target_projector(self.target_backbone(b))  # noqa: E731
        return self.forward_views(lambda x: shuffled_key_forward(encoder, x, self.bn_splits), views)

    def encode_queries(
        self, views: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(backbone features, queries) of the views, over bn_splits unshuffled virtual devices."""
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
        self.queue.enqueue(
            torch.nn.functional.normalize(k.float(), dim=1)
        )  # newest keys replace the oldest
        return {"loss": loss, "feats": torch.cat(feats), "z_std": embedding_std(q), **terms}

    # ---- batch-end updates --------------------------------------------------------------------
    def current_tau(self) -> float:
        if self.final_tau is None:
            return self.tau  # MoCo's constant m
        return cosine_tau(
            self.trainer.global_step,
            int(self.trainer.estimated_stepping_batches),
            self.tau,
            self.final_tau,
        )

    def after_optimizer_step(self) -> None:
        tau = self.current_tau()
        ema_update(self.target_backbone, self.backbone, tau)
        ema_update(self.target_projector, self.projector, tau)
