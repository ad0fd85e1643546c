"""Long runs survive faults: NaN losses, SIGTERM, truncated checkpoints - through the real CLI."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from conftest import FAST, REPO, run_cli, started_cli

from ssl_bench.errors import EXIT_NONFINITE
from ssl_bench.reliability import AtomicCheckpointIO

FAULT = ["method._target_=fault_methods.NaNAtSteps", "optimizer=sgd", "trainer.log_every_n_steps=1"]
ENV = {"PYTHONPATH": str(REPO / "tests")}
STEPS_PER_EPOCH = 256 // 64


def _global_step(ckpt: Path) -> int:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"]


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path):
    run = run_cli(
        *FAST,
        *FAULT,
        "+method.nan_steps=[5]",
        "trainer.max_epochs=3",
        run_dir=tmp_path / "run",
        env=ENV,
    )
    assert run.returncode == EXIT_NONFINITE, run.stderr[-3000:]
    assert "non-finite at global step 5 (epoch 1)" in run.stderr and "loss=nan" in run.stderr
    assert "Traceback" not in run.stderr
    res = run.results
    assert res["status"] == "failed" and "global step 5" in res["error"]
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert _global_step(ckpt) == STEPS_PER_EPOCH  # the epoch-0 checkpoint, not a NaN state
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_nan_tolerance_skips_bad_steps(tmp_path):
    run = run_cli(
        *FAST,
        *FAULT,
        "+method.nan_steps=[5,6]",
        "nan_tolerance=2",
        "trainer.max_epochs=2",
        run_dir=tmp_path / "run",
        env=ENV,
        check=True,
    )
    assert run.results["status"] == "completed"
    assert "skipped (2/2 consecutive)" in run.stderr
    # Lightning still counts the skipped batches as steps; the weights were not touched by them
    assert run.results["global_step"] == 2 * STEPS_PER_EPOCH
    state = torch.load(
        tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_sigterm_writes_checkpoint_and_resume_continues(tmp_path):
    run_dir = tmp_path / "run"
    args = [*FAST, *FAULT, "+method.step_delay=0.3", "trainer.max_epochs=50"]
    # the run (forked from the test zygote) is signalled from outside, as a scheduler would
    with started_cli(*args, f"output_root={tmp_path}", run_dir=run_dir, env=ENV) as (pid, finish):
        deadline = time.time() + 240
        # wait until training is under way (after the first epoch's checkpoint)
        while time.time() < deadline and not (run_dir / "checkpoints" / "last.ckpt").exists():
            time.sleep(0.5)
        time.sleep(1.0)  # mid-epoch
        os.kill(pid, signal.SIGTERM)
        run = finish(240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "received SIGTERM" in run.stderr

    res = run.results
    assert res["status"] == "preempted"
    saved = _global_step(run_dir / "checkpoints" / "last.ckpt")
    assert saved == res["global_step"] and saved > STEPS_PER_EPOCH and saved % STEPS_PER_EPOCH != 0
    # resume=auto picks it up and continues from the saved step
    again = run_cli(
        *args,
        "resume=auto",
        "trainer.max_steps=" + str(saved + 2),
        f"output_root={tmp_path}",
        run_dir=tmp_path / "again",
        env=ENV,
    )
    # max_steps changes the config hash, so auto-resume must not match: it starts fresh
    assert again.returncode == 0 and again.results["resumed_from"] is None
    resumed = run_cli(
        *args,
        f"resume={run_dir}",
        "trainer.max_steps=" + str(saved + 2),
        run_dir=tmp_path / "resumed",
        env=ENV,
        check=True,
    )
    assert resumed.results["global_step"] == saved + 2


def test_sigterm_during_the_init_baseline_stops_cleanly(tmp_path):
    """SIGTERM during the random-init kNN baseline (before training): a message, status preempted,
    exit 0, no checkpoint and no training step. The baseline batch itself ran at inference speed:
    no grad, the run's precision, channels_last, the eval batch size."""
    run = run_cli(
        *FAST,
        "method._target_=fault_methods.SigtermInBaseline",
        "data.eval_batch_size=128",
        "trainer.max_epochs=1",
        run_dir=tmp_path / "run",
        env=ENV,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "received SIGTERM during the random-init kNN baseline" in run.stderr
    assert "Traceback" not in run.stderr
    res = run.results
    assert res["status"] == "preempted" and res["global_step"] == 0 and res["knn_top1_init"] is None
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert (
        "ssl_bench: run preempted" in run.stdout
        and "start again: python -m ssl_bench" in run.stdout
    )
    seen = json.loads(run.stderr.split("baseline batch: ", 1)[1].splitlines()[0])
    bf16 = res["precision"] == "bf16-mixed"
    assert seen == {
        "grad": False,
        "inference_mode": True,
        "autocast": bf16,
        "autocast_dtype": "torch.bfloat16" if bf16 else seen["autocast_dtype"],
        "channels_last": True,
        "batch": 128,
    }


def test_truncated_checkpoint_falls_back_to_previous(tmp_path):
    run_cli(*FAST, "optimizer=sgd", "trainer.max_epochs=2", run_dir=tmp_path / "first", check=True)
    ckpt = tmp_path / "first" / "checkpoints" / "last.ckpt"
    prev = ckpt.with_name("last.ckpt.prev")
    assert prev.is_file() and _global_step(prev) == STEPS_PER_EPOCH
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 3])  # a crash mid-copy, a full disk ...
    run = run_cli(
        *FAST,
        "optimizer=sgd",
        "trainer.max_epochs=3",
        f"resume={ckpt}",
        run_dir=tmp_path / "second",
        check=True,
    )
    assert "is corrupt" in run.stderr and "last.ckpt.prev" in run.stderr
    assert run.results["resumed_from"].endswith("last.ckpt.prev")
    assert run.results["global_step"] == 3 * STEPS_PER_EPOCH
    prev.unlink()
    bad = run_cli(
        *FAST, "optimizer=sgd", "trainer.max_epochs=3", f"resume={ckpt}", run_dir=tmp_path / "third"
    )
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
    before = (
        (run_dir / "results.json").read_bytes(),
        (run_dir / ".hydra" / "config.yaml").read_bytes(),
    )
    again = run_cli(*FAST, "trainer.max_epochs=1", "seed=1", run_dir=run_dir)
    assert again.returncode == 2 and str(run_dir) in again.stderr and "resume=" in again.stderr
    assert "overwrite=true" in again.stderr and "Traceback" not in again.stderr
    after = (
        (run_dir / "results.json").read_bytes(),
        (run_dir / ".hydra" / "config.yaml").read_bytes(),
    )
    assert before == after  # nothing was touched, not even Hydra's copy of the config
    forced = run_cli(
        *FAST, "trainer.max_epochs=1", "seed=1", "overwrite=true", run_dir=run_dir, check=True
    )
    assert forced.results["seed"] == 1


# ---- corrupt data, a full disk, through the CLI --------------------------------------------------
FOLDER = [
    "data=image_folder",
    "data.image_size=32",
    "data.small_input=true",
    "data.batch_size=8",
    "data.num_workers=2",
    "backbone=resnet18_narrow",
    "progress_bar=false",
    "online_eval.knn_k=5",
    "trainer.max_epochs=1",
    "optimizer=sgd",
]


def _image_folder(root: Path, per_class: int = 12) -> None:
    from PIL import Image

    for split, n in (("train", per_class), ("val", 4)):
        for c, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (36, 36), tuple(v + 3 * i for v in colour)).save(
                    root / split / c / f"{i}.jpg"
                )


def test_corrupt_images_are_skipped_named_and_counted(tmp_path):
    root = tmp_path / "ds"
    _image_folder(root)
    zero = root / "train" / "red" / "zero.jpg"
    zero.write_bytes(b"")
    truncated = root / "train" / "blue" / "truncated.jpg"
    truncated.write_bytes((root / "train" / "blue" / "0.jpg").read_bytes()[:120])
    run = run_cli(*FOLDER, f"data.root={root}", run_dir=tmp_path / "run", check=True)
    assert run.results["status"] == "completed"
    assert str(zero) in run.stderr and str(truncated) in run.stderr  # warned, by name
    assert sorted(run.results["bad_files"]) == sorted([str(truncated), str(zero)])
    counted = [float(r["data/bad_files"]) for r in run.metrics() if r.get("data/bad_files")]
    assert counted and counted[-1] == 2.0  # counted in the logs
    strict = run_cli(
        *FOLDER, f"data.root={root}", "data.on_bad_file=error", run_dir=tmp_path / "strict"
    )
    assert strict.returncode == 2, strict.stderr[-2000:]
    assert (
        "zero.jpg" in strict.stderr or "truncated.jpg" in strict.stderr
    ) and "Traceback" not in strict.stderr


def test_empty_dataset_or_class_ends_before_training(tmp_path):
    root = tmp_path / "ds"
    _image_folder(root, per_class=2)
    (root / "train" / "green").mkdir()
    run = run_cli(*FOLDER, f"data.root={root}", run_dir=tmp_path / "run")
    assert (
        run.returncode == 2
        and str(root / "train" / "green") in run.stderr
        and "Traceback" not in run.stderr
    )
    assert not (tmp_path / "run" / "checkpoints").exists()
    (tmp_path / "empty").mkdir()
    run = run_cli(
        *FOLDER,
        "data=image_folder_unlabelled",
        f"data.root={tmp_path / 'empty'}",
        run_dir=tmp_path / "e",
    )
    assert (
        run.returncode == 2
        and str(tmp_path / "empty") in run.stderr
        and "Traceback" not in run.stderr
    )


@pytest.mark.skipif(
    not Path("/dev/full").exists(), reason="needs /dev/full to simulate a full disk"
)
def test_full_disk_ends_with_message_and_keeps_last_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    run_cli(*FAST, "optimizer=sgd", "trainer.max_epochs=1", run_dir=run_dir, check=True)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert _global_step(ckpt) == STEPS_PER_EPOCH
    # the next checkpoint write goes to a "disk" that is full
    os.symlink("/dev/full", ckpt.with_name("last.ckpt.tmp"))
    run = run_cli(
        *FAST, "optimizer=sgd", "trainer.max_epochs=2", f"resume={run_dir}", run_dir=run_dir
    )
    assert run.returncode == 2, run.stderr[-3000:]
    assert (
        "no space left on the device" in run.stderr
        and str(ckpt) in run.stderr
        and "Traceback" not in run.stderr
    )
    assert _global_step(ckpt) == STEPS_PER_EPOCH  # the last good checkpoint is intact
    assert not ckpt.with_name("last.ckpt.tmp").exists()


def test_warning_signal_checkpoints_then_hands_over_to_the_previous_handler(tmp_path):
    """Under the submitit launcher SIGUSR2 belongs to submitit (it requeues the job): ssl_bench
    writes its checkpoint first, then calls submitit's handler. SIGTERM never chains (it would kill
    the process)."""
    from types import SimpleNamespace

    from ssl_bench.reliability import Preemption

    calls = []
    saved = []

    def submitit_handler(s, f):
        calls.append(s)

    old = signal.signal(signal.SIGUSR2, submitit_handler)
    try:
        cb = Preemption(tmp_path / "last.ckpt")
        trainer = SimpleNamespace(
            save_checkpoint=lambda p: saved.append(p),
            should_stop=False,
            global_step=7,
            checkpoint_callbacks=[],
            is_global_zero=True,
        )
        cb.on_train_start(trainer, None)
        os.kill(os.getpid(), signal.SIGUSR2)
        time.sleep(0.1)
        assert cb.received == "SIGUSR2" and not calls  # ours ran, not the old one (yet)
        cb.on_train_batch_end(trainer, None, None, None, 0)
        assert saved == [str(tmp_path / "last.ckpt")] and trainer.should_stop
        assert calls == [signal.SIGUSR2]  # after the checkpoint
        cb.on_train_end(trainer, None)
        assert signal.getsignal(signal.SIGUSR2) is submitit_handler
        # Lightning's teardown after fit() puts back the handler it found at fit() start - ours,
        # when the baseline installed it: training.run's restore() afterwards still finds the first
        signal.signal(signal.SIGUSR2, cb._handler)
        cb.restore()
        assert signal.getsignal(signal.SIGUSR2) is submitit_handler
    finally:
        signal.signal(signal.SIGUSR2, old)
