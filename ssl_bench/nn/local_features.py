"""Local features for the mutual-information methods (DIM, AMDIM): intermediate maps of a timm
backbone and the 1x1-convolution embeddings whose dot products are the critic scores
("encode-and-dot").

Maps come from timm's `forward_intermediates`, not from hooks or a patched model. `layer` indices
address the backbone's `feature_info` (ResNet: 0 = stem, 1..4 = layer1..layer4; ViT: one entry per
block), negative ones count from the end. `feature_info`'s `reduction` is stale after ssl_bench's
small-input stem swap (it still says the stem halves the image), so nothing here relies on it: only
channel counts are read, and the spatial sizes are whatever the forward pass gives (ResNet-18, small
stem, 32 px: layer3 8x8, layer4 4x4).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ssl_bench.errors import ConfigError


def resolve_layer(backbone: nn.Module, layer: int, key: str) -> int:
    """The non-negative `feature_info` index of `layer`; a ConfigError naming `key` when it does not
    exist."""
    info = getattr(backbone, "feature_info", None)
    if not hasattr(backbone, "forward_intermediates") or not info:
        raise ConfigError(
            key,
            f"the backbone {type(backbone).__name__} gives no intermediate feature maps "
            "(timm's forward_intermediates / feature_info).",
            "choose a timm CNN or ViT backbone, e.g. backbone=resnet18.",
        )
    n = len(info)
    if not -n <= layer < n:
        names = ", ".join(f"{i}: {f.get('module', '?')}" for i, f in enumerate(info))
        raise ConfigError(
            key,
            f"layer {layer} does not exist; this backbone has {n} feature levels ({names}).",
            f"choose an index in [{-n}, {n - 1}]; -1 is the last map, -2 the one before.",
        )
    return layer % n


def layer_channels(backbone: nn.Module, layer: int) -> int:
    return int(backbone.feature_info[layer]["num_chs"])


def forward_with_maps(
    backbone: nn.Module, x: torch.Tensor, layers: Sequence[int]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One backbone pass returning (pooled features N x F, [map N x C x H x W for each of
    `layers`]).

    `layers` are resolved (non-negative) indices, in any order, repeats allowed. The pooled features
    are `forward_head(final, pre_logits=True)`, exactly what `backbone(x)` returns (tested).
    """
    wanted = sorted(set(layers))
    final, maps = backbone.forward_intermediates(x, indices=wanted)  # maps in ascending layer order
    by_layer = dict(zip(wanted, maps))
    return backbone.forward_head(final, pre_logits=True), [by_layer[i] for i in layers]


class ResidualEmbed1x1(nn.Module):
    """Per-location embedding x -> norm(W2 relu(BN(W1 x)) + S x), all maps 1x1 convolutions.

    The critics of DIM and AMDIM: local features and the global vector (as a 1x1 map) are embedded
    into the same `out_dim` space and scored by dot products. DIM's local/global networks (official
    code, `MI1x1ConvNet`) end in a LayerNorm over channels: `out_norm="layer"`. AMDIM's "fake RKHS"
    embeddings (the official code, `FakeRKHSConvNet`) end in a BatchNorm and start with the residual
    branch at zero: `out_norm="batch"`, `zero_init_residual=True`. In both the shortcut S starts as
    a noisy identity (weights ~U(-0.01, 0.01), ones on the diagonal) when out_dim >= in_dim, so the
    embedding starts close to the features themselves. Accepts N x C x H x W maps or N x C vectors
    (returned as N x out_dim).
    """

    def __init__(
        self, in_dim: int, out_dim: int, out_norm: str = "layer", zero_init_residual: bool = False
    ):
        super().__init__()
        if out_norm not in ("layer", "batch"):
            raise ValueError(f"out_norm must be 'layer' or 'batch', got {out_norm!r}")
        self.residual = nn.Sequential(
            nn.Conv2d(in_dim, out_dim, 1, bias=False),
            nn.BatchNorm2d(out_dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_dim, out_dim, 1, bias=out_norm == "layer"),
        )
        self.shortcut = nn.Conv2d(in_dim, out_dim, 1, bias=False)
        self.out_norm = out_norm
        self.norm = nn.LayerNorm(out_dim) if out_norm == "layer" else nn.BatchNorm2d(out_dim)
        with torch.no_grad():
            if out_dim >= in_dim:
                self.shortcut.weight.uniform_(-0.01, 0.01)
                self.shortcut.weight[:, :, 0, 0].fill_diagonal_(1.0)
            if zero_init_residual:
                self.residual[-1].weight.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vector = x.dim() == 2
        if vector:
            x = x[:, :, None, None]
        h = self.residual(x) + self.shortcut(x)
        if self.out_norm == "layer":  # LayerNorm over the channels of each location
            h = self.norm(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        else:
            h = self.norm(h)
        return h.flatten(1) if vector else h


def global_local_scores(g: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """Dot-product scores of N global embeddings (N x D) against the local embeddings of every image
    (N x D x H x W or N x D x L): out[i, k, l] = <g_i, local_k at location l>, N x N x L, in
    float32."""
    local = local.flatten(2).float()
    return torch.einsum("id,kdl->ikl", g.float(), local)


def random_locations(maps: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One uniformly drawn flat location index per image of N x D x H x W (or N x D x L) maps: N
    longs. AMDIM's 5-5 task takes its antecedent from one random location of the 5x5 map (official
    code)."""
    num_locations = maps[0, 0].numel()
    return torch.randint(num_locations, (maps.shape[0],), device=maps.device, generator=generator)
