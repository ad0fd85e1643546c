"""Methods that misbehave on purpose, for the reliability tests (importable via
PYTHONPATH=tests)."""

from __future__ import annotations

import os
import signal
import time

from ssl_bench.methods.byol import BYOL
from ssl_bench.methods.instdisc import InstDisc
from ssl_bench.methods.moco import MoCo
from ssl_bench.methods.simclr import SimCLR


class NaNAtSteps(SimCLR):
    """SimCLR whose loss is NaN at the given global steps."""

    def __init__(self, backbone, nan_steps: list[int] = (), step_delay: float = 0.0, **kwargs):
        super().__init__(backbone, **kwargs)
        self.nan_steps = set(nan_steps)
        self.step_delay = step_delay

    def training_loss(self, views, labels, index):
        out = super().training_loss(views, labels, index)
        if self.step_delay:
            time.sleep(self.step_delay)
        if self.trainer is not None and self.global_step in self.nan_steps:
            out["loss"] = out["loss"] * float("nan")
        return out


class HostSyncSimCLR(SimCLR):
    """SimCLR that reads its loss on the host every step (what the no-host-sync test must catch)."""

    def training_loss(self, views, labels, index):
        out = super().training_loss(views, labels, index)
        self.seen_loss = out["loss"].item()
        return out


class _PreemptAt:
    """Sends itself SIGTERM during global step `preempt_at` (a pre-emption at a known step, for the
    exact-resume test). -1 = never."""

    def __init__(self, backbone, preempt_at: int = -1, **kwargs):
        super().__init__(backbone, **kwargs)
        self.preempt_at = preempt_at

    def training_loss(self, views, labels, index):
        if self.trainer is not None and self.global_step == self.preempt_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().training_loss(views, labels, index)


class MoCoPreemptAt(_PreemptAt, MoCo):
    pass


class BYOLPreemptAt(_PreemptAt, BYOL):
    pass


class InstDiscPreemptAt(_PreemptAt, InstDisc):
    pass


class SigtermInBaseline(SimCLR):
    """SimCLR that sends itself SIGTERM during the first batch of the random-init kNN baseline
    (Lightning's validate(), before fit) and prints, as JSON on stderr, how that batch was computed:
    grad mode, autocast, memory format and batch size."""

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        import json
        import sys

        import torch

        if self.trainer.state.fn == "validate" and batch_idx == 0 and dataloader_idx == 0:
            x = batch[0]
            seen = {
                "grad": torch.is_grad_enabled(),
                "inference_mode": torch.is_inference_mode_enabled(),
                "autocast": torch.is_autocast_enabled("cpu"),
                "autocast_dtype": str(torch.get_autocast_dtype("cpu")),
                "channels_last": x.is_contiguous(memory_format=torch.channels_last),
                "batch": x.shape[0],
            }
            print(f"baseline batch: {json.dumps(seen)}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
        return super().validation_step(batch, batch_idx, dataloader_idx)
