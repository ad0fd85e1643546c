"""Views made on the device: a whole uint8 batch `[B, C, H, W]` in, normalised float views out.

`BatchViews` draws every random parameter of a view up front from a private generator on the batch's
device (checkpointed with the run, so a resumed run draws the same views) and applies the ops of
`views.kernels` to the rows they fall on. `BatchEval` is the un-augmented transform of the kNN bank,
the probe and the test set. The data module (ssl_bench.data.module) applies both after the batch is
transferred, for in-memory datasets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ssl_bench.views.config import ViewPipeline
from ssl_bench.views.kernels import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    gaussian_blur,
    resized_crop,
    sample_crop_boxes,
    sample_uniform,
    solarize,
    to_grayscale,
)


class BatchViews(torch.nn.Module):
    """K random views of a uint8 batch `[B, C, H, W]`, computed on the batch's device.

    Randomness comes from a private `torch.Generator` on the images' device, created lazily and
    seeded with `seed` (pass seed + rank so DDP ranks differ). Checkpoint it with `rng_state()` /
    `set_rng_state()`. Single-channel input is repeated to 3 channels.
    """

    def __init__(
        self,
        pipelines: Sequence[ViewPipeline],
        mean: Sequence[float],
        std: Sequence[float],
        seed: int = 0,
    ):
        super().__init__()
        if not pipelines:
            raise ValueError("BatchViews needs at least one ViewPipeline")
        self.pipelines = list(pipelines)
        self.seed = int(seed)
        self.register_buffer("mean", _channel_vector(mean), persistent=False)
        self.register_buffer("std", _channel_vector(std), persistent=False)
        self._gen: torch.Generator | None = None
        self._pending_state: torch.Tensor | None = None

    @property
    def num_views(self) -> int:
        return sum(p.num_crops for p in self.pipelines)

    # ---- randomness ------------------------------------------------------------------------------
    def _generator(self, device: torch.device) -> torch.Generator:
        if self._gen is None or self._gen.device != device:
            gen = torch.Generator(device=device)
            gen.manual_seed(self.seed)
            if self._pending_state is not None:
                gen.set_state(self._pending_state)
                self._pending_state = None
            self._gen = gen
        return self._gen

    def rng_state(self) -> torch.Tensor:
        """The generator's state (CPU uint8 tensor); empty if no batch was drawn since seeding."""
        if self._gen is None:
            if self._pending_state is not None:
                return self._pending_state.clone()
            return torch.empty(0, dtype=torch.uint8)
        return self._gen.get_state()

    def set_rng_state(self, state: torch.Tensor) -> None:
        """Restore a state from `rng_state()`; the next batch is then drawn exactly as it was."""
        state = torch.as_tensor(state, dtype=torch.uint8).cpu()
        if state.numel() == 0:
            self._gen, self._pending_state = None, None
        elif self._gen is None:
            self._pending_state = state.clone()
        else:
            self._gen.set_state(state)

    def reseed(self, seed: int) -> None:
        self.seed = int(seed)
        self._gen, self._pending_state = None, None

    # ---- forward ---------------------------------------------------------------------------------
    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """uint8 [B, C, H, W] -> sum(num_crops) float32 views [B, C, crop, crop], pipeline order."""
        if images.ndim != 4:
            raise ValueError(
                f"BatchViews expects images [B, C, H, W], got shape {tuple(images.shape)}"
            )
        x = _float_rgb(images)
        gen = self._generator(x.device)
        mean = self.mean.to(x.device)
        std = self.std.to(x.device)
        views = []
        for pipe in self.pipelines:
            for _ in range(pipe.num_crops):
                v = self._view(x, pipe, gen)
                views.append(v.sub_(mean).div_(std).contiguous())
        return views

    def _view(self, x: torch.Tensor, p: ViewPipeline, gen: torch.Generator) -> torch.Tensor:
        B, _, H, W = x.shape
        dev = x.device
        # All random numbers of a view are drawn up front, a fixed count whatever the outcome, so
        # the stream (and hence checkpoints) does not depend on which branches ran.
        boxes = sample_crop_boxes(B, H, W, p.scale, p.ratio, gen, dev)
        coins = torch.rand(B, 5, generator=gen, device=dev)  # flip, jitter, gray, blur, solarize
        jitter_f = torch.stack(
            [
                sample_uniform(B, max(0.0, 1 - p.brightness), 1 + p.brightness, dev, gen),
                sample_uniform(B, max(0.0, 1 - p.contrast), 1 + p.contrast, dev, gen),
                sample_uniform(B, max(0.0, 1 - p.saturation), 1 + p.saturation, dev, gen),
                sample_uniform(B, -p.hue, p.hue, dev, gen),
            ]
        )
        order = torch.rand(B, 4, generator=gen, device=dev).argsort(dim=1)  # per-sample op order
        sigma = sample_uniform(B, p.blur_sigma[0], p.blur_sigma[1], dev, gen)

        v = resized_crop(x, boxes, p.crop_size, flip=coins[:, 0] < p.hflip)

        if p.jitter_prob > 0:
            v = self._color_jitter(v, p, coins[:, 1] < p.jitter_prob, jitter_f, order)
        if p.grayscale > 0:
            v = _apply_rows(v, coins[:, 2] < p.grayscale, to_grayscale)
        if p.blur_prob > 0:
            k = p.kernel_size
            v = _apply_rows(
                v, coins[:, 3] < p.blur_prob, lambda t, s: gaussian_blur(t, s, k), sigma
            )
        if p.solarize > 0:
            v = _apply_rows(v, coins[:, 4] < p.solarize, solarize)
        return v

    @staticmethod
    def _color_jitter(v, p: ViewPipeline, apply, factors, order):
        ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
        # An amount of 0 disables that op, as in torchvision (which skips it).
        enabled = (p.brightness > 0, p.contrast > 0, p.saturation > 0, p.hue > 0)
        for slot in range(4):
            for op_id, op in enumerate(ops):
                if enabled[op_id]:
                    v = _apply_rows(v, apply & (order[:, slot] == op_id), op, factors[op_id])
        return v


class BatchEval(torch.nn.Module):
    """Un-augmented eval transform for in-memory batches: uint8 -> float, resize to `size` if
    different (bilinear, antialias), normalise. Single-channel input is repeated to 3 channels."""

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.size = int(size)
        self.register_buffer("mean", _channel_vector(mean), persistent=False)
        self.register_buffer("std", _channel_vector(std), persistent=False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = _float_rgb(images)
        if tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(
                x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
            )
        return ((x - self.mean.to(x.device)) / self.std.to(x.device)).contiguous()


# ---- helpers -------------------------------------------------------------------------------------
def _apply_rows_indexed(
    x: torch.Tensor, mask: torch.Tensor, fn: Callable, *params: torch.Tensor
) -> torch.Tensor:
    """Compute fn only on the selected rows (gather, op, scatter into x in place). Best on CPU."""
    idx = mask.nonzero().squeeze(1)
    n = idx.numel()
    if n == 0:
        return x
    if n == x.shape[0]:
        return fn(x, *params)
    return x.index_copy_(
        0, idx, fn(x.index_select(0, idx), *(p.index_select(0, idx) for p in params))
    )


def _apply_rows_where(
    x: torch.Tensor, mask: torch.Tensor, fn: Callable, *params: torch.Tensor
) -> torch.Tensor:
    """fn on the whole batch, rows picked with torch.where: no host sync. Best on accelerators."""
    return torch.where(mask.reshape(-1, 1, 1, 1), fn(x, *params), x)


def _apply_rows(
    x: torch.Tensor, mask: torch.Tensor, fn: Callable, *params: torch.Tensor
) -> torch.Tensor:
    """x with fn(rows, *params[rows]) in the rows where `mask` holds; x itself may be overwritten.

    On CPU only the selected rows are computed; on accelerators the op runs on the whole batch and
    `torch.where` selects, which avoids a device->host sync (`nonzero`) per op.
    """
    if x.device.type == "cpu":
        return _apply_rows_indexed(x, mask, fn, *params)
    return _apply_rows_where(x, mask, fn, *params)


def _float_rgb(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1] (other dtypes: float32 as they are); 1 channel -> 3."""
    x = (
        images.to(torch.float32).div_(255.0)
        if images.dtype == torch.uint8
        else images.to(torch.float32)
    )
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _channel_vector(values: Sequence[float]) -> torch.Tensor:
    """Per-channel constants (mean, std) shaped [1, C, 1, 1] to broadcast over a batch."""
    return torch.tensor(list(values), dtype=torch.float32).reshape(1, -1, 1, 1)
