"""Building blocks of the recipe transcriptions (tests/recipes/sources.py).

A transcription is a flat dict {ssl_bench config key: the source's value}. Keys of ssl_bench that
the source has no counterpart for hold `NotInSource(reason)`: the test then only checks that the key
is accounted for. The helpers here spell out the parts every recipe has (views, optimizer, schedule)
with the source's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NotInSource:
    """A key of ours that the source does not set; `why` says what stands in its place."""

    why: str


_ABSENT = object()


def view(
    i: int,
    *,
    num_crops: int,
    crop_size,
    scale,
    ratio=(0.75, 1.3333333),
    hflip=0.5,
    jitter_prob=0.8,
    brightness=0.4,
    contrast=0.4,
    saturation=0.4,
    hue=0.1,
    grayscale=0.2,
    blur_prob=0.0,
    blur_sigma=(0.1, 2.0),
    blur_kernel_size=_ABSENT,
    solarize=0.0,
) -> dict:
    """One pipeline `augmentation.views.<i>` (ssl_bench/views/config.py parses it). Colour-jitter
    amounts are the final ones: the test multiplies ssl_bench's `brightness` ... `hue` by its
    `strength` before comparing. `blur_kernel_size` is transcribed only for presets that set
    `blur.kernel_size` (None: the 10%-of-the-crop rule); `blur_sigma` may be a `NotInSource` where
    the source has no blur at all."""
    p = f"augmentation.views.{i}."
    out = {
        p + "num_crops": num_crops,
        p + "crop_size": crop_size,
        p + "scale": list(scale),
        p + "ratio": list(ratio),
        p + "hflip": hflip,
        p + "color_jitter.prob": jitter_prob,
        p + "color_jitter.brightness": brightness,
        p + "color_jitter.contrast": contrast,
        p + "color_jitter.saturation": saturation,
        p + "color_jitter.hue": hue,
        p + "grayscale": grayscale,
        p + "blur.prob": blur_prob,
        p + "blur.sigma": blur_sigma if isinstance(blur_sigma, NotInSource) else list(blur_sigma),
        p + "solarize": solarize,
    }
    if blur_kernel_size is not _ABSENT:
        out[p + "blur.kernel_size"] = blur_kernel_size
    return out


def prefixed(prefix: str, values: dict) -> dict:
    return {f"{prefix}.{k}": v for k, v in values.items()}
