"""Projector / predictor heads shared by the methods."""

from __future__ import annotations

from torch import nn

from ssl_bench.errors import ConfigError

#: where an MLP head puts BatchNorm: nowhere, after each hidden linear layer, or after every linear
#: layer
BN_PLACEMENTS = ("none", "hidden", "all")


def check_head_sizes(**sizes: int) -> None:
    """A ConfigError naming `method.<key>` for a head width below 1 or a `*_layers` count below 1
    (the checks every method with MLP heads makes on its constructor's arguments)."""
    for key, value in sizes.items():
        if key.endswith("_layers") and value < 1:
            raise ConfigError(f"method.{key}", f"needs at least 1 layer, got {value}.")
        if not key.endswith("_layers") and value < 1:
            raise ConfigError(f"method.{key}", f"must be a positive width, got {value}.")


def check_bn_placement(value: str, key: str) -> str:
    """`value` if it names a BN placement, else a ConfigError naming the config `key`."""
    if value not in BN_PLACEMENTS:
        raise ConfigError(
            key,
            f"unknown BatchNorm placement '{value}'.",
            f"choose one of {', '.join(BN_PLACEMENTS)}.",
        )
    return value


class BatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose learnable scale (gamma) and shift (beta) can be switched off one by one, as
    TensorFlow's `scale` / `center`: the official SimCLR head ends in a BN with a scale and no
    shift."""

    def __init__(self, num_features: int, scale: bool = True, shift: bool = True):
        super().__init__(num_features, affine=scale or shift)
        if self.affine and not scale:
            self.weight = None  # F.batch_norm takes weight and bias independently
        if self.affine and not shift:
            self.bias = None
        self.scale, self.shift = scale, shift

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale}, shift={self.shift}"


class MLP(nn.Sequential):
    """`num_layers` linear layers in_dim -> hidden_dim -> ... -> out_dim, ReLU between them.

    `bn` places BatchNorm: "none"; "hidden" (after each hidden linear layer, before its ReLU:
    BYOL's, SwAV's and SimSiam's predictor); "all" (the output too: SimCLR's official head,
    SimSiam's projector, MoCo v3). `last_scale` / `last_shift` are the output BN's learnable
    parameters (SimSiam and MoCo v3: neither; official SimCLR: scale only). A linear layer followed
    by BN has no bias (BN's shift cancels it), so the output layer has one only without an output
    BN. `layer_ends[i]` is the index just after layer i's block (Linear[, BN][, ReLU]): `self[:
    layer_ends[0]]` is the first layer with its activation.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 2,
        bn: str = "hidden",
        last_scale: bool = True,
        last_shift: bool = True,
    ):
        if num_layers < 1:
            raise ValueError("MLP needs at least one layer")
        if bn not in BN_PLACEMENTS:
            raise ValueError(f"MLP bn must be one of {BN_PLACEMENTS}, got {bn!r}")
        hidden_bn, last_bn = bn != "none", bn == "all"
        layers: list[nn.Module] = []
        ends: list[int] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(dim, hidden_dim, bias=not hidden_bn)]
            if hidden_bn:
                layers += [BatchNorm1d(hidden_dim)]
            layers += [nn.ReLU(inplace=True)]
            ends.append(len(layers))
            dim = hidden_dim
        layers += [nn.Linear(dim, out_dim, bias=not last_bn)]
        if last_bn:
            layers += [BatchNorm1d(out_dim, scale=last_scale, shift=last_shift)]
        ends.append(len(layers))
        super().__init__(*layers)
        self.layer_ends = tuple(ends)
