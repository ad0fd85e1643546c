"""ssl_bench: self-supervised visual representation learning on Lightning, Hydra and timm.

The Python API, for notebooks and scripts. Each name is imported on first use, so `import ssl_bench`
stays cheap (no torch, Lightning or Hydra until one is called):

    cfg = ssl_bench.compose(["method=byol", "data=cifar10"])  # the config the CLI would run
    results = ssl_bench.train(["method=byol", "data=cifar10"])  # one run; results.json's dict
    model = ssl_bench.load_backbone("outputs/runs/<date>/<run>")  # trained timm model, eval mode
    method = ssl_bench.load_method("<run>/checkpoints/last.ckpt")  # the whole LightningModule

`python -m ssl_bench.export <run> out=<dir>` writes the backbone for timm (ssl_bench.export).
The training internals live in `ssl_bench.training` (what the CLI runs), so the name
`ssl_bench.train` is the function above.
"""

from __future__ import annotations

from typing import Any

#: public name -> the module that defines it
_LAZY = {
    "compose": "ssl_bench.api",
    "train": "ssl_bench.api",
    "load_backbone": "ssl_bench.loading",
    "load_method": "ssl_bench.loading",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'ssl_bench' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(_LAZY[name])
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
