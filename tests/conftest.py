"""Shared test helpers: drive the real CLI in a subprocess and read what a run leaves behind."""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import re
import subprocess
import sys
import threading
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
# appended to FAST: the full-width ResNet-18 on a tiny synthetic set (one step, one evaluation, no
# random-init baseline), for the fast_dev_runs the issues ask for on `backbone=resnet18`
RESNET18_TINY = [
    "backbone=resnet18",
    "data.options.n_train=64",
    "data.options.n_test=32",
    "data.batch_size=32",
    "online_eval.init_baseline=false",
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


class _Zygote:
    """The client side of tests/zygote.py: one pre-imported Python per pytest process that forks a
    child per CLI call (~7 CPU-seconds of imports saved per call). SSL_BENCH_TEST_ZYGOTE=0 turns it
    off."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "zygote.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        ready = self.proc.stdout.readline()
        if not ready:
            raise RuntimeError("tests/zygote.py did not start (see its stderr above)")

    def run(self, module: str, args: list[str], env: dict, cwd: Path, timeout: float):
        """(exit status, stdout, stderr) of `python -m <module> <args>`; a zygote left in an unknown
        state by an error here is killed, never reused."""
        call = self.start(module, args, env, cwd)
        return call.wait(timeout)

    def start(self, module: str, args: list[str], env: dict, cwd: Path) -> _ZygoteCall:
        """Fork the child of `python -m <module> <args>` and return at once (its pid known)."""
        try:
            return _ZygoteCall(self, module, args, env, cwd)
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


class _ZygoteCall:
    """One call running in a child of a zygote: `pid` at once, `wait` for its end. The zygote serves
    nothing else until the call has been waited for."""

    def __init__(self, zygote: _Zygote, module: str, args: list[str], env: dict, cwd: Path):
        import tempfile

        self.zygote, self.command, self.done = zygote, [module, *args], False
        self._tmp = tempfile.TemporaryDirectory()
        self.out, self.err = Path(self._tmp.name) / "stdout", Path(self._tmp.name) / "stderr"
        req = dict(
            module=module,
            args=args,
            env=env,
            cwd=str(cwd),
            stdout=str(self.out),
            stderr=str(self.err),
        )
        zygote.proc.stdin.write(json.dumps(req) + "\n")
        zygote.proc.stdin.flush()
        self.pid = json.loads(zygote.proc.stdout.readline())["pid"]

    def wait(self, timeout: float) -> tuple[int, str, str]:
        """(exit status, stdout, stderr); on a timeout or any error the child and the zygote are
        killed (a zygote left in an unknown state is never reused)."""
        import select
        import signal

        try:
            ready, _, _ = select.select([self.zygote.proc.stdout], [], [], timeout)
            if not ready:
                os.kill(self.pid, signal.SIGKILL)
                self.zygote.proc.stdout.readline()
                raise subprocess.TimeoutExpired(self.command, timeout)
            status = json.loads(self.zygote.proc.stdout.readline())["status"]
            self.done = True
            return (
                status,
                self.out.read_text(errors="replace"),
                self.err.read_text(errors="replace"),
            )
        except BaseException:
            self.abandon()
            raise
        finally:
            self._tmp.cleanup()

    def abandon(self) -> None:
        """Kill the child (when still running) and its zygote."""
        import signal

        if not self.done:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.zygote.kill()
        self._tmp.cleanup()


_IDLE_ZYGOTES: list[_Zygote] = []  # one per concurrent caller (a test may run CLI calls in threads)
_ZYGOTE_LOCK = threading.Lock()


@contextlib.contextmanager
def _zygote():
    """An idle zygote (a new one when all are busy), or None with SSL_BENCH_TEST_ZYGOTE=0."""
    if os.environ.get("SSL_BENCH_TEST_ZYGOTE", "1") == "0":
        yield None
        return
    with _ZYGOTE_LOCK:
        zygote = _IDLE_ZYGOTES.pop() if _IDLE_ZYGOTES else None
    if zygote is None or zygote.proc.poll() is not None:
        zygote = _Zygote()
        atexit.register(zygote.close)
    try:
        yield zygote
    finally:
        if zygote.proc.poll() is None:
            with _ZYGOTE_LOCK:
                _IDLE_ZYGOTES.append(zygote)


def _cli_env_args(overrides, run_dir: Path, env: dict | None, module: str):
    full_env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "HYDRA_FULL_ERROR": "0",
        **(env or {}),
    }
    args = list(overrides)
    if module == "ssl_bench" and not any(o.startswith("hydra.run.dir=") for o in overrides):
        args.append(f"hydra.run.dir={run_dir}")
    return full_env, args


def run_cli(
    *overrides: str,
    run_dir: Path,
    env: dict | None = None,
    timeout: int = 600,
    module: str = "ssl_bench",
    check: bool = False,
) -> CliRun:
    """`python -m ssl_bench <overrides> hydra.run.dir=<run_dir>` in a child process (forked from the
    pre-imported zygote, or a plain subprocess with SSL_BENCH_TEST_ZYGOTE=0)."""
    full_env, args = _cli_env_args(overrides, run_dir, env, module)
    with _zygote() as zygote:
        if zygote is not None:
            result = zygote.run(module, args, full_env, run_dir.parent, timeout)
    if zygote is not None:
        run = CliRun(*result, run_dir)
    else:
        proc = subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=run_dir.parent,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        run = CliRun(proc.returncode, proc.stdout, proc.stderr, run_dir)
    if check and run.returncode != 0:
        raise AssertionError(
            f"CLI failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
        )
    return run


@contextlib.contextmanager
def started_cli(*overrides: str, run_dir: Path, env: dict | None = None):
    """run_cli's call, started and left running, for tests that signal it from outside: yields
    (pid, finish), finish(timeout) waiting for its end and returning its CliRun. A call not
    finished when the block ends is killed."""
    full_env, args = _cli_env_args(overrides, run_dir, env, "ssl_bench")
    with _zygote() as zygote:
        if zygote is None:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ssl_bench", *args],
                cwd=run_dir.parent,
                env=full_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )

            def finish(timeout: float = 600) -> CliRun:
                out, err = proc.communicate(timeout=timeout)
                return CliRun(proc.returncode, out, err, run_dir)

            try:
                yield proc.pid, finish
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
            return
        call = zygote.start("ssl_bench", args, full_env, run_dir.parent)
        try:
            yield call.pid, lambda timeout=600: CliRun(*call.wait(timeout), run_dir)
        finally:
            if not call.done:
                call.abandon()


# The shared recipe of the learning tests: a short SSL run on synthetic data that must lift kNN
# top-1 clearly above its random-init baseline. Calibrated with SimCLR on 2 CPU cores (bf16): kNN
# top-1 22% at init -> 38% after one epoch and 47% after two (since then: 22.6% -> 44.4% after one,
# seed 0; test_learning.py's SimCLR check runs one epoch). Crops of at least 20% of the image
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


# `make test` runs `pytest -n 2 --dist loadgroup`: xdist hands out single tests, not whole files
# (under loadfile the learning runs of a file travel together and can leave one worker alone at
# the end), except that the tests of a file with a module- or class-scoped fixture stay on one
# worker, so that the fixture (a trained run, 15 bad-input runs, ...) is built once. The grouping
# is done here, in the scheduler, from the files' text: xdist 3.8 would group by `xdist_group`
# marks by renaming the items' node ids, which pytest 9 ignores (Node.nodeid is read from
# Node._id), so marks do not work.
_SHARED_FIXTURE = re.compile(r"@pytest\.fixture\([^)]*scope=[\"'](module|class|package)[\"']")


@functools.cache
def _shares_a_fixture(path: Path) -> bool:
    return path.suffix == ".py" and bool(_SHARED_FIXTURE.search(path.read_text()))


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # optional: without xdist, no hook
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class FilesWithSharedFixturesOnOneWorker(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)  # a group of `xdist_group`, where that works
            path = nodeid.split("::", 1)[0]
            if scope == nodeid and _shares_a_fixture(config.rootpath / path):
                return path
            return scope

    return FilesWithSharedFixturesOnOneWorker(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under --dist loadgroup the `slow` learning runs (25-85 s each) are handed out first, so that
    the workers end on short tests (xdist keeps the collection order apart from putting larger
    groups first)."""
    if getattr(config.option, "loadgroup", False):  # set on xdist's workers
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable


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
