"""OnlineEval: the online linear probe and weighted kNN that follow a method through training.

A component a method owns (SSLMethod builds one from the run's `online_eval` config), in the shape
of lightly's OnlineLinearClassifier (lightly/utils/benchmarking/online_linear_classifier.py): the
method hands it the representation and the labels; it keeps its own parameters, metrics and
optimizer group. The probe is solo-learn's online classifier (solo/methods/base.py @ 9187ea3): a
linear layer trained on detached features with its own lr and no weight decay, so it measures the
representation without shaping it. The kNN is `ssl_bench.eval.knn.WeightedKNN`, the metric offline
`python -m ssl_bench.eval mode=knn` uses too, so online and offline kNN are one piece of code.

Its state-dict keys are `online_eval.probe.*`; checkpoints written while the probe lived on the
method itself hold `probe.*`, which SSLMethod maps on load (`LEGACY_PREFIX`).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from ssl_bench.errors import ConfigError
from ssl_bench.eval.knn import WeightedKNN

#: the attribute of SSLMethod that holds its OnlineEval, and so the prefix of its state-dict keys
PREFIX = "online_eval."
#: the prefix of the probe's keys in checkpoints written before OnlineEval existed
LEGACY_PREFIX = "probe."
#: the probe's lr when `online_eval.probe_lr` is null, by the run's optimizer. The probe shares the
#: method's optimizer (and its schedule), so its step is that optimizer's: SGD's 0.1 (solo-learn's
#: classifier_lr of its SGD/LARS CIFAR recipes) taken by Adam(W), whose step is ~lr per weight
#: whatever the gradient, made the probe's loss diverge on fmnist_mae (2.4 -> 6.9 in 30 steps);
#: 1e-3 is Adam's own default and a common linear-probe lr.
DEFAULT_PROBE_LR = {"sgd": 0.1, "lars": 0.1, "adam": 1.0e-3, "adamw": 1.0e-3}


class OnlineEval(nn.Module):
    """Online linear probe + weighted kNN over a `feat_dim`-wide representation.

    `probe` / `knn` switch either part off (`online_eval.probe=false`, `online_eval.knn=false`);
    `probe_norm` puts a BatchNorm without affine parameters before the probe (the config's null,
    the method's choice, is resolved by SSLMethod.build_online_eval);
    `init_baseline` asks the run to evaluate the random-init network before training
    (`val/<metric>_init`). Without labels (`num_classes` 0) nothing is measured.
    """

    def __init__(
        self,
        feat_dim: int,
        num_classes: int,
        probe: bool = True,
        probe_lr: float | None = None,
        probe_norm: bool = False,
        knn: bool = True,
        knn_k: int = 200,
        knn_t: float = 0.1,
        init_baseline: bool = True,
    ):
        super().__init__()
        if probe_lr is not None and probe_lr <= 0:
            raise ConfigError("online_eval.probe_lr", f"must be positive, got {probe_lr}.")
        if knn_k < 1 or knn_t <= 0:
            raise ConfigError(
                "online_eval.knn_k" if knn_k < 1 else "online_eval.knn_t",
                f"kNN needs k >= 1 and temperature > 0 (got k={knn_k}, t={knn_t}).",
            )
        self.num_classes = int(num_classes)
        self.probe_lr, self.knn_k, self.knn_t = probe_lr, knn_k, knn_t
        #: whether the run logs this evaluation of the random-init network before training
        self.init_baseline = bool(init_baseline)
        if probe and self.num_classes > 0:
            self.probe = nn.Linear(feat_dim, self.num_classes)
            #: BatchNorm without affine parameters before the probe (`probe_norm`), as MAE's
            #: linear probing (facebookresearch/mae@efb2a80 main_linprobe.py, eps 1e-6): each
            #: feature standardised by the batch's statistics in training, by the running ones in
            #: evaluation; still a linear map of the features
            self.probe_norm = (
                nn.BatchNorm1d(feat_dim, affine=False, eps=1e-6) if probe_norm else None
            )
            self.probe_top1 = MulticlassAccuracy(self.num_classes, top_k=1)
        else:
            self.probe = self.probe_norm = None
        # bank: validation dataloader 0 (train split), queries: dataloader 1 (test split)
        self.knn = WeightedKNN(self.num_classes, knn_k, knn_t) if knn else None
        #: appended to every metric name: "_init" inside `as_init_baseline()`
        self.metric_suffix = ""
        #: val/knn_top1_init of this run (None until measured; kept in checkpoints by SSLMethod)
        self.knn_init: float | None = None

    @classmethod
    def from_options(
        cls, feat_dim: int, num_classes: int, options: Mapping[str, Any] | None
    ) -> OnlineEval | None:
        """The OnlineEval of the `online_eval` config `options`; None when it is null or switches
        both parts off. An unknown key is a ConfigError naming it."""
        if options is None:
            return None
        known = [
            p
            for p in inspect.signature(cls.__init__).parameters
            if p not in ("self", "feat_dim", "num_classes")
        ]
        for key in options:
            if key not in known:
                raise ConfigError(
                    f"online_eval.{key}",
                    "is not an option of the online evaluation.",
                    f"use one of {', '.join(known)}, or online_eval=null to drop it.",
                )
        if not (options.get("probe", True) or options.get("knn", True)):
            return None
        return cls(feat_dim, num_classes, **options)

    @contextlib.contextmanager
    def as_init_baseline(self) -> Iterator[None]:
        """Metrics computed inside are the random-init baseline: named `val/<metric>_init`, and the
        kNN top-1 kept as `knn_init`."""
        self.metric_suffix = "_init"
        try:
            yield
        finally:
            self.metric_suffix = ""

    # ---- training ---------------------------------------------------------------------------
    def probe_loss(self, feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        """Cross-entropy of the probe on detached `feats` [V*B, D] (V views of B images, labels
        [B], -1 where unlabelled): the mean over the labelled rows; None without a probe."""
        if self.probe is None:
            return None
        probe_labels = labels.repeat(feats.shape[0] // labels.shape[0])
        logits = self.probe_logits(feats.detach())
        labelled = (probe_labels >= 0).sum().clamp(min=1)  # no host sync
        loss = F.cross_entropy(logits.float(), probe_labels, ignore_index=-1, reduction="sum")
        return loss / labelled

    def probe_logits(self, feats: torch.Tensor) -> torch.Tensor:
        """The probe's logits of `feats` [N, D], through `probe_norm` when there is one (batch
        statistics in train mode, the running ones in eval mode)."""
        if self.probe_norm is not None:
            feats = self.probe_norm(feats.float())
        return self.probe(feats)

    def resolved_probe_lr(self, optimizer: str) -> float:
        """`probe_lr`, or when None the default of the run's `optimizer` (DEFAULT_PROBE_LR)."""
        if self.probe_lr is not None:
            return float(self.probe_lr)
        if optimizer not in DEFAULT_PROBE_LR:
            raise ConfigError(
                "online_eval.probe_lr",
                f"has no default for optimizer {optimizer!r}.",
                "set online_eval.probe_lr to a positive lr.",
            )
        return DEFAULT_PROBE_LR[optimizer]

    def param_group(self, optimizer: str = "sgd") -> dict | None:
        """The probe's optimizer group under the run's `optimizer` (its name in conf/optimizer):
        plain SGD step (LARS: no trust ratio), its own lr (`resolved_probe_lr`), no weight decay;
        None without a probe."""
        if self.probe is None:
            return None
        return {
            "params": list(self.probe.parameters()),
            "lr": self.resolved_probe_lr(optimizer),
            "weight_decay": 0.0,
            "lars_adapt": False,
            "is_probe": True,
        }

    # ---- validation -------------------------------------------------------------------------
    def update(self, feats: torch.Tensor, labels: torch.Tensor, dataloader_idx: int) -> None:
        """One validation batch of the representation: dataloader 0 (the un-augmented train split)
        fills the kNN bank, dataloader 1 (the test split) queries it and scores the probe."""
        if self.knn is not None:
            self.knn.update(feats, labels, bank=dataloader_idx == 0)
        if dataloader_idx == 1 and self.probe is not None:
            self.probe_top1.update(self.probe_logits(feats).float(), labels)

    def _ready(self) -> bool:
        """Whether this epoch has anything to score on this rank."""
        if self.num_classes == 0:
            return False
        if self.knn is not None:
            return self.knn.ready
        return self.probe is not None and self.probe_top1.update_count > 0

    def compute(self) -> dict[str, Any]:
        """The epoch's metrics - `val/knn_top1`, `val/knn_top5` (percent, gathered from every rank),
        `val/probe_top1` (percent), each with `metric_suffix` - then resets; {} when nothing was
        scored."""
        if not self._ready():
            self.reset()
            return {}
        s, out = self.metric_suffix, {}
        if self.knn is not None:
            top1, top5 = self.knn.compute()
            out[f"val/knn_top1{s}"], out[f"val/knn_top5{s}"] = top1, top5
            if s == "_init":
                self.knn_init = top1
        if self.probe is not None:
            out[f"val/probe_top1{s}"] = 100.0 * self.probe_top1.compute()
        self.reset()
        return out

    def reset(self) -> None:
        if self.knn is not None:
            self.knn.reset()
        if self.probe is not None:
            self.probe_top1.reset()
