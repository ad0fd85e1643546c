"""View pipelines from the config: `cfg.augmentation.views` -> a list of `ViewPipeline`.

`parse_pipelines` validates every key and value of the views list and raises `ConfigError` naming
the key (e.g. `augmentation.views[1].crop_size`) and the fix; the `ViewPipeline`s it returns are
what both view implementations take (`views.batch.BatchViews` on the device, `views.cpu.CpuViews`
per sample).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from omegaconf import DictConfig, ListConfig, OmegaConf

from ssl_bench.errors import ConfigError
from ssl_bench.schema import unknown_key

VIEW_KEYS = (
    "num_crops",
    "crop_size",
    "scale",
    "ratio",
    "hflip",
    "color_jitter",
    "grayscale",
    "blur",
    "solarize",
)
JITTER_KEYS = ("prob", "strength", "brightness", "contrast", "saturation", "hue")
BLUR_KEYS = ("prob", "sigma", "kernel_size")


@dataclass(frozen=True)
class ViewPipeline:
    """One augmentation pipeline producing `num_crops` views of size `crop_size`."""

    num_crops: int = 2
    crop_size: int = 32
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.4  # already multiplied by strength
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale: float = 0.2
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: int | None = None  # odd side (px); None: SimCLR's rule, blur_kernel_size(crop)
    solarize: float = 0.0

    @property
    def kernel_size(self) -> int:
        """The blur kernel this pipeline uses."""
        if self.blur_kernel is not None:
            return self.blur_kernel
        return blur_kernel_size(self.crop_size)


def blur_kernel_size(crop_size: int) -> int:
    """Odd kernel size nearest to 10% of the crop size, at least 3 (SimCLR's rule)."""
    return max(3, 2 * int(math.floor((0.1 * crop_size - 1) / 2 + 0.5)) + 1)


def parse_pipelines(views_cfg, image_size: int | None = None) -> list[ViewPipeline]:
    """Parse and validate `cfg.augmentation.views`; the pipelines, larger crops first (stable sort).

    `views_cfg` is a list (OmegaConf ListConfig or plain) of mappings with keys num_crops,
    crop_size, scale, ratio, hflip, color_jitter {prob, strength, brightness, contrast, saturation,
    hue}, grayscale, blur {prob, sigma, kernel_size}, solarize. Missing keys take the
    `ViewPipeline` defaults; the colour-jitter amounts are multiplied by `strength` (default 1).
    `crop_size` is in pixels (an integer) or a fraction of `image_size` (a float in (0, 1]).
    `blur.kernel_size` null keeps SimCLR's kernel of 10% of the crop; an odd number fixes it (PIL's
    GaussianBlur(radius=sigma), which MoCo v2, SwAV and solo-learn use, spans about +-3 sigma: 13 px
    covers sigma <= 2 at any crop size). Bad values raise `ConfigError` naming the key, e.g.
    `augmentation.views[1].crop_size`.
    """
    views_cfg = _to_plain(views_cfg)
    if isinstance(views_cfg, Mapping) or not isinstance(views_cfg, (list, tuple)):
        raise ConfigError(
            "augmentation.views",
            f"expected a list of view pipelines, got {views_cfg!r}.",
            "write views as a list, e.g. [{num_crops: 2, crop_size: 32}].",
        )
    if len(views_cfg) == 0:
        raise ConfigError(
            "augmentation.views",
            "the list is empty; SSL needs at least one view pipeline.",
            "add e.g. {num_crops: 2, crop_size: 32}.",
        )
    pipes = [_parse_one(f"augmentation.views[{i}]", v, image_size) for i, v in enumerate(views_cfg)]
    return sorted(pipes, key=lambda p: -p.crop_size)  # sorted() is stable


# ---- one pipeline: geometry, colour jitter, blur -------------------------------------------------
def _parse_one(key: str, view, image_size: int | None) -> ViewPipeline:
    """One entry of the views list (checked in the order of its keys in VIEW_KEYS)."""
    default = ViewPipeline()
    view = _to_plain(view)
    if view is None:
        view = {}
    if not isinstance(view, Mapping):
        raise ConfigError(
            key,
            f"expected a mapping of view settings, got {view!r}.",
            f"write each view as a mapping with keys among {', '.join(VIEW_KEYS)}.",
        )
    _check_keys(key, view, VIEW_KEYS)
    geometry = _parse_geometry(key, view, default, image_size)
    hflip = _probability(f"{key}.hflip", view.get("hflip", default.hflip))
    grayscale = _probability(f"{key}.grayscale", view.get("grayscale", default.grayscale))
    solarize = _probability(f"{key}.solarize", view.get("solarize", default.solarize))
    jitter = _parse_jitter(f"{key}.color_jitter", view.get("color_jitter", {}), default)
    blur = _parse_blur(f"{key}.blur", view.get("blur", {}), default, geometry["crop_size"])
    return ViewPipeline(
        **geometry, hflip=hflip, grayscale=grayscale, solarize=solarize, **jitter, **blur
    )


def _parse_geometry(key: str, view: Mapping, default: ViewPipeline, image_size: int | None) -> dict:
    """num_crops, crop_size (pixels), scale and ratio ranges of the random resized crop."""
    num_crops = _integer(f"{key}.num_crops", view.get("num_crops", default.num_crops))
    if num_crops < 1:
        raise ConfigError(
            f"{key}.num_crops",
            f"must be at least 1, got {num_crops}.",
            "set num_crops >= 1, or delete this view.",
        )
    crop_size = _crop_size(f"{key}.crop_size", view.get("crop_size", default.crop_size), image_size)
    if crop_size < 1:
        raise ConfigError(
            f"{key}.crop_size", f"must be at least 1, got {crop_size}.", "set a positive size."
        )
    if image_size is not None and crop_size > image_size:
        raise ConfigError(
            f"{key}.crop_size",
            f"{crop_size} asks for a crop larger than the image ({image_size} px).",
            f"set crop_size <= {image_size}, or raise data.image_size.",
        )
    lo, hi = scale = _pair(f"{key}.scale", view.get("scale", default.scale))
    if not 0.0 < lo <= hi <= 1.0:
        raise ConfigError(
            f"{key}.scale",
            f"{list(scale)} is not a range with 0 < low <= high <= 1.",
            "set e.g. [0.08, 1.0].",
        )
    rlo, rhi = ratio = _pair(f"{key}.ratio", view.get("ratio", default.ratio))
    if not 0.0 < rlo <= rhi:
        raise ConfigError(
            f"{key}.ratio",
            f"{list(ratio)} is not a range with 0 < low <= high.",
            "set e.g. [0.75, 1.3333].",
        )
    return {"num_crops": num_crops, "crop_size": crop_size, "scale": scale, "ratio": ratio}


def _parse_jitter(key: str, value, default: ViewPipeline) -> dict:
    """color_jitter {prob, strength, brightness, contrast, saturation, hue}: amounts x strength."""
    jitter = _section(key, value, JITTER_KEYS)
    jitter_prob = _probability(f"{key}.prob", jitter.get("prob", default.jitter_prob))
    strength = _number(f"{key}.strength", jitter.get("strength", 1.0))
    if strength < 0:
        raise ConfigError(
            f"{key}.strength", f"must be >= 0, got {strength}.", "set a non-negative strength."
        )
    amounts = {}
    for name in ("brightness", "contrast", "saturation", "hue"):
        raw = _number(f"{key}.{name}", jitter.get(name, getattr(default, name)))
        if raw < 0:
            raise ConfigError(
                f"{key}.{name}",
                f"jitter amount must be >= 0, got {raw}.",
                "set a non-negative value (0 turns this jitter off).",
            )
        amounts[name] = raw * strength
    if amounts["hue"] > 0.5:
        raise ConfigError(
            f"{key}.hue",
            f"hue jitter {amounts['hue']:g} (after strength) exceeds 0.5.",
            "set hue * strength <= 0.5.",
        )
    return {"jitter_prob": jitter_prob, **amounts}


def _parse_blur(key: str, value, default: ViewPipeline, crop_size: int) -> dict:
    """blur {prob, sigma, kernel_size}: a kernel_size must be odd and fit in the crop."""
    blur = _section(key, value, BLUR_KEYS)
    blur_prob = _probability(f"{key}.prob", blur.get("prob", default.blur_prob))
    slo, shi = sigma = _pair(f"{key}.sigma", blur.get("sigma", default.blur_sigma))
    if not 0.0 < slo <= shi:
        raise ConfigError(
            f"{key}.sigma",
            f"{list(sigma)} is not a range with 0 < low <= high.",
            "set e.g. [0.1, 2.0].",
        )
    kernel = blur.get("kernel_size")
    if kernel is not None:
        kernel = _integer(f"{key}.kernel_size", kernel)
        if kernel < 1 or kernel % 2 == 0 or kernel // 2 >= crop_size:
            raise ConfigError(
                f"{key}.kernel_size",
                f"{kernel} is not an odd size >= 1 whose half fits in the {crop_size} px crop.",
                "set an odd size, e.g. 13 (+-3 sigma at sigma 2), or null for 10% of the crop.",
            )
    return {"blur_prob": blur_prob, "blur_sigma": sigma, "blur_kernel": kernel}


def _crop_size(key: str, value, image_size: int | None) -> int:
    """Pixels, from an integer (32) or from a float fraction of `data.image_size` in (0, 1] (1.0:
    the whole size; 0.4285714 = 96/224: SwAV's small crops at any image size), rounded to the
    nearest pixel."""
    if isinstance(value, float) and 0.0 < value <= 1.0:
        if image_size is None:
            raise ConfigError(
                key,
                f"the fraction {value} of the image size needs data.image_size.",
                "set data.image_size, or give crop_size in pixels.",
            )
        return max(1, int(round(value * image_size)))
    if isinstance(value, float) and not value.is_integer():
        raise ConfigError(
            key,
            f"{value} is neither whole pixels nor a fraction of the image size in (0, 1].",
            "set whole pixels (e.g. 96) or a fraction of data.image_size (e.g. 0.5).",
        )
    return _integer(key, value)


# ---- values --------------------------------------------------------------------------------------
def _to_plain(obj):
    """OmegaConf containers -> plain Python (resolving interpolations); anything else unchanged."""
    if isinstance(obj, (DictConfig, ListConfig)):
        return OmegaConf.to_container(obj, resolve=True)
    return obj


def _check_keys(key: str, d: Mapping, valid: Sequence[str]) -> None:
    """An unknown key: a ConfigError naming it and the closest valid keys
    (ssl_bench.schema.unknown_key)."""
    for name in d:
        if name not in valid:
            raise unknown_key(f"{key}.{name}", valid)


def _section(key: str, value, valid: Sequence[str]) -> dict:
    """A nested block (color_jitter, blur): a mapping, or null/false meaning 'off'."""
    if value is None or value is False:
        return {"prob": 0.0}
    if not isinstance(value, Mapping):
        raise ConfigError(
            key,
            f"expected a mapping with keys {', '.join(valid)}, got {value!r}.",
            f"write it as {{{', '.join(f'{k}: ...' for k in valid)}}}.",
        )
    _check_keys(key, value, valid)
    return dict(value)


def _number(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, f"expected a number, got {value!r}.", "set a number.")
    return float(value)


def _integer(key: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(key, f"expected an integer, got {value!r}.", "set an integer.")
    return value


def _pair(key: str, value) -> tuple[float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), float(value)
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(
            key, f"expected a pair [low, high], got {value!r}.", "set e.g. [0.08, 1.0]."
        )
    return _number(f"{key}[0]", value[0]), _number(f"{key}[1]", value[1])


def _probability(key: str, value) -> float:
    p = _number(key, value)
    if not 0.0 <= p <= 1.0:
        raise ConfigError(
            key, f"probability {p} is outside [0, 1].", "set a value between 0 and 1."
        )
    return p
