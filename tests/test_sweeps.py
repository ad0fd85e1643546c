"""Sweeps and scale-out through the real CLI: a grid multirun with failing jobs, the joblib /
submitit_local launchers, an Optuna search, the SLURM launcher's resolved parameters, DDP on 2 CPU
processes, and the refusal of DDP inside a local multirun."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import FAST, REPO, CliRun, run_cli

# fault_methods lives in tests/; one OpenMP thread per job (the joblib launcher sets its own share)
ENV = {"OMP_NUM_THREADS": "1", "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"}
TINY = [*FAST, "trainer.fast_dev_run=true"]


def multirun(tmp_path: Path, *overrides: str, timeout: int = 600) -> tuple[CliRun, Path]:
    """`python -m ssl_bench -m <overrides>` into tmp_path/sweep, forked from the tests' pre-imported
    zygote like every other CLI call (~7 CPU-seconds of imports saved per sweep); the launchers'
    own job processes (joblib, submitit) still start as they would in a user's sweep."""
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m",
        *overrides,
        f"hydra.sweep.dir={sweep}",
        f"hydra.run.dir={tmp_path / 'unused'}",  # run_cli's run dir: a multirun writes none
        f"output_root={tmp_path}",
        run_dir=sweep,
        env=ENV,
        timeout=timeout,
    )
    return proc, sweep


def job_results(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))}


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_grid_sweep_goes_on_after_failed_jobs_and_writes_leaderboard(tmp_path):
    # 2 x 2: the jobs with nan_steps=[1] fail at their second step (a NaN loss), the others complete
    proc, sweep = multirun(
        tmp_path,
        *FAST,
        "trainer.max_epochs=1",
        "optimizer=sgd",
        "method._target_=fault_methods.NaNAtSteps",
        "+method.nan_steps=[],[1]",
        "seed=0,1",
    )
    assert proc.returncode == 4, proc.stderr[-3000:]  # EXIT_SWEEP_FAILURES
    res = job_results(sweep)
    assert (
        len([d for d in sweep.iterdir() if d.is_dir() and d.name[0].isdigit()]) == 4
        and len(res) == 4
    )
    status = sorted(r["status"] for r in res.values())
    assert status == ["completed", "completed", "failed", "failed"]
    assert all("non-finite" in r["error"] for r in res.values() if r["status"] == "failed")
    report = (sweep / "report.md").read_text()
    assert (
        "2 failed runs not shown" in report and "kNN best" in report
    )  # the leaderboard: completed jobs
    assert "4 job(s), 2 failed" in proc.stderr
    # the table of its jobs: a header and one row per job, in job order, with its status
    table = proc.stderr.split("4 job(s), 2 failed", 1)[1].splitlines()[1:6]
    assert table[0].split() == [
        "job", "status", "kNN", "init", "kNN", "best", "probe", "best", "epochs", "steps", "time"
    ]  # fmt: skip
    rows = [line.split() for line in table[1:]]
    assert [r[0].split("_")[0] for r in rows] == ["0", "1", "2", "3"]
    assert sorted(r[1] for r in rows) == status


def test_ddp_in_a_local_multirun_is_refused_with_the_way_out(tmp_path):
    proc, sweep = multirun(tmp_path, *TINY, "trainer=ddp_cpu", "seed=0,1")
    assert proc.returncode == 4
    assert (
        "trainer.strategy" in proc.stderr
        and "launcher=slurm" in proc.stderr
        and "ddp_spawn" in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert [r["status"] for r in job_results(sweep).values()] == ["failed", "failed"]


@pytest.mark.skipif(
    not _has("hydra_plugins.hydra_joblib_launcher"), reason="needs hydra-joblib-launcher ([sweep])"
)
def test_joblib_launcher_runs_jobs_in_parallel_processes_with_a_thread_share(tmp_path):
    proc, sweep = multirun(
        tmp_path, *TINY, "launcher=joblib", "hydra.launcher.n_jobs=2", "method.temperature=0.5,-1"
    )
    assert proc.returncode == 4, proc.stderr[-3000:]
    res = job_results(sweep)
    ok = [r for r in res.values() if r["status"] == "completed"]
    bad = [r for r in res.values() if r["status"] == "failed"]
    assert len(ok) == 1 and len(bad) == 1 and "method.temperature" in bad[0]["error"]
    assert ok[0]["torch_threads"] == max(1, (os.cpu_count() or 1) // 2)


@pytest.mark.skipif(
    not _has("hydra_plugins.hydra_submitit_launcher"),
    reason="needs hydra-submitit-launcher ([slurm])",
)
def test_submitit_local_launcher_runs_a_two_job_sweep(tmp_path):
    proc, sweep = multirun(tmp_path, *TINY, "launcher=submitit_local", "seed=0,1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = job_results(sweep)
    assert sorted(r["seed"] for r in res.values()) == [0, 1] and all(
        r["status"] == "completed" for r in res.values()
    )


@pytest.mark.skipif(
    not _has("hydra_plugins.hydra_submitit_launcher"),
    reason="needs hydra-submitit-launcher ([slurm])",
)
def test_slurm_launcher_resolves_nodes_tasks_and_gpus_from_the_trainer():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from ssl_bench.config import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "launcher=slurm",
                "trainer=ddp",
                "trainer.devices=4",
                "trainer.num_nodes=2",
                "hydra.launcher.partition=gpu",
                "hydra.launcher.timeout_min=600",
            ],
            return_hydra_config=True,
        )
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (2, 4, 4)
    assert launcher["partition"] == "gpu" and launcher["timeout_min"] == 600
    assert (
        launcher["signal_delay_s"] > 0 and launcher["max_num_timeout"] > 0
    )  # warning signal + requeues
    assert cfg.resume == "auto" and cfg.trainer.strategy == "ddp"


@pytest.mark.skipif(
    not _has("hydra_plugins.hydra_optuna_sweeper"), reason="needs hydra-optuna-sweeper ([hpo])"
)
def test_optuna_search_composes_and_runs_two_trials(tmp_path):
    from hydra import compose, initialize_config_dir

    from ssl_bench.config import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["hparams_search=optuna"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert set(sweeper.params) == {"optimizer.lr", "method.temperature", "optimizer.weight_decay"}
    assert cfg.optimize_metric == "val/knn_top1"

    proc, sweep = multirun(tmp_path, *TINY, "hparams_search=optuna", "hydra.sweeper.n_trials=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = job_results(sweep)
    assert len(res) == 2 and len({r["lr"] for r in res.values()}) == 2  # two different trials
    best = (sweep / "optimization_results.yaml").read_text()
    assert "best_value" in best and "optimizer.lr" in best


def test_ddp_cpu_two_processes_write_one_results_and_one_log(tmp_path):
    run_dir = tmp_path / "run"
    # rank 0 forks from the zygote; Lightning starts rank 1 as `python -m ssl_bench.__main__ ...`
    proc = run_cli(
        *FAST,
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        "trainer.log_every_n_steps=1",
        "optimizer=sgd",
        "optimizer.lr=0.4",
        "optimizer.scale_lr=true",
        "scheduler=constant",
        run_dir=run_dir,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((run_dir / "results.json").read_text())
    assert res["devices"] == 2 and res["status"] == "completed"
    assert res["global_step"] == 256 // (64 * 2)  # each rank takes half of every epoch
    assert "val/knn_top1" in res["final"]
    assert (
        len(list(tmp_path.rglob("results.json"))) == 1
        and len(list(tmp_path.rglob("metrics.csv"))) == 1
    )
    import csv

    with open(run_dir / "metrics.csv") as f:
        lrs = {float(r["lr"]) for r in csv.DictReader(f) if r.get("lr")}
    assert (
        len(lrs) == 1 and abs(lrs.pop() - 0.4 * 64 * 2 / 256) < 1e-6
    )  # scaled by the global batch (2 x 64)


def test_each_rank_draws_its_own_augmentations_and_its_own_shard():
    from types import SimpleNamespace

    import torch
    from hydra import compose, initialize_config_dir

    from ssl_bench.config import CONFIG_DIR
    from ssl_bench.training import build_datamodule

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "data=synthetic",
                "data.options.n_train=64",
                "data.options.n_test=32",
                "data.batch_size=8",
            ],
        )
    views, shards = [], []
    for rank in (0, 1):
        dm = build_datamodule(cfg)
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2, training=True)
        dm.setup("fit")
        x = dm.splits["pretrain"].images[:8]
        views.append(dm.batch_views(x))
        shards.append(list(dm.train_dataloader().sampler))
    assert not torch.equal(views[0][0], views[1][0])  # different crops / jitter per rank
    assert set(shards[0]).isdisjoint(shards[1]) and len(shards[0]) == len(shards[1]) == 32


def test_sweep_jobs_are_separate_wandb_runs_in_one_group(tmp_path):
    from wandb_records import read_offline_run

    # the first job fails (NaN at its second step): its W&B run must still end, the second get its
    # own
    proc, sweep = multirun(
        tmp_path,
        *FAST,
        "trainer.max_epochs=1",
        "logger=wandb",
        "optimizer=sgd",
        "method._target_=fault_methods.NaNAtSteps",
        "+method.nan_steps=[1],[]",
    )
    assert proc.returncode == 4, proc.stderr[-3000:]
    jobs = sorted(p.parent for p in sweep.glob("*/results.json"))
    runs = [read_offline_run(job)["run"] for job in jobs]
    assert len(runs) == 2 and runs[0]["id"] != runs[1]["id"]
    assert [r["name"] for r in runs] == [job.name for job in jobs]  # <num>_<run name>: distinct
    assert runs[0]["group"] == runs[1]["group"] and runs[0]["group"].startswith("sweep-")
