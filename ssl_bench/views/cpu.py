"""Views made per sample on CPU (torchvision.transforms.v2), in DataLoader workers.

For image folders, whose images differ in size and are decoded one by one: the same `ViewPipeline`s
as `views.batch.BatchViews`, built from torchvision's transforms, and the evaluation transform
(resize, centre crop, normalise). The data module uses them when device views are off.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ssl_bench.views.config import ViewPipeline


class CpuViews:
    """Per-item views: image (uint8 CHW tensor or PIL) -> list of sum(num_crops) float tensors.

    A plain class (not a closure) so DataLoader workers can pickle it."""

    def __init__(self, pipelines: Sequence[ViewPipeline], mean, std):
        self.pipelines = list(pipelines)
        self.transforms = [(_v2_pipeline(p, mean, std), p.num_crops) for p in self.pipelines]

    def __call__(self, image) -> list[torch.Tensor]:
        return [t(image) for t, n in self.transforms for _ in range(n)]

    def __repr__(self) -> str:
        return f"CpuViews({self.pipelines})"


def build_cpu_views(
    pipelines: Sequence[ViewPipeline], mean, std
) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    return CpuViews(pipelines, mean, std)


def cpu_eval_transform(size: int, mean, std) -> Callable[[torch.Tensor], torch.Tensor]:
    """Resize the shorter side to round(size / 0.875) (to `size` when size <= 64), centre crop,
    float, normalise."""
    from torchvision.transforms import v2

    resize = size if size <= 64 else int(round(size / 0.875))
    return v2.Compose(
        [
            v2.ToImage(),
            _to_rgb(),
            v2.Resize(resize, antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mean), list(std)),
            v2.ToPureTensor(),
        ]
    )


def _v2_pipeline(p: ViewPipeline, mean, std):
    """One pipeline as a torchvision v2 Compose, in BatchViews' order of ops."""
    from torchvision.transforms import v2

    steps = [
        v2.ToImage(),
        _to_rgb(),
        v2.RandomResizedCrop(p.crop_size, scale=p.scale, ratio=p.ratio, antialias=True),
        v2.RandomHorizontalFlip(p.hflip),
        # colour ops in float on the (small) crop, like BatchViews
        v2.ToDtype(torch.float32, scale=True),
    ]
    if p.jitter_prob > 0 and (p.brightness or p.contrast or p.saturation or p.hue):
        jitter = v2.ColorJitter(p.brightness, p.contrast, p.saturation, p.hue)
        steps.append(v2.RandomApply([jitter], p=p.jitter_prob))
    if p.grayscale > 0:
        steps.append(v2.RandomGrayscale(p.grayscale))  # keeps 3 channels
    if p.blur_prob > 0:
        blur = v2.GaussianBlur(p.kernel_size, sigma=p.blur_sigma)
        steps.append(v2.RandomApply([blur], p=p.blur_prob))
    if p.solarize > 0:
        steps.append(v2.RandomSolarize(0.5, p=p.solarize))
    steps += [v2.Normalize(list(mean), list(std)), v2.ToPureTensor()]
    return v2.Compose(steps)


def _to_rgb():
    from torchvision.transforms import v2

    return v2.RGB() if hasattr(v2, "RGB") else _RepeatToRGB()


class _RepeatToRGB:
    """Single-channel image -> 3 channels (stand-in for v2.RGB, which torchvision < 0.19 lacks)."""

    def __call__(self, image):
        return image.repeat(3, 1, 1) if image.shape[-3] == 1 else image
