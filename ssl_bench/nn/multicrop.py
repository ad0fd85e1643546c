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
cut into `splits` sub-batches (never fewer than 2 images each, `split_sizes`). Per view,
every sub-batch is a virtual device of its own; joint, device s takes the s-th sub-batch of every
view of a group, as each device of a DDP run concatenates its share of the views. When the modules
that `fn` runs are known (`fn` is an nn.Module, or `modules` names them), all the devices go through
`fn` in ONE call and only the BatchNorm layers tell the devices apart (`grouped_batchnorm`): every
conv / linear layer runs on the whole batch, which makes the emulation cheap on a CPU, where a
ResNet at a 16-image batch runs far below its throughput at 128. Otherwise (a plain callable, a
torch.compile'd module, SyncBatchNorm) each device is a call of its own, as before. Both compute the
same function in training mode (tests/test_split_bn.py); the BN running statistics differ: one
update per call from the mean of the devices' statistics (`grouped_batchnorm`), not one update per
device. `shuffled_key_forward` is MoCo's Shuffling BN for momentum-encoder keys (MoCo, SimCLR v2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

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


def split_sizes(batch: int, k: int) -> list[int]:
    """The sizes of the k consecutive sub-batches of the virtual devices, those of
    `torch.tensor_split(x, k)`: batch // k rows each, one more for the first batch % k. (Not
    `torch.chunk`'s, which cuts ceil(batch / k) rows and leaves the rest to the last: 10 rows in 4
    gave 3, 3, 3, 1, and a BatchNorm1d in training mode fails on 1 row.)"""
    return [batch // k + (i < batch % k) for i in range(k)]


def _grouped_bn_forward(bn: _BatchNorm, sizes: list[int], x: torch.Tensor) -> torch.Tensor:
    """`bn` in training mode with each group of rows (`sizes`, consecutive) normalised by its own
    batch statistics, as `len(sizes)` separate calls would; the running statistics take ONE
    update, from the mean of the groups' mean and (unbiased) variance, as the official MoCo CIFAR
    demo's SplitBatchNorm (facebookresearch/moco@f736491, colab/moco_cifar10_demo.ipynb). Eval mode:
    the plain layer (running statistics)."""
    if not bn.training:
        return type(bn).forward(bn, x)
    if x.shape[0] != sum(sizes):
        raise RuntimeError(
            f"grouped BatchNorm expects a batch of {sum(sizes)} rows (groups {sizes}), got "
            f"{x.shape[0]}: the network changes the batch size before this layer"
        )
    bn._check_input_dim(x)
    track = bn.track_running_stats and bn.running_mean is not None
    # the groups' statistics land in `stats` (momentum 1: the buffer becomes the statistic)
    stats = bn.running_mean.new_zeros(2, len(sizes), bn.num_features) if track else None
    out = [
        F.batch_norm(
            part,
            stats[0, g] if track else None,
            stats[1, g] if track else None,
            bn.weight,
            bn.bias,
            True,
            1.0,
            bn.eps,
        )
        for g, part in enumerate(x.split(sizes))
    ]
    if track:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
            bn.running_mean.lerp_(stats[0].mean(0), factor)
            bn.running_var.lerp_(stats[1].mean(0), factor)
    return torch.cat(out)


@contextmanager
def grouped_batchnorm(modules: Sequence[nn.Module], sizes: Sequence[int]) -> Iterator[None]:
    """Within the block, every BatchNorm layer of `modules` normalises the consecutive groups of
    rows of `sizes` apart (`_grouped_bn_forward`): one call of the network on the whole batch
    computes what one call per group would (the MoCo demo's SplitBatchNorm, with consecutive
    groups - `split_forward`'s sub-batches - where the demo's reshape interleaves them). The
    layers' parameters, buffers and state-dict keys do not change; their own forward comes back on
    exit."""
    layers = {id(m): m for mod in modules for m in mod.modules() if isinstance(m, _BatchNorm)}
    patched: list[_BatchNorm] = []
    try:
        for bn in layers.values():
            if "forward" in vars(bn):
                raise RuntimeError(f"{bn} is already grouped (nested grouped_batchnorm)")
            bn.forward = partial(_grouped_bn_forward, bn, list(sizes))  # shadows the class's
            patched.append(bn)
        yield
    finally:
        for bn in patched:
            del bn.forward


def _groupable(fn: Callable, modules: Sequence[nn.Module] | None) -> Sequence[nn.Module] | None:
    """The modules whose BN layers can be grouped for `fn`, or None (then one call per group):
    unknown modules, torch.compile'd ones (a traced graph would not see the grouping) and
    SyncBatchNorm (whose statistics span ranks) keep the calls apart."""
    if modules is None:
        modules = (fn,) if isinstance(fn, nn.Module) else None
    if modules is None:
        return None
    for mod in modules:
        if hasattr(mod, "_orig_mod") or any(isinstance(m, nn.SyncBatchNorm) for m in mod.modules()):
            return None
    return modules


def split_forward(
    fn: Callable[[torch.Tensor], Any],
    x: torch.Tensor,
    splits: int = 1,
    modules: Sequence[nn.Module] | None = None,
) -> Any:
    """fn(x) as `splits` consecutive sub-batches, each normalised by its own BatchNorm statistics:
    one call with grouped BN when the modules of `fn` are known (`fn` itself if a module, else
    `modules`), else one call per sub-batch (module docstring)."""
    k = num_splits(x.shape[0], splits)
    if k == 1:
        return fn(x)
    groupable = _groupable(fn, modules)
    if groupable is None:
        return _cat([fn(c) for c in x.split(split_sizes(x.shape[0], k))])
    with grouped_batchnorm(groupable, split_sizes(x.shape[0], k)):
        return fn(x)


def _joint_devices(
    fn: Callable[[torch.Tensor], Any],
    views: Sequence[torch.Tensor],
    k: int,
    modules: Sequence[nn.Module] | None,
) -> list[Any]:
    """`fn` over views of one shape, virtual device s holding the s-th sub-batch of every view;
    one output per view."""
    chunks = [v.split(split_sizes(v.shape[0], k)) for v in views]
    devices = [[c[s] for c in chunks] for s in range(k)]  # device s: its share of each view
    sizes = [p.shape[0] for parts in devices for p in parts]
    groupable = _groupable(fn, modules) if len(devices) > 1 else None
    if groupable is not None:  # one call: the devices one after the other, BN grouped by device
        with grouped_batchnorm(groupable, [sum(p.shape[0] for p in parts) for parts in devices]):
            pieces = _split(fn(torch.cat([p for parts in devices for p in parts])), sizes)
    else:
        pieces = []
        for parts in devices:
            res = fn(torch.cat(parts) if len(parts) > 1 else parts[0])
            pieces += _split(res, [p.shape[0] for p in parts])
    n = len(views)
    return [_cat(pieces[i::n]) for i in range(n)]  # pieces in device-major order


def forward_views(
    fn: Callable[[torch.Tensor], Any],
    views: Sequence[torch.Tensor],
    joint: bool,
    splits: int = 1,
    modules: Sequence[nn.Module] | None = None,
) -> list[Any]:
    """`fn` over every view, grouped into calls per view or jointly (module docstring); one output
    per view, in view order. `fn` may return a tensor or a tuple of tensors (batch first);
    `modules`: those `fn` runs, when it is not a module itself (`split_forward`)."""
    if not views:
        raise ValueError("forward_views needs at least one view")
    k = num_splits(views[0].shape[0], splits)
    if not joint:
        return [split_forward(fn, v, k, modules) for v in views]
    out: list[Any] = []
    for a, b in resolution_groups(views):  # the views of a group share their shape
        out += _joint_devices(fn, views[a:b], k, modules)
    return out


@torch.no_grad()
def shuffled_key_forward(
    encoder: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    bn_splits: int = 1,
    modules: Sequence[nn.Module] | None = None,
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
    Sub-batches never fall below 2 images; `modules` (those `encoder` runs) let them go through
    the encoder in one call (`split_forward`). Returns the keys in the order of `x`.
    """

    def encode(batch):
        return split_forward(encoder, batch, bn_splits, modules)

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
