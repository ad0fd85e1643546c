"""ssl_bench's side of the bench: a real run's objects on in-memory synthetic images, measured.

For one method it composes the run config (the method's own recipe, or the one named, with the
bench's data, backbone, batch and precision), builds the same objects as `python -m ssl_bench`
(datamodule with on-device views, the method, a Lightning Trainer with the resolved precision) and
measures, after warm-up: end-to-end training throughput (dataset images per second, every view
included), the view path alone, peak memory and, optionally, the FLOPs of one training step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytorch_lightning as pl
import torch

from ssl_bench.bench.machine import peak_memory_mib, reset_peak_memory, sync
from ssl_bench.errors import UserError

#: the views the bench gives a method whose own recipe would take ImageNet's crops (SwAV: its
#: multi-crop at 32 px, 2x32 + 6x16, ssl_bench's own preset; the rest keep their recipe's views)
AUGMENTATION_OF = {"byol": "byol", "swav": "swav", "moco_v1": "moco_v1", "moco_v2": "moco_v2"}
#: the small-model row: the narrow ResNet-18 (channels 16-128) of the Fashion-MNIST experiments
#: (conf/experiment/fmnist_base.yaml) at Fashion-MNIST's 28 px
SMALL_BACKBONE, SMALL_IMAGE_SIZE = "resnet18_narrow", 28
#: methods that mask patch tokens, so need a ViT: where a suite's backbone is a ResNet their rows
#: take this one (at 32 px with the data's vit_patch_size, 4: CIFAR's 8 x 8 grid; the small row
#: is conf/experiment/fmnist_mae.yaml's ViT-Tiny with patch 7 at 28 px)
PATCH_METHODS = {"mae": "vit_tiny"}


def row_backbone(method: str, backbone: str) -> str:
    """The backbone of `method`'s rows when the suite asks for `backbone` (PATCH_METHODS)."""
    if method in PATCH_METHODS and backbone.startswith("resnet"):
        return PATCH_METHODS[method]
    return backbone


@dataclass(frozen=True)
class Setting:
    """What one row measures. `small`: the Fashion-MNIST experiment's settings of the method
    (conf/experiment/fmnist_<method>.yaml: its heads, views, optimizer), on synthetic images of
    SMALL_IMAGE_SIZE (3 channels, as Fashion-MNIST's grey images are replicated) with
    SMALL_BACKBONE."""

    method: str
    backbone: str
    image_size: int
    batch_size: int
    small: bool = False
    recipe: str | None = (
        None  # a conf/recipe name replacing the method's own (the GPU suite's CIFAR)
    )

    @classmethod
    def small_row(cls, method: str, batch_size: int) -> Setting:
        backbone = row_backbone(method, SMALL_BACKBONE)
        return cls(method, backbone, SMALL_IMAGE_SIZE, batch_size, small=True)


def available_methods() -> list[str]:
    """The methods of this checkout (conf/method/*.yaml)."""
    from ssl_bench.config import CONFIG_DIR

    return sorted(p.stem for p in (CONFIG_DIR / "method").glob("*.yaml"))


def check_methods(methods: list[str]) -> None:
    """A UserError naming the methods this checkout does not have."""
    missing = [m for m in methods if m not in available_methods()]
    if missing:
        raise UserError(
            f"no method {', '.join(missing)} in this checkout (conf/method/"
            f"<name>.yaml); its rows run once the method is merged. Available: "
            f"{', '.join(available_methods())}."
        )


def resolve_device(accelerator: str) -> torch.device:
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if gpu else "cpu")


def bench_config(setting: Setting, n_train: int, precision: str, extra: list[str]):
    """The composed run config of `setting` on `n_train` synthetic images."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from ssl_bench.config import CONFIG_DIR

    m = setting.method
    overrides = []
    if setting.small and (CONFIG_DIR / "experiment" / f"fmnist_{m}.yaml").is_file():
        overrides.append(f"experiment=fmnist_{m}")
    elif setting.recipe is None and m in AUGMENTATION_OF:
        overrides.append(f"augmentation={AUGMENTATION_OF[m]}")
    if setting.recipe is not None:
        overrides.append(f"recipe={setting.recipe}")
    overrides += [
        f"method={m}",
        f"backbone={setting.backbone}",
        "data=synthetic",
        f"data.image_size={setting.image_size}",
        f"++data.options.image_size={setting.image_size}",
        f"data.batch_size={setting.batch_size}",
        f"data.options.n_train={n_train}",
        "data.options.n_test=64",
        "data.limit=null",
        "data.test_limit=null",
        f"trainer.precision={precision}",
        "progress_bar=false",
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides + list(extra))


def view_label(cfg) -> str:
    """The views of a config as `<crops>x<px>` per pipeline, e.g. 2x32+6x16."""
    from ssl_bench.views.config import parse_pipelines

    pipes = parse_pipelines(cfg.augmentation.views, image_size=cfg.data.image_size)
    return "+".join(f"{p.num_crops}x{p.crop_size}" for p in pipes)


def view_throughput(dm, device: torch.device, batch_size: int, reps: int):
    """Dataset images per second of the batched view path alone (all views of an image), on the
    training device; returns it and the view module."""
    x = dm.splits["pretrain"].images[:batch_size].to(device)
    views_fn = dm.batch_views.to(device)
    for _ in range(2):
        views_fn(x)
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        views_fn(x)
    sync(device)
    return batch_size * reps / (time.perf_counter() - t), views_fn


class Clock(pl.Callback):
    """Dataset images per second from the end of the warm-up's last optimizer step to the end of
    training: the interval callbacks.ThroughputMonitor averages (every batch's wait for the loader
    included), with the device synchronised at both ends, so a GPU's queued work falls inside it
    (the monitor itself never synchronises: it must not slow a run)."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.images, self.rate = warmup, None, 0, 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.warmup and self.start is None:
            sync(pl_module.device)
            self.start = time.perf_counter()
        elif self.start is not None:
            self.images += int(batch[2].shape[0])

    def on_train_end(self, trainer, pl_module):
        sync(pl_module.device)
        if self.start is not None and self.images:
            self.rate = self.images / (time.perf_counter() - self.start)


def train_throughput(model, dm, precision, accelerator: str, warmup: int, steps: int, benchmark):
    """End-to-end training images per second with Lightning over `steps` batches after `warmup`
    (Clock). `benchmark`: trainer.benchmark of the row (cuDNN's autotuner)."""
    clock = Clock(warmup)
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=precision,
        max_steps=warmup + steps,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        benchmark=benchmark,
        callbacks=[clock],
    )
    trainer.fit(model, datamodule=dm)
    return clock.rate


def step_flops(model, dm, views_fn, device: torch.device, amp: bool, batch_size: int) -> float:
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


def measure_ours(cfg, accelerator: str, warmup: int, steps: int, flops: bool) -> dict:
    """One measurement of ssl_bench on `cfg`: {precision, device, train_img_s, views_img_s,
    peak_mem_mib} and, with `flops`, {gflop_per_image, step_tflops}."""
    from ssl_bench.training import build_datamodule, build_method, resolve_precision

    device = resolve_device(accelerator)
    precision = str(resolve_precision(cfg.trainer.precision, accelerator))
    batch_size = int(cfg.data.batch_size)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    model = build_method(cfg, dm.data_info())
    reset_peak_memory(device)
    out = {"precision": precision, "device": device.type}
    out["views_img_s"], views_fn = view_throughput(dm, device, batch_size, max(steps, 3))
    benchmark = cfg.trainer.get("benchmark")
    out["train_img_s"] = train_throughput(
        model, dm, precision, accelerator, warmup, steps, benchmark
    )
    out["peak_mem_mib"] = peak_memory_mib(device)
    if flops:
        n = step_flops(model, dm, views_fn, device, "bf16" in precision, batch_size)
        step_time = batch_size / out["train_img_s"] if out["train_img_s"] else float("nan")
        out["gflop_per_image"] = n / batch_size / 1e9
        out["step_tflops"] = n / step_time / 1e12
    return out
