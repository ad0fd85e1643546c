"""Inference copies of a network for evaluation passes: BatchNorm folded into the convolution before
it.

In eval mode a BatchNorm is an affine map per channel with fixed statistics, so it folds into
the weights and bias of the convolution that feeds it. The evaluation passes (the random-init kNN
baseline, the online kNN and probe, offline `python -m ssl_bench.eval`) run on such a copy: on the
narrow ResNet-18 of the Fashion-MNIST experiments the BatchNorm calls took about a quarter of an
eval forward pass on a 2-core CPU (bf16); with the folded copy the random-init kNN baseline over
Fashion-MNIST took 19.4 s instead of 25.2 (BENCHMARKS.md, issue 17). The folding is torch.fx's
(`torch.fx.experimental.optimization.fuse`), which traces the network and folds every
Conv-BatchNorm pair it finds; the copy computes the same function up to floating-point rounding.
"""

from __future__ import annotations

import warnings

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

#: the network types whose graph did not trace (CMC's MultiViewEncoder, for one)
_UNTRACEABLE: set[str] = set()


def has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, _BatchNorm) for m in module.modules())


def folded_for_inference(module: nn.Module) -> nn.Module:
    """A copy of `module` (which must be in eval mode) with every BatchNorm that follows a
    convolution folded into it, for no-grad evaluation passes only: the copy shares nothing with
    `module`, so it is stale as soon as `module` trains again. `module` itself, unchanged, when it
    has no BatchNorm (a ViT) or its graph does not trace (then with a warning: the pass is correct,
    only not folded)."""
    if module.training:
        raise ValueError("folded_for_inference: the module must be in eval mode (BN statistics)")
    if not has_batchnorm(module):
        return module
    from torch.fx.experimental.optimization import fuse

    try:
        folded = fuse(module, inplace=False)
    except Exception as err:  # noqa: BLE001 - any tracing failure: evaluate the network as it is
        name = type(module).__name__
        if name not in _UNTRACEABLE:  # said once per network type, not at every validation epoch
            _UNTRACEABLE.add(name)
            warnings.warn(
                f"evaluation runs {name} without BatchNorm folding: its graph did not trace "
                f"({type(err).__name__}: {err})",
                stacklevel=2,
            )
        return module
    return folded.eval()
