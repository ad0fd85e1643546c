"""Offline evaluation measures the representation the online evaluation measured, for every method.

Per method: a tiny run (conftest FAST data, one epoch of one optimizer step at full lr, so the
weights and the BatchNorm statistics have moved from their init) logs val/knn_top1 and val/knn_top5
at its last epoch; then `python -m ssl_bench.eval mode=knn ckpt=<run>` (its `main`, in-process) at
the run's online k and T on the same data must give the same numbers exactly: it rebuilds the whole
method and computes `forward` as the validation epoch did (eval mode, no grad, the run's bf16
autocast, channels_last, the same batches).

Both halves run in this process (training.run is what `python -m ssl_bench` calls after Hydra
composes the config; ssl_bench.eval.__main__.main is the eval CLI): 24 subprocesses would spend most
of their time importing torch on CI's 2 cores. Measured here (2 cores shared with other jobs,
noisy): 60-100 s for the 12.

Checked by reverting: with the former offline path (model.backbone, float32, contiguous) the test
fails for 10 of the 12 methods, cpc_v2 and simclr_v2 among them; with model.backbone at the run's
precision and layout it fails exactly for cpc_v2 (pooled patch grid) and simclr_v2 (projector layer
1) - CMC's backbone is its multi-view encoder, whose output is its representation.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch
from conftest import FAST

METHODS = [
    "simclr",
    "moco_v1",
    "moco_v2",
    "simclr_v2",
    "instdisc",
    "byol",
    "simsiam",
    "swav",
    "dim",
    "amdim",
    "cpc_v2",
    "cmc",
    "barlow_twins",
    "vicreg",
    "moco_v3",
    "nnclr",
    "dino",
    "mae",
]
# cpc_v2: a small context network (its 13M-parameter default only costs time; forward does not read
# it)
EXTRA = {
    "simclr_v2": ["method.probe_from_projector_layer=1"],
    "cpc_v2": ["method.context_blocks=1", "method.context_hidden=32"],
    # 8192-wide projectors (their defaults) cost seconds of matmuls; forward does not read them
    "barlow_twins": ["method.proj_hidden_dim=256", "method.proj_output_dim=256"],
    "vicreg": ["method.proj_hidden_dim=256", "method.proj_output_dim=256"],
    # mae: a ViT (ViT-Tiny's width, 2 blocks, patch 4 at 32 px) and its own single view; a small
    # decoder (forward does not read it)
    "mae": ["backbone=vit_tiny", "+backbone.kwargs.depth=2", "augmentation=mae"]
    + ["method.decoder_embed_dim=32", "method.decoder_depth=1", "method.decoder_num_heads=4"],
}


def tiny_run(method: str, run_dir):
    from hydra import compose, initialize_config_dir

    from ssl_bench.config import CONFIG_DIR
    from ssl_bench.training import run

    overrides = [
        *FAST,
        f"method={method}",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=1",
        "scheduler.warmup_epochs=0",
        "online_eval.init_baseline=false",
        *EXTRA.get(method, []),
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    return run(cfg, run_dir)


def logged_last_epoch(run_dir) -> dict[str, float]:
    """val/* of the last epoch as metrics.csv holds them."""
    with open(run_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/knn_top1")]
    return {k: float(v) for k, v in rows[-1].items() if k.startswith("val/") and v}


def as_logged(value: float) -> float:
    """Lightning logs a Python float as a float32 tensor: the offline float64 rounded the same
    way."""
    return float(torch.tensor(value, dtype=torch.float32))


@pytest.mark.parametrize("method", METHODS)
def test_offline_knn_equals_the_online_knn(method, tmp_path):
    from ssl_bench.eval.__main__ import main

    run_dir = tmp_path / "run"
    results = tiny_run(method, run_dir)
    assert results["status"] == "completed" and results["global_step"] == 1, results
    online = logged_last_epoch(run_dir)
    assert main(["mode=knn", f"ckpt={run_dir}", "wandb=false", "device=cpu"]) == 0
    res = json.loads((run_dir / "eval_knn.json").read_text())
    assert (res["k"], res["t"], res["k_t_from"]) == (
        20,
        0.1,
        "run online_eval",
    )  # FAST's online_eval.knn_k
    assert res["representation"]["precision"] == results["precision"]
    assert res["num_train"] == 256 and res["num_test"] == 128
    offline = (as_logged(res["top1"]), as_logged(res["top5"]))
    assert offline == (online["val/knn_top1"], online["val/knn_top5"])
