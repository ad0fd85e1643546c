"""AMDIM: Learning Representations by Maximizing Mutual Information Across Views.
Bachman, Hjelm, Buchwalter, NeurIPS 2019. https://arxiv.org/abs/1906.00910

Two augmented views x1, x2 of each image. The encoder gives features at three scales: f1 (global,
1x1), f5 (a 5x5 map) and f7 (a 7x7 map). Each is embedded into an `n_rkhs`-d space and AMDIM
maximises, with NCE (sec. 3.2), the MI between
  * 1-5: the global feature of one view and every location of the other view's 5x5 map,
  * 1-7: the global feature and every location of the 7x7 map,
  * 5-5: one randomly drawn location of one view's 5x5 map and every location of the other's map,
in both directions (x1 -> x2 and x2 -> x1, averaged). Positives are the other view's locations of
the same image; negatives all locations of the other images of the batch. Scores are dot products
divided by sqrt(n_rkhs) and regularised as in sec. 3.4: a penalty `score_reg * s^2` on the raw
scores (mean over all scores; the paper's 4e-2, the public code uses 5e-2) and soft clipping c *
tanh(s / c) with c = `tclip` = 20 before the NCE. The loss is  nce_1t5 + nce_1t7 + nce_5t5 + penalty
(the official code's sum; ssl_bench/losses/mi.py `multiscale_nce`).

Encoder. AMDIM's encoder is a custom ResNet whose valid (unpadded) convolutions leave exactly 7x7,
5x5 and 1x1 maps (for 32, 64 and 128 px inputs) and whose last layer is n_rkhs wide; no timm model
has that shape. Here the configured timm backbone gives the maps through `forward_intermediates`:
`layer_7` (default -2) stands for f7 and `layer_5` (default -1, the last map) for f5; the global f1
is the pooled backbone output (what is evaluated). With ResNet-18 and the small-input stem at 32 px
these are 8x8 and 4x4. Because the backbone's widths are not n_rkhs, f1 is embedded too: all three
scales go through AMDIM's 1x1 "fake RKHS" residual embedding (`ResidualEmbed1x1`, BatchNorm out,
zero-initialised residual branch), the smallest faithful piece; the official code embeds f5 and f7
that way and takes f1 as it is.

Each view goes through the encoder (and its embeddings) in a call of its own, BN statistics per
view, as the official code (Philip-Bachman/amdim-public@8754ae1, model.py `Model.forward`:
self.encoder(x1), then self.encoder(x2)): `bn_stats: per_view`; `joint` puts both views in one call.
"""

from __future__ import annotations

import torch
from torch import nn

from ssl_bench.errors import ConfigError
from ssl_bench.losses.mi import multiscale_nce
from ssl_bench.methods.base import SSLMethod, embedding_std
from ssl_bench.nn.local_features import (
    ResidualEmbed1x1,
    forward_with_maps,
    layer_channels,
    random_locations,
    resolve_layer,
)


class AMDIM(SSLMethod):
    min_batch_size = 2  # the negatives are the other images of the batch

    def __init__(
        self,
        backbone: nn.Module,
        n_rkhs: int = 1024,
        layer_5: int = -1,
        layer_7: int = -2,
        tclip: float | None = 20.0,
        score_reg: float = 4e-2,
        bn_stats: str = "per_view",
        **kwargs,
    ):
        super().__init__(backbone, bn_stats=bn_stats, **kwargs)
        if n_rkhs < 1:
            raise ConfigError(
                "method.n_rkhs", f"must be >= 1, got {n_rkhs}.", "use the paper's 1024 (CIFAR/STL)."
            )
        if tclip is not None and tclip <= 0:
            raise ConfigError(
                "method.tclip",
                f"must be positive or null (no clipping), got {tclip}.",
                "use the paper's 20.",
            )
        if score_reg < 0:
            raise ConfigError(
                "method.score_reg", f"must be >= 0, got {score_reg}.", "use the paper's 4e-2."
            )
        self.tclip, self.score_reg = tclip, score_reg
        self.layer_5 = resolve_layer(backbone, layer_5, "method.layer_5")
        self.layer_7 = resolve_layer(backbone, layer_7, "method.layer_7")
        # the "fake RKHS" embeddings of the three scales (1x1 residual convs, BN out)
        self.embed_1 = ResidualEmbed1x1(
            self.feat_dim, n_rkhs, out_norm="batch", zero_init_residual=True
        )
        self.embed_5 = ResidualEmbed1x1(
            layer_channels(backbone, self.layer_5), n_rkhs, "batch", True
        )
        self.embed_7 = ResidualEmbed1x1(
            layer_channels(backbone, self.layer_7), n_rkhs, "batch", True
        )

    def encode(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pooled features, r1 N x D, r5 N x D x L5, r7 N x D x L7) of one call's images."""
        feats, (m5, m7) = forward_with_maps(self.backbone, x, [self.layer_5, self.layer_7])
        return feats, self.embed_1(feats), self.embed_5(m5).flatten(2), self.embed_7(m7).flatten(2)

    def training_loss(self, views, labels, index):
        (f_a, r1_a, r5_a, r7_a), (f_b, r1_b, r5_b, r7_b) = self.forward_views(
            self.encode, views[:2]
        )
        r1, r5, r7 = (r1_a, r1_b), (r5_a, r5_b), (r7_a, r7_b)  # per view: N x D (x L)
        loc5 = tuple(random_locations(r) for r in r5)  # 5-5 antecedent locations
        out = multiscale_nce(r1, r5, r7, loc5, self.tclip, self.score_reg)
        loss = out.pop("loss")
        terms = {k: v.detach() for k, v in out.items()}
        return {
            "loss": loss,
            "representation": torch.cat([f_a, f_b]),
            "z_std": embedding_std(torch.cat(r1)),
            **terms,
        }
