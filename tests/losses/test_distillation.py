"""DINO's loss, centre and teacher temperature against the paper's Algorithm 1 (Caron et al. 2021),
transcribed literally below, and against eq. 3 for multi-crop: values and gradients."""

import numpy as np
import pytest
import torch
from torch.nn.functional import softmax

from ssl_bench.losses.distillation import dino_center, dino_loss, teacher_temp_at


def log(x):
    return torch.log(x)


def cat(xs):
    return torch.cat(xs)


def algorithm_1_step(s1, s2, t1, t2, C, tps, tpt, m):
    """One iteration of Algorithm 1 (DINO PyTorch pseudocode), from `loss = ...` to the centre
    update, as printed in the paper (the networks' outputs given)."""

    def H(t, s):
        t = t.detach()  # stop gradient
        s = softmax(s / tps, dim=1)
        t = softmax((t - C) / tpt, dim=1)  # center + sharpen
        return -(t * log(s)).sum(dim=1).mean()

    loss = H(t1, s2) / 2 + H(t2, s1) / 2
    C = m * C + (1 - m) * cat([t1, t2]).mean(dim=0)
    return loss, C


def logits(n=6, k=10, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    x = 3 * torch.randn(n, k, generator=g, dtype=torch.float64)
    return x.requires_grad_(grad)


def test_two_crops_equal_algorithm_1_values_gradients_and_centre():
    s1, s2 = logits(seed=1, grad=True), logits(seed=2, grad=True)
    t1, t2 = logits(seed=3), logits(seed=4)
    center = 0.5 * logits(n=1, seed=5)
    ref, ref_c = algorithm_1_step(s1, s2, t1, t2, center[0], 0.1, 0.04, 0.9)
    ref_grads = torch.autograd.grad(ref, [s1, s2])
    ours = dino_loss([s1, s2], [t1, t2], center, student_temp=0.1, teacher_temp=0.04)
    grads = torch.autograd.grad(ours, [s1, s2])
    assert torch.allclose(ours.double(), ref, atol=1e-5), (ours, ref)
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g.double(), r, atol=1e-6)
    new_c = dino_center(center, [t1, t2], momentum=0.9)
    assert new_c.shape == (1, 10) and torch.allclose(new_c[0].double(), ref_c, atol=1e-6)


def test_the_centre_changes_the_loss():
    s1, s2, t1, t2 = (logits(seed=i) for i in range(4))
    zero = dino_loss([s1, s2], [t1, t2], torch.zeros(1, 10))
    shifted = dino_loss([s1, s2], [t1, t2], logits(n=1, seed=9))
    assert abs(zero - shifted) > 1e-3


def eq_3_multicrop(student, teacher, center, tps, tpt):
    """Eq. 3: sum over the global crops x and every crop x' != x of H(P_t(x), P_s(x')), divided by
    the number of terms as the official code averages it."""
    total, terms = 0.0, 0
    for i, t in enumerate(teacher):
        p_t = softmax((t - center) / tpt, dim=1)
        for j, s in enumerate(student):
            if i == j:
                continue
            p_s = softmax(s / tps, dim=1)
            total = total + (-(p_t * torch.log(p_s)).sum(dim=1)).mean()
            terms += 1
    return total / terms


def test_multicrop_is_the_mean_over_pairs_of_different_crops():
    student = [logits(seed=10 + i, grad=True) for i in range(5)]  # 2 global + 3 local
    teacher = [logits(seed=20), logits(seed=21)]
    center = logits(n=1, seed=22)
    ref = eq_3_multicrop(student, teacher, center, 0.1, 0.07)
    ours = dino_loss(student, teacher, center, 0.1, 0.07)
    assert torch.allclose(ours.double(), ref, atol=1e-5)
    for g, r in zip(torch.autograd.grad(ours, student), torch.autograd.grad(ref, student)):
        assert torch.allclose(g.double(), r, atol=1e-6)


def test_no_gradient_reaches_the_teacher():
    s1, s2 = logits(seed=1, grad=True), logits(seed=2, grad=True)
    t1, t2 = logits(seed=3, grad=True), logits(seed=4, grad=True)
    dino_loss([s1, s2], [t1, t2], torch.zeros(1, 10)).backward()
    assert t1.grad is None and t2.grad is None and s1.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "warmup,final,epochs", [(0.04, 0.07, 30), (0.04, 0.04, 0), (0.02, 0.05, 1)]
)
def test_teacher_temperature_follows_the_official_linspace(warmup, final, epochs):
    total = 50
    ref = np.concatenate((np.linspace(warmup, final, epochs), np.ones(total - epochs) * final))
    ours = [teacher_temp_at(e, warmup, final, epochs) for e in range(total)]
    assert np.allclose(ours, ref, rtol=0, atol=1e-12)
    if epochs == 30:
        assert ours[0] == pytest.approx(0.04) and ours[29] == pytest.approx(0.07)
        assert ours[15] == pytest.approx(0.04 + 0.03 * 15 / 29)
