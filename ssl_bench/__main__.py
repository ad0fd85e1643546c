"""`python -m ssl_bench method=simclr data=cifar10 backbone=resnet18` - the Hydra entry point.

One run: exit codes as listed in ssl_bench.errors. A multirun (`-m`): a job that fails - bad
value, missing data, NaN loss, a crash - is recorded as failed in its own results.json and the sweep
goes on; at the end the sweep dir gets its leaderboard and the exit code is EXIT_SWEEP_FAILURES when
any job failed (both from ssl_bench.hydra_callbacks.SweepSummary).
"""

from __future__ import annotations

import json
import math
import sys
import traceback
from pathlib import Path

import hydra
from omegaconf import DictConfig

from ssl_bench.config import CONFIG_DIR
from ssl_bench.errors import EXIT_NONFINITE, UserError, report_user_error


def _record_failure(run_dir: Path, cfg: DictConfig, error: str) -> None:
    """results.json of a sweep job that ended before training could write one; its W&B run (if one
    was started) is closed as failed, so the next job of the sweep starts a run of its own."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        try:
            wandb.run.summary["status"] = "failed"
            wandb.finish(exit_code=1)
        except Exception:  # noqa: BLE001 - closing the log must not hide the job's own error
            pass
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "results.json").write_text(
            json.dumps(
                {
                    "status": "failed",
                    "error": error,
                    "method": cfg.method.get("name"),
                    "data": cfg.data.get("name"),
                    "seed": cfg.get("seed"),
                    "run_dir": str(run_dir),
                },
                indent=2,
            )
        )
    except OSError:
        pass


def _objective(results: dict, cfg: DictConfig) -> float:
    """What a sweeper (Optuna) optimises: `optimize_metric` of the run's best metrics (NaN when
    missing)."""
    value = (results.get("best") or {}).get(cfg.get("optimize_metric", "val/knn_top1"))
    return float(value) if value is not None else math.nan


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from ssl_bench.schema import check_schema

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    run_dir = Path(hc.runtime.output_dir)
    try:
        check_schema(cfg)  # an unknown key or a wrong type ends here, before the heavy imports
        from ssl_bench.training import check_launch, run

        check_launch(cfg, multirun, str(hc.launcher.get("_target_", "")))
        results = run(cfg, run_dir)
    except UserError as err:
        if not multirun:
            report_user_error(err)
        print(
            f"ssl_bench: error: job {hc.job.num} ({run_dir.name}): {err}",
            file=sys.stderr,
            flush=True,
        )
        _record_failure(run_dir, cfg, str(err))
        return math.nan
    # in a sweep, any crash of one job is recorded and the rest go on
    except Exception as err:  # noqa: BLE001
        if not multirun:
            raise
        traceback.print_exc()
        _record_failure(run_dir, cfg, f"{type(err).__name__}: {err}")
        return math.nan
    if results["status"] == "failed":
        if not multirun:
            raise SystemExit(EXIT_NONFINITE)
        return math.nan
    return _objective(results, cfg)


def main() -> None:
    try:
        _hydra_main()
    except UserError as err:
        report_user_error(err)


if __name__ == "__main__":
    sys.exit(main())
