"""The weighted cosine kNN classifier of InstDisc (Wu et al. 2018, sec. 3.4): one function, one
metric.

`knn_predict` / `knn_accuracy` score queries against a bank of labelled features. `WeightedKNN` is
the same classifier as a torchmetrics Metric: it accumulates bank and query features across batches
(and, under DDP, across ranks when computed), so the online kNN of a validation epoch (SSLMethod)
and the offline `python -m ssl_bench.eval mode=knn` are the one piece of code and give the same
numbers. `select_knn` chooses (k, T) on a held-out part of the training split, never on the test
split.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

#: the most cosine similarities `knn_predict` holds at once (float32: 256 MiB): a 60k bank is scored
#: in blocks of ~1,100 queries, a 1.28M one (ImageNet) in blocks of 52
SIMILARITY_BLOCK = 2**26


@torch.no_grad()
def knn_predict(
    test_feats: torch.Tensor,
    bank_feats: torch.Tensor,
    bank_labels: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk: int | None = None,
) -> torch.Tensor:
    """Class scores [N_test, num_classes] from the k nearest bank features by cosine similarity.

    Each neighbour votes for its class with weight exp(sim / temperature). The queries are scored in
    blocks of `chunk` rows (default: as many as keep the block's similarity matrix within
    SIMILARITY_BLOCK entries), so memory stays bounded whatever the bank's size and a small bank
    takes few large matrix products. The similarities are float32 whatever the features' dtype:
    in bf16 (8-bit mantissa, steps of 2^-8 near 1) neighbours would tie or swap and the weights at
    T=0.1 move by up to ~4%, more than the rounding of the features themselves.
    """
    bank = F.normalize(bank_feats.float(), dim=1)
    k = min(k, bank.shape[0])
    rows = int(chunk) if chunk else max(1, SIMILARITY_BLOCK // max(1, bank.shape[0]))
    scores = torch.zeros(test_feats.shape[0], num_classes, device=bank.device)
    # one similarity block, written over for every block of queries: a fresh one a block cost as
    # much as the product itself on a 2-core CPU (the OS maps and zeroes its pages each time:
    # 10k queries x 60k bank, 2.6 s -> 1.9 s)
    block = torch.empty(min(rows, test_feats.shape[0]), bank.shape[0], device=bank.device)
    for start in range(0, test_feats.shape[0], rows):
        q = F.normalize(test_feats[start : start + rows].float(), dim=1)
        sim = torch.mm(q, bank.T, out=block[: q.shape[0]])
        sim, idx = sim.topk(k, dim=1)  # rows x k
        scores[start : start + rows].scatter_add_(1, bank_labels[idx], sim.div_(temperature).exp_())
    return scores


def topk_hits(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[N, 2] booleans: whether each label is the top-scored class, and whether it is among the top
    5 (among all classes when there are fewer than 5)."""
    top = scores.topk(min(5, scores.shape[1]), dim=1).indices
    hit = top == labels[:, None]
    return torch.stack([hit[:, 0], hit.any(1)], dim=1)


def _percent(scores: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    hits = topk_hits(scores, labels).float()
    return 100.0 * hits[:, 0].mean().item(), 100.0 * hits[:, 1].mean().item()


@torch.no_grad()
def knn_accuracy(
    test_feats,
    test_labels,
    bank_feats,
    bank_labels,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
) -> tuple[float, float]:
    """(top-1, top-5) in percent."""
    scores = knn_predict(test_feats, bank_feats, bank_labels, num_classes, k, temperature)
    return _percent(scores, test_labels)


class WeightedKNN(Metric):
    """`knn_accuracy` over features accumulated batch by batch: `update(feats, labels, bank=True)`
    adds labelled bank features (the training split), `update(feats, labels, bank=False)` queries
    (the test split); `compute()` returns (top-1, top-5) in percent as Python floats, `reset()`
    empties both.

    Under torch.distributed, `compute` gathers both from every rank in rank order (the states are
    concatenated, as Lightning's `all_gather(...).flatten(0, 1)` did before), so every rank scores
    the whole test split against the whole bank. The states are not persistent: a checkpoint holds
    none of them. Call `compute` only when `ready` (both parts seen on this rank).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int, k: int = 200, temperature: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        if k < 1 or temperature <= 0:
            raise ValueError(f"kNN needs k >= 1 and temperature > 0 (got k={k}, t={temperature}).")
        self.num_classes, self.k, self.temperature = int(num_classes), int(k), float(temperature)
        for name in ("bank_feats", "bank_labels", "query_feats", "query_labels"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, feats: torch.Tensor, labels: torch.Tensor, bank: bool) -> None:
        """Add one batch: features [B, D] and labels [B], to the bank or to the queries."""
        part = "bank" if bank else "query"
        getattr(self, f"{part}_feats").append(feats.detach())
        getattr(self, f"{part}_labels").append(labels.detach())

    @property
    def ready(self) -> bool:
        """Whether this rank holds bank and query features (an epoch without either scores
        nothing)."""
        return bool(self.bank_feats) and bool(self.query_feats)

    def compute(self) -> tuple[float, float]:
        bank, bank_y, query, query_y = (
            dim_zero_cat(s)
            for s in (self.bank_feats, self.bank_labels, self.query_feats, self.query_labels)
        )
        return knn_accuracy(
            query, query_y, bank, bank_y, self.num_classes, self.k, self.temperature
        )


@torch.no_grad()
def select_knn(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    num_classes: int,
    ks,
    ts,
    fit: torch.Tensor,
    held_out: torch.Tensor,
) -> tuple[dict, list[dict]]:
    """Choose (k, T) on the TRAINING split only: the bank is its `fit` part, the queries its
    `held_out` part (ssl_bench.eval.splits.stratified_holdout). Returns (the chosen pair, every
    pair's held-out accuracy). Ties go to the first pair of the grid (ks outer, ts inner). No test
    feature or label is an argument."""
    bank, bank_y = train_feats[fit], train_labels[fit]
    queries, query_y = train_feats[held_out], train_labels[held_out]
    grid = []
    for k in ks:
        for t in ts:
            scores = knn_predict(queries, bank, bank_y, num_classes, int(k), float(t))
            top1, top5 = _percent(scores, query_y)
            grid.append({"k": int(k), "t": float(t), "heldout_top1": top1, "heldout_top5": top5})
    best = max(grid, key=lambda r: r["heldout_top1"])  # max keeps the first of equal values
    return {"k": best["k"], "t": best["t"]}, grid
