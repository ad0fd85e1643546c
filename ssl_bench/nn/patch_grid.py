"""CPC's overlapping patch grid and its patch-level augmentation (Henaff et al. 2020, sec. 2.1 and
4.1).

The image is cut into a G x G grid of overlapping square patches at half-patch stride: CPC's 256 px
images give a 7x7 grid of 64 px patches with 32 px overlap (van den Oord et al. 2018, sec. 3.2;
Henaff et al. 2020, fig. 2). `grid_geometry` keeps these proportions for any size (patch = size / 4,
stride = patch / 2: 8 px patches at stride 4 on 32 px images, 16/8 on 64 px, 24/12 on 96 px - always
7x7), or takes explicit values. At half-patch stride a patch shares half its pixels with the patch
one row below and borders the one two rows below; CPC v2's loss predicts 3 rows ahead
(methods/cpc_v2.py), half a patch clear of its context's pixels.

Patches are a flat batch [B*G*G, C, p, p] in (image, row, column) order, so one backbone call
encodes them. `PatchAugment` augments each patch independently, batched (no loop over patches): the
paper's colour dropping (two of the three channels removed per patch, sec. 4.1 "Patch-based
augmentation"), horizontal flips, spatial transformations (rotation, shear, uniform scaling,
translation; one affine resample) and colour transformations (brightness, contrast, saturation, hue,
with the batched ops of views/kernels.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssl_bench.views.kernels import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    sample_uniform,
)


def grid_geometry(
    image_size: int, patch_size: int | None = None, stride: int | None = None
) -> tuple[int, int, int]:
    """(patch, stride, grid side G) for square images of `image_size` px; a ValueError if they do
    not fit."""
    patch = int(patch_size) if patch_size else max(1, image_size // 4)
    stride = int(stride) if stride else max(1, patch // 2)
    if patch > image_size or patch < 1 or stride < 1:
        raise ValueError(
            f"a {patch} px patch at stride {stride} does not fit a {image_size} px image"
        )
    grid = (image_size - patch) // stride + 1
    if grid < 2:
        raise ValueError(
            f"a {patch} px patch at stride {stride} gives a {grid}x{grid} grid on {image_size} px "
            "images; CPC needs at least 2 rows"
        )
    return patch, stride, grid


def cut_patches(x: torch.Tensor, patch: int, stride: int) -> tuple[torch.Tensor, int]:
    """[B, C, H, W] -> ([B*G*G, C, patch, patch] in (image, row, column) order, G). Pixels past the
    last full patch are not used."""
    B, C, H, W = x.shape
    if H != W:
        raise ValueError(f"cut_patches expects square images, got {H}x{W}")
    g = (H - patch) // stride + 1
    tiles = x.unfold(2, patch, stride).unfold(3, patch, stride)  # B x C x G x G x p x p
    return tiles.permute(0, 2, 3, 1, 4, 5).reshape(B * g * g, C, patch, patch), g


class PatchAugment(nn.Module):
    """Independent random augmentation of every patch; input and output normalised with `mean` /
    `std`.

    Amounts: `rotate` and `shear` in degrees (uniform in [-a, a]), `scale` a [low, high] range of
    the zoom, `translate` a fraction of the patch side, colour amounts as in torchvision's
    ColorJitter (factor uniform in [1 - a, 1 + a]; hue shift in [-a, a]). `color_drop` is the
    probability that a patch keeps one random channel and loses the other two (set to 0, the dataset
    mean).
    """

    def __init__(
        self,
        color_drop: float = 1.0,
        hflip: float = 0.5,
        rotate: float = 0.0,
        shear: float = 0.0,
        scale: Sequence[float] = (1.0, 1.0),
        translate: float = 0.0,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        hue: float = 0.0,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
    ):
        super().__init__()
        for name, p in (("color_drop", color_drop), ("hflip", hflip)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"patch_augment.{name}: probability {p} is outside [0, 1]")
        if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
            raise ValueError(f"patch_augment.scale: {list(scale)} is not a range 0 < low <= high")
        if min(rotate, shear, translate, brightness, contrast, saturation, hue) < 0 or hue > 0.5:
            raise ValueError("patch_augment: amounts must be >= 0 (hue <= 0.5)")
        self.color_drop, self.hflip = float(color_drop), float(hflip)
        self.rotate, self.shear, self.scale, self.translate = (
            float(rotate),
            float(shear),
            tuple(scale),
            float(translate),
        )
        self.jitter = {
            "brightness": brightness,
            "contrast": contrast,
            "saturation": saturation,
            "hue": hue,
        }
        self.register_buffer(
            "mean", torch.tensor(list(mean), dtype=torch.float32).reshape(1, -1, 1, 1)
        )
        self.register_buffer(
            "std", torch.tensor(list(std), dtype=torch.float32).reshape(1, -1, 1, 1)
        )

    @torch.no_grad()
    def set_stats(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean.copy_(torch.as_tensor(list(mean), dtype=torch.float32).reshape(1, -1, 1, 1))
        self.std.copy_(torch.as_tensor(list(std), dtype=torch.float32).reshape(1, -1, 1, 1))

    @property
    def _spatial(self) -> bool:
        return self.rotate > 0 or self.shear > 0 or self.scale != (1.0, 1.0) or self.translate > 0

    @torch.no_grad()
    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        n, c = patches.shape[:2]
        dev = patches.device
        x = patches.float() * self.std + self.mean  # back to [0, 1] RGB
        if self._spatial or self.hflip > 0:
            x = self._affine(x, n, dev)
        if any(a > 0 for a in self.jitter.values()):
            x = x.clamp(0, 1)
            b, k, s, h = (
                self.jitter[key] for key in ("brightness", "contrast", "saturation", "hue")
            )
            if b > 0:
                x = adjust_brightness(x, sample_uniform(n, max(0.0, 1 - b), 1 + b, dev))
            if k > 0:
                x = adjust_contrast(x, sample_uniform(n, max(0.0, 1 - k), 1 + k, dev))
            if s > 0 and c == 3:
                x = adjust_saturation(x, sample_uniform(n, max(0.0, 1 - s), 1 + s, dev))
            if h > 0 and c == 3:
                x = adjust_hue(x, sample_uniform(n, -h, h, dev))
        x = (x - self.mean) / self.std
        if self.color_drop > 0 and c > 1:
            keep = torch.randint(0, c, (n,), device=dev)  # the surviving channel
            drop = torch.rand(n, device=dev) < self.color_drop
            mask = F.one_hot(keep, c).to(x.dtype) + (~drop).to(x.dtype).unsqueeze(
                1
            )  # n x c: 1 = keep
            x = x * mask.clamp(max=1).reshape(n, c, 1, 1)
        return x.to(patches.dtype)

    def _affine(self, x: torch.Tensor, n: int, dev) -> torch.Tensor:
        """One bilinear resample per patch: flip, rotation, shear, zoom and shift (reflection at the
        border)."""
        rot = sample_uniform(n, -self.rotate, self.rotate, dev) * (math.pi / 180)
        shear = torch.tan(sample_uniform(n, -self.shear, self.shear, dev) * (math.pi / 180))
        zoom = sample_uniform(n, self.scale[0], self.scale[1], dev)
        flip = torch.where(torch.rand(n, device=dev) < self.hflip, -1.0, 1.0)
        cos, sin = torch.cos(rot), torch.sin(rot)
        # output -> input sampling map A = R(rot) @ Shear @ diag(flip, 1) / zoom, plus a shift t
        a = torch.stack(
            [torch.stack([cos, cos * shear - sin], -1), torch.stack([sin, sin * shear + cos], -1)],
            1,
        )
        a = a * torch.stack([flip, torch.ones_like(flip)], -1).unsqueeze(1) / zoom.reshape(n, 1, 1)
        shift = sample_uniform(2 * n, -2 * self.translate, 2 * self.translate, dev).reshape(
            n, 2, 1
        )  # [-1, 1] coords
        theta = torch.cat([a, shift], dim=2)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(
            x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
        )
