"""Where an offline evaluation's results go, so that no evaluation overwrites another.

Each invocation of `python -m ssl_bench.eval` leaves:

* one entry appended to the list `evals` of the run's results.json (see eval_entry): mode, time
  (when it started, UTC), settings (the resolved eval config without paths, plus the run-config
  overrides), the headline metrics, the checkpoint (path, Lightning's epoch and global_step), how a
  list of values was chosen (`selection`), the W&B keys, and the file below. The read-modify-write
  holds an exclusive lock on <run dir>/.results.json.lock (fcntl.flock), so evaluations of one run
  running at once keep every entry, and results.json is replaced atomically (temp file + fsync +
  os.replace), so a crash never leaves it truncated. A run without results.json (its training did
  not finish) gets no entry: the files below still hold the eval.
* `<out>/evals/<time>_<mode>.json`: everything the evaluation returns, one file per invocation,
  never overwritten (out= defaults to the run dir).
* `<out>/eval_<mode>.json`: a copy of the newest one of each mode, as before, for scripts that read
  it (ssl_bench.report reads it for runs whose results.json has no `evals`).
* W&B (the run's run, resumed by id, or a new one): the plain keys `eval/<mode>_top1`, ... hold the
  newest eval of each mode (a runs-table column); every eval also logs its numbers under
  `eval/<mode>@<tag>/...`, where <tag> is a short hash of its settings, and its settings under the
  config key `evals/<mode>@<tag>`, so a second eval with other settings does not replace the first.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ssl_bench.errors import UserError
from ssl_bench.runs import RunRef

RESULTS = "results.json"
LOCK = ".results.json.lock"
EVALS_DIR = "evals"


# ---- atomic, locked files ------------------------------------------------------------------------
def atomic_write_text(path: Path, text: str) -> None:
    """Replace `path` by `text` all at once: readers and a crash see the old file or the new one,
    never a truncated one (POSIX rename is atomic within a file system)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock (fcntl.flock) on `lock_path` for the duration of the block; other
    processes taking the same lock wait. The lock file itself is left in place (removing it would
    let a waiter lock a file nobody else sees)."""
    with open(lock_path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def update_json(path: Path, change: Callable[[dict], None], lock_path: Path) -> dict:
    """Read the JSON object at `path`, let `change` edit it in place, write it back atomically, all
    under the lock `lock_path`; returns the object written."""
    with locked(lock_path):
        data = json.loads(path.read_text())
        change(data)
        atomic_write_text(path, json.dumps(data, indent=2, default=str))
    return data


# ---- one evaluation's record ---------------------------------------------------------------------
def now() -> datetime:
    return datetime.now(timezone.utc)


def settings_tag(mode: str, settings: dict[str, Any]) -> str:
    """`<mode>@<6 hex digits>`: a short, stable name of these settings (a hash of their JSON)."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return f"{mode}@{hashlib.sha1(blob).hexdigest()[:6]}"


def checkpoint_info(ckpt: Path) -> dict[str, Any]:
    """The checkpoint an eval read: its path and Lightning's counters in it (None when the file has
    none, e.g. a bare state dict): `global_step`, the optimizer steps taken, and `epoch`,
    Lightning's current_epoch when it saved (counted from 0: the checkpoint written at the end of
    the first epoch says 0). Memory-mapped, so the weights are not read a second time."""
    import torch

    info: dict[str, Any] = {"path": str(ckpt), "epoch": None, "global_step": None}
    try:
        try:
            obj = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - a Lightning .ckpt may hold plain-python hparams objects
            obj = torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)
    except Exception:  # noqa: BLE001 - the weights were already read; the counters are extras
        return info
    if isinstance(obj, dict):
        for key in ("epoch", "global_step"):
            if isinstance(obj.get(key), int):
                info[key] = obj[key]
    return info


def eval_entry(
    result: dict[str, Any],
    settings: dict[str, Any],
    metrics: dict[str, Any],
    started: datetime,
    file: Path,
    wandb: dict[str, Any] | None,
) -> dict[str, Any]:
    """The entry of results.json's `evals` list for one evaluation (`result`: what the mode
    returned, see ssl_bench.eval.__main__.evaluate)."""
    return {
        "mode": result["mode"],
        "time": started.isoformat(timespec="seconds"),
        "wall_time_s": result.get("wall_time_s"),
        "metrics": metrics,
        "settings": settings,
        "checkpoint": result.get("checkpoint"),
        "selection": result.get("selection"),
        "num_train": result.get("num_train"),
        "num_test": result.get("num_test"),
        "file": str(file),
        "wandb": wandb,
    }


# ---- writing -------------------------------------------------------------------------------------
def write_eval_files(
    run: RunRef, mode: str, started: datetime, results: dict[str, Any], out: str | Path | None
) -> Path:
    """`<out>/evals/<time>_<mode>.json` (a new file, never an existing one) and its copy
    `<out>/eval_<mode>.json` (the newest of its mode); returns the first."""
    out_dir = Path(out) if out else run.run_dir
    text = json.dumps(results, indent=2, default=str)
    stamp = started.strftime("%Y%m%dT%H%M%S.%fZ")
    try:
        (out_dir / EVALS_DIR).mkdir(parents=True, exist_ok=True)
        for n in range(1000):
            path = out_dir / EVALS_DIR / f"{stamp}{f'-{n}' if n else ''}_{mode}.json"
            try:
                with open(path, "x") as f:  # exclusive: two evals of one microsecond both stay
                    f.write(text)
                break
            except FileExistsError:
                continue
        atomic_write_text(out_dir / f"eval_{mode}.json", text)
    except OSError as err:
        raise UserError(
            f"cannot write results to '{out_dir}' ({err.strerror or err}). Fix: pass "
            "out=<writable dir>."
        ) from None
    return path


def append_eval(run_dir: Path, entry: dict[str, Any]) -> Path | None:
    """Append `entry` to the `evals` list of <run_dir>/results.json (locked, atomic; see the module
    docstring). Returns the file, or None when the run has no readable results.json or it cannot be
    written (the caller says so; the eval files hold the result)."""
    path = run_dir / RESULTS
    if not path.is_file():
        return None

    def add(data: dict) -> None:
        evals = data.get("evals")
        data["evals"] = (evals if isinstance(evals, list) else []) + [entry]

    try:
        update_json(path, add, run_dir / LOCK)
    except (OSError, ValueError):
        return None
    return path


def write_run_results(run_dir: Path, results: dict[str, Any]) -> None:
    """Write training's results.json (locked, atomic), keeping the `evals` an earlier results.json
    of the run held: a resumed run rewrites its results but not the evaluations made before."""
    path = run_dir / RESULTS
    with locked(run_dir / LOCK):
        try:
            evals = json.loads(path.read_text()).get("evals")
        except (OSError, ValueError, AttributeError):
            evals = None
        out = dict(results, evals=evals) if isinstance(evals, list) and evals else results
        atomic_write_text(path, json.dumps(out, indent=2, default=str))


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


def _wandb_init(run: RunRef, wb_cfg: dict, run_id: str | None, setting: str):
    import wandb

    from ssl_bench.wandb_utils import resolve_mode, wandb_group

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
    return wandb.init(**kwargs)


def wandb_log(
    run: RunRef,
    summary: dict[str, Any],
    images: dict[str, Path] | None = None,
    setting: str = "auto",
    tag: str | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Log an eval to the run's W&B run: resumed by id when the run has one (`setting=auto|resume`),
    else a new run in the same group named <run>-eval (`setting=new`, or auto when the training run
    logged to W&B without leaving its id). Offline without an API key.

    `summary` ({"eval/<mode>_top1": ...}) goes to the plain keys (the newest eval of the mode) and,
    with `tag` (settings_tag), again under `eval/<tag>/<name>` (eval/linear@1a2b3c/top1), with
    `settings` in the run's config under `evals/<tag>`: no eval with other settings overwrites
    those. Returns {"run_id", "keys"} (the tagged keys), or None when nothing was logged."""
    if setting in (False, "false", "off", "none", None):
        return None
    wb_cfg = run.cfg.get("logger", {}).get("wandb") if run.cfg.get("logger") else None
    run_id = find_wandb_run_id(run.run_dir)
    if wb_cfg is None and run_id is None and setting == "auto":
        return None
    import wandb

    tagged = {}
    if tag:
        mode = tag.split("@")[0]
        for key, value in summary.items():
            tagged[f"eval/{tag}/{key.split('/', 1)[-1].removeprefix(mode + '_')}"] = value
    wrun = _wandb_init(run, dict(wb_cfg or {}), run_id, setting)
    try:
        row = {k: v for k, v in {**summary, **tagged}.items() if isinstance(v, (int, float))}
        for key, path in (images or {}).items():
            row[key] = wandb.Image(str(path))
        wrun.log(row)
        for key, value in {**summary, **tagged}.items():
            wrun.summary[key] = value
        if tag:
            wrun.config.update({f"evals/{tag}": settings or {}}, allow_val_change=True)
        return {"run_id": wrun.id, "keys": sorted(tagged)}
    finally:
        wrun.finish()
