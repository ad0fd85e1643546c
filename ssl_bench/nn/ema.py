"""Exponential moving averages of networks (BYOL / MoCo target encoders) and the tau schedule."""

from __future__ import annotations

import copy

import torch
from torch import nn

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
    """BYOL's schedule: tau = 1 - (1 - base) * (cos(pi * k / K) + 1) / 2, rising from base to final."""
    if total_steps <= 0:
        return base_tau
    return cosine(min(1.0, max(0.0, step / total_steps)), base_tau, final_tau)
