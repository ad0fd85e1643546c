"""Progress of the offline trainings (linear head on views, fine-tuning): elapsed time and ETA.

On a terminal a rich progress bar (advanced per batch, so the ETA is right from the first epoch:
rich's own estimate from the recent speed); otherwise - a log file, a pipe, a batch job - one line
per epoch, `<label> epoch 3/30: loss 1.2345 | 0:00:42 elapsed, ETA 0:05:08`, where the ETA assumes
the remaining batches take as long as the ones so far.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def clock(seconds: float) -> str:
    """H:MM:SS."""
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class EpochProgress:
    """`step()` after each batch, `epoch_end(epoch, loss)` after each epoch, `close()` at the end.

    `log` gets the per-epoch lines; `live` (default: whether stdout is a terminal and `log` is
    print) draws a rich bar instead, with the same label and the epoch's loss."""

    def __init__(
        self,
        label: str,
        epochs: int,
        steps_per_epoch: int,
        log: Callable[..., object] = print,
        live: bool | None = None,
        console=None,
    ):
        self.label, self.epochs, self.log = label, epochs, log
        self.total = max(1, epochs * steps_per_epoch)
        self.done = 0
        self.started = time.monotonic()
        if live is None:
            live = log is print and sys.stdout.isatty()
        self._bar = self._task = None
        if live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console,
            )
            self._bar.start()
            self._task = self._bar.add_task(f"{label} epoch 1/{epochs}", total=self.total, info="")

    def step(self) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.advance(self._task)

    def eta(self) -> float:
        """Seconds left at the speed so far."""
        elapsed = time.monotonic() - self.started
        return elapsed / max(self.done, 1) * (self.total - self.done)

    def epoch_end(self, epoch: int, loss: float) -> None:
        """`epoch` counts from 0."""
        if self._bar is not None:
            nxt = min(epoch + 2, self.epochs)
            self._bar.update(
                self._task,
                description=f"{self.label} epoch {nxt}/{self.epochs}",
                info=f"loss {loss:.4f}",
            )
            return
        elapsed = time.monotonic() - self.started
        self.log(
            f"{self.label} epoch {epoch + 1}/{self.epochs}: loss {loss:.4f} | {clock(elapsed)} "
            f"elapsed, ETA {clock(self.eta())}"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
