"""Long runs survive faults: NaN losses, SIGTERM, truncated checkpoints - through the real CLI."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import FAST, REPO, run_cli
from ssl_bench.reliability import EXIT_NONFINITE, AtomicCheckpointIO

FAULT = ["method._target_=fault_methods.NaNAtSteps", "optimizer=sgd", "trainer.log_every_n_steps=1"]
ENV = {"PYTHONPATH": str(REPO / "tests")}
STEPS_PER_EPOCH = 256 // 64


def _global_step(ckpt: Path) -> int:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"]


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path):
    run = run_cli(*FAST, *FAULT, "+method.nan_steps=[5]", "trainer.max_epochs=3", run_dir=tmp_path / "run", env=ENV)
    assert run.returncode == EXIT_NONFINITE, run.stderr[-3000:]
    assert "non-finite at global step 5 (epoch 1)" in run.stderr and "loss=nan" in run.stderr
    assert "Traceback" not in run.stderr
    res = run.results
    assert res["status"] == "failed" and "global step 5" in res["error"]
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert _global_step(ckpt) == STEPS_PER_EPOCH   # the epoch-0 checkpoint, not a NaN state
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_nan_tolerance_skips_bad_steps(tmp_path):
    run = run_cli(*FAST, *FAULT, "+method.nan_steps=[5,6]", "nan_tolerance=2", "trainer.max_epochs=2",
                  run_dir=tmp_path / "run", env=ENV, check=True)
    assert run.results["status"] == "completed"
    assert "skipped (2/2 consecutive)" in run.stderr
    # Lightning still counts the skipped batches as steps; the weights were not touched by them
    assert run.results["global_step"] == 2 * STEPS_PER_EPOCH
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu",
                       weights_only=False)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_sigterm_writes_checkpoint_and_resume_continues(tmp_path):
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "ssl_bench", *FAST, *FAULT, "+method.step_delay=0.3", "trainer.max_epochs=50",
            f"hydra.run.dir={run_dir}", f"output_root={tmp_path}"]
    env = {**os.environ, **ENV, "WANDB_MODE": "offline"}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline:  # wait until training is under way (after the first epoch's checkpoint)
        if (run_dir / "checkpoints" / "last.ckpt").exists():
            break
        time.sleep(0.5)
    time.sleep(1.0)  # mid-epoch
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    assert "received SIGTERM" in err
    import json

    res = json.loads((run_dir / "results.json").read_text())
    assert res["status"] == "preempted"
    saved = _global_step(run_dir / "checkpoints" / "last.ckpt")
    assert saved == res["global_step"] and saved > STEPS_PER_EPOCH and saved % STEPS_PER_EPOCH != 0
    # resume=auto picks it up and continues from the saved step
    again = run_cli(*FAST, *FAULT, "+method.step_delay=0.3", "trainer.max_epochs=50", "resume=auto",
                    "trainer.max_steps=" + str(saved + 2), f"output_root={tmp_path}", run_dir=tmp_path / "again",
                    env=ENV)
    # max_steps changes the config hash, so auto-resume must not match: it starts fresh
    assert again.returncode == 0 and again.results["resumed_from"] is None
    resumed = run_cli(*FAST, *FAULT, "+method.step_delay=0.3", "trainer.max_epochs=50",
                      f"resume={run_dir}", "trainer.max_steps=" + str(saved + 2), run_dir=tmp_path / "resumed",
                      env=ENV, check=True)
    assert resumed.results["global_step"] == saved + 2


def test_truncated_checkpoint_falls_back_to_previous(tmp_path):
    first = run_cli(*FAST, "optimizer=sgd", "trainer.max_epochs=2", run_dir=tmp_path / "first", check=True)
    ckpt = tmp_path / "first" / "checkpoints" / "last.ckpt"
    prev = ckpt.with_name("last.ckpt.prev")
    assert prev.is_file() and _global_step(prev) == STEPS_PER_EPOCH
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 3])          # a crash mid-copy, a full disk ...
    run = run_cli(*FAST, "optimizer=sgd", "trainer.max_epochs=3", f"resume={ckpt}", run_dir=tmp_path / "second",
                  check=True)
    assert "is corrupt" in run.stderr and "last.ckpt.prev" in run.stderr
    assert run.results["resumed_from"].endswith("last.ckpt.prev")
    assert run.results["global_step"] == 3 * STEPS_PER_EPOCH
    prev.unlink()
    bad = run_cli(*FAST, "optimizer=sgd", "trainer.max_epochs=3", f"resume={ckpt}", run_dir=tmp_path / "third")
    assert bad.returncode == 2 and "is corrupt" in bad.stderr and "Traceback" not in bad.stderr


def test_atomic_checkpoint_io_keeps_previous_and_leaves_no_temp(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {}, "global_step": 1}, path)
    io.save_checkpoint({"state_dict": {}, "global_step": 2}, path)
    assert _global_step(path) == 2 and _global_step(path.with_name("last.ckpt.prev")) == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_existing_run_dir_is_never_overwritten_silently(tmp_path):
    run_dir = tmp_path / "run"
    run_cli(*FAST, "trainer.max_epochs=1", run_dir=run_dir, check=True)
    before = (run_dir / "results.json").read_bytes(), (run_dir / ".hydra" / "config.yaml").read_bytes()
    again = run_cli(*FAST, "trainer.max_epochs=1", "seed=1", run_dir=run_dir)
    assert again.returncode == 2 and str(run_dir) in again.stderr and "resume=" in again.stderr
    assert "overwrite=true" in again.stderr and "Traceback" not in again.stderr
    after = (run_dir / "results.json").read_bytes(), (run_dir / ".hydra" / "config.yaml").read_bytes()
    assert before == after  # nothing was touched, not even Hydra's copy of the config
    forced = run_cli(*FAST, "trainer.max_epochs=1", "seed=1", "overwrite=true", run_dir=run_dir, check=True)
    assert forced.results["seed"] == 1
