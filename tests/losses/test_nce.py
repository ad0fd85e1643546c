"""NCE against a memory: InstDisc's loss and Z estimate (Wu et al. eq. 2-6), CMC's cross-view form
(sec. 3.3)."""

import math

import pytest
import torch
import torch.nn.functional as F

from ssl_bench.losses.nce import cross_view_nce, estimate_nce_z, instdisc_nce
from ssl_bench.methods.cmc import view_pairs


def nce_reference(f, pos, neg, t, z, n):
    """Wu et al. eq. 3-5 literally: P = exp(v.f/t)/Z, h = P / (P + m/n), J = -E[log h] - m E[log(1 -
    h)]."""
    m = neg.shape[-2]
    total = 0.0
    for i in range(f.shape[0]):
        fi = f[i] / f[i].norm()
        p_pos = torch.exp(pos[i] @ fi / t) / z
        total = total - torch.log(p_pos / (p_pos + m / n))
        negs = neg if neg.dim() == 2 else neg[i]
        for j in range(m):
            p = torch.exp(negs[j] @ fi / t) / z
            total = total - torch.log(1 - p / (p + m / n))
    return total / f.shape[0]


def test_instdisc_nce_matches_reference_value_and_gradient():
    torch.manual_seed(0)
    f = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    pos = F.normalize(torch.randn(4, 5, dtype=torch.float64), dim=1)
    for neg in (
        F.normalize(torch.randn(6, 5, dtype=torch.float64), dim=1),  # shared by the batch
        F.normalize(torch.randn(4, 6, 5, dtype=torch.float64), dim=2),  # one draw per sample
    ):
        for t, z in ((0.07, 300.0), (0.5, 20.0)):
            ours = instdisc_nce(f, pos, neg, t, z, num_samples=50)
            ref = nce_reference(f, pos, neg, t, z, 50)
            assert math.isclose(ours.item(), ref.item(), rel_tol=1e-5), (ours, ref)
            (g,) = torch.autograd.grad(ours, f)
            (r,) = torch.autograd.grad(ref, f)
            assert torch.allclose(g, r, atol=1e-5, rtol=1e-4)


def test_z_estimate_is_n_times_the_mean_exponentiated_score():
    torch.manual_seed(0)
    f, pos, neg = (
        torch.randn(3, 4),
        F.normalize(torch.randn(3, 4), dim=1),
        F.normalize(torch.randn(5, 4), dim=1),
    )
    fn = F.normalize(f, dim=1)
    scores = torch.cat([(fn * pos).sum(1), (fn @ neg.T).flatten()])
    expected = 100 * torch.exp(scores / 0.1).mean()
    assert torch.allclose(estimate_nce_z(f, pos, neg, 0.1, 100), expected, rtol=1e-5)


def test_positive_mask_drops_only_the_masked_positive_terms():
    torch.manual_seed(0)
    f = torch.randn(4, 5, dtype=torch.float64)
    pos = F.normalize(torch.randn(4, 5, dtype=torch.float64), dim=1)
    neg = F.normalize(torch.randn(6, 5, dtype=torch.float64), dim=1)
    mask = torch.tensor([True, False, True, False])
    _, full = instdisc_nce(f, pos, neg, 0.1, 30.0, 50, return_terms=True)
    ours = instdisc_nce(f, pos, neg, 0.1, 30.0, 50, positive_mask=mask)
    per_row = [instdisc_nce(f[i : i + 1], pos[i : i + 1], neg, 0.1, 30.0, 50) for i in range(4)]
    neg_only = [
        instdisc_nce(
            f[i : i + 1], pos[i : i + 1], neg, 0.1, 30.0, 50, positive_mask=torch.tensor([False])
        )
        for i in range(4)
    ]
    expected = sum(per_row[i] if mask[i] else neg_only[i] for i in range(4)) / 4
    assert torch.allclose(ours, expected)
    assert torch.allclose(
        instdisc_nce(f, pos, neg, 0.1, 30.0, 50, positive_mask=torch.ones(4, dtype=torch.bool)),
        instdisc_nce(f, pos, neg, 0.1, 30.0, 50),
    )
    fn = F.normalize(f, dim=1)
    kept = torch.cat([(fn * pos).sum(1)[mask], (fn @ neg.T).flatten()])
    expected_z = 50 * torch.exp(kept / 0.1).mean().float()
    assert torch.allclose(
        estimate_nce_z(f, pos, neg, 0.1, 50, positive_mask=mask), expected_z, rtol=1e-5
    )
    assert full["nce_pos"] > 0


def cmc_nce_reference(f, pos, neg, t, z, n):
    """InstDisc / CMC NCE literally: P = exp(v.f/t)/Z, h = P / (P + m/n), J = -E[log h(pos) + sum
    log(1 - h(neg))]."""
    m, total = neg.shape[0], 0.0
    for i in range(f.shape[0]):
        fi = f[i] / f[i].norm()
        p = torch.exp(pos[i] @ fi / t) / z
        total = total - torch.log(p / (p + m / n))
        for j in range(m):
            q = torch.exp(neg[j] @ fi / t) / z
            total = total - torch.log(1 - q / (q + m / n))
    return total / f.shape[0]


@pytest.mark.parametrize("graph", ["core", "full"])
def test_cross_view_nce_matches_the_literal_formula(graph):
    """CMC sec. 3.3: each pair (a, b) contributes J(f_a | memory of b) + J(f_b | memory of a)."""
    torch.manual_seed(0)
    v, n = 3, 40
    f = [torch.randn(4, 5, dtype=torch.float64, requires_grad=True) for _ in range(v)]
    pos = [F.normalize(torch.randn(4, 5, dtype=torch.float64), dim=1) for _ in range(v)]
    neg = [F.normalize(torch.randn(6, 5, dtype=torch.float64), dim=1) for _ in range(v)]
    z = torch.rand(v, v, dtype=torch.float64) * 50 + 10
    pairs = view_pairs(v, graph)
    ours = cross_view_nce(f, pos, neg, 0.1, z, n, pairs)
    ref = sum(
        cmc_nce_reference(f[a], pos[b], neg[b], 0.1, z[a, b], n)
        + cmc_nce_reference(f[b], pos[a], neg[a], 0.1, z[b, a], n)
        for a, b in pairs
    )
    assert torch.allclose(ours.double(), ref, rtol=1e-5), (ours, ref)
    g_ours, g_ref = torch.autograd.grad(ours, f), torch.autograd.grad(ref, f)
    for a, b in zip(g_ours, g_ref):
        assert torch.allclose(a.double(), b, rtol=1e-4, atol=1e-7)
    if graph == "core":  # view 2 and view 1 never meet: moving f_2 leaves the (1, 2) terms out
        assert (1, 2) not in pairs
