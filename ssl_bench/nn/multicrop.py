"""Multi-crop forward (Caron et al. 2020, sec. 3.2): one network call per crop resolution.

Views arrive as a list of [B, C, H, W] tensors, large crops first (`parse_pipelines` sorts them). Views of
the same size are concatenated into one batch, so the backbone runs once per resolution (2 calls for
2x32 + 6x16) instead of once per view; BatchNorm then sees all same-size crops together, as in SwAV.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def resolution_groups(views: Sequence[torch.Tensor]) -> list[tuple[int, int]]:
    """[start, end) ranges of consecutive views that share a spatial size."""
    groups: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(views) + 1):
        if i == len(views) or views[i].shape[-2:] != views[start].shape[-2:]:
            groups.append((start, i))
            start = i
    return groups


def multicrop_forward(fn: Callable[[torch.Tensor], torch.Tensor], views: Sequence[torch.Tensor]) -> torch.Tensor:
    """`fn` over every view, one call per resolution group; returns (V*B) x ... in view order."""
    if not views:
        raise ValueError("multicrop_forward needs at least one view")
    outs = [fn(torch.cat(list(views[a:b])) if b - a > 1 else views[a]) for a, b in resolution_groups(views)]
    return outs[0] if len(outs) == 1 else torch.cat(outs)
