"""The representation of a finished run, rebuilt and computed as its online kNN computed it.

`build_for_eval` finds the run (ssl_bench.runs: a run dir, or a .ckpt inside one; its own
.hydra/config.yaml with optional overrides such as data.limit=500) and rebuilds its whole method
with the checkpoint's weights, by the same `build_method` as training.

"The representation" is `SSLMethod.forward` (see ssl_bench/methods/base.py): CPC v2's mean-pooled
patch grid, SimCLR v2's first projector layer when asked for, CMC's concatenated colour-view
encoders, else the backbone's pooled features. `Representation` computes it as the online kNN of a
validation epoch does - eval mode, no grad, the run's precision (autocast), channels_last, the run's
eval batches - so `mode=knn` at the online k and T reproduces the run's logged `val/knn_top1`
exactly.
"""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ssl_bench.errors import ConfigError, UserError
from ssl_bench.eval.online import LEGACY_PREFIX, PREFIX
from ssl_bench.eval.splits import SplitBatches
from ssl_bench.runs import load_state_dict, open_run

#: the state-dict keys of the online evaluation (OnlineEval; `probe.*` in older checkpoints)
ONLINE_KEYS = (PREFIX, LEGACY_PREFIX)


# ---- the method of a run -------------------------------------------------------------------------
def build_for_eval(ckpt: str | Path, overrides: list[str] | None = None):
    """(RunRef, datamodule after setup, the whole method with the checkpoint's weights, on CPU, eval
    mode).

    The method is rebuilt by the same `build_method` as training (its config, channels_last as the
    run), so that its `forward` - the representation - is the one the online kNN and probe
    evaluated."""
    run = open_run(ckpt, overrides)
    run.cfg.compile = (
        False  # the eval graph differs from training's; compiling would only cost time
    )
    sd = load_state_dict(run.ckpt)
    # heavy imports only once the inputs are sound
    from ssl_bench.training import build_datamodule, build_method

    dm = build_datamodule(run.cfg)
    dm.setup("fit")
    if dm.num_classes == 0 or dm.splits.get("train") is None or dm.splits.get("test") is None:
        raise UserError(
            f"data '{run.cfg.data.name}' has no labelled train and test splits; offline evaluation "
            "needs labels. Fix: evaluate on a labelled dataset (override data.*)."
        )
    model = build_method(run.cfg, dm.data_info())
    load_method_into(model, sd, run.ckpt, run.cfg)
    model.eval()
    return run, dm, model


def method_state(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A method's state dict as an uncompiled method names it: without torch.compile's `_orig_mod.`
    and without the online evaluation's probe (its width follows the labelled data, and no
    evaluation reads it)."""
    return {k.replace("_orig_mod.", ""): v for k, v in sd.items() if not k.startswith(ONLINE_KEYS)}


def load_method_into(
    model: nn.Module, sd: dict[str, torch.Tensor], ckpt: Path, cfg: DictConfig
) -> None:
    """Every weight and buffer of the method (strict): the representation may read any of them
    (SimCLR v2's projector layer, CMC's Lab statistics, a ViT's position embedding), so none may
    silently stay random."""
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(ONLINE_KEYS)}
    state = method_state(sd)
    problems = [f"missing {k}" for k in own if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in own]
    if not problems:
        try:
            model.load_state_dict(state, strict=False)
        except RuntimeError as err:
            lines = str(err).replace("\t", "\n").splitlines()
            problems = [line.strip() for line in lines if line.strip()][1:]
    if problems:
        first = problems[:1] + ([f"(and {len(problems) - 1} more)"] if len(problems) > 1 else [])
        b = cfg.backbone
        kwargs = OmegaConf.to_container(b.get("kwargs")) if b.get("kwargs") is not None else None
        raise UserError(
            f"checkpoint '{ckpt}' holds a different backbone or method than the config builds "
            f"(method={cfg.method.get('name')}, backbone.name={b.get('name')}, backbone.kwargs="
            f"{kwargs}): {' '.join(first)} Fix: evaluate a checkpoint with the config of its own "
            "run (drop backbone.* / method.* overrides, or pass the run dir the checkpoint came "
            "from)."
        )


def pick_device(device: str) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ConfigError(
            "device", f"unknown device {device!r}.", "use auto, cpu or cuda."
        ) from None


# ---- precision -----------------------------------------------------------------------------------
#: Lightning precision flags -> (autocast dtype, whole-model dtype); Lightning itself turns 16-mixed
#: on a CPU into bf16-mixed (accelerator_connector), and so do we
PRECISIONS = {
    "32-true": (None, None),
    "32": (None, None),
    "bf16-mixed": (torch.bfloat16, None),
    "16-mixed": (torch.float16, None),
    "bf16-true": (None, torch.bfloat16),
    "16-true": (None, torch.float16),
}


def run_precision(run_dir: Path, cfg: DictConfig) -> str:
    """The precision the run trained (and ran its online kNN) with: results.json's record, else its
    config resolved as training resolves it."""
    try:
        recorded = json.loads((run_dir / "results.json").read_text()).get("precision")
    except (OSError, json.JSONDecodeError):
        recorded = None
    if recorded:
        return str(recorded)
    from ssl_bench.training import resolve_precision

    t = cfg.get("trainer") or {}
    return str(resolve_precision(t.get("precision", "auto"), str(t.get("accelerator", "auto"))))


def resolve_eval_precision(
    option: Any, run_dir: Path, cfg: DictConfig, device: torch.device
) -> str:
    """`precision=run` (the run's own) or an explicit Lightning flag; validated."""
    flag = run_precision(run_dir, cfg) if option in (None, "run", "auto") else str(option)
    flag = {"bf16": "bf16-mixed", "16": "16-mixed", "32-true": "32-true"}.get(flag, flag)
    if flag not in PRECISIONS:
        raise ConfigError(
            "precision",
            f"unknown precision {flag!r}.",
            f"use run (the run's own), or one of {', '.join(PRECISIONS)}.",
        )
    if flag == "16-mixed" and device.type == "cpu":
        flag = "bf16-mixed"
    return flag


# ---- the representation --------------------------------------------------------------------------
class Representation:
    """`model(x)` - the method's representation (SSLMethod.forward) - computed at inference speed
    and exactly as a validation epoch of the run computed it: eval mode, no grad, the run's
    precision (`torch.autocast` for `*-mixed`, as Lightning's MixedPrecision), channels_last inputs
    when the run used them, batches of the run's `data.eval_batch_size`. Features come back as
    float32 (the online kNN's `self(x).float()`)."""

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        precision: str = "32-true",
        channels_last: bool = True,
        batch_size: int = 256,
    ):
        self.model, self.device, self.precision = model, device, precision
        self.channels_last, self.batch_size = bool(channels_last), int(batch_size)
        self.autocast_dtype, model_dtype = PRECISIONS[precision]
        model.to(device)
        if model_dtype is not None:
            model.to(model_dtype)
        self.input_dtype = model_dtype
        model.eval()
        self._dim: int | None = None

    def autocast(self):
        """The run's mixed-precision context (a no-op for 32-bit runs); also used to fine-tune."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.input_dtype is not None:
            x = x.to(self.input_dtype)
        if self.channels_last and x.ndim == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, net: nn.Module | None = None) -> torch.Tensor:
        """Features [B, D] float32 of one batch (the model must be in eval mode: see `features`);
        `net`: the network computing them in place of the model (its BN-folded copy)."""
        with self.autocast():
            return (self.model if net is None else net)(self.prepare(x)).float()

    @torch.no_grad()
    def features(
        self, dm, split: str, indices: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features [N, D] and labels [N] of a whole split (or of `indices` of it), un-augmented, in
        order."""
        was_training = self.model.training
        self.model.eval()
        # the validation pass's network: BN folded for the default forward (inference_forward)
        folded = getattr(self.model, "inference_forward", lambda: self.model)()
        feats, labels = [], []
        batches = SplitBatches(dm, split, self.batch_size, self.device, indices=indices)
        for x, y in batches(shuffle=False):
            feats.append(self(x, folded))
            labels.append(y)
        self.model.train(was_training)
        out = torch.cat(feats), torch.cat(labels)
        self._dim = int(out[0].shape[1])
        return out

    def dim(self, dm) -> int:
        """Width of the representation (SimCLR v2's projector layer and CMC's concatenation differ
        from the backbone's num_features): one image of the test split through the model."""
        if self._dim is None:
            x, _ = next(iter(SplitBatches(dm, "test", 2, self.device)(shuffle=False)))
            was_training = self.model.training
            self.model.eval()
            self._dim = int(self(x).shape[1])
            self.model.train(was_training)
        return self._dim

    def info(self) -> dict[str, Any]:
        return {
            "definition": f"{type(self.model).__name__}.forward",
            "precision": self.precision,
            "channels_last": self.channels_last,
            "batch_size": self.batch_size,
            "dim": self._dim,
        }


def representation_parameters(model: nn.Module, x: torch.Tensor) -> list[nn.Parameter]:
    """The parameters `model(x)` depends on: those that receive a gradient from its output.
    Fine-tuning trains exactly these (e.g. SimCLR v2's first projector layer with the backbone; not
    a target network, a queue or a loss head). Runs on a copy in eval mode, so no BatchNorm
    statistic moves."""
    probe = copy.deepcopy(model).eval()
    probe.requires_grad_(True)
    with torch.enable_grad():
        probe(x).float().sum().backward()
    reached = {name for name, p in probe.named_parameters() if p.grad is not None}
    return [p for name, p in model.named_parameters() if name in reached]
