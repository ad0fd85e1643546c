"""Transcriptions of the sources the recipes in conf/recipe/ cite: one entry per recipe file.

Each entry: `cite` (the exact string the recipe's `recipe.source` holds) and `values` (a flat dict of ssl_bench
config keys -> the value the source uses; `NotInSource(why)` where the source has no such setting). Values are
copied from the source by hand, with the file and line they come from in a comment; tests/test_recipes.py
compares them with the composed config, key by key.
"""
from __future__ import annotations

from recipes.transcribe import NotInSource, view

SOLO = "vturrisi/solo-learn@9187ea39 scripts/pretrain/cifar"

SOURCES: dict[str, dict] = {}


# ---- solo-learn's CIFAR recipes ---------------------------------------------------------------------------------
# Common to every solo-learn CIFAR script: batch 256 per device on 1 device, lr scaled by batch * devices / 256
# (solo/args/pretrain.py, parse_cfg), warmup_cosine with solo-learn's defaults (solo/methods/base.py
# add_and_assert_specific_cfg: warmup_epochs 10, warmup_start_lr 3e-5, min_lr 0.0, interval "step"), 1000 epochs,
# SyncBN on, 16-mixed precision.
def _solo_warmup_cosine() -> dict:
    return {"scheduler.name": "warmup_cosine", "scheduler.warmup_epochs": 10, "scheduler.warmup_steps": None,
            "scheduler.warmup_start_lr": 3.0e-5, "scheduler.min_lr": 0.0, "scheduler.milestones": None,
            "scheduler.gamma": None}


def _solo_lars(lr: float, weight_decay: float) -> dict:
    # optimizer: name lars, kwargs {clip_lr: True, eta: 0.02, exclude_bias_n_norm: True}; momentum 0.9 and
    # eps 1e-8 are solo-learn's defaults (solo/args/pretrain.py, solo/utils/lars.py)
    return {"optimizer.name": "lars", "optimizer.lr": lr, "optimizer.scale_lr": True,
            "optimizer.weight_decay": weight_decay, "optimizer.momentum": 0.9, "optimizer.nesterov": False,
            "optimizer.eta": 0.02, "optimizer.eps": 1.0e-8, "optimizer.clip_lr": True, "optimizer.betas": None,
            "optimizer.exclude_bias_n_norm": True}


def _solo_asymmetric() -> dict:
    # augmentations/asymmetric.yaml: two pipelines of one 32 px crop each, scale (0.08, 1), colour jitter
    # (0.4, 0.4, 0.2, 0.1) p 0.8, grayscale 0.2, no blur, solarize 0.0 / 0.2, flip 0.5 (ratio: torchvision's default)
    common = dict(num_crops=1, crop_size=32, scale=(0.08, 1.0), brightness=0.4, contrast=0.4, saturation=0.2,
                  hue=0.1, grayscale=0.2, blur_prob=0.0)
    return {**view(0, **common, solarize=0.0), **view(1, **common, solarize=0.2)}


SOURCES["byol_cifar10"] = {
    "cite": f"{SOLO}/byol.yaml + augmentations/asymmetric.yaml",
    "values": {
        # byol.yaml method_kwargs and momentum
        "method.proj_hidden_dim": 4096, "method.proj_output_dim": 256, "method.pred_hidden_dim": 4096,
        "method.base_tau": 0.99, "method.final_tau": 1.0,
        # solo-learn runs every crop through the backbone on its own (BaseMethod.training_step, one forward per crop)
        "method.bn_stats": "per_view",
        **_solo_lars(lr=1.0, weight_decay=1.0e-5), **_solo_warmup_cosine(), **_solo_asymmetric(),
        "data.batch_size": 256, "data.image_size": 32, "trainer.max_epochs": 1000,
    },
}
