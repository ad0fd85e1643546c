"""Synthetic shapes: a tiny offline dataset whose classes survive SSL augmentations.

Each class is a SHAPE or TEXTURE (disk, ring, square outline, filled square, triangle, plus, X,
horizontal stripes, vertical stripes, checkerboard, dots, diagonal stripes), drawn

- large (40-80% of the image side), at a random position and a small random rotation (+-17 deg),
  so a random resized crop with scale >= 0.2 still shows a recognisable part of it;
- as a light near-grey shape on a dark near-grey background, each with a faint random tint, so
  colour carries no class information, grayscale still shows the shape, and instance
  discrimination cannot be solved by colour alone;
- over clutter: a random per-channel linear gradient, a few small random blobs and pixel noise.

Because position, size, rotation, tint and clutter vary, a linear model or nearest centroid on raw
pixels stays around 30% (10 classes), while a conv net (trained, or through SSL) separates the
classes from edges and texture. Everything is vectorised with torch and deterministic given `seed`;
rendering is chunked so memory stays bounded at any size (10k images of 32 px take well under a
second on one core).

`palette="colour"` draws the same shapes in strong colours instead, for methods whose views split
colour channels (CMC's L vs ab): shape and background differ both in lightness and in chroma, each
by a random amount with a floor, with the shape light on dark or dark on light at random and the two
hues roughly opposite. Lightness and hue are drawn independently, so the only thing an L view and an
ab view of one image share is the geometry - the class - while a grey image (a/b = 0) would leave
the ab view blank.
"""

from __future__ import annotations

import math

import torch

from ssl_bench.errors import ConfigError

#: Class names in label order; `num_classes=k` uses the first k.
SHAPES: tuple[str, ...] = (
    "disk",
    "ring",
    "square_outline",
    "filled_square",
    "triangle",
    "plus",
    "cross",
    "horizontal_stripes",
    "vertical_stripes",
    "checkerboard",
    "dots",
    "diagonal_stripes",
)

_TINT = 0.12  # largest per-channel colour offset from grey
PALETTES = ("grey", "colour")
# Two orthonormal RGB directions that keep the luma 0.2126 R + 0.7152 G + 0.0722 B: adding c * (cos
# h * _CHROMA_U + sin h * _CHROMA_V) to a grey level sets hue angle h and chroma c and leaves the
# lightness (nearly: sRGB is not linear) where it was.
_LUMA = torch.tensor([0.2126, 0.7152, 0.0722])
_CHROMA_U = torch.tensor([1.0, 0.0, -0.2126 / 0.0722])
_CHROMA_U = _CHROMA_U / _CHROMA_U.norm()
_CHROMA_V = torch.linalg.cross(_LUMA, _CHROMA_U)
_CHROMA_V = _CHROMA_V / _CHROMA_V.norm()
_PIXELS_PER_CHUNK = 1 << 22  # ~16 MB per float plane; bounds peak memory at any n / image_size


def _check_args(n, num_classes, image_size, palette) -> None:
    """A ConfigError naming the data key for a value make_synthetic cannot draw."""
    if not isinstance(n, int) or n < 1:
        raise ConfigError(
            "data.n_train",
            f"needs a positive number of images, got {n!r}.",
            "set e.g. data.n_train=5000.",
        )
    if not isinstance(num_classes, int) or not 2 <= num_classes <= len(SHAPES):
        raise ConfigError(
            "data.num_classes",
            f"the synthetic data has {len(SHAPES)} shape classes, got num_classes={num_classes!r}.",
            f"pick 2..{len(SHAPES)} (classes in order: {', '.join(SHAPES)}).",
        )
    if not isinstance(image_size, int) or image_size < 8:
        raise ConfigError(
            "data.image_size",
            f"synthetic images need a side of at least 8 px, got {image_size!r}.",
            "set e.g. data.image_size=32.",
        )

    if palette not in PALETTES:
        raise ConfigError(
            "data.options.palette",
            f"must be one of {', '.join(PALETTES)}, got {palette!r}.",
            "use grey (the default) or colour (for colour-split views such as CMC's L vs ab).",
        )


def _draw_params(n: int, num_classes: int, palette: str, g: torch.Generator) -> dict:
    """Every per-image parameter, drawn up front so the images do not depend on chunking."""

    # Per-image parameters, all drawn up front so the result does not depend on chunking.
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
    # Coordinates run over [-1, 1] (image side = 2): a half size of 0.4-0.8 spans 40-80% of the
    # side.
    half = 0.4 + 0.4 * torch.rand(n, generator=g)
    cx = (torch.rand(n, generator=g) * 2 - 1) * (1 - half)
    cy = (torch.rand(n, generator=g) * 2 - 1) * (1 - half)
    angle = (torch.rand(n, generator=g) * 2 - 1) * 0.3
    phase = torch.rand(n, 2, generator=g)  # texture phase (where stripes / checks start)
    # Near-grey colours: a light shape (luminance 0.75-1) on a dark background (0-0.25), each with a
    # faint random tint. Colour and brightness are nuisances here, but they are kept in narrow
    # bands: freely random colours (or luminances) identify an image across two views by themselves,
    # and instance discrimination then never needs the shape (measured: SimCLR's kNN stayed at its
    # random-init level with random colours, and rose from 25% to 51% in two epochs with these).
    lum_bg = 0.25 * torch.rand(n, generator=g)
    lum_fg = 0.75 + 0.25 * torch.rand(n, generator=g)
    tint = (torch.rand(n, 2, 3, generator=g) * 2 - 1) * _TINT
    bg = (lum_bg[:, None] + tint[:, 0]).clamp(0, 1)
    fg = (lum_fg[:, None] + tint[:, 1]).clamp(0, 1)
    if palette == "colour":
        bg, fg = _colour_pair(n, g)
    grad_dir = torch.rand(n, generator=g) * 2 * math.pi
    grad_amp = (torch.rand(n, 3, generator=g) * 2 - 1) * 0.15
    n_blobs = 3
    blob_xy = torch.rand(n, n_blobs, 2, generator=g) * 2 - 1
    blob_r = 0.08 + 0.10 * torch.rand(n, n_blobs, generator=g)
    blob_rgb = (
        torch.rand(n, n_blobs, 1, generator=g)
        + (torch.rand(n, n_blobs, 3, generator=g) * 2 - 1) * _TINT
    ).clamp(0, 1)
    return dict(
        labels=labels,
        half=half,
        cx=cx,
        cy=cy,
        angle=angle,
        phase=phase,
        bg=bg,
        fg=fg,
        grad_dir=grad_dir,
        grad_amp=grad_amp,
        n_blobs=n_blobs,
        blob_xy=blob_xy,
        blob_r=blob_r,
        blob_rgb=blob_rgb,
    )


def _render(P: dict, sl: slice, S: int, num_classes: int, g: torch.Generator) -> torch.Tensor:
    """The images of P's rows `sl` as float [m, 3, S, S] in [0, 1]."""
    labels, half, cx, cy, angle, phase = (
        P[k] for k in ("labels", "half", "cx", "cy", "angle", "phase")
    )
    bg, fg, grad_dir, grad_amp = P["bg"], P["fg"], P["grad_dir"], P["grad_amp"]
    n_blobs, blob_xy, blob_r, blob_rgb = P["n_blobs"], P["blob_xy"], P["blob_r"], P["blob_rgb"]
    px = 2.0 / S  # one pixel in [-1, 1] units
    coords = (torch.arange(S, dtype=torch.float32) + 0.5) * px - 1
    ys, xs = coords.view(1, S, 1), coords.view(1, 1, S)
    m = sl.stop - sl.start
    col = lambda t: t[sl].view(m, 1, 1)  # noqa: E731 - per-image scalar broadcast over pixels

    # Background: colour + linear gradient, then small blobs (clutter under the shape).
    ramp = xs * torch.cos(col(grad_dir)) + ys * torch.sin(col(grad_dir))  # [m, S, S]
    img = bg[sl].view(m, 3, 1, 1) + grad_amp[sl].view(m, 3, 1, 1) * ramp.unsqueeze(1)
    for b in range(n_blobs):
        d = torch.sqrt(
            (xs - blob_xy[sl, b, 0].view(m, 1, 1)) ** 2
            + (ys - blob_xy[sl, b, 1].view(m, 1, 1)) ** 2
        )
        a = _coverage(d - blob_r[sl, b].view(m, 1, 1), px).unsqueeze(1)
        img.lerp_(blob_rgb[sl, b].view(m, 3, 1, 1).expand_as(img), a)

    # Shape coordinates: centred on the shape, rotated by the image's angle.
    dx, dy = xs - col(cx), ys - col(cy)
    c, s = torch.cos(col(angle)), torch.sin(col(angle))
    u, v = c * dx + s * dy, -s * dx + c * dy
    u, v = u.expand(m, S, S), v.expand(m, S, S)
    cover = torch.empty(m, S, S)
    lab = labels[sl]
    for k in range(num_classes):
        idx = (lab == k).nonzero().squeeze(1)
        if idx.numel():
            cover[idx] = _draw(
                SHAPES[k], u[idx], v[idx], half[sl][idx].view(-1, 1, 1), phase[sl][idx], px
            )
    img.lerp_(fg[sl].view(m, 3, 1, 1).expand_as(img), cover.unsqueeze(1))
    img.add_(torch.randn(img.shape, generator=g), alpha=0.03)
    return img.clamp_(0, 1)


def make_synthetic(
    n: int, num_classes: int = 10, image_size: int = 32, seed: int = 0, palette: str = "grey"
) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` synthetic images and labels: (uint8 [n, 3, S, S], int64 [n]), classes balanced (+-1).
    `palette`: "grey" (near-grey, the default) or "colour" (see the module docstring)."""
    _check_args(n, num_classes, image_size, palette)
    g = torch.Generator().manual_seed(int(seed))
    P = _draw_params(n, num_classes, palette, g)
    S = image_size
    out = torch.empty(n, 3, S, S, dtype=torch.uint8)
    chunk = max(1, _PIXELS_PER_CHUNK // (S * S))
    for lo in range(0, n, chunk):
        sl = slice(lo, min(n, lo + chunk))
        out[sl] = (_render(P, sl, S, num_classes, g) * 255).round_().to(torch.uint8)
    return out, P["labels"].to(torch.int64)


def _colour_pair(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Background and shape colours [n, 3] of the colour palette: a lightness gap of 0.3-0.6 (shape
    lighter or darker at random), chroma 0.15-0.3 each, hues ~opposite (180 +- 60 degrees apart),
    all independent."""
    gap = 0.3 + 0.3 * torch.rand(n, generator=g)
    low = 0.1 + (0.8 - gap) * torch.rand(n, generator=g)  # both levels stay in [0.1, 0.9]
    light_shape = torch.rand(n, generator=g) < 0.5
    lum_fg = torch.where(light_shape, low + gap, low)
    lum_bg = torch.where(light_shape, low, low + gap)
    hue_bg = torch.rand(n, generator=g) * 2 * math.pi
    hue_fg = hue_bg + math.pi + (torch.rand(n, generator=g) * 2 - 1) * math.pi / 3
    chroma = 0.15 + 0.15 * torch.rand(n, 2, generator=g)

    def rgb(lum, hue, c):
        offset = c[:, None] * (
            torch.cos(hue)[:, None] * _CHROMA_U + torch.sin(hue)[:, None] * _CHROMA_V
        )
        return (lum[:, None] + offset).clamp(0, 1)

    return rgb(lum_bg, hue_bg, chroma[:, 0]), rgb(lum_fg, hue_fg, chroma[:, 1])


def _coverage(sdf: torch.Tensor, px: float) -> torch.Tensor:
    """Anti-aliased coverage from a signed distance (negative inside), a one-pixel soft edge."""
    return (0.5 - sdf / px).clamp_(0, 1)


def _draw(
    shape: str, u: torch.Tensor, v: torch.Tensor, r: torch.Tensor, phase: torch.Tensor, px: float
) -> torch.Tensor:
    """Coverage in [0, 1] of `shape` (half size `r`) at shape coordinates u, v: [k, S, S]."""
    cheb = torch.maximum(u.abs(), v.abs())
    if shape == "disk":
        return _coverage(torch.sqrt(u * u + v * v) - r, px)
    if shape == "ring":
        return _coverage((torch.sqrt(u * u + v * v) - 0.72 * r).abs() - 0.22 * r, px)
    if shape == "square_outline":
        return _coverage((cheb - 0.78 * r).abs() - 0.17 * r, px)
    if shape == "filled_square":
        return _coverage(cheb - 0.85 * r, px)
    if shape == "triangle":  # apex up (v grows downwards), base at v = 0.6 r
        base, height = 0.6 * r, 1.6 * r
        width = height / math.sqrt(3)
        side = (u.abs() * height - (v + r) * width) / torch.sqrt(height**2 + width**2)
        return _coverage(torch.maximum(v - base, side), px)
    if shape in ("plus", "cross"):
        if shape == "cross":
            u, v = (u + v) / math.sqrt(2), (u - v) / math.sqrt(2)
        arm = 0.22 * r
        bar1 = torch.maximum(u.abs() - arm, v.abs() - r)
        bar2 = torch.maximum(v.abs() - arm, u.abs() - r)
        return _coverage(torch.minimum(bar1, bar2), px)

    # Textures inside a square region; periods never below a few pixels so they stay visible.
    region = _coverage(cheb - 0.85 * r, px)
    period = torch.clamp(0.5 * r, min=4 * px)
    p0, p1 = phase[:, 0].view(-1, 1, 1), phase[:, 1].view(-1, 1, 1)
    if shape in ("horizontal_stripes", "vertical_stripes", "diagonal_stripes"):
        t = {
            "horizontal_stripes": v,
            "vertical_stripes": u,
            "diagonal_stripes": (u + v) / math.sqrt(2),
        }[shape]
        frac = torch.frac(t / period + p0 + 10)  # +10 keeps the argument positive for frac
        return region * _coverage(((frac - 0.5).abs() - 0.25) * period, px)
    if shape == "checkerboard":
        cell = torch.clamp(0.45 * r, min=3 * px)
        check = torch.sin(math.pi * (u / cell + p0)) * torch.sin(math.pi * (v / cell + p1))
        return region * (0.5 + check * cell / (math.pi * px)).clamp_(0, 1)
    if shape == "dots":
        du = (torch.frac(u / period + p0 + 10) - 0.5) * period
        dv = (torch.frac(v / period + p1 + 10) - 0.5) * period
        return region * _coverage(torch.sqrt(du * du + dv * dv) - 0.3 * period, px)
    raise AssertionError(shape)
