"""Bootstrap losses against their formulas: BYOL's regression loss (eq. 2), SimSiam's D(p, z) (eq.
1)."""

import pytest
import torch

from ssl_bench.losses.bootstrap import byol_loss, negative_cosine


def test_byol_loss_matches_formula_value_and_gradient():
    torch.manual_seed(0)
    p = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    z = torch.randn(6, 5, dtype=torch.float64)
    ref = sum(((p[i] / p[i].norm() - z[i] / z[i].norm()) ** 2).sum() for i in range(6)) / 6  # eq. 2
    ours = byol_loss(p, z)
    assert torch.allclose(ours.double(), ref, atol=1e-6)
    (g_ours,), (g_ref,) = torch.autograd.grad(ours, p), torch.autograd.grad(ref, p)
    assert torch.allclose(g_ours, g_ref, atol=1e-6)
    assert byol_loss(z, 3 * z) < 1e-6  # aligned vectors: zero loss


def test_negative_cosine_matches_formula_value_and_gradient():
    torch.manual_seed(0)
    p = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    z = torch.randn(6, 5, dtype=torch.float64)
    ref = -sum((p[i] / p[i].norm()) @ (z[i] / z[i].norm()) for i in range(6)) / 6  # D(p, z), eq. 1
    ours = negative_cosine(p, z)
    assert torch.allclose(ours.double(), ref, atol=1e-6)
    (g_ours,), (g_ref,) = torch.autograd.grad(ours, p), torch.autograd.grad(ref, p)
    assert torch.allclose(g_ours, g_ref, atol=1e-6)
    assert negative_cosine(z, 2 * z) == pytest.approx(-1.0)
