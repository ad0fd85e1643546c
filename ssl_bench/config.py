"""Where the configs live, how a user error is reported, and the Hydra callbacks and resolvers."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from omegaconf import OmegaConf

from ssl_bench.errors import EXIT_USER_ERROR

_PACKAGED = Path(__file__).resolve().parent / "conf"  # non-editable install: ssl_bench/conf
_CHECKOUT = (
    Path(__file__).resolve().parent.parent / "conf"
)  # a checkout / editable install: <repo>/conf
CONFIG_DIR = _PACKAGED if (_PACKAGED / "config.yaml").is_file() else _CHECKOUT

#: failed jobs of the multirun that just ended (set by SweepSummary; __main__ turns it into the exit code)
SWEEP_FAILURES: list[str] = []


def _cpu_share(n_jobs) -> int:
    """CPU threads per job when `n_jobs` jobs share this machine (joblib launcher; -1 = one job per core)."""
    cores = os.cpu_count() or 1
    n = int(n_jobs) if n_jobs is not None else 1
    n = cores if n <= 0 else n
    return max(1, cores // n)


if not OmegaConf.has_resolver("cpu_share"):
    OmegaConf.register_new_resolver("cpu_share", _cpu_share)


def report_user_error(err: Exception) -> None:
    """One message, no traceback, a non-zero exit."""
    msg = str(err)
    if "Original Traceback" in msg:  # re-raised from a DataLoader worker: keep the error's own line
        last = [line for line in msg.splitlines() if line.strip()][-1]
        msg = (
            last.split(": ", 1)[1]
            if last.startswith(("ssl_bench.", "DataError", "ConfigError"))
            else last
        )
    print(f"ssl_bench: error: {msg}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USER_ERROR)


def existing_run_error(run_dir: Path, cfg) -> Exception | None:
    """The error for a new run into a dir that holds one (no resume, no overwrite), else None."""
    finished = [
        p for p in (run_dir / "results.json", run_dir / "checkpoints" / "last.ckpt") if p.exists()
    ]
    if not finished or cfg.get("resume") or cfg.get("overwrite", False):
        return None
    from ssl_bench.errors import UserError

    return UserError(
        f"run dir '{run_dir}' already holds a run ({', '.join(p.name for p in finished)}); nothing "
        f"was changed. Fix: continue it with resume={run_dir}, replace it with overwrite=true, or "
        "choose another hydra.run.dir."
    )


try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover - very old Hydra
    _HydraCallback = object


class OutputDirCheck(_HydraCallback):
    """Hydra callback: before Hydra creates the run (or sweep) dir, check it can be written, so an
    unwritable location ends with one message instead of a traceback from inside Hydra."""

    def _check(self, path: str, key: str) -> None:
        from ssl_bench.errors import UserError
        from ssl_bench.train import ensure_writable

        try:
            ensure_writable(Path(path))
        except UserError as err:
            report_user_error(UserError(f"{err} (Hydra key: {key})"))

    def on_run_start(self, config, **kwargs) -> None:
        run_dir = Path(str(config.hydra.run.dir))
        error = existing_run_error(run_dir, config)
        if error is not None:
            report_user_error(error)
        self._check(str(run_dir), "hydra.run.dir")

    def on_multirun_start(self, config, **kwargs) -> None:
        self._check(str(config.hydra.sweep.dir), "hydra.sweep.dir")


class SweepSummary(_HydraCallback):
    """Hydra callback: when a multirun ends, write its leaderboard (ssl_bench.report) into the sweep dir and
    name the failed jobs. Every job wrote results.json - the failed ones with status "failed" and the error."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        jobs = sorted(p.parent for p in sweep_dir.glob("*/results.json"))
        failed = []
        for job in jobs:
            try:
                res = json.loads((job / "results.json").read_text())
            except (OSError, ValueError):
                res = {"status": "failed", "error": "results.json unreadable"}
            if res.get("status") == "failed":
                failed.append(f"{job.name}: {res.get('error')}")
        SWEEP_FAILURES[:] = failed
        try:
            from ssl_bench.report import write_sweep_report

            out = write_sweep_report(sweep_dir)
            where = f"leaderboard: {out['markdown']}"
        except Exception as err:  # noqa: BLE001 - a report problem must not hide the sweep's outcome
            where = f"no leaderboard ({type(err).__name__}: {err})"
        print(
            f"ssl_bench: sweep {sweep_dir}: {len(jobs)} job(s), {len(failed)} failed; {where}",
            file=sys.stderr,
            flush=True,
        )
        for line in failed:
            print(f"ssl_bench:   failed {line}", file=sys.stderr, flush=True)
