"""Weights & Biases: the logger of a run, its final summary, and a reader for offline run files.

A run is offline when WANDB_MODE=offline/disabled or when no API key is available, so nothing ever
waits for a login. wandb >= 0.19 offline runs write no wandb-summary.json; what was logged lives
only in the run's `.wandb` record log, which `read_wandb_records` decodes (LevelDB log format: 32
KiB blocks of CRC-framed chunks, each chunk a piece of one protobuf `Record`).
"""

from __future__ import annotations

import json
import netrc
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

SUMMARY_MAX = ("val/knn_top1", "val/knn_top5", "val/probe_top1")


def has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc().authenticators("api.wandb.ai")
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return bool(auth and auth[2])


def resolve_mode(mode: str | None) -> str:
    env = os.environ.get("WANDB_MODE")
    if mode:
        return mode
    if env in ("offline", "disabled", "dryrun"):
        return "offline" if env == "dryrun" else env
    return "online" if has_api_key() else "offline"


def make_wandb_logger(cfg: DictConfig, run_dir: Path, run_name: str):
    from pytorch_lightning.loggers import WandbLogger

    wb = cfg.logger.wandb
    mode = resolve_mode(wb.get("mode"))
    group = wandb_group(cfg, run_dir)
    if sweep_group(run_dir):  # jobs of a sweep often share a run name (the swept key is not in it)
        run_name = run_dir.name  # so each is named by its job dir
    tags = list(wb.get("tags") or []) + [cfg.method.name, cfg.data.name, cfg.backbone.tag]
    logger = WandbLogger(
        project=wb.project,
        entity=wb.get("entity"),
        name=run_name,
        group=group,
        tags=tags,
        save_dir=str(run_dir),
        mode=mode,
        log_model=bool(wb.get("log_model", False)),
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    # Lightning's WandbLogger passes anonymous=None to wandb.init, and wandb >= 0.19 warns "The
    # anonymous setting has no effect" whenever the key is there (wandb_settings.validate_anonymous)
    init = getattr(logger, "_wandb_init", {})
    if "anonymous" in init and init["anonymous"] is None:
        del init["anonymous"]
    run = logger.experiment
    if hasattr(run, "define_metric"):
        for key in SUMMARY_MAX:
            run.define_metric(key, summary="max")
    return logger


def wandb_group(cfg: DictConfig, run_dir: Path) -> str:
    """The W&B group of a run and of its offline evaluations: `logger.wandb.group` when set, else
    the sweep's group for a job of a multirun, else <method>-<data>."""
    logger = cfg.get("logger") or {}
    wb = logger.get("wandb") or {}
    return wb.get("group") or sweep_group(run_dir) or f"{cfg.method.name}-{cfg.data.name}"


def sweep_group(run_dir: Path) -> str | None:
    """The group the jobs of one Hydra multirun share: `sweep-<date>-<time>`, from the last two
    parts of hydra.sweep.dir (any sweep dir, not only <...>/multirun/<date>/<time>); None for a
    single run.

    The sweep dir comes from the live Hydra runtime (a training job), else from the job's saved
    .hydra/hydra.yaml (an evaluation of a finished job, when its sweep dir has no interpolation
    left), else the two parts after `multirun` in the run dir's own path."""
    sweep_dir = _live_sweep_dir() or _saved_sweep_dir(run_dir)
    if sweep_dir is not None:
        return "sweep-" + "-".join(Path(sweep_dir).parts[-2:])
    parts = run_dir.resolve().parts
    if "multirun" in parts:
        i = parts.index("multirun")
        return "sweep-" + "-".join(parts[i + 1 : i + 3])
    return None


def _live_sweep_dir() -> str | None:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            return str(HydraConfig.get().sweep.dir)
    except Exception:  # noqa: BLE001 - no Hydra runtime
        return None
    return None


def _saved_sweep_dir(run_dir: Path) -> str | None:
    try:
        hydra = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra
        sweep_dir = str(OmegaConf.to_container(hydra.sweep, resolve=False)["dir"])
        if str(hydra.get("mode")) == "MULTIRUN" and "${" not in sweep_dir:
            return sweep_dir
    except Exception:  # noqa: BLE001 - a single run, or no hydra.yaml
        return None
    return None


def finish_wandb(logger, results: dict[str, Any]) -> None:
    run = logger.experiment
    for key, value in results.get("best", {}).items():
        run.summary[key] = value
    for key in ("knn_top1_init", "wall_time_s", "images_per_sec", "status", "epochs"):
        if results.get(key) is not None:
            run.summary[key] = results[key]
    if results.get("knn_top1_init") is not None:
        run.summary["val/knn_top1_init"] = results["knn_top1_init"]
    run.finish()


# ---- reading offline runs ------------------------------------------------------------------------
_BLOCK = 32 * 1024
_HEADER = 7  # crc32 (4) + length (2) + type (1)
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _chunks(data: bytes, start: int) -> Iterator[tuple[int, bytes]]:
    pos = start
    while pos + _HEADER <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _HEADER:  # block trailer padding
            pos += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if kind == 0 and length == 0:  # zero padding at the end of a block or file
            pos += left_in_block
            continue
        yield kind, data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length


def read_wandb_records(path: str | Path):
    """Yield the protobuf Records of one `.wandb` file."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B record log")
    buf = b""
    for kind, payload in _chunks(data, 7):
        if kind == _FULL:
            buf = payload
        elif kind == _FIRST:
            buf = payload
            continue
        elif kind == _MIDDLE:
            buf += payload
            continue
        elif kind == _LAST:
            buf += payload
        else:
            continue
        rec = pb.Record()
        rec.ParseFromString(buf)
        yield rec
        buf = b""


def read_offline_run(run_dir: str | Path) -> dict[str, Any]:
    """{'history': [row, ...], 'summary': {...}, 'config': {...}, 'run': {name, group, tags}} of the
    (first) W&B run below run_dir."""
    files = sorted(Path(run_dir).rglob("*.wandb"))
    if not files:
        raise FileNotFoundError(f"no .wandb file below {run_dir}")
    history, summary, config, run = [], {}, {}, {}
    for rec in read_wandb_records(files[0]):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            history.append(
                {
                    i.key or "/".join(i.nested_key): json.loads(i.value_json)
                    for i in rec.history.item
                }
            )
        elif kind == "summary":
            for item in rec.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind in ("config", "run"):  # wandb.init(config=...) travels in the run record
            if kind == "run":
                run = {
                    "id": rec.run.run_id,
                    "name": rec.run.display_name,
                    "group": rec.run.run_group,
                    "tags": list(rec.run.tags),
                }
            updates = rec.config.update if kind == "config" else rec.run.config.update
            for item in updates:
                config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return {"history": history, "summary": summary, "config": config, "run": run}
