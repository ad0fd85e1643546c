"""SSLMethod: the thin LightningModule every method extends.

It owns the backbone, the online evaluation (`self.online_eval`, an OnlineEval of
ssl_bench.eval.online: linear probe on detached features and weighted kNN, or None when the run
drops it), optimizer and schedule building and the logging. A method adds its heads in `__init__`
and implements `training_loss(views, labels, index)`, returning a dict with `loss`,
`representation` (what `forward` gives, here for the large crops of the batch: the online probe
trains on it, detached) and any loss terms to log. A method with
momentum (EMA) targets declares them in `self.momentum_targets` (nn/ema.py); they are updated here
after every real optimizer step, and their tau is logged as `train/tau`. The common case, an EMA
copy of backbone + projector (BYOL's target network, MoCo's key encoder), is
`add_momentum_encoder`.

What crosses into the rest of ssl_bench is declared here: the constructor's arguments (data,
optimizer, schedule, online_eval, bn_stats, nan_tolerance), the step outputs callbacks read
(`training_step` returns `loss`, `loss_terms`, `loss_step`), `knn_init`, `compile_backbone()` and
`restore_run_state()`.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn

from ssl_bench.data.info import DataInfo
from ssl_bench.errors import ConfigError
from ssl_bench.eval.online import LEGACY_PREFIX, PREFIX, OnlineEval
from ssl_bench.nn.attention import prefer_explicit_cpu_bf16_attention
from ssl_bench.nn.ema import MomentumTargets, make_target
from ssl_bench.nn.inference import folded_for_inference
from ssl_bench.nn.multicrop import BN_STATS, forward_views
from ssl_bench.optim import build_optimizer, optimizer_options, split_decay_groups
from ssl_bench.schedules import (
    scheduler_options,
    warmup_cosine_lr,
    warmup_overshoot,
    warmup_step_factor,
)


def _rng_states() -> dict[str, Any]:
    """The global RNG states, as tensors and plain numbers (checkpoints load with
    weights_only=True)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "python": [version, list(py_state), py_gauss],
        "numpy": [torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    version, py_state, py_gauss = states["python"]
    random.setstate((version, tuple(py_state), py_gauss))
    keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if (
        states["cuda"]
        and torch.cuda.is_available()
        and len(states["cuda"]) == torch.cuda.device_count()
    ):
        torch.cuda.set_rng_state_all(states["cuda"])


def _map_legacy_probe_keys(module, state_dict, prefix, *args) -> None:
    """Load-state-dict pre-hook: the probe's keys of checkpoints written before OnlineEval existed
    (`probe.weight`) under their present names (`online_eval.probe.weight`), so those runs still
    resume, evaluate and load; and the statistics of a `probe_norm` the checkpoint predates."""
    old = prefix + LEGACY_PREFIX
    for key in [k for k in state_dict if k.startswith(old)]:
        state_dict[prefix + PREFIX + key[len(prefix) :]] = state_dict.pop(key)
    # a probe trained before `probe_norm` existed read the features as they are: its norm's
    # fresh statistics (mean 0, variance 1) keep it so in eval mode, and the run loads strictly
    online = getattr(module, "online_eval", None)
    norm = None if online is None else getattr(online, "probe_norm", None)
    if norm is not None and prefix + PREFIX + "probe.weight" in state_dict:
        for name, value in norm.state_dict().items():
            state_dict.setdefault(prefix + PREFIX + "probe_norm." + name, value.clone())


#: online_eval's default: every option at OnlineEval's default (never mutated: options are copied)
ONLINE_EVAL_DEFAULTS: dict[str, Any] = {}


def embedding_std(z: torch.Tensor) -> torch.Tensor:
    """Mean per-dimension std of L2-normalised embeddings: ~1/sqrt(d) when healthy, 0 when
    collapsed."""
    return F.normalize(z.detach().float(), dim=1).std(dim=0).mean()


class SSLMethod(pl.LightningModule):
    #: smallest per-device batch the loss is defined for (contrastive losses need negatives)
    min_batch_size: int = 1
    #: the (online, target) pairs a momentum method declares and their tau schedule (nn/ema.py)
    momentum_targets: MomentumTargets | None = None
    #: the attribute naming the network whose pooled features `forward` gives: what the online
    #: and offline evaluations measure, and whose weights `load_backbone` and the export take
    #: (DINO evaluates its teacher: "teacher_backbone")
    eval_backbone: str = "backbone"
    #: `online_eval.probe_norm` when it is null: whether the online probe reads BatchNorm-ed
    #: features (no affine), as the method's paper probes them (MAE: True)
    probe_norm: bool = False

    def __init__(
        self,
        backbone: nn.Module,
        data: DataInfo | None = None,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
        online_eval: dict | None = ONLINE_EVAL_DEFAULTS,
        bn_stats: str = "per_view",
        nan_tolerance: int = 0,
    ):
        """`online_eval`: the options of OnlineEval (probe, probe_lr, probe_norm, knn, knn_k,
        knn_t, init_baseline), None for no online evaluation. `nan_tolerance`: consecutive
        non-finite-loss steps to skip before the run stops (0: stop at the first; see
        reliability.NonFiniteGuard)."""
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "data"])
        self.backbone = backbone
        # a ViT's attention: the explicit kernel for bf16 on a CPU (nn/attention.py); setup() adds
        # the hook to attention the subclass builds afterwards (MAE's decoder, ...)
        prefer_explicit_cpu_bf16_attention(backbone)
        self.feat_dim = int(backbone.num_features)
        #: what the method knows about its data (sample count, classes, normalisation, batch): given
        #: here, never read from trainer.datamodule
        self.data = data if data is not None else DataInfo()
        self.num_classes = int(self.data.num_classes)
        self.optim_cfg = dict(optimizer or {"name": "sgd", "lr": 0.1})
        self.sched_cfg = dict(scheduler or {"name": "constant"})
        # a bad optimizer / scheduler key fails here, before any data is loaded
        opt = {
            k: v
            for k, v in self.optim_cfg.items()
            if k not in ("name", "lr", "scale_lr", "weight_decay")
        }
        optimizer_options(
            self.optim_cfg.get("name"),
            self.optim_cfg.get("lr"),
            self.optim_cfg.get("weight_decay", 0.0),
            opt,
        )
        scheduler_options(self.sched_cfg)
        if bn_stats not in BN_STATS:
            raise ConfigError(
                "method.bn_stats",
                f"must be one of {', '.join(BN_STATS)}, got '{bn_stats}'.",
                "per_view: one network call per view (BN statistics per view); joint: the "
                "views of one resolution in one call (BN over all of them).",
            )
        self.bn_stats = bn_stats
        self._online_eval_options = None if online_eval is None else dict(online_eval)
        #: the online probe and kNN (None: dropped by the run, `online_eval=null`)
        self.online_eval = self.build_online_eval(self.feat_dim)
        self.register_load_state_dict_pre_hook(_map_legacy_probe_keys)
        self.nan_tolerance = int(nan_tolerance)
        self._bad_steps = 0

    def setup(self, stage: str) -> None:
        # Lightning calls it before fit / validate / test / predict, when every submodule exists
        prefer_explicit_cpu_bf16_attention(self)

    def build_online_eval(self, dim: int) -> OnlineEval | None:
        """The online evaluation of a `dim`-wide representation, from the constructor's
        `online_eval` options. A method whose forward() is not `feat_dim` wide assigns
        `self.online_eval = self.build_online_eval(<its width>)` (SimCLR v2)."""
        options = self._online_eval_options
        if options is not None and options.get("probe_norm") is None:
            options = {**options, "probe_norm": self.probe_norm}
        return OnlineEval.from_options(dim, self.num_classes, options)

    @property
    def knn_init(self) -> float | None:
        """val/knn_top1_init of this run: the kNN top-1 of the random-init network (None when not
        measured)."""
        return None if self.online_eval is None else self.online_eval.knn_init

    def compile_backbone(self) -> None:
        """torch.compile the backbone (config `compile: true`); called once the method is built,
        so target networks copied from the backbone stay plain modules."""
        self.backbone = torch.compile(self.backbone)

    # ---- to implement -------------------------------------------------------------------------
    def training_loss(
        self, views: list[torch.Tensor], labels: torch.Tensor, index: torch.Tensor
    ) -> dict:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """THE representation of the method: normalised images [B, C, H, W] -> features [B, D].

        This one method is what every evaluation measures: the online kNN and probe
        (validation_step), and offline `python -m ssl_bench.eval` (knn, linear, finetune, embed),
        which rebuilds the whole method from the run and calls it (ssl_bench.eval.representation).
        Default: the pooled features of the network `eval_backbone` names (the online backbone
        unless the method says otherwise). A method whose paper evaluates something else overrides
        this (CPC v2: the patch grid mean-pooled; SimCLR v2: the projector's first layer; CMC: its
        colour-view encoders concatenated), and `D` may then differ from `self.feat_dim`. It must be
        deterministic in eval mode (no augmentation, no sampling), or online and offline numbers
        cannot agree. Fine-tuning trains exactly the parameters it reaches. (DESIGN.md suggests a
        separate `representation(x)`; `forward` is kept as that one definition because Lightning's
        `self(x)` and predict, torch.jit.trace and ONNX export call it: a second name would be a
        second definition that could drift from it.)
        """
        return getattr(self, self.eval_backbone)(x)

    def forward_views(self, fn, views: list[torch.Tensor], splits: int = 1) -> list:
        """`fn` (a network with BatchNorm: backbone, head) over every view, one output per view,
        grouped into calls by `bn_stats`: per_view, one call per view; joint, one call per
        resolution (nn/multicrop.py). The same grouping on every device. `splits` > 1 simulates that
        many devices (SplitBatchNorm)."""
        return forward_views(fn, views, joint=self.bn_stats == "joint", splits=splits)

    def add_momentum_encoder(self, base_tau: float, final_tau: float | None) -> None:
        """The EMA copy of `backbone` + `projector` as `target_backbone` + `target_projector` (never
        trained by gradients), declared as the method's momentum targets with tau from `base_tau`
        (constant, or on a cosine to `final_tau`): BYOL's target network, MoCo's key encoder."""
        self.target_backbone = make_target(self.backbone)
        self.target_projector = make_target(self.projector)
        self.momentum_targets = MomentumTargets(
            [(self.backbone, self.target_backbone), (self.projector, self.target_projector)],
            base_tau,
            final_tau,
        )

    @torch.no_grad()
    def target_projections(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """The momentum encoder's projections of the views (N x D each, no gradient), its calls
        grouped by `bn_stats` as the online network's."""
        return self.forward_views(
            self.target_projector, self.forward_views(self.target_backbone, views)
        )

    # ---- training ---------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        """{loss: the SSL loss + the probe's, loss_terms: the SSL loss and its terms (detached),
        loss_step: the global step that computed them} - Lightning hands the dict to callbacks'
        on_train_batch_end (reliability.NonFiniteGuard names the terms) - or None for a skipped
        non-finite step."""
        views, labels, index = batch
        out = self.training_loss(views, labels, index)
        loss = out.pop("loss")
        representation = out.pop("representation")
        step = {
            "loss_terms": {k: v.detach() for k, v in {"loss": loss, **out}.items()},
            "loss_step": self.global_step,
        }
        # a host sync, only when skipping is asked for
        if self.nan_tolerance > 0 and not torch.isfinite(loss):
            self._bad_steps += 1
            if self._bad_steps > self.nan_tolerance:
                # NonFiniteGuard stops the run with the step, epoch and terms
                return {"loss": loss, **step}
            rank_zero_warn(
                f"non-finite loss at step {self.global_step}: skipped "
                f"({self._bad_steps}/{self.nan_tolerance} consecutive)"
            )
            return None  # Lightning skips backward and the optimizer step
        self._bad_steps = 0
        total = loss
        probe_loss = (
            None
            if self.online_eval is None
            else self.online_eval.probe_loss(representation, labels)
        )
        if probe_loss is not None:
            total = loss + probe_loss
            self.log("train/probe_loss", probe_loss)
        self.log("train/loss", loss, prog_bar=True)
        for name, value in out.items():
            self.log(f"train/{name}", value)
        if self.momentum_targets is not None:  # the tau of the update after this step
            self.log("train/tau", self.momentum_targets.tau_at(*self.optimizer_step_position()))
        self.log("lr", self.optimizers().param_groups[0]["lr"], prog_bar=False)
        return {"loss": total, **step}

    def optimizer_step(self, *args, **kwargs):
        super().optimizer_step(*args, **kwargs)
        self.after_optimizer_step()

    def after_optimizer_step(self) -> None:
        """Called after every real optimizer step (not on accumulation-only batches): updates the
        momentum targets. A method that adds batch-end work overrides it and calls super()."""
        if self.momentum_targets is not None:
            self.momentum_targets.update(*self.optimizer_step_position())

    def optimizer_step_position(self) -> tuple[int, int]:
        """(optimizer steps completed before the current one, total optimizer steps; 0 when unknown)
        - the position of step schedules such as tau. Lightning counts a step in global_step only
        after optimizer_step returns. Without a Trainer: the momentum targets' own count and
        total_steps."""
        trainer = self._trainer
        if trainer is None:
            targets = self.momentum_targets
            return (targets.updates, targets.total_steps) if targets is not None else (0, 0)
        total = trainer.estimated_stepping_batches
        return trainer.global_step, int(total) if math.isfinite(total) else 0

    # ---- online evaluation ------------------------------------------------------------------
    def inference_forward(self):
        """`forward` for a no-grad evaluation pass in eval mode: with the default forward, the
        network `eval_backbone` names with its BatchNorm folded into its convolutions
        (nn.inference.folded_for_inference: the same function, faster); a method that defines
        its own forward keeps it. Built afresh for every pass: the copy does not follow training.
        """
        if type(self).forward is not SSLMethod.forward:
            return self
        return folded_for_inference(getattr(self, self.eval_backbone))

    def on_validation_epoch_start(self):
        # a plain attribute, not a registered submodule: never in the state dict or a checkpoint
        self.__dict__["_inference_net"] = (
            self.inference_forward() if self.online_eval is not None else None
        )

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        if self.online_eval is None:
            return
        x, labels, _ = batch
        # forward(), the representation; under Lightning: eval mode, no grad, the run's precision
        # (autocast), channels_last inputs, BN folded (inference_forward). Offline eval computes
        # the very same (ssl_bench.eval.representation).
        net = self.__dict__.get("_inference_net")
        net = self if net is None else net
        self.online_eval.update(net(x).float(), labels, dataloader_idx)

    def on_validation_epoch_end(self):
        self.__dict__.pop("_inference_net", None)
        if self.online_eval is None:
            return
        for name, value in self.online_eval.compute().items():
            self.log(name, value, prog_bar=name.startswith("val/knn_top1"))

    # ---- optimisation -----------------------------------------------------------------------
    def parameter_groups(self, exclude_bias_and_norm: bool = False) -> list[dict]:
        """Groups for every trainable module except the online evaluation's probe. Methods
        override to add special groups (e.g. a predictor with a fixed lr: mark its group with
        `fixed_lr: True`). configure_optimizers asks for unsplit groups:
        `optimizer.exclude_bias_n_norm` is applied by build_optimizer, one rule per optimizer as its
        source has it."""
        modules = nn.ModuleDict({n: m for n, m in self.named_children() if n != PREFIX.rstrip(".")})
        return split_decay_groups(modules, exclude_bias_and_norm)

    def build_optimizer_for(self, global_batch: int | None) -> torch.optim.Optimizer:
        """The run's optimizer over the method's parameter groups and the online probe's, its lr
        scaled linearly by `global_batch` / 256 where `optimizer.scale_lr` says so (Goyal et al.
        2017; `global_batch` is only read then); no schedule."""
        cfg = dict(self.optim_cfg)
        name, lr = cfg.pop("name"), float(cfg.pop("lr"))
        if cfg.pop("scale_lr", False):
            if global_batch is None:
                raise ValueError("optimizer.scale_lr needs the global batch size")
            lr = lr * global_batch / 256
        groups = self.parameter_groups(False)  # exclude_bias_n_norm: build_optimizer applies it
        probe = None if self.online_eval is None else self.online_eval.param_group(name)
        if probe is not None:
            groups.append(probe)
        return build_optimizer(groups, name, lr, **cfg)

    def configure_optimizers(self):
        batch = None  # the global batch, read from the Trainer only when the lr scales with it
        if self.optim_cfg.get("scale_lr", False):
            trainer = self.trainer
            batch = self.data.batch_size * trainer.world_size * trainer.accumulate_grad_batches
        optimizer = self.build_optimizer_for(batch)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self._build_scheduler(optimizer), "interval": "step"},
        }

    def _steps_per_epoch(self, total: int) -> tuple[float, int]:
        """Optimizer steps per epoch, twice: the warm-up converts epochs with solo-learn's
        estimated_stepping_batches / max_epochs (solo/methods/base.py @ 9187ea3), a float; the epoch
        boundaries of step decay take the whole number of optimizer steps in one epoch."""
        batches = self.trainer.num_training_batches
        whole = (
            max(1, math.ceil(batches / self.trainer.accumulate_grad_batches))
            if math.isfinite(batches)
            else max(1, total)
        )
        max_epochs = self.trainer.max_epochs or 0
        if (self.trainer.max_steps and self.trainer.max_steps > 0) or max_epochs <= 0:
            return float(whole), whole
        return total / max_epochs, whole

    def _build_scheduler(self, optimizer):
        """A LambdaLR stepped every optimizer step: per group the multiplier lr_g(step) / base_lr_g
        of the schedule in ssl_bench.schedules, so it holds no state and a resumed run continues
        exactly. `fixed_lr` groups keep their lr."""
        name, cfg = scheduler_options(self.sched_cfg)
        if name == "constant":
            return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch, whole = self._steps_per_epoch(total)
        # warmup_steps wins when set
        warmup = (
            float(cfg["warmup_steps"])
            if cfg["warmup_steps"] is not None
            else float(cfg["warmup_epochs"]) * per_epoch
        )
        if name == "warmup_cosine":
            start, floor = float(cfg["warmup_start_lr"]), float(cfg["min_lr"])
            peak = warmup_overshoot(warmup, start, float(optimizer.param_groups[0]["lr"]))
            if abs(peak - 1) > 0.01:
                rank_zero_warn(
                    f"warmup_cosine: {warmup:g} warm-up steps is not a whole number, and the "
                    f"schedule (solo-learn's, exactly) then peaks at {peak:.3g} x optimizer.lr. "
                    "Set scheduler.warmup_steps, or a warmup_epochs giving whole steps."
                )

            def make(base: float):
                return lambda step: warmup_cosine_lr(step, base, total, warmup, start, floor) / base
        else:
            milestones, gamma = cfg["milestones"], float(cfg["gamma"])
            max_epochs = self.trainer.max_epochs or 0
            if max_epochs > 0 and any(m >= max_epochs for m in milestones):
                rank_zero_warn(
                    f"scheduler.milestones {milestones}: those >= trainer.max_epochs={max_epochs} "
                    "never decay the lr."
                )

            def make(base: float):
                return lambda step: warmup_step_factor(step, whole, warmup, milestones, gamma)

        fns = [
            (lambda step: 1.0) if g.get("fixed_lr") else make(float(g["lr"]))
            for g in optimizer.param_groups
        ]
        return torch.optim.lr_scheduler.LambdaLR(optimizer, fns)

    # ---- checkpoint extras ------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the global RNGs too (negative sampling, shuffled BN ...): a resumed run continues the same
        # stream
        checkpoint["ssl_bench"] = {"knn_init": self.knn_init, "rng": _rng_states()}

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, **kwargs):
        """The trained method of a `.ckpt` or run dir (ssl_bench.load_method: rebuilt from the
        record the checkpoint holds, weights loaded strictly, eval mode, CPU; `map_location` and
        Lightning's hparams overrides do not apply). Lightning's own version cannot rebuild an
        ssl_bench method: the backbone is a constructor argument, not a hyperparameter."""
        from ssl_bench.errors import ConfigError
        from ssl_bench.loading import load_method

        model = load_method(checkpoint_path)
        if not isinstance(model, cls):
            raise ConfigError(
                "checkpoint",
                f"'{checkpoint_path}' holds a {type(model).__name__}, not a {cls.__name__}.",
                f"use {type(model).__name__}.load_from_checkpoint or ssl_bench.load_method.",
            )
        return model

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.restore_run_state(checkpoint, rng=True)

    def restore_run_state(self, checkpoint: dict[str, Any], rng: bool) -> None:
        """What on_save_checkpoint keeps beside the weights: `knn_init` and, with `rng`, the global
        RNG states (a resumed run; ssl_bench.load_method passes rng=False: loading a model must not
        reseed its caller)."""
        extra = checkpoint.get("ssl_bench") or {}
        if self.online_eval is not None:
            self.online_eval.knn_init = extra.get("knn_init")
        if rng and extra.get("rng") is not None:
            _restore_rng_states(extra["rng"])
