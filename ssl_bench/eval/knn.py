"""Weighted cosine kNN classifier of InstDisc (Wu et al. 2018, sec. 3.4)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_predict(test_feats: torch.Tensor, bank_feats: torch.Tensor, bank_labels: torch.Tensor, num_classes: int,
                k: int = 200, temperature: float = 0.1, chunk: int = 512) -> torch.Tensor:
    """Class scores [N_test, num_classes] from the k nearest bank features by cosine similarity.

    Each neighbour votes for its class with weight exp(sim / temperature). The test set is processed in
    chunks so a 50k x 2048 bank never needs more than a chunk x 50k similarity matrix.
    """
    bank = F.normalize(bank_feats.float(), dim=1)
    k = min(k, bank.shape[0])
    scores = []
    for start in range(0, test_feats.shape[0], chunk):
        q = F.normalize(test_feats[start:start + chunk].float(), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)                               # chunk x k
        weights = (sim / temperature).exp()
        votes = torch.zeros(q.shape[0], num_classes, device=q.device)
        votes.scatter_add_(1, bank_labels[idx], weights)
        scores.append(votes)
    return torch.cat(scores)


@torch.no_grad()
def knn_accuracy(test_feats, test_labels, bank_feats, bank_labels, num_classes: int, k: int = 200,
                 temperature: float = 0.1) -> tuple[float, float]:
    """(top-1, top-5) in percent."""
    scores = knn_predict(test_feats, bank_feats, bank_labels, num_classes, k, temperature)
    topk = scores.topk(min(5, num_classes), dim=1).indices
    correct = topk == test_labels[:, None]
    return 100.0 * correct[:, 0].float().mean().item(), 100.0 * correct.any(1).float().mean().item()
