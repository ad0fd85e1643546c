"""Hydra callbacks (hydra.callbacks in conf/config.yaml): checks before Hydra creates a run or sweep
dir, and the summary and exit code of a multirun."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from ssl_bench.console import jobs_table
from ssl_bench.errors import EXIT_SWEEP_FAILURES, UserError, report_user_error


def ensure_writable(path: Path) -> None:
    """`path` (a dir) exists and can be written, else a UserError naming it and the fix. Here
    rather than in ssl_bench.training so that checking a run dir imports neither torch nor
    Lightning."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise UserError(
            f"output dir '{path}' cannot be written ({err.strerror or err}). Fix: choose a "
            "writable location with output_root=<dir> (or hydra.run.dir=<dir>), or fix its "
            "permissions."
        ) from None


def existing_run_error(run_dir: Path, cfg) -> UserError | None:
    """The error for a new run into a dir that holds one (no resume, no overwrite), else None.
    Shared by the CLI (OutputDirCheck) and the Python API (ssl_bench.train)."""
    marks = (run_dir / "results.json", run_dir / "checkpoints" / "last.ckpt")
    finished = [p.name for p in marks if p.exists()]
    if not finished or cfg.get("resume") or cfg.get("overwrite", False):
        return None
    return UserError(
        f"run dir '{run_dir}' already holds a run ({', '.join(finished)}); nothing was changed. "
        f"Fix: continue it with resume={run_dir}, replace it with overwrite=true, or choose "
        "another hydra.run.dir."
    )


class OutputDirCheck(Callback):
    """Before Hydra creates the run (or sweep) dir, check it can be written and holds no finished
    run, so an unwritable or occupied location ends with one message instead of a traceback from
    inside Hydra, and nothing already trained is overwritten."""

    def _check(self, path: str, key: str) -> None:
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


def sweep_failures(sweep_dir: Path) -> tuple[list[Path], list[str]]:
    """The jobs of a sweep dir (those that wrote results.json) and "job: error" for each failed one.
    Every job writes results.json - a failed one with status "failed" and its error."""
    jobs = sorted(p.parent for p in sweep_dir.glob("*/results.json"))
    failed = [
        f"{name}: {res.get('error')}"
        for name, res in sweep_jobs(jobs)
        if res.get("status") == "failed"
    ]
    return jobs, failed


def sweep_jobs(jobs: list[Path]) -> list[tuple[str, dict]]:
    """(job dir name, results.json) of each job, in job order (the number Hydra gives it)."""
    out = []
    for job in jobs:
        try:
            res = json.loads((job / "results.json").read_text())
        except (OSError, ValueError):
            res = {"status": "failed", "error": "results.json unreadable"}
        out.append((job.name, res))

    def number(item: tuple[str, dict]) -> int:
        head = item[0].split("_", 1)[0]
        return int(head) if head.isdigit() else 0

    return sorted(out, key=number)


class SweepSummary(Callback):
    """When a multirun ends: write its leaderboard (ssl_bench.report) into the sweep dir, print a
    table of its jobs (ssl_bench.console.jobs_table), name the failed jobs, and end the process
    with EXIT_SWEEP_FAILURES when any job failed (Hydra lets a SystemExit raised here through; the
    jobs' own results are all written by then)."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        jobs, failed = sweep_failures(sweep_dir)
        try:
            from ssl_bench.report import write_sweep_report

            where = f"leaderboard: {write_sweep_report(sweep_dir)['markdown']}"
        # a report problem must not hide the sweep's outcome
        except Exception as err:  # noqa: BLE001
            where = f"no leaderboard ({type(err).__name__}: {err})"
        print(
            f"ssl_bench: sweep {sweep_dir}: {len(jobs)} job(s), {len(failed)} failed; {where}",
            file=sys.stderr,
            flush=True,
        )
        for line in jobs_table(sweep_jobs(jobs)):
            print(line, file=sys.stderr)
        for line in failed:
            print(f"ssl_bench:   failed {line}", file=sys.stderr, flush=True)
        if failed:
            raise SystemExit(EXIT_SWEEP_FAILURES)
