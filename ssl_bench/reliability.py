"""What keeps long runs alive: a non-finite-loss guard, pre-emption handling, atomic checkpoints.

The exit codes these lead to are listed once, in ssl_bench.errors.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from ssl_bench.errors import ConfigError, OutputError

# SIGUSR1: Lightning's / sbatch --signal convention; SIGUSR2: what submitit asks SLURM to send
# before the limit
PREEMPT_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf."""


class NonFiniteGuard(pl.Callback):
    """Stops the run at the first non-finite loss, naming the step, epoch and the loss terms.

    On a CUDA device the check reads a flag copied to the host without blocking, one step late, so
    the training step never waits for the GPU; a final blocking check runs before each epoch-end
    checkpoint, so a bad state is never saved. With `method` skipping (nan_tolerance > 0, see
    SSLMethod) bad steps are skipped inside the step instead and only `nan_tolerance` consecutive
    ones stop the run. It reads only the training step's outputs: `loss`, and when the module
    returns them (SSLMethod.training_step) `loss_terms` and `loss_step`.
    """

    def __init__(self):
        self._pending: tuple[torch.Tensor, int, int, dict] | None = None

    def _raise(self, step: int, epoch: int, terms: dict[str, Any]) -> None:
        shown = ", ".join(f"{k}={float(v):.4g}" for k, v in terms.items())
        raise NonFiniteLossError(
            f"the loss became non-finite at global step {step} (epoch {epoch}): {shown}. "
            "The last good checkpoint is kept. Fix: lower optimizer.lr, add warm-up "
            "(scheduler.warmup_epochs), set trainer.gradient_clip_val, or use "
            "trainer.precision=32-true."
        )

    def _check_pending(self, blocking: bool) -> None:
        if self._pending is None:
            return
        flag, step, epoch, terms = self._pending
        if flag.device.type == "cpu" or blocking:
            self._pending = None
            if bool(flag):
                self._raise(step, epoch, terms)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._check_pending(blocking=False)
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        # SSLMethod.training_step's outputs name the terms and the step that computed them; any
        # other LightningModule: its loss, and the step Lightning counts
        out = outputs if isinstance(outputs, dict) else {}
        terms = dict(out.get("loss_terms") or {"loss": loss})
        step = out.get("loss_step", trainer.global_step)
        flag = ~torch.isfinite(loss.detach())
        if flag.device.type == "cuda":
            flag = flag.to("cpu", non_blocking=True)
        self._pending = (
            flag,
            step,
            trainer.current_epoch,
            {k: v.detach() for k, v in terms.items()},
        )
        if flag.device.type == "cpu" and loss.device.type == "cpu":
            self._check_pending(blocking=True)

    def on_train_epoch_end(
        self, trainer, pl_module
    ):  # runs before ModelCheckpoint (Lightning orders it last)
        self._check_pending(blocking=True)

    def on_validation_start(self, trainer, pl_module):
        self._check_pending(blocking=True)


class PreemptedError(RuntimeError):
    """A pre-emption signal arrived before training started (during the random-init kNN
    baseline): there is nothing to save, the run stops at once."""


class Preemption(pl.Callback):
    """SIGTERM / SIGUSR1 / SIGUSR2 (SLURM's warning signals): finish the current step, write
    `last.ckpt` atomically, stop cleanly. Under SLURM the job is requeued (by submitit's handler
    when it launched the job, else `scontrol requeue`), and `resume=auto` continues it.

    The handler is installed by `install()` before the random-init kNN baseline (training.run) and
    again at train start; a signal during the baseline ends it after the current batch with
    `PreemptedError` (nothing trained yet, so nothing to save)."""

    def __init__(self, checkpoint_path: Path):
        self.checkpoint_path = Path(checkpoint_path)
        self.received: str | None = None
        self.saved = False
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame):
        self.received = signal.Signals(signum).name

    def install(self) -> None:
        """Our handler for each pre-emption signal, on every rank (under SLURM each task receives
        the signal). Called again after Lightning's own signal connector replaced it (fit() and
        validate() install theirs, which would end the run at once on SIGTERM, before results are
        written); the handler found first is the one kept to hand over to and to restore."""
        for name in PREEMPT_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is None:
                continue
            try:
                previous = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread
                continue
            self._previous.setdefault(sig, previous)

    def restore(self) -> None:
        """The handlers that were there before the first `install()`. training.run calls it once
        fit() has returned: Lightning's own teardown, after on_train_end, puts back the handler it
        found at fit() start, which is ours when install() ran before the baseline."""
        for sig, handler in self._previous.items():
            try:
                signal.signal(sig, handler)
            except ValueError:  # not the main thread
                pass

    def on_train_start(self, trainer, pl_module):
        self.install()

    def on_validation_start(self, trainer, pl_module):
        if trainer.state.fn == "validate":  # the baseline: replace Lightning's validate() handler
            self.install()

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ):
        if self.received and trainer.state.fn == "validate":
            print(
                f"ssl_bench: received {self.received} during the random-init kNN baseline, "
                "before any training: stopped, nothing to save. Start the run again with the same "
                "command.",
                file=sys.stderr,
                flush=True,
            )
            self._requeue(trainer)
            raise PreemptedError(f"{self.received} during the random-init kNN baseline")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.received and not self.saved:
            trainer.save_checkpoint(str(self.checkpoint_path))
            self.saved = True
            for cb in trainer.checkpoint_callbacks:
                if isinstance(cb, LastCheckpoint):
                    cb.hold = True
            trainer.should_stop = True
            print(
                f"ssl_bench: received {self.received}; wrote {self.checkpoint_path} at step "
                f"{trainer.global_step}; continue with resume=auto",
                file=sys.stderr,
                flush=True,
            )
            self._requeue(trainer)

    def _requeue(self, trainer) -> None:
        """Under SLURM, after the checkpoint: a handler that was there before ours (submitit's,
        under the submitit launcher) requeues the job its own way; otherwise `scontrol requeue` on
        the warning signal."""
        sig = getattr(signal, self.received, None)
        previous = self._previous.get(sig)
        if callable(previous) and previous != self._handler and self.received != "SIGTERM":
            previous(sig, None)
            return
        job = os.environ.get("SLURM_JOB_ID")
        if job and self.received in ("SIGUSR1", "SIGUSR2") and trainer.is_global_zero:
            subprocess.run(["scontrol", "requeue", job], check=False)

    def on_train_end(self, trainer, pl_module):
        self.restore()


class LastCheckpoint(ModelCheckpoint):
    """`checkpoints/last.ckpt` after every epoch, except once a pre-emption checkpoint was written:
    the epoch-end save that follows a mid-epoch stop would mark the epoch finished and lose its
    remaining batches on resume."""

    def __init__(self, dirpath: Path):
        # top-1 without a monitor = the newest (Lightning's save_last only fires when a top-k file
        # was saved)
        super().__init__(
            dirpath=str(dirpath),
            filename="last",
            save_top_k=1,
            monitor=None,
            every_n_epochs=1,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        )
        self.hold = False

    def on_train_epoch_end(self, trainer, pl_module):
        if not self.hold:
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module):
        if not self.hold:
            super().on_validation_end(trainer, pl_module)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes to `<name>.tmp`, fsyncs, keeps the previous file as `<name>.prev`, then renames into
    place: a crash mid-write never leaves a truncated checkpoint under the real name."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
        except (OSError, RuntimeError) as err:  # torch.save reports a full disk as RuntimeError
            try:
                tmp.unlink()
            except OSError:
                pass
            kept = f" The last good checkpoint '{path}' is kept." if path.exists() else ""
            raise OutputError(
                f"could not write checkpoint '{path}' ({_reason(err)}).{kept} Fix: free space on "
                f"that disk or choose another output_root=<dir>, then continue with "
                f"resume={path.parent.parent}."
            ) from None
        if path.exists():
            os.replace(path, previous_checkpoint(path))
        os.replace(tmp, path)


def _reason(err: Exception) -> str:
    if (
        isinstance(err, OSError)
        and err.errno == errno.ENOSPC
        or "No space left" in str(err)
        or "error code: 28" in str(err)
    ):
        return "no space left on the device"
    return getattr(err, "strerror", None) or str(err)


def previous_checkpoint(path: Path) -> Path:
    return path.with_name(path.name + ".prev")


def checkpoint_is_readable(path: Path) -> str | None:
    """None when `path` loads as a Lightning checkpoint, else the reason it does not."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any failure to unpickle means corrupt
        return f"{type(err).__name__}: {err}"
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        return "not a Lightning checkpoint (no state_dict)"
    return None


def usable_checkpoint(path: Path) -> Path:
    """`path` if it loads; else its `.prev` sibling (with a warning); else a ConfigError naming
    both."""
    reason = checkpoint_is_readable(path)
    if reason is None:
        return path
    prev = previous_checkpoint(path)
    if prev.is_file() and checkpoint_is_readable(prev) is None:
        print(
            f"ssl_bench: warning: checkpoint '{path}' is corrupt ({reason}); resuming from the "
            f"previous good one '{prev}'.",
            file=sys.stderr,
            flush=True,
        )
        return prev
    raise ConfigError(
        "resume",
        f"checkpoint '{path}' is corrupt ({reason}) and no good previous checkpoint "
        f"('{prev.name}') exists.",
        "start a fresh run (resume=null) or pass another checkpoint.",
    )
