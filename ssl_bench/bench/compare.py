"""The CPU suites' rows: ssl_bench measured, and beside it, in the same process, lightly's loop
of the same method (fast variant and fp32) and the bare-backbone bound.

Per row and round the order is ssl_bench, lightly's fast loop, the bound; lightly's fp32 loop
(the slowest, a reference) runs once, in the first round. With several rounds every figure is the
best of its rounds: other jobs on a shared machine only ever slow a measurement down.
"""

from __future__ import annotations

import sys
import time

from ssl_bench.bench.bound import backbone_bound
from ssl_bench.bench.lightly_loop import VARIANTS, fast_variant, run_lightly
from ssl_bench.bench.lightly_specs import SPECS
from ssl_bench.bench.machine import load_average, machine_info, matmul_peak_tflops
from ssl_bench.bench.ours import Setting, bench_config, measure_ours, resolve_device, view_label
from ssl_bench.bench.table import Row


def log(text: str) -> None:
    """A progress line on stderr, with the time and the machine's load."""
    print(
        f"[{time.strftime('%H:%M:%S')} load {load_average()}] {text}", file=sys.stderr, flush=True
    )


def _ours(cfg, args, row: Row, first: bool) -> None:
    ours = measure_ours(cfg, args.accelerator, args.warmup, args.steps, args.flops and first)
    row.precision = ours["precision"]
    row.peak_mem_mib = max(row.peak_mem_mib, ours["peak_mem_mib"])
    row.views_img_s = max(row.views_img_s, ours["views_img_s"])
    if ours["train_img_s"] > row.train_img_s:
        row.train_img_s = ours["train_img_s"]
    if "step_tflops" in ours:
        import torch

        dtype = torch.bfloat16 if "bf16" in row.precision else torch.float32
        row.extra["gflop_per_image"] = ours["gflop_per_image"]
        row.step_tflops = ours["step_tflops"]
        row.peak_tflops = matmul_peak_tflops(resolve_device(args.accelerator), dtype)
        row.mfu_pct = 100 * row.step_tflops / row.peak_tflops if row.peak_tflops else 0.0
    log(f"{_label(row)}: ssl_bench {ours['train_img_s']:.1f} images/s ({row.precision})")


def _lightly(cfg, args, row: Row, variant_name: str) -> None:
    device = resolve_device(args.accelerator)
    variant = fast_variant(device) if variant_name == "fast" else VARIANTS[variant_name]
    out = run_lightly(cfg, variant, device, args.warmup, args.steps, args.lightly_workers)
    key = f"lightly_{variant_name}_img_s"
    row.extra[key] = max(row.extra.get(key) or 0.0, out["img_s"])
    row.extra[f"lightly_{variant_name}_loss"] = out["loss"]
    if variant_name == "fast":
        row.extra["lightly_fast"] = variant.name
    log(f"{_label(row)}: lightly {variant.name} {out['img_s']:.1f} images/s")


def _bound(cfg, args, row: Row) -> None:
    device = resolve_device(args.accelerator)
    bound = backbone_bound(cfg, row.precision, device, args.warmup, args.steps)
    if bound is not None and bound[0] > (row.extra.get("bound_img_s") or 0.0):
        row.extra.update(bound_img_s=bound[0], bound_calls=bound[1])
    if bound is not None:
        log(f"{_label(row)}: bare backbone {bound[0]:.1f} images/s ({bound[1]} calls)")


def _label(row: Row) -> str:
    return f"{row.method} ({row.backbone}, {row.image_size} px, batch {row.batch_size})"


def _ratios(row: Row) -> None:
    """Ratios to lightly and shares of the bound, from the best figures."""
    x, ours = row.extra, row.train_img_s
    for name in ("fast", "fp32"):
        theirs = x.get(f"lightly_{name}_img_s")
        if theirs:
            x[f"ratio_vs_lightly_{name}"] = ours / theirs
    bound = x.get("bound_img_s")
    if bound:
        x["pct_of_bound"] = 100 * ours / bound
        if x.get("lightly_fast_img_s"):
            x["lightly_fast_pct_of_bound"] = 100 * x["lightly_fast_img_s"] / bound


def bench_row(setting: Setting, args) -> Row:
    """One row of a CPU suite (module docstring)."""
    device = resolve_device(args.accelerator)
    n_train = setting.batch_size * (args.warmup + args.steps + 1)
    cfg = bench_config(setting, n_train, args.precision, args.override)
    info = machine_info(device)
    row = Row(
        setting.method,
        setting.backbone,
        setting.image_size,
        setting.batch_size,
        str(args.precision),
        device.type,
        machine=info,
    )
    row.extra.update(views=view_label(cfg), cpu_bf16=info["cpu_bf16"])
    compare = args.lightly and setting.method in SPECS
    for r in range(args.rounds):
        _ours(cfg, args, row, first=r == 0)
        if compare:
            _lightly(cfg, args, row, "fast")
        if compare or args.bound:
            _bound(cfg, args, row)
        if compare and r == 0:
            _lightly(cfg, args, row, "fp32")
    _ratios(row)
    return row
