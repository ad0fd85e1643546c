"""`python -m ssl_bench method=simclr data=cifar10 backbone=resnet18` - the Hydra entry point."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from ssl_bench.config import CONFIG_DIR, report_user_error
from ssl_bench.errors import UserError


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from ssl_bench.train import run

    try:
        results = run(cfg, Path(HydraConfig.get().runtime.output_dir))
    except UserError as err:
        report_user_error(err)
    # the sweep objective (Optuna and friends): best online kNN top-1
    return results.get("best", {}).get("val/knn_top1")


def main() -> None:
    try:
        _hydra_main()
    except UserError as err:
        report_user_error(err)


if __name__ == "__main__":
    sys.exit(main())
