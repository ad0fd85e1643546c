"""SwAV's Sinkhorn-Knopp and swapped prediction against loop references (Sinkhorn also across 2
processes)."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from ssl_bench.losses.clustering import sinkhorn_knopp, swav_loss


def sinkhorn_reference(scores, iterations, eps):
    """Appendix A.1 written out: alternate prototype rows -> 1/K and sample columns -> 1/B, then
    scale by B."""
    q = torch.exp(scores.double() / eps).T  # K x B
    k, b = q.shape
    q = q / q.sum()
    for _ in range(iterations):
        for r in range(k):
            q[r] = q[r] / q[r].sum() / k
        for c in range(b):
            q[:, c] = q[:, c] / q[:, c].sum() / b
    return (q * b).T


def test_sinkhorn_matches_reference_and_marginals():
    torch.manual_seed(0)
    # B=12, K=5
    scores = F.normalize(torch.randn(12, 8), dim=1) @ F.normalize(torch.randn(5, 8), dim=1).T
    q = sinkhorn_knopp(scores, iterations=3, eps=0.05)
    assert q.dtype == torch.float32 and q.shape == (12, 5)
    assert torch.allclose(q.double(), sinkhorn_reference(scores, 3, 0.05), atol=1e-5)
    assert torch.allclose(q.sum(dim=1), torch.ones(12), atol=1e-5)  # each sample's code sums to 1
    converged = sinkhorn_knopp(scores, iterations=200, eps=0.05)
    # uniform N/K per prototype
    assert torch.allclose(converged.sum(dim=0), torch.full((5,), 12 / 5), atol=1e-3)


def test_sinkhorn_runs_in_float32_under_bf16_autocast():
    scores = torch.randn(16, 10).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q = sinkhorn_knopp(scores, 3, 0.05)
    assert q.dtype == torch.float32 and torch.isfinite(q).all()


def swav_reference(scores, codes, t):
    total = 0.0
    for i, q in enumerate(codes):
        sub = 0.0
        for v, s in enumerate(scores):
            if v == i:
                continue
            for n in range(s.shape[0]):
                p = torch.exp(s[n] / t) / torch.exp(s[n] / t).sum()
                sub = sub - (q[n] * torch.log(p)).sum() / s.shape[0]
        total = total + sub / (len(scores) - 1)
    return total / len(codes)


def test_swav_loss_matches_reference_value_and_gradient():
    torch.manual_seed(0)
    scores = [
        torch.randn(4, 6, dtype=torch.float64, requires_grad=True) for _ in range(4)
    ]  # 2 large + 2 small
    codes = [sinkhorn_knopp(s.detach(), 3, 0.05).double() for s in scores[:2]]
    ours = swav_loss(scores, codes, 0.1)
    ref = swav_reference(scores, codes, 0.1)
    assert torch.allclose(ours.double(), ref, atol=1e-4)
    g_ours, g_ref = torch.autograd.grad(ours, scores), torch.autograd.grad(ref, scores)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_ours, g_ref))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sinkhorn_worker(rank, world, port, scores, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    n = scores.shape[0] // world
    out[rank] = sinkhorn_knopp(scores[rank * n : (rank + 1) * n], 3, 0.05)
    dist.destroy_process_group()


def test_sinkhorn_across_two_processes_equals_single_process():
    torch.manual_seed(1)
    scores = F.normalize(torch.randn(8, 4), dim=1) @ F.normalize(torch.randn(6, 4), dim=1).T
    out = mp.Manager().dict()
    mp.spawn(_sinkhorn_worker, args=(2, _free_port(), scores, out), nprocs=2, join=True)
    assert torch.allclose(torch.cat([out[0], out[1]]), sinkhorn_knopp(scores, 3, 0.05), atol=1e-5)
