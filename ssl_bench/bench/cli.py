"""`python -m ssl_bench.bench`: the command line (the suites are described in bench/__init__.py)."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import traceback

from ssl_bench.bench.lightly_specs import LIGHTLY_METHODS
from ssl_bench.bench.machine import describe, load_average, machine_info
from ssl_bench.bench.ours import (
    Setting,
    available_methods,
    check_methods,
    resolve_device,
    row_backbone,
)
from ssl_bench.bench.table import rows_json, to_markdown, write
from ssl_bench.errors import EXIT_USER_ERROR, UserError

#: each suite's defaults; a flag given on the command line wins
SUITES = {
    "methods": {
        "methods": "simclr,byol,swav",
        "batch_size": 256,
        "warmup": 3,
        "steps": 10,
        "flops": True,
    },
    "lightly": {
        "methods": "all",
        "batch_size": 128,
        "warmup": 1,
        "steps": 3,
        "lightly": True,
        "small": True,
        "flops": False,
    },
    "gpu": {
        "methods": "simclr,byol",
        "batch_size": 512,
        "precision": "bf16-mixed",
        "warmup": 15,
        "steps": None,
        "lightly": True,
        "flops": False,
        "lightly_workers": min(os.cpu_count() or 1, 16),
    },
}


def parser() -> argparse.ArgumentParser:
    from ssl_bench import bench

    p = argparse.ArgumentParser(
        prog="python -m ssl_bench.bench",
        description=bench.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--suite", choices=tuple(SUITES), default="methods")
    p.add_argument(
        "--methods", help="comma-separated method names, or 'all': every method lightly also has"
    )
    p.add_argument("--backbone", default="resnet18", help="a conf/backbone option")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--precision", default="auto", help="trainer.precision of ssl_bench's rows")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--warmup", type=int, help="steps before the clock starts (>= 1)")
    p.add_argument("--steps", type=int, help="timed steps after the warm-up (>= 1)")
    p.add_argument("--rounds", type=int, default=1, help="repeat each row; the best round counts")
    bool_flag = argparse.BooleanOptionalAction
    p.add_argument("--lightly", action=bool_flag, default=False, help="lightly's loops beside")
    p.add_argument("--small", action=bool_flag, default=False, help="narrow ResNet-18 rows too")
    p.add_argument("--bound", action=bool_flag, default=False, help="bare backbone (with lightly)")
    p.add_argument("--flops", action=bool_flag, default=True, help="FLOPs of a step, MFU")
    p.add_argument("--lightly-workers", type=int, default=2, help="its DataLoader workers")
    p.add_argument("--epoch-images", type=int, default=50_000, help="gpu suite: one epoch")
    p.add_argument("--out", default="BENCHMARKS.md", help="markdown file to append to ('' to skip)")
    p.add_argument("--json", default=None, help="also write the results as JSON here")
    p.add_argument("--override", action="append", default=[], help="a Hydra override (repeatable)")
    return p


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = parser()
    suite = p.parse_known_args(argv)[0].suite
    p.set_defaults(**SUITES[suite])
    args = p.parse_args(argv)
    if args.warmup < 1 or (args.steps is not None and args.steps < 1) or args.rounds < 1:
        p.error("--warmup, --steps and --rounds must be >= 1")
    if args.methods == "all":
        args.methods_list = [m for m in LIGHTLY_METHODS if m in available_methods()]
        skipped = [m for m in LIGHTLY_METHODS if m not in args.methods_list]
        if skipped:
            print(
                f"ssl_bench.bench: not in this checkout yet: {', '.join(skipped)}", file=sys.stderr
            )
    else:
        args.methods_list = [m.strip() for m in args.methods.split(",") if m.strip()]
    return args


def cpu_suites(args, argv: list[str]) -> tuple[str, list[dict], list[str]]:
    """The methods and lightly suites: rows, then the small-model rows; and the failed rows."""
    from ssl_bench.bench.compare import bench_row

    load_before = load_average()
    settings = [
        Setting(m, row_backbone(m, args.backbone), args.image_size, args.batch_size)
        for m in args.methods_list
    ]
    if args.small:
        settings += [Setting.small_row(m, args.batch_size) for m in args.methods_list]
    rows, failed = [], []
    for setting in settings:
        # one row that cannot run (a method's config refusing the suite's backbone, a bug) must not
        # take the other rows' minutes of measurements with it: it is reported and left out
        try:
            rows.append(bench_row(setting, args))
        except Exception as err:  # noqa: BLE001 - reported below, and the exit status says so
            traceback.print_exc()
            failed.append(f"{setting.method} ({setting.backbone}, {setting.image_size} px): {err}")
    command = " ".join(["python -m ssl_bench.bench", *argv])
    info = machine_info(resolve_device(args.accelerator))
    header = (
        f"### {dt.datetime.now():%Y-%m-%d %H:%M} - {describe(info)}\n\n"
        f"`{command}` ({args.warmup} warm-up + {args.steps} timed steps, best of {args.rounds} "
        f"round(s)); load average before {load_before}, after {load_average()}."
    )
    if failed:
        header += "\n\nNot measured (the row failed): " + "; ".join(failed) + "."
    return to_markdown(rows, header), rows_json(rows), failed


def quiet_lightning() -> None:
    """Lightning's per-fit INFO lines (precision, devices, tips) said once per measurement would
    bury the bench's own progress lines."""
    import logging

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    quiet_lightning()
    try:
        check_methods(args.methods_list)
        if args.lightly and args.suite != "gpu":
            try:
                import lightly  # noqa: F401
            except ImportError:
                raise UserError(
                    "--lightly needs lightly 1.6.0: pip install -e '.[bench]'"
                ) from None
        if args.suite == "gpu":
            from ssl_bench.bench.gpu import gpu_suite

            (text, payload), failed = gpu_suite(args), []
        else:
            text, payload, failed = cpu_suites(args, argv)
    except UserError as err:
        print(f"ssl_bench: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    write(text, args.out, args.json, payload)
    if failed:
        print(f"ssl_bench.bench: {len(failed)} row(s) failed (above)", file=sys.stderr)
        return 1
    return 0
