"""Schedules as pure functions of the optimizer step: one cosine, the learning-rate schedules built
on it (warm-up + cosine, warm-up + steps, constant), and the check of a scheduler config
(conf/scheduler).

Every schedule is stateless (a function of the step), so a resumed run continues it exactly. Each
follows a published implementation; the reference is named where it is used, and
tests/test_schedules.py compares against a literal transcription of it. The training run applies
them through a LambdaLR (SSLMethod._build_scheduler); the linear and fine-tune evaluations set the
lr from warmup_cosine_lr without warm-up, the plain cosine from the base lr to 0.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from ssl_bench.errors import ConfigError

SCHEDULERS = ("warmup_cosine", "warmup_step", "constant")

#: the keys each schedule uses beyond `name` (conf/scheduler presets list every one, null where
#: unused)
SCHEDULER_KEYS: dict[str, tuple[str, ...]] = {
    "warmup_cosine": ("warmup_epochs", "warmup_steps", "warmup_start_lr", "min_lr"),
    "warmup_step": ("warmup_epochs", "warmup_steps", "milestones", "gamma"),
    "constant": (),
}
ALL_SCHEDULER_KEYS = sorted({k for keys in SCHEDULER_KEYS.values() for k in keys})


def cosine(progress: float, start: float, end: float) -> float:
    """The half cosine from `start` (progress 0) to `end` (progress 1): end + (start - end) (1 +
    cos(pi p)) / 2.

    The one cosine of ssl_bench: the lr decay of warmup_cosine (SGDR, Loshchilov & Hutter 2017, eq.
    5), BYOL's target momentum tau_k = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2 (Grill et al. 2020,
    sec. 3.2) and the linear-evaluation lr. Callers clamp `progress` where the schedule must hold
    its end value; solo-learn's fractional warm-up evaluates it slightly before 0 (see
    warmup_cosine_lr).
    """
    return end + (start - end) * (1.0 + math.cos(math.pi * progress)) / 2.0


def warmup_cosine_lr(
    step: int,
    base_lr: float,
    total_steps: int,
    warmup_steps: float,
    warmup_start_lr: float = 3e-5,
    min_lr: float = 0.0,
) -> float:
    """The lr at `step` of solo-learn's warm-up + cosine: LinearWarmupCosineAnnealingLR (solo-learn
    solo/utils/lr_scheduler.py @ 9187ea3, from Lightning Bolts), stepped every optimizer step, in
    closed form.

    The source is recursive (each lr computed from the previous one); its closed form, exactly:
      * step 0: `warmup_start_lr` (the base lr when `warmup_steps` is 0, as solo/methods/base.py
        passes warmup_start_lr=lr when warmup_epochs is 0 - there the main lr for every group, so
        its classifier follows the backbone's lr; here each group starts from its own);
      * 0 < step < W: warmup_start_lr + step * (base - warmup_start_lr) / (W - 1) - the warm-up
        reaches the base lr at step W - 1, one step before the cosine starts (the source's
        off-by-one);
      * step == W (W whole): the base lr;
      * after: a cosine from the last lr `a` before it, min_lr + (lr_a - min_lr) * c(step) / c(a),
        where c(k) = 1 + cos(pi * (k - W) / (total - W)) and a = W when W is whole, else ceil(W) -
        1. For a whole W that is the familiar min_lr + (base - min_lr) * (1 + cos(pi (k - W) /
           (total - W))) / 2.
    W may be fractional (solo-learn: warmup_epochs * estimated_stepping_batches / max_epochs). Then
    the source's warm-up overshoots: the cosine starts from lr_a = base * (ceil(W) - 1) / (W - 1)
    (for a zero warmup_start_lr), and with W < 1 the lr stays near warmup_start_lr;
    `warmup_overshoot` measures it. Past `total_steps` the lr stays at `min_lr` (the source would
    rise again; no step uses it). The source's LightningModule multiplies warmup_start_lr and min_lr
    by accumulate_grad_batches (as its lr); here they are absolute, whatever the accumulation.
    """
    W = float(warmup_steps)
    if W <= 0:
        warmup_start_lr = base_lr
    if step == 0:
        return warmup_start_lr
    if step < W:
        return warmup_start_lr + step * (base_lr - warmup_start_lr) / (W - 1)
    span = total_steps - W
    if span <= 0:  # the warm-up covers the whole run
        return base_lr
    if W == int(W):
        anchor, anchor_lr = W, base_lr
    else:
        anchor = math.ceil(W) - 1
        anchor_lr = (
            warmup_start_lr + anchor * (base_lr - warmup_start_lr) / (W - 1)
            if anchor > 0
            else warmup_start_lr
        )
    k = min(step, total_steps)
    denom = cosine((anchor - W) / span, 1.0, 0.0)  # 1 for a whole W
    if denom <= 0:
        return min_lr
    return min_lr + (anchor_lr - min_lr) * cosine((k - W) / span, 1.0, 0.0) / denom


def warmup_overshoot(warmup_steps: float, warmup_start_lr: float, base_lr: float) -> float:
    """Peak lr / base lr of warmup_cosine_lr: 1 for a whole number of warm-up steps, more for a
    fractional one (the source's recursion, see warmup_cosine_lr), below 1 when W < 1."""
    W = float(warmup_steps)
    if W <= 0 or W == int(W):
        return 1.0
    anchor = math.ceil(W) - 1
    peak = (
        warmup_start_lr + anchor * (base_lr - warmup_start_lr) / (W - 1)
        if anchor > 0
        else warmup_start_lr
    )
    return peak / base_lr


def warmup_step_factor(
    step: int, steps_per_epoch: int, warmup_steps: float, milestones: Sequence[int], gamma: float
) -> float:
    """LR multiplier at `step` of a linear warm-up followed by step decay, in the form of the
    official AMDIM code (Philip-Bachman/amdim-public task_self_supervised.py @ 8754ae1):

      * warm-up, step < W: min(1, (step + 1) / W) - the first step already takes base / W;
      * until the end of the epoch the warm-up ended in: 1 (the source sets the lr only during the
        warm-up and at the end of an epoch, so the last warm-up value stays);
      * in epoch e (0-based) after that: gamma ** (number of milestones m <= e).
    The milestones follow torch's MultiStepLR stepped once after each epoch: milestone m decays the
    lr from epoch m on, after m epochs. AMDIM calls `scheduler.step(epoch)` with the index of the
    epoch just finished, which moves each decay one epoch later: its MultiStepLR(milestones=[250,
    280]) is milestones [251, 281] here (tests/test_optim.py transcribes the source's loop and
    compares).
    """
    W = float(warmup_steps)
    if step < W:
        return min(1.0, (step + 1) / W)
    epoch = step // steps_per_epoch
    if W > 0 and epoch == (math.ceil(W) - 1) // steps_per_epoch:
        return 1.0
    return gamma ** bisect.bisect_right(sorted(milestones), epoch)


def scheduler_options(cfg: dict) -> tuple[str, dict]:
    """Checks a scheduler config (conf/scheduler) and returns (name, the options it uses). Keys of
    other schedules must be null; `warmup_steps` may be null (then `warmup_epochs` gives the
    warm-up)."""
    cfg = dict(cfg)
    name = cfg.pop("name", "constant")
    if name not in SCHEDULER_KEYS:
        raise ConfigError(
            "scheduler.name",
            f"unknown scheduler '{name}'.",
            f"choose one of {', '.join(SCHEDULERS)}.",
        )
    used = SCHEDULER_KEYS[name]
    for key, value in cfg.items():
        if key not in ALL_SCHEDULER_KEYS:
            raise ConfigError(
                f"scheduler.{key}",
                "is not a scheduler key.",
                f"remove it; the keys are name, {', '.join(ALL_SCHEDULER_KEYS)}.",
            )
        if key not in used and value is not None:
            users = [n for n in SCHEDULERS if key in SCHEDULER_KEYS[n]]
            raise ConfigError(
                f"scheduler.{key}",
                f"has no meaning for scheduler '{name}' (only for "
                f"{', '.join(users)}), got {value!r}.",
                f"set scheduler.{key}=null.",
            )
    out = {k: cfg.get(k) for k in used}
    optional = {"warmup_steps"} | (
        {"warmup_epochs"} if out.get("warmup_steps") is not None else set()
    )
    for key in used:
        if key not in optional and out[key] is None:
            raise ConfigError(
                f"scheduler.{key}",
                f"is missing or null, but scheduler '{name}' uses it.",
                f"set it (see conf/scheduler/{name}.yaml).",
            )
    steps = out.get("warmup_steps")
    if steps is not None and (steps < 0 or steps != int(steps)):
        raise ConfigError("scheduler.warmup_steps", f"must be a whole number >= 0, got {steps}.")
    for key in ("warmup_epochs", "warmup_start_lr", "min_lr"):
        if out.get(key) is not None and out[key] < 0:
            raise ConfigError(f"scheduler.{key}", f"must be >= 0, got {out[key]}.")
    if name == "warmup_step":
        ms = list(out["milestones"])
        if any(int(m) != m or m < 0 for m in ms) or ms != sorted(ms):
            raise ConfigError(
                "scheduler.milestones",
                f"must be increasing whole epochs >= 0, got {ms}.",
                "e.g. scheduler.milestones=[251,281].",
            )
        if out["gamma"] <= 0:
            raise ConfigError(
                "scheduler.gamma", f"must be > 0, got {out['gamma']}.", "e.g. scheduler.gamma=0.2."
            )
        out["milestones"] = [int(m) for m in ms]
    return name, out
