"""MI objectives against their formulas (value and gradient): the JSD, DV and InfoNCE estimators
(Hjelm et al. 2019, eq. 2, 4, 5), AMDIM's multi-scale NCE with its score regularisation (Bachman et
al. 2019, sec. 3.2-3.4)."""

import math

import pytest
import torch

from ssl_bench.losses.mi import amdim_nce, batch_mi, dv_mi, infonce_mi, jsd_mi, multiscale_nce


def softplus(x):
    return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


def jsd_reference(scores):
    """E_P[-sp(-T)] - E_{PxP~}[sp(T)] with P the diagonal (same image) pairs of scores[i, k, l]."""
    n, _, L = scores.shape
    pos = [scores[i, i, loc] for i in range(n) for loc in range(L)]
    neg = [scores[i, k, loc] for i in range(n) for k in range(n) if k != i for loc in range(L)]
    return sum(-torch.nn.functional.softplus(-t) for t in pos) / len(pos) - sum(
        torch.nn.functional.softplus(t) for t in neg
    ) / len(neg)


def dv_reference(scores):
    """E_P[T] - log E_{PxP~}[exp(T)]."""
    n, _, L = scores.shape
    pos = [scores[i, i, loc] for i in range(n) for loc in range(L)]
    neg = [scores[i, k, loc] for i in range(n) for k in range(n) if k != i for loc in range(L)]
    return sum(pos) / len(pos) - torch.log(sum(torch.exp(t) for t in neg) / len(neg))


def nce_reference(scores):
    """For global i and its own location l: T - log(exp(T) + sum over all locations of the other
    images)."""
    n, _, L = scores.shape
    total, count = 0.0, 0
    for i in range(n):
        negatives = sum(torch.exp(scores[i, k, m]) for k in range(n) if k != i for m in range(L))
        for loc in range(L):
            total = total + scores[i, i, loc] - torch.log(torch.exp(scores[i, i, loc]) + negatives)
            count += 1
    return total / count


@pytest.mark.parametrize(
    "estimator,reference", [("jsd", jsd_reference), ("dv", dv_reference), ("nce", nce_reference)]
)
def test_estimators_match_their_formulas_value_and_gradient(estimator, reference):
    torch.manual_seed(0)
    for shape in ((4, 4, 3), (5, 5)):  # local (L locations) and global (N x N) scores
        scores = (2.0 * torch.randn(*shape, dtype=torch.float64)).requires_grad_(True)
        ours = batch_mi(scores, estimator)
        ref = reference(scores if scores.dim() == 3 else scores.unsqueeze(-1))
        assert math.isclose(ours.item(), ref.item(), rel_tol=1e-6, abs_tol=1e-6), (
            estimator,
            ours,
            ref,
        )
        (g,) = torch.autograd.grad(ours, scores)
        (r,) = torch.autograd.grad(ref, scores)
        assert torch.allclose(g.double(), r, atol=1e-6), estimator


def test_estimator_functions_on_their_own():
    torch.manual_seed(1)
    pos, neg = torch.randn(7, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    assert math.isclose(
        jsd_mi(pos, neg).item(),
        sum(-softplus(-p) for p in pos.tolist()) / 7
        - sum(softplus(t) for t in neg.flatten().tolist()) / 15,
        rel_tol=1e-6,
    )
    assert math.isclose(
        dv_mi(pos, neg).item(),
        pos.mean().item() - math.log(sum(math.exp(t) for t in neg.flatten().tolist()) / 15),
        rel_tol=1e-6,
    )
    # infonce_mi with one positive per row is minus the cross-entropy; an explicit neg_mask drops
    # candidates
    s = torch.randn(4, 6, dtype=torch.float64)
    target = torch.tensor([0, 3, 5, 1])
    pos_mask = torch.nn.functional.one_hot(target, 6).bool()
    assert math.isclose(
        infonce_mi(s, pos_mask).item(),
        -torch.nn.functional.cross_entropy(s, target).item(),
        rel_tol=1e-6,
    )
    neg_mask = ~pos_mask
    neg_mask[:, 2] = False  # column 2 neither positive nor negative
    keep = list(range(6))
    expected = (
        sum(
            s[q, target[q]]
            - torch.logsumexp(s[q, [c for c in keep if c != 2 or c == target[q]]], 0)
            for q in range(4)
        )
        / 4
    )
    assert math.isclose(infonce_mi(s, pos_mask, neg_mask).item(), expected.item(), rel_tol=1e-6)
    # a perfect critic: JSD and NCE are higher than for a random one
    good = torch.eye(4, dtype=torch.float64)[:, :, None] * 10 - 5
    assert batch_mi(good, "jsd") > batch_mi(torch.zeros(4, 4, 1), "jsd")
    assert batch_mi(good, "nce") > batch_mi(torch.zeros(4, 4, 1), "nce")


def nce_task_reference(src, trg, clip):
    """Bachman et al. 2019, sec. 3.2-3.4 literally: s = <src_i, trg_k,l> / sqrt(D); penalty term
    mean(s^2); s' = c tanh(s / c); for each own location l: s'_iil - log(exp(s'_iil) + sum_{k != i,
    m} exp(s'_ikm))."""
    n, d, L = trg.shape
    raw = [
        [[src[i] @ trg[k, :, loc] / math.sqrt(d) for loc in range(L)] for k in range(n)]
        for i in range(n)
    ]
    sq = sum(raw[i][k][loc] ** 2 for i in range(n) for k in range(n) for loc in range(L)) / (
        n * n * L
    )
    s = [
        [[clip * torch.tanh(raw[i][k][loc] / clip) for loc in range(L)] for k in range(n)]
        for i in range(n)
    ]
    nce = 0.0
    for i in range(n):
        negatives = sum(torch.exp(s[i][k][m]) for k in range(n) if k != i for m in range(L))
        for loc in range(L):
            nce = nce + s[i][i][loc] - torch.log(torch.exp(s[i][i][loc]) + negatives)
    return -nce / (n * L), sq


def multiscale_reference(r1, r5, r7, loc5, clip, reg):
    loss, penalty = 0.0, 0.0
    src5 = [torch.stack([r5[v][i, :, loc5[v][i]] for i in range(r5[v].shape[0])]) for v in (0, 1)]
    for src, trg in ((r1, r5), (r1, r7), (src5, r5)):  # 1-5, 1-7, 5-5
        (l_ab, s_ab), (l_ba, s_ba) = (
            nce_task_reference(src[0], trg[1], clip),
            nce_task_reference(src[1], trg[0], clip),
        )
        loss = loss + 0.5 * (l_ab + l_ba)
        penalty = penalty + 0.5 * (s_ab + s_ba)
    return loss + reg * penalty


def test_multiscale_nce_matches_the_formula_value_and_gradient():
    torch.manual_seed(0)
    n, d = 3, 4
    r1 = [(3 * torch.randn(n, d, dtype=torch.float64)).requires_grad_(True) for _ in range(2)]
    r5 = [(3 * torch.randn(n, d, 4, dtype=torch.float64)).requires_grad_(True) for _ in range(2)]
    r7 = [(3 * torch.randn(n, d, 6, dtype=torch.float64)).requires_grad_(True) for _ in range(2)]
    loc5 = [torch.tensor([0, 3, 1]), torch.tensor([2, 2, 0])]
    leaves = r1 + r5 + r7
    for clip, reg in ((20.0, 4e-2), (2.0, 0.5)):  # the paper's values; a clip that bites
        out = multiscale_nce(tuple(r1), tuple(r5), tuple(r7), tuple(loc5), clip, reg)
        ref = multiscale_reference(r1, r5, r7, loc5, clip, reg)
        assert math.isclose(out["loss"].item(), ref.item(), rel_tol=1e-6), (clip, out["loss"], ref)
        assert torch.allclose(
            out["loss"], out["nce_1t5"] + out["nce_1t7"] + out["nce_5t5"] + out["score_penalty"]
        )
        for g, r in zip(torch.autograd.grad(out["loss"], leaves), torch.autograd.grad(ref, leaves)):
            assert torch.allclose(g, r, atol=1e-6)


def test_clipping_bounds_the_scores_and_the_penalty_grows_with_them():
    torch.manual_seed(0)
    src, trg = torch.randn(4, 8, dtype=torch.float64), torch.randn(4, 8, 5, dtype=torch.float64)
    loss_big, sq_big = amdim_nce(100 * src, trg, tclip=1.0)
    # with |s'| <= 1 (3 x 5 = 15 negatives per row) the NCE loss cannot fall below -log(e / (e + 15
    # / e))
    assert loss_big.item() >= -math.log(math.e / (math.e + 15 / math.e)) - 1e-9
    assert sq_big > 100 * amdim_nce(src, trg, tclip=1.0)[1]
    unclipped, _ = amdim_nce(src, trg, tclip=None)
    assert not math.isclose(
        unclipped.item(), amdim_nce(src, trg, tclip=0.5)[0].item(), rel_tol=1e-3
    )
