"""The one cosine that the lr schedule, BYOL's momentum and the linear evaluation share."""

import math

import pytest
import torch

from ssl_bench.eval.linear import set_cosine_lr
from ssl_bench.nn.ema import cosine_tau
from ssl_bench.schedules import cosine, warmup_cosine_lr


def test_cosine_endpoints_and_midpoint():
    assert cosine(0.0, 2.0, 0.5) == pytest.approx(2.0)
    assert cosine(0.5, 2.0, 0.5) == pytest.approx(1.25)
    assert cosine(1.0, 2.0, 0.5) == pytest.approx(0.5)
    assert cosine(0.25, 1.0, 0.0) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)


def test_every_cosine_schedule_is_the_same_curve():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    for k in range(0, 101, 7):
        assert cosine_tau(k, 100, 0.99, 1.0) == pytest.approx(cosine(k / 100, 0.99, 1.0))
        set_cosine_lr(opt, k, 100, 0.3)  # the linear / fine-tune evaluation's lr
        assert opt.param_groups[0]["lr"] == pytest.approx(cosine(k / 100, 0.3, 0.0))
        # a whole warm-up: from step W the lr is the plain cosine from the base lr to min_lr
        k2 = 10 + k
        lr = warmup_cosine_lr(k2, 0.4, 110, 10, warmup_start_lr=3e-5, min_lr=0.01)
        assert lr == pytest.approx(cosine((k2 - 10) / 100, 0.4, 0.01))
