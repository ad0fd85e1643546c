"""The training step never synchronises with the host: no .item(), .cpu(), .tolist(), bool(tensor)
inside it."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir

from ssl_bench.config import CONFIG_DIR
from ssl_bench.training import build_datamodule, build_method

SYNC_CALLS = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__")


def _count_host_syncs(method: str, extra: list[str], monkeypatch) -> dict[str, int]:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[
                f"method={method}",
                "data=synthetic",
                "backbone=resnet18_narrow",
                "data.options.n_train=64",
                "data.options.n_test=32",
                "data.batch_size=16",
                *extra,
            ],
        )
    dm = build_datamodule(cfg)
    dm.setup("fit")
    model = build_method(cfg, dm.data_info())
    counts = {name: 0 for name in SYNC_CALLS}
    inside = {"step": False}
    for name in SYNC_CALLS:
        original = getattr(torch.Tensor, name)

        def patched(self, *args, __name=name, __original=original, **kwargs):
            if inside["step"] and self.device.type != "meta":
                counts[__name] += 1
            return __original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, patched)
    real_step = model.training_step

    def counted_step(*args, **kwargs):
        inside["step"] = True
        try:
            return real_step(*args, **kwargs)
        finally:
            inside["step"] = False

    model.training_step = counted_step
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        precision="32-true",
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 2
    return counts


@pytest.mark.parametrize(
    "method,extra",
    [("simclr", []), ("byol", ["augmentation=byol"]), ("moco_v2", ["method.queue_size=64"])],
)
def test_training_step_makes_no_host_sync(method, extra, monkeypatch):
    counts = _count_host_syncs(method, extra, monkeypatch)
    assert sum(counts.values()) == 0, counts


def test_the_counter_catches_a_host_sync(monkeypatch):
    import sys

    from conftest import REPO

    monkeypatch.syspath_prepend(str(REPO / "tests"))
    counts = _count_host_syncs(
        "simclr", ["method._target_=fault_methods.HostSyncSimCLR"], monkeypatch
    )
    assert counts["item"] >= 2, counts
    assert "fault_methods" in sys.modules
