"""Negative memories: MoCo's queue of keys and InstDisc's memory bank of one feature per image.

Both hold registered buffers (so they travel with `.to(device)` and are saved in checkpoints) and are
updated without gradient. Under DDP every rank gathers the whole global batch before writing, so the
memories stay identical on all ranks.
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
    def enqueue(self, keys: torch.Tensor, gather: bool = True) -> None:
        """Write `keys` (NxD, this rank's; gathered from all ranks first) over the oldest entries."""
        keys = gather_no_grad(keys.detach()) if gather else keys.detach()
        keys = keys.to(self.queue.dtype)
        n = keys.shape[0]
        if n >= self.size:  # more keys than slots: only the newest K survive
            keys, n = keys[-self.size :], self.size
        rows = (self.ptr + torch.arange(n, device=self.queue.device)) % self.size
        self.queue.index_copy_(0, rows, keys)
        self.ptr.copy_((self.ptr + n) % self.size)

    def forward(self) -> torch.Tensor:
        """A detached copy of the current keys, KxD (a copy, so enqueueing before backward is safe)."""
        return self.queue.detach().clone()


def bank_rows(bank_size: int | None, data) -> int:
    """Rows of a memory bank with one row per pretraining image: `bank_size`, or the pretraining set's size
    (`data.num_samples`, a DataInfo) when it is null; 0 when neither is known (the method then says so when
    it first trains). A `bank_size` that disagrees with a known set size is a ConfigError."""
    from ssl_bench.errors import ConfigError

    n = int(getattr(data, "num_samples", 0) or 0)
    if bank_size is None:
        return n
    if n and bank_size != n:
        raise ConfigError(
            "method.bank_size",
            f"is {bank_size} but the pretraining set has {n} images (the bank needs one row per image).",
            "set method.bank_size=null.",
        )
    return int(bank_size)


class MemoryBank(nn.Module):
    """One L2-normalised feature per training image (InstDisc, Wu et al. 2018, sec. 3.2).

    `bank` is NxD, initialised with random unit vectors; `visited` marks the rows written at least once.
    `update(index, feats)` moves only the rows of the batch's samples: v_i <- normalize(m * v_i + (1 - m) * f_i)
    (the official code's momentum 0.5 update, which plays the role of the paper's proximal term). With
    `copy_first_visit` a row's first write stores normalize(f_i) itself instead: the official lemniscate code
    mixes the first feature with the random init too, which washes out over a long ImageNet run, but in a short
    run half-random rows are poor positives and negatives and bias the NCE normaliser (see InstDisc).
    """

    def __init__(
        self, num_samples: int, dim: int, momentum: float = 0.5, copy_first_visit: bool = False
    ):
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"MemoryBank momentum must be in [0, 1], got {momentum}")
        self.dim, self.momentum, self.copy_first_visit = (
            int(dim),
            float(momentum),
            bool(copy_first_visit),
        )
        self.register_buffer("bank", torch.zeros(0, self.dim))
        self.register_buffer("visited", torch.zeros(0, dtype=torch.bool))
        self.resize(num_samples)

    @property
    def num_samples(self) -> int:
        return self.bank.shape[0]

    def resize(self, num_samples: int) -> None:
        """(Re)allocate `num_samples` random unit rows, none visited (used when the dataset size is known late)."""
        device = self.bank.device
        bank = F.normalize(torch.randn(int(num_samples), self.dim, device=device), dim=1)
        self.bank = bank if num_samples > 0 else torch.zeros(0, self.dim, device=device)
        self.visited = torch.zeros(max(int(num_samples), 0), dtype=torch.bool, device=device)

    def all_visited(self) -> bool:
        """Whether every row holds a feature (a host sync: call it only until it first returns True)."""
        return self.num_samples > 0 and bool(self.visited.all())

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        """The stored rows of `index` (detached), len(index) x D."""
        return self.bank.detach()[index]

    @torch.no_grad()
    def update(self, index: torch.Tensor, feats: torch.Tensor, gather: bool = True) -> None:
        if gather:
            index, feats = gather_no_grad(index), gather_no_grad(feats.detach())
        feats = F.normalize(feats.detach().to(self.bank.dtype), dim=1)
        mixed = self.bank[index] * self.momentum + feats * (1.0 - self.momentum)
        if self.copy_first_visit:  # first visit: the feature itself
            mixed = torch.where(self.visited[index].unsqueeze(1), mixed, feats)
        self.bank.index_copy_(0, index, F.normalize(mixed, dim=1))
        self.visited[index] = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a bank allocated before the dataset size was known adopts the checkpoint's shape
        saved = state_dict.get(prefix + "bank")
        if saved is not None and saved.shape != self.bank.shape:
            self.bank = torch.empty_like(saved, device=self.bank.device)
            self.visited = torch.zeros(saved.shape[0], dtype=torch.bool, device=self.bank.device)
        if (
            saved is not None and prefix + "visited" not in state_dict
        ):  # a checkpoint from before `visited`
            state_dict[prefix + "visited"] = torch.ones(saved.shape[0], dtype=torch.bool)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
