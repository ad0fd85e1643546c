"""The one loop that runs every lightly spec (bench.lightly_specs), as lightly's users write it.

The same for every method, after lightly's examples (examples/pytorch/<method>.py): a torch
DataLoader of PIL images through lightly's transform in worker processes (shuffle, drop_last),
then per batch: the momentum update (update_momentum, cosine_schedule), the method's loss,
backward, optimizer step, zero_grad. What is the row's: the backbone (ssl_bench's timm factory with
the row's config), batch, image size, the views (lightly's transform configured with the row's crop
counts, sizes, scales, colour jitter, blur and solarize probabilities: `make_transform`) and the
optimizer family and settings (lightly's LARS, torch's SGD / Adam / AdamW; bias and norm
parameters split off with lightly's get_weight_decay_parameters where the row excludes them, as
lightly's benchmarks do).

Precision variants, added by hand as a user would: `fp32` (the loop as written), `fp32_cl` (model
and batches channels_last) and `bf16_cl` (bf16 autocast around forward and loss, channels_last).
`fast_variant` is the fastest a user would pick on the device: bf16_cl on a CPU with native bf16
and on CUDA with bf16, else fp32_cl.

Timing matches ssl_bench's rows (bench.ours.Clock): from the end of the last warm-up step to the end
of the last timed step, the device synchronised at both ends, every batch's wait for the loader
included. The dataset holds the images of
the warm-up and timed steps plus the batches the workers prefetch (2 per worker), so the workers
keep transforming during the timed steps as in a long run, instead of idling at the end of a
dataset they had already finished.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from omegaconf import OmegaConf
from torch import nn

from ssl_bench.bench.lightly_specs import SPECS, Ctx, Spec
from ssl_bench.bench.machine import peak_memory_mib, reset_peak_memory, sync
from ssl_bench.views.config import ViewPipeline, parse_pipelines


@dataclass(frozen=True)
class Variant:
    name: str
    bf16: bool
    channels_last: bool


VARIANTS = {
    "fp32": Variant("fp32", False, False),
    "fp32_cl": Variant("fp32_cl", False, True),
    "bf16_cl": Variant("bf16_cl", True, True),
}


def fast_variant(device: torch.device) -> Variant:
    """The fastest loop a lightly user gets by hand on `device` (module docstring)."""
    from ssl_bench.training import cpu_supports_bf16

    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    else:
        native = cpu_supports_bf16()
    return VARIANTS["bf16_cl" if native else "fp32_cl"]


# ---- views: the row's pipelines as lightly's transforms --------------------------------------
def _colour(p: ViewPipeline) -> dict:
    """lightly's colour and flip arguments for pipeline `p` (its jitter amounts are already
    multiplied by the strength: cj_strength 1)."""
    return {
        "hf_prob": p.hflip,
        "cj_prob": p.jitter_prob,
        "cj_strength": 1.0,
        "cj_bright": p.brightness,
        "cj_contrast": p.contrast,
        "cj_sat": p.saturation,
        "cj_hue": p.hue,
        "random_gray_scale": p.grayscale,
        "sigmas": tuple(p.blur_sigma),
    }


def _view(p: ViewPipeline, solarize: str | None = None) -> dict:
    """The arguments of one of lightly's single-size view transforms for pipeline `p`."""
    kw = {
        "input_size": p.crop_size,
        "min_scale": p.scale[0],
        "gaussian_blur": p.blur_prob,
        **_colour(p),
    }
    if solarize is not None:
        kw[solarize] = p.solarize
    return kw


def _pair_transform(spec: Spec, pipes: list[ViewPipeline]):
    """Two views: the method's own transform for one pipeline of two crops, BYOLTransform (view 1
    and view 2 transforms) for two pipelines of one crop each - asymmetric views."""
    import lightly.transforms as T

    symmetric = len(pipes) == 1 and pipes[0].num_crops == 2
    asymmetric = len(pipes) == 2 and all(p.num_crops == 1 for p in pipes)
    if not (symmetric or asymmetric) or pipes[0].crop_size != pipes[-1].crop_size:
        raise ValueError(f"lightly's two-view transforms cannot make views {_label(pipes)}")
    name = spec.pair_transform
    if asymmetric or (name not in ("VICRegTransform",) and pipes[0].solarize > 0):
        name = "BYOLTransform"  # lightly's transform of two unlike views (and one with solarize)
    if name == "BYOLTransform":
        first, second = pipes[0], pipes[-1]
        return T.BYOLTransform(
            view_1_transform=T.BYOLView1Transform(**_view(first, "solarization_prob")),
            view_2_transform=T.BYOLView2Transform(**_view(second, "solarization_prob")),
        )
    solarize = "solarize_prob" if name == "VICRegTransform" else None
    return getattr(T, name)(**_view(pipes[0], solarize))


def _multicrop_transform(pipes: list[ViewPipeline]):
    """SwaVTransform: one crop size per pipeline, colour of the first."""
    from lightly.transforms import SwaVTransform

    return SwaVTransform(
        crop_sizes=tuple(p.crop_size for p in pipes),
        crop_counts=tuple(p.num_crops for p in pipes),
        crop_min_scales=tuple(p.scale[0] for p in pipes),
        crop_max_scales=tuple(p.scale[1] for p in pipes),
        gaussian_blur=pipes[0].blur_prob,
        **_colour(pipes[0]),
    )


def _dino_transform(pipes: list[ViewPipeline]):
    """DINOTransform: 2 global crops (one pipeline of 2, or two of 1: blur and solarize of each)
    and the local crops of the last pipeline."""
    from lightly.transforms import DINOTransform

    large = [p for p in pipes if p.crop_size == pipes[0].crop_size]
    local = pipes[-1] if pipes[-1].crop_size != pipes[0].crop_size else None
    if sum(p.num_crops for p in large) != 2 or len(large) + (local is not None) != len(pipes):
        raise ValueError(f"lightly's DINOTransform cannot make views {_label(pipes)}")
    first, second = large[0], large[-1]
    small = local or first
    return DINOTransform(
        global_crop_size=first.crop_size,
        global_crop_scale=tuple(first.scale),
        local_crop_size=small.crop_size,
        local_crop_scale=tuple(small.scale),
        n_local_views=local.num_crops if local else 0,
        gaussian_blur=(first.blur_prob, second.blur_prob, small.blur_prob),
        solarization_prob=second.solarize,
        **_colour(first),
    )


def _label(pipes: list[ViewPipeline]) -> str:
    return "+".join(f"{p.num_crops}x{p.crop_size}" for p in pipes)


def make_transform(spec: Spec, pipes: list[ViewPipeline]):
    """lightly's transform making the row's views (Spec.views says which)."""
    if spec.views == "pair":
        return _pair_transform(spec, pipes)
    if spec.views == "multicrop":
        return _multicrop_transform(pipes)
    if spec.views == "dino":
        return _dino_transform(pipes)
    from lightly.transforms import MAETransform

    return MAETransform(input_size=pipes[0].crop_size, min_scale=pipes[0].scale[0])


# ---- model, optimizer, data ------------------------------------------------------------------
def make_optimizer(model: nn.ModuleDict, spec: Spec, cfg, batch_size: int):
    """The row's optimizer family and settings over the trained modules (not the momentum
    teachers); the lr scaled by batch / 256 where the row scales it."""
    from lightly.models.utils import get_weight_decay_parameters
    from lightly.utils.lars import LARS

    o = {
        k: v
        for k, v in OmegaConf.to_container(cfg.optimizer, resolve=True).items()
        if v is not None
    }
    lr = float(o["lr"]) * (batch_size / 256 if o.get("scale_lr") else 1.0)
    teachers = {target for _, target in spec.momentum}
    trained = [mod for name, mod in model.items() if name not in teachers]
    if o.get("exclude_bias_n_norm"):
        decay, no_decay = get_weight_decay_parameters(trained)
        groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    else:
        groups = [{"params": [p for mod in trained for p in mod.parameters()]}]
    wd, name, momentum = float(o.get("weight_decay", 0.0)), o["name"], o.get("momentum", 0.0)
    if name == "lars":
        eta = o.get("eta", 1e-3)
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=wd, trust_coefficient=eta)
    if name == "sgd":
        nesterov = bool(o.get("nesterov", False))
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=wd, nesterov=nesterov)
    adam = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    betas = tuple(o.get("betas", (0.9, 0.999)))
    return adam(groups, lr=lr, betas=betas, eps=o.get("eps", 1e-8), weight_decay=wd)


class PILImages(torch.utils.data.Dataset):
    """uint8 images as PIL images through a lightly transform: (views, 0), as torchvision's
    datasets give lightly's examples."""

    def __init__(self, images: torch.Tensor, transform):
        from torchvision.transforms.functional import to_pil_image

        self.images = [to_pil_image(img) for img in images]
        self.transform = transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i]), 0


def make_loader(transform, cfg, batches: int, workers: int, device: torch.device):
    """The DataLoader of `batches` batches of the row's synthetic images (plus the workers'
    prefetch: module docstring)."""
    from ssl_bench.data.synthetic import make_synthetic

    batch_size = int(cfg.data.batch_size)
    n = batch_size * (batches + 2 * workers + 1)
    images, _ = make_synthetic(n, image_size=int(cfg.data.image_size))
    return torch.utils.data.DataLoader(
        PILImages(images, transform),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )


def build(cfg, device: torch.device, variant: Variant):
    """(spec, method config, model, criterion) of the row's method, on `device`."""
    from ssl_bench.backbones import create_backbone

    spec = SPECS[cfg.method.name]
    method = OmegaConf.to_container(cfg.method, resolve=True)
    b = OmegaConf.to_container(cfg.backbone, resolve=True)
    backbone = create_backbone(
        b["name"], small_input=b.get("small_input", False), **(b.get("kwargs") or {})
    )
    model = nn.ModuleDict(spec.model(backbone, int(backbone.num_features), method)).to(device)
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return spec, method, model, spec.criterion(method).to(device)


# ---- the loop ---------------------------------------------------------------------------------
def _step(
    spec, model, criterion, optimizer, views, ctx: Ctx, variant, device, mark=None
) -> torch.Tensor:
    """One training step of the loop, as lightly's examples write it. `mark(part)`, if given, is
    called as each part ends: "momentum", "forward", "backward", "optimizer" (bench/phases.py)."""
    mark = mark or (lambda part: None)
    from lightly.models.utils import update_momentum
    from lightly.utils.scheduler import cosine_schedule

    views = [v.to(device, non_blocking=True) for v in views]
    if variant.channels_last:
        views = [v.contiguous(memory_format=torch.channels_last) for v in views]
    if spec.momentum:
        base = ctx.method.get("base_tau", 0.99)
        final = ctx.method.get("final_tau")
        tau = cosine_schedule(ctx.step, ctx.total_steps, base, base if final is None else final)
        for online, target in spec.momentum:
            update_momentum(model[online], model[target], m=tau)
    mark("momentum")
    if spec.before_forward is not None:
        spec.before_forward(model, ctx)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=variant.bf16):
        loss = spec.loss(model, views, criterion, ctx)
    mark("forward")
    loss.backward()
    mark("backward")
    if spec.after_backward is not None:
        spec.after_backward(model, ctx)
    optimizer.step()
    optimizer.zero_grad()
    mark("optimizer")
    return loss.detach()


def run_lightly(
    cfg, variant: Variant, device: torch.device, warmup: int, steps: int, workers: int
) -> dict:
    """lightly's loop of the row `cfg` for `warmup` + `steps` batches: {img_s (dataset images per
    second over the timed steps), loss (the last, a float), peak_mem_mib, view_shapes (of the
    first batch: [(count, size)])}."""
    spec, method, model, criterion = build(cfg, device, variant)
    pipes = parse_pipelines(cfg.augmentation.views, image_size=int(cfg.data.image_size))
    loader = make_loader(make_transform(spec, pipes), cfg, warmup + steps, workers, device)
    optimizer = make_optimizer(model, spec, cfg, int(cfg.data.batch_size))
    ctx = Ctx(step=0, total_steps=warmup + steps, method=method)
    reset_peak_memory(device)
    batches, start, shapes = iter(loader), 0.0, []
    for i in range(warmup + steps):
        views, _ = next(batches)
        shapes = shapes or [tuple(v.shape) for v in views]
        ctx.step = i
        loss = _step(spec, model, criterion, optimizer, views, ctx, variant, device)
        if i == warmup - 1:
            sync(device)
            start = time.perf_counter()
    sync(device)
    elapsed = time.perf_counter() - start
    del batches  # ends the workers
    return {
        "img_s": int(cfg.data.batch_size) * steps / elapsed,
        "loss": float(loss),
        "peak_mem_mib": peak_memory_mib(device),
        "view_shapes": shapes,
    }
