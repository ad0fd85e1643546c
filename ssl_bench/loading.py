"""Use what you trained: `load_backbone(path)` and `load_method(path)` from a run dir, a `.ckpt` or
an export dir.

A checkpoint is self-describing. `RunRecord`, a callback of every training run, writes the resolved
run config, the backbone spec (timm name, small-input stem, kwargs) and the `DataInfo` the method
was built with into each checkpoint under `RECORD_KEY`; loading rebuilds the method with the same
`build_method` as training, so a lone `.ckpt` copied elsewhere loads without its run dir.
(Lightning's own `SimCLR.load_from_checkpoint` cannot: the backbone is a constructor argument, not a
hyperparameter.)
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, NoReturn

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ssl_bench.errors import ConfigError

#: where RunRecord writes into a Lightning checkpoint dict
RECORD_KEY = "ssl_bench_run"
RECORD_VERSION = 1
#: the files of an export dir (ssl_bench.export)
EXPORT_WEIGHTS, EXPORT_CONFIG = "model.safetensors", "config.json"

_PATH_FIX = (
    "pass a run dir (holding checkpoints/last.ckpt), a .ckpt file written by ssl_bench, or an "
    "export dir (holding config.json and model.safetensors)."
)


# ---- writing the record --------------------------------------------------------------------------
def backbone_spec(cfg: DictConfig) -> dict[str, Any]:
    """{name, small_input, kwargs} of `cfg.backbone`: the arguments of `create_backbone`."""
    b = OmegaConf.to_container(cfg.backbone, resolve=True)
    return {
        "name": b["name"],
        "small_input": bool(b.get("small_input", False)),
        "kwargs": dict(b.get("kwargs") or {}),
    }


class RunRecord(pl.Callback):
    """Writes what rebuilding the method needs into every checkpoint: the resolved config, the
    backbone spec and the method's DataInfo (plain Python values, so `torch.load(weights_only=True)`
    reads it)."""

    def __init__(self, cfg: DictConfig, data: Any):
        self.record = {
            "version": RECORD_VERSION,
            "config": OmegaConf.to_container(cfg, resolve=True),
            "backbone": backbone_spec(cfg),
            "data": {k: _plain(v) for k, v in dataclasses.asdict(data).items()},
        }

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        # `module`: whose weights are THE backbone (SSLMethod.eval_backbone; DINO's teacher)
        module = getattr(pl_module, "eval_backbone", "backbone")
        checkpoint[RECORD_KEY] = {
            **self.record,
            "backbone": {**self.record["backbone"], "module": module},
        }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# ---- finding and reading -------------------------------------------------------------------------
def is_export_dir(path: Path) -> bool:
    return path.is_dir() and (path / EXPORT_CONFIG).is_file() and (path / EXPORT_WEIGHTS).is_file()


def checkpoint_file(path: str | Path) -> Path:
    """The `.ckpt` of `path`: the file itself, or a run dir's checkpoints/last.ckpt."""
    p = Path(str(path)).expanduser()
    if p.is_file():
        return p
    if p.is_dir() and (p / "checkpoints" / "last.ckpt").is_file():
        return p / "checkpoints" / "last.ckpt"
    if not p.exists():
        problem = f"'{p}' does not exist."
    elif is_export_dir(p):
        _raise(
            f"'{p}' is an export dir: it holds the backbone only, not the whole method.",
            "load it with ssl_bench.load_backbone, or pass the run dir.",
        )
    else:
        problem = f"'{p}' is neither a checkpoint nor a run dir (no checkpoints/last.ckpt in it)."
    _raise(problem, _PATH_FIX)


def _raise(problem: str, fix: str) -> NoReturn:
    raise ConfigError("path", problem, fix)


def read_checkpoint(ckpt: Path) -> dict[str, Any]:
    """The checkpoint dict; a ConfigError naming the file when it is unreadable or lacks the run
    record."""
    try:
        try:
            obj = torch.load(ckpt, map_location="cpu", weights_only=True)
        # hparams may hold plain-python objects that weights_only refuses
        except Exception:  # noqa: BLE001
            obj = torch.load(ckpt, map_location="cpu", weights_only=False)
    # torch raises many kinds of error for a file that is not a checkpoint
    except Exception as err:  # noqa: BLE001
        _raise(f"cannot read '{ckpt}' as a checkpoint ({type(err).__name__}: {err}).", _PATH_FIX)
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        _raise(f"'{ckpt}' is not a Lightning checkpoint (no state_dict).", _PATH_FIX)
    record = obj.get(RECORD_KEY)
    if not isinstance(record, dict) or "config" not in record or "backbone" not in record:
        _raise(
            f"checkpoint '{ckpt}' does not record its run config and backbone (written before "
            "ssl_bench kept them in checkpoints, or not by ssl_bench).",
            "evaluate it from its run dir with `python -m ssl_bench.eval ckpt=<run dir>`, or "
            "continue the run once (resume=<run dir>) so that its last.ckpt records them.",
        )
    return obj


def _data_info(record: dict[str, Any]):
    from ssl_bench.data.info import DataInfo

    known = {f.name for f in dataclasses.fields(DataInfo)}
    data = {k: v for k, v in (record.get("data") or {}).items() if k in known}
    return DataInfo(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _strip_compile(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.replace("_orig_mod.", ""): v for k, v in sd.items()}


def _load_strict(model: nn.Module, sd: dict[str, torch.Tensor], source: Path) -> None:
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        first = str(err).replace("\t", "").splitlines()[1:2]
        _raise(
            f"the weights in '{source}' do not fit the model its record describes: "
            f"{' '.join(first)}",
            "load a checkpoint or export written by this version of ssl_bench.",
        )


# ---- loading -------------------------------------------------------------------------------------
def load_method(path: str | Path) -> pl.LightningModule:
    """The whole trained method (backbone, heads, target networks, online probe) of a run dir or
    `.ckpt`, rebuilt from the checkpoint's own record by `training.build_method`, on the CPU, in
    eval mode."""
    ckpt = checkpoint_file(path)
    obj = read_checkpoint(ckpt)
    record = obj[RECORD_KEY]
    cfg = OmegaConf.create(record["config"])
    cfg.compile = False  # the state dict is loaded without torch.compile's `_orig_mod.` prefixes
    from ssl_bench.training import build_method  # heavy: only once the input is sound

    model = build_method(cfg, _data_info(record))
    _load_strict(model, _strip_compile(obj["state_dict"]), ckpt)
    model.restore_run_state(obj, rng=False)  # knn_init; the caller's RNGs stay as they are
    return model.eval()


def load_backbone(path: str | Path) -> nn.Module:
    """The trained backbone - a timm model built with `num_classes=0` (pooled features) - in eval
    mode.

    `path`: a run dir, a `.ckpt`, or an export dir of `python -m ssl_bench.export`. For a plain timm
    backbone only the backbone is built; a method that reshapes its backbone (CMC's per-view
    encoders, CPC v2's LayerNorm encoder) is rebuilt whole and its `backbone` module returned.
    """
    p = Path(str(path)).expanduser()
    if is_export_dir(p):
        return _load_export(p)
    ckpt = checkpoint_file(p)
    obj = read_checkpoint(ckpt)
    model = plain_backbone(obj, ckpt)
    if model is not None:
        return model
    method = load_method(ckpt)
    return getattr(method, method.eval_backbone)


def plain_backbone(obj: dict[str, Any], ckpt: Path) -> nn.Module | None:
    """The backbone of checkpoint dict `obj`, built by `create_backbone` from its recorded spec with
    the trained weights (eval mode); None when the method's backbone is not that model (CMC, CPC v2
    with LayerNorm), i.e. when the weight names differ."""
    from ssl_bench.backbones import create_backbone

    spec = obj[RECORD_KEY]["backbone"]
    model = create_backbone(spec["name"], small_input=spec["small_input"], **spec["kwargs"])
    state = backbone_weights(obj["state_dict"], spec.get("module", "backbone"))
    if set(state) != set(model.state_dict()):
        return None
    _load_strict(model, state, ckpt)
    return model.eval()


def backbone_weights(
    state_dict: dict[str, torch.Tensor], module: str = "backbone"
) -> dict[str, torch.Tensor]:
    """The `<module>.*` entries of a method's state dict (the evaluated backbone's) under timm's
    own key names."""
    sd, prefix = _strip_compile(state_dict), module + "."
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def _load_export(export_dir: Path) -> nn.Module:
    from safetensors.torch import load_file

    from ssl_bench.backbones import create_backbone

    try:
        config = json.loads((export_dir / EXPORT_CONFIG).read_text())
        kwargs = dict(config["model_args"])
        name = config["architecture"]
        small_input = bool(config["ssl_bench"]["small_input"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        _raise(
            f"'{export_dir / EXPORT_CONFIG}' is not an ssl_bench export config ({err}).",
            "export the run again with `python -m ssl_bench.export <run dir> out=<dir>`.",
        )
    kwargs.pop("num_classes", None)
    model = create_backbone(name, small_input=small_input, **kwargs)
    _load_strict(model, load_file(str(export_dir / EXPORT_WEIGHTS)), export_dir / EXPORT_WEIGHTS)
    return model.eval()
