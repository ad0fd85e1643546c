"""Stratified subsets: a fraction or a number of the images, with the labels' proportions kept."""

from __future__ import annotations

import torch

from ssl_bench.errors import ConfigError


def stratified_subset(
    labels: torch.Tensor, fraction: float | None, limit: int | None, seed: int, key: str = "data"
) -> torch.Tensor:
    """Sorted indices of a subset with the same per-label proportions as `labels`.

    The size is round(fraction * N), capped by `limit` (each optional; neither -> everything).
    Label -1 (unlabelled) is one more group, so unlabelled samples are subsampled uniformly.
    Per-group counts use largest remainders (total exact); within a group the choice is a random
    permutation seeded by (seed, label), so it is deterministic and independent of other groups.
    """
    labels = torch.as_tensor(labels).to(torch.int64).flatten()
    n = labels.numel()
    if fraction is not None:
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, (int, float))
            or not 0 < fraction <= 1
        ):
            raise ConfigError(
                f"{key}.fraction",
                f"must be a number in (0, 1], got {fraction!r}.",
                f"set e.g. {key}.fraction=0.1, or null for all the data.",
            )
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(
                f"{key}.limit",
                f"must be a positive integer, got {limit!r}.",
                f"set e.g. {key}.limit=1000, or null for all the data.",
            )
    target = n
    if fraction is not None:
        target = max(1, round(fraction * n))
    if limit is not None:
        target = min(target, limit)
    if target >= n:
        return torch.arange(n)

    groups, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * target / n
    quota = exact.floor().long()
    short = target - int(quota.sum())
    if short > 0:  # largest remainders first, ties by group order (stable sort)
        order = torch.sort(exact - quota, descending=True, stable=True).indices
        quota[order[:short]] += 1
    chosen = []
    for group, q in zip(groups.tolist(), quota.tolist()):
        if q == 0:
            continue
        members = (labels == group).nonzero().squeeze(1)
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + group + 7)
        chosen.append(members[torch.randperm(members.numel(), generator=g)[:q]])
    return torch.sort(torch.cat(chosen)).values
