"""The leaderboard report: fabricated sweeps (one failed run), a real run, bad inputs."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import yaml

from conftest import FAST, REPO, run_cli
from ssl_bench.report import make_report, write_sweep_report


def fake_run(d, method, seed, knn=None, probe=None, linear=None, lr=0.3, status="completed", overrides=True):
    (d / ".hydra").mkdir(parents=True)
    cfg = {"seed": seed, "method": {"name": method, "temperature": 0.2}, "data": {"name": "synthetic", "limit": None},
           "backbone": {"name": "resnet18", "tag": "${backbone.name}_narrow"}, "optimizer": {"lr": lr},
           "run_name": f"{method}-s{seed}", "output_root": "outputs"}
    (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    if overrides:
        (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"method={method}", f"seed={seed}",
                                                                     f"optimizer.lr={lr}"]))
    curve = [10.0, 20.0, knn if knn is not None else 15.0]
    with open(d / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "step", "train/loss", "val/knn_top1", "val/knn_top1_init", "val/probe_top1"])
        w.writerow([0, 0, "", "", 10.0, ""])
        for e, v in enumerate(curve[1:]):
            w.writerow([e, 4 * e + 3, 3.0 - e, "", "", ""])
            w.writerow([e, 4 * e + 3, "", v, "", probe or ""])
    if status is None:  # crashed: no results.json, a traceback in the job log
        (d / "__main__.log").write_text("Traceback (most recent call last):\nRuntimeError: boom\n")
        return d
    (d / "results.json").write_text(json.dumps({
        "status": status, "method": method, "data": "synthetic", "backbone": "resnet18_narrow", "seed": seed,
        "epochs": 2, "global_step": 8, "knn_top1_init": 10.0, "final": {"val/knn_top1": knn, "val/probe_top1": probe},
        "best": {"val/knn_top1": knn, "val/probe_top1": probe}, "wall_time_s": 12.5, "images_per_sec": 100.0 + seed,
        "lr": lr, "batch_size": 64, "run_dir": str(d)}))
    if linear is not None:
        (d / "eval_linear.json").write_text(json.dumps({"top1": linear, "top5": 99.0}))
    return d


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "multirun" / "2026-01-01" / "12-00-00"
    fake_run(root / "0_simclr-s0", "simclr", 0, knn=40.0, probe=35.0, linear=50.0)
    fake_run(root / "1_simclr-s1", "simclr", 1, knn=44.0, probe=37.0, linear=52.0)
    fake_run(root / "2_byol-s0", "byol", 0, status=None)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def _decodes(path):
    from PIL import Image

    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.size[0] > 100 and im.size[1] > 100


def test_report_table_plots_and_flagged_failure(sweep):
    proc = subprocess.run([sys.executable, "-m", "ssl_bench.report", str(sweep)], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    lines = [ln for ln in out.splitlines() if ln.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    # swept: seed only (method has its own column; optimizer.lr is the same everywhere)
    assert header[:6] == ["run", "status", "method", "data", "backbone", "epochs"]
    assert "seed" in header and "optimizer.lr" not in header
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")] for r in lines[1:]}
    assert set(rows) >= {"0_simclr-s0", "1_simclr-s1", "2_byol-s0"}
    simclr1 = dict(zip(header, rows["1_simclr-s1"]))
    assert simclr1["status"] == "completed" and simclr1["kNN best"] == "44.00" and simclr1["linear"] == "52.00"
    assert simclr1["backbone"] == "resnet18_narrow" and simclr1["seed"] == "1" and simclr1["probe best"] == "37.00"
    byol = dict(zip(header, rows["2_byol-s0"]))
    assert byol["status"] == "**FAILED**" and byol["method"] == "byol" and byol["kNN best"] == "20.00"
    # leaderboard order: best kNN first, the failed run last
    order = [r.split("|")[1].strip() for r in lines[1:4]]
    assert order == ["1_simclr-s1", "0_simclr-s0", "2_byol-s0"]
    assert "42.00 ± 2.83" in out and "51.00 ± 1.41" in out  # mean +- std over the two simclr seeds
    assert "Not completed" in out and "2_byol-s0" in out.split("Not completed")[1]
    assert (sweep / "report.md").read_text().count("2_byol-s0") >= 2
    with open(sweep / "report.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["run"] for r in table] == order and table[2]["status"] == "failed"
    assert table[0]["seed"] == "1" and float(table[0]["knn_top1_best"]) == 44.0
    for png in ("report_accuracy.png", "report_curves.png"):
        _decodes(sweep / png)


def test_swept_keys_from_config_diff_and_incomplete_run(tmp_path):
    fake_run(tmp_path / "a", "simclr", 0, knn=30.0, lr=0.3, overrides=False)
    fake_run(tmp_path / "b", "simclr", 0, knn=35.0, lr=0.6, overrides=False)
    fake_run(tmp_path / "c", "simclr", 0, knn=20.0, status="interrupted", overrides=False)
    out = tmp_path / "report"
    rep = make_report([tmp_path], out=out, quiet=True)
    assert rep["swept"] == ["optimizer.lr"]
    statuses = {r["run"]: r["status"] for r in rep["rows"]}
    assert statuses == {"a": "completed", "b": "completed", "c": "interrupted"}
    assert "**INTERRUPTED**" in rep["text"]
    for name in ("report.md", "report.csv"):
        assert (out / name).is_file()
    assert not (tmp_path / "report.md").exists()  # --out was honoured


def test_write_sweep_report_returns_paths(sweep):
    rep = write_sweep_report(sweep)
    assert rep["markdown"] == sweep / "report.md" and rep["csv"].is_file()
    _decodes(rep["curves_png"])


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    (base / "runs").mkdir()
    run_cli(*FAST, "trainer.max_epochs=1", run_dir=base / "runs" / "real",
            env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}, check=True)
    return base / "runs"


def test_report_on_a_real_run(real_run, tmp_path):
    rep = make_report([real_run], out=tmp_path, quiet=True)
    (row,) = rep["rows"]
    res = json.loads((real_run / "real" / "results.json").read_text())
    assert row["status"] == "completed" and row["method"] == "simclr" and row["backbone"] == "resnet18_narrow"
    assert row["knn_top1_best"] == res["best"]["val/knn_top1"] and row["epochs"] == 1
    assert [e for e, _ in row["_curve"]] == [0, 1]
    _decodes(rep["curves_png"])
    _decodes(rep["accuracy_png"])


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_report_bad_path_is_one_clear_message(tmp_path, case):
    target = tmp_path / "nowhere" if case == "missing" else tmp_path
    proc = subprocess.run([sys.executable, "-m", "ssl_bench.report", str(target)], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert str(target) in proc.stderr and proc.stderr.count("ssl_bench: error:") == 1
