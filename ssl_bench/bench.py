"""`python -m ssl_bench.bench`: training throughput, view throughput, achieved FLOP/s and memory.

For each method it builds the same objects as a real run (config composition, datamodule with device
views, method, Lightning Trainer with the resolved precision) on in-memory synthetic images and
measures, after warm-up:

  (a) end-to-end training throughput in dataset images per second (every view of an image included),
  (b) the view path alone (batched augmentations of uint8 batches),
  (c) achieved FLOP/s of one training step (torch's FlopCounterMode) against a matmul peak measured
      in the same run with the same dtype,
  (d) peak memory: CUDA max allocated, or the process's peak RSS on a CPU.

With `--lightly` (needs the optional extra `[bench]`: lightly 1.6.0) it also runs lightly's SimCLR
loop as its users write it - its projection head, NTXentLoss and SimCLRTransform on PIL images in a
DataLoader with 2 workers, fp32 - and the same loop with bf16 autocast + channels_last added by
hand, and prints ssl_bench / lightly, all measured in the same process. Results go to stdout and are
appended to BENCHMARKS.md with the machine and the date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

DEFAULT_METHODS = ("simclr", "byol", "swav")
AUGMENTATION_OF = {"byol": "byol", "swav": "swav", "moco_v1": "moco_v1", "moco_v2": "moco_v2"}


@dataclass
class Row:
    method: str
    backbone: str
    image_size: int
    batch_size: int
    precision: str
    device: str
    train_img_s: float = 0.0
    views_img_s: float = 0.0
    step_tflops: float = 0.0
    peak_tflops: float = 0.0
    mfu_pct: float = 0.0
    peak_mem_mib: float = 0.0
    extra: dict = field(default_factory=dict)


# ---- machine -------------------------------------------------------------------------------------
def machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def matmul_peak_tflops(
    device: torch.device, dtype: torch.dtype, n: int | None = None, reps: int = 10
) -> float:
    n = n or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12


# ---- ssl_bench -----------------------------------------------------------------------------------
def bench_config(
    method: str,
    backbone: str,
    image_size: int,
    batch_size: int,
    steps: int,
    precision: str,
    extra: list[str],
):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from ssl_bench.config import CONFIG_DIR

    overrides = [
        f"method={method}",
        f"backbone={backbone}",
        "data=synthetic",
        f"data.image_size={image_size}",
        f"++data.options.image_size={image_size}",
        f"data.batch_size={batch_size}",
        f"data.options.n_train={batch_size * (steps + 1)}",
        "data.options.n_test=64",
        f"trainer.precision={precision}",
        "progress_bar=false",
    ]
    if method in AUGMENTATION_OF:
        overrides.append(f"augmentation={AUGMENTATION_OF[method]}")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides + list(extra))


def _view_throughput(dm, device: torch.device, args):
    """Images per second of the batched view path alone, on the training device; returns it and the
    view module."""
    x = dm.splits["pretrain"].images[: args.batch_size].to(device)
    views_fn = dm.batch_views.to(device)
    for _ in range(2):
        views_fn(x)
    sync(device)
    t = time.perf_counter()
    for _ in range(args.steps):
        views_fn(x)
    sync(device)
    return args.batch_size * args.steps / (time.perf_counter() - t), views_fn


def _train_throughput(model, dm, precision, steps: int, args) -> float:
    """End-to-end training images per second with Lightning, timed between batches after warm-up."""
    import pytorch_lightning as pl

    from ssl_bench.callbacks import ThroughputMonitor

    clock = ThroughputMonitor(every_n_steps=10**9, warmup_steps=args.warmup)
    trainer = pl.Trainer(
        accelerator=args.accelerator,
        devices=1,
        precision=precision,
        max_steps=steps,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[clock],
    )
    trainer.fit(model, datamodule=dm)
    return clock.average or 0.0


def _step_flops(model, dm, views_fn, device: torch.device, amp: bool, batch_size: int) -> float:
    """FLOPs of one training step (forward + backward) under the run's autocast."""
    from torch.utils.flop_counter import FlopCounterMode

    model.to(device).train()
    dm.trainer = None
    xb = dm.splits["pretrain"].images[:batch_size].to(device)
    views = [v.contiguous(memory_format=torch.channels_last) for v in views_fn(xb)]
    labels = torch.zeros(batch_size, dtype=torch.long, device=device)
    index = torch.arange(batch_size, device=device)
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model.training_loss(views, labels, index)
        out["loss"].backward()
    return counter.get_total_flops()


def bench_method(method: str, args) -> Row:
    """One row: the view path alone, end-to-end training, and the step's FLOPs against the matmul
    peak of the same dtype, all measured in this process."""
    from ssl_bench.training import build_datamodule, build_method, resolve_precision

    steps = args.warmup + args.steps
    cfg = bench_config(
        method,
        args.backbone,
        args.image_size,
        args.batch_size,
        steps,
        args.precision,
        args.override,
    )
    precision = resolve_precision(cfg.trainer.precision, args.accelerator)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    model = build_method(cfg, dm.data_info())
    gpu = args.accelerator in ("gpu", "cuda")
    gpu = gpu or (args.accelerator == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if gpu else "cpu")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    row = Row(method, args.backbone, args.image_size, args.batch_size, str(precision), device.type)
    row.views_img_s, views_fn = _view_throughput(dm, device, args)
    row.train_img_s = _train_throughput(model, dm, precision, steps, args)
    row.peak_mem_mib = peak_memory_mib(device)
    amp = "bf16" in str(precision)
    flops = _step_flops(model, dm, views_fn, device, amp, args.batch_size)
    step_time = args.batch_size / row.train_img_s if row.train_img_s else float("nan")
    row.step_tflops = flops / step_time / 1e12
    row.peak_tflops = matmul_peak_tflops(device, torch.bfloat16 if amp else torch.float32)
    row.mfu_pct = 100 * row.step_tflops / row.peak_tflops if row.peak_tflops else 0.0
    row.extra["gflop_per_image"] = flops / args.batch_size / 1e9
    return row


# ---- lightly, as its users write it --------------------------------------------------------------
class _PILImages(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor, transform):
        from torchvision.transforms.functional import to_pil_image

        self.images = [to_pil_image(img) for img in images]
        self.transform = transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i]), 0


def bench_lightly_simclr(args, bf16_channels_last: bool) -> float:
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform

    from ssl_bench.backbones import create_backbone
    from ssl_bench.data.synthetic import make_synthetic

    cfg = bench_config("simclr", args.backbone, args.image_size, args.batch_size, 1, "32-true", [])
    b = cfg.backbone
    backbone = create_backbone(b.name, small_input=bool(b.small_input), **dict(b.kwargs))
    head = SimCLRProjectionHead(backbone.num_features, 512, 128)
    model = torch.nn.Sequential(backbone, head)
    if bf16_channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion = NTXentLoss(temperature=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)
    n = args.batch_size * (args.warmup + args.steps)
    images, _ = make_synthetic(n, image_size=args.image_size)
    # lightly's CIFAR-10 benchmark transform: no blur at 32px, colour jitter strength 0.5
    transform = SimCLRTransform(input_size=args.image_size, cj_strength=0.5, gaussian_blur=0.0)
    loader = torch.utils.data.DataLoader(
        _PILImages(images, transform),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.lightly_workers,
        persistent_workers=False,
    )
    start, seen = None, 0
    for step, ((x0, x1), _) in enumerate(loader):
        if step == args.warmup:
            start = time.perf_counter()
        if bf16_channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
            x1 = x1.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_channels_last):
            z0, z1 = model(x0), model(x1)
            loss = criterion(z0.float(), z1.float())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if start is not None:
            seen += x0.shape[0]
    return seen / (time.perf_counter() - start) if start else 0.0


# ---- output --------------------------------------------------------------------------------------
COLUMNS = (
    "method",
    "backbone",
    "image_size",
    "batch_size",
    "precision",
    "device",
    "train_img_s",
    "views_img_s",
    "step_tflops",
    "peak_tflops",
    "mfu_pct",
    "peak_mem_mib",
)


def to_markdown(rows: list[Row], header: str) -> str:
    extra_keys = sorted({k for r in rows for k in r.extra})
    cols = list(COLUMNS) + extra_keys
    lines = [header, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        values = [getattr(r, c) if c in COLUMNS else r.extra.get(c, "") for c in cols]
        lines.append(
            "| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in values) + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m ssl_bench.bench", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    p.add_argument("--backbone", default="resnet18", help="a conf/backbone option")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--precision", default="auto")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--steps", type=int, default=10, help="timed steps after warm-up")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument(
        "--lightly",
        action="store_true",
        help="also run lightly 1.6.0's SimCLR loop (extra [bench])",
    )
    p.add_argument("--lightly-workers", type=int, default=2)
    p.add_argument("--out", default="BENCHMARKS.md", help="markdown file to append to ('' to skip)")
    p.add_argument("--json", default=None, help="also write the rows as JSON here")
    p.add_argument(
        "--override", action="append", default=[], help="extra Hydra override (repeatable)"
    )
    args = p.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        p.error("--warmup and --steps must be >= 1")

    rows = [bench_method(m.strip(), args) for m in args.methods.split(",") if m.strip()]
    if args.lightly:
        try:
            fp32 = bench_lightly_simclr(args, bf16_channels_last=False)
            bf16 = bench_lightly_simclr(args, bf16_channels_last=True)
        except ImportError:
            print(
                "ssl_bench.bench: --lightly needs lightly 1.6.0: pip install -e '.[bench]'",
                file=sys.stderr,
            )
            return 2
        for r in rows:
            if r.method == "simclr":
                r.extra.update(
                    lightly_fp32_img_s=fp32,
                    lightly_bf16_cl_img_s=bf16,
                    ratio_vs_lightly_fp32=r.train_img_s / fp32 if fp32 else 0.0,
                    ratio_vs_lightly_bf16=r.train_img_s / bf16 if bf16 else 0.0,
                )
    header = f"### {dt.datetime.now():%Y-%m-%d %H:%M} - {machine()}"
    text = to_markdown(rows, header)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n" + text)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
