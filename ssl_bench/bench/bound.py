"""The bare-backbone bound of a row: what the network alone costs, with nothing else around it.

The row's backbone (a fresh one from the same config) in train mode, at the row's precision
(bf16 autocast where the row trains in bf16) and memory format (channels_last where the row uses
it), on random inputs of the row's view shapes: one call of `batch` images per view, forward and
backward through every view the method trains on (the outputs summed), and for methods with a
momentum teacher its forward passes without gradient on the views the teacher encodes
(bench.lightly_specs.Spec.bound_views: BYOL 2, MoCo 1 per direction, DINO the 2 global crops). No
heads, loss, optimizer, views or data loading: a loop that does all of those can approach this
figure but not pass it (up to noise, and up to grouping: a method that concatenates views into one
call runs larger batches than the bound's). In dataset images per second, as the rows.
"""

from __future__ import annotations

import time

import torch
from omegaconf import OmegaConf

from ssl_bench.bench.lightly_specs import SPECS, all_views
from ssl_bench.bench.machine import sync
from ssl_bench.views.config import parse_pipelines


def bound_views(cfg) -> tuple[list[int], int, int] | None:
    """(the crop size of every view, views trained through, views the teacher encodes) of the
    row; None where a bare backbone is no bound."""
    pipes = parse_pipelines(cfg.augmentation.views, image_size=int(cfg.data.image_size))
    sizes = [p.crop_size for p in pipes for _ in range(p.num_crops)]
    spec = SPECS.get(cfg.method.name)
    counts = (spec.bound_views if spec else all_views)(
        OmegaConf.to_container(cfg.method, resolve=True), len(sizes)
    )
    return None if counts is None else (sizes, *counts)


def backbone_bound(
    cfg, precision: str, device: torch.device, warmup: int, steps: int
) -> float | None:
    """Dataset images per second of the bare backbone on the row's views (module docstring)."""
    from ssl_bench.backbones import create_backbone

    views = bound_views(cfg)
    if views is None:
        return None
    sizes, trained, teacher = views
    b = OmegaConf.to_container(cfg.backbone, resolve=True)
    backbone = create_backbone(
        b["name"], small_input=b.get("small_input", False), **(b.get("kwargs") or {})
    ).to(device)
    fmt = torch.channels_last if cfg.get("channels_last", True) else torch.contiguous_format
    backbone = backbone.to(memory_format=fmt).train()
    batch = int(cfg.data.batch_size)
    xs = [torch.randn(batch, 3, s, s, device=device).contiguous(memory_format=fmt) for s in sizes]
    amp = "bf16" in precision

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = sum(backbone(x).float().sum() for x in xs[:trained])
            with torch.no_grad():
                for x in xs[:teacher]:
                    backbone(x)
        loss.backward()
        backbone.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return batch * steps / (time.perf_counter() - start)
