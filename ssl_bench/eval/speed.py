"""`python -m ssl_bench.eval.speed [key=value]...`: does evaluation run at inference speed?

Issue 17, item 3: the random-init kNN baseline over all of Fashion-MNIST (60k bank, 10k queries)
must take no longer than one training epoch's forward passes of the same images. This measures
both in one process, on the same backbone, precision and machine, and prints their ratio:

- `baseline`: the random-init kNN baseline exactly as `python -m ssl_bench` runs it before
  training - `training.init_baseline`, i.e. Lightning's `validate` over the un-augmented train split
  (the bank) and the test split (the queries) at `data.eval_batch_size`, then `WeightedKNN` - on a
  freshly built method and Trainer. Its kNN scoring alone (`knn_s`) is timed inside it.
- `train_forward`: one epoch's forward passes of the same train images through the same method:
  train mode (BatchNorm batch statistics), grad enabled, the run's autocast, channels_last, batches
  of `data.batch_size`, the last incomplete batch dropped as training drops it; no backward.
- `train_forward_backward`: the same with the backward pass (no optimizer step), for context.
- `train_views_forward`: the forward passes one training epoch of the method really makes: every
  view of every image (SimCLR's two, multi-crop's large and small crops), made by the run's own
  view pipeline from the same train images, one network call per view, otherwise as
  `train_forward`. `ratio_views` = baseline / this: the issue's words read literally ("one training
  epoch's forward passes"), where `ratio` (one forward per image) is the strict reading. In-memory
  data only (the views are made on the device as a run makes them); None for image folders.

Only the network calls of the training passes are timed (the images are prepared beforehand and
outside the clock); the baseline's time includes everything a run spends on it (the eval transform,
Lightning's loop, the kNN), so the comparison is strict against the baseline. The images of the
training passes are the un-augmented eval views of the train split: the same images and size as the
bank, without the cost of augmentation. Each of the three is timed `--repeats` times, alternating;
the fastest of each is reported (the machine may be shared), every time is kept in `--json`.
`--no-backward` skips the forward + backward epoch (the slowest part, context only).

Defaults: SimCLR's method (its `forward` is the backbone's pooled features), the narrow ResNet-18 of
the Fashion-MNIST experiments (conf/experiment/fmnist_base.yaml), all 60k train and 10k test images,
`trainer.precision=auto` (bf16-mixed on CPUs with AVX512-BF16 or AMX). Any other `key=value` is a
config override, as on `python -m ssl_bench` (e.g. `data.eval_batch_size=4096`, `method=byol`).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ssl_bench.errors import UserError, report_user_error

#: the configuration measured unless overridden: the Fashion-MNIST experiments' backbone, all images
DEFAULTS = [
    "method=simclr",
    "data=fashion_mnist",
    "backbone=resnet18_narrow",
    "data.limit=null",
    "data.test_limit=null",
    "progress_bar=false",
    "logger=csv",
]


def machine_line() -> str:
    """CPU model, cores, whether it has native bf16 (AVX512-BF16 / AMX), torch version, and the GPU
    when there is one."""
    from ssl_bench.training import cpu_supports_bf16

    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    bf16 = "native bf16 (AVX512-BF16/AMX)" if cpu_supports_bf16() else "no native bf16"
    text = f"{cpu}, {os.cpu_count()} cores, {bf16}, torch {torch.__version__}"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def build(cfg, run_dir: Path):
    """(datamodule after setup, a freshly built method, a Trainer) as `training.run` builds them,
    without loggers or user callbacks (nothing is written but Lightning's scratch in `run_dir`)."""
    import pytorch_lightning as pl

    from ssl_bench.training import build_datamodule, build_method, build_trainer

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")
    dm = build_datamodule(cfg)
    dm.setup("fit")
    if dm.num_classes == 0 or dm.splits.get("train") is None or dm.splits.get("test") is None:
        raise UserError(
            f"data '{cfg.data.name}' has no labelled train and test splits: the kNN baseline "
            "needs both. Fix: measure on a labelled dataset (e.g. data=fashion_mnist)."
        )
    model = build_method(cfg, dm.data_info())
    if model.online_eval is None or model.online_eval.knn is None:
        raise UserError(
            "the run has no online kNN (online_eval=null or online_eval.knn=false), so no kNN "
            "baseline to time. Fix: drop that override."
        )
    trainer = build_trainer(cfg, run_dir, [], [])
    return dm, model, trainer


def time_baseline(trainer, model, dm) -> dict[str, Any]:
    """Seconds of `training.init_baseline` (as a run calls it), the kNN's share of them and the
    top-1 it measured."""
    from ssl_bench.training import init_baseline

    knn = model.online_eval.knn
    spent: list[float] = []
    scoring = knn.compute  # torchmetrics' wrapped compute, which Lightning's epoch end calls

    def timed_compute():
        t0 = time.perf_counter()
        try:
            return scoring()
        finally:
            spent.append(time.perf_counter() - t0)

    knn.compute = timed_compute
    started = time.perf_counter()
    try:
        init_baseline(trainer, model, dm)
    finally:
        del knn.compute  # the class's own again
    return {
        "baseline_s": time.perf_counter() - started,
        "knn_s": sum(spent),
        "knn_top1_init": model.knn_init,
    }


def training_batches(dm, device: torch.device) -> list[torch.Tensor]:
    """The train split's images as one training epoch sees them in number and batch size
    (`data.batch_size`, the last incomplete batch dropped), un-augmented, prepared in advance."""
    from ssl_bench.eval.splits import SplitBatches

    batches = SplitBatches(dm, "train", dm.batch_size, device)
    out = []
    for x, _ in batches(shuffle=False, drop_last=True):
        if dm.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        out.append(x)
    return out


def view_batches(dm, device: torch.device) -> list[list[torch.Tensor]] | None:
    """One training epoch's views (`data.batch_size` images a batch, the last incomplete batch
    dropped) made by the run's view pipeline from the train images, prepared in advance; None when
    the data has no device views (image folders: their views are made per item on the CPU)."""
    if not getattr(dm, "use_device_views", False):
        return None
    images, make = dm.splits["train"].images, dm.batch_views.to(device)  # the run's own view path
    out = []
    with torch.no_grad():
        for start in range(0, len(images) - dm.batch_size + 1, dm.batch_size):
            views = make(images[start : start + dm.batch_size].to(device))
            if dm.channels_last:
                views = [v.contiguous(memory_format=torch.channels_last) for v in views]
            out.append(views)
    return out


def time_training_passes(
    model, batches: list[torch.Tensor], precision: str, backward: bool
) -> float:
    """Seconds in the network calls of one epoch of training passes over `batches`: train mode,
    grad enabled, the run's autocast (as Lightning's MixedPrecision), forward (and backward)."""
    from ssl_bench.eval.representation import PRECISIONS

    autocast_dtype = PRECISIONS.get(precision, (None, None))[0]
    device = batches[0].device
    model.train()
    total = 0.0
    with torch.enable_grad():
        for x in batches:
            _sync(device)
            t0 = time.perf_counter()
            with (
                torch.autocast(device.type, dtype=autocast_dtype)
                if autocast_dtype is not None
                else contextlib.nullcontext()
            ):
                out = model(x)
            if backward:
                out.float().sum().backward()
            _sync(device)
            total += time.perf_counter() - t0
            if backward:
                model.zero_grad(set_to_none=True)
    return total


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def with_defaults(overrides: list[str]) -> list[str]:
    """DEFAULTS, less those whose key `overrides` sets (Hydra refuses a group given twice), then
    `overrides`."""
    own = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    return [d for d in DEFAULTS if d.split("=", 1)[0] not in own] + list(overrides)


def one_repeat(cfg, run_dir: Path, backward: bool, tag: str, log=print) -> dict[str, Any]:
    """One baseline on a freshly built method and Trainer, then the training passes over the same
    train images (forward; forward + backward with `backward`), on a copy of the method."""
    dm, model, trainer = build(cfg, run_dir)
    base = time_baseline(trainer, model, dm)
    log(f"{tag} baseline {base['baseline_s']:.1f} s (kNN {base['knn_s']:.1f} s)")
    device = next(model.parameters()).device
    batches = training_batches(dm, device)
    trained = copy.deepcopy(model)  # train-mode BN must not move the baseline's model
    precision = str(trainer.precision)
    res = {
        **base,
        "precision": precision,
        "bank": len(dm.splits["train"]),
        "queries": len(dm.splits["test"]),
        "eval_batch_size": dm.eval_batch_size,
        "train_images": sum(int(x.shape[0]) for x in batches),
        "batch_size": dm.batch_size,
        "train_forward_s": time_training_passes(trained, batches, precision, backward=False),
        "train_forward_backward_s": None,
    }
    log(f"{tag} one epoch of training forward passes {res['train_forward_s']:.1f} s")
    if backward:
        both = time_training_passes(trained, batches, precision, backward=True)
        res["train_forward_backward_s"] = both
        log(f"{tag} one epoch of training forward + backward passes {both:.1f} s")
    del batches  # the views below take their memory
    views = view_batches(dm, device)
    if views is not None:
        res["views_per_image"] = len(views[0])
        flat = [v for batch in views for v in batch]
        del views
        res["train_views_forward_s"] = time_training_passes(trained, flat, precision, False)
        log(f"{tag} the epoch's forward passes of every view {res['train_views_forward_s']:.1f} s")
    return res


def measure(
    overrides: list[str], repeats: int = 1, backward: bool = True, log=print
) -> dict[str, Any]:
    """Every timing of the module docstring, `repeats` times alternating; the fastest of each,
    `ratio` = fastest baseline / fastest training forward (the target: <= 1) and each repeat's own
    ratio."""
    from ssl_bench.api import compose

    overrides = with_defaults(overrides)
    cfg = compose(overrides)
    runs = []
    with tempfile.TemporaryDirectory(prefix="ssl_bench_speed_") as tmp:
        for i in range(repeats):
            runs.append(one_repeat(cfg, Path(tmp), backward, f"[{i + 1}/{repeats}]", log))
    keys = (
        "baseline_s",
        "knn_s",
        "train_forward_s",
        "train_forward_backward_s",
        "train_views_forward_s",
    )
    times = {k: [r.get(k) for r in runs] for k in keys}
    best = {k: (min(v) if None not in v else None) for k, v in times.items()}
    return {
        "machine": machine_line(),
        "overrides": overrides,
        **{k: v for k, v in runs[-1].items() if k not in keys},
        **best,
        "ratio": best["baseline_s"] / best["train_forward_s"],
        "ratios": [r["baseline_s"] / r["train_forward_s"] for r in runs],
        "ratio_views": (
            best["baseline_s"] / best["train_views_forward_s"]
            if best["train_views_forward_s"]
            else None
        ),
        "times": times,
        "load_average": list(os.getloadavg()),
    }


def report(res: dict[str, Any]) -> str:
    """The result as the lines BENCHMARKS.md keeps."""
    return "\n".join(
        [
            f"machine: {res['machine']}; load average at the end {res['load_average'][0]:.2f}",
            f"precision {res['precision']}; bank {res['bank']:,}, queries {res['queries']:,}, "
            f"eval batches of {res['eval_batch_size']}; training passes over "
            f"{res['train_images']:,} images in batches of {res['batch_size']}",
            f"random-init kNN baseline: {res['baseline_s']:.1f} s (of which kNN scoring "
            f"{res['knn_s']:.1f} s; top-1 {res['knn_top1_init']:.2f}%)",
            f"one epoch of training forward passes: {res['train_forward_s']:.1f} s"
            + (
                f" (forward + backward: {res['train_forward_backward_s']:.1f} s)"
                if res["train_forward_backward_s"] is not None
                else ""
            ),
            f"ratio baseline / training forward: {res['ratio']:.2f} (target <= 1; per repeat: "
            + ", ".join(f"{r:.2f}" for r in res["ratios"])
            + ")",
        ]
        + _views_lines(res)
    )


def _views_lines(res: dict[str, Any]) -> list[str]:
    if res.get("ratio_views") is None:
        return ["the epoch's forward passes of every view: not measured (no device views)"]
    return [
        f"the epoch's forward passes of every view ({res['views_per_image']} a image): "
        f"{res['train_views_forward_s']:.1f} s; ratio baseline / that: {res['ratio_views']:.2f}"
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ssl_bench.eval.speed",
        description="Time the random-init kNN baseline against one training epoch's forward "
        "passes of the same images (issue 17, item 3).",
    )
    parser.add_argument("--repeats", type=int, default=1, help="alternating repeats (fastest kept)")
    parser.add_argument(
        "--no-backward", action="store_true", help="skip the forward + backward epoch (context)"
    )
    parser.add_argument("--json", default=None, help="also write every timing to this file")
    parser.add_argument("overrides", nargs="*", help="config overrides, key=value")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.repeats < 1:
            raise UserError(f"--repeats must be >= 1, got {args.repeats}.")
        res = measure(args.overrides, args.repeats, backward=not args.no_backward)
    except UserError as err:
        report_user_error(err)
    print(report(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
