"""Redundancy-reduction losses against their papers' PyTorch pseudo-code, values and gradients:
Barlow Twins (Zbontar et al. 2021, Algorithm 1; and the official code's BatchNorm form), VICReg
(Bardes et al. 2022, Algorithm 1)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ssl_bench.losses.redundancy import barlow_twins_loss, vicreg_loss


def off_diagonal(x):
    # the papers' helper, as in facebookresearch/barlowtwins@8e8d284 main.py
    n, m = x.shape
    assert n == m
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def barlow_twins_pseudo_code(z_a, z_b, lambda_):
    """Algorithm 1 of the Barlow Twins paper, line by line. `off_diagonal(c_diff).mul_(lambda)` is
    written as an in-place product on the off-diagonal entries: off_diagonal returns a copy, so
    executed literally the line would change nothing (the paper's intent is the weighting)."""
    N, D = z_a.shape
    # normalize repr. along the batch dimension
    z_a_norm = (z_a - z_a.mean(0)) / z_a.std(0)  # NxD
    z_b_norm = (z_b - z_b.mean(0)) / z_b.std(0)  # NxD
    # cross-correlation matrix
    c = torch.mm(z_a_norm.T, z_b_norm) / N  # DxD
    # loss
    c_diff = (c - torch.eye(D, dtype=c.dtype)).pow(2)  # DxD
    # multiply off-diagonal elems of c_diff by lambda
    c_diff = c_diff * torch.where(torch.eye(D, dtype=torch.bool), 1.0, lambda_)
    loss = c_diff.sum()
    return loss


def barlow_twins_official_forward(z1, z2, lambd):
    """The official forward after the projector (main.py BarlowTwins.forward on one process):
    BatchNorm1d(affine=False) in training mode, c / batch_size, on_diag + lambd * off_diag."""
    bn = nn.BatchNorm1d(z1.shape[1], affine=False).double()
    c = bn(z1).T @ bn(z2)
    c = c / z1.shape[0]
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = off_diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag


def vicreg_pseudo_code(z_a, z_b, lambda_, mu, nu):
    """Algorithm 1 of the VICReg paper, line by line."""
    N, D = z_a.shape
    # invariance loss
    sim_loss = F.mse_loss(z_a, z_b)
    # variance loss
    std_z_a = torch.sqrt(z_a.var(dim=0) + 1e-04)
    std_z_b = torch.sqrt(z_b.var(dim=0) + 1e-04)
    std_loss = torch.mean(F.relu(1 - std_z_a)) + torch.mean(F.relu(1 - std_z_b))
    # covariance loss
    z_a = z_a - z_a.mean(dim=0)
    z_b = z_b - z_b.mean(dim=0)
    cov_z_a = (z_a.T @ z_a) / (N - 1)
    cov_z_b = (z_b.T @ z_b) / (N - 1)
    cov_loss = off_diagonal(cov_z_a).pow_(2).sum() / D + off_diagonal(cov_z_b).pow_(2).sum() / D
    # loss
    loss = lambda_ * sim_loss + mu * std_loss + nu * cov_loss
    return loss


def _pair(n=12, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64)  # correlated dimensions
    # per-dimension scales around 1: some stds below the hinge, some above
    scale = torch.linspace(0.3, 1.8, d, dtype=torch.float64)
    z1 = (z1 @ mix) * scale / mix.norm(dim=0)
    z2 = z1 + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return z1.requires_grad_(), z2.requires_grad_()


def _assert_same(ours, ref, inputs):
    assert torch.allclose(ours.double(), ref, rtol=1e-6, atol=1e-9), (ours, ref)
    for g_ours, g_ref in zip(torch.autograd.grad(ours, inputs), torch.autograd.grad(ref, inputs)):
        assert torch.allclose(g_ours.double(), g_ref, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("lambd", [5e-3, 0.3])
def test_barlow_twins_matches_the_papers_pseudo_code(lambd):
    z1, z2 = _pair()
    ours = barlow_twins_loss(z1, z2, lambd, eps=0.0, correction=1)  # the pseudo-code's z.std(0)
    _assert_same(ours, barlow_twins_pseudo_code(z1, z2, lambd), (z1, z2))


def test_barlow_twins_defaults_match_the_official_batchnorm_form():
    z1, z2 = _pair(seed=1)
    _assert_same(
        barlow_twins_loss(z1, z2, 0.0051), barlow_twins_official_forward(z1, z2, 0.0051), (z1, z2)
    )
    # solo-learn's scale_loss multiplies the whole loss
    assert torch.allclose(
        barlow_twins_loss(z1, z2, 0.0051, scale=0.1), 0.1 * barlow_twins_loss(z1, z2, 0.0051)
    )


def test_barlow_twins_terms_and_its_minimum():
    z1, z2 = _pair(seed=2)
    loss, terms = barlow_twins_loss(z1, z2, 0.1, return_terms=True)
    assert torch.allclose(loss, terms["on_diag"] + 0.1 * terms["off_diag"])
    # perfectly invariant, decorrelated embeddings: the columns of Q from the QR of a column-centred
    # matrix are orthonormal and zero-mean (combinations of centred columns), so the
    # cross-correlation is the identity and the loss its minimum, 0
    g = torch.Generator().manual_seed(0)
    a = torch.randn(64, 8, dtype=torch.float64, generator=g)
    q, _ = torch.linalg.qr(a - a.mean(0))
    assert barlow_twins_loss(q, q, 0.1, eps=0.0) < 1e-9


@pytest.mark.parametrize("weights", [(25.0, 25.0, 1.0), (1.0, 5.0, 0.3)])
def test_vicreg_matches_the_papers_pseudo_code(weights):
    z1, z2 = _pair()
    ours = vicreg_loss(z1, z2, *weights)
    ref = vicreg_pseudo_code(z1, z2, *weights)
    _assert_same(ours, ref, (z1, z2))
    loss, terms = vicreg_loss(z1, z2, *weights, return_terms=True)
    lam, mu, nu = weights
    total = lam * terms["invariance"] + mu * terms["variance"] + nu * terms["covariance"]
    assert torch.allclose(loss, total)
    assert terms["variance"] > 0 and terms["covariance"] > 0  # the test data reaches every term


def test_vicreg_gamma_moves_the_hinge():
    z1, z2 = _pair()
    _, low = vicreg_loss(z1, z2, gamma=0.01, return_terms=True)
    _, high = vicreg_loss(z1, z2, gamma=2.0, return_terms=True)
    assert low["variance"] == 0 and high["variance"] > 1


def test_losses_compute_in_float32_under_bf16():
    z1, z2 = (t.detach().to(torch.bfloat16) for t in _pair())
    assert barlow_twins_loss(z1, z2).dtype == torch.float32
    assert vicreg_loss(z1, z2).dtype == torch.float32
