import math

import torch
from torch import nn

from ssl_bench.eval.knn import knn_accuracy, knn_predict
from ssl_bench.optim import LARS, build_optimizer, split_decay_groups, warmup_cosine


def knn_bruteforce(test, bank, bank_y, num_classes, k, t):
    out = torch.zeros(test.shape[0], num_classes)
    for i, q in enumerate(test):
        sims = torch.tensor([torch.nn.functional.cosine_similarity(q, b, dim=0).item() for b in bank])
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


def test_warmup_cosine_shape():
    assert warmup_cosine(0, 100, 10) == 0.0
    assert math.isclose(warmup_cosine(5, 100, 10), 0.5)
    assert math.isclose(warmup_cosine(10, 100, 10), 1.0)
    assert math.isclose(warmup_cosine(55, 100, 10), 0.5, abs_tol=1e-9)
    assert math.isclose(warmup_cosine(100, 100, 10), 0.0, abs_tol=1e-12)
    assert math.isclose(warmup_cosine(100, 100, 10, min_factor=0.1), 0.1)


def test_lars_skips_bias_and_norm_and_scales_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    groups = split_decay_groups(model)
    assert [len(g["params"]) for g in groups] == [1, 3]
    assert groups[1]["weight_decay"] == 0.0 and groups[1]["lars_adapt"] is False
    opt = build_optimizer(groups, "lars", lr=0.5, weight_decay=0.0, momentum=0.0, eta=0.02)
    assert isinstance(opt, LARS)
    w, bias = model[0].weight, model[0].bias
    w0, b0 = w.detach().clone(), bias.detach().clone()
    w.grad, bias.grad = torch.ones_like(w), torch.ones_like(bias)
    for p in model[1].parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    ratio = 0.02 * w0.norm() / torch.ones_like(w0).norm()
    assert torch.allclose(w, w0 - 0.5 * ratio * torch.ones_like(w0), atol=1e-6)
    assert torch.allclose(bias, b0 - 0.5, atol=1e-6)  # plain SGD step for the bias


def test_build_optimizer_rejects_bad_lr():
    import pytest

    from ssl_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="optimizer.lr"):
        build_optimizer([{"params": [nn.Parameter(torch.zeros(1))]}], "sgd", lr=0.0)
    with pytest.raises(ConfigError, match="optimizer.name"):
        build_optimizer([{"params": [nn.Parameter(torch.zeros(1))]}], "rmsprop", lr=0.1)
