"""The weighted kNN classifier. (The optimizer and schedule tests are in tests/test_optim.py.)"""

import math

import torch

from ssl_bench.eval.knn import knn_accuracy, knn_predict


def knn_bruteforce(test, bank, bank_y, num_classes, k, t):
    out = torch.zeros(test.shape[0], num_classes)
    for i, q in enumerate(test):
        sims = torch.tensor(
            [torch.nn.functional.cosine_similarity(q, b, dim=0).item() for b in bank]
        )
        order = sorted(range(len(bank)), key=lambda j: -sims[j])[:k]
        for j in order:
            out[i, bank_y[j]] += math.exp(sims[j] / t)
    return out


def test_knn_matches_bruteforce():
    torch.manual_seed(0)
    bank, test = torch.randn(60, 8), torch.randn(15, 8)
    bank_y = torch.randint(0, 4, (60,))
    ours = knn_predict(test, bank, bank_y, 4, k=7, temperature=0.1, chunk=4)
    ref = knn_bruteforce(test, bank, bank_y, 4, 7, 0.1)
    assert torch.allclose(ours, ref, rtol=1e-4)


def test_knn_accuracy_on_separable_clusters():
    torch.manual_seed(0)
    centers = torch.randn(3, 16) * 5
    y = torch.arange(3).repeat(40)
    feats = centers[y] + torch.randn(120, 16) * 0.1
    top1, top5 = knn_accuracy(feats[:60], y[:60], feats[60:], y[60:], 3, k=10)
    assert top1 == 100.0 and top5 == 100.0
