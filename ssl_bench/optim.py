"""Optimisers (SGD, LARS, Adam, AdamW): the one builder of training and of the linear / fine-tune
evaluation, and the check of an optimizer config (conf/optimizer). The lr schedules live in
ssl_bench.schedules.

Each follows a published implementation exactly; the reference is named where it is used, and every
test in tests/test_optim.py compares against a literal transcription of that reference.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ssl_bench.errors import ConfigError

OPTIMIZERS = ("sgd", "lars", "adam", "adamw")

#: the keys each optimizer uses beyond name / lr / scale_lr / weight_decay, with the value a caller
#: that omits the key gets (the YAML presets in conf/optimizer list every key, null where unused)
OPTIMIZER_KEYS: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": 0.9, "nesterov": False, "exclude_bias_n_norm": False},
    "lars": {
        "momentum": 0.9,
        "nesterov": False,
        "eta": 0.02,
        "eps": 1e-8,
        "clip_lr": False,
        "exclude_bias_n_norm": False,
    },
    "adam": {"betas": (0.9, 0.999), "eps": 1e-8, "exclude_bias_n_norm": False},
    "adamw": {"betas": (0.9, 0.999), "eps": 1e-8, "exclude_bias_n_norm": False},
}
ALL_OPTIMIZER_KEYS = sorted({k for keys in OPTIMIZER_KEYS.values() for k in keys})


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al. 2017, arXiv:1708.03888,
    eq. 6), as solo-learn implements it (vturrisi/solo-learn solo/utils/lars.py @ 9187ea3, from
    Lightning Bolts).

    For every parameter p with gradient g, unless it is excluded:
        ratio = eta * ||p|| / (||g|| + weight_decay * ||p|| + eps)      (note: not ||g + wd p||)
        ratio = min(ratio / lr, 1)                                       (only with clip_lr)
        d = (g + weight_decay * p) * ratio
    A parameter with ||p|| = 0 or ||g|| = 0 takes d = g (no decay, no scaling). With
    `exclude_bias_n_norm` the 1-D parameters (biases, norm weights; `ndim == 1` as in the source, so
    a 0-D scalar is still adapted) take d = g as well. Then the momentum buffer (dampening 0, as the
    source's default): buf = momentum * buf + d, the first buffer being d itself; the update is buf
    (or d + momentum * buf with nesterov), times -lr.

    One addition: a group with `lars_adapt=False` takes torch SGD's step (d = g + weight_decay * p,
    no scaling); the online probe uses it, with weight decay 0. The source applies the trust ratio
    to every group, its classifier included.

    The source branches on `p_norm != 0` on the host; here the choice is a `torch.where` on the
    device, so a step never synchronises with the host (tests/test_no_host_sync.py).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.02,
        eps: float = 1e-8,
        clip_lr: bool = False,
        exclude_bias_n_norm: bool = False,
        nesterov: bool = False,
    ):
        if nesterov and momentum <= 0:
            raise ConfigError(
                "optimizer.nesterov",
                "Nesterov momentum needs a momentum > 0.",
                "set optimizer.momentum=0.9 or optimizer.nesterov=false.",
            )
        super().__init__(
            params,
            dict(
                lr=lr,
                momentum=momentum,
                weight_decay=weight_decay,
                eta=eta,
                eps=eps,
                clip_lr=clip_lr,
                exclude_bias_n_norm=exclude_bias_n_norm,
                nesterov=nesterov,
                lars_adapt=True,
            ),
        )

    def _coefficients(self, group: dict, params: list[torch.Tensor]) -> list[tuple]:
        """(a, b) for every parameter of `group`, with the step direction d = a * g + b * p:
        a = ratio, b = ratio * weight_decay for an adapted parameter with non-zero norms; a = 1,
        b = 0 for an excluded one or a zero norm (d = g); a = 1, b = weight_decay in a group
        without adaptation. Adapted parameters get 0-d tensors (computed on the device: no host
        synchronisation), the others Python floats."""
        wd = group["weight_decay"]
        if not group["lars_adapt"]:
            return [(1.0, wd)] * len(params)
        adapt = [not (group["exclude_bias_n_norm"] and p.ndim == 1) for p in params]
        a_params = [p for p, a in zip(params, adapt) if a]
        if not a_params:
            return [(1.0, 0.0)] * len(params)
        p_norms = torch._foreach_norm(a_params)
        g_norms = torch._foreach_norm([p.grad for p in a_params])
        out, k = [], 0
        for a in adapt:
            if not a:
                out.append((1.0, 0.0))
                continue
            pn, gn = p_norms[k], g_norms[k]
            k += 1
            ratio = pn / (gn + pn * wd + group["eps"]) * group["eta"]
            if group["clip_lr"]:
                ratio = torch.clamp(ratio / group["lr"], max=1.0)
            valid = (pn != 0) & (gn != 0)
            out.append((torch.where(valid, ratio, 1.0), torch.where(valid, ratio * wd, 0.0)))
        return out

    @torch.no_grad()
    def step(self, closure=None):
        """One step, parameter by parameter in place: the momentum buffer takes m * buf + a * g +
        b * p and the parameter its update, through in-place ops (mul_, addcmul_, add_) with no
        temporary the size of a parameter (the earlier step made three such temporaries and took
        3.5x as long over Barlow Twins' 150M weights; BENCHMARKS.md)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            lr, momentum = group["lr"], group["momentum"]
            for p, (a, b) in zip(params, self._coefficients(group, params)):
                g = p.grad
                if momentum == 0:  # p -= lr * (a g + b p)
                    _scale(p, b, -lr)
                    _add_scaled(p, g, a, -lr)
                    continue
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:  # the first buffer is d itself
                    buf = state["momentum_buffer"] = torch.mul(g, a).detach()
                    _add_scaled(buf, p, b, 1.0)
                else:  # buf = m buf + a g + b p
                    buf.mul_(momentum)
                    _add_scaled(buf, g, a, 1.0)
                    _add_scaled(buf, p, b, 1.0)
                if group["nesterov"]:  # p -= lr * (a g + b p + m buf)
                    _scale(p, b, -lr)
                    _add_scaled(p, g, a, -lr)
                    p.add_(buf, alpha=-lr * momentum)
                else:  # p -= lr * buf
                    p.add_(buf, alpha=-lr)
        return loss


def _add_scaled(x: torch.Tensor, y: torch.Tensor, c, value: float) -> None:
    """x += value * c * y in place, c a Python number or a 0-d tensor; nothing when c is 0."""
    if isinstance(c, torch.Tensor):
        x.addcmul_(y, c, value=value)
    elif c:
        x.add_(y, alpha=value * c)


def _scale(x: torch.Tensor, c, value: float) -> None:
    """x *= 1 + value * c in place (x += value * c * x, from x's old value); nothing when c is 0."""
    if isinstance(c, torch.Tensor) or c:
        x.mul_(1 + value * c)


def split_decay_groups(module: nn.Module, exclude_bias_and_norm: bool = True) -> list[dict]:
    """The trainable parameters of `module` as one group, or two when `exclude_bias_and_norm`: the
    weights, and the biases / norm parameters (ndim <= 1) with weight decay 0."""
    params = [p for p in module.parameters() if p.requires_grad]
    return (
        _split_bias_and_norm([{"params": params}])
        if exclude_bias_and_norm
        else [{"params": params}]
    )


def _split_bias_and_norm(groups: list[dict]) -> list[dict]:
    """Each group split into its ndim > 1 parameters and its ndim <= 1 ones, the latter with weight
    decay 0 and every other key kept (solo-learn solo/utils/misc.py
    remove_bias_and_norm_from_weight_decay @ 9187ea3). A group whose weight decay is already 0 is
    left whole."""
    out = []
    for g in groups:
        if g.get("weight_decay", None) == 0:
            out.append(g)
            continue
        keep = [p for p in g["params"] if p.ndim > 1]
        skip = [p for p in g["params"] if p.ndim <= 1]
        if keep or not skip:
            out.append({**g, "params": keep})
        if skip:
            out.append({**g, "params": skip, "weight_decay": 0.0})
    return out


def optimizer_options(name: str, lr: float, weight_decay: float, options: dict) -> dict:
    """Checks an optimizer config (the keys of conf/optimizer beyond name / lr / weight_decay /
    scale_lr) and returns the options `name` uses, defaults filled in. A key that `name` does not
    use must be null or absent; a key it uses may be absent (OPTIMIZER_KEYS gives the default) but
    not null."""
    if name not in OPTIMIZER_KEYS:
        raise ConfigError(
            "optimizer.name",
            f"unknown optimizer '{name}'.",
            f"choose one of {', '.join(OPTIMIZERS)}.",
        )
    if lr is None or lr <= 0:
        raise ConfigError(
            "optimizer.lr", f"must be positive, got {lr}.", "set optimizer.lr to e.g. 0.3."
        )
    if weight_decay is None or weight_decay < 0:
        raise ConfigError(
            "optimizer.weight_decay",
            f"must be >= 0, got {weight_decay}.",
            "set optimizer.weight_decay to e.g. 1e-5 (0 for none).",
        )
    used = OPTIMIZER_KEYS[name]
    kw = dict(used)
    for key, value in options.items():
        if key not in ALL_OPTIMIZER_KEYS:
            raise ConfigError(
                f"optimizer.{key}",
                "is not an optimizer key.",
                f"remove it; the keys are name, lr, scale_lr, weight_decay, "
                f"{', '.join(ALL_OPTIMIZER_KEYS)}.",
            )
        if key not in used:
            if value is not None:
                users = [n for n in OPTIMIZERS if key in OPTIMIZER_KEYS[n]]
                raise ConfigError(
                    f"optimizer.{key}",
                    f"has no meaning for optimizer '{name}' (only for "
                    f"{', '.join(users)}), got {value!r}.",
                    f"set optimizer.{key}=null.",
                )
            continue
        if value is None:
            raise ConfigError(
                f"optimizer.{key}",
                f"is null, but optimizer '{name}' uses it.",
                f"set it, e.g. optimizer.{key}={used[key]} (conf/optimizer/{name}.yaml).",
            )
        kw[key] = value
    if kw.get("nesterov") and kw["momentum"] <= 0:
        raise ConfigError(
            "optimizer.nesterov",
            "Nesterov momentum needs a momentum > 0.",
            "set optimizer.momentum=0.9 or optimizer.nesterov=false.",
        )
    if name == "lars" and (kw["eta"] <= 0 or kw["eps"] < 0):
        key = "optimizer.eta" if kw["eta"] <= 0 else "optimizer.eps"
        raise ConfigError(
            key,
            f"must be {'> 0' if key.endswith('eta') else '>= 0'}, got {kw[key[10:]]}.",
            "the presets use eta 0.02, eps 1e-8.",
        )
    if name in ("adam", "adamw") and len(kw["betas"]) != 2:
        raise ConfigError(
            "optimizer.betas",
            f"needs two values, got {list(kw['betas'])}.",
            "set optimizer.betas=[0.9,0.999].",
        )
    return kw


def build_optimizer(groups: list[dict], name: str, lr: float, weight_decay: float = 0.0, **options):
    """The optimizer `name` over `groups`, with the keys of conf/optimizer (see OPTIMIZER_KEYS).

    `exclude_bias_n_norm` means, for every optimizer, what its source does: LARS skips the trust
    ratio and weight decay of 1-D parameters inside the step (solo-learn's LARS
    `exclude_bias_n_norm`); SGD, Adam and AdamW get the ndim <= 1 parameters of every group put in a
    group of their own with weight decay 0 (solo-learn's `exclude_bias_n_norm_wd`). False decays
    every parameter, as MoCo, InstDisc, CMC, SimSiam and AMDIM do.

    `adam` is torch.optim.Adam: its weight decay is L2, added to the gradient before the moment
    estimates (AMDIM's official code: Adam(..., weight_decay=1e-5)); `adamw` decays decoupled (w -=
    lr wd w). Groups may carry `lr`, `weight_decay`, `lars_adapt` (LARS only; False for a plain SGD
    step) and bookkeeping keys (`fixed_lr`, `is_probe`), which the optimizer keeps.

    The options are checked by `optimizer_options`.
    """
    kw = optimizer_options(name, lr, weight_decay, options)
    if name == "lars":
        return LARS(
            groups,
            lr=lr,
            weight_decay=weight_decay,
            momentum=float(kw["momentum"]),
            eta=float(kw["eta"]),
            eps=float(kw["eps"]),
            clip_lr=bool(kw["clip_lr"]),
            exclude_bias_n_norm=bool(kw["exclude_bias_n_norm"]),
            nesterov=bool(kw["nesterov"]),
        )
    groups = [
        {k: v for k, v in g.items() if k != "lars_adapt"} for g in groups
    ]  # only LARS knows this key
    if kw["exclude_bias_n_norm"]:
        groups = _split_bias_and_norm(groups)
    if name == "sgd":
        return torch.optim.SGD(
            groups,
            lr=lr,
            momentum=float(kw["momentum"]),
            weight_decay=weight_decay,
            nesterov=bool(kw["nesterov"]),
            foreach=True,
        )
    betas = tuple(float(b) for b in kw["betas"])
    adam_class = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return adam_class(
        groups, lr=lr, weight_decay=weight_decay, betas=betas, eps=float(kw["eps"]), foreach=True
    )
