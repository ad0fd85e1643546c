"""The sampler every ssl_bench DataLoader uses: seeded per epoch, sharded per rank, resumable
mid-epoch.

Why not `RandomSampler` + Lightning's `DistributedSampler`: both draw from generators that a
checkpoint does not capture, so a run resumed in the middle of an epoch would see a different order
(and skip nothing). Here epoch `e` is always the permutation of `torch.Generator().manual_seed(seed
+ e)`, every rank takes its stride of it, and `skip_next(epoch, n)` drops the first `n` indices of
that epoch once - what the datamodule asks for when it restores a mid-epoch checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

_SAMPLER_STREAM = 0x5EED_0F_DA7A


class EpochSampler(Sampler[int]):
    def __init__(
        self,
        size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.size, self.shuffle, self.seed = int(size), bool(shuffle), int(seed)
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 0
        self._skip: tuple[int, int] | None = None  # (epoch, indices to drop)
        # drop_last: every rank gets floor(size / world); else the tail is padded from the start
        # (as DistributedSampler does) so ranks stay in step
        self.per_rank = self.size // world_size if drop_last else math.ceil(self.size / world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def skip_next(self, epoch: int, n: int) -> None:
        """Drop the first `n` indices of `epoch` (once) and make it the current epoch."""
        self.epoch = int(epoch)
        self._skip = (int(epoch), int(n)) if n > 0 else None

    def order(self, epoch: int) -> torch.Tensor:
        """This rank's indices for `epoch`, before any skip."""
        if self.shuffle:
            # a stream of its own: seeded apart from the view RNG (which starts from `seed` itself)
            gen = torch.Generator().manual_seed(_SAMPLER_STREAM + 1_000_003 * self.seed + epoch)
            perm = torch.randperm(self.size, generator=gen)
        else:
            perm = torch.arange(self.size)
        total = self.per_rank * self.world_size
        if total > self.size:
            perm = torch.cat([perm, perm[: total - self.size]])
        return perm[:total][self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        idx = self.order(self.epoch)
        if self._skip is not None and self._skip[0] == self.epoch:
            idx = idx[self._skip[1] :]
        self._skip = None
        return iter(idx.tolist())

    def __len__(self) -> int:
        return self.per_rank
