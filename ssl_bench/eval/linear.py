"""Offline linear evaluation and fine-tuning of a pretrained method's representation.

The representation is the method's `forward` (ssl_bench.eval.representation.Representation), not its
bare backbone: CPC v2's pooled patch grid, SimCLR v2's projector layer, CMC's concatenated encoders.

Linear protocol (SimCLR appendix B.6, MoCo v3 / MAE for the BN): the method is frozen - eval mode,
so BatchNorm statistics stay as trained, and requires_grad False - and a linear classifier (after a
parameter-free BatchNorm of the features, `feature_norm`) is trained with SGD + momentum (or LARS,
the SimCLR / BYOL large-batch recipe) and a cosine schedule on random-resized-crop + flip views of
the train split, then top-1/top-5 on the test split. The optimizer is training's
(ssl_bench.optim.build_optimizer, one parameter group, no bias / norm exclusion), the schedule
training's warm-up cosine without warm-up (ssl_bench.schedules.warmup_cosine_lr: from the base lr to
0), set at every step.

`cache_features=true` computes the features of the un-augmented train images once and trains the
head on those: an lr sweep then takes seconds, at the cost of the augmentation (usually a point or
two of accuracy).

An lr list is chosen without the test split: each lr trains a head on the fit part of the train
split (stratified, seeded; splits.stratified_holdout) and is scored on its held-out part; the chosen
lr is then trained again on the whole train split, and only that head is scored on the test split.
(Most SSL papers pick the lr on the test split; that number is optimistic and is not what this
reports.)

Fine-tuning trains, on a copy, every parameter the representation depends on (those that get a
gradient from `forward`: the backbone, and e.g. SimCLR v2's first projector layer) plus a linear
head, at the run's precision; the checkpoint is never written.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssl_bench.eval.knn import topk_hits
from ssl_bench.eval.progress import EpochProgress
from ssl_bench.eval.representation import Representation, representation_parameters
from ssl_bench.eval.splits import SplitBatches, augment_pipeline, stratified_holdout
from ssl_bench.optim import build_optimizer
from ssl_bench.schedules import warmup_cosine_lr


class LinearHead(nn.Module):
    """BatchNorm1d(affine=False) (optional) + Linear: the MoCo v3 / MAE linear-probe head."""

    def __init__(self, dim: int, num_classes: int, feature_norm: bool = True):
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, affine=False) if feature_norm else nn.Identity()
        self.fc = nn.Linear(dim, num_classes)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x))


def set_cosine_lr(optimizer: torch.optim.Optimizer, step: int, total: int, base: float) -> None:
    """The lr of step `step` of `total`: the cosine from `base` to 0 (training's warm-up cosine, no
    warm-up)."""
    lr = warmup_cosine_lr(step, base, total, warmup_steps=0)
    for group in optimizer.param_groups:
        group["lr"] = lr


@torch.no_grad()
def head_accuracy(head: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """{'top1', 'top5'} in percent of a head on fixed features."""
    head.eval()
    logits = torch.cat([head(x[i : i + 4096]).float() for i in range(0, x.shape[0], 4096)])
    c1, c5 = (int(v) for v in topk_hits(logits, y).sum(0))
    return {"top1": 100.0 * c1 / max(y.numel(), 1), "top5": 100.0 * c5 / max(y.numel(), 1)}


def train_head_on_features(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    epochs: int = 100,
    lr: float = 0.1,
    batch_size: int = 256,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    optimizer: str = "sgd",
    feature_norm: bool = True,
    seed: int = 0,
) -> LinearHead:
    """A linear head trained on fixed features (SGD/LARS, cosine schedule, shuffled
    mini-batches)."""
    torch.manual_seed(seed)
    head = LinearHead(x.shape[1], num_classes, feature_norm).to(x.device)
    params = [{"params": list(head.parameters())}]
    opt = build_optimizer(params, optimizer, lr, weight_decay=weight_decay, momentum=momentum)
    n = x.shape[0]
    bs = min(batch_size, n)
    steps_per_epoch = max(1, n // bs)
    total, step = epochs * steps_per_epoch, 0
    gen = torch.Generator().manual_seed(seed)
    head.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).to(x.device)
        for i in range(steps_per_epoch):
            idx = order[i * bs : (i + 1) * bs]
            set_cosine_lr(opt, step, total, lr)
            loss = F.cross_entropy(head(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    return head.eval()


def train_linear_on_features(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    epochs: int = 100,
    lr: float = 0.1,
    batch_size: int = 256,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    optimizer: str = "sgd",
    feature_norm: bool = True,
    seed: int = 0,
) -> dict:
    """Train a linear head on fixed features; {'top1', 'top5', 'train_top1'} in percent."""
    head = train_head_on_features(
        train_x,
        train_y,
        num_classes,
        epochs,
        lr,
        batch_size,
        momentum,
        weight_decay,
        optimizer,
        feature_norm,
        seed,
    )
    train_top1 = head_accuracy(head, train_x, train_y)["top1"]
    return {**head_accuracy(head, test_x, test_y), "train_top1": train_top1}


def train_head_on_views(
    rep: Representation,
    dm,
    num_classes: int,
    indices: torch.Tensor | None,
    epochs: int,
    lr: float,
    batch_size: int,
    momentum: float,
    weight_decay: float,
    optimizer: str,
    feature_norm: bool,
    crop_scale,
    hflip: float,
    seed: int,
    log=print,
) -> LinearHead:
    """A linear head trained on the frozen representation of fresh random crop + flip views of the
    train split (or of its `indices`), one pass of the model per view."""
    torch.manual_seed(seed)
    views = augment_pipeline(dm.eval_size, crop_scale, hflip)
    train = SplitBatches(
        dm, "train", batch_size, rep.device, augment=views, seed=seed, indices=indices
    )
    head = LinearHead(rep.dim(dm), num_classes, feature_norm).to(rep.device)
    params = [{"params": list(head.parameters())}]
    opt = build_optimizer(params, optimizer, lr, weight_decay=weight_decay, momentum=momentum)
    per_epoch = max(1, train.num_batches(drop_last=True))
    total, step = epochs * per_epoch, 0
    part = "" if indices is None else f" (fit part, {len(indices)} images)"
    progress = EpochProgress(f"linear lr={lr:g}{part}", epochs, per_epoch, log)
    try:
        for epoch in range(epochs):
            head.train()
            for x, y in train(shuffle=True, drop_last=True):
                feats = rep(x)
                set_cosine_lr(opt, step, total, lr)
                loss = F.cross_entropy(head(feats), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                progress.step()
            progress.epoch_end(epoch, loss.item())
    finally:
        progress.close()
    return head.eval()


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    model.requires_grad_(False)
    return model


def linear_eval(
    rep: Representation,
    dm,
    num_classes: int,
    epochs: int = 100,
    lr: float | Sequence[float] = 0.1,
    batch_size: int = 256,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    optimizer: str = "sgd",
    feature_norm: bool = True,
    cache_features: bool = False,
    crop_scale=(0.08, 1.0),
    hflip: float = 0.5,
    seed: int = 0,
    select_fraction: float = 0.1,
    log=print,
) -> dict:
    """The linear protocol on the frozen representation `rep` (its model is left bit-identical).

    One lr: a head trained on the whole train split, scored on the test split. A list of lrs: chosen
    on a held-out `select_fraction` of the train split (see the module docstring), then the same."""
    lrs = [float(v) for v in (lr if isinstance(lr, (list, tuple)) else [lr])]
    freeze(rep.model)
    started = time.time()
    hyper = dict(
        epochs=epochs,
        batch_size=batch_size,
        momentum=momentum,
        weight_decay=weight_decay,
        optimizer=optimizer,
        feature_norm=feature_norm,
        seed=seed,
    )
    train_labels = SplitBatches(dm, "train", batch_size, rep.device).labels
    if cache_features:
        fit, heldout = _on_features(rep, dm, num_classes, hyper)
    else:
        fit, heldout = _on_views(rep, dm, num_classes, hyper, crop_scale, hflip, log)
    chosen, selection = lrs[0], None
    if len(lrs) > 1:
        chosen, selection = select_lr(lrs, train_labels, fit, heldout, select_fraction, seed, log)
    head = fit(chosen, None)  # the whole train split
    res = head_accuracy(head, *rep.features(dm, "test"))
    log(
        f"linear lr={chosen:g} (trained on the whole train split): test top1 {res['top1']:.2f} "
        f"top5 {res['top5']:.2f}"
    )
    return {
        "top1": res["top1"],
        "top5": res["top5"],
        "lr": chosen,
        "selection": selection,
        "epochs": epochs,
        "optimizer": optimizer,
        "batch_size": batch_size,
        "weight_decay": weight_decay,
        "feature_norm": feature_norm,
        "cache_features": cache_features,
        "augmentation": None
        if cache_features
        else {"crop_scale": list(crop_scale), "hflip": hflip},
        "time_s": round(time.time() - started, 2),
    }


def _on_features(
    rep: Representation, dm, num_classes: int, hyper: dict
) -> tuple[Callable, Callable]:
    """(fit(lr, train indices or None), heldout(head, train indices)) on the features of the
    un-augmented train images, computed once."""
    tr_x, tr_y = rep.features(dm, "train")

    def fit(one: float, idx: torch.Tensor | None) -> nn.Module:
        x, y = (tr_x, tr_y) if idx is None else (tr_x[idx], tr_y[idx])
        return train_head_on_features(x, y, num_classes, lr=one, **hyper)

    def heldout(head: nn.Module, idx: torch.Tensor) -> dict:
        return head_accuracy(head, tr_x[idx], tr_y[idx])

    return fit, heldout


def _on_views(
    rep: Representation, dm, num_classes: int, hyper: dict, crop_scale, hflip: float, log
) -> tuple[Callable, Callable]:
    """(fit, heldout) as _on_features, training on fresh crop + flip views of every pass; the
    held-out images are scored un-augmented."""

    def fit(one: float, idx: torch.Tensor | None) -> nn.Module:
        return train_head_on_views(
            rep, dm, num_classes, idx, lr=one, crop_scale=crop_scale, hflip=hflip, log=log, **hyper
        )

    def heldout(head: nn.Module, idx: torch.Tensor) -> dict:
        return head_accuracy(head, *rep.features(dm, "train", indices=idx))

    return fit, heldout


def select_lr(
    lrs: Sequence[float],
    train_labels: torch.Tensor,
    fit: Callable,
    heldout: Callable,
    fraction: float,
    seed: int,
    log=print,
) -> tuple[float, dict]:
    """The lr with the best held-out top-1 (the first of equals), from heads trained on the rest of
    the train split. `fit(lr, indices)` and `heldout(head, indices)` only ever see train-split
    images."""
    fit_idx, val_idx = stratified_holdout(train_labels, fraction, seed)
    grid = []
    for one in lrs:
        acc = heldout(fit(one, fit_idx), val_idx)
        log(f"linear lr={one:g}: held-out train top1 {acc['top1']:.2f}")
        grid.append({"lr": one, "heldout_top1": acc["top1"], "heldout_top5": acc["top5"]})
    chosen = max(grid, key=lambda r: r["heldout_top1"])["lr"]
    return chosen, {
        "chosen_on": "held-out part of the train split",
        "fraction": fraction,
        "seed": seed,
        "num_fit": int(fit_idx.numel()),
        "num_heldout": int(val_idx.numel()),
        "metric": "heldout_top1",
        "grid": grid,
        "chosen": {"lr": chosen},
        "then": "retrained on the whole train split; top1/top5 are its test accuracy",
    }


def finetune_eval(
    rep: Representation,
    dm,
    num_classes: int,
    epochs: int = 30,
    lr: float = 0.05,
    batch_size: int = 256,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    optimizer: str = "sgd",
    crop_scale=(0.08, 1.0),
    hflip: float = 0.5,
    seed: int = 0,
    log=print,
) -> dict:
    """Train a copy of the representation's parameters and a linear head end to end (crop + flip
    views, SGD, cosine), at the run's precision; score the test split."""
    torch.manual_seed(seed)
    started = time.time()
    model = copy.deepcopy(rep.model)
    tuned = Representation(model, rep.device, rep.precision, rep.channels_last, rep.batch_size)
    views = augment_pipeline(dm.eval_size, crop_scale, hflip)
    train = SplitBatches(dm, "train", batch_size, rep.device, augment=views, seed=seed)
    x0, _ = next(iter(SplitBatches(dm, "train", 2, rep.device)(shuffle=False)))
    params = representation_parameters(model, tuned.prepare(x0))
    model.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    trained = sorted(
        {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    )
    head = nn.Linear(rep.dim(dm), num_classes).to(rep.device)
    groups = [{"params": params + list(head.parameters())}]
    opt = build_optimizer(
        groups, optimizer, float(lr), weight_decay=weight_decay, momentum=momentum
    )
    scaler = (
        torch.amp.GradScaler(rep.device.type) if tuned.autocast_dtype == torch.float16 else None
    )
    per_epoch = max(1, train.num_batches(drop_last=True))
    total, step = epochs * per_epoch, 0
    progress = EpochProgress(f"finetune lr={float(lr):g}", epochs, per_epoch, log)
    try:
        for epoch in range(epochs):
            model.train()
            for x, y in train(shuffle=True, drop_last=True):
                set_cosine_lr(opt, step, total, float(lr))
                with tuned.autocast():
                    logits = head(model(tuned.prepare(x)))
                loss = F.cross_entropy(logits.float(), y)
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    opt.step()
                step += 1
                progress.step()
            progress.epoch_end(epoch, loss.item())
    finally:
        progress.close()
    model.eval()
    res = head_accuracy(head.float(), *tuned.features(dm, "test"))
    log(f"finetune: top1 {res['top1']:.2f} top5 {res['top5']:.2f}")
    return {
        **res,
        "lr": float(lr),
        "epochs": epochs,
        "optimizer": optimizer,
        "batch_size": batch_size,
        "weight_decay": weight_decay,
        "trained_modules": trained,
        "trained_parameters": int(sum(p.numel() for p in params)),
        "time_s": round(time.time() - started, 2),
    }
