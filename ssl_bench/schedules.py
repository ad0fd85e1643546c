"""Schedules as pure functions of the step: one cosine, and the learning-rate and momentum schedules built on it.

Every schedule is stateless (a function of the optimizer step), so a resumed run continues it exactly.
"""

from __future__ import annotations

import math


def cosine(progress: float, start: float, end: float) -> float:
    """The half cosine from `start` (progress 0) to `end` (progress 1): end + (start - end) (1 + cos(pi p)) / 2.

    The one cosine of ssl_bench: the lr decay of warmup_cosine (SGDR, Loshchilov & Hutter 2017, eq. 5),
    BYOL's target momentum tau_k = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2 (Grill et al. 2020, sec. 3.2)
    and the linear-evaluation lr. Callers clamp `progress` where the schedule must hold its end value;
    solo-learn's fractional warm-up evaluates it slightly before 0 (see optim.warmup_cosine_lr).
    """
    return end + (start - end) * (1.0 + math.cos(math.pi * progress)) / 2.0
