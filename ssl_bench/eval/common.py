"""What every offline evaluation shares: find a run, rebuild its whole method from its own config and
checkpoint, compute its representation the way the online kNN does, feed it batches of a split (plain
or augmented, whole or a held-out part), write results and log them to W&B.

A run is addressed by its dir (`<run>/checkpoints/last.ckpt` is used) or by a `.ckpt` file inside
`<run>/checkpoints/`; the config is always the run's own `.hydra/config.yaml`, with optional
overrides (e.g. `data.limit=500`) applied on top.

"The representation" is `SSLMethod.forward` (see ssl_bench/methods/base.py): CPC v2's mean-pooled patch
grid, SimCLR v2's first projector layer when asked for, CMC's concatenated colour-view encoders, else
the backbone's pooled features. `Representation` computes it as the online kNN of a validation epoch
does - eval mode, no grad, the run's precision (autocast), channels_last, the run's eval batches - so
`mode=knn` at the online k and T reproduces the run's logged `val/knn_top1` exactly.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ssl_bench.errors import ConfigError, UserError
from ssl_bench.schedules import cosine

CONFIG_FILE = Path(".hydra") / "config.yaml"


# ---- finding a run ----------------------------------------------------------------------------------
@dataclass
class RunRef:
    run_dir: Path
    ckpt: Path
    cfg: DictConfig


def resolve_run(ckpt: str | Path | None) -> tuple[Path, Path]:
    """(run dir, checkpoint file) of `ckpt` (a run dir or a .ckpt file), or a UserError naming the path."""
    if ckpt in (None, "", "???"):
        raise ConfigError(
            "ckpt", "no run given.", "pass ckpt=<run dir> or ckpt=<run dir>/checkpoints/last.ckpt."
        )
    path = Path(str(ckpt)).expanduser()
    if not path.exists():
        raise UserError(
            f"ckpt '{path}' does not exist. Fix: pass ckpt=<run dir> (holding .hydra/config.yaml and "
            "checkpoints/last.ckpt) or the path of a .ckpt file in such a run dir."
        )
    if path.is_dir():
        run_dir, ckpt_file = path, path / "checkpoints" / "last.ckpt"
        if not (run_dir / CONFIG_FILE).is_file():
            raise UserError(
                f"'{run_dir}' is not a run dir: it has no {CONFIG_FILE}. Fix: pass the dir of one run "
                "(outputs/runs/<date>/<time>_<name> or a multirun job dir)."
            )
        if not ckpt_file.is_file():
            raise UserError(
                f"run dir '{run_dir}' has no checkpoints/last.ckpt (did the run finish an epoch?). "
                "Fix: pass ckpt=<path of a .ckpt file>."
            )
        return run_dir, ckpt_file
    run_dir = next(
        (p for p in (path.parent.parent, path.parent) if (p / CONFIG_FILE).is_file()), None
    )
    if run_dir is None:
        raise UserError(
            f"cannot find the run config for checkpoint '{path}': no {CONFIG_FILE} in "
            f"'{path.parent.parent}'. Fix: pass a checkpoint inside a run dir (<run>/checkpoints/*.ckpt)."
        )
    return run_dir, path


def load_run_config(run_dir: Path, overrides: list[str] | None = None) -> DictConfig:
    cfg = OmegaConf.load(run_dir / CONFIG_FILE)
    OmegaConf.set_struct(cfg, False)
    for item in overrides or []:
        key, _, value = item.partition("=")
        top = key.split(".")[0]
        if top not in cfg:
            raise ConfigError(
                key,
                f"is neither an eval option nor a key of the run's config ({run_dir / CONFIG_FILE}).",
                "check the spelling; run-config keys look like data.limit=500.",
            )
        try:
            OmegaConf.update(cfg, key, OmegaConf.from_dotlist([f"v={value}"]).v, merge=True)
        except Exception as err:  # noqa: BLE001 - omegaconf raises several kinds
            raise ConfigError(key, f"cannot set it to {value!r}: {err}") from None
    cfg.compile = (
        False  # the eval graph differs from training's; compiling would only cost time here
    )
    return cfg


def load_state_dict(ckpt: Path) -> dict[str, torch.Tensor]:
    try:
        try:
            obj = torch.load(ckpt, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - Lightning checkpoints may hold plain-python hparams objects
            obj = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001
        raise UserError(
            f"cannot read checkpoint '{ckpt}': {err}. Fix: pass a Lightning .ckpt written by "
            "ssl_bench (checkpoints/last.ckpt)."
        ) from None
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not any(k.startswith("backbone.") for k in sd):
        raise UserError(
            f"checkpoint '{ckpt}' holds no 'backbone.*' weights. Fix: pass a checkpoint of an "
            "ssl_bench run (checkpoints/last.ckpt)."
        )
    return sd


def backbone_state(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The `backbone.*` entries of a method's state dict, without the prefix (timm's own key names)."""
    return {
        k[len("backbone.") :]: v for k, v in method_state(sd).items() if k.startswith("backbone.")
    }


def method_state(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A method's state dict as an uncompiled method names it: without torch.compile's `_orig_mod.` and
    without the online probe (its width follows the labelled data, and no evaluation reads it)."""
    return {k.replace("_orig_mod.", ""): v for k, v in sd.items() if not k.startswith("probe.")}


def load_method_into(
    model: nn.Module, sd: dict[str, torch.Tensor], ckpt: Path, cfg: DictConfig
) -> None:
    """Every weight and buffer of the method (strict): the representation may read any of them (SimCLR v2's
    projector layer, CMC's Lab statistics, a ViT's position embedding), so none may silently stay random."""
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("probe.")}
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
        raise UserError(
            f"checkpoint '{ckpt}' holds a different backbone or method than the config builds "
            f"(method={cfg.method.get('name')}, backbone.name={b.get('name')}, backbone.kwargs="
            f"{OmegaConf.to_container(b.get('kwargs')) if b.get('kwargs') is not None else None}): "
            f"{' '.join(first)} Fix: evaluate a checkpoint with the config of its own run (drop backbone.* / "
            "method.* overrides, or pass the run dir the checkpoint came from)."
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


def build_for_eval(ckpt: str | Path, overrides: list[str] | None = None):
    """(RunRef, datamodule after setup, the whole method with the checkpoint's weights, on CPU, eval mode).

    The method is rebuilt by the same `build_method` as training (its config, channels_last as the run),
    so that its `forward` - the representation - is the one the online kNN and probe evaluated."""
    run_dir, ckpt_file = resolve_run(ckpt)
    cfg = load_run_config(run_dir, overrides)
    sd = load_state_dict(ckpt_file)
    from ssl_bench.train import (
        build_datamodule,
        build_method,
    )  # heavy imports only once the inputs are sound

    dm = build_datamodule(cfg)
    dm.setup("fit")
    if dm.num_classes == 0 or dm.splits.get("train") is None or dm.splits.get("test") is None:
        raise UserError(
            f"data '{cfg.data.name}' has no labelled train and test splits; offline evaluation "
            "needs labels. Fix: evaluate on a labelled dataset (override data.*)."
        )
    model = build_method(cfg, dm.data_info())
    load_method_into(model, sd, ckpt_file, cfg)
    model.eval()
    return RunRef(run_dir, ckpt_file, cfg), dm, model


# ---- the representation, computed as the online kNN computes it ------------------------------------
#: Lightning precision flags -> (autocast dtype, whole-model dtype); Lightning itself turns 16-mixed on a
#: CPU into bf16-mixed (accelerator_connector), and so do we
PRECISIONS = {
    "32-true": (None, None),
    "32": (None, None),
    "bf16-mixed": (torch.bfloat16, None),
    "16-mixed": (torch.float16, None),
    "bf16-true": (None, torch.bfloat16),
    "16-true": (None, torch.float16),
}


def run_precision(run_dir: Path, cfg: DictConfig) -> str:
    """The precision the run trained (and ran its online kNN) with: results.json's record, else its config
    resolved as training resolves it."""
    try:
        recorded = json.loads((run_dir / "results.json").read_text()).get("precision")
    except (OSError, json.JSONDecodeError):
        recorded = None
    if recorded:
        return str(recorded)
    from ssl_bench.train import resolve_precision

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


class Representation:
    """`model(x)` - the method's representation (SSLMethod.forward) - computed at inference speed and
    exactly as a validation epoch of the run computed it: eval mode, no grad, the run's precision
    (`torch.autocast` for `*-mixed`, as Lightning's MixedPrecision), channels_last inputs when the run used
    them, batches of the run's `data.eval_batch_size`. Features come back as float32 (the online kNN's
    `self(x).float()`)."""

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
        return (
            x.contiguous(memory_format=torch.channels_last)
            if self.channels_last and x.ndim == 4
            else x
        )

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Features [B, D] float32 of one batch (the model must be in eval mode: see `features`)."""
        with self.autocast():
            return self.model(self.prepare(x)).float()

    @torch.no_grad()
    def features(
        self, dm, split: str, indices: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features [N, D] and labels [N] of a whole split (or of `indices` of it), un-augmented, in order."""
        was_training = self.model.training
        self.model.eval()
        feats, labels = [], []
        for x, y in SplitBatches(dm, split, self.batch_size, self.device, indices=indices)(
            shuffle=False
        ):
            feats.append(self(x))
            labels.append(y)
        self.model.train(was_training)
        out = torch.cat(feats), torch.cat(labels)
        self._dim = int(out[0].shape[1])
        return out

    def dim(self, dm) -> int:
        """Width of the representation (SimCLR v2's projector layer and CMC's concatenation differ from the
        backbone's num_features): one image of the test split through the model."""
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
    """The parameters `model(x)` depends on: those that receive a gradient from its output. Fine-tuning
    trains exactly these (e.g. SimCLR v2's first projector layer with the backbone; not a target network,
    a queue or a loss head). Runs on a copy in eval mode, so no BatchNorm statistic moves."""
    probe = copy.deepcopy(model).eval()
    probe.requires_grad_(True)
    with torch.enable_grad():
        probe(x).float().sum().backward()
    reached = {name for name, p in probe.named_parameters() if p.grad is not None}
    return [p for name, p in model.named_parameters() if name in reached]


def stratified_holdout(
    labels: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit indices, held-out indices) of a split: `fraction` of every class (rounded, at least one image of a
    class with two or more) drawn with a fixed seed, so a selection on the held-out part is reproducible and
    the class balance of both parts follows the split's. Indices are sorted."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError("select_fraction", f"must be in (0, 1), got {fraction}.", "use e.g. 0.1.")
    labels = torch.as_tensor(labels).cpu()
    gen = torch.Generator().manual_seed(int(seed))
    held = []
    for c in labels.unique(sorted=True):
        idx = (labels == c).nonzero().squeeze(1)
        n = idx.numel()
        take = min(n - 1, max(1, round(fraction * n))) if n >= 2 else 0
        held.append(idx[torch.randperm(n, generator=gen)[:take]])
    val = torch.cat(held).sort().values if held else torch.zeros(0, dtype=torch.long)
    mask = torch.ones(labels.numel(), dtype=torch.bool)
    mask[val] = False
    fit = mask.nonzero().squeeze(1)
    if val.numel() == 0 or fit.numel() == 0:
        raise ConfigError(
            "select_fraction",
            f"leaves no held-out or no fitting images of the {labels.numel()} training images.",
            "use more training data (data.limit) or another fraction.",
        )
    return fit, val


# ---- batches ----------------------------------------------------------------------------------------
def augment_pipeline(size: int, scale=(0.08, 1.0), hflip: float = 0.5):
    """The linear-protocol training transform: random resized crop + flip, no colour changes."""
    from ssl_bench.views.config import ViewPipeline

    return ViewPipeline(
        num_crops=1,
        crop_size=int(size),
        scale=tuple(float(s) for s in scale),
        hflip=float(hflip),
        jitter_prob=0.0,
        brightness=0.0,
        contrast=0.0,
        saturation=0.0,
        hue=0.0,
        grayscale=0.0,
        blur_prob=0.0,
        solarize=0.0,
    )


class SplitBatches:
    """Batches `(x float normalised [B,3,S,S] on device, labels)` of one split of a set-up SSLDataModule,
    or of the images `indices` of it (a held-out part of the train split, or the rest).

    `augment` (a ViewPipeline) draws a fresh random crop+flip per image and pass; without it the
    images are the un-augmented eval transform. In-memory data is indexed and transformed on the
    device (BatchViews / BatchEval); image folders go through a DataLoader with per-item transforms.
    """

    def __init__(
        self,
        dm,
        split: str,
        batch_size: int,
        device: torch.device,
        augment=None,
        seed: int = 0,
        indices: torch.Tensor | None = None,
    ):
        from ssl_bench.data.datasets import TensorImages

        self.dm, self.batch_size, self.device = dm, int(batch_size), device
        ds = dm.splits[split]
        self.base = getattr(
            ds, "data", ds
        )  # _Transformed wraps in-memory data when device views are off
        self.in_memory = isinstance(self.base, TensorImages)
        self.indices = None if indices is None else torch.as_tensor(indices, dtype=torch.long).cpu()
        if self.in_memory and self.indices is not None:
            self.base, self.indices = self.base.subset(self.indices), None
        self.generator = torch.Generator().manual_seed(seed)
        info = dm.info
        if self.in_memory:
            from ssl_bench.views.batch import BatchEval, BatchViews

            self.transform = (
                BatchViews([augment], info.mean, info.std, seed=seed)
                if augment
                else BatchEval(dm.eval_size, info.mean, info.std)
            )
            self.augment = augment is not None
        else:
            from ssl_bench.views.cpu import build_cpu_views, cpu_eval_transform

            self.folder = copy.copy(self.base)
            self._labels = torch.as_tensor(self.base.labels)
            if self.indices is not None:
                self._labels = self._labels[self.indices]
            if augment:
                views = build_cpu_views([augment], info.mean, info.std)
                self.folder.transform = _FirstView(views)
            else:
                self.folder.transform = cpu_eval_transform(dm.eval_size, info.mean, info.std)

    @property
    def labels(self) -> torch.Tensor:
        return torch.as_tensor(self.base.labels) if self.in_memory else self._labels

    def __len__(self) -> int:
        return len(self.base) if self.in_memory else int(self._labels.numel())

    def num_batches(self, drop_last: bool = False) -> int:
        n = len(self)
        return n // self.batch_size if drop_last else math.ceil(n / self.batch_size)

    def __call__(
        self, shuffle: bool = False, drop_last: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.in_memory:
            n = len(self.base)
            order = torch.randperm(n, generator=self.generator) if shuffle else torch.arange(n)
            stop = (
                (n // self.batch_size) * self.batch_size
                if drop_last and n >= self.batch_size
                else n
            )
            for start in range(0, stop, self.batch_size):
                idx = order[start : start + self.batch_size]
                imgs = self.base.images[idx].to(self.device, non_blocking=True)
                x = self.transform(imgs)
                x = x[0] if isinstance(x, list) else x
                yield x, self.base.labels[idx].to(self.device)
        else:
            from torch.utils.data import DataLoader, Subset

            ds = self.folder if self.indices is None else Subset(self.folder, self.indices.tolist())
            loader = DataLoader(
                ds,
                batch_size=self.batch_size,
                shuffle=shuffle,
                drop_last=drop_last,
                num_workers=self.dm.num_workers,
                generator=self.generator,
            )
            for x, y, _ in loader:
                yield x.to(self.device), y.to(self.device)


class _FirstView:
    """Picklable: per-item CpuViews -> its single view."""

    def __init__(self, views):
        self.views = views

    def __call__(self, img):
        return self.views(img)[0]


def topk_correct(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit = top == labels[:, None]
    return int(hit[:, 0].sum()), int(hit.any(1).sum())


def cosine_lr(step: int, total: int, base: float) -> float:
    return cosine(min(step, total) / max(1, total), base, 0.0)


# ---- results ----------------------------------------------------------------------------------------
def write_results(
    run: RunRef, mode: str, results: dict[str, Any], out: str | Path | None = None
) -> Path:
    out_dir = Path(out) if out else run.run_dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"eval_{mode}.json"
        path.write_text(json.dumps(results, indent=2, default=str))
    except OSError as err:
        raise UserError(
            f"cannot write results to '{out_dir}' ({err.strerror or err}). Fix: pass out=<writable dir>."
        ) from None
    return path


def find_wandb_run_id(run_dir: Path) -> str | None:
    """The id of the run's W&B run: the suffix of <run_dir>/wandb/(offline-)run-<date>_<time>-<id>."""
    wdir = run_dir / "wandb"
    if not wdir.is_dir():
        return None
    dirs = [
        p
        for p in wdir.iterdir()
        if p.is_dir() and (p.name.startswith("run-") or p.name.startswith("offline-run-"))
    ]
    # the oldest is the training run (later ones are evals); sort by the <date>_<time> part
    dirs.sort(key=lambda p: p.name.removeprefix("offline-").removeprefix("run-"))
    return dirs[0].name.rsplit("-", 1)[-1] if dirs else None


def _job_sweep_group(run_dir: Path) -> str | None:
    """The group training gave a multirun job (wandb_utils._sweep_group), from the job's .hydra/hydra.yaml."""
    try:
        hydra = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra
        sweep_dir = OmegaConf.to_container(hydra.sweep, resolve=False)["dir"]
        if str(hydra.get("mode")) == "MULTIRUN" and "${" not in str(sweep_dir):
            return "sweep-" + "-".join(Path(str(sweep_dir)).parts[-2:])
    except Exception:  # noqa: BLE001 - a single run, or no hydra.yaml
        return None
    return None


def wandb_log(
    run: RunRef,
    mode: str,
    summary: dict[str, Any],
    images: dict[str, Path] | None = None,
    setting: str = "auto",
) -> str | None:
    """Log an eval's summary (and images) to the run's W&B run: resumed by id when the run has one
    (`setting=auto|resume`), else a new run in the same group named <run>-eval (`setting=new`, or auto
    when the training run logged to W&B without leaving its id). Offline without an API key.
    Returns the W&B run id used, or None when nothing was logged."""
    if setting in (False, "false", "off", "none", None):
        return None
    wb_cfg = run.cfg.get("logger", {}).get("wandb") if run.cfg.get("logger") else None
    run_id = find_wandb_run_id(run.run_dir)
    if wb_cfg is None and run_id is None and setting == "auto":
        return None
    import wandb

    from ssl_bench.wandb_utils import _sweep_group, resolve_mode

    wb_cfg = wb_cfg or {}
    name = run.cfg.get("run_name") or run.run_dir.name
    group = (
        wb_cfg.get("group")
        or _job_sweep_group(run.run_dir)
        or _sweep_group(run.run_dir)
        or f"{run.cfg.method.name}-{run.cfg.data.name}"
    )
    kwargs = dict(
        project=wb_cfg.get("project", "ssl_bench"),
        entity=wb_cfg.get("entity"),
        dir=str(run.run_dir),
        mode=resolve_mode(wb_cfg.get("mode")),
    )
    if run_id and setting in ("auto", "resume"):
        kwargs.update(id=run_id, resume="allow")
    else:
        kwargs.update(
            name=f"{name}-eval",
            group=group,
            job_type="eval",
            tags=[run.cfg.method.name, run.cfg.data.name, str(run.cfg.backbone.tag), "eval"],
        )
    wrun = wandb.init(**kwargs)
    try:
        row = {k: v for k, v in summary.items() if isinstance(v, (int, float))}
        for key, path in (images or {}).items():
            row[key] = wandb.Image(str(path))
        wrun.log(row)
        for key, value in summary.items():
            wrun.summary[key] = value
        return wrun.id
    finally:
        wrun.finish()
