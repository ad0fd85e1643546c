"""The W&B group of a run and of its offline evaluations (ssl_bench.wandb_utils.wandb_group): one
function that training (make_wandb_logger) and `python -m ssl_bench.eval` (eval/results.wandb_log)
both call, so an evaluation lands in its run's group."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from ssl_bench.wandb_utils import sweep_group, wandb_group


def _cfg(group=None, logger=True):
    cfg = {"method": {"name": "simclr"}, "data": {"name": "cifar10"}}
    if logger:
        cfg["logger"] = {"wandb": {"project": "p", "group": group}}
    return OmegaConf.create(cfg)


def _hydra_yaml(run_dir: Path, mode: str, sweep_dir: str) -> None:
    (run_dir / ".hydra").mkdir(parents=True)
    hydra = {"hydra": {"mode": mode, "sweep": {"dir": sweep_dir, "subdir": "0"}}}
    OmegaConf.save(OmegaConf.create(hydra), run_dir / ".hydra" / "hydra.yaml")


def test_single_run_is_grouped_by_method_and_data(tmp_path):
    run = tmp_path / "runs" / "2026-01-02" / "10-00-00_simclr"
    run.mkdir(parents=True)
    assert sweep_group(run) is None
    assert wandb_group(_cfg(), run) == "simclr-cifar10"
    assert wandb_group(_cfg(logger=False), run) == "simclr-cifar10"  # an eval of a run without W&B


def test_configured_group_wins(tmp_path):
    run = tmp_path / "multirun" / "2026-01-02" / "10-00-00" / "0"
    run.mkdir(parents=True)
    assert wandb_group(_cfg(group="mine"), run) == "mine"


def test_a_finished_sweep_job_keeps_its_sweeps_group(tmp_path):
    """An evaluation runs without Hydra: the group comes from the job's saved hydra.yaml (any sweep
    dir), as training took it from the live Hydra runtime; else from a .../multirun/<date>/<time>
    path."""
    job = tmp_path / "sweeps" / "lr_search" / "2026-01-02_10-00-00" / "3"
    _hydra_yaml(job, "MULTIRUN", str(tmp_path / "sweeps" / "lr_search" / "2026-01-02_10-00-00"))
    assert wandb_group(_cfg(), job) == "sweep-lr_search-2026-01-02_10-00-00"
    single = tmp_path / "single"
    _hydra_yaml(single, "RUN", str(tmp_path / "multirun" / "x" / "y"))
    assert wandb_group(_cfg(), single) == "simclr-cifar10"
    by_path = tmp_path / "multirun" / "2026-01-02" / "11-00-00" / "0"
    by_path.mkdir(parents=True)
    assert wandb_group(_cfg(), by_path) == "sweep-2026-01-02-11-00-00"
