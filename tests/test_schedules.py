"""The one cosine that the lr schedule, BYOL's momentum and the linear evaluation share."""

import math

import pytest

from ssl_bench.eval.common import cosine_lr
from ssl_bench.nn.ema import cosine_tau
from ssl_bench.schedules import cosine, warmup_cosine_lr


def test_cosine_endpoints_and_midpoint():
    assert cosine(0.0, 2.0, 0.5) == pytest.approx(2.0)
    assert cosine(0.5, 2.0, 0.5) == pytest.approx(1.25)
    assert cosine(1.0, 2.0, 0.5) == pytest.approx(0.5)
    assert cosine(0.25, 1.0, 0.0) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)


def test_every_cosine_schedule_is_the_same_curve():
    for k in range(0, 101, 7):
        assert cosine_tau(k, 100, 0.99, 1.0) == pytest.approx(cosine(k / 100, 0.99, 1.0))
        assert cosine_lr(k, 100, 0.3) == pytest.approx(cosine(k / 100, 0.3, 0.0))
        # a whole warm-up: from step W the lr is the plain cosine from the base lr to min_lr
        k2 = 10 + k
        lr = warmup_cosine_lr(k2, 0.4, 110, 10, warmup_start_lr=3e-5, min_lr=0.01)
        assert lr == pytest.approx(cosine((k2 - 10) / 100, 0.4, 0.01))
