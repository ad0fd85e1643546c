"""`make demo`: SimCLR on Fashion-MNIST on the CPU, then kNN top-1 before vs after SSL.

Runs `python -m ssl_bench experiment=demo_fmnist`. When Fashion-MNIST can be neither found nor
downloaded, it says so and runs the same recipe on the synthetic dataset instead.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ssl_bench.data.datasets import load_splits
from ssl_bench.errors import DataError


def _train(overrides: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ssl_bench", "experiment=demo_fmnist", *overrides]
    print("$", " ".join(cmd[1:]), flush=True)
    return subprocess.run(cmd)


def main() -> int:
    console = Console()
    stamp = __import__("time").strftime("%Y%m%d-%H%M%S")
    run_dir = Path("outputs/demo") / stamp
    overrides = [f"hydra.run.dir={run_dir}"]
    try:
        load_splits("fashion_mnist", limit=10, test_limit=10)
    except DataError as err:
        console.print(f"[yellow]{err}[/yellow]")
        console.print(
            "[yellow]Fashion-MNIST is not available: running the demo on the synthetic dataset "
            "instead.[/yellow]"
        )
        run_dir = Path("outputs/demo") / (stamp + "-synthetic")
        overrides = [
            f"hydra.run.dir={run_dir}",
            "data=synthetic",
            "data.limit=null",
            "data.test_limit=null",
        ]
    proc = _train(overrides)
    if proc.returncode != 0:
        return proc.returncode
    results = json.loads((run_dir / "results.json").read_text())
    table = Table(
        title=f"ssl_bench demo: {results['method']} on {results['data']} ({results['backbone']})"
    )
    table.add_column("metric", justify="left")
    table.add_column("accuracy", justify="right")
    init = results.get("knn_top1_init")
    final = results["final"].get("val/knn_top1")
    table.add_row("kNN top-1, random init", f"{init:.2f}%" if init is not None else "-")
    table.add_row(
        f"kNN top-1 after SSL ({results['epochs']} epochs)",
        f"{final:.2f}%" if final is not None else "-",
    )
    table.add_row(
        "online linear probe", f"{results['final'].get('val/probe_top1', float('nan')):.2f}%"
    )
    console.print(table)
    console.print(
        f"run dir: {run_dir}   ({results['wall_time_s']:.0f} s, "
        f"{results.get('images_per_sec') or 0:.0f} images/s, {results['precision']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
