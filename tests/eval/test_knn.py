"""The weighted kNN of InstDisc (ssl_bench.eval.knn): the function against a brute-force
transcription of Wu et al. 2018 sec. 3.4, the metric that accumulates batches and ranks, and the
(k, T) choice on training images."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.overrides import TorchFunctionMode

from ssl_bench.eval.knn import WeightedKNN, knn_accuracy, knn_predict, select_knn


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


class _TopkInputs(TorchFunctionMode):
    """Records the shape of every similarity matrix knn_predict ranks (the input of its topk)."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.topk:
            self.shapes.append(tuple(args[0].shape))
        return func(*args, **(kwargs or {}))


def test_similarity_blocks_stay_within_the_budget_and_score_as_one_block(monkeypatch):
    """By default the queries are scored in blocks of SIMILARITY_BLOCK // bank rows (a 1.28M bank
    must not hold 512 x 1.28M similarities at once, a 60k one gains from blocks over 512 rows); the
    blocks give the scores of a single block and of the brute-force transcription."""
    import ssl_bench.eval.knn as knn_module

    g = torch.Generator().manual_seed(3)
    bank, test = torch.randn(50, 8, generator=g), torch.randn(23, 8, generator=g)
    bank_y = torch.randint(0, 4, (50,), generator=g)
    whole = knn_predict(test, bank, bank_y, 4, k=6, temperature=0.1, chunk=23)
    monkeypatch.setattr(knn_module, "SIMILARITY_BLOCK", 50 * 5)  # 5 queries per block
    with _TopkInputs() as seen:
        blocks = knn_predict(test, bank, bank_y, 4, k=6, temperature=0.1)
    assert seen.shapes == [(5, 50)] * 4 + [(3, 50)]
    assert torch.allclose(blocks, whole, rtol=1e-6, atol=0)
    assert torch.equal(blocks.argmax(1), whole.argmax(1))
    assert torch.allclose(blocks, brute_force_knn(test, bank, bank_y, 4, 6, 0.1), rtol=1e-4)
    monkeypatch.setattr(knn_module, "SIMILARITY_BLOCK", 10)  # fewer entries than one bank row
    with _TopkInputs() as seen:
        knn_predict(test[:2], bank, bank_y, 4, k=6)
    assert seen.shapes == [(1, 50), (1, 50)]


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


# ---- the metric: batches and ranks ---------------------------------------------------------------
def _clusters(n_bank: int, n_query: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(6, 12, generator=g)
    bank_y = torch.randint(0, 6, (n_bank,), generator=g)
    query_y = torch.randint(0, 6, (n_query,), generator=g)
    bank = centers[bank_y] + 2.0 * torch.randn(n_bank, 12, generator=g)
    query = centers[query_y] + 2.0 * torch.randn(n_query, 12, generator=g)
    return bank, bank_y, query, query_y


def test_metric_over_batches_is_the_function_on_the_whole_split():
    """Batches of any size, bank and queries interleaved as two validation dataloaders deliver them:
    exactly knn_accuracy of the concatenation; reset empties it for the next epoch."""
    bank, bank_y, query, query_y = _clusters(90, 41)
    expected = knn_accuracy(query, query_y, bank, bank_y, 6, 10, 0.07)
    assert 0.0 < expected[0] < 100.0  # neither trivial nor hopeless: an order change would show
    knn = WeightedKNN(6, k=10, temperature=0.07)
    assert not knn.ready
    for start in range(0, 90, 32):
        knn.update(bank[start : start + 32], bank_y[start : start + 32], bank=True)
    assert not knn.ready  # no queries yet
    for start in range(0, 41, 16):
        knn.update(query[start : start + 16], query_y[start : start + 16], bank=False)
    assert knn.ready and knn.compute() == expected
    assert isinstance(knn.compute()[0], float)
    knn.reset()
    assert not knn.ready
    knn.update(bank[:50], bank_y[:50], bank=True)
    knn.update(query, query_y, bank=False)
    assert knn.compute() == knn_accuracy(query, query_y, bank[:50], bank_y[:50], 6, 10, 0.07)


def test_metric_holds_no_checkpoint_state():
    knn = WeightedKNN(6, k=5)
    knn.update(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), bank=True)
    assert knn.state_dict() == {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_worker(rank, world, port, shards, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    knn = WeightedKNN(6, k=10, temperature=0.07)
    bank, bank_y, query, query_y = shards[rank]
    half = bank.shape[0] // 2  # two batches per rank
    knn.update(bank[:half], bank_y[:half], bank=True)
    knn.update(bank[half:], bank_y[half:], bank=True)
    knn.update(query, query_y, bank=False)
    out[rank] = knn.compute()
    local = knn_accuracy(query, query_y, bank, bank_y, 6, 10, 0.07)
    knn.reset()
    out[f"local{rank}"] = local
    dist.destroy_process_group()


def test_metric_gathers_bank_and_queries_from_every_rank():
    """Two CPU processes (gloo) with uneven shards: each rank's result is the one-process result on
    the rank-ordered concatenation (what SSLMethod's online kNN computed with Lightning's
    all_gather), not its own shard's."""
    bank, bank_y, query, query_y = _clusters(100, 60, seed=1)
    cut_b, cut_q = 56, 27
    shards = [
        (bank[:cut_b], bank_y[:cut_b], query[:cut_q], query_y[:cut_q]),
        (bank[cut_b:], bank_y[cut_b:], query[cut_q:], query_y[cut_q:]),
    ]
    out = mp.Manager().dict()
    mp.spawn(_rank_worker, args=(2, _free_port(), shards, out), nprocs=2, join=True)
    expected = knn_accuracy(query, query_y, bank, bank_y, 6, 10, 0.07)
    assert out[0] == out[1] == expected
    assert (
        out["local0"] != expected or out["local1"] != expected
    )  # a shard alone gives other numbers
