"""SSLMethod: the thin LightningModule every method extends.

It owns the backbone, the online linear probe (trained on detached features, its own lr, no weight
decay), optimizer and schedule building, the online kNN evaluation and the logging. A method adds its
heads in `__init__` and implements `training_loss(views, labels, index)`, returning a dict with
`loss`, `feats` (backbone features of the large crops, for the probe) and any loss terms to log.
"""
from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from pytorch_lightning.utilities import rank_zero_warn
from torchmetrics.classification import MulticlassAccuracy

from ssl_bench.errors import ConfigError
from ssl_bench.eval.knn import knn_accuracy
from ssl_bench.nn.multicrop import BN_STATS, forward_views
from ssl_bench.optim import SCHEDULERS, build_optimizer, split_decay_groups, warmup_cosine


def _rng_states() -> dict[str, Any]:
    """The global RNG states, as tensors and plain numbers (checkpoints load with weights_only=True)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {"torch": torch.get_rng_state(), "python": [version, list(py_state), py_gauss],
            "numpy": [torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    version, py_state, py_gauss = states["python"]
    random.setstate((version, tuple(py_state), py_gauss))
    keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


def embedding_std(z: torch.Tensor) -> torch.Tensor:
    """Mean per-dimension std of L2-normalised embeddings: ~1/sqrt(d) when healthy, 0 when collapsed."""
    return F.normalize(z.detach().float(), dim=1).std(dim=0).mean()


class SSLMethod(pl.LightningModule):
    #: smallest per-device batch the loss is defined for (contrastive losses need negatives)
    min_batch_size: int = 1
    #: how many leading views are large crops the backbone sees at full resolution
    num_large_crops: int = 2

    def __init__(self, backbone: nn.Module, num_classes: int = 0, optimizer: dict | None = None,
                 scheduler: dict | None = None, probe_lr: float = 0.1, knn_k: int = 200, knn_t: float = 0.1,
                 bn_stats: str = "per_view"):
        super().__init__()
        self.save_hyperparameters(ignore=["backbone"])
        self.backbone = backbone
        self.feat_dim = int(backbone.num_features)
        self.num_classes = int(num_classes)
        self.optim_cfg = dict(optimizer or {"name": "sgd", "lr": 0.1})
        self.sched_cfg = dict(scheduler or {"name": "constant"})
        if probe_lr <= 0:
            raise ConfigError("online_eval.probe_lr", f"must be positive, got {probe_lr}.")
        if knn_k < 1 or knn_t <= 0:
            raise ConfigError("online_eval.knn_k" if knn_k < 1 else "online_eval.knn_t",
                              f"kNN needs k >= 1 and temperature > 0 (got k={knn_k}, t={knn_t}).")
        self.probe_lr, self.knn_k, self.knn_t = probe_lr, knn_k, knn_t
        if bn_stats not in BN_STATS:
            raise ConfigError("method.bn_stats", f"must be one of {', '.join(BN_STATS)}, got '{bn_stats}'.",
                              "per_view: one network call per view (BN statistics per view); joint: the "
                              "views of one resolution in one call (BN over all of them).")
        self.bn_stats = bn_stats
        if self.num_classes > 0:
            self.probe = nn.Linear(self.feat_dim, self.num_classes)
            self.probe_top1 = MulticlassAccuracy(self.num_classes, top_k=1)
        else:
            self.probe = None
        self.metric_suffix = ""          # "_init" while the random-init baseline is evaluated
        self.nan_tolerance = 0           # consecutive non-finite steps to skip before stopping (set by train.py)
        self._bad_steps = 0
        self.last_loss_terms: dict[str, torch.Tensor] = {}
        self.knn_init: float | None = None
        self._val_store: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {0: [], 1: []}

    # ---- to implement -------------------------------------------------------------------------
    def training_loss(self, views: list[torch.Tensor], labels: torch.Tensor, index: torch.Tensor) -> dict:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features (the representation that is evaluated)."""
        return self.backbone(x)

    def forward_views(self, fn, views: list[torch.Tensor], splits: int = 1) -> list:
        """`fn` (a network with BatchNorm: backbone, head) over every view, one output per view, grouped into
        calls by `bn_stats`: per_view, one call per view; joint, one call per resolution (nn/multicrop.py).
        The same grouping on every device. `splits` > 1 simulates that many devices (SplitBatchNorm)."""
        return forward_views(fn, views, joint=self.bn_stats == "joint", splits=splits)

    # ---- training ---------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        views, labels, index = batch
        out = self.training_loss(views, labels, index)
        loss = out.pop("loss")
        feats = out.pop("feats")
        self.last_loss_terms = {"loss": loss, **out}
        self.last_loss_step = self.global_step
        if self.nan_tolerance > 0 and not torch.isfinite(loss):  # a host sync, only when skipping is asked for
            self._bad_steps += 1
            if self._bad_steps > self.nan_tolerance:
                return loss  # NonFiniteGuard stops the run with the step, epoch and terms
            rank_zero_warn(f"non-finite loss at step {self.global_step}: skipped "
                           f"({self._bad_steps}/{self.nan_tolerance} consecutive)")
            return None  # Lightning skips backward and the optimizer step
        self._bad_steps = 0
        total = loss
        if self.probe is not None:
            probe_labels = labels.repeat(feats.shape[0] // labels.shape[0])
            logits = self.probe(feats.detach())
            labelled = (probe_labels >= 0).sum().clamp(min=1)
            probe_loss = F.cross_entropy(logits.float(), probe_labels, ignore_index=-1, reduction="sum") / labelled
            total = loss + probe_loss
            self.log("train/probe_loss", probe_loss)
        self.log("train/loss", loss, prog_bar=True)
        for name, value in out.items():
            self.log(f"train/{name}", value)
        self.log("lr", self.optimizers().param_groups[0]["lr"], prog_bar=False)
        return total

    def optimizer_step(self, *args, **kwargs):
        super().optimizer_step(*args, **kwargs)
        self.after_optimizer_step()

    def after_optimizer_step(self) -> None:
        """Called after every real optimizer step (not on accumulation-only batches): EMA targets go here."""

    # ---- online evaluation ------------------------------------------------------------------
    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        x, labels, _ = batch
        feats = self(x).float()              # forward(): the representation a method evaluates
        self._val_store[dataloader_idx].append((feats, labels))
        if dataloader_idx == 1 and self.probe is not None:
            self.probe_top1.update(self.probe(feats).float(), labels)

    def on_validation_epoch_end(self):
        bank, test = self._val_store[0], self._val_store[1]
        self._val_store = {0: [], 1: []}
        if self.num_classes == 0 or not bank or not test:
            return
        bank_f, bank_y = torch.cat([f for f, _ in bank]), torch.cat([y for _, y in bank])
        test_f, test_y = torch.cat([f for f, _ in test]), torch.cat([y for _, y in test])
        if self.trainer.world_size > 1:
            bank_f, bank_y, test_f, test_y = (self.all_gather(t).flatten(0, 1) for t in (bank_f, bank_y, test_f, test_y))
        top1, top5 = knn_accuracy(test_f, test_y, bank_f, bank_y, self.num_classes, self.knn_k, self.knn_t)
        s = self.metric_suffix
        self.log(f"val/knn_top1{s}", top1, prog_bar=True)
        self.log(f"val/knn_top5{s}", top5)
        if self.probe is not None:
            self.log(f"val/probe_top1{s}", 100.0 * self.probe_top1.compute())
            self.probe_top1.reset()
        if s == "_init":
            self.knn_init = top1

    # ---- optimisation -----------------------------------------------------------------------
    def parameter_groups(self, exclude_bias_and_norm: bool) -> list[dict]:
        """Groups for every trainable module except the probe. Methods override to add special groups
        (e.g. a predictor with a fixed lr: mark its group with `fixed_lr: True`)."""
        modules = nn.ModuleDict({n: m for n, m in self.named_children() if n not in ("probe", "probe_top1")})
        return split_decay_groups(modules, exclude_bias_and_norm)

    def configure_optimizers(self):
        cfg = dict(self.optim_cfg)
        name, lr = cfg.pop("name"), float(cfg.pop("lr"))
        scale_lr = cfg.pop("scale_lr", False)
        exclude = cfg.pop("exclude_bias_n_norm", True)
        if scale_lr:
            batch = getattr(self.trainer.datamodule, "batch_size", 256)
            lr = lr * batch * self.trainer.world_size * self.trainer.accumulate_grad_batches / 256
        groups = self.parameter_groups(exclude)
        if self.probe is not None:
            groups.append({"params": list(self.probe.parameters()), "lr": self.probe_lr, "weight_decay": 0.0,
                           "lars_adapt": False, "is_probe": True})
        optimizer = build_optimizer(groups, name, lr, **cfg)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": self._build_scheduler(optimizer), "interval": "step"}}

    def _build_scheduler(self, optimizer):
        cfg = dict(self.sched_cfg)
        name = cfg.pop("name", "constant")
        if name not in SCHEDULERS:
            raise ConfigError("scheduler.name", f"unknown scheduler '{name}'.", f"choose one of {', '.join(SCHEDULERS)}.")
        total = int(self.trainer.estimated_stepping_batches)
        if name == "constant":
            fn = lambda step: 1.0  # noqa: E731
        else:
            max_epochs = self.trainer.max_epochs or 0
            if self.trainer.max_steps and self.trainer.max_steps > 0 or max_epochs <= 0:
                per_epoch = max(1, math.ceil(self.trainer.num_training_batches / self.trainer.accumulate_grad_batches)) \
                    if math.isfinite(self.trainer.num_training_batches) else total
            else:
                per_epoch = max(1, total // max_epochs)
            warmup = int(round(float(cfg.get("warmup_epochs", 0)) * per_epoch))
            start, floor = float(cfg.get("warmup_start_factor", 0.0)), float(cfg.get("min_lr_factor", 0.0))
            fn = lambda step: warmup_cosine(step, total, warmup, start, floor)  # noqa: E731
        fns = [(lambda step: 1.0) if g.get("fixed_lr") else fn for g in optimizer.param_groups]
        return torch.optim.lr_scheduler.LambdaLR(optimizer, fns)

    # ---- checkpoint extras ------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the global RNGs too (negative sampling, shuffled BN ...): a resumed run continues the same stream
        checkpoint["ssl_bench"] = {"knn_init": self.knn_init, "rng": _rng_states()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        extra = checkpoint.get("ssl_bench", {})
        self.knn_init = extra.get("knn_init")
        if extra.get("rng") is not None:
            _restore_rng_states(extra["rng"])
