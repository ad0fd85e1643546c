"""Where an offline evaluation's results go: <run dir>/eval_<mode>.json (or `out=`), and the run's
W&B run (resumed by id when it has one, else a new run in the run's group)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ssl_bench.errors import UserError
from ssl_bench.runs import RunRef


def write_results(
    run: RunRef, mode: str, results: dict[str, Any], out: str | Path | None = None
) -> Path:
    out_dir = Path(out) if out else run.run_dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"eval_{mode}.json"
        path.write_text(json.dumps(results, indent=2, default=str))
    except OSError as err:
        raise UserError(
            f"cannot write results to '{out_dir}' ({err.strerror or err}). Fix: pass "
            "out=<writable dir>."
        ) from None
    return path


def find_wandb_run_id(run_dir: Path) -> str | None:
    """The id of the run's W&B run: the suffix of
    <run_dir>/wandb/(offline-)run-<date>_<time>-<id>."""
    wdir = run_dir / "wandb"
    if not wdir.is_dir():
        return None
    dirs = [
        p
        for p in wdir.iterdir()
        if p.is_dir() and (p.name.startswith("run-") or p.name.startswith("offline-run-"))
    ]
    # the oldest is the training run (later ones are evals); sort by the <date>_<time> part
    dirs.sort(key=lambda p: p.name.removeprefix("offline-").removeprefix("run-"))
    return dirs[0].name.rsplit("-", 1)[-1] if dirs else None


def wandb_log(
    run: RunRef,
    mode: str,
    summary: dict[str, Any],
    images: dict[str, Path] | None = None,
    setting: str = "auto",
) -> str | None:
    """Log an eval's summary (and images) to the run's W&B run: resumed by id when the run has one
    (`setting=auto|resume`), else a new run in the same group named <run>-eval (`setting=new`, or
    auto when the training run logged to W&B without leaving its id). Offline without an API key.
    Returns the W&B run id used, or None when nothing was logged."""
    if setting in (False, "false", "off", "none", None):
        return None
    wb_cfg = run.cfg.get("logger", {}).get("wandb") if run.cfg.get("logger") else None
    run_id = find_wandb_run_id(run.run_dir)
    if wb_cfg is None and run_id is None and setting == "auto":
        return None
    import wandb

    from ssl_bench.wandb_utils import resolve_mode, wandb_group

    wb_cfg = wb_cfg or {}
    kwargs = dict(
        project=wb_cfg.get("project", "ssl_bench"),
        entity=wb_cfg.get("entity"),
        dir=str(run.run_dir),
        mode=resolve_mode(wb_cfg.get("mode")),
    )
    if run_id and setting in ("auto", "resume"):
        kwargs.update(id=run_id, resume="allow")
    else:
        name = run.cfg.get("run_name") or run.run_dir.name
        kwargs.update(
            name=f"{name}-eval",
            group=wandb_group(run.cfg, run.run_dir),
            job_type="eval",
            tags=[run.cfg.method.name, run.cfg.data.name, str(run.cfg.backbone.tag), "eval"],
        )
    wrun = wandb.init(**kwargs)
    try:
        row = {k: v for k, v in summary.items() if isinstance(v, (int, float))}
        for key, path in (images or {}).items():
            row[key] = wandb.Image(str(path))
        wrun.log(row)
        for key, value in summary.items():
            wrun.summary[key] = value
        return wrun.id
    finally:
        wrun.finish()
