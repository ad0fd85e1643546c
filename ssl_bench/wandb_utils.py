"""Weights & Biases: the logger of a run, its group, and its final summary.

A run is offline when WANDB_MODE=offline/disabled or when no API key is available, so nothing ever
waits for a login. (The reader of offline `.wandb` record logs, which only tests need, is
tests/wandb_records.py.)
"""

from __future__ import annotations

import netrc
import os
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
