"""Shared test helpers: drive the real CLI in a subprocess and read what a run leaves behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fmnist = pytest.mark.skipif(
    not (FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST absent (apt-get install dataset-fashion-mnist)",
)

# The groups the CLI tests were written and calibrated with, from before a method's recipe chose
# them (every method then ran on SimCLR's CIFAR views with LARS and a warm-up cosine). Pinned first,
# so that a test's own group choice later in its overrides still wins (Hydra takes the last value).
PINNED = ["augmentation=simclr", "optimizer=lars", "scheduler=warmup_cosine"]
# small, fast settings shared by CLI tests: tiny synthetic data, narrow backbone, no progress bar
FAST = [
    *PINNED,
    "data=synthetic",
    "backbone=resnet18_narrow",
    "progress_bar=false",
    "data.options.n_train=256",
    "data.options.n_test=128",
    "data.batch_size=64",
    "data.eval_batch_size=256",
    "online_eval.knn_k=20",
]


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str
    run_dir: Path

    @property
    def results(self) -> dict:
        return json.loads((self.run_dir / "results.json").read_text())

    def metrics(self) -> list[dict]:
        import csv

        with open(self.run_dir / "metrics.csv") as f:
            return list(csv.DictReader(f))


def run_cli(
    *overrides: str,
    run_dir: Path,
    env: dict | None = None,
    timeout: int = 600,
    module: str = "ssl_bench",
    check: bool = False,
) -> CliRun:
    """`python -m ssl_bench <overrides> hydra.run.dir=<run_dir>` in a subprocess."""
    full_env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "HYDRA_FULL_ERROR": "0",
        **(env or {}),
    }
    args = [sys.executable, "-m", module, *overrides]
    if module == "ssl_bench" and not any(o.startswith("hydra.run.dir=") for o in overrides):
        args.append(f"hydra.run.dir={run_dir}")
    proc = subprocess.run(
        args, cwd=run_dir.parent, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    run = CliRun(proc.returncode, proc.stdout, proc.stderr, run_dir)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"CLI failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return run


# The shared recipe of the learning tests: a short SSL run on synthetic data that must lift kNN
# top-1 clearly above its random-init baseline. Calibrated with SimCLR on 2 CPU cores (bf16): kNN
# top-1 22% at init -> 38% after one epoch and 47% after two. Crops of at least 20% of the image
# matter here: with SimCLR's 8% minimum the 32px shapes are mostly cut away and kNN stayed at its
# init level for 2 epochs. Methods add their own overrides (lr, temperature; `views.1.scale` when
# their preset has 2 pipelines).
LEARN = [
    *PINNED,
    "data=synthetic",
    "backbone=resnet18_narrow",
    "progress_bar=false",
    "data.options.n_train=2000",
    "data.options.n_test=500",
    "data.batch_size=64",
    "data.eval_batch_size=500",
    "trainer.max_epochs=2",
    "scheduler.warmup_epochs=0.5",
    "online_eval.knn_k=50",
    "trainer.log_every_n_steps=5",
    "augmentation.views.0.scale=[0.2,1.0]",
]


def knn_gain(run: CliRun) -> tuple[float, float]:
    """(kNN top-1 at random init, best kNN top-1 after SSL) of a finished run."""
    res = run.results
    return res["knn_top1_init"], res["best"]["val/knn_top1"]


@pytest.fixture(autouse=True)
def one_thread():
    """In-process tests use one intra-op thread: their loops are tiny, and more threads only
    oversubscribe the 2 shared cores (CLI subprocesses take OMP_NUM_THREADS from `make test`)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def narrow_backbone():
    """The narrow ResNet-18 (16-32-64-128) with the small-input stem that the in-process tests
    train."""
    from ssl_bench.backbones import create_backbone

    return create_backbone("resnet18", small_input=True, channels=(16, 32, 64, 128))


def learning_run(
    method: str, tmp_path: Path, overrides: list[str]
) -> tuple[float, float, list[float]]:
    """The shared short synthetic run (LEARN) plus a method's overrides: (kNN init, best kNN,
    train/z_std)."""
    run = run_cli(
        *LEARN, f"method={method}", *overrides, run_dir=tmp_path / "learn", check=True, timeout=1200
    )
    init, best = knn_gain(run)
    z_std = [float(r["train/z_std"]) for r in run.metrics() if r.get("train/z_std")]
    return init, best, z_std


def train_fixed_batch(model, views, steps: int = 30, lr: float = 0.05):
    """`steps` SGD steps of a method on one fixed list of views, with the hooks a Trainer would call
    around each optimizer step. Returns (losses, the last training_loss output)."""
    import torch

    params = [p for g in model.parameter_groups(True) for p in g["params"]]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    losses, out = [], None
    for _ in range(steps):
        out = model.training_loss(views, None, None)
        opt.zero_grad()
        out["loss"].backward()
        model.on_before_optimizer_step(opt)
        opt.step()
        model.after_optimizer_step()
        losses.append(out["loss"].item())
    return losses, out
