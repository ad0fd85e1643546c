"""Rows and how they are written: a markdown table (appended to BENCHMARKS.md) and JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Row:
    """One measured setting. Optional figures stay None when not measured (FLOPs off, no lightly
    comparison); `extra` holds the comparison's columns, `machine` the facts of
    bench.machine.machine_info."""

    method: str
    backbone: str
    image_size: int
    batch_size: int
    precision: str
    device: str
    train_img_s: float = 0.0
    views_img_s: float = 0.0
    step_tflops: float | None = None
    peak_tflops: float | None = None
    mfu_pct: float | None = None
    peak_mem_mib: float = 0.0
    extra: dict = field(default_factory=dict)
    machine: dict = field(default_factory=dict)


#: every row's own columns
COLUMNS = (
    "method",
    "backbone",
    "image_size",
    "batch_size",
    "precision",
    "device",
    "train_img_s",
    "views_img_s",
    "step_tflops",
    "peak_tflops",
    "mfu_pct",
    "peak_mem_mib",
)
#: `extra` columns, in this order where present
EXTRA_COLUMNS = (
    "views",
    "cpu_bf16",
    "gflop_per_image",
    "bound_img_s",
    "bound_calls",
    "pct_of_bound",
    "lightly_fast",
    "lightly_fast_img_s",
    "lightly_fast_pct_of_bound",
    "lightly_fp32_img_s",
    "ratio_vs_lightly_fast",
    "ratio_vs_lightly_fp32",
)
#: the comparison table (the lightly suite): ours, the bound, lightly, the ratios
COMPARE_COLUMNS = (
    "method",
    "backbone",
    "image_size",
    "batch_size",
    "views",
    "precision",
    "cpu_bf16",
    "train_img_s",
    "bound_img_s",
    "bound_calls",
    "pct_of_bound",
    "lightly_fast",
    "lightly_fast_img_s",
    "lightly_fast_pct_of_bound",
    "lightly_fp32_img_s",
    "ratio_vs_lightly_fast",
    "ratio_vs_lightly_fp32",
    "views_img_s",
)


def value(row: Row, column: str):
    return getattr(row, column) if column in COLUMNS else row.extra.get(column)


def fmt(v) -> str:
    if v is None:
        return ""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def default_columns(rows: list[Row]) -> list[str]:
    """The comparison columns when a row has a lightly figure, else the row columns and the
    extras present; columns empty in every row are dropped."""
    if any(r.extra.get("lightly_fast_img_s") is not None for r in rows):
        cols = list(COMPARE_COLUMNS)
    else:
        cols = list(COLUMNS) + [c for c in EXTRA_COLUMNS if any(c in r.extra for r in rows)]
    return [c for c in cols if any(value(r, c) is not None for r in rows)]


def markdown(header: str, columns: list[str], lines: list[list]) -> str:
    """A markdown table under `header` (and any text after it)."""
    out = [header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(fmt(v) for v in line) + " |" for line in lines]
    return "\n".join(out) + "\n"


def to_markdown(rows: list[Row], header: str, columns: list[str] | None = None) -> str:
    cols = columns or default_columns(rows)
    return markdown(header, cols, [[value(r, c) for c in cols] for r in rows])


def write(text: str, out: str | None, json_path: str | None, payload) -> None:
    """Print `text`, append it to `out` (a markdown file; '' or None: skip) and write `payload`
    as JSON to `json_path`."""
    print(text)
    if out:
        with open(out, "a") as f:
            f.write("\n" + text)
    if json_path:
        Path(json_path).write_text(json.dumps(payload, indent=2, default=str))


def rows_json(rows: list[Row]) -> list[dict]:
    return [asdict(r) for r in rows]
