"""Where the Hydra configs live (CONFIG_DIR) and the resolvers they use."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

_PACKAGED = Path(__file__).resolve().parent / "conf"  # non-editable install: ssl_bench/conf
_CHECKOUT = Path(__file__).resolve().parent.parent / "conf"  # a checkout or editable install
CONFIG_DIR = _PACKAGED if (_PACKAGED / "config.yaml").is_file() else _CHECKOUT


def _cpu_share(n_jobs) -> int:
    """CPU threads per job when `n_jobs` jobs share this machine (joblib launcher; -1 = one job per
    core)."""
    cores = os.cpu_count() or 1
    n = int(n_jobs) if n_jobs is not None else 1
    n = cores if n <= 0 else n
    return max(1, cores // n)


if not OmegaConf.has_resolver("cpu_share"):
    OmegaConf.register_new_resolver("cpu_share", _cpu_share)
