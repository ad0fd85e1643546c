"""The two attention kernels of timm's blocks side by side: what nn/attention.py chooses from.

    python -m ssl_bench.bench.attention [--shapes 128x16x65x32,...] [--dtypes bf16,fp32]
        [--reps 5] [--out BENCHMARKS.md]

For each shape (batch x heads x tokens x head width) and dtype: the best of `--reps` timings of
softmax(q k^T / sqrt(d)) v, forward + backward and forward alone without grad, through
F.scaled_dot_product_attention (fused: what timm calls with `fused_attn`) and as two matmuls and a
softmax (explicit: timm's other path), alternating, on the CPU; `fused_over_explicit` = fused time
/ explicit time (> 1: the explicit kernel is faster). The default shapes: MAE's decoder at 32 px
(65 tokens, 16 heads of 32), ViT-Tiny's encoder on MAE's visible patches (17 tokens, 3 of 64) and on
all of them (65), a ViT-S/16 at 224 px (197 tokens, 6 of 64)."""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from ssl_bench.bench.machine import describe, load_average, machine_info
from ssl_bench.bench.table import markdown, write

DEFAULT_SHAPES = "128x16x65x32,128x3x17x64,128x3x65x64,32x6x197x64"
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
COLUMNS = ["shape", "dtype", "pass", "fused_ms", "explicit_ms", "fused_over_explicit"]


def parse_shape(text: str) -> tuple[int, int, int, int]:
    parts = tuple(int(p) for p in text.lower().split("x"))
    if len(parts) != 4 or min(parts) < 1:
        raise SystemExit(
            f"--shapes: '{text}' is not batch x heads x tokens x width, e.g. 8x2x17x16"
        )
    return parts  # type: ignore[return-value]


def attention(q, k, v, explicit: bool) -> torch.Tensor:
    if explicit:  # timm's path without fused_attn
        return ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(-1) @ v
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        return F.scaled_dot_product_attention(q, k, v)


def time_kernels(shape, dtype, backward: bool, reps: int) -> tuple[float, float]:
    """(fused, explicit) seconds, the best of `reps` alternating timings after one warm-up."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(shape, generator=g).to(dtype).requires_grad_(backward) for _ in "qkv")

    def once(explicit: bool) -> float:
        start = time.perf_counter()
        with torch.set_grad_enabled(backward):
            out = attention(q, k, v, explicit)
            if backward:
                out.float().sum().backward()
        return time.perf_counter() - start

    best = {True: float("inf"), False: float("inf")}
    for explicit in (False, True):
        once(explicit)
    for _ in range(reps):
        for explicit in (False, True):
            best[explicit] = min(best[explicit], once(explicit))
    return best[False], best[True]


def run(shapes: list[tuple[int, ...]], dtypes: list[str], reps: int) -> list[list]:
    lines = []
    for shape in shapes:
        for name in dtypes:
            for backward in (True, False):
                fused, explicit = time_kernels(shape, DTYPES[name], backward, reps)
                lines.append(
                    [
                        "x".join(map(str, shape)),
                        name,
                        "forward + backward" if backward else "forward (no grad)",
                        round(fused * 1e3, 2),
                        round(explicit * 1e3, 2),
                        round(fused / explicit, 2),
                    ]
                )
    return lines


def main(argv: list[str] | None = None) -> list[list]:
    ap = argparse.ArgumentParser(
        prog="python -m ssl_bench.bench.attention",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--shapes", default=DEFAULT_SHAPES)
    ap.add_argument("--dtypes", default="bf16,fp32")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default="", help="a markdown file to append the table to")
    args = ap.parse_args(argv)
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    bad = [d for d in dtypes if d not in DTYPES]
    if bad:
        raise SystemExit(f"--dtypes: {', '.join(bad)} unknown; use bf16 and/or fp32")
    shapes = [parse_shape(s) for s in args.shapes.split(",") if s.strip()]
    before = load_average()
    lines = run(shapes, dtypes, max(1, args.reps))
    header = (
        f"### Attention kernels on {describe(machine_info())}\n\n"
        f"`python -m ssl_bench.bench.attention --shapes {args.shapes} --dtypes {args.dtypes} "
        f"--reps {args.reps}` (best of {args.reps}, alternating); load average before {before}, "
        f"after {load_average()}."
    )
    write(markdown(header, COLUMNS, lines), args.out, None, None)
    return lines


if __name__ == "__main__":
    main()
