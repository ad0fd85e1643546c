"""Views through a network, grouped into calls as a method's BatchNorm statistics require.

Views arrive as a list of [B, C, H, W] tensors, large crops first (`parse_pipelines` sorts them). A
network with BatchNorm normalises each call's batch by that batch's statistics, so how the views are
grouped into calls is part of a method's math, and must not depend on the device:

* per view (`joint=False`): one call per view, BN statistics of one view at a time (the official
  BYOL, SimSiam, MoCo and AMDIM code);
* joint (`joint=True`): consecutive views of one shape in one call, BN over all of them - SwAV's
  multi-crop (Caron et al. 2020, sec. 3.2; 2 calls for 2x32 + 6x16 crops) and the official SimCLR
  code, which concatenates its two views.

`splits` simulates that many devices on one, as the MoCo CIFAR demo's SplitBatchNorm: each view is
cut into `splits` sub-batches (never fewer than 2 images each). Per view, every sub-batch is a call
of its own; joint, call s takes the s-th sub-batch of every view of a group, as each device of a DDP
run concatenates its share of the views. `shuffled_key_forward` is MoCo's Shuffling BN for
momentum-encoder keys (MoCo, SimCLR v2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist

from ssl_bench.nn.dist import gather_no_grad, world

#: values of a method's `bn_stats`: one call per view, or the views of one resolution in one call
BN_STATS = ("per_view", "joint")


def resolution_groups(views: Sequence[torch.Tensor]) -> list[tuple[int, int]]:
    """[start, end) ranges of consecutive views of the same shape (batch and resolution)."""
    groups: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(views) + 1):
        if i == len(views) or views[i].shape != views[start].shape:
            groups.append((start, i))
            start = i
    return groups


def _cat(outs: list[Any]) -> Any:
    """Concatenate along the batch a list of outputs, each a tensor or a (nested) tuple / list of
    tensors."""
    if len(outs) == 1:
        return outs[0]
    if isinstance(outs[0], torch.Tensor):
        return torch.cat(outs)
    return tuple(_cat([o[i] for o in outs]) for i in range(len(outs[0])))


def _split(out: Any, sizes: list[int]) -> list[Any]:
    """The inverse of `_cat`: one output per batch slice of `sizes`."""
    if len(sizes) == 1:
        return [out]
    if isinstance(out, torch.Tensor):
        return list(out.split(sizes))
    parts = [_split(o, sizes) for o in out]
    return [tuple(p[i] for p in parts) for i in range(len(sizes))]


def num_splits(batch: int, splits: int) -> int:
    """`splits` sub-batches, fewer if a sub-batch would fall below 2 images (BatchNorm needs 2)."""
    return max(1, min(int(splits), batch // 2))


def split_forward(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, splits: int = 1) -> Any:
    """fn(x) as `splits` consecutive sub-batches, each normalised by its own BatchNorm
    statistics."""
    k = num_splits(x.shape[0], splits)
    return fn(x) if k == 1 else _cat([fn(c) for c in x.chunk(k)])


def forward_views(
    fn: Callable[[torch.Tensor], Any], views: Sequence[torch.Tensor], joint: bool, splits: int = 1
) -> list[Any]:
    """`fn` over every view, grouped into calls per view or jointly (module docstring); one output
    per view, in view order. `fn` may return a tensor or a tuple of tensors (batch first)."""
    if not views:
        raise ValueError("forward_views needs at least one view")
    k = num_splits(views[0].shape[0], splits)
    if not joint:
        return [split_forward(fn, v, k) for v in views]
    out: list[Any] = []
    for a, b in resolution_groups(views):
        chunks = [v.chunk(k) for v in views[a:b]]  # the views of a group share their shape
        per_view: list[list[Any]] = [[] for _ in chunks]
        for s in range(len(chunks[0])):
            parts = [c[s] for c in chunks]  # virtual device s: its share of each view
            res = fn(torch.cat(parts) if len(parts) > 1 else parts[0])
            for i, piece in enumerate(_split(res, [p.shape[0] for p in parts])):
                per_view[i].append(piece)
        out += [_cat(p) for p in per_view]
    return out


@torch.no_grad()
def shuffled_key_forward(
    encoder: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, bn_splits: int = 1
) -> torch.Tensor:
    """Keys whose BatchNorm statistics cannot reveal which key is a query's positive (MoCo sec.
    3.3).

    Under DDP this is the paper's Shuffling BN: the key images of all ranks are gathered, permuted
    by a random permutation broadcast from rank 0, each rank encodes its slice of the shuffled
    batch, and the keys are gathered back and un-shuffled. On one device the same effect comes from
    `bn_splits` virtual devices: the batch is permuted and encoded as `bn_splits` sub-batches, each
    normalised by its own BN statistics (like the official CIFAR demo's SplitBatchNorm, bn_splits=8;
    1 = one BN over the batch). The queries are encoded in the same number of (unshuffled)
    sub-batches (`forward_views`), as in the demo, where SplitBatchNorm sits in both encoders (with
    one BN over the whole batch for the queries, a query and its key share this batch's statistics
    while the queue's keys do not). Note, measured on short CPU runs: this alone does not stop the
    other shortcut of a fast key encoder (m=0.9), the whole embedding drifting away from the stale
    queue (acc 100% by step 14, z_std 0.035 -> 0.01); BN in the head does (MoCo's `proj_norm`).
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
