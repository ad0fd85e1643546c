"""Momentum (EMA) targets: frozen copies of online networks that follow them by an exponential
moving average.

One mechanism for every momentum method (BYOL's target, MoCo's and SimCLR v2's key encoders; later
MoCo v3, DINO): a method copies its online modules with `make_target`, declares the (online, target)
pairs and one schedule in a `MomentumTargets`, and assigns it to `self.momentum_targets`. SSLMethod
then

* updates every pair after each real optimizer step (`after_optimizer_step`, never on a batch that
  only accumulates gradients), with tau of the step: target <- tau target + (1 - tau) online;
* logs `train/tau`, the tau the update after the current step applies.

The schedule is a function of (optimizer step, total steps) only - `base_tau`, or BYOL's cosine from
`base_tau` to `final_tau` (Grill et al. 2020, sec. 3.2), the one cosine of ssl_bench/schedules.py -
so a resumed run continues it exactly. `tau` always means the current value; `base_tau` the first.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from ssl_bench.errors import ConfigError
from ssl_bench.schedules import cosine


def make_target(online: nn.Module) -> nn.Module:
    """A frozen copy of `online`: no gradients ever reach it; it is updated only by `ema_update`."""
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- tau * target + (1 - tau) * online for every parameter (one fused foreach op);
    buffers (BatchNorm statistics) are copied from the online network."""
    t_params = [p for p in target.parameters()]
    o_params = [p.detach() for p in online.parameters()]
    if t_params:
        torch._foreach_lerp_(t_params, o_params, 1.0 - tau)
    for tb, ob in zip(target.buffers(), online.buffers()):
        tb.copy_(ob)


def cosine_tau(step: int, total_steps: int, base_tau: float, final_tau: float = 1.0) -> float:
    """BYOL's schedule: tau = 1 - (1 - base) * (cos(pi * k / K) + 1) / 2, rising from base to
    final."""
    if total_steps <= 0:
        return base_tau
    return cosine(min(1.0, max(0.0, step / total_steps)), base_tau, final_tau)


class MomentumTargets:
    """A method's (online, target) module pairs and the one tau schedule they follow.

    pairs: each target a `make_target` copy of its online module, registered on the method as a
    submodule of its own (so the method's checkpoint holds it; this object holds references only and
    has no state worth saving). base_tau: tau at the first step; final_tau: None (or base_tau) keeps
    tau constant (MoCo's m), a value ramps it on BYOL's cosine over all optimizer steps. A bad value
    is a ConfigError naming `method.<key>`; tau must lie in [0, 1] and may not decrease.

    Without a Trainer (tests, notebooks), the step is the count of updates made and the total is
    `total_steps` (0: tau stays at base_tau).
    """

    def __init__(
        self,
        pairs: Sequence[tuple[nn.Module, nn.Module]],
        base_tau: float,
        final_tau: float | None = None,
    ):
        for key, tau in (("base_tau", base_tau), ("final_tau", final_tau)):
            if tau is not None and not 0.0 <= tau <= 1.0:
                raise ConfigError(
                    f"method.{key}",
                    f"must lie in [0, 1], got {tau}.",
                    "use e.g. method.base_tau=0.99 (MoCo: 0.999) and method.final_tau=1.0 (BYOL's "
                    "cosine ramp) or null (a constant tau).",
                )
        if final_tau is not None and base_tau > final_tau:
            raise ConfigError(
                "method.base_tau",
                f"{base_tau} exceeds final_tau={final_tau}; tau must not decrease.",
                "set base_tau <= final_tau, or final_tau=null for a constant tau.",
            )
        for _, target in pairs:
            if any(p.requires_grad for p in target.parameters()):
                raise ValueError("a momentum target must be frozen: build it with make_target")
        self.pairs = list(pairs)
        self.base_tau, self.final_tau = float(base_tau), final_tau
        #: the tau of the latest update (base_tau before the first)
        self.tau = self.base_tau
        #: without a Trainer: the schedule's length, and the updates made so far (the step)
        self.total_steps, self.updates = 0, 0

    def tau_at(self, step: int, total_steps: int) -> float:
        """tau after optimizer step `step` (0-based) of `total_steps`: constant, or the cosine
        ramp."""
        if self.final_tau is None:
            return self.base_tau
        return cosine_tau(step, total_steps, self.base_tau, self.final_tau)

    @torch.no_grad()
    def update(self, step: int, total_steps: int) -> float:
        """EMA of every pair with the tau of `step`; returns that tau."""
        self.tau = self.tau_at(step, total_steps)
        for online, target in self.pairs:
            ema_update(target, online, self.tau)
        self.updates += 1
        return self.tau
