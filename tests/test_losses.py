"""NT-Xent against a loop-based reference, single-process and gathered across 2 processes."""

import math
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from ssl_bench.losses import nt_xent


def nt_xent_reference(z1, z2, t):
    """Eq. (1) of SimCLR written as plain loops over the 2N anchors."""
    z = torch.cat([z1, z2])
    n2 = z.shape[0]
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        j = (i + n) % n2
        sims = [F.cosine_similarity(z[i], z[k], dim=0) / t for k in range(n2)]
        denom = sum(math.e**0 * torch.exp(sims[k]) for k in range(n2) if k != i)
        total = total - torch.log(torch.exp(sims[j]) / denom)
    return total / n2


def test_nt_xent_matches_reference_value_and_gradient():
    torch.manual_seed(0)
    a = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    for t in (0.1, 0.5):
        ours = nt_xent(a.float(), b.float(), temperature=t)
        ref = nt_xent_reference(a, b, t)
        assert torch.allclose(ours.double(), ref, atol=1e-5), (ours, ref)
        ga, gb = torch.autograd.grad(ours, (a, b))
        ra, rb = torch.autograd.grad(ref, (a, b))
        assert torch.allclose(ga, ra, atol=1e-5) and torch.allclose(gb, rb, atol=1e-5)


def test_nt_xent_perfect_alignment_is_low():
    z = F.normalize(torch.eye(8)[:4] * 10, dim=1)
    aligned = nt_xent(z, z.clone(), temperature=0.1)
    shuffled = nt_xent(z, z.roll(1, 0), temperature=0.1)
    assert aligned < shuffled


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, a, b, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    n = a.shape[0] // world
    la = a[rank * n : (rank + 1) * n].clone().requires_grad_(True)
    lb = b[rank * n : (rank + 1) * n].clone().requires_grad_(True)
    loss = nt_xent(la, lb, temperature=0.2)
    loss.backward()
    # DDP averages parameter gradients over ranks; do the same for the input gradients
    ga, gb = la.grad / world, lb.grad / world
    out[rank] = (loss.detach(), ga, gb)
    dist.destroy_process_group()


def test_nt_xent_gathered_equals_single_process():
    torch.manual_seed(1)
    a, b = torch.randn(8, 16), torch.randn(8, 16)
    ref_a, ref_b = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    ref = nt_xent(ref_a, ref_b, temperature=0.2)
    ref.backward()
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_worker, args=(2, _free_port(), a, b, out), nprocs=2, join=True)
    losses = torch.stack([out[r][0] for r in range(2)])
    assert torch.allclose(losses.mean(), ref.detach(), atol=1e-5)
    ga = torch.cat([out[r][1] for r in range(2)])
    gb = torch.cat([out[r][2] for r in range(2)])
    assert torch.allclose(ga, ref_a.grad, atol=1e-6)
    assert torch.allclose(gb, ref_b.grad, atol=1e-6)
