"""NNCLR: With a Little Help from My Friends: Nearest-Neighbor Contrastive Learning of Visual
Representations. Dwibedi, Aytar, Tompson, Sermanet, Zisserman, 2021. https://arxiv.org/abs/2104.14548

SimCLR's loss with a different anchor: the positive of an image's view is the nearest neighbour of
its embedding in a support set Q, a FIFO queue of the normalised embeddings of earlier batches
(nn/queue.py `FeatureQueue`, written with the embeddings of every rank), scored against the
prediction of the other view (eq. 2 with the prediction head of sec. 3.2; losses/contrastive.py
`nnclr_loss`). The loss is symmetrised over the views: the mean of NN(z1) against p2 and NN(z2)
against p1. `transposed_term` (default) adds to each the term whose softmax runs over the batch's
neighbours for a fixed prediction: the paper's sec. 3.2 symmetrisation as VISSL's reproduction
(vissl/losses/nnclr_loss.py) cites it and as the keras example computes it - the paper's own text
could not be read here. solo-learn's loss (solo/losses/nnclr.py) has no such term, so its CIFAR
recipes set `transposed_term: false`.

Heads (sec. 4, implementation details): a projector of `proj_layers` linear layers with BN after
every one and ReLU after all but the last, and a predictor Linear-BN-ReLU-Linear (no output BN).
The support set is read before the batch's embeddings are written, and takes the embeddings of the
first view, as solo-learn@9187ea39 solo/methods/nnclr.py `training_step` (the paper adds "the
embeddings of the current batch"; one view's, so as not to store each image twice).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_bench.errors import ConfigError
from ssl_bench.losses.contrastive import nearest_neighbour, nnclr_loss
from ssl_bench.methods.base import SSLMethod, embedding_std
from ssl_bench.nn.heads import MLP, check_head_sizes
from ssl_bench.nn.queue import FeatureQueue


class NNCLR(SSLMethod):
    min_batch_size = 2

    def __init__(
        self,
        backbone: nn.Module,
        temperature: float = 0.1,
        queue_size: int = 98304,
        proj_layers: int = 3,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 256,
        pred_hidden_dim: int = 4096,
        transposed_term: bool = True,
        bn_stats: str = "per_view",
        **kwargs,
    ):
        super().__init__(backbone, bn_stats=bn_stats, **kwargs)
        if temperature <= 0:
            raise ConfigError(
                "method.temperature", f"must be positive, got {temperature}.", "NNCLR's is 0.1."
            )
        if queue_size < 1:
            raise ConfigError(
                "method.queue_size",
                f"must be a positive number of embeddings, got {queue_size}.",
                "use NNCLR's 98304 (ImageNet) or a CIFAR-sized one (solo-learn: 65536).",
            )
        check_head_sizes(
            proj_hidden_dim=proj_hidden_dim,
            proj_output_dim=proj_output_dim,
            pred_hidden_dim=pred_hidden_dim,
            proj_layers=proj_layers,
        )
        self.temperature = float(temperature)
        self.transposed_term = bool(transposed_term)
        self.projector = MLP(
            self.feat_dim, proj_hidden_dim, proj_output_dim, num_layers=proj_layers, bn="all"
        )
        self.predictor = MLP(proj_output_dim, pred_hidden_dim, proj_output_dim, bn="hidden")
        #: the support set Q: unit rows, the newest embeddings of every rank replacing the oldest
        self.support = FeatureQueue(queue_size, proj_output_dim)

    def training_loss(self, views, labels, index):
        feats = self.forward_views(self.backbone, views[:2])  # grouped by bn_stats
        z1, z2 = self.forward_views(self.projector, feats)  # N x D each
        p1, p2 = self.forward_views(self.predictor, [z1, z2])
        support = self.support()  # K x D, read before this batch is written
        nn1, idx1 = nearest_neighbour(z1, support)
        nn2, _ = nearest_neighbour(z2, support)
        t, both = self.temperature, self.transposed_term
        loss = (nnclr_loss(nn1, p2, t, both) + nnclr_loss(nn2, p1, t, both)) / 2
        with torch.no_grad():  # how close the neighbours are to the embeddings they replace
            nn_sim = (F.normalize(z1.float(), dim=1) * nn1).sum(dim=1).mean()
        self.support.enqueue(F.normalize(z1.detach().float(), dim=1))
        return {
            "loss": loss,
            "representation": torch.cat(feats),
            "z_std": embedding_std(torch.cat([z1, z2])),
            "nn_sim": nn_sim,
        }
