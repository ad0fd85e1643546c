"""SwAV: Unsupervised Learning of Visual Features by Contrasting Cluster Assignments.
Caron et al., 2020. https://arxiv.org/abs/2006.09882
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_bench.errors import ConfigError
from ssl_bench.losses.clustering import sinkhorn_knopp, swav_loss
from ssl_bench.methods.base import SSLMethod, embedding_std
from ssl_bench.nn.dist import world
from ssl_bench.nn.heads import MLP
from ssl_bench.nn.prototypes import Prototypes


class SwAV(SSLMethod):
    """Online clustering: codes of the large crops (Sinkhorn-Knopp over the batch, plus an optional
    queue of past embeddings) are predicted from every other crop, large or small (swapped
    prediction, multi-crop).

    Prototypes stay on the unit sphere (re-normalised after every optimizer step) and get no update
    during the first `freeze_prototypes_epochs` epochs. The queue (`queue_length` embeddings per
    large crop, split over DDP ranks, from epoch `epoch_queue_starts` and used once full) keeps
    Sinkhorn's equipartition meaningful when batches are small; it is not checkpointed and refills
    after a resume.

    Multi-crop as the official code (facebookresearch/swav@06b1b7c, src/resnet50.py
    `ResNet.forward`): the backbone runs once per resolution, BN over all crops of that size, and
    the head once on the features of all crops: `bn_stats: joint` (the same grouping: features of
    one shape form one call). `per_view` runs both once per crop (solo-learn's way).
    """

    #: codes are computed for the first views only, SwAV's two full-resolution crops (paper, sec.
    #: 3.2; the views arrive large crops first); every view predicts them
    num_large_crops = 2

    def __init__(
        self,
        backbone: nn.Module,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 128,
        num_prototypes: int = 3000,
        temperature: float = 0.1,
        sk_iterations: int = 3,
        sk_epsilon: float = 0.05,
        freeze_prototypes_epochs: int = 1,
        queue_length: int = 0,
        epoch_queue_starts: int = 15,
        bn_stats: str = "joint",
        **kwargs,
    ):
        super().__init__(backbone, bn_stats=bn_stats, **kwargs)
        checks = (
            ("temperature", temperature, temperature > 0, "> 0", "use 0.1 (the paper's value)."),
            ("sk_epsilon", sk_epsilon, sk_epsilon > 0, "> 0", "use 0.05 (the paper's value)."),
            (
                "sk_iterations",
                sk_iterations,
                sk_iterations >= 1,
                ">= 1",
                "use 3 (the paper's value).",
            ),
            (
                "num_prototypes",
                num_prototypes,
                num_prototypes >= 2,
                ">= 2",
                "use 3000, or ~10x the classes.",
            ),
            (
                "queue_length",
                queue_length,
                queue_length >= 0,
                ">= 0",
                "use 0 (no queue) or e.g. 3840.",
            ),
            (
                "freeze_prototypes_epochs",
                freeze_prototypes_epochs,
                freeze_prototypes_epochs >= 0,
                ">= 0",
                "use 1.",
            ),
            (
                "epoch_queue_starts",
                epoch_queue_starts,
                epoch_queue_starts >= 0,
                ">= 0",
                "use e.g. 15.",
            ),
        )
        for key, value, ok, need, fix in checks:
            if not ok:
                raise ConfigError(f"method.{key}", f"must be {need}, got {value}.", fix)
        self.temperature, self.sk_iterations, self.sk_epsilon = (
            temperature,
            sk_iterations,
            sk_epsilon,
        )
        self.freeze_prototypes_epochs = freeze_prototypes_epochs
        self.queue_length, self.epoch_queue_starts = queue_length, epoch_queue_starts
        # 2-layer head (paper, A.1)
        self.projector = MLP(self.feat_dim, proj_hidden_dim, proj_output_dim)
        self.prototypes = Prototypes(proj_output_dim, num_prototypes)
        # num_large x L x D, allocated when it starts; a plain attribute, not a buffer, so DDP does
        # not broadcast rank 0's queue over the others' and checkpoints stay independent of the
        # queue
        self.queue: torch.Tensor | None = None
        self.queue_filled = 0

    # ---- the loss on multi-crop views -------------------------------------------------------
    def training_loss(self, views, labels, index):
        n, large = views[0].shape[0], self.num_large_crops
        feats = self.forward_views(self.backbone, views)  # V x (N x F); joint: 1 call a size
        z = F.normalize(torch.cat(self.forward_views(self.projector, feats)), dim=1)  # (V*N) x D
        scores = self.prototypes(z).split(n)  # V tensors N x K
        codes = [self.codes(scores[i], i) for i in range(large)]  # large crops only, no grad
        loss = swav_loss(list(scores), codes, self.temperature)
        self.enqueue(z[: large * n].detach())
        return {
            "loss": loss,
            "representation": torch.cat(feats[:large]),
            "z_std": embedding_std(z[: large * n]),
        }

    @torch.no_grad()
    def codes(self, scores: torch.Tensor, crop: int) -> torch.Tensor:
        """Sinkhorn codes of one large crop, N x K; with a full queue, equipartitioned over queue +
        batch."""
        if self.queue is not None and self.queue_filled >= self.queue.shape[1]:
            queued = self.prototypes(self.queue[crop].to(scores.dtype))  # L x K
            return sinkhorn_knopp(torch.cat([queued, scores]), self.sk_iterations, self.sk_epsilon)[
                -len(scores) :
            ]
        return sinkhorn_knopp(scores, self.sk_iterations, self.sk_epsilon)

    @torch.no_grad()
    def enqueue(self, z: torch.Tensor) -> None:
        if self.queue_length == 0 or self.current_epoch < self.epoch_queue_starts:
            return
        large = self.num_large_crops
        per_crop = z.float().reshape(large, -1, z.shape[1])  # num_large x N x D
        if self.queue is None:
            length = max(1, self.queue_length // world()[1])
            self.queue = per_crop.new_zeros(large, length, z.shape[1])
        new = per_crop[:, -self.queue.shape[1] :]  # newest first, oldest drop out
        self.queue = torch.cat([new, self.queue[:, : self.queue.shape[1] - new.shape[1]]], dim=1)
        self.queue_filled = min(self.queue.shape[1], self.queue_filled + new.shape[1])

    # ---- around the optimizer step ----------------------------------------------------------
    def on_before_optimizer_step(self, optimizer) -> None:
        if self.current_epoch < self.freeze_prototypes_epochs:
            self.prototypes.weight.grad = (
                None  # no update, no weight decay, no momentum (paper, A.1)
            )

    def after_optimizer_step(self) -> None:
        super().after_optimizer_step()
        self.prototypes.normalize_()
