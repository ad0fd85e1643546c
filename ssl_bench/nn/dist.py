"""Cross-device helpers. All of them are the identity on one process."""

from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world_size); (0, 1) when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from every rank along dim 0, keeping the autograd graph.

    torch.distributed.nn's all_gather sums the incoming gradients across ranks in backward, so each
    rank receives the gradient of the *global* loss for its own samples; DDP's gradient averaging
    then yields exactly the single-process gradient of the mean loss over the global batch.
    """
    rank, size = world()
    if size == 1:
        return x
    from torch.distributed import nn as dist_nn

    return torch.cat(dist_nn.functional.all_gather(x), dim=0)


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    rank, size = world()
    if size == 1:
        return x
    out = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out, dim=0)


def all_reduce_with_grad(x: torch.Tensor) -> torch.Tensor:
    """The sum of `x` over every rank, keeping the autograd graph.

    torch.distributed.nn's all_reduce sums the incoming gradients across ranks in backward: when
    every rank computes the same loss from the summed tensor, each rank gets world_size x the
    gradient of that loss for its own summand, and DDP's gradient averaging divides it back to the
    single-process gradient of the loss over the global batch (Barlow Twins' cross-correlation).
    """
    rank, size = world()
    if size == 1:
        return x
    from torch.distributed import nn as dist_nn

    return dist_nn.functional.all_reduce(x)
