"""One backbone factory over timm: `create_backbone(name, small_input, **timm_kwargs)`.

Every backbone is a timm model built with `num_classes=0`, so calling it returns pooled features of
width `model.num_features`. There is no second registry: any name timm knows works.
"""

from __future__ import annotations

import difflib
from typing import Any

import timm
from torch import nn

from ssl_bench.errors import ConfigError


def _swap_to_small_input_stem(model: nn.Module, name: str) -> None:
    """Replace a ResNet-family stem (7x7 stride-2 conv + max-pool) with a 3x3 stride-1 conv and no
    pool.

    This is the CIFAR stem of the SimCLR paper (appendix B.9), for images of 64px and below. It is
    the only place in ssl_bench that patches a timm model.
    """
    conv = getattr(model, "conv1", None)
    if not isinstance(conv, nn.Conv2d):
        raise ConfigError(
            "backbone.small_input",
            "the small-input stem applies to ResNet-family models with a single `conv1` stem; "
            f"'{name}' has none.",
            "set backbone.small_input=false, or for a ViT choose a small patch size "
            "(backbone.kwargs.patch_size=4).",
        )
    model.conv1 = nn.Conv2d(
        conv.in_channels, conv.out_channels, kernel_size=3, stride=1, padding=1, bias=False
    )
    if hasattr(model, "maxpool"):
        model.maxpool = nn.Identity()


def closest_timm_names(name: str, n: int = 5) -> list[str]:
    """timm's model names closest to `name`, closest first (difflib's ratio): `resnet_18` gives
    resnet18 first."""
    return difflib.get_close_matches(name, timm.list_models(), n=n, cutoff=0.5)


def check_timm_name(name: str) -> None:
    """A ConfigError on backbone.name, with the closest timm names, when timm has no model
    `name`."""
    if name in timm.list_models() or timm.is_model(name):
        return
    close = closest_timm_names(name)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ConfigError(
        "backbone.name",
        f"'{name}' is not a timm model.",
        f"{hint}Any name of timm.list_models() works, e.g. resnet18, resnet50, "
        "vit_tiny_patch16_224.",
    )


def create_backbone(
    name: str, small_input: bool = False, in_chans: int = 3, **timm_kwargs: Any
) -> nn.Module:
    """Build `timm.create_model(name, pretrained=False, num_classes=0, **timm_kwargs)`.

    Returns the model; its pooled feature width is `model.num_features`.
    """
    check_timm_name(name)
    try:
        model = timm.create_model(
            name, pretrained=False, num_classes=0, in_chans=in_chans, **timm_kwargs
        )
    except TypeError as err:
        raise ConfigError(
            "backbone.kwargs",
            f"timm rejected the arguments for '{name}': {err}",
            "remove or rename the offending key under backbone.kwargs.",
        ) from None
    if small_input:
        _swap_to_small_input_stem(model, name)
    if not getattr(model, "num_features", None):
        raise ConfigError(
            "backbone.name",
            f"timm model '{name}' does not report num_features.",
            "choose a classification backbone.",
        )
    return model
