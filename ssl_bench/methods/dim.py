"""Deep InfoMax: Learning deep representations by mutual information estimation and maximization.
Hjelm, Fedorov, Lavoie-Marchildon, Grewal, Bachman, Trischler, Bengio, ICLR 2019.
https://arxiv.org/abs/1808.06670

The encoder E = f o C: C gives an M x M map of local features, f the global feature Y = E(x). Here C
= the map of `local_layer` of the timm backbone (`forward_intermediates`) and Y = a linear layer of
`global_dim` (64) units on the backbone's pooled features, with no activation - as the official code
(rdevon/DIM@e6622e1, scripts/deep_infomax.py: the encoder's last layer is `(global_units=64, no
batch norm, no nonlinearity)` after its 1024-unit fc; cortex_DIM/models/controller.py: an
`output_units=64` linear top layer). The pooled features play the part of the official 1024-unit fc
layer. The objective (eq. 8) is
    alpha * I(X; Y)  +  beta * mean_ij I(C_ij(X); Y)  -  gamma * D(V || E(X))     (maximised)
  * local DIM (beta, sec. 3.2): Y against every location of the map; the same image's locations are
    the positives, all locations of the other images of the batch the negatives;
  * global DIM (alpha, sec. 3.1): Y against the whole map;
  * prior matching (gamma, sec. 3.3): an adversarial discriminator pushes sigmoid(Y) towards the
    uniform prior on [0, 1]^64. The official PriorMatching (cortex_DIM/models/prior_matching.py)
    matches the encoder's last output (`task_idx=-1`: the linear layer) squashed by a sigmoid for
    the uniform prior. A linear Y spans the real line, so sigmoid(Y) can cover [0, 1]; the pooled
    output of a ReLU network (Y >= 0, sigmoid(Y) >= 0.5) never could, and the prior term then only
    pushed the features towards zero (tested).
The evaluated representation (forward, kNN and the online probe) is the pooled backbone output, the
official fc layer's counterpart. The paper classifies from the last conv layer, the fc layer and Y
(Table 1); Y, the 64-unit code shaped by the prior, is the narrowest of the three and not the better
one for local DIM, and the pooled output is what every other ssl_bench method evaluates, so kNN
results compare across methods. The MI estimator is Jensen-Shannon by default (`estimator: jsd`;
`nce` and `dv` selectable, sec. 3.1, eq. 2-5). Critics are "encode-and-dot" (the paper's
encoder-and-dot-product critic; the official LocalDIM's networks): local features and Y are each
embedded by a residual 1x1-conv network ending in a LayerNorm (`ResidualEmbed1x1`) and scored by
their dot product. The global critic encodes the map with a 3x3 conv, pools it to 4x4 (so the head
does not depend on the image size; the official GlobalDIM reuses the encoder's remaining layers
instead) and a two-layer MLP, then takes the dot product with the embedded Y. The prior
discriminator is the official 1000-200-1 ReLU MLP; it learns from its own GAN loss on detached codes
while the encoder gets the non-saturating loss -log D(sigmoid(Y)) through a parameter-detached copy
of D, so one optimizer step plays both sides of the minimax. One view per image: the paper trains
DIM on the images without augmentation.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from ssl_bench.errors import ConfigError
from ssl_bench.losses.mi import ESTIMATORS, dim_loss, prior_matching_losses
from ssl_bench.methods.base import SSLMethod, embedding_std
from ssl_bench.nn.local_features import (
    ResidualEmbed1x1,
    forward_with_maps,
    global_local_scores,
    layer_channels,
    resolve_layer,
)


class DIM(SSLMethod):
    min_batch_size = 2  # the negatives are the other images of the batch

    def __init__(
        self,
        backbone: nn.Module,
        estimator: str = "jsd",
        local_layer: int = -2,
        global_dim: int = 64,
        mi_units: int = 2048,
        alpha: float = 0.0,
        beta: float = 1.0,
        gamma: float = 0.1,
        global_hidden_dim: int = 512,
        prior_hidden_dims: tuple[int, int] = (1000, 200),
        **kwargs,
    ):
        super().__init__(backbone, **kwargs)
        if estimator not in ESTIMATORS:
            raise ConfigError(
                "method.estimator",
                f"unknown MI estimator '{estimator}'.",
                f"choose one of {', '.join(ESTIMATORS)} (the paper's local DIM default: jsd).",
            )
        for key, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
            if value < 0:
                raise ConfigError(
                    f"method.{key}",
                    f"must be >= 0, got {value}.",
                    "use the paper's 0, 1, 0.1 (local DIM).",
                )
        if alpha == 0 and beta == 0:
            raise ConfigError(
                "method.beta",
                "alpha and beta are both 0: no MI term is left to learn from.",
                "set method.beta=1 (local DIM) or method.alpha=1 (global DIM).",
            )
        if mi_units < 1:
            raise ConfigError(
                "method.mi_units", f"must be >= 1, got {mi_units}.", "use the paper's 2048."
            )
        if global_dim < 1:
            raise ConfigError(
                "method.global_dim", f"must be >= 1, got {global_dim}.", "use the paper's 64."
            )
        self.estimator, self.alpha, self.beta, self.gamma = estimator, alpha, beta, gamma
        self.local_layer = resolve_layer(backbone, local_layer, "method.local_layer")
        channels = layer_channels(backbone, self.local_layer)
        # Y = E(x): the encoder's last layer, linear, on the pooled features (official: 64 units, no
        # act.)
        self.global_head = nn.Linear(self.feat_dim, global_dim)
        # local DIM critic: C_ij and Y embedded into the same mi_units space, score = dot product
        self.local_embed = ResidualEmbed1x1(channels, mi_units, out_norm="layer")
        self.global_embed = ResidualEmbed1x1(global_dim, mi_units, out_norm="layer")
        if alpha > 0:  # global DIM critic: the whole map as one vector against Y
            self.map_encoder = nn.Sequential(
                nn.Conv2d(channels, 64, 3, padding=1, bias=False),
                nn.BatchNorm2d(64),
                nn.ReLU(inplace=True),
                nn.AdaptiveAvgPool2d(4),
                nn.Flatten(),
                nn.Linear(64 * 16, global_hidden_dim),
                nn.ReLU(inplace=True),
                nn.Linear(global_hidden_dim, mi_units),
            )
            self.global_y_embed = ResidualEmbed1x1(global_dim, mi_units, out_norm="layer")
        if gamma > 0:  # prior discriminator D: 64 -> 1000 -> 200 -> 1
            h1, h2 = prior_hidden_dims
            self.prior_disc = nn.Sequential(
                nn.Linear(global_dim, h1),
                nn.ReLU(inplace=True),
                nn.Linear(h1, h2),
                nn.ReLU(inplace=True),
                nn.Linear(h2, 1),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The evaluated representation: the pooled backbone features (the official fc layer's
        counterpart, see the module docstring), not Y."""
        return self.backbone(x)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pooled features N x F - the representation, Y = E(x) N x global_dim, C(x) N x Cm x M x
        M)."""
        pooled, (c,) = forward_with_maps(self.backbone, x, [self.local_layer])
        return pooled, self.global_head(pooled), c

    def training_loss(self, views, labels, index):
        pooled, y, c = self.encode(views[0])
        g = self.global_embed(y)  # N x U
        local_scores = global_scores = prior = None
        if self.beta > 0:  # local DIM: Y_i against every location of image k's map, N x N x M*M
            local_scores = global_local_scores(g, self.local_embed(c))
        if self.alpha > 0:  # global DIM: Y_i against image k's whole map, N x N
            global_scores = self.global_y_embed(y).float() @ self.map_encoder(c).float().T
        if self.gamma > 0:
            prior = self.prior_losses(y)
        out = dim_loss(
            self.estimator, local_scores, global_scores, prior, self.alpha, self.beta, self.gamma
        )
        return {**out, "representation": pooled, "z_std": embedding_std(g)}

    def prior_losses(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(encoder's non-saturating loss -log D(q), discriminator's loss -log D(v) - log(1 - D(q)))
        with q = sigmoid(Y) and v ~ U[0, 1]^global_dim (sec. 3.3, eq. 7). D learns only from the
        second, the encoder only from the first (through a parameter-detached copy of D)."""
        q = torch.sigmoid(y.float())
        v = torch.rand_like(q)
        real, fake = self.prior_disc(v).float(), self.prior_disc(q.detach()).float()
        frozen = {name: p.detach() for name, p in self.prior_disc.named_parameters()}
        judged = functional_call(self.prior_disc, frozen, (q,)).float()
        return prior_matching_losses(real, fake, judged)
