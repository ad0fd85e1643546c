"""Collect runs into a leaderboard: `python -m ssl_bench.report <dirs...> [--out DIR]`.

Every run below the given dirs is found (single runs and Hydra multirun jobs: a dir holding
.hydra/config.yaml or results.json). Written into --out (default: the first dir):

* report.md  - a table of every run (failed or incomplete runs flagged, never dropped) and, when a
               configuration ran with several seeds, mean +- std over the seeds; also printed.
* report.csv - one row per run, every column.
* report_accuracy.png - best kNN / online probe / offline linear accuracy per configuration.
* report_curves.png   - val/knn_top1 per epoch of each run (from metrics.csv).

Swept parameters are the override keys (.hydra/overrides.yaml) whose values differ between runs;
without overrides files, the config leaves that differ. `write_sweep_report(sweep_dir)` does the
same from Python (e.g. at the end of a multirun).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from ssl_bench.errors import UserError

SHOWN = ("method", "data", "backbone")                   # own columns already
NOT_SWEPT = ("hydra", "output_root", "resume", "run_name", "progress_bar", "logger")
REPORT_FILES = ("report.md", "report.csv", "report_accuracy.png", "report_curves.png")


# ---- finding and reading runs -------------------------------------------------------------------------
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
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: json.dumps(d) if isinstance(d, list) else d}


def _read_config(run: Path) -> dict:
    path = run / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.load(path)
        return OmegaConf.to_container(cfg, resolve=False)
    except Exception:  # noqa: BLE001 - a broken config must not stop the report
        return {}


def _read_overrides(run: Path) -> dict[str, str] | None:
    path = run / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    from omegaconf import OmegaConf

    try:
        items = OmegaConf.to_container(OmegaConf.load(path)) or []
    except Exception:  # noqa: BLE001
        return None
    out = {}
    for item in items:
        key, _, value = str(item).partition("=")
        out[key.lstrip("+~")] = value
    return out


def read_curve(run: Path, key: str = "val/knn_top1") -> list[tuple[float, float]]:
    """(epoch, value) points of `key` from metrics.csv; the `_init` baseline at epoch 0, others at epoch+1."""
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


def _failed_log(run: Path) -> bool:
    for log in run.glob("*.log"):
        try:
            text = log.read_text(errors="replace")[-20000:]
        except OSError:
            continue
        if "Traceback" in text or "Error" in text:
            return True
    return False


def read_run(run: Path, root: Path | None = None) -> dict[str, Any]:
    """One row: identity, status, metrics, swept-parameter sources."""
    res = _read_json(run / "results.json")
    cfg = _read_config(run)
    linear = _read_json(run / "eval_linear.json") or {}
    knn_eval = _read_json(run / "eval_knn.json") or {}
    if res is None:
        status = "failed" if _failed_log(run) else "incomplete"
        res = {}
    else:
        status = str(res.get("status", "unknown"))
    curve = read_curve(run)
    train_epochs = [e for e, _ in curve if e > 0]
    c = lambda *keys: _dig(cfg, *keys)  # noqa: E731
    best, final = res.get("best") or {}, res.get("final") or {}
    return {
        "run": str(run.relative_to(root)) if root and run != root and root in run.parents else run.name,
        "path": str(run), "status": status,
        "method": res.get("method") or c("method", "name"), "data": res.get("data") or c("data", "name"),
        "backbone": res.get("backbone") or _backbone_tag(cfg),
        "seed": res.get("seed", c("seed")),
        "epochs": res.get("epochs") if res.get("epochs") is not None else (int(max(train_epochs)) if train_epochs else None),
        "knn_top1_best": best.get("val/knn_top1", max((v for e, v in curve if e > 0), default=None)),
        "knn_top1_final": final.get("val/knn_top1", next((v for e, v in reversed(curve) if e > 0), None)),
        "probe_top1_best": best.get("val/probe_top1"), "probe_top1_final": final.get("val/probe_top1"),
        "knn_top1_init": res.get("knn_top1_init", next((v for e, v in curve if e == 0), None)),
        "linear_top1": linear.get("top1"), "linear_top5": linear.get("top5"), "knn_eval_top1": knn_eval.get("top1"),
        "wall_time_s": res.get("wall_time_s"), "images_per_sec": res.get("images_per_sec"),
        "_curve": curve, "_overrides": _read_overrides(run), "_config": _flatten(cfg),
    }


def _dig(d: dict, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _backbone_tag(cfg: dict) -> str | None:
    tag = _dig(cfg, "backbone", "tag")
    if isinstance(tag, str) and "${" in tag:  # unresolved interpolation, e.g. ${backbone.name}_narrow
        return tag.replace("${backbone.name}", str(_dig(cfg, "backbone", "name")))
    return tag or _dig(cfg, "backbone", "name")


def swept_keys(rows: list[dict]) -> list[str]:
    """Keys whose values differ between runs: from the overrides when any run has them, else configs."""
    if len(rows) < 2:
        return []
    with_ov = [r for r in rows if r["_overrides"] is not None]
    source = "_overrides" if with_ov else "_config"
    pool = with_ov or rows
    keys = sorted({k for r in pool for k in r[source]})
    out = []
    for k in keys:
        top = k.split(".")[0]
        if top in NOT_SWEPT or k in SHOWN or (source == "_config" and top in SHOWN):
            continue
        if len({str(r[source].get(k)) for r in pool}) > 1:
            out.append(k)
    return out


# ---- tables --------------------------------------------------------------------------------------------
def _fmt(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _param(row: dict, key: str):
    if key == "seed":
        return row.get("seed")
    src = row["_overrides"] if row["_overrides"] is not None else row["_config"]
    v = src.get(key)
    return v if v is not None else row["_config"].get(key)


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


RUN_COLS = [("status", "status"), ("method", "method"), ("data", "data"), ("backbone", "backbone"),
            ("epochs", "epochs")]
METRIC_COLS = [("knn_top1_best", "kNN best"), ("knn_top1_final", "kNN final"), ("probe_top1_best", "probe best"),
               ("probe_top1_final", "probe final"), ("linear_top1", "linear"), ("knn_top1_init", "kNN init"),
               ("wall_time_s", "time s"), ("images_per_sec", "img/s")]
AGG_METRICS = ["knn_top1_best", "knn_top1_final", "probe_top1_best", "linear_top1", "wall_time_s", "images_per_sec"]


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _config_label(row: dict, params: list[str]) -> str:
    extra = ",".join(f"{k.split('.')[-1]}={_param(row, k)}" for k in params if k != "seed")
    base = f"{row['method']}-{row['data']}-{row['backbone']}"
    return base + (f" [{extra}]" if extra else "")


def aggregate(rows: list[dict], params: list[str]) -> list[dict]:
    """Mean +- std over seeds of completed runs, per configuration (everything but the seed)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r["status"] == "completed":
            groups.setdefault(_config_label(r, params), []).append(r)
    out = []
    for label, members in groups.items():
        agg = {"config": label, "method": members[0]["method"], "n": len(members),
               "seeds": sorted((m["seed"] for m in members if m["seed"] is not None), key=str)}
        for m in AGG_METRICS:
            agg[m] = _mean_std([x[m] for x in members])
        out.append(agg)
    return sorted(out, key=lambda a: -(a["knn_top1_best"][0] or -1))


def build_tables(rows: list[dict]) -> tuple[str, list[dict], list[str]]:
    params = swept_keys(rows)
    ordered = sorted(rows, key=lambda r: (r["status"] != "completed", -(r["knn_top1_best"] or -1), r["run"]))
    header = ["run"] + [h for _, h in RUN_COLS] + params + [h for _, h in METRIC_COLS]
    body = []
    for r in ordered:
        flag = r["status"] if r["status"] == "completed" else f"**{r['status'].upper()}**"
        body.append([r["run"], flag] + [_fmt(r[k]) for k, _ in RUN_COLS[1:]] + [_fmt(_param(r, p)) for p in params]
                    + [_fmt(r[k], 1 if k in ("wall_time_s", "images_per_sec") else 2) for k, _ in METRIC_COLS])
    parts = [f"## Runs ({len(rows)}; {sum(r['status'] == 'completed' for r in rows)} completed)", "",
             _markdown(header, body)]
    flagged = [r for r in ordered if r["status"] != "completed"]
    if flagged:
        parts += ["", "Not completed (no results.json, or status != completed): "
                  + ", ".join(f"`{r['run']}` ({r['status']})" for r in flagged)]
    agg = aggregate(rows, params)
    if any(a["n"] > 1 for a in agg):
        ah = ["configuration", "n", "seeds"] + [dict(METRIC_COLS)[m] for m in AGG_METRICS]
        ab = []
        for a in agg:
            cells = []
            for m in AGG_METRICS:
                mean, std = a[m]
                d = 1 if m in ("wall_time_s", "images_per_sec") else 2
                cells.append("-" if mean is None else f"{mean:.{d}f} ± {std:.{d}f}")
            ab.append([a["config"], str(a["n"]), ",".join(map(str, a["seeds"]))] + cells)
        parts += ["", "## Mean ± std over seeds", "", _markdown(ah, ab)]
    return "\n".join(parts), ordered, params


# ---- plots ---------------------------------------------------------------------------------------------
def _plt():
    try:
        import matplotlib
    except ImportError:
        raise UserError("the report's plots need matplotlib. Fix: pip install matplotlib.") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy(rows: list[dict], params: list[str], path: Path) -> Path:
    """Grouped bars per configuration: best kNN, best online probe, offline linear (mean, std as error bar)."""
    plt = _plt()
    agg = aggregate(rows, params)
    series = [("knn_top1_best", "kNN top-1 (best)"), ("probe_top1_best", "online probe top-1 (best)"),
              ("linear_top1", "linear eval top-1")]
    series = [s for s in series if any(a[s[0]][0] is not None for a in agg)] or series[:1]
    fig, ax = plt.subplots(figsize=(max(6.5, 1.4 * len(agg) + 2), 4.5), dpi=110)
    width = 0.8 / len(series)
    for i, (key, label) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(agg))]
        means = [a[key][0] if a[key][0] is not None else 0.0 for a in agg]
        stds = [a[key][1] or 0.0 for a in agg]
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=label)
    ax.set_xticks(range(len(agg)))
    ax.set_xticklabels([a["config"] for a in agg], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy per configuration (mean ± std over seeds)" if agg else "No completed runs", fontsize=10)
    if agg:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_curves(rows: list[dict], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    drawn = 0
    for r in rows:
        pts = r["_curve"]
        if not pts:
            continue
        xs, ys = zip(*pts)
        style = "-" if r["status"] == "completed" else "--"
        ax.plot(xs, ys, style, marker="o", markersize=3, label=f"{r['run']}" + ("" if r["status"] == "completed"
                                                                               else f" ({r['status']})"))
        drawn += 1
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (0 = random init)")
    ax.set_ylabel("val/knn_top1 (%)")
    ax.set_title("kNN top-1 during training" if drawn else "No metrics.csv with val/knn_top1")
    if drawn:
        ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ---- entry points --------------------------------------------------------------------------------------
def make_report(dirs: list[str | Path], out: str | Path | None = None, quiet: bool = False) -> dict[str, Any]:
    roots = [Path(d).expanduser() for d in dirs]
    if not roots:
        raise UserError("no directories given. Fix: python -m ssl_bench.report <run or sweep dir> [...]")
    for root in roots:
        if not root.is_dir():
            raise UserError(f"report: '{root}' is not a directory. Fix: pass run or sweep dirs, e.g. "
                            "outputs/multirun/<date>/<time> or outputs/runs.")
    runs = find_run_dirs(roots)
    if not runs:
        raise UserError(f"report: no runs below {', '.join(map(str, roots))} (looked for results.json and "
                        ".hydra/config.yaml). Fix: pass the dir of a run or of a multirun sweep.")
    base = roots[0] if len(roots) == 1 else None
    rows = [read_run(r, base if base is not None else next((x for x in roots if x in r.parents or x == r), None))
            for r in runs]
    text, ordered, params = build_tables(rows)
    out_dir = Path(out).expanduser() if out else roots[0]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        md = out_dir / "report.md"
        md.write_text(f"# ssl_bench report: {', '.join(map(str, roots))}\n\n{text}\n\n"
                      "![accuracy](report_accuracy.png)\n\n![kNN curves](report_curves.png)\n")
        csv_path = out_dir / "report.csv"
        fields = ["run", "path", "status", "method", "data", "backbone", "seed", "epochs"] + params + \
            [k for k, _ in METRIC_COLS if k not in ("wall_time_s", "images_per_sec")] + \
            ["linear_top5", "knn_eval_top1", "wall_time_s", "images_per_sec"]
        with open(csv_path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(fields)))
            w.writeheader()
            for r in ordered:
                w.writerow({k: (_param(r, k) if k in params else r.get(k)) for k in w.fieldnames})
        acc = plot_accuracy(rows, params, out_dir / "report_accuracy.png")
        curves = plot_curves(ordered, out_dir / "report_curves.png")
    except OSError as err:
        raise UserError(f"report: cannot write into '{out_dir}' ({err.strerror or err}). Fix: pass --out <dir>.") \
            from None
    if not quiet:
        print(text)
        print(f"\nwrote {md}, {csv_path}, {acc}, {curves}")
    return {"markdown": md, "csv": csv_path, "accuracy_png": acc, "curves_png": curves, "rows": ordered,
            "swept": params, "text": text}


def write_sweep_report(sweep_dir: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Leaderboard + plots of one multirun sweep dir, written into it (or `out`); returns the paths."""
    return make_report([sweep_dir], out=out, quiet=True)


def main(argv: list[str] | None = None) -> int:
    from ssl_bench.config import report_user_error

    parser = argparse.ArgumentParser(prog="python -m ssl_bench.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", help="run dirs or sweep dirs (searched recursively)")
    parser.add_argument("--out", default=None, help="where report.md/.csv/.png go (default: the first dir)")
    args = parser.parse_args(argv)
    try:
        make_report(args.dirs, args.out)
    except UserError as err:
        report_user_error(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
