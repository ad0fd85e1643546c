"""One training step of ssl_bench's method and of lightly's loop of it, split into its parts.

    python -m ssl_bench.bench.phases [--methods moco_v2,simsiam] [--backbone resnet18]
        [--image-size 32] [--small] [--batch-size 256] [--steps 5] [--out BENCHMARKS.md]
        [override ...]

For each method, in one process and on the same views (one batch of synthetic images through
ssl_bench's view path, made once): ssl_bench's `training_loss` plus its online probe's loss, then
backward, the optimizer step and what follows it (`after_optimizer_step`: the momentum update,
SwAV's prototype normalisation), against lightly 1.6.0's loop of the method as the lightly suite
builds and steps it (bench/lightly_specs.py: its modules, losses, momentum helpers and optimizer
family; lightly_loop._step). Both run in the precision the lightly suite calls fastest on this
machine (bf16 autocast + channels_last where the CPU's bf16 is native, else fp32 +
channels_last). After two
warm-up steps each, `--steps` steps of each side alternate; the table gives the median seconds of
every part and `ratio_vs_lightly` = lightly's median step / ssl_bench's (> 1: ssl_bench faster,
as the suite's ratios). The views, data loading and Lightning's loop are left out on purpose: what
this measures is the step around the backbone (the lightly suite, `python -m ssl_bench.bench
--suite lightly`, measures the whole loop). Extra arguments are Hydra overrides of ssl_bench's
side (`method.bn_splits=1`).
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext
from types import SimpleNamespace

import torch

from ssl_bench.bench.machine import describe, load_average, machine_info
from ssl_bench.bench.table import markdown, write

PARTS = ("forward", "backward", "optimizer", "momentum")
COLUMNS = [
    "method",
    "variant",
    *(f"ours_{p}_s" for p in PARTS),
    "ours_step_s",
    *(f"lightly_{p}_s" for p in PARTS),
    "lightly_step_s",
    "ratio_vs_lightly",
]


def _timed(parts: dict[str, float], name: str, start: float) -> float:
    now = time.perf_counter()
    parts[name] = now - start
    return now


def setup(
    method_name: str,
    backbone: str,
    image_size: int,
    batch_size: int,
    extra: list[str],
    small: bool = False,
):
    """Both sides of one method, their optimizers and one batch of views, as a namespace. `small`:
    the lightly suite's small row of the method (its Fashion-MNIST experiment's settings, the
    narrow ResNet-18 at 28 px; `backbone` and `image_size` are then ignored)."""
    from ssl_bench.bench import lightly_loop as L
    from ssl_bench.bench.lightly_specs import Ctx
    from ssl_bench.bench.ours import Setting, bench_config, row_backbone
    from ssl_bench.training import build_datamodule, build_method

    device = torch.device("cpu")
    variant = L.fast_variant(device)
    if small:
        setting = Setting.small_row(method_name, batch_size)
    else:
        setting = Setting(method_name, row_backbone(method_name, backbone), image_size, batch_size)
    cfg = bench_config(setting, batch_size, "bf16-mixed" if variant.bf16 else "32-true", extra)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    fmt = torch.channels_last if variant.channels_last else torch.contiguous_format
    ours = build_method(cfg, dm.data_info()).train().to(memory_format=fmt)
    spec, mcfg, lmodel, criterion = L.build(cfg, device, variant)
    lmodel.train()
    images = dm.splits["pretrain"].images[:batch_size]
    return SimpleNamespace(
        variant=variant,
        ours=ours,
        opt_ours=ours.build_optimizer_for(batch_size),
        spec=spec,
        lmodel=lmodel,
        criterion=criterion,
        opt_lightly=L.make_optimizer(lmodel, spec, cfg, batch_size),
        ctx=Ctx(step=0, total_steps=100, method=mcfg),
        views=[v.contiguous(memory_format=fmt) for v in dm.batch_views(images)],
        labels=dm.splits["pretrain"].labels[:batch_size],
        index=torch.arange(batch_size),
    )


def _autocast(ns):
    return torch.autocast("cpu", dtype=torch.bfloat16) if ns.variant.bf16 else nullcontext()


def ours_step(ns) -> dict[str, float]:
    """ssl_bench's step, as training_step + Lightning's optimizer step + the momentum update."""
    parts: dict[str, float] = {}
    m, opt = ns.ours, ns.opt_ours
    t = time.perf_counter()
    with _autocast(ns):
        out = m.training_loss(ns.views, ns.labels, ns.index)
        loss = out["loss"]
        if m.online_eval is not None:
            probe = m.online_eval.probe_loss(out["representation"].detach(), ns.labels)
            loss = loss if probe is None else loss + probe
    t = _timed(parts, "forward", t)
    loss.backward()
    t = _timed(parts, "backward", t)
    m.on_before_optimizer_step(opt)
    opt.step()
    opt.zero_grad(set_to_none=True)
    t = _timed(parts, "optimizer", t)
    m.after_optimizer_step()  # the momentum update and any method's own (SwAV's prototypes)
    _timed(parts, "momentum", t)
    return parts


def lightly_step(ns) -> dict[str, float]:
    """lightly's step as the lightly suite runs it (lightly_loop._step), its parts timed."""
    from ssl_bench.bench.lightly_loop import _step

    parts: dict[str, float] = {}
    last = [time.perf_counter()]

    def mark(part: str) -> None:
        last[0] = _timed(parts, part, last[0])

    _step(
        ns.spec,
        ns.lmodel,
        ns.criterion,
        ns.opt_lightly,
        ns.views,
        ns.ctx,
        ns.variant,
        torch.device("cpu"),
        mark,
    )
    return parts


def measure(
    method_name: str,
    backbone: str,
    image_size: int,
    batch_size: int,
    steps: int,
    extra: list[str],
    small: bool = False,
) -> list:
    """One table line: the median parts of `steps` alternating steps of each side."""
    ns = setup(method_name, backbone, image_size, batch_size, extra, small)
    sides = {"ours": ours_step, "lightly": lightly_step}
    for _ in range(2):  # warm-up
        for step in sides.values():
            step(ns)
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    for _ in range(steps):
        for side, step in sides.items():
            runs[side].append(step(ns))
    line: list = [method_name, ns.variant.name]
    totals = {}
    for side in sides:
        medians = [statistics.median(r[p] for r in runs[side]) for p in PARTS]
        totals[side] = statistics.median(sum(r.values()) for r in runs[side])
        line += [round(m, 3) for m in medians] + [round(totals[side], 3)]
    line.append(round(totals["lightly"] / totals["ours"], 2))
    return line


def main(argv: list[str] | None = None) -> list[list]:
    from ssl_bench.bench.lightly_specs import SPECS

    ap = argparse.ArgumentParser(
        prog="python -m ssl_bench.bench.phases",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--methods", default="simclr,moco_v2,byol,simsiam,dino,nnclr")
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument(
        "--small",
        action="store_true",
        help="the suite's small rows (Fashion-MNIST experiment settings, narrow ResNet-18, 28 px)",
    )
    ap.add_argument("--out", default="", help="a markdown file to append the table to")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of ssl_bench's side")
    args = ap.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in SPECS]
    if unknown:
        raise SystemExit(
            f"--methods: {', '.join(unknown)} has no lightly loop; choose from "
            f"{', '.join(sorted(SPECS))}"
        )
    before = load_average()
    lines = [
        measure(
            m,
            args.backbone,
            args.image_size,
            args.batch_size,
            max(1, args.steps),
            args.overrides,
            args.small,
        )
        for m in methods
    ]
    shape = (
        "--small" if args.small else f"--backbone {args.backbone} --image-size {args.image_size}"
    )
    header = (
        "### One step split into its parts, ssl_bench vs lightly, on "
        f"{describe(machine_info())}\n\n"
        f"`python -m ssl_bench.bench.phases --methods {','.join(methods)} {shape} --batch-size "
        f"{args.batch_size} --steps {args.steps}{''.join(' ' + o for o in args.overrides)}` "
        f"(medians of {args.steps} "
        f"alternating steps after 2 warm-up steps each, seconds); load average before {before}, "
        f"after {load_average()}."
    )
    write(markdown(header, COLUMNS, lines), args.out, None, None)
    return lines


if __name__ == "__main__":
    main()
