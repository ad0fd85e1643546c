"""Normalisation-layer swaps on a built network.

CPC v2 (Henaff et al. 2020, sec. 4.1) replaces the encoder's batch normalisation by layer
normalisation: batch statistics over the patches of a grid let each patch see the others, the rows
to be predicted among them.
"""

from __future__ import annotations

from torch import nn


def batchnorm_to_layernorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d by GroupNorm(1, C) (LayerNorm over C, H, W of each sample), keeping
    the affine parameters (e.g. timm's zero-initialised last gamma of each block)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            norm = nn.GroupNorm(1, child.num_features, eps=child.eps, affine=child.affine)
            if child.affine:
                norm.weight.data.copy_(child.weight.data)
                norm.bias.data.copy_(child.bias.data)
            setattr(module, name, norm)
        else:
            batchnorm_to_layernorm(child)
    return module
