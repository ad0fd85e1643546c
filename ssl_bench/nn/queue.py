"""MoCo's queue of negative keys (nn/memory_bank.py holds InstDisc's and CMC's memory bank).

Its state is registered buffers (they travel with `.to(device)` and are saved in checkpoints),
updated without gradient. Under DDP every rank gathers the whole global batch before writing, so the
queue stays identical on all ranks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_bench.nn.dist import gather_no_grad


class FeatureQueue(nn.Module):
    """FIFO ring buffer of `size` L2-normalised `dim`-d keys (MoCo, He et al. 2019, sec. 3.2).

    `queue` is KxD (row = one key), initialised with random unit vectors like the official code;
    `ptr` is the row the next key goes to. A batch that does not divide K wraps around the end.
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"FeatureQueue needs size >= 1 and dim >= 1, got {size}, {dim}")
        self.size, self.dim = int(size), int(dim)
        self.register_buffer("queue", F.normalize(torch.randn(self.size, self.dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write `keys` (NxD, this rank's; gathered from all ranks first) over the oldest
        entries."""
        keys = gather_no_grad(keys.detach()).to(self.queue.dtype)
        n = keys.shape[0]
        if n >= self.size:  # more keys than slots: only the newest K survive
            keys, n = keys[-self.size :], self.size
        rows = (self.ptr + torch.arange(n, device=self.queue.device)) % self.size
        self.queue.index_copy_(0, rows, keys)
        self.ptr.copy_((self.ptr + n) % self.size)

    def forward(self) -> torch.Tensor:
        """A detached copy of the current keys, KxD (a copy, so enqueueing before backward is
        safe)."""
        return self.queue.detach().clone()
