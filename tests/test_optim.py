"""Optimizers and schedules against literal transcriptions of their sources.

References (transcribed below, inside the tests, as the yardsticks):
  * LARS: vturrisi/solo-learn solo/utils/lars.py @ 9187ea39c2c3f43c455ab06664d2b019a9802954
    (`LARS.step`).
  * warm-up + cosine: solo-learn solo/utils/lr_scheduler.py @ 9187ea3
    (`LinearWarmupCosineAnnealingLR.get_lr`, the chained form Lightning calls every step) with
    solo/methods/base.py's arguments.
  * warm-up + steps: Philip-Bachman/amdim-public task_self_supervised.py @ 8754ae1 (`_train`,
    `train_self_supervised`).
  * Adam with L2 weight decay (AMDIM's optimizer, ibid.): Kingma & Ba 2015, Algorithm 1, with the
    decay added to the gradient (g <- g + wd * w) as torch.optim.Adam documents it.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from ssl_bench.config import CONFIG_DIR
from ssl_bench.data.info import DataInfo
from ssl_bench.errors import ConfigError
from ssl_bench.optim import (
    ALL_OPTIMIZER_KEYS,
    LARS,
    OPTIMIZER_KEYS,
    build_optimizer,
    optimizer_options,
    split_decay_groups,
)
from ssl_bench.schedules import (
    ALL_SCHEDULER_KEYS,
    scheduler_options,
    warmup_cosine_lr,
    warmup_overshoot,
    warmup_step_factor,
)


# ---- LARS ----------------------------------------------------------------------------------------
@torch.no_grad()
def solo_lars_step(
    params,
    state,
    lr,
    momentum,
    weight_decay,
    eta,
    eps,
    clip_lr,
    exclude_bias_n_norm,
    nesterov=False,
    dampening=0.0,
):
    """solo-learn's LARS.step for one param group, transcribed line by line (host-side branches and
    all)."""
    for p in params:
        if p.grad is None:
            continue
        d_p = p.grad
        p_norm = torch.norm(p.data)
        g_norm = torch.norm(p.grad.data)
        if p.ndim != 1 or not exclude_bias_n_norm:
            if p_norm != 0 and g_norm != 0:
                lars_lr = p_norm / (g_norm + p_norm * weight_decay + eps)
                lars_lr *= eta
                if clip_lr:
                    lars_lr = min(lars_lr / lr, 1)
                d_p = d_p.add(p, alpha=weight_decay)
                d_p *= lars_lr
        if momentum != 0:
            param_state = state.setdefault(p, {})
            if "momentum_buffer" not in param_state:
                buf = param_state["momentum_buffer"] = torch.clone(d_p).detach()
            else:
                buf = param_state["momentum_buffer"]
                buf.mul_(momentum).add_(d_p, alpha=1 - dampening)
            if nesterov:
                d_p = d_p.add(buf, alpha=momentum)
            else:
                d_p = buf
        p.add_(d_p, alpha=-lr)


class Net(nn.Module):
    """Weights of different scales, biases, BatchNorm, a 0-D scalar, and a weight that starts at
    zero."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.bn = nn.BatchNorm1d(8)
        self.fc2 = nn.Linear(8, 3)
        self.scale = nn.Parameter(torch.tensor(2.0))
        self.zero = nn.Parameter(torch.zeros(3, 4))
        with torch.no_grad():
            self.fc2.weight.mul_(30.0)
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.5, 0.5)


def _grads(model: nn.Module, step: int) -> None:
    gen = torch.Generator().manual_seed(100 + step)
    for name, p in model.named_parameters():
        g = torch.randn(p.shape, generator=gen)
        if (name == "fc1.bias" and step == 1) or (name == "zero" and step == 3):
            g.zero_()  # a zero gradient: a plain step, no decay
        if name == "fc1.weight":
            g = g * 1e-3  # a small gradient: a large trust ratio, clipped when clip_lr
        p.grad = g


LARS_VARIANTS = {
    "plain": dict(clip_lr=False, exclude_bias_n_norm=False),
    "clip": dict(clip_lr=True, exclude_bias_n_norm=False),
    "exclude": dict(clip_lr=False, exclude_bias_n_norm=True),
    "clip_exclude_nesterov": dict(clip_lr=True, exclude_bias_n_norm=True, nesterov=True),
}


@pytest.mark.parametrize("variant", list(LARS_VARIANTS))
def test_lars_matches_solo_learn_step_by_step(variant):
    opts = dict(momentum=0.9, weight_decay=0.05, eta=0.02, eps=1e-8, nesterov=False)
    opts.update(LARS_VARIANTS[variant])
    torch.manual_seed(0)
    ours, ref = Net(), Net()
    ref.load_state_dict(ours.state_dict())
    opt = build_optimizer([{"params": list(ours.parameters())}], "lars", lr=0.5, **opts)
    assert isinstance(opt, LARS)
    ref_state: dict = {}
    for step, lr in enumerate(
        [0.5, 0.2, 1.0, 0.05, 0.3]
    ):  # the lr changes: clip_lr uses the current one
        opt.param_groups[0]["lr"] = lr
        _grads(ours, step)
        _grads(ref, step)
        opt.step()
        solo_lars_step(list(ref.parameters()), ref_state, lr, **opts)
        for (name, a), b in zip(ours.named_parameters(), ref.parameters()):
            assert torch.allclose(a, b, rtol=1e-6, atol=1e-7), f"step {step}: {name} differs"
    # the weight that started at zero moved (its norm is no longer 0) and every parameter was
    # updated
    assert ours.zero.norm() > 0


def test_lars_variants_really_differ():
    """The variants exercise what they claim: clip_lr binds for one layer (trust ratio > lr) and not
    for another, and the exclusion changes the 1-D updates."""
    finals = {}
    for variant, v in LARS_VARIANTS.items():
        torch.manual_seed(0)
        net = Net()
        opt = build_optimizer(
            [{"params": list(net.parameters())}],
            "lars",
            lr=0.2,
            momentum=0.9,
            weight_decay=0.05,
            eta=0.02,
            **v,
        )
        for step in range(3):
            _grads(net, step)
            opt.step()
        finals[variant] = {n: p.detach().clone() for n, p in net.named_parameters()}
    assert not torch.allclose(finals["plain"]["fc1.weight"], finals["clip"]["fc1.weight"])
    assert not torch.allclose(finals["plain"]["bn.weight"], finals["exclude"]["bn.weight"])
    torch.manual_seed(0)
    net = Net()
    _grads(net, 0)
    ratio = {
        n: 0.02 * p.detach().norm() / (p.grad.norm() + 0.05 * p.detach().norm())
        for n, p in net.named_parameters()
    }
    assert ratio["fc1.weight"] > 0.2 > ratio["fc2.weight"]  # lr 0.2: clipped, and not


def test_lars_group_without_adaptation_is_torch_sgd():
    """The online probe's group (`lars_adapt=False`, weight decay 0) steps exactly like torch
    SGD."""
    torch.manual_seed(0)
    a, b = nn.Linear(5, 3), nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    lars = build_optimizer(
        [{"params": list(a.parameters()), "lars_adapt": False, "weight_decay": 0.0}],
        "lars",
        lr=0.1,
        weight_decay=1e-2,
        momentum=0.9,
        clip_lr=True,
    )
    sgd = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    for step in range(4):
        _grads(a, step)
        _grads(b, step)
        lars.step()
        sgd.step()
    for x, y in zip(a.parameters(), b.parameters()):
        assert torch.allclose(x, y, atol=1e-7)


def test_lars_step_makes_no_host_sync(monkeypatch):
    net = Net()
    opt = build_optimizer(
        [{"params": list(net.parameters())}],
        "lars",
        lr=0.5,
        momentum=0.9,
        weight_decay=0.05,
        clip_lr=True,
        exclude_bias_n_norm=True,
    )
    _grads(net, 0)
    calls = []
    for name in ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__"):
        original = getattr(torch.Tensor, name)

        def patched(self, *a, __o=original, __n=name, **k):
            calls.append(__n)
            return __o(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, patched)
    opt.step()
    opt.step()
    assert calls == []


# ---- Adam: L2 weight decay inside the moments (AMDIM), AdamW: decoupled --------------------------
def adam_l2_reference(w, grads, lr, betas, eps, wd):
    """Kingma & Ba 2015, Algorithm 1, with L2 decay in the gradient: g_t = grad_t + wd * w_{t-1}."""
    b1, b2 = betas
    w, m, v = w.clone(), torch.zeros_like(w), torch.zeros_like(w)
    for t, grad in enumerate(grads, start=1):
        g = grad + wd * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        w = w - lr * m_hat / (v_hat.sqrt() + eps)
    return w


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_decays_inside_the_moments_and_adamw_decoupled(name):
    torch.manual_seed(0)
    w0 = torch.randn(5, 3)
    grads = [torch.randn(5, 3) for _ in range(4)]
    p = nn.Parameter(w0.clone())
    opt = build_optimizer(
        [{"params": [p]}], name, lr=0.01, weight_decay=0.1, betas=[0.8, 0.999], eps=1e-8
    )
    for g in grads:
        p.grad = g.clone()
        opt.step()
    coupled = adam_l2_reference(w0, grads, lr=0.01, betas=(0.8, 0.999), eps=1e-8, wd=0.1)
    assert torch.allclose(p.detach(), coupled, atol=1e-6) == (name == "adam")


# ---- weight-decay exclusion for SGD / Adam / AdamW -----------------------------------------------
@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_exclude_bias_n_norm_for_sgd_and_adamw(name):
    torch.manual_seed(0)
    net = Net()
    groups = [
        {"params": [p for n, p in net.named_parameters() if not n.startswith("fc2")]},
        {"params": list(net.fc2.parameters()), "fixed_lr": True},
        {
            "params": [nn.Parameter(torch.ones(2, 2)), nn.Parameter(torch.ones(2))],
            "weight_decay": 0.0,
            "lars_adapt": False,
            "is_probe": True,
        },
    ]
    extra = {"betas": (0.9, 0.999)} if name.startswith("adam") else {"momentum": 0.9}
    kept = build_optimizer(
        groups, name, lr=0.1, weight_decay=1e-3, exclude_bias_n_norm=False, **extra
    )
    # false: every parameter decayed (MoCo, InstDisc, CMC, SimSiam), the probe group untouched
    assert [len(g["params"]) for g in kept.param_groups] == [len(g["params"]) for g in groups]
    assert [g["weight_decay"] for g in kept.param_groups] == [1e-3, 1e-3, 0.0]
    split = build_optimizer(
        groups, name, lr=0.1, weight_decay=1e-3, exclude_bias_n_norm=True, **extra
    )
    decay = {id(p) for g in split.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    for n, p in net.named_parameters():
        assert (id(p) in decay) == (p.ndim > 1), n  # ndim <= 1 (the 0-D scalar too) get no decay
    fc2 = [g for g in split.param_groups if g.get("fixed_lr")]
    assert sorted(len(g["params"]) for g in fc2) == [
        1,
        1,
    ]  # fc2's weight and bias, the group's keys kept
    assert all("lars_adapt" not in g for g in split.param_groups)
    assert sum(1 for g in split.param_groups if g.get("is_probe")) == 1


def test_split_decay_groups():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    assert [len(g["params"]) for g in split_decay_groups(model, False)] == [4]
    groups = split_decay_groups(model, True)
    assert [len(g["params"]) for g in groups] == [1, 3] and groups[1]["weight_decay"] == 0.0


# ---- optimizer keys ------------------------------------------------------------------------------
def test_build_optimizer_checks_keys():
    params = [{"params": [nn.Parameter(torch.zeros(2, 2))]}]
    with pytest.raises(ConfigError, match="optimizer.lr"):
        build_optimizer(params, "sgd", lr=0.0)
    with pytest.raises(ConfigError, match="optimizer.name"):
        build_optimizer(params, "rmsprop", lr=0.1)
    with pytest.raises(ConfigError, match="optimizer.eta.*only for lars"):
        build_optimizer(params, "sgd", lr=0.1, eta=0.02)
    with pytest.raises(ConfigError, match="optimizer.betas"):
        build_optimizer(params, "lars", lr=0.1, betas=[0.9, 0.99])
    with pytest.raises(ConfigError, match="optimizer.momentum.*null"):
        build_optimizer(params, "lars", lr=0.1, momentum=None)
    with pytest.raises(ConfigError, match="optimizer.mommentum.*not an optimizer key"):
        build_optimizer(params, "sgd", lr=0.1, mommentum=0.9)
    with pytest.raises(ConfigError, match="optimizer.nesterov"):
        build_optimizer(params, "sgd", lr=0.1, momentum=0.0, nesterov=True)
    # nulls for keys the optimizer does not use are ignored
    opt = build_optimizer(
        params,
        "adamw",
        lr=0.1,
        momentum=None,
        nesterov=None,
        eta=None,
        clip_lr=None,
        betas=[0.8, 0.999],
        eps=1e-6,
    )
    assert opt.defaults["betas"] == (0.8, 0.999) and opt.defaults["eps"] == 1e-6


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def _preset(group: str, name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / group / f"{name}.yaml"))


def test_every_preset_lists_every_key_and_composing_leaves_nothing_stale():
    opt_names = sorted(p.stem for p in (Path(CONFIG_DIR) / "optimizer").glob("*.yaml"))
    sched_names = sorted(p.stem for p in (Path(CONFIG_DIR) / "scheduler").glob("*.yaml"))
    assert opt_names == sorted(OPTIMIZER_KEYS) and "warmup_step" in sched_names
    for n in opt_names:
        keys = {"name", "lr", "scale_lr", "weight_decay", *ALL_OPTIMIZER_KEYS}
        assert set(_preset("optimizer", n)) == keys, n
    for n in sched_names:
        assert set(_preset("scheduler", n)) == {"name", *ALL_SCHEDULER_KEYS}, n
    for group, names in (("optimizer", opt_names), ("scheduler", sched_names)):
        for a in names:
            for b in names:
                merged = OmegaConf.to_container(
                    OmegaConf.merge(_preset(group, a), _preset(group, b))
                )
                assert merged == _preset(group, b), (group, a, b)
    # the presets pick the sources' weight-decay exclusion
    excl = [
        _preset("optimizer", n)["exclude_bias_n_norm"] for n in ("sgd", "lars", "adam", "adamw")
    ]
    assert excl == [False, True, False, False]


EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_has_valid_optimizer_and_scheduler_keys(experiment):
    cfg = OmegaConf.to_container(_compose(f"experiment={experiment}"), resolve=True)
    o = {
        k: v
        for k, v in cfg["optimizer"].items()
        if k not in ("name", "lr", "scale_lr", "weight_decay")
    }
    optimizer_options(
        cfg["optimizer"]["name"], cfg["optimizer"]["lr"], cfg["optimizer"]["weight_decay"], o
    )
    scheduler_options(cfg["scheduler"])


def test_scheduler_options_checks_keys():
    base = _preset("scheduler", "warmup_cosine")
    with pytest.raises(ConfigError, match="scheduler.gamma.*only for warmup_step"):
        scheduler_options({**base, "gamma": 0.1})
    with pytest.raises(ConfigError, match="scheduler.warmup_start_factor.*not a scheduler key"):
        scheduler_options({**base, "warmup_start_factor": 0.0})
    with pytest.raises(ConfigError, match="scheduler.min_lr.*null"):
        scheduler_options({**base, "min_lr": None})
    with pytest.raises(ConfigError, match="scheduler.milestones"):
        scheduler_options({**_preset("scheduler", "warmup_step"), "milestones": [280, 250]})
    with pytest.raises(ConfigError, match="scheduler.name"):
        scheduler_options({"name": "cosine"})
    # warmup_steps set: warmup_epochs may be null
    name, opts = scheduler_options({**base, "warmup_epochs": None, "warmup_steps": 100})
    assert name == "warmup_cosine" and opts["warmup_steps"] == 100


# ---- schedules -----------------------------------------------------------------------------------
class SoloWarmupCosine:
    """LinearWarmupCosineAnnealingLR.get_lr (chained form) of solo-learn, transcribed; `lrs` plays
    the param groups' lr, `step()` what _LRScheduler.step does (last_epoch += 1, then get_lr)."""

    def __init__(self, base_lrs, warmup_epochs, max_epochs, warmup_start_lr=0.0, eta_min=0.0):
        self.base_lrs, self.warmup_epochs, self.max_epochs = (
            list(base_lrs),
            warmup_epochs,
            max_epochs,
        )
        self.warmup_start_lr, self.eta_min = warmup_start_lr, eta_min
        self.last_epoch = 0  # _LRScheduler.__init__ takes the first step
        self.lrs = self.get_lr()

    def step(self):
        self.last_epoch += 1
        self.lrs = self.get_lr()

    def get_lr(self):
        if self.last_epoch == 0:
            return [self.warmup_start_lr] * len(self.base_lrs)
        if self.last_epoch < self.warmup_epochs:
            return [
                lr + (base_lr - self.warmup_start_lr) / (self.warmup_epochs - 1)
                for base_lr, lr in zip(self.base_lrs, self.lrs)
            ]
        if self.last_epoch == self.warmup_epochs:
            return self.base_lrs
        if (self.last_epoch - 1 - self.max_epochs) % (
            2 * (self.max_epochs - self.warmup_epochs)
        ) == 0:
            return [
                lr
                + (base_lr - self.eta_min)
                * (1 - math.cos(math.pi / (self.max_epochs - self.warmup_epochs)))
                / 2
                for base_lr, lr in zip(self.base_lrs, self.lrs)
            ]
        return [
            (
                1
                + math.cos(
                    math.pi
                    * (self.last_epoch - self.warmup_epochs)
                    / (self.max_epochs - self.warmup_epochs)
                )
            )
            / (
                1
                + math.cos(
                    math.pi
                    * (self.last_epoch - self.warmup_epochs - 1)
                    / (self.max_epochs - self.warmup_epochs)
                )
            )
            * (lr - self.eta_min)
            + self.eta_min
            for lr in self.lrs
        ]


def solo_warmup_cosine_lrs(
    base_lrs, total, warmup_epochs, max_epochs, warmup_start_lr=3e-5, min_lr=0.0
):
    """The lr of every group at every optimizer step 0..total-1, with the arguments
    solo/methods/base.py passes: warm-up steps = warmup_epochs * estimated_stepping_batches /
    max_epochs, warmup_start_lr = the base lr when warmup_epochs is 0."""
    sched = SoloWarmupCosine(
        base_lrs,
        warmup_epochs * (total / max_epochs),
        total,
        warmup_start_lr if warmup_epochs > 0 else base_lrs[0],
        min_lr,
    )
    out = []
    for _ in range(total):
        out.append(list(sched.lrs))
        sched.step()
    return out


@pytest.mark.parametrize(
    "total,max_epochs,warmup_epochs",
    [
        (1000, 100, 10),  # whole warm-up: 100 steps
        (1000, 3, 1),  # fractional warm-up: 333.33 steps
        (500, 10, 0.25),  # 12.5 steps
        (200, 10, 1),  # 20 steps
        (50, 50, 1),  # one step
    ],
)
def test_warmup_cosine_matches_solo_learn(total, max_epochs, warmup_epochs):
    base, min_lr = 0.8, 1e-3
    ref = solo_warmup_cosine_lrs([base], total, warmup_epochs, max_epochs, 3e-5, min_lr)
    W = warmup_epochs * total / max_epochs
    ours = [warmup_cosine_lr(k, base, total, W, 3e-5, min_lr) for k in range(total)]
    for k, (a, (b,)) in enumerate(zip(ours, ref)):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), f"step {k}: {a} != {b}"


def test_warmup_cosine_without_warmup_starts_at_the_base_lr():
    ref = solo_warmup_cosine_lrs([0.5], 100, 0, 10)
    ours = [warmup_cosine_lr(k, 0.5, 100, 0.0) for k in range(100)]
    assert ours[0] == 0.5
    assert all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, (b,) in zip(ours, ref))


class FakeTrainer(SimpleNamespace):
    pass


def _scheduled_lrs(sched_cfg, groups, *, total, max_epochs, batches, max_steps=-1, optimizer="sgd"):
    """The lr of every group at every optimizer step, through SSLMethod._build_scheduler and
    LambdaLR."""
    from ssl_bench.methods.base import SSLMethod

    backbone = nn.Linear(2, 2)
    backbone.num_features = 2
    method = SSLMethod(
        backbone,
        data=DataInfo(num_classes=0),
        optimizer={"name": optimizer, "lr": 0.1},
        scheduler=sched_cfg,
    )
    method._trainer = FakeTrainer(
        estimated_stepping_batches=total,
        max_epochs=max_epochs,
        max_steps=max_steps,
        num_training_batches=batches,
        accumulate_grad_batches=1,
    )
    opt = torch.optim.SGD(groups, lr=groups[0]["lr"])
    sched = method._build_scheduler(opt)
    out = []
    for _ in range(total):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("warmup_epochs", [1, 0.5, 0])
def test_warmup_cosine_through_the_method_follows_solo_learn_per_group(warmup_epochs):
    """Each group follows solo-learn's schedule from its own base lr (the probe's 0.1 too), with the
    absolute warmup_start_lr; a fixed_lr group keeps its lr; 3 epochs of 77 steps (0.5 epoch: 38.5
    warm-up steps)."""
    cfg = {**_preset("scheduler", "warmup_cosine"), "warmup_epochs": warmup_epochs, "min_lr": 1e-3}
    groups = [
        {"params": [nn.Parameter(torch.zeros(1))], "lr": 0.6},
        {"params": [nn.Parameter(torch.zeros(1))], "lr": 0.1, "is_probe": True},
        {"params": [nn.Parameter(torch.zeros(1))], "lr": 0.6, "fixed_lr": True},
    ]
    ours = _scheduled_lrs(cfg, groups, total=231, max_epochs=3, batches=77)
    ref = solo_warmup_cosine_lrs([0.6, 0.1], 231, warmup_epochs, 3, 3e-5, 1e-3)
    if (
        warmup_epochs == 0
    ):  # solo-learn passes warmup_start_lr=lr, which its classifier group takes too;
        # here each group starts from its own base lr, as if it were the main group
        ref = [
            [a, b]
            for (a,), (b,) in zip(
                solo_warmup_cosine_lrs([0.6], 231, 0, 3, 3e-5, 1e-3),
                solo_warmup_cosine_lrs([0.1], 231, 0, 3, 3e-5, 1e-3),
            )
        ]
    for k, (a, b) in enumerate(zip(ours, ref)):
        assert math.isclose(a[0], b[0], rel_tol=1e-9) and math.isclose(a[1], b[1], rel_tol=1e-9), k
        assert a[2] == 0.6
    if warmup_epochs == 1:
        assert math.isclose(ours[0][0], 3e-5) and math.isclose(
            ours[76][0], 0.6
        )  # the warm-up ends at W - 1


def amdim_lrs(lr_real, steps_per_epoch, epochs=300, milestones=(250, 280), gamma=0.2):
    # gamma 0.2 and milestones [250, 280] over 300 epochs: the source's CIFAR-10 / CIFAR-100 /
    # STL-10 values
    """The lr of each optimizer step of AMDIM's `_train` loop with `train_self_supervised`'s
    scheduler, transcribed (a real torch MultiStepLR stepped with the finished epoch's index, as the
    source does)."""
    optimizer = torch.optim.Adam(
        [nn.Parameter(torch.zeros(1))], lr=lr_real, betas=(0.8, 0.999), weight_decay=1e-5, eps=1e-8
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(milestones), gamma=gamma
    )
    out, total_updates = [], 0
    for epoch in range(0, epochs):
        for _ in range(steps_per_epoch):
            if total_updates < 500:
                lr_scale = min(1.0, float(total_updates + 1) / 500.0)
                for pg in optimizer.param_groups:
                    pg["lr"] = lr_scale * lr_real
            out.append(optimizer.param_groups[0]["lr"])  # optim_inf.step() uses this lr
            total_updates += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # step(epoch) is deprecated in torch 2
            scheduler.step(epoch)
    return out


@pytest.mark.parametrize(
    "steps_per_epoch,epochs,milestones",
    [
        (250, 300, (250, 280)),  # CIFAR-10: 50k images / batch 200
        (500, 300, (250, 280)),
        (300, 300, (250, 280)),  # the warm-up ends mid-epoch
        (
            300,
            4,
            (0, 2),
        ),  # a milestone before the warm-up ends: the lr stays at base to the epoch's end
    ],
)
def test_warmup_step_matches_amdims_official_schedule(steps_per_epoch, epochs, milestones):
    ref = amdim_lrs(2e-4, steps_per_epoch, epochs, milestones)
    cfg = {**_preset("scheduler", "warmup_step"), "milestones": [m + 1 for m in milestones]}
    assert cfg["warmup_steps"] == 500 and cfg["gamma"] == 0.2
    if milestones == (250, 280):
        assert cfg["milestones"] == _preset("scheduler", "warmup_step")["milestones"] == [251, 281]
    groups = [{"params": [nn.Parameter(torch.zeros(1))], "lr": 2e-4}]
    ours = [
        lrs[0]
        for lrs in _scheduled_lrs(
            cfg,
            groups,
            total=epochs * steps_per_epoch,
            max_epochs=epochs,
            batches=steps_per_epoch,
            optimizer="adamw",
        )
    ]
    assert len(ours) == len(ref)
    bad = [k for k, (a, b) in enumerate(zip(ours, ref)) if not math.isclose(a, b, rel_tol=1e-12)]
    assert not bad, f"first differing step {bad[0]}: {ours[bad[0]]} != {ref[bad[0]]}"
    assert ref[0] == 2e-4 / 500


def test_warmup_step_epochs_or_steps():
    # 2 epochs of 250 steps = 500 steps; warmup_steps wins over warmup_epochs when both are set
    for k in (0, 100, 499, 500, 600):
        by_epochs = warmup_step_factor(k, 250, 2 * 250, [3], 0.5)
        assert by_epochs == min(1.0, (k + 1) / 500)
    cfg = {
        **_preset("scheduler", "warmup_step"),
        "warmup_epochs": 0.5,
        "warmup_steps": None,
        "milestones": [2],
    }
    groups = [{"params": [nn.Parameter(torch.zeros(1))], "lr": 1.0}]
    lrs = [x[0] for x in _scheduled_lrs(cfg, groups, total=40, max_epochs=4, batches=10)]
    assert lrs[:6] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    assert lrs[19] == 1.0 and lrs[20] == 0.2
    cfg["warmup_steps"] = 2
    lrs = [x[0] for x in _scheduled_lrs(cfg, groups, total=40, max_epochs=4, batches=10)]
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.0])


def test_constant_keeps_the_lr():
    groups = [{"params": [nn.Parameter(torch.zeros(1))], "lr": 0.3}]
    assert all(
        x == [0.3]
        for x in _scheduled_lrs(
            _preset("scheduler", "constant"), groups, total=20, max_epochs=2, batches=10
        )
    )


def test_warmup_overshoot_measures_the_peak_of_a_fractional_warmup():
    for W in (1.5, 12.5, 38.5, 100.0, 0.5):
        peak = max(warmup_cosine_lr(k, 1.0, 400, W, 0.0) for k in range(400))
        expected = peak if W >= 1 else warmup_cosine_lr(1, 1.0, 400, W, 0.0)
        assert math.isclose(warmup_overshoot(W, 0.0, 1.0), expected)
    assert warmup_overshoot(1.5, 0.0, 1.0) == 2.0 and warmup_overshoot(100, 3e-5, 0.5) == 1.0
