"""Contrastive losses against literal transcriptions of their formulas: SimCLR's NT-Xent (also
gathered across 2 processes), MoCo's InfoNCE with a queue, CMC's in-batch cross-view loss, CPC v2's
grid InfoNCE."""

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from ssl_bench.losses.contrastive import (
    cross_view_batch_loss,
    grid_info_nce,
    info_nce,
    moco_v3_loss,
    nearest_neighbour,
    nnclr_loss,
    nt_xent,
)
from ssl_bench.methods.cmc import view_pairs


# ---- NT-Xent (SimCLR) --------------------------------------------------------------------------
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


# ---- InfoNCE with a queue (MoCo) ----------------------------------------------------------------
def info_nce_reference(q, k, queue, t):
    """Eq. (1) of MoCo as a loop: -log exp(q.k+/t) / (exp(q.k+/t) + sum_j exp(q.queue_j/t))."""
    total = 0.0
    for i in range(q.shape[0]):
        qi, ki = q[i] / q[i].norm(), k[i] / k[i].norm()
        pos = torch.exp(qi @ ki / t)
        neg = sum(torch.exp(qi @ queue[j] / t) for j in range(queue.shape[0]))
        total = total - torch.log(pos / (pos + neg))
    return total / q.shape[0]


def test_info_nce_matches_reference_value_and_gradient():
    torch.manual_seed(0)
    q = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    k = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    queue = F.normalize(torch.randn(7, 6, dtype=torch.float64), dim=1)
    for t in (0.07, 0.2):
        ours, terms = info_nce(q, k, queue, t, return_terms=True)
        ref = info_nce_reference(q, k.detach(), queue, t)
        assert math.isclose(ours.item(), ref.item(), rel_tol=1e-5), (ours, ref)
        g_ours, g_k = torch.autograd.grad(ours, (q, k), allow_unused=True)
        (g_ref,) = torch.autograd.grad(ref, (q,))
        assert torch.allclose(g_ours, g_ref, atol=1e-5)
        assert g_k is None  # keys are constants
        assert set(terms) == {"pos_sim", "neg_sim", "acc"}


def test_info_nce_prefers_the_matching_key():
    z = F.normalize(torch.randn(8, 16), dim=1)
    queue = F.normalize(torch.randn(32, 16), dim=1)
    assert info_nce(z, z, queue, 0.1) < info_nce(z, z.roll(1, 0), queue, 0.1)


# ---- CMC's cross-view loss, in-batch candidates ------------------------------------------------
def test_cross_view_batch_loss_matches_the_literal_formula():
    """Eq. 2-3 with in-batch candidates: -log h(v1_i, v2_i) / sum_j h(v1_i, v2_j), both directions,
    per pair."""
    torch.manual_seed(0)
    f = [torch.randn(5, 4, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    t, pairs = 0.2, view_pairs(3, "full")

    def h(x, y):
        return torch.exp((x / x.norm()) @ (y / y.norm()) / t)

    ref = 0.0
    for a, b in pairs:
        for anchor, other in ((a, b), (b, a)):
            ref = (
                ref
                + sum(
                    -torch.log(
                        h(f[anchor][i], f[other][i])
                        / sum(h(f[anchor][i], f[other][j]) for j in range(5))
                    )
                    for i in range(5)
                )
                / 5
            )
    ours = cross_view_batch_loss(f, t, pairs)
    assert torch.allclose(ours.double(), ref, rtol=1e-6)
    for a, b in zip(torch.autograd.grad(ours, f), torch.autograd.grad(ref, f)):
        assert torch.allclose(a.double(), b, rtol=1e-5, atol=1e-8)


# ---- CPC v2's grid InfoNCE --------------------------------------------------------------------
def grid_info_nce_reference(pred, z, k, neg_index=None):
    """Henaff et al. eq. 1-2 literally: for every (b, i, j) with i + k < G, -log of exp(s(pred,
    z_{b,i+k,j})) over the sum of exp(s) with every key (all positions of all images, or the
    positive + the drawn negatives)."""
    B, D, G, _ = z.shape
    keys = [(b, i, j) for b in range(B) for i in range(G) for j in range(G)]

    def score(p, key):
        return p @ z[key[0], :, key[1], key[2]]

    terms = []
    for b in range(B):
        for i in range(G - k):
            for j in range(G):
                p, pos = pred[b, :, i, j], (b, i + k, j)
                if neg_index is None:
                    cand = keys
                else:
                    cand = [pos] + [keys[n] for n in neg_index.tolist() if keys[n] != pos]
                denom = sum(torch.exp(score(p, c)) for c in cand)
                terms.append(-torch.log(torch.exp(score(p, pos)) / denom))
    return torch.stack(terms)


@pytest.mark.parametrize("k,sampled", [(1, False), (2, True)])
def test_grid_info_nce_matches_the_literal_formula_value_and_gradient(k, sampled):
    torch.manual_seed(0)
    pred = (0.3 * torch.randn(2, 4, 3, 3, dtype=torch.float64)).requires_grad_()
    z = (0.3 * torch.randn(2, 4, 3, 3, dtype=torch.float64)).requires_grad_()
    # 7 = (0, 2, 1): a positive for some rows
    neg = torch.tensor([0, 5, 7, 12, 17, 3]) if sampled else None
    ours, _ = grid_info_nce(pred, z, k, neg)
    ref = grid_info_nce_reference(pred, z, k, neg)
    assert ours.shape == ref.shape == (2 * (3 - k) * 3,)
    assert torch.allclose(ours.double(), ref, rtol=1e-5), (ours, ref)
    g_ours = torch.autograd.grad(ours.sum(), (pred, z))
    g_ref = torch.autograd.grad(ref.sum(), (pred, z))
    for a, b in zip(g_ours, g_ref):
        assert torch.allclose(a.double(), b, rtol=1e-4, atol=1e-6)


# ---- MoCo v3: InfoNCE against the keys of the batch ---------------------------------------------
def moco_v3_algorithm_1(q1, q2, k1, k2, tau):
    """MoCo v3's Algorithm 1 (Chen, Xie, He 2021), transcribed: `loss = ctr(q1, k2) + ctr(q2, k1)`
    with
        def ctr(q, k):
            logits = mm(q, k.t())  # [N, N] pairs
            labels = range(N)  # positives are in diagonal
            loss = CrossEntropyLoss(logits/tau, labels)
            return 2 * tau * loss
    on L2-normalised q and k (the official code normalises them first, builder.py
    contrastive_loss), the keys constants (computed under no_grad)."""

    def ctr(q, k):
        q, k = F.normalize(q, dim=1), F.normalize(k.detach(), dim=1)
        logits = torch.mm(q, k.t())
        labels = torch.arange(q.shape[0])
        loss = torch.nn.CrossEntropyLoss()(logits / tau, labels)
        return 2 * tau * loss

    return ctr(q1, k2) + ctr(q2, k1)


def test_moco_v3_loss_matches_algorithm_1_value_and_gradient():
    torch.manual_seed(0)
    q1, q2, k1, k2 = (torch.randn(6, 5, dtype=torch.float64, requires_grad=True) for _ in range(4))
    for tau in (1.0, 0.2):
        ours = moco_v3_loss(q1, k2, tau) + moco_v3_loss(q2, k1, tau)
        ref = moco_v3_algorithm_1(q1, q2, k1, k2, tau)
        assert math.isclose(ours.item(), ref.item(), rel_tol=1e-6), (ours, ref)
        g_ours = torch.autograd.grad(ours, (q1, q2, k1, k2), allow_unused=True)
        g_ref = torch.autograd.grad(ref, (q1, q2))
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g_ours[:2], g_ref))
        assert g_ours[2] is None and g_ours[3] is None  # keys are constants


def test_moco_v3_loss_terms_and_scale():
    z = torch.randn(8, 16)
    loss, terms = moco_v3_loss(z, z, 0.2, return_terms=True)
    assert terms["acc"] == 100.0 and math.isclose(terms["pos_sim"].item(), 1.0, rel_tol=1e-5)
    # the 2 tau scale: the loss at tau is 2 tau x the cross-entropy at tau
    logits = F.normalize(z, dim=1) @ F.normalize(z, dim=1).T / 0.2
    assert torch.allclose(loss, 0.4 * F.cross_entropy(logits, torch.arange(8)))
    assert moco_v3_loss(z, z, 0.2) < moco_v3_loss(z, z.roll(1, 0), 0.2)


# ---- NNCLR: the support-set neighbour as the anchor ---------------------------------------------
def nnclr_eq_2(z1, p2, support, t):
    """NNCLR's eq. 2 (Dwibedi et al. 2021) with the predictions of sec. 3.2, as loops:
        NN(z, Q) = argmin_{q in Q} ||z - q||_2,
        L_i = -log exp(NN(z_i, Q) . p_i^+ / t) / sum_{k=1..n} exp(NN(z_i, Q) . p_k^+ / t),
    on L2-normalised z and p, the mean over i."""
    z1, p2 = F.normalize(z1, dim=1), F.normalize(p2, dim=1)
    total = 0.0
    for i in range(z1.shape[0]):
        dists = [torch.linalg.norm(z1[i] - q) for q in support]
        nn_i = support[int(torch.stack(dists).argmin())].detach()
        num = torch.exp(nn_i @ p2[i] / t)
        den = sum(torch.exp(nn_i @ p2[k] / t) for k in range(p2.shape[0]))
        total = total - torch.log(num / den)
    return total / z1.shape[0]


def test_nnclr_loss_matches_eq_2_value_and_gradient():
    torch.manual_seed(0)
    z1 = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    p2 = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    support = F.normalize(torch.randn(9, 5, dtype=torch.float64), dim=1)
    for t in (0.1, 0.5):
        nn1, idx = nearest_neighbour(z1, support)
        ours = nnclr_loss(nn1, p2, t)
        ref = nnclr_eq_2(z1, p2, support, t)
        assert math.isclose(ours.item(), ref.item(), rel_tol=1e-6), (ours, ref)
        g_ours = torch.autograd.grad(ours, (z1, p2), allow_unused=True)
        g_ref = torch.autograd.grad(ref, (p2,))
        assert torch.allclose(g_ours[1], g_ref[0], atol=1e-6)
        assert g_ours[0] is None  # the neighbour is a constant: no gradient into z1 through it
        assert torch.equal(nn1, support[idx])


def nnclr_symmetrised(z1, p2, support, t):
    """Sec. 3.2 (implementation details, as VISSL's nnclr_loss.py cites it and the keras example
    computes it): eq. 2 symmetrised by adding, for each i, the term
        L'_i = -log exp(NN(z_i, Q) . p_i^+ / t) / sum_{k=1..n} exp(NN(z_k, Q) . p_i^+ / t),
    as loops; the paper adds the two, ours (as VISSL's nnclr_loss.py) takes their mean."""
    z1, p2 = F.normalize(z1, dim=1), F.normalize(p2, dim=1)
    nns = []
    for i in range(z1.shape[0]):
        dists = [torch.linalg.norm(z1[i] - q) for q in support]
        nns.append(support[int(torch.stack(dists).argmin())].detach())
    added = 0.0
    for i in range(z1.shape[0]):
        num = torch.exp(nns[i] @ p2[i] / t)
        den = sum(torch.exp(nns[k] @ p2[i] / t) for k in range(z1.shape[0]))
        added = added - torch.log(num / den)
    return (nnclr_eq_2(z1, p2, support, t) + added / z1.shape[0]) / 2


def test_nnclr_loss_with_the_transposed_term_matches_sec_3_2_value_and_gradient():
    torch.manual_seed(1)
    z1 = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    p2 = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    support = F.normalize(torch.randn(4, 5, dtype=torch.float64), dim=1)  # neighbours repeat
    for t in (0.1, 0.5):
        nn1, _ = nearest_neighbour(z1, support)
        ours = nnclr_loss(nn1, p2, t, transposed=True)
        ref = nnclr_symmetrised(z1, p2, support, t)
        assert math.isclose(ours.item(), ref.item(), rel_tol=1e-6), (ours, ref)
        assert not math.isclose(ours.item(), nnclr_loss(nn1, p2, t).item(), rel_tol=1e-3)
        g_ours, g_ref = torch.autograd.grad(ours, (p2,)), torch.autograd.grad(ref, (p2,))
        assert torch.allclose(g_ours[0], g_ref[0], atol=1e-6)


def test_nearest_neighbour_is_the_closest_support_row():
    support = F.normalize(torch.randn(50, 8), dim=1)
    z = 3.0 * support[[7, 30, 7]] + 0.01 * torch.randn(3, 8)  # scaled: the cosine decides
    nn, idx = nearest_neighbour(z, support)
    assert idx.tolist() == [7, 30, 7] and torch.equal(nn, support[idx])
