"""Collect runs into a leaderboard: `python -m ssl_bench.report <dirs...> [--out DIR] [--all]`.

Every run below the given dirs is found (single runs and Hydra multirun jobs: a dir holding
.hydra/config.yaml or results.json). Written into --out (default: the first dir):

* report.md  - the leaderboard of the completed runs and, when a configuration ran with several
seeds,
               mean +- std over the seeds; also printed. Failed and incomplete runs are not rows:
               one line per kind names them, and `--all` lists every run with its status and error.
* report.csv - the rows of report.md, every column.
* report_accuracy.png - best kNN / online probe / offline linear accuracy per configuration, with
the
                        kNN accuracy of the random-init network as a marker.
* report_curves.png   - val/knn_top1 per epoch of each run (epoch 0: random init, from metrics.csv).
A plot with nothing to show is not written; report.md says why instead.

Columns: method, data and backbone always; besides them, the config keys whose resolved values (each
run's .hydra/config.yaml) differ between the runs shown. So an override that did not change a value,
or one Hydra rejected, makes no column; keys that never change what a run learns (where it writes,
how it logs, its name, its threads) are not compared; and keys that differ only together with
method/data/backbone (a method's own defaults, a recipe's choices) are named below the table instead
of being columns. `write_sweep_report(sweep_dir)` does the same from Python (e.g. at the end of a
multirun).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ssl_bench.errors import UserError

IDENTITY = ("method", "data", "backbone")  # always columns of their own
IDENTITY_KEYS = ("method.name", "data.name", "backbone.tag")  # the config keys those columns show
# Config keys (and subtrees) that never change what a run learns or measures: where it writes,
# whether it resumes or overwrites, its name, its logging, its thread count, what it returns to a
# sweeper. `recipe.*` only records where the values came from; the values themselves are compared
# key by key.
NOT_COMPARED = (
    "hydra",
    "output_root",
    "resume",
    "overwrite",
    "run_name",
    "progress_bar",
    "logger",
    "cpu_threads",
    "optimize_metric",
    "recipe",
    "data._target_",
    "data.root",
    "data.download",
    "trainer.log_every_n_steps",
)
_ABSENT = "<absent>"


# ---- finding and reading runs --------------------------------------------------------------------
def find_run_dirs(roots: list[Path]) -> list[Path]:
    found: set[Path] = set()
    for root in roots:
        for marker in ("results.json", ".hydra/config.yaml"):
            for f in root.rglob(marker):
                run = f.parent.parent if marker.startswith(".hydra") else f.parent
                if "wandb" not in run.relative_to(root).parts:
                    found.add(run)
    return sorted(found)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _resolve(node: Any) -> Any:
    """A config node as plain data with its interpolations resolved; an interpolation that cannot be
    resolved outside Hydra (e.g. ${hydra:...}) stays as written, and only that value."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    try:
        return OmegaConf.to_container(node, resolve=True)
    except Exception:  # noqa: BLE001 - resolve the rest key by key below
        pass
    raw = OmegaConf.to_container(node, resolve=False)
    if not isinstance(node, DictConfig):
        return raw
    out = {}
    for key in raw:
        try:
            value = node[key]
        except Exception:  # noqa: BLE001
            out[key] = raw[key]
            continue
        out[key] = _resolve(value) if isinstance(value, (DictConfig, ListConfig)) else value
    return out


def read_config(run: Path) -> dict[str, Any] | None:
    """The run's resolved .hydra/config.yaml as flat dotted keys (None: no readable config)."""
    path = run / ".hydra" / "config.yaml"
    if not path.is_file():
        return None
    from omegaconf import OmegaConf

    try:
        cfg = _resolve(OmegaConf.load(path))
    except Exception:  # noqa: BLE001 - a broken config must not stop the report
        return None
    return _flatten(cfg) if isinstance(cfg, dict) else None


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted leaves; a list of dicts (e.g. augmentation.views) is indexed, other lists stay one
    value."""
    if isinstance(d, dict) and d:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(d, list) and any(isinstance(x, dict) for x in d):
        out = {}
        for i, v in enumerate(d):
            out.update(_flatten(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: d} if prefix else {}


def read_curve(run: Path, key: str = "val/knn_top1") -> list[tuple[float, float]]:
    """(epoch, value) points of `key` from metrics.csv; the `_init` baseline at epoch 0, others at
    epoch+1 (Lightning logs validation at the end of epoch e, i.e. after e+1 epochs of training)."""
    path = run / "metrics.csv"
    if not path.is_file():
        return []
    points = []
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                for k, offset in ((f"{key}_init", None), (key, 1)):
                    v = row.get(k)
                    if v not in (None, ""):
                        epoch = 0 if offset is None else float(row.get("epoch") or 0) + offset
                        points.append((epoch, float(v)))
    except (OSError, ValueError, csv.Error):
        return points
    return points


def _log_error(run: Path) -> str | None:
    """The last exception line of a traceback in the run's job log, or None when there is none."""
    for log in sorted(run.glob("*.log")):
        try:
            text = log.read_text(errors="replace")[-20000:]
        except OSError:
            continue
        if "Traceback" not in text:
            continue
        tail = [ln for ln in text.rsplit("Traceback", 1)[1].splitlines()[1:] if ln.strip()]
        last = next((ln for ln in reversed(tail) if not ln[0].isspace()), None)
        return (last or "a traceback in " + log.name).strip()
    return None


def _offline_eval(run: Path, res: dict, mode: str) -> dict | None:
    """The newest offline eval of `mode`, as {top1, top5, settings, time, count}: the last such
    entry of results.json's `evals` list (ssl_bench.eval appends one per invocation, so the last is
    the newest; its numbers under `metrics`), else <run>/eval_<mode>.json (runs evaluated before
    that list existed). `count`: how many evals of the mode the run has."""
    evals = res.get("evals")
    found = []
    if isinstance(evals, list):
        for entry in evals:
            metrics = entry.get("metrics") if isinstance(entry, dict) else None
            if entry.get("mode") == mode and isinstance(metrics, dict) and "top1" in metrics:
                found.append(entry)
    if found:
        newest = found[-1]
        return {
            "top1": newest["metrics"].get("top1"),
            "top5": newest["metrics"].get("top5"),
            "settings": newest.get("settings"),
            "time": newest.get("time"),
            "count": len(found),
        }
    single = _read_json(run / f"eval_{mode}.json")
    if not single or single.get("top1") is None:
        return None
    keys = ("top1", "top5", "settings", "time")
    return {**{k: single.get(k) for k in keys}, "count": 1}


def _status(run: Path, res: dict | None, curve: list) -> tuple[str, str | None]:
    if res is not None:
        return str(res.get("status") or "unknown"), res.get("error")
    if (run / "results.json").is_file():
        return "failed", "results.json is unreadable"
    err = _log_error(run)
    if err:
        return "failed", err
    epochs = [e for e, _ in curve if e > 0]
    if epochs:
        return "incomplete", (
            f"no results.json after {int(max(epochs))} logged epoch(s): killed, or still running"
        )
    return "incomplete", (
        "no results.json and no finished epoch: stopped before training (e.g. a rejected "
        "command), or still starting"
    )


def read_run(run: Path, root: Path | None = None) -> dict[str, Any]:
    """One row: identity, status (and error), metrics, the resolved config."""
    res = _read_json(run / "results.json")
    flat = read_config(run)
    cfg = flat or {}
    curve = read_curve(run)
    status, error = _status(run, res, curve)
    res = res or {}
    train_epochs = [e for e, _ in curve if e > 0]
    best, final = res.get("best") or {}, res.get("final") or {}
    linear, knn_eval = _offline_eval(run, res, "linear") or {}, _offline_eval(run, res, "knn") or {}
    epochs = res.get("epochs")
    if epochs is None and train_epochs:
        epochs = int(max(train_epochs))
    return {
        "run": str(run.relative_to(root))
        if root and run != root and root in run.parents
        else run.name,
        "path": str(run),
        "status": status,
        "error": error,
        "method": res.get("method") or cfg.get("method.name"),
        "data": res.get("data") or cfg.get("data.name"),
        "backbone": res.get("backbone") or cfg.get("backbone.tag") or cfg.get("backbone.name"),
        "seed": res.get("seed", cfg.get("seed")),
        "epochs": epochs,
        "knn_top1_best": best.get(
            "val/knn_top1", max((v for e, v in curve if e > 0), default=None)
        ),
        "knn_top1_final": final.get(
            "val/knn_top1", next((v for e, v in reversed(curve) if e > 0), None)
        ),
        "probe_top1_best": best.get("val/probe_top1"),
        "probe_top1_final": final.get("val/probe_top1"),
        "knn_top1_init": res.get("knn_top1_init", next((v for e, v in curve if e == 0), None)),
        "linear_top1": linear.get("top1"),
        "linear_top5": linear.get("top5"),
        "linear_settings": linear.get("settings"),
        "linear_time": linear.get("time"),
        "linear_evals": linear.get("count", 0),
        "knn_eval_top1": knn_eval.get("top1"),
        "wall_time_s": res.get("wall_time_s"),
        "images_per_sec": res.get("images_per_sec"),
        "_curve": curve,
        "_config": flat,
    }


# ---- which configs differ ------------------------------------------------------------------------
def _compared(key: str) -> bool:
    return key not in IDENTITY_KEYS and not any(
        key == p or key.startswith(p + ".") for p in NOT_COMPARED
    )


def _canon(value: Any) -> str:
    return value if value is _ABSENT else json.dumps(value, sort_keys=True, default=str)


def _identity(row: dict) -> tuple:
    return tuple(str(row[k]) for k in IDENTITY)


def differing_keys(rows: list[dict]) -> tuple[list[str], list[str]]:
    """(columns, by_identity) over the rows' resolved configs. A compared key whose value differs
    between two runs of the same method/data/backbone is a column; one that differs only where
    method, data or backbone differ (their own defaults, their recipe) is in by_identity. Rows
    without a config are left out."""
    pool = [r for r in rows if r["_config"] is not None]
    if len(pool) < 2:
        return [], []
    keys = sorted(
        {k for r in pool for k in r["_config"] if _compared(k)}, key=lambda k: (k == "seed", k)
    )
    columns, by_identity = [], []
    for key in keys:
        values = [_canon(r["_config"].get(key, _ABSENT)) for r in pool]
        if len(set(values)) < 2:
            continue
        within: dict[tuple, set] = {}
        for r, v in zip(pool, values):
            within.setdefault(_identity(r), set()).add(v)
        (columns if any(len(s) > 1 for s in within.values()) else by_identity).append(key)
    return columns, by_identity


def swept_keys(rows: list[dict]) -> list[str]:
    """The config keys that are columns of these rows (see differing_keys)."""
    return differing_keys(rows)[0]


def short_names(keys: list[str]) -> dict[str, str]:
    """The shortest dotted suffix of each key that no other key shares (optimizer.lr -> lr), never
    starting with a list index (augmentation.views.1.solarize -> solarize, views.0.hflip when two
    views differ)."""
    names = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = parts[-n:]
            clash = any(o != key and o.split(".")[-n:] == suffix for o in keys)
            if not clash and not suffix[0].isdigit():
                break
        names[key] = ".".join(suffix)
    return names


def _value(row: dict, key: str) -> Any:
    if key == "seed" and row.get("seed") is not None:
        return row["seed"]
    return (row["_config"] or {}).get(key, _ABSENT if row["_config"] is not None else None)


def _show(value: Any, limit: int | None = None) -> str:
    if value is None or value is _ABSENT or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (list, dict)):
        text = json.dumps(value, separators=(",", ":"))
    else:
        text = str(value)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


class Labels:
    """Names a run's configuration by what differs between the runs shown: the method/data/backbone
    that vary and the column keys (short names) other than the seed; e.g. "byol lr=0.3"."""

    def __init__(self, rows: list[dict], columns: list[str]):
        self.varying = [k for k in IDENTITY if len({str(r[k]) for r in rows}) > 1]
        self.params = [k for k in columns if k != "seed"]
        self.names = short_names(columns)

    def key(self, row: dict) -> tuple:
        return _identity(row) + tuple(_canon(_value(row, k)) for k in self.params)

    def __call__(self, row: dict) -> str:
        parts = [str(row[k]) for k in self.varying]
        parts += [f"{self.names[k]}={_show(_value(row, k), 20)}" for k in self.params]
        return " ".join(parts) if parts else " ".join(str(row[k]) for k in IDENTITY)


# ---- tables --------------------------------------------------------------------------------------
def _fmt(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


METRIC_COLS = [
    ("knn_top1_init", "kNN init"),
    ("knn_top1_best", "kNN best"),
    ("knn_top1_final", "kNN final"),
    ("probe_top1_best", "probe best"),
    ("probe_top1_final", "probe final"),
    ("linear_top1", "linear"),
    ("knn_eval_top1", "kNN eval"),
    ("wall_time_s", "time s"),
    ("images_per_sec", "img/s"),
]
AGG_METRICS = [
    "knn_top1_init",
    "knn_top1_best",
    "knn_top1_final",
    "probe_top1_best",
    "linear_top1",
    "wall_time_s",
    "images_per_sec",
]
_ONE_DIGIT = ("wall_time_s", "images_per_sec")


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = [
        "| " + " | ".join(map(esc, header)) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines)


def aggregate(rows: list[dict], labels: Labels) -> list[dict]:
    """Mean +- std over seeds of the completed runs, per configuration (everything but the seed);
    best kNN first."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["status"] == "completed":
            groups.setdefault(labels.key(r), []).append(r)
    out = []
    for members in groups.values():
        agg = {
            "config": labels(members[0]),
            "method": members[0]["method"],
            "n": len(members),
            "seeds": sorted((m["seed"] for m in members if m["seed"] is not None), key=str),
            "runs": [m["run"] for m in members],
        }
        for m in AGG_METRICS:
            agg[m] = _mean_std([x[m] for x in members])
        out.append(agg)
    return sorted(
        out,
        key=lambda a: (
            -(a["knn_top1_best"][0] if a["knn_top1_best"][0] is not None else -1),
            a["config"],
        ),
    )


def _names(rows: list[dict], limit: int = 8) -> str:
    shown = ", ".join(f"`{r['run']}`" for r in rows[:limit])
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def _grouped(keys: list[str]) -> list[str]:
    """Keys for a sentence; several under one two-level prefix are one: `augmentation.views.*` (22
    keys)."""
    groups: dict[str, list[str]] = {}
    for k in keys:
        groups.setdefault(".".join(k.split(".")[:2]) if k.count(".") > 1 else k, []).append(k)
    return [
        f"`{ks[0]}`" if len(ks) == 1 else f"`{prefix}.*` ({len(ks)} keys)"
        for prefix, ks in groups.items()
    ]


def _leaderboard(shown: list[dict], columns: list[str], show_all: bool) -> tuple[list, list]:
    """Header and body of the leaderboard table: identity, epochs, differing keys, metrics (and the
    status and error with show_all)."""
    metrics = [(k, h) for k, h in METRIC_COLS if any(r[k] is not None for r in shown)]
    header = ["run"] + (["status"] if show_all else []) + list(IDENTITY) + ["epochs"] + columns
    header += [h for _, h in metrics]
    body = []
    for r in shown:
        status = []
        if show_all:
            status = [r["status"] if r["status"] == "completed" else f"**{r['status'].upper()}**"]
        body.append(
            [r["run"]]
            + status
            + [_fmt(r[k]) for k in IDENTITY]
            + [_fmt(r["epochs"])]
            + [_show(_value(r, k), 24) for k in columns]
            + [_fmt(r[k], 1 if k in _ONE_DIGIT else 2) for k, _ in metrics]
        )
    if show_all:
        header.append("error")
        for r, cells in zip(shown, body):
            cells.append(_show(r["error"], 160) if r["status"] != "completed" else "")
    return header, body


def _notes(shown: list[dict], hidden: list[dict], by_identity: list[str]) -> list[str]:
    """The lines under the table: runs not shown, keys that follow method/data/backbone, no linear
    eval yet."""
    kinds: dict[str, list[dict]] = {}
    for r in sorted(hidden, key=lambda r: r["run"]):
        kinds.setdefault(r["status"], []).append(r)
    notes = [
        f"{len(rs)} {kind} run{'s' if len(rs) > 1 else ''} not shown: {_names(rs)}; --all lists "
        "them with their errors."
        for kind, rs in sorted(kinds.items())
    ]
    # keys under method.* / data.* / backbone.* obviously follow those columns; the others
    # (optimizer, views, schedule: a method's or dataset's recipe) are worth naming
    recipe_keys = _grouped([k for k in by_identity if k.split(".")[0] not in IDENTITY])
    if recipe_keys:
        notes.append(
            "Differ only where method/data/backbone differ (their recipes), so no column: "
            + ", ".join(recipe_keys[:8])
            + (f" and {len(recipe_keys) - 8} more" if len(recipe_keys) > 8 else "")
            + "."
        )
    if shown and not any(r["linear_top1"] is not None for r in shown):
        notes.append(
            "No offline linear eval yet (python -m ssl_bench.eval mode=linear ckpt=<run dir>)."
        )
    elif shown:
        several = [r for r in shown if r["linear_evals"] > 1]
        notes.append(
            "linear: each run's newest offline linear eval (report.csv: its time and settings)"
            + (
                f"; {_names(several)} {'has' if len(several) == 1 else 'have'} several, all "
                "listed in the run's results.json `evals`."
                if several
                else "."
            )
        )
    return notes


def _seed_table(agg: list[dict]) -> list[str]:
    """The "mean ± std over seeds" section, when some configuration ran with several seeds."""
    if not any(a["n"] > 1 for a in agg):
        return []
    agg_metrics = [m for m in AGG_METRICS if any(a[m][0] is not None for a in agg)]
    header = ["configuration", "n", "seeds"] + [dict(METRIC_COLS)[m] for m in agg_metrics]
    body = []
    for a in agg:
        cells = []
        for m in agg_metrics:
            mean, std = a[m]
            d = 1 if m in _ONE_DIGIT else 2
            cells.append("-" if mean is None else f"{mean:.{d}f} ± {std:.{d}f}")
        body.append([a["config"], str(a["n"]), ",".join(map(str, a["seeds"]))] + cells)
    return ["", "## Mean ± std over seeds", "", _markdown(header, body)]


def build_tables(rows: list[dict], show_all: bool = False) -> dict[str, Any]:
    """The leaderboard text and what it is made of: the rows shown (completed ones, or every run
    with show_all), the hidden ones, the column keys and the configuration labels."""
    shown = list(rows) if show_all else [r for r in rows if r["status"] == "completed"]
    hidden = [] if show_all else [r for r in rows if r["status"] != "completed"]
    columns, by_identity = differing_keys(shown)
    labels = Labels(shown, columns)
    best = lambda r: r["knn_top1_best"] if r["knn_top1_best"] is not None else -1  # noqa: E731
    shown.sort(key=lambda r: (r["status"] != "completed", -best(r), r["run"]))
    n_done = sum(r["status"] == "completed" for r in rows)
    title = (
        f"## All runs ({len(rows)}; {n_done} completed)"
        if show_all
        else f"## Leaderboard ({n_done} completed runs)"
    )
    parts = [title, ""]
    parts.append(
        _markdown(*_leaderboard(shown, columns, show_all)) if shown else "No completed runs."
    )
    notes = _notes(shown, hidden, by_identity)
    if notes:
        parts += [""] + [f"- {n}" for n in notes]
    agg = aggregate(shown, labels)
    parts += _seed_table(agg)
    return {
        "text": "\n".join(parts),
        "shown": shown,
        "hidden": hidden,
        "columns": columns,
        "by_identity": by_identity,
        "labels": labels,
        "aggregate": agg,
    }


# ---- plots ---------------------------------------------------------------------------------------
ACC_SERIES = [
    ("knn_top1_init", "kNN top-1 at random init (epoch 0)"),
    ("knn_top1_best", "kNN top-1 (best)"),
    ("probe_top1_best", "online probe top-1 (best)"),
    ("linear_top1", "offline linear top-1"),
]
# fixed colours, whichever series a report has; the random-init baseline grey, next to what training
# reached
_COLOURS = {
    "knn_top1_init": "0.72",
    "knn_top1_best": "C0",
    "probe_top1_best": "C1",
    "linear_top1": "C2",
}


def accuracy_plot_data(agg: list[dict]) -> dict[str, Any]:
    """What the accuracy plot draws: one slot per configuration (aggregate's order) and per series
    (the random-init kNN first) the (slot, mean, std) of the configurations that have a value - a
    missing value is no bar, not a zero-height one. `reason` says why there is nothing to draw."""
    series = []
    for key, label in ACC_SERIES:
        points = [
            (i, a[key][0], a[key][1] or 0.0) for i, a in enumerate(agg) if a[key][0] is not None
        ]
        if points:
            series.append({"key": key, "label": label, "points": points})
    reason = None
    if not agg:
        reason = "no completed runs"
    elif not any(ser["key"] != "knn_top1_init" for ser in series):
        reason = "no completed run has a kNN, online probe or offline linear accuracy"
    return {"labels": [a["config"] for a in agg], "series": series, "reason": reason}


def curve_plot_data(rows: list[dict], labels: Callable[[dict], str]) -> dict[str, Any]:
    """What the curves plot draws: per run with at least one finished epoch its (epoch,
    val/knn_top1) points, epoch 0 being the random-init kNN. `reason` says why there is nothing to
    draw."""
    series = []
    for r in rows:
        pts = sorted(r["_curve"])
        if r["knn_top1_init"] is not None and not any(e == 0 for e, _ in pts):
            pts = [(0.0, float(r["knn_top1_init"]))] + pts
        if any(e > 0 for e, _ in pts):
            series.append(
                {"run": r["run"], "label": labels(r), "status": r["status"], "points": pts}
            )
    reason = None
    if not rows:
        reason = "no runs to plot"
    elif not series:
        reason = (
            f"none of the {len(rows)} run(s) shown logged val/knn_top1 for a finished epoch in its "
            "metrics.csv (trainer.fast_dev_run=true, for one, logs none)"
        )
    return {"series": series, "reason": reason}


def _plt():
    try:
        import matplotlib
    except ImportError:
        raise UserError(
            "the report's plots need matplotlib. Fix: pip install matplotlib."
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _wrap(label: str, width: int = 34) -> str:
    return (
        "\n".join(textwrap.wrap(label, width, break_long_words=True, break_on_hyphens=False))
        or label
    )


def accuracy_figure(data: dict[str, Any]):
    """Horizontal bars (one row per configuration, so long labels never overlap), sized to its
    labels."""
    plt = _plt()
    labels = [_wrap(lb) for lb in data["labels"]]
    n, s = len(labels), max(1, len(data["series"]))
    lines = max((lb.count("\n") + 1 for lb in labels), default=1)
    slot = max(0.3 * s + 0.2, 0.17 * lines + 0.15)
    longest = max((len(line) for lb in labels for line in lb.split("\n")), default=10)
    fig, ax = plt.subplots(
        figsize=(5.5 + 0.07 * longest, 1.9 + n * slot), dpi=110, layout="constrained"
    )
    bar = 0.8 / s
    top = 0.0
    for j, ser in enumerate(data["series"]):
        ys = [i + (j - (s - 1) / 2) * bar for i, _, _ in ser["points"]]
        means = [m for _, m, _ in ser["points"]]
        stds = [sd for _, _, sd in ser["points"]]
        ax.barh(
            ys, means, bar, xerr=stds, capsize=2, label=ser["label"], color=_COLOURS[ser["key"]]
        )
        for y, m, sd in zip(ys, means, stds):
            ax.text(m + sd + 0.6, y, f"{m:.1f}", va="center", fontsize=7)
            top = max(top, m + sd)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_ylim(n - 0.5, -0.5)  # best configuration on top
    ax.set_xlim(0, top * 1.1 + 3 if top > 0 else 100.0)  # room for the value written after each bar
    ax.set_xlabel("top-1 accuracy (%)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Accuracy per configuration (bar: mean over seeds, whisker: std)", fontsize=10)
    fig.legend(loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    return fig


def plot_accuracy(data: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    fig = accuracy_figure(data)
    fig.savefig(path)
    plt.close(fig)
    return path


def _legend_entry(ser: dict, counts: dict[str, int]) -> str:
    if ser["status"] != "completed":
        return _wrap(f"{ser['run']} ({ser['status']})", 40)
    n = counts[ser["label"]]
    return _wrap(ser["label"] + (f" ({n} runs)" if n > 1 else ""), 40)


def curves_figure(data: dict[str, Any]):
    """kNN top-1 per epoch; one colour and one legend entry per configuration (its seeds share
    them), dashed for a run that did not complete."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    counts: dict[str, int] = {}
    for ser in data["series"]:
        counts[ser["label"]] = counts.get(ser["label"], 0) + 1
    entries = {_legend_entry(ser, counts) for ser in data["series"]}
    legend_lines = sum(
        e.count("\n") + 1.4 for e in entries
    )  # tall enough for the legend beside the axes
    fig, ax = plt.subplots(
        figsize=(8.5, max(4.6, 1.0 + 0.15 * legend_lines)), dpi=110, layout="constrained"
    )
    colours: dict[str, Any] = {}
    legend_done: set[str] = set()
    palette = plt.get_cmap("tab10" if len(counts) <= 10 else "tab20")
    for ser in data["series"]:
        colour = colours.setdefault(ser["label"], palette(len(colours) % palette.N))
        entry = _legend_entry(ser, counts)
        xs, ys = zip(*ser["points"])
        ax.plot(
            xs,
            ys,
            "-" if ser["status"] == "completed" else "--",
            marker="o",
            markersize=3,
            color=colour,
            label=entry if entry not in legend_done else "_nolegend_",
        )
        legend_done.add(entry)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (0 = random init)")
    ax.set_ylabel("val/knn_top1 (%)")
    ax.set_title("kNN top-1 during training", fontsize=10)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=7, frameon=False)
    return fig


def plot_curves(data: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    fig = curves_figure(data)
    fig.savefig(path)
    plt.close(fig)
    return path


# ---- entry points --------------------------------------------------------------------------------
def _collect_rows(dirs: list[str | Path]) -> tuple[list[Path], list[dict]]:
    """The roots given and one row per run found below them; a bad root or no run is a UserError."""
    roots = [Path(d).expanduser() for d in dirs]
    if not roots:
        raise UserError(
            "no directories given. Fix: python -m ssl_bench.report <run or sweep dir> [...]"
        )
    for root in roots:
        if not root.is_dir():
            raise UserError(
                f"report: '{root}' is not a directory. Fix: pass run or sweep dirs, e.g. "
                "outputs/multirun/<date>/<time> or outputs/runs."
            )
    runs = find_run_dirs(roots)
    if not runs:
        raise UserError(
            f"report: no runs below {', '.join(map(str, roots))} (looked for results.json and "
            ".hydra/config.yaml). Fix: pass the dir of a run or of a multirun sweep."
        )
    base = roots[0] if len(roots) == 1 else None
    rows = [
        read_run(r, base if base is not None else next((x for x in roots if x in r.parents), None))
        for r in runs
    ]
    return roots, rows


def _write_plots(out_dir: Path, acc_data: dict, curve_data: dict) -> tuple[dict, list[str]]:
    """The two plots (or, where one cannot be drawn, the reason, and no stale file of an earlier
    report); returns the paths written (None where not) and the report's lines about them."""
    written: dict[str, Path | None] = {}
    lines = []
    for name, data, plot, title in (
        ("report_accuracy.png", acc_data, plot_accuracy, "accuracy"),
        ("report_curves.png", curve_data, plot_curves, "kNN curves"),
    ):
        path = out_dir / name
        if data["reason"] is None:
            written[name] = plot(data, path)
            lines.append(f"![{title}]({name})")
        else:
            if path.is_file():  # an earlier report's plot would show what this one does not
                path.unlink()
            written[name] = None
            lines.append(f"No {title} plot: {data['reason']}.")
    return written, lines


def _write_csv(path: Path, shown: list[dict], columns: list[str]) -> None:
    """report.csv: one row per run shown, every metric, the differing keys and the linear
    settings."""
    fields = ["run", "path", "status", "error", *IDENTITY, "seed", "epochs", *columns]
    fields += [*(k for k, _ in METRIC_COLS), "linear_top5", "linear_settings", "linear_time"]
    fields += ["linear_evals"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(fields)))
        w.writeheader()
        for r in shown:
            row = {k: r.get(k) for k in w.fieldnames}
            row.update({k: _show(_value(r, k)) for k in columns})
            if r["linear_settings"] is not None:
                row["linear_settings"] = json.dumps(
                    r["linear_settings"], sort_keys=True, default=str
                )
            w.writerow(row)


def make_report(
    dirs: list[str | Path],
    out: str | Path | None = None,
    quiet: bool = False,
    show_all: bool = False,
) -> dict[str, Any]:
    """The report of every run below `dirs`: report.md (leaderboard, notes, seed table, plots),
    report.csv and the two plots, written into `out` (default: the first dir)."""
    roots, rows = _collect_rows(dirs)
    tables = build_tables(rows, show_all=show_all)
    shown, columns = tables["shown"], tables["columns"]
    acc_data = accuracy_plot_data(tables["aggregate"])
    curve_data = curve_plot_data(shown, tables["labels"])
    out_dir = Path(out).expanduser() if out else roots[0]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        written, plot_lines = _write_plots(out_dir, acc_data, curve_data)
        text = tables["text"] + "\n\n" + "\n\n".join(plot_lines)
        md = out_dir / "report.md"
        md.write_text(f"# ssl_bench report: {', '.join(map(str, roots))}\n\n{text}\n")
        csv_path = out_dir / "report.csv"
        _write_csv(csv_path, shown, columns)
    except OSError as err:
        raise UserError(
            f"report: cannot write into '{out_dir}' ({err.strerror or err}). Fix: pass --out <dir>."
        ) from None
    if not quiet:
        print(text)
        print(
            "\nwrote "
            + ", ".join(str(p) for p in (md, csv_path, *written.values()) if p is not None)
        )
    return {
        "markdown": md,
        "csv": csv_path,
        "accuracy_png": written["report_accuracy.png"],
        "curves_png": written["report_curves.png"],
        "rows": shown,
        "hidden": tables["hidden"],
        "swept": columns,
        "by_identity": tables["by_identity"],
        "accuracy_data": acc_data,
        "curve_data": curve_data,
        "text": text,
    }


def write_sweep_report(sweep_dir: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Leaderboard + plots of one multirun sweep dir, written into it (or `out`); returns the
    paths."""
    return make_report([sweep_dir], out=out, quiet=True)


def main(argv: list[str] | None = None) -> int:
    from ssl_bench.errors import report_user_error

    parser = argparse.ArgumentParser(
        prog="python -m ssl_bench.report", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("dirs", nargs="+", help="run dirs or sweep dirs (searched recursively)")
    parser.add_argument(
        "--out", default=None, help="where report.md/.csv/.png go (default: the first dir)"
    )
    parser.add_argument(
        "--all",
        action="store_true",
        dest="show_all",
        help="list failed and incomplete runs too, with their status and error",
    )
    args = parser.parse_args(argv)
    try:
        make_report(args.dirs, args.out, show_all=args.show_all)
    except UserError as err:
        report_user_error(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
