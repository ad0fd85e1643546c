"""Memory banks of one feature per training image (InstDisc, CMC) and the memory side of their NCE.

`MemoryBank` holds registered buffers (they travel with `.to(device)` and are saved in checkpoints),
updated without gradient; under DDP every rank gathers the whole global batch before writing, so the
banks stay identical on all ranks. `NCEMemory` is what InstDisc and CMC share around their banks:
sizing them from the data, drawing the noise rows, and when the NCE normaliser Z may be frozen.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssl_bench.errors import ConfigError
from ssl_bench.nn.dist import gather_no_grad


def bank_rows(bank_size: int | None, num_samples: int) -> int:
    """Rows of a memory bank with one row per pretraining image: `bank_size`, or the pretraining
    set's size `num_samples` (DataInfo.num_samples) when it is null; 0 when neither is known (the
    method then says so when it first trains). A `bank_size` that disagrees with a known set size is
    a ConfigError."""
    n = int(num_samples or 0)
    if bank_size is None:
        return n
    if n and bank_size != n:
        raise ConfigError(
            "method.bank_size",
            f"is {bank_size} but the pretraining set has {n} images (the bank needs one row per "
            "image).",
            "set method.bank_size=null.",
        )
    return int(bank_size)


class MemoryBank(nn.Module):
    """One L2-normalised feature per training image (InstDisc, Wu et al. 2018, sec. 3.2).

    `bank` is NxD, initialised with random unit vectors; `visited` marks the rows written at least
    once. `update(index, feats)` moves only the rows of the batch's samples: v_i <- normalize(m *
    v_i + (1 - m) * f_i) (the official code's momentum 0.5 update, which plays the role of the
    paper's proximal term). With `copy_first_visit` a row's first write stores normalize(f_i) itself
    instead: the official lemniscate code mixes the first feature with the random init too, which
    washes out over a long ImageNet run, but in a short run half-random rows are poor positives and
    negatives and bias the NCE normaliser (see InstDisc).
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
        """(Re)allocate `num_samples` random unit rows, none visited (used when the dataset size is
        known late)."""
        device = self.bank.device
        bank = F.normalize(torch.randn(int(num_samples), self.dim, device=device), dim=1)
        self.bank = bank if num_samples > 0 else torch.zeros(0, self.dim, device=device)
        self.visited = torch.zeros(max(int(num_samples), 0), dtype=torch.bool, device=device)

    def all_visited(self) -> bool:
        """Whether every row holds a feature (a host sync: call it only until it first returns
        True)."""
        return self.num_samples > 0 and bool(self.visited.all())

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        """The stored rows of `index` (detached), len(index) x D."""
        return self.bank.detach()[index]

    @torch.no_grad()
    def update(self, index: torch.Tensor, feats: torch.Tensor) -> None:
        """Move the rows of `index` towards `feats` (this rank's; gathered from all ranks first)."""
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
        # a checkpoint from before `visited`
        if saved is not None and prefix + "visited" not in state_dict:
            state_dict[prefix + "visited"] = torch.ones(saved.shape[0], dtype=torch.bool)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class NCEMemory:
    """The banks of an NCE over memory rows (InstDisc; CMC: one bank per view) and their shared
    logic.

    * Sizing: each bank has one row per pretraining image (`bank_rows`), and a row's first write
      stores the feature itself (`copy_first_visit`).
    * `read(index)`: the batch's rows, `num_negatives` noise rows drawn uniformly (P_n = 1/n; one
      draw shared by the banks and the batch) and which rows hold a feature yet.
    * `z_frozen(z)`: the normaliser Z is re-estimated per batch (Wu et al. 2018, eq. 6) until every
      row of every bank was written once and every Z estimated; then it is fixed (InstDisc's
      docstring says why). The Z buffer is the method's, so it travels in its checkpoint; after a
      restore this is re-derived.

    The banks are built here and registered by the method as its own submodules (checkpoint keys
    `bank.*` / `banks.<v>.*`); this object keeps references only.
    """

    def __init__(
        self,
        num_banks: int,
        bank_size: int | None,
        num_samples: int,
        dim: int,
        momentum: float,
        num_negatives: int,
    ):
        rows = bank_rows(bank_size, num_samples)
        self.banks = [
            MemoryBank(rows, dim, momentum, copy_first_visit=True) for _ in range(num_banks)
        ]
        self.num_negatives = int(num_negatives)
        self._frozen = False

    @property
    def num_samples(self) -> int:
        return self.banks[0].num_samples

    def read(
        self, index: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """(positives N x D, noise rows M x D, written N bools), one of each per bank."""
        n = self.num_samples
        if n == 0:
            raise ConfigError(
                "method.bank_size",
                "the memory bank size is unknown (no DataInfo with num_samples was given).",
                "set method.bank_size to the number of training images.",
            )
        noise = torch.randint(0, n, (self.num_negatives,), device=self.banks[0].bank.device)
        positives = [bank(index) for bank in self.banks]
        noise_rows = [bank(noise) for bank in self.banks]
        written = [bank.visited[index] for bank in self.banks]
        return positives, noise_rows, written

    def z_frozen(self, z: torch.Tensor) -> bool:
        """Whether the normalisers `z` (the method's buffer, < 0 until estimated) are final. A host
        sync per call until it first returns True (about the end of the first epoch), none after."""
        if not self._frozen:
            self._frozen = all(b.all_visited() for b in self.banks) and bool((z > 0).all())
        return self._frozen

    def write(self, index: torch.Tensor, feats: Sequence[torch.Tensor]) -> None:
        """Move only the batch's rows of each bank towards its features (one N x D per bank)."""
        for bank, f in zip(self.banks, feats):
            bank.update(index, f.detach())
