"""The weighted kNN of InstDisc (ssl_bench.eval.knn): the function against a brute-force
transcription of Wu et al. 2018 sec. 3.4, and the (k, T) choice on training images."""

from __future__ import annotations

import pytest
import torch

from ssl_bench.eval.knn import knn_accuracy, knn_predict, select_knn


def brute_force_knn(test, bank, bank_y, classes, k, t):
    """Per query: cosine similarity to every bank feature, the k most similar vote for their class
    with weight exp(sim / t)."""
    out = []
    for q in test:
        sims = torch.tensor([float(torch.dot(q / q.norm(), b / b.norm())) for b in bank])
        order = sorted(range(len(bank)), key=lambda i: -sims[i])[:k]
        votes = [0.0] * classes
        for i in order:
            votes[int(bank_y[i])] += float(torch.exp(sims[i] / t))
        out.append(votes)
    return torch.tensor(out)


def test_knn_matches_bruteforce():
    torch.manual_seed(0)
    bank, test = torch.randn(60, 8), torch.randn(15, 8)
    bank_y = torch.randint(0, 4, (60,))
    ours = knn_predict(test, bank, bank_y, 4, k=7, temperature=0.1, chunk=4)
    ref = brute_force_knn(test, bank, bank_y, 4, 7, 0.1)
    assert torch.allclose(ours, ref, rtol=1e-4)


@pytest.mark.parametrize("k,t", [(1, 0.1), (5, 0.07), (20, 0.5)])
def test_knn_matches_brute_force(k, t):
    g = torch.Generator().manual_seed(k)
    bank, test = torch.randn(60, 8, generator=g), torch.randn(25, 8, generator=g)
    bank_y = torch.randint(0, 4, (60,), generator=g)
    test_y = torch.randint(0, 4, (25,), generator=g)
    ref = brute_force_knn(test, bank, bank_y, 4, k, t)
    got = knn_predict(test, bank, bank_y, 4, k=k, temperature=t, chunk=7)
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-5)
    top1, top5 = knn_accuracy(test, test_y, bank, bank_y, 4, k, t)
    assert top1 == pytest.approx(100.0 * (ref.argmax(1) == test_y).float().mean().item())
    assert top5 == 100.0  # 4 classes: the top-5 holds every class


def test_knn_accuracy_on_separable_clusters():
    torch.manual_seed(0)
    centers = torch.randn(3, 16) * 5
    y = torch.arange(3).repeat(40)
    feats = centers[y] + torch.randn(120, 16) * 0.1
    top1, top5 = knn_accuracy(feats[:60], y[:60], feats[60:], y[60:], 3, k=10)
    assert top1 == 100.0 and top5 == 100.0


def test_knn_selection_sees_only_training_images():
    """select_knn gets train features only; on clustered data it picks a small k with a sensible
    T."""
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 16, generator=g) * 3
    y = torch.randint(0, 4, (400,), generator=g)
    x = centers[y] + torch.randn(400, 16, generator=g)
    fit, held = torch.arange(0, 360), torch.arange(360, 400)
    chosen, grid = select_knn(x, y, 4, [1, 200], [0.1], fit, held)
    ref = {r["k"]: knn_accuracy(x[held], y[held], x[fit], y[fit], 4, r["k"], 0.1)[0] for r in grid}
    assert {r["k"]: r["heldout_top1"] for r in grid} == ref
    assert chosen == {"k": max(ref, key=lambda k: (ref[k], -k)), "t": 0.1}
