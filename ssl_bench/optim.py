"""Optimisers and learning-rate schedules: SGD, LARS, AdamW; linear warm-up then cosine."""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from ssl_bench.errors import ConfigError

OPTIMIZERS = ("sgd", "lars", "adamw")
SCHEDULERS = ("warmup_cosine", "constant")


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al. 2017).

    Groups with `lars_adapt=False` (biases and norm parameters, and the online probe) take plain SGD
    steps. The trust ratio `eta * ||w|| / ||g + wd w||` is computed on the device with `torch.where`,
    so a step never synchronises with the host.
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.02, nesterov: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta,
                                      nesterov=nesterov, lars_adapt=True))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            if group["lars_adapt"]:
                p_norms = torch._foreach_norm(params)
                g_norms = torch._foreach_norm(grads)
                scaled = []
                for g, pn, gn in zip(grads, p_norms, g_norms):
                    ratio = torch.where((pn > 0) & (gn > 0), group["eta"] * pn / gn, torch.ones_like(pn))
                    scaled.append(g * ratio)
                grads = scaled
            bufs = []
            for p, g in zip(params, grads):
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = g.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(g)
                bufs.append(state["momentum_buffer"])
            if group["nesterov"]:
                updates = torch._foreach_add(grads, bufs, alpha=group["momentum"])
            else:
                updates = bufs
            torch._foreach_add_(params, updates, alpha=-group["lr"])
        return loss


def split_decay_groups(module: nn.Module, exclude_bias_and_norm: bool = True) -> list[dict]:
    """Two parameter groups: weights, and biases / norm parameters (1-D) that skip decay and LARS."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if exclude_bias_and_norm and p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lars_adapt": False})
    return groups


def build_optimizer(groups: list[dict], name: str, lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
                    eta: float = 0.02, betas: tuple[float, float] = (0.9, 0.999), nesterov: bool = False):
    if lr <= 0:
        raise ConfigError("optimizer.lr", f"must be positive, got {lr}.", "set optimizer.lr to e.g. 0.3.")
    if weight_decay < 0:
        raise ConfigError("optimizer.weight_decay", f"must be >= 0, got {weight_decay}.")
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, nesterov=nesterov)
    for g in groups:  # only LARS knows this key
        g.pop("lars_adapt", None)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                               foreach=True)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, betas=tuple(betas), foreach=True)
    raise ConfigError("optimizer.name", f"unknown optimizer '{name}'.", f"choose one of {', '.join(OPTIMIZERS)}.")


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, start_factor: float = 0.0,
                  min_factor: float = 0.0) -> float:
    """LR multiplier: linear from `start_factor` to 1 over `warmup_steps`, then cosine down to `min_factor`."""
    if warmup_steps > 0 and step < warmup_steps:
        return start_factor + (1.0 - start_factor) * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
