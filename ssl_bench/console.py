"""What a run prints: one block before training (what runs, on what, where), a short model
summary, a progress bar that names what it measures, and a summary at the end. Lightning's own
chatter (INFO lines, a few known warnings that do not concern an ssl_bench run) is kept off the
console; Lightning's INFO records still reach the run dir's log file through Hydra's file handler.
"""

from __future__ import annotations

import logging
import re
import shlex
import sys
import warnings
from pathlib import Path

LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning")
BASELINE_LABEL = "kNN baseline (random init)"


# ---- a quiet console ---------------------------------------------------------------------
class _LightningInfoFilter(logging.Filter):
    """On a console handler: drops Lightning's records below WARNING (GPU/TPU availability, the
    AMP choice, the LitLogger tip, "`Trainer.fit` stopped", ...). Its warnings still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.name.startswith(LIGHTNING_LOGGERS)


def _is_console(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and not isinstance(
        handler, logging.FileHandler
    )


def _add_filter(handler: logging.Handler) -> None:
    if not any(isinstance(f, _LightningInfoFilter) for f in handler.filters):
        handler.addFilter(_LightningInfoFilter())


def quiet_lightning_logs() -> None:
    """Lightning's INFO records off the console, into the log file.

    pytorch_lightning attaches a console handler of its own (and stops propagating) when it is
    imported before logging is configured (pytorch_lightning/__init__.py); imported after Hydra
    configured logging, its records go to Hydra's console (in Hydra's format) and file handlers.
    Both ways end the same here: Lightning's records propagate to the root handlers, and each
    console handler drops those below WARNING. Without root handlers (the Python API in a plain
    script) Lightning keeps its own handler, filtered the same way."""
    root = logging.getLogger()
    for name in LIGHTNING_LOGGERS:
        lg = logging.getLogger(name)
        for handler in list(lg.handlers):
            if root.handlers and _is_console(handler):
                lg.removeHandler(handler)
            elif _is_console(handler):
                _add_filter(handler)
        if root.handlers:
            lg.propagate = True
    for handler in root.handlers:
        if _is_console(handler):
            _add_filter(handler)


def ignore_known_noise(run_dir: Path) -> None:
    """Warnings filters, each for one known message that says nothing about the run:

    - Lightning's own use of torch's deprecated `LeafSpec` (pytorch_lightning/utilities/_pytree.py);
    - "Precision bf16-mixed is not supported by the model summary": ssl_bench prints its own summary
      (model_summary below), Lightning's is off; the message can still come from a user callback;
    - CSVLogger's "directory ... exists and is not empty" for this run dir, which ssl_bench itself
      filled first (.hydra/, run.json) - only while it holds no metrics.csv: when it does (an
      overwrite=true run), the warning says a real thing and stays.
    """
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"pytorch_lightning\.utilities\._pytree",
    )
    warnings.filterwarnings(
        "ignore", message=r"Precision \S+ is not supported by the model summary"
    )
    if not (run_dir / "metrics.csv").exists():
        where = re.escape(str(run_dir))
        warnings.filterwarnings(
            "ignore", message=rf"Experiment logs directory {where}/? exists and is not empty"
        )


def say(line: str = "") -> None:
    print(line, flush=True)


# ---- before training ---------------------------------------------------------------------------
def _count(n: float) -> str:
    from pytorch_lightning.utilities.model_summary.model_summary import get_human_readable_count

    return get_human_readable_count(int(n)).strip()


def model_summary(model) -> list[str]:
    """The method's top-level modules with their type and parameter count, and the totals.
    Lightning's own summary is off (enable_model_summary=False): it logged a FLOPs column of 0 (it
    counts FLOPs only with an example input) and warned that bf16 is not supported by it."""
    rows = []
    for name, module in model.named_children():
        n = sum(p.numel() for p in module.parameters())
        if n:
            rows.append((name, type(module).__name__, _count(n)))
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    wide = max((len(r[0]) for r in rows), default=6), max((len(r[1]) for r in rows), default=4)
    lines = [f"  {'module':<{wide[0]}}  {'type':<{wide[1]}}  params"]
    lines += [f"  {a:<{wide[0]}}  {b:<{wide[1]}}  {c}" for a, b, c in rows]
    lines.append(f"  {_count(total)} parameters, {_count(trainable)} trainable")
    return lines


def data_line(dm, world_size: int) -> str:
    sizes = {k: len(v) for k, v in dm.splits.items() if v is not None}
    per_step = dm.batch_size * world_size
    parts = [f"{sizes.get('pretrain', 0):,} images to train on"]
    if "train" in sizes and "test" in sizes:
        parts.append(f"kNN bank {sizes['train']:,} / test {sizes['test']:,}")
    if dm.num_classes:
        parts.append(f"{dm.num_classes} classes")
    steps = sizes.get("pretrain", 0) // world_size // dm.batch_size
    return (
        f"{dm.name}, {', '.join(parts)}; batch {dm.batch_size} x {world_size} device(s) = "
        f"{per_step}, {steps} steps per epoch"
    )


def device_line(trainer) -> str:
    kind = type(trainer.accelerator).__name__.replace("Accelerator", "").lower() or "?"
    nodes = f" x {trainer.num_nodes} node(s)" if trainer.num_nodes > 1 else ""
    return f"{trainer.num_devices} x {kind}{nodes}, strategy {type(trainer.strategy).__name__}"


# ---- after training ----------------------------------------------------------------------------
def _pct(value) -> str:
    return f"{value:.2f}%" if value is not None else "n/a"


def _duration(seconds: float) -> str:
    seconds = float(seconds or 0)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(int(round(seconds)), 60)
    return f"{minutes} min {s} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def command(overrides: list[str], *extra: str) -> str:
    """`python -m ssl_bench` with the run's overrides and `extra` (key=value), leaving out the run
    dir, resume, overwrite and the keys `extra` sets."""
    dropped = ("resume", "hydra.run.dir", "overwrite", *(e.split("=", 1)[0] for e in extra))
    kept = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] not in dropped]
    return shlex.join(["python", "-m", "ssl_bench", *kept, *extra])


def summary(results: dict, overrides: list[str], max_epochs: int | None) -> list[str]:
    """The lines that end every run: status, where, what was measured, and what to do next."""
    run_dir = Path(results["run_dir"])
    best, final = results.get("best") or {}, results.get("final") or {}
    knn = (
        f"{_pct(results.get('knn_top1_init'))} random init -> "
        f"{_pct(best.get('val/knn_top1'))} best ({_pct(final.get('val/knn_top1'))} final)"
    )
    rate = results.get("images_per_sec")
    lines = [
        f"ssl_bench: run {results['status']} after {_duration(results.get('wall_time_s'))}: "
        f"{run_dir}",
    ]
    if results.get("error"):
        lines.append(f"  error: {results['error']}")
    lines += [
        f"  kNN top-1: {knn}",
        f"  probe top-1: {_pct(best.get('val/probe_top1'))} best "
        f"({_pct(final.get('val/probe_top1'))} final)",
        f"  trained: {results.get('epochs', 0)} epoch(s), {results.get('global_step', 0)} "
        f"step(s), {f'{rate:,.0f} images/s' if rate else 'images/s n/a'}",
        f"  results: {run_dir / 'results.json'}",
    ]
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        lines.append("  no checkpoint was written: nothing to resume or evaluate")
        if results["status"] == "preempted":
            lines.append(f"  start again: {command(overrides)}")
        return lines
    more = (
        [] if results["status"] != "completed" else [f"trainer.max_epochs={2 * (max_epochs or 1)}"]
    )
    lines += [
        f"  resume: {command(overrides, f'resume={run_dir}', *more)}",
        f"  evaluate: python -m ssl_bench.eval mode=linear ckpt={shlex.quote(str(run_dir))}",
    ]
    return lines


def print_summary(results: dict, overrides: list[str], max_epochs: int | None) -> None:
    stream = sys.stdout
    for line in summary(results, overrides, max_epochs):
        print(line, file=stream)
    stream.flush()


# ---- a multirun ----------------------------------------------------------------------------------
def jobs_table(jobs: list[tuple[str, dict]]) -> list[str]:
    """One row per job of a sweep: its dir name, status, kNN top-1 (init, best), probe top-1 (best),
    epochs, steps and wall time."""
    header = ("job", "status", "kNN init", "kNN best", "probe best", "epochs", "steps", "time")
    rows = [header]
    for name, res in jobs:
        best = res.get("best") or {}
        rows.append(
            (
                name,
                str(res.get("status", "?")),
                _pct(res.get("knn_top1_init")),
                _pct(best.get("val/knn_top1")),
                _pct(best.get("val/probe_top1")),
                str(res.get("epochs", "-")),
                str(res.get("global_step", "-")),
                _duration(res["wall_time_s"]) if res.get("wall_time_s") is not None else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
