"""The bare-backbone bound of a row: what the network alone costs, with nothing else around it.

The row's backbone (a fresh one from the same config) in train mode, at the row's precision
(bf16 autocast where the row trains in bf16) and memory format (channels_last where the row uses
it), on random inputs of the row's view shapes, `batch` images per view: forward and backward
through every view the method trains on (the outputs summed), and for methods with a momentum
teacher its forward passes without gradient on the views the teacher encodes
(bench.lightly_specs.Spec.bound_views: BYOL 2, MoCo 1 per direction, DINO the 2 global crops). No
heads, loss, optimizer, views or data loading. The views go through the backbone in the calls
ssl_bench's method makes (`bn_stats`: a call per view, or per crop resolution with the views of
one size concatenated) and in the calls lightly's loop makes (Spec.joint); where the two differ
both are timed and the faster counts (`bound_calls` says which): on a CPU the grouping alone can
change the backbone's speed by 2x (oneDNN's kernels differ with the batch), so a bound in the
other side's grouping would be no bound. A loop that does everything else too can approach this
figure but not pass it, up to noise. In dataset images per second, as the rows.
"""

from __future__ import annotations

import time

import torch
from omegaconf import OmegaConf

from ssl_bench.bench.lightly_specs import SPECS, all_views, by_resolution
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


def groupings(cfg) -> list[bool]:
    """The backbone calls of the two sides: False = a call per view, True = a call per crop
    resolution (module docstring)."""
    ours = cfg.method.get("bn_stats") == "joint"
    spec = SPECS.get(cfg.method.name)
    return sorted({ours, spec.joint if spec else ours})


def backbone_bound(
    cfg, precision: str, device: torch.device, warmup: int, steps: int
) -> tuple[float, str] | None:
    """(dataset images per second, 'per_view' or 'joint') of the bare backbone on the row's views,
    the faster of the two sides' groupings (module docstring); None where there is no bound."""
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
    best = None
    for joint in groupings(cfg):
        calls = [by_resolution(xs[:trained]), by_resolution(xs[:teacher]) if teacher else []]
        if not joint:
            calls = [xs[:trained], xs[:teacher]]
        rate = _time(backbone, calls, device, amp, warmup, steps) * batch
        if best is None or rate > best[0]:
            best = (rate, "joint" if joint else "per_view")
    return best


def _time(backbone, calls, device, amp: bool, warmup: int, steps: int) -> float:
    """Steps per second of forward + backward on calls[0] and no-grad forwards on calls[1]."""
    trained, teacher = calls

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = sum(backbone(x).float().sum() for x in trained)
            with torch.no_grad():
                for x in teacher:
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
    return steps / (time.perf_counter() - start)
