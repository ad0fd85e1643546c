"""Offline linear evaluation and fine-tuning of a pretrained backbone.

Linear protocol (SimCLR appendix B.6, MoCo v3 / MAE for the BN): the backbone is frozen - eval mode,
so BatchNorm statistics stay as trained, and requires_grad False - and a linear classifier (after a
parameter-free BatchNorm of the features, `feature_norm`) is trained with SGD + momentum and a cosine
schedule on random-resized-crop + flip views of the train split, then top-1/top-5 on the test split.

`cache_features=true` computes the features of the un-augmented train images once and trains the
head on those: an lr sweep then takes seconds, at the cost of the augmentation (usually a point or
two of accuracy). Fine-tuning trains the backbone too (its own copy; the checkpoint is never written).
"""
from __future__ import annotations

import copy
import time
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssl_bench.eval.common import SplitBatches, augment_pipeline, cosine_lr, extract_features, topk_correct
from ssl_bench.optim import build_optimizer


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


def make_optimizer(params, name: str, lr: float, momentum: float, weight_decay: float):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "lars":  # the SimCLR/BYOL large-batch linear recipe
        return build_optimizer([{"params": list(params)}], "lars", lr, momentum=momentum, weight_decay=weight_decay)
    from ssl_bench.errors import ConfigError

    raise ConfigError("optimizer", f"unknown optimizer {name!r}.", "use sgd or lars.")


@torch.no_grad()
def evaluate(predict, batches: SplitBatches) -> dict[str, float]:
    top1 = top5 = n = 0
    for x, y in batches(shuffle=False):
        c1, c5 = topk_correct(predict(x).float(), y)
        top1, top5, n = top1 + c1, top5 + c5, n + y.numel()
    return {"top1": 100.0 * top1 / max(n, 1), "top5": 100.0 * top5 / max(n, 1)}


def train_linear_on_features(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                             test_y: torch.Tensor, num_classes: int, epochs: int = 100, lr: float = 0.1,
                             batch_size: int = 256, momentum: float = 0.9, weight_decay: float = 0.0,
                             optimizer: str = "sgd", feature_norm: bool = True, seed: int = 0) -> dict:
    """Train a linear head on fixed features; {'top1', 'top5', 'train_top1'} in percent."""
    torch.manual_seed(seed)
    head = LinearHead(train_x.shape[1], num_classes, feature_norm).to(train_x.device)
    opt = make_optimizer(head.parameters(), optimizer, lr, momentum, weight_decay)
    n = train_x.shape[0]
    bs = min(batch_size, n)
    steps_per_epoch = max(1, n // bs)
    total, step = epochs * steps_per_epoch, 0
    gen = torch.Generator().manual_seed(seed)
    head.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).to(train_x.device)
        for i in range(steps_per_epoch):
            idx = order[i * bs:(i + 1) * bs]
            for g in opt.param_groups:
                g["lr"] = cosine_lr(step, total, lr)
            loss = F.cross_entropy(head(train_x[idx]), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    head.eval()
    with torch.no_grad():
        test_logits = torch.cat([head(test_x[i:i + 4096]) for i in range(0, test_x.shape[0], 4096)])
        train_logits = torch.cat([head(train_x[i:i + 4096]) for i in range(0, n, 4096)])
    c1, c5 = topk_correct(test_logits, test_y)
    t1, _ = topk_correct(train_logits, train_y)
    return {"top1": 100.0 * c1 / test_y.numel(), "top5": 100.0 * c5 / test_y.numel(), "train_top1": 100.0 * t1 / n}


def freeze(backbone: nn.Module) -> nn.Module:
    backbone.eval()
    backbone.requires_grad_(False)
    return backbone


def linear_eval(backbone: nn.Module, dm, num_classes: int, device: torch.device, epochs: int = 100,
                lr: float | Sequence[float] = 0.1, batch_size: int = 256, momentum: float = 0.9,
                weight_decay: float = 0.0, optimizer: str = "sgd", feature_norm: bool = True,
                cache_features: bool = False, crop_scale=(0.08, 1.0), hflip: float = 0.5, seed: int = 0,
                log=print) -> dict:
    """The linear protocol on a frozen `backbone` (left bit-identical). A list of lrs is a sweep; the
    result lists every lr and reports the best one (chosen on the test split: an optimistic number,
    as in most SSL papers; say so when you compare)."""
    lrs = [float(v) for v in (lr if isinstance(lr, (list, tuple)) else [lr])]
    freeze(backbone).to(device)
    started = time.time()
    test = SplitBatches(dm, "test", max(batch_size, 256), device)
    runs = []
    if cache_features:
        plain = SplitBatches(dm, "train", max(batch_size, 256), device)
        tr_x, tr_y = extract_features(backbone, plain)
        te_x, te_y = extract_features(backbone, test)
        for one in lrs:
            res = train_linear_on_features(tr_x, tr_y, te_x, te_y, num_classes, epochs, one, batch_size, momentum,
                                           weight_decay, optimizer, feature_norm, seed)
            log(f"linear (cached features) lr={one:g}: top1 {res['top1']:.2f} top5 {res['top5']:.2f}")
            runs.append({"lr": one, **res})
    else:
        aug = augment_pipeline(dm.eval_size, crop_scale, hflip)
        for one in lrs:
            torch.manual_seed(seed)
            train = SplitBatches(dm, "train", batch_size, device, augment=aug, seed=seed)
            head = LinearHead(int(backbone.num_features), num_classes, feature_norm).to(device)
            opt = make_optimizer(head.parameters(), optimizer, one, momentum, weight_decay)
            total, step = epochs * max(1, train.num_batches(drop_last=True)), 0
            for epoch in range(epochs):
                head.train()
                for x, y in train(shuffle=True, drop_last=True):
                    with torch.no_grad():
                        feats = backbone(x).float()
                    for g in opt.param_groups:
                        g["lr"] = cosine_lr(step, total, one)
                    loss = F.cross_entropy(head(feats), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    step += 1
                if epoch == epochs - 1 or (epoch + 1) % max(1, epochs // 5) == 0:
                    log(f"linear lr={one:g} epoch {epoch + 1}/{epochs}: loss {loss.item():.4f}")
            head.eval()
            res = evaluate(lambda x: head(backbone(x).float()), test)
            log(f"linear lr={one:g}: top1 {res['top1']:.2f} top5 {res['top5']:.2f}")
            runs.append({"lr": one, **res})
    best = max(runs, key=lambda r: r["top1"])
    return {"top1": best["top1"], "top5": best["top5"], "lr": best["lr"], "sweep": runs, "epochs": epochs,
            "optimizer": optimizer, "batch_size": batch_size, "weight_decay": weight_decay,
            "feature_norm": feature_norm, "cache_features": cache_features,
            "augmentation": None if cache_features else {"crop_scale": list(crop_scale), "hflip": hflip},
            "time_s": round(time.time() - started, 2)}


def finetune_eval(backbone: nn.Module, dm, num_classes: int, device: torch.device, epochs: int = 30,
                  lr: float = 0.05, batch_size: int = 256, momentum: float = 0.9, weight_decay: float = 5e-4,
                  optimizer: str = "sgd", crop_scale=(0.08, 1.0), hflip: float = 0.5, seed: int = 0,
                  log=print) -> dict:
    """Train a copy of the backbone and a linear head end to end (crop + flip views, SGD, cosine)."""
    if isinstance(lr, (list, tuple)):
        lr = lr[0]
    torch.manual_seed(seed)
    started = time.time()
    net = copy.deepcopy(backbone).to(device)
    net.requires_grad_(True)
    head = nn.Linear(int(net.num_features), num_classes).to(device)
    model = nn.Sequential(net, head)
    opt = make_optimizer(model.parameters(), optimizer, float(lr), momentum, weight_decay)
    train = SplitBatches(dm, "train", batch_size, device, augment=augment_pipeline(dm.eval_size, crop_scale, hflip),
                         seed=seed)
    test = SplitBatches(dm, "test", max(batch_size, 256), device)
    total, step = epochs * max(1, train.num_batches(drop_last=True)), 0
    for epoch in range(epochs):
        model.train()
        for x, y in train(shuffle=True, drop_last=True):
            for g in opt.param_groups:
                g["lr"] = cosine_lr(step, total, float(lr))
            loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        log(f"finetune epoch {epoch + 1}/{epochs}: loss {loss.item():.4f}")
    model.eval()
    res = evaluate(model, test)
    log(f"finetune: top1 {res['top1']:.2f} top5 {res['top5']:.2f}")
    return {**res, "lr": float(lr), "epochs": epochs, "optimizer": optimizer, "batch_size": batch_size,
            "weight_decay": weight_decay, "time_s": round(time.time() - started, 2)}
