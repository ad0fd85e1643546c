"""SimCLR v2: Big Self-Supervised Models are Strong Semi-Supervised Learners.
Chen, Kornblith, Swersky, Norouzi, Hinton, 2020. https://arxiv.org/abs/2006.10029

SimCLR with (i) a deeper, 3-layer projection head, (ii) the representation taken from the head's
first layer rather than the backbone output (`probe_from_projector_layer: 1`: the probe and the kNN
then see that layer), and (iii) optionally MoCo's memory: a momentum copy of the encoder whose keys
fill a queue of negatives (`queue_size > 0`; the copy is the method's momentum target, nn/ema.py:
tau = `base_tau`, constant unless `final_tau` is set).

As the official code (google-research/simclr@383d414, tf2/model.py): both views in one backbone call
(`tf.concat(features_list, 0)`, BN over 2N: `bn_stats: joint`) and a head whose every layer is
Linear-BN (`ProjectionHead`/`LinearLayer(use_bn=True)`, the last BN with a scale but no shift:
`proj_bn: all`), hidden layers as wide as the backbone, ReLU after all but the last.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_bench.errors import ConfigError
from ssl_bench.losses.contrastive import info_nce, nt_xent
from ssl_bench.methods.base import SSLMethod, embedding_std
from ssl_bench.nn.heads import MLP, check_bn_placement
from ssl_bench.nn.multicrop import shuffled_key_forward
from ssl_bench.nn.queue import FeatureQueue


class SimCLRv2(SSLMethod):
    min_batch_size = 2

    def __init__(
        self,
        backbone: nn.Module,
        temperature: float = 0.1,
        proj_hidden_dim: int | None = None,
        proj_output_dim: int = 128,
        proj_layers: int = 3,
        probe_from_projector_layer: int = 0,
        queue_size: int = 0,
        base_tau: float = 0.999,
        final_tau: float | None = None,
        bn_splits: int = 8,
        proj_bn: str = "all",
        bn_stats: str = "joint",
        **kwargs,
    ):
        super().__init__(backbone, bn_stats=bn_stats, **kwargs)
        if temperature <= 0:
            raise ConfigError(
                "method.temperature",
                f"must be positive, got {temperature}.",
                "use SimCLR v2's 0.1 (or 0.2-0.5 at small batch).",
            )
        if probe_from_projector_layer not in (0, 1) or (
            probe_from_projector_layer == 1 and proj_layers < 2
        ):
            raise ConfigError(
                "method.probe_from_projector_layer",
                f"must be 0 (backbone) or 1 (first projector layer, needs proj_layers >= 2), "
                f"got {probe_from_projector_layer} with proj_layers={proj_layers}.",
            )
        if queue_size < 0:
            raise ConfigError(
                "method.queue_size", f"must be >= 0 (0 = no memory), got {queue_size}."
            )
        self.temperature, self.bn_splits = temperature, bn_splits
        self.probe_layer = probe_from_projector_layer
        # the paper keeps the backbone's width in the head
        hidden = proj_hidden_dim or self.feat_dim
        self.projector = MLP(
            self.feat_dim,
            hidden,
            proj_output_dim,
            num_layers=proj_layers,
            bn=check_bn_placement(proj_bn, "method.proj_bn"),
            last_shift=False,
        )
        # the probe reads the head's first layer (a `hidden`-wide representation)
        if self.probe_layer == 1:
            self.online_eval = self.build_online_eval(hidden)
        self.use_memory = queue_size > 0
        if self.use_memory:  # MoCo's key encoder (the EMA of backbone + head) and queue
            self.add_momentum_encoder(base_tau, final_tau)
            self.queue = FeatureQueue(queue_size, proj_output_dim)

    # ---- forward pieces ------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The evaluated representation: backbone features, or the first projector layer's
        output."""
        return self.represent(self.backbone(x))

    def represent(self, feats: torch.Tensor) -> torch.Tensor:
        first = self.projector.layer_ends[0]  # the first layer: Linear[, BN], ReLU
        return self._layers(feats, 0, first) if self.probe_layer == 1 else feats

    def project(self, h: torch.Tensor) -> torch.Tensor:
        if self.probe_layer == 1:
            return self._layers(h, self.projector.layer_ends[0], None)
        return self.projector(h)

    def _layers(self, x: torch.Tensor, start: int, stop: int | None) -> torch.Tensor:
        for layer in list(self.projector)[start:stop]:
            x = layer(x)
        return x

    # ---- the loss -----------------------------------------------------------------------------
    def training_loss(self, views, labels, index):
        # calls grouped by bn_stats; with the memory, as in MoCo, queries and keys are normalised
        # over bn_splits virtual devices (nn/multicrop.py), the keys shuffled across them first
        splits = self.bn_splits if self.use_memory else 1
        encode = lambda b: self.represent(self.backbone(b))  # noqa: E731
        h = self.forward_views(encode, views[:2], splits)  # 2 x (N x F)
        z1, z2 = self.forward_views(self.project, h, splits)  # N x D each
        h, z = torch.cat(h), torch.cat([z1, z2])
        if not self.use_memory:
            return {
                "loss": nt_xent(z1, z2, self.temperature),
                "representation": h,
                "z_std": embedding_std(z),
            }
        # MoCo-style memory: keys of the other view from the momentum encoder, negatives from the
        # queue
        encoder = lambda b: self.target_projector(self.target_backbone(b))  # noqa: E731
        k1, k2 = self.forward_views(
            lambda b: shuffled_key_forward(encoder, b, self.bn_splits), views[:2]
        )
        k = torch.cat([k1, k2])
        negatives = self.queue()
        loss12, t12 = info_nce(z1, k2, negatives, self.temperature, return_terms=True)
        loss21, t21 = info_nce(z2, k1, negatives, self.temperature, return_terms=True)
        self.queue.enqueue(F.normalize(k.float(), dim=1))
        terms = {name: (t12[name] + t21[name]) / 2 for name in t12}
        return {
            "loss": (loss12 + loss21) / 2,
            "representation": h,
            "z_std": embedding_std(z),
            **terms,
        }
