"""The callbacks of conf/callbacks/default.yaml (throughput, best metrics, skipped image files) and
the run's progress bar."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar

from ssl_bench.console import BASELINE_LABEL


class ThroughputMonitor(pl.Callback):
    """Logs `train/images_per_sec`: dataset images (with all their views) per second, all ranks
    together.

    Host-side wall clock between consecutive training batches, so no device synchronisation is
    added to the step. The first `warmup_steps` of the run and the first batch of each epoch (loader
    start, validation) are left out of the run average that results.json reports.
    """

    def __init__(self, every_n_steps: int | None = None, warmup_steps: int = 3):
        """`every_n_steps`: how often the rate is logged; None: every `trainer.log_every_n_steps`,
        with the other training metrics."""
        self.every_n_steps, self.warmup_steps = every_n_steps, warmup_steps
        self._last: float | None = None
        self._steps = 0
        self._time = self._images = 0.0
        self._win_time = self._win_images = 0.0

    @property
    def average(self) -> float | None:
        return self._images / self._time if self._time > 0 else None

    def on_train_epoch_start(self, trainer, pl_module):
        self._last = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.perf_counter()
        n = float(batch[2].shape[0] * trainer.world_size)
        if self._last is not None and self._steps >= self.warmup_steps:
            self._time += now - self._last
            self._images += n
            self._win_time += now - self._last
            self._win_images += n
        self._last = now
        self._steps += 1
        every = trainer.log_every_n_steps if self.every_n_steps is None else self.every_n_steps
        if self._steps % every == 0 and self._win_time > 0:
            pl_module.log("train/images_per_sec", self._win_images / self._win_time, prog_bar=True)
            self._win_time = self._win_images = 0.0


class BestMetrics(pl.Callback):
    """Keeps the final and best (max) value of every `val/*` metric across validation epochs."""

    def __init__(self):
        self.final: dict[str, float] = {}
        self.best: dict[str, float] = {}

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        for key, value in trainer.callback_metrics.items():
            if not key.startswith("val/"):
                continue
            v = float(value)
            self.final[key] = v
            if key.endswith("_init"):
                continue
            self.best[key] = max(v, self.best.get(key, float("-inf")))

    def state_dict(self):
        return {"final": self.final, "best": self.best}

    def load_state_dict(self, state_dict):
        self.final = dict(state_dict.get("final", {}))
        self.best = dict(state_dict.get("best", {}))


class BadFileCounter(pl.Callback):
    """Logs `data/bad_files`: how many image files were skipped as unreadable so far
    (data.on_bad_file=skip). The warnings name each file; results.json lists them."""

    def on_train_epoch_end(self, trainer, pl_module):
        dm = trainer.datamodule
        if dm is not None and hasattr(dm, "bad_files"):
            pl_module.log("data/bad_files", float(len(dm.bad_files())), on_epoch=True)


class SSLProgressBar(RichProgressBar):
    """Rich progress bar whose validation bar says what it computes, without Lightning's `v_num`
    (the run dir names the run)."""

    @property
    def validation_description(self) -> str:
        trainer = self._trainer
        if trainer is not None and trainer.state.fn == "validate":
            return BASELINE_LABEL
        return "kNN + probe"

    def get_metrics(self, trainer, pl_module) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items
