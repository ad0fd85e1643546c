"""Batched functional ops of the views: x float [B, C, H, W] in [0, 1], per-sample parameters [B].

Each op follows the formula of `torchvision.transforms.v2.functional` (tests/views compare them) but
takes one parameter per image, so a whole batch is augmented in one call. The samplers draw those
parameters from a given `torch.Generator` (`sample_crop_boxes`: RandomResizedCrop's boxes;
`sample_uniform`: amounts in a range). Used by `views.batch.BatchViews` and by CPC's patch
augmentation (`nn.patch_grid`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# ITU-R 601-2 luma weights, as torchvision uses them.
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


# ---- sampling ------------------------------------------------------------------------------------
def sample_uniform(
    n: int, lo: float, hi: float, device=None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """n floats uniform in [lo, hi) from `generator` (None: torch's global generator)."""
    return torch.rand(n, generator=generator, device=device).mul_(hi - lo).add_(lo)


def sample_crop_boxes(
    B: int,
    H: int,
    W: int,
    scale=(0.08, 1.0),
    ratio=(3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    device=None,
    attempts: int = 10,
) -> torch.Tensor:
    """RandomResizedCrop boxes for B images of size HxW: float [B, 4] = (top, left, height, width).

    torchvision's algorithm, vectorised: `attempts` candidates per sample (area fraction uniform in
    `scale`, aspect ratio log-uniform in `ratio`, sides rounded); the first that fits is kept, at a
    uniformly random integer position; samples with none fall back to the central crop clipped to
    the ratio range.
    """
    kw = dict(generator=generator, device=device)
    area = float(H * W)
    frac = torch.rand(B, attempts, **kw).mul_(scale[1] - scale[0]).add_(scale[0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.rand(B, attempts, **kw).mul_(log_hi - log_lo).add_(log_lo).exp_()
    target = frac * area
    w = torch.sqrt(target * aspect).round_()
    h = torch.sqrt(target / aspect).round_()
    ok = (w > 0) & (w <= W) & (h > 0) & (h <= H)
    first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)  # index of the first valid candidate
    found = ok.any(dim=1)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)

    # Central-crop fallback (same as torchvision).
    in_ratio = W / H
    if in_ratio < min(ratio):
        fw, fh = W, int(round(W / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(H * max(ratio))), H
    else:
        fw, fh = W, H
    h = torch.where(found, h, torch.full_like(h, fh))
    w = torch.where(found, w, torch.full_like(w, fw))
    u = torch.rand(B, 2, **kw)
    top = torch.floor(u[:, 0] * (H - h + 1)).clamp_(max=H - h)
    left = torch.floor(u[:, 1] * (W - w + 1)).clamp_(max=W - w)
    top = torch.where(found, top, torch.full_like(top, (H - fh) // 2))
    left = torch.where(found, left, torch.full_like(left, (W - fw) // 2))
    return torch.stack((top, left, h, w), dim=1)


# ---- geometry ------------------------------------------------------------------------------------
def resized_crop(
    x: torch.Tensor, boxes: torch.Tensor, size: int, flip: torch.Tensor | None = None
) -> torch.Tensor:
    """Crop each image to its box (top, left, height, width), resize to size x size, flip at `flip`.

    One bilinear `grid_sample` (align_corners=False). Output pixel j samples input column
    `left + (j + 0.5) * width / size - 0.5`, exactly as `resize(crop(img), antialias=False)` does,
    so it equals torchvision's `resized_crop` wherever that coordinate stays inside the box
    (everywhere for down-scaling crops); at the border of an up-scaled box we read the true
    neighbour pixel instead of repeating the box edge.
    """
    B, _, H, W = x.shape
    boxes = boxes.to(device=x.device, dtype=torch.float32)
    top, left, h, w = boxes.unbind(1)
    t = (torch.arange(size, device=x.device, dtype=torch.float32) + 0.5) / size  # [S]
    # pixel coordinate -> grid_sample's normalised coordinate: g = (2p + 1) / W - 1
    gx = (2 * left[:, None] + 2 * t * w[:, None]) / W - 1  # [B, S]
    gy = (2 * top[:, None] + 2 * t * h[:, None]) / H - 1
    if flip is not None:
        gx = torch.where(flip.to(x.device).reshape(-1, 1), gx.flip(1), gx)
    grid = torch.stack(
        (gx[:, None, :].expand(B, size, size), gy[:, :, None].expand(B, size, size)), dim=-1
    )
    return F.grid_sample(
        x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=False
    )


# ---- colour --------------------------------------------------------------------------------------
def _per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """[B] parameter -> [B, 1, 1, 1] on x's device and dtype."""
    return torch.as_tensor(v, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma [B, 1, H, W]."""
    r, g, b = x.unbind(dim=1)
    return (r * _GRAY_WEIGHTS[0] + g * _GRAY_WEIGHTS[1] + b * _GRAY_WEIGHTS[2]).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    f = _per_sample(f, x)
    return (x * f + other * (1 - f)).clamp_(0, 1)


def adjust_brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (x * _per_sample(f, x)).clamp_(0, 1)


def adjust_contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(x, mean, f)


def adjust_saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, _gray(x), f)


def adjust_hue(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Shift hue by h (fraction of a turn, in [-0.5, 0.5]) through RGB -> HSV -> RGB."""
    r, g, b = x.unbind(dim=1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    chroma = maxc - minc
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    # Hue in sextants [0, 6): which channel is the max picks the formula (r first, then g, then b).
    hue = torch.where(
        maxc == r,
        (g - b) / safe,
        torch.where(maxc == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    hue = torch.where(chroma > 0, hue, torch.zeros_like(hue))
    hue = torch.remainder(hue / 6.0 + _per_sample(h, x).squeeze(1), 1.0) * 6.0  # [B, H, W]
    # HSV -> RGB via channel_n = v - c * clamp(min(k, 4 - k), 0, 1), k = (n + hue) mod 6,
    # n = 5, 3, 1, with v = max and c = v * s = chroma.
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).reshape(1, 3, 1, 1)
    k = torch.remainder(n + hue.unsqueeze(1), 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0, 1)
    return (maxc.unsqueeze(1) - chroma.unsqueeze(1) * ramp).clamp_(0, 1)


def to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma repeated over 3 channels (contiguous)."""
    g = _gray(x)
    return g.expand(-1, 3, -1, -1).contiguous()


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Per-sample Gaussian blur (one sigma in x and y), reflect padding, separable grouped convs."""
    if kernel_size % 2 == 0 or kernel_size < 1:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    B, C, H, W = x.shape
    half = kernel_size // 2
    d = torch.arange(kernel_size, device=x.device, dtype=x.dtype) - half
    sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype).reshape(-1, 1)
    kernel = torch.exp(-0.5 * (d / sigma) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # [B, k]
    kernel = kernel.repeat_interleave(C, dim=0)  # [B*C, k]
    y = F.pad(x, (half, half, half, half), mode="reflect").reshape(
        1, B * C, H + 2 * half, W + 2 * half
    )
    y = F.conv2d(y, kernel.reshape(B * C, 1, kernel_size, 1), groups=B * C)
    y = F.conv2d(y, kernel.reshape(B * C, 1, 1, kernel_size), groups=B * C)
    return y.reshape(B, C, H, W)


def solarize(x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    return torch.where(x >= threshold, 1.0 - x, x)
