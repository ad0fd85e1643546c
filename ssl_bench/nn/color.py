"""sRGB -> CIE L*a*b* in torch, and the channel split CMC's encoders see (Tian et al. 2020, sec.
4.1).

`rgb_to_lab` follows the standard definition (IEC 61966-2-1 sRGB, D65 white, CIE 1976 L*a*b*), the
same formulas as scikit-image's `rgb2lab`: undo the sRGB gamma, map linear RGB to XYZ, divide by the
white point, apply f(t) = t^(1/3) above (6/29)^3 and its linear continuation below, then L = 116
f(Y) - 16, a = 500 (f(X) - f(Y)), b = 200 (f(Y) - f(Z)).

`ColorSplit` turns a batch as the data module delivers it (RGB normalised with the dataset mean/std)
back into [0, 1] RGB, converts it to Lab and rescales each channel to about [-1, 1] with the range
Lab takes over the sRGB gamut (the centring and scaling of the official CMC code), then cuts the
channel groups of the views, e.g. [["L"], ["a", "b"]].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# linear sRGB -> XYZ (D65), rows X, Y, Z (IEC 61966-2-1)
_RGB_TO_XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_WHITE_D65 = (0.95047, 1.0, 1.08883)
_DELTA = 6.0 / 29.0

#: (min, max) of each Lab channel over the sRGB cube: L of black / white, a of green / magenta,
#: b of blue / yellow. The official CMC code normalises with these (centre, half-range).
LAB_RANGES = {"L": (0.0, 100.0), "a": (-86.183, 98.233), "b": (-107.857, 94.478)}
CHANNELS = ("L", "a", "b")


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1], channels at dim -3 ([..., 3, H, W]) -> L*a*b* (L in [0, 100]), same shape,
    float32."""
    if rgb.shape[-3] != 3:
        raise ValueError(f"rgb_to_lab expects 3 channels at dim -3, got shape {tuple(rgb.shape)}")
    x = rgb.float().clamp(0.0, 1.0)
    # undo the sRGB gamma
    linear = torch.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)
    m = torch.tensor(_RGB_TO_XYZ, dtype=x.dtype, device=x.device)
    white = torch.tensor(_WHITE_D65, dtype=x.dtype, device=x.device)
    xyz = torch.einsum("ij,...jhw->...ihw", m, linear) / white.reshape(3, 1, 1)
    f = torch.where(
        xyz > _DELTA**3, xyz.clamp(min=1e-12) ** (1.0 / 3.0), xyz / (3 * _DELTA**2) + 4.0 / 29.0
    )
    fx, fy, fz = f.unbind(dim=-3)
    return torch.stack((116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)), dim=-3)


def normalize_lab(lab: torch.Tensor) -> torch.Tensor:
    """Each Lab channel mapped from its sRGB-gamut range to [-1, 1]."""
    lo = torch.tensor(
        [LAB_RANGES[c][0] for c in CHANNELS], dtype=lab.dtype, device=lab.device
    ).reshape(3, 1, 1)
    hi = torch.tensor(
        [LAB_RANGES[c][1] for c in CHANNELS], dtype=lab.dtype, device=lab.device
    ).reshape(3, 1, 1)
    return (lab - (lo + hi) / 2) / ((hi - lo) / 2)


def parse_channel_groups(
    groups: Sequence[Sequence[str]], key: str = "method.views"
) -> list[list[int]]:
    """[["L"], ["a", "b"]] -> [[0], [1, 2]]; a ValueError naming the bad entry otherwise (callers
    wrap it)."""
    if isinstance(groups, str) or len(groups) < 2:
        raise ValueError(
            f"{key} needs at least two channel groups, got {groups!r}; e.g. [[L], [a, b]]"
        )
    out = []
    for g in groups:
        names = [g] if isinstance(g, str) else list(g)
        if not names or any(n not in CHANNELS for n in names):
            raise ValueError(f"{key}: group {g!r} must list channels among {', '.join(CHANNELS)}")
        out.append([CHANNELS.index(n) for n in names])
    return out


class ColorSplit(nn.Module):
    """Normalised RGB [B, 3, H, W] -> one normalised-Lab tensor per channel group ([B, len(group),
    H, W]).

    `mean` / `std` are the data module's normalisation; they are buffers (saved in checkpoints), so
    that a restored model converts evaluation images exactly as in training. `set_stats` sets them
    from the data.
    """

    def __init__(
        self,
        groups: Sequence[Sequence[int]],
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
    ):
        super().__init__()
        self.groups = [list(g) for g in groups]
        self.register_buffer("mean", torch.zeros(1, 3, 1, 1))
        self.register_buffer("std", torch.ones(1, 3, 1, 1))
        self.set_stats(mean, std)

    @torch.no_grad()
    def set_stats(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean.copy_(torch.as_tensor(list(mean), dtype=torch.float32).reshape(1, 3, 1, 1))
        self.std.copy_(torch.as_tensor(list(std), dtype=torch.float32).reshape(1, 3, 1, 1))

    def lab(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised RGB -> normalised Lab [B, 3, H, W] (no gradient is needed through the
        input)."""
        return normalize_lab(rgb_to_lab(x.float() * self.std + self.mean))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        lab = self.lab(x)
        return [lab[:, g] for g in self.groups]
