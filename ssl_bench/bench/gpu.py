"""The GPU suite (`python -m ssl_bench.bench --suite gpu`, `make bench-gpu`): issue 17's targets.

On one NVIDIA GPU: SimCLR and BYOL with ResNet-18 (small-input stem) at batch 512 in bf16 on
CIFAR-shaped data (synthetic, 32 px, each method's CIFAR-10 recipe: its views, heads and
optimizer), measured as the other suites measure (Lightning end to end, views on the device):

* the epoch time of 50,000 images, extrapolated: 50,000 / the images per second of the steps
  timed after the warm-up - by default every remaining step of one epoch (97 steps of 512 images,
  15 of them warm-up), so the figure covers ~42k images of a real epoch, scaled to 50k;
* the view throughput (the batched view path alone: two 32 px views per image);
* the peak memory (torch.cuda.max_memory_allocated over the views and training, in GB of 1e9 bytes);
* lightly's loop of the same method with bf16 autocast + channels_last by hand (its transforms on
  PIL images in DataLoader workers, pinned memory) over the same number of steps, and the ratio.

It prints the targets (<= 4 s per epoch for SimCLR, <= 5 s for BYOL, >= 50k images/s for two 32 px
views, <= 4 GB) with pass or fail, and appends both tables to BENCHMARKS.md with the card's name.
Nothing reaches the network (synthetic data, no W&B, lightly is optional: without it the ratio is
left out, said so); torch.compile stays off (`--override compile=true` to measure it). On a machine
without CUDA the same code path runs on the CPU (the tests do, with tiny sizes): the header says so
and no figure is a GPU figure.
"""

from __future__ import annotations

import datetime as dt

from ssl_bench.bench.compare import log
from ssl_bench.bench.lightly_loop import fast_variant, run_lightly
from ssl_bench.bench.machine import describe, gpu_name, machine_info
from ssl_bench.bench.ours import Setting, bench_config, measure_ours, resolve_device, view_label
from ssl_bench.bench.table import markdown

#: seconds per epoch of 50k images, per method
EPOCH_TARGETS = {"simclr": 4.0, "byol": 5.0}
VIEWS_TARGET = 50_000.0  # images per second, two 32 px views
MEMORY_TARGET_GB = 4.0
COLUMNS = (
    "method",
    "views",
    "timed_images",
    "train_img_s",
    "epoch_s",
    "views_img_s",
    "peak_mem_gb",
    "lightly",
    "lightly_img_s",
    "lightly_epoch_s",
    "ratio_vs_lightly",
)


def cifar_recipe(method: str) -> str | None:
    from ssl_bench.config import CONFIG_DIR

    name = f"{method}_cifar10"
    return name if (CONFIG_DIR / "recipe" / f"{name}.yaml").is_file() else None


def timed_steps(args) -> int:
    """--steps, or every step of one epoch after the warm-up."""
    per_epoch = args.epoch_images // args.batch_size
    return args.steps or max(1, per_epoch - args.warmup)


def _lightly(cfg, args, device, steps: int, row: dict) -> None:
    try:
        import lightly  # noqa: F401
    except ImportError:
        log("lightly is not installed (pip install -e '.[bench]'): no lightly ratio")
        return
    variant = fast_variant(device)
    out = run_lightly(cfg, variant, device, args.warmup, steps, args.lightly_workers)
    row.update(
        lightly=variant.name,
        lightly_img_s=out["img_s"],
        lightly_epoch_s=args.epoch_images / out["img_s"],
        ratio_vs_lightly=row["train_img_s"] / out["img_s"],
        lightly_peak_mem_gb=out["peak_mem_mib"] * 2**20 / 1e9,
    )
    log(f"{row['method']}: lightly {variant.name} {out['img_s']:.0f} images/s")


def gpu_row(method: str, args) -> dict:
    """One method of the GPU suite (module docstring)."""
    device = resolve_device(args.accelerator)
    steps = timed_steps(args)
    setting = Setting(
        method, args.backbone, args.image_size, args.batch_size, recipe=cifar_recipe(method)
    )
    n_train = max(args.epoch_images, args.batch_size * (args.warmup + steps + 1))
    cfg = bench_config(setting, n_train, args.precision, args.override)
    ours = measure_ours(cfg, args.accelerator, args.warmup, steps, flops=False)
    row = {
        "method": method,
        "recipe": setting.recipe,
        "views": view_label(cfg),
        "precision": ours["precision"],
        "timed_images": steps * args.batch_size,
        "train_img_s": ours["train_img_s"],
        "epoch_s": args.epoch_images / ours["train_img_s"],
        "views_img_s": ours["views_img_s"],
        "peak_mem_gb": ours["peak_mem_mib"] * 2**20 / 1e9,
    }
    log(f"{method}: ssl_bench {row['train_img_s']:.0f} images/s, {row['epoch_s']:.2f} s/epoch")
    if args.lightly:
        _lightly(cfg, args, device, steps, row)
    return row


def checks(rows: list[dict]) -> list[tuple[str, float, str, bool]]:
    """(what, value, target, passed) for each of the issue's targets the rows measure."""
    out = []
    for r in rows:
        if r["method"] in EPOCH_TARGETS:
            goal = EPOCH_TARGETS[r["method"]]
            out.append(
                (f"{r['method']} s per epoch", r["epoch_s"], f"<= {goal:g}", r["epoch_s"] <= goal)
            )
    views = min(r["views_img_s"] for r in rows)
    out.append(("views images/s (min)", views, f">= {VIEWS_TARGET:.0f}", views >= VIEWS_TARGET))
    mem = max(r["peak_mem_gb"] for r in rows)
    out.append(("peak memory GB (max)", mem, f"<= {MEMORY_TARGET_GB:g}", mem <= MEMORY_TARGET_GB))
    return out


def report(rows: list[dict], args) -> tuple[str, dict]:
    """The markdown (header, how it was measured, the rows, the targets) and the JSON payload."""
    device = resolve_device(args.accelerator)
    info = machine_info(device)
    card = gpu_name(device) if device.type == "cuda" else "no GPU: the suite's code path on the CPU"
    steps = timed_steps(args)
    how = (
        f"{describe(info)}. `python -m ssl_bench.bench --suite gpu`: synthetic "
        f"{args.image_size} px images, {args.backbone}, batch {args.batch_size}, "
        f"{rows[0]['precision']}, each method's CIFAR-10 recipe. epoch_s = "
        f"{args.epoch_images:,} images / the images per second of {steps} steps "
        f"({steps * args.batch_size:,} images) timed after {args.warmup} warm-up steps: "
        "extrapolated to the epoch, not a timed whole epoch. lightly: its loop with bf16 "
        f"autocast + channels_last by hand, {args.lightly_workers} DataLoader workers."
    )
    header = f"### {dt.datetime.now():%Y-%m-%d %H:%M} - GPU suite (issue 17): {card}\n\n{how}"
    table = markdown(header, list(COLUMNS), [[r.get(c) for c in COLUMNS] for r in rows])
    results = checks(rows)
    lines = [[what, v, goal, "pass" if ok else "FAIL"] for what, v, goal, ok in results]
    text = (
        table + "\n" + markdown("Targets (issue 17):", ["target", "value", "goal", "result"], lines)
    )
    payload = {
        "card": card,
        "machine": info,
        "rows": rows,
        "targets": [dict(zip(("target", "value", "goal", "pass"), c)) for c in results],
    }
    return text, payload


def gpu_suite(args) -> tuple[str, dict]:
    device = resolve_device(args.accelerator)
    if device.type != "cuda":
        log("no CUDA device: the GPU suite's code path runs on the CPU (not a GPU figure)")
    rows = [gpu_row(m, args) for m in args.methods_list]
    return report(rows, args)
