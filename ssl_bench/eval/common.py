"""What every offline evaluation shares: find a run, rebuild its backbone from its own config and
checkpoint, feed it batches of a split (plain or augmented), write results and log them to W&B.

A run is addressed by its dir (`<run>/checkpoints/last.ckpt` is used) or by a `.ckpt` file inside
`<run>/checkpoints/`; the config is always the run's own `.hydra/config.yaml`, with optional
overrides (e.g. `data.limit=500`) applied on top.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ssl_bench.errors import ConfigError, UserError

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
        raise ConfigError("ckpt", "no run given.", "pass ckpt=<run dir> or ckpt=<run dir>/checkpoints/last.ckpt.")
    path = Path(str(ckpt)).expanduser()
    if not path.exists():
        raise UserError(f"ckpt '{path}' does not exist. Fix: pass ckpt=<run dir> (holding .hydra/config.yaml and "
                        "checkpoints/last.ckpt) or the path of a .ckpt file in such a run dir.")
    if path.is_dir():
        run_dir, ckpt_file = path, path / "checkpoints" / "last.ckpt"
        if not (run_dir / CONFIG_FILE).is_file():
            raise UserError(f"'{run_dir}' is not a run dir: it has no {CONFIG_FILE}. Fix: pass the dir of one run "
                            "(outputs/runs/<date>/<time>_<name> or a multirun job dir).")
        if not ckpt_file.is_file():
            raise UserError(f"run dir '{run_dir}' has no checkpoints/last.ckpt (did the run finish an epoch?). "
                            "Fix: pass ckpt=<path of a .ckpt file>.")
        return run_dir, ckpt_file
    run_dir = next((p for p in (path.parent.parent, path.parent) if (p / CONFIG_FILE).is_file()), None)
    if run_dir is None:
        raise UserError(f"cannot find the run config for checkpoint '{path}': no {CONFIG_FILE} in "
                        f"'{path.parent.parent}'. Fix: pass a checkpoint inside a run dir (<run>/checkpoints/*.ckpt).")
    return run_dir, path


def load_run_config(run_dir: Path, overrides: list[str] | None = None) -> DictConfig:
    cfg = OmegaConf.load(run_dir / CONFIG_FILE)
    OmegaConf.set_struct(cfg, False)
    for item in overrides or []:
        key, _, value = item.partition("=")
        top = key.split(".")[0]
        if top not in cfg:
            raise ConfigError(key, f"is neither an eval option nor a key of the run's config ({run_dir / CONFIG_FILE}).",
                              "check the spelling; run-config keys look like data.limit=500.")
        try:
            OmegaConf.update(cfg, key, OmegaConf.from_dotlist([f"v={value}"]).v, merge=True)
        except Exception as err:  # noqa: BLE001 - omegaconf raises several kinds
            raise ConfigError(key, f"cannot set it to {value!r}: {err}") from None
    cfg.compile = False  # the eval graph differs from training's; compiling would only cost time here
    return cfg


def load_state_dict(ckpt: Path) -> dict[str, torch.Tensor]:
    try:
        try:
            obj = torch.load(ckpt, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - Lightning checkpoints may hold plain-python hparams objects
            obj = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001
        raise UserError(f"cannot read checkpoint '{ckpt}': {err}. Fix: pass a Lightning .ckpt written by "
                        "ssl_bench (checkpoints/last.ckpt).") from None
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not any(k.startswith("backbone.") for k in sd):
        raise UserError(f"checkpoint '{ckpt}' holds no 'backbone.*' weights. Fix: pass a checkpoint of an "
                        "ssl_bench run (checkpoints/last.ckpt).")
    return sd


def backbone_state(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        if k.startswith("backbone."):
            out[k[len("backbone."):].replace("_orig_mod.", "")] = v  # torch.compile'd backbones
    return out


def load_backbone_into(backbone: nn.Module, sd: dict[str, torch.Tensor], ckpt: Path, cfg: DictConfig) -> None:
    state = backbone_state(sd)
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).replace("\t", "\n").splitlines() if line.strip()][1:]
        first = lines[:1] + ([f"(and {len(lines) - 1} more)"] if len(lines) > 1 else [])
        b = cfg.backbone
        raise UserError(
            f"checkpoint '{ckpt}' holds a different backbone than the config builds (backbone.name={b.get('name')}, "
            f"backbone.kwargs={OmegaConf.to_container(b.get('kwargs')) if b.get('kwargs') is not None else None}): "
            f"{' '.join(first)} Fix: evaluate a checkpoint with the config of its own run (drop backbone.* "
            "overrides, or pass the run dir the checkpoint came from).") from None


def pick_device(device: str) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ConfigError("device", f"unknown device {device!r}.", "use auto, cpu or cuda.") from None


def build_for_eval(ckpt: str | Path, overrides: list[str] | None = None):
    """(RunRef, datamodule after setup, method with the checkpoint's backbone weights, on CPU)."""
    run_dir, ckpt_file = resolve_run(ckpt)
    cfg = load_run_config(run_dir, overrides)
    sd = load_state_dict(ckpt_file)
    from ssl_bench.train import build_datamodule, build_method  # heavy imports only once the inputs are sound

    dm = build_datamodule(cfg)
    dm.setup("fit")
    if dm.num_classes == 0 or dm.splits.get("train") is None or dm.splits.get("test") is None:
        raise UserError(f"data '{cfg.data.name}' has no labelled train and test splits; offline evaluation "
                        "needs labels. Fix: evaluate on a labelled dataset (override data.*).")
    model = build_method(cfg, dm.num_classes)
    load_backbone_into(model.backbone, sd, ckpt_file, cfg)
    return RunRef(run_dir, ckpt_file, cfg), dm, model


# ---- batches ----------------------------------------------------------------------------------------
def augment_pipeline(size: int, scale=(0.08, 1.0), hflip: float = 0.5):
    """The linear-protocol training transform: random resized crop + flip, no colour changes."""
    from ssl_bench.data.views import ViewPipeline

    return ViewPipeline(num_crops=1, crop_size=int(size), scale=tuple(float(s) for s in scale), hflip=float(hflip),
                        jitter_prob=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, grayscale=0.0,
                        blur_prob=0.0, solarize=0.0)


class SplitBatches:
    """Batches `(x float normalised [B,3,S,S] on device, labels)` of one split of a set-up SSLDataModule.

    `augment` (a ViewPipeline) draws a fresh random crop+flip per image and pass; without it the
    images are the un-augmented eval transform. In-memory data is indexed and transformed on the
    device (BatchViews / BatchEval); image folders go through a DataLoader with per-item transforms.
    """

    def __init__(self, dm, split: str, batch_size: int, device: torch.device, augment=None, seed: int = 0):
        from ssl_bench.data.datasets import TensorImages

        self.dm, self.batch_size, self.device = dm, int(batch_size), device
        ds = dm.splits[split]
        self.base = getattr(ds, "data", ds)  # _Transformed wraps in-memory data when device views are off
        self.in_memory = isinstance(self.base, TensorImages)
        self.generator = torch.Generator().manual_seed(seed)
        info = dm.info
        if self.in_memory:
            from ssl_bench.data.views import BatchEval, BatchViews

            self.transform = BatchViews([augment], info.mean, info.std, seed=seed) if augment else \
                BatchEval(dm.eval_size, info.mean, info.std)
            self.augment = augment is not None
        else:
            import copy

            from ssl_bench.data.views import build_cpu_views, cpu_eval_transform

            self.folder = copy.copy(self.base)
            if augment:
                views = build_cpu_views([augment], info.mean, info.std)
                self.folder.transform = _FirstView(views)
            else:
                self.folder.transform = cpu_eval_transform(dm.eval_size, info.mean, info.std)

    @property
    def labels(self) -> torch.Tensor:
        return torch.as_tensor(self.base.labels)

    def __len__(self) -> int:
        return len(self.base)

    def num_batches(self, drop_last: bool = False) -> int:
        n = len(self.base)
        return n // self.batch_size if drop_last else math.ceil(n / self.batch_size)

    def __call__(self, shuffle: bool = False, drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.in_memory:
            n = len(self.base)
            order = torch.randperm(n, generator=self.generator) if shuffle else torch.arange(n)
            stop = (n // self.batch_size) * self.batch_size if drop_last and n >= self.batch_size else n
            for start in range(0, stop, self.batch_size):
                idx = order[start:start + self.batch_size]
                imgs = self.base.images[idx].to(self.device, non_blocking=True)
                x = self.transform(imgs)
                x = x[0] if isinstance(x, list) else x
                yield x, self.base.labels[idx].to(self.device)
        else:
            from torch.utils.data import DataLoader

            loader = DataLoader(self.folder, batch_size=self.batch_size, shuffle=shuffle, drop_last=drop_last,
                                num_workers=self.dm.num_workers, generator=self.generator)
            for x, y, _ in loader:
                yield x.to(self.device), y.to(self.device)


class _FirstView:
    """Picklable: per-item CpuViews -> its single view."""

    def __init__(self, views):
        self.views = views

    def __call__(self, img):
        return self.views(img)[0]


@torch.no_grad()
def extract_features(backbone: nn.Module, batches: SplitBatches) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [N, D] (float32) and labels [N] of a whole split, backbone in eval mode, on batches.device."""
    was_training = backbone.training
    backbone.eval()
    feats, labels = [], []
    for x, y in batches(shuffle=False):
        feats.append(backbone(x).float())
        labels.append(y)
    backbone.train(was_training)
    return torch.cat(feats), torch.cat(labels)


def topk_correct(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit = top == labels[:, None]
    return int(hit[:, 0].sum()), int(hit.any(1).sum())


def cosine_lr(step: int, total: int, base: float) -> float:
    return base * 0.5 * (1 + math.cos(math.pi * min(step, total) / max(1, total)))


# ---- results ----------------------------------------------------------------------------------------
def write_results(run: RunRef, mode: str, results: dict[str, Any], out: str | Path | None = None) -> Path:
    out_dir = Path(out) if out else run.run_dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"eval_{mode}.json"
        path.write_text(json.dumps(results, indent=2, default=str))
    except OSError as err:
        raise UserError(f"cannot write results to '{out_dir}' ({err.strerror or err}). Fix: pass out=<writable dir>.") \
            from None
    return path


def find_wandb_run_id(run_dir: Path) -> str | None:
    """The id of the run's W&B run: the suffix of <run_dir>/wandb/(offline-)run-<date>_<time>-<id>."""
    wdir = run_dir / "wandb"
    if not wdir.is_dir():
        return None
    dirs = [p for p in wdir.iterdir() if p.is_dir() and (p.name.startswith("run-") or p.name.startswith("offline-run-"))]
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


def wandb_log(run: RunRef, mode: str, summary: dict[str, Any], images: dict[str, Path] | None = None,
              setting: str = "auto") -> str | None:
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
    group = wb_cfg.get("group") or _job_sweep_group(run.run_dir) or _sweep_group(run.run_dir) or \
        f"{run.cfg.method.name}-{run.cfg.data.name}"
    kwargs = dict(project=wb_cfg.get("project", "ssl_bench"), entity=wb_cfg.get("entity"), dir=str(run.run_dir),
                  mode=resolve_mode(wb_cfg.get("mode")))
    if run_id and setting in ("auto", "resume"):
        kwargs.update(id=run_id, resume="allow")
    else:
        kwargs.update(name=f"{name}-eval", group=group, job_type="eval",
                      tags=[run.cfg.method.name, run.cfg.data.name, str(run.cfg.backbone.tag), "eval"])
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
