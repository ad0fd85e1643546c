"""The leaderboard report: fabricated sweeps (failed, stale and completed runs), columns from
resolved configs, the plots' data and layout, offline-eval sources, a real run, bad inputs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import yaml
from conftest import FAST, REPO, run_cli

from ssl_bench.report import accuracy_figure, curves_figure, make_report, write_sweep_report


def write_config(d, method, seed, lr, cfg_update=None):
    """.hydra/config.yaml as Hydra saves it: interpolations unresolved."""
    (d / ".hydra").mkdir(parents=True)
    cfg = {
        "seed": seed,
        "method": {"name": method, "temperature": 0.2},
        "data": {
            "name": "synthetic",
            "limit": None,
            "image_size": 32,
            "options": {"image_size": "${data.image_size}"},
        },
        "backbone": {"name": "resnet18", "tag": "${backbone.name}_narrow"},
        "optimizer": {"lr": lr},
        "run_name": "${method.name}-s${seed}",
        "output_root": str(d.parent),
    }
    for key, value in (cfg_update or {}).items():
        node = cfg
        *path, leaf = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[leaf] = value
    (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))


def fake_run(
    d,
    method,
    seed,
    knn=None,
    probe=None,
    linear=None,
    lr=0.3,
    status="completed",
    overrides=True,
    error=None,
    extra_overrides=(),
    cfg_update=None,
    epochs=2,
    results_extra=None,
):
    """A run dir as ssl_bench leaves it. status None: crashed (no results.json, a traceback in the
    job log); "stale": started and stopped before training (config only, no results.json, no
    metrics)."""
    write_config(d, method, seed, lr, cfg_update)
    if overrides:
        (d / ".hydra" / "overrides.yaml").write_text(
            yaml.safe_dump(
                [f"method={method}", f"seed={seed}", f"optimizer.lr={lr}", *extra_overrides]
            )
        )
    if status == "stale":
        return d
    curve = [10.0, 20.0, knn if knn is not None else 15.0][: epochs + 1]
    with open(d / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["epoch", "step", "train/loss", "val/knn_top1", "val/knn_top1_init", "val/probe_top1"]
        )
        w.writerow([0, 0, "", "", 10.0, ""])
        for e, v in enumerate(curve[1:]):
            w.writerow([e, 4 * e + 3, 3.0 - e, "", "", ""])
            w.writerow([e, 4 * e + 3, "", v, "", probe or ""])
    if status is None:  # crashed: no results.json, a traceback in the job log
        (d / "__main__.log").write_text(
            'Traceback (most recent call last):\n  File "x.py", line 1\nRuntimeError: boom\n'
        )
        return d
    (d / "results.json").write_text(
        json.dumps(
            {
                "status": status,
                "error": error,
                "method": method,
                "data": "synthetic",
                "backbone": "resnet18_narrow",
                "seed": seed,
                "epochs": epochs,
                "global_step": 8,
                "knn_top1_init": 10.0,
                "final": {"val/knn_top1": knn, "val/probe_top1": probe},
                "best": {"val/knn_top1": knn, "val/probe_top1": probe},
                "wall_time_s": 12.5,
                "images_per_sec": 100.0 + seed,
                "lr": lr,
                "batch_size": 64,
                "run_dir": str(d),
                **(results_extra or {}),
            }
        )
    )
    if linear is not None:
        (d / "eval_linear.json").write_text(json.dumps({"top1": linear, "top5": 99.0}))
    return d


def fake_failed(d, method, seed, lr, error):
    """A job rejected before training (as ssl_bench.__main__ records it): results.json with the
    error only."""
    write_config(d, method, seed, lr)
    (d / "results.json").write_text(
        json.dumps(
            {
                "status": "failed",
                "error": error,
                "method": method,
                "data": "synthetic",
                "seed": seed,
                "run_dir": str(d),
            }
        )
    )
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


def _table(text):
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, [c.strip() for c in ln.strip("|").split("|")])) for ln in lines[1:]]
    return header, rows


def _cli(*args):
    proc = subprocess.run(
        [sys.executable, "-m", "ssl_bench.report", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_report_table_plots_and_failed_run_summarised(sweep):
    # before: the crashed byol job was a row flagged **FAILED**; now it is one summary line, not a
    # row
    out = _cli(sweep)
    header, rows = _table(out.split("## Mean")[0])
    # method/data/backbone columns always; besides them only seed differs (optimizer.lr is the same
    # in all)
    assert header[:5] == ["run", "method", "data", "backbone", "epochs"] and "status" not in header
    assert "seed" in header and "optimizer.lr" not in header and "method.temperature" not in header
    assert [r["run"] for r in rows] == [
        "1_simclr-s1",
        "0_simclr-s0",
    ]  # best kNN first; the failed run no row
    simclr1 = rows[0]
    assert (
        simclr1["kNN best"] == "44.00"
        and simclr1["linear"] == "52.00"
        and simclr1["kNN init"] == "10.00"
    )
    assert simclr1["backbone"] == "resnet18_narrow" and simclr1["seed"] == "1"
    assert simclr1["probe best"] == "37.00"
    summary = [ln for ln in out.splitlines() if "not shown" in ln]
    assert (
        len(summary) == 1
        and "1 failed run not shown: `2_byol-s0`" in summary[0]
        and "--all" in summary[0]
    )
    assert "42.00 ± 2.83" in out and "51.00 ± 1.41" in out  # mean +- std over the two simclr seeds
    with open(sweep / "report.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["run"] for r in table] == ["1_simclr-s1", "0_simclr-s0"]
    assert table[0]["seed"] == "1" and float(table[0]["knn_top1_best"]) == 44.0
    md = (sweep / "report.md").read_text()
    for png in ("report_accuracy.png", "report_curves.png"):
        _decodes(sweep / png)
        assert f"]({png})" in md


def test_all_lists_failed_runs_with_status_and_error(sweep, tmp_path):
    out = _cli(sweep, "--all", "--out", tmp_path / "all")
    header, rows = _table(out.split("## Mean")[0])
    assert header[:2] == ["run", "status"] and header[-1] == "error"
    by_run = {r["run"]: r for r in rows}
    assert set(by_run) == {"0_simclr-s0", "1_simclr-s1", "2_byol-s0"}
    byol = by_run["2_byol-s0"]
    assert byol["status"] == "**FAILED**" and byol["error"] == "RuntimeError: boom"
    assert byol["kNN best"] == "20.00"
    assert by_run["1_simclr-s1"]["status"] == "completed" and by_run["1_simclr-s1"]["error"] == ""
    assert [r["run"] for r in rows][-1] == "2_byol-s0" and "not shown" not in out
    with open(tmp_path / "all" / "report.csv") as f:
        table = {r["run"]: r for r in csv.DictReader(f)}
    assert (
        table["2_byol-s0"]["status"] == "failed"
        and table["2_byol-s0"]["error"] == "RuntimeError: boom"
    )


def test_columns_are_resolved_config_keys_that_differ_between_runs_shown(tmp_path):
    typo = ["optimizr.lr=0.1"]  # a typo Hydra rejected: in overrides.yaml, never in config.yaml
    same = ["method.temperature=0.2", "data.limit=null"]  # overrides that did not change a value
    fake_run(tmp_path / "a", "simclr", 0, knn=30.0, lr=0.3, extra_overrides=same + typo)
    fake_run(
        tmp_path / "b",
        "simclr",
        0,
        knn=35.0,
        lr=0.6,
        extra_overrides=same,
        cfg_update={"cpu_threads": "${cpu_share:${hydra:launcher.n_jobs}}", "progress_bar": False},
    )
    # data.options.image_size: equal once resolved (${data.image_size} in a and b, the literal 32 in
    # c)
    fake_run(
        tmp_path / "c",
        "simclr",
        1,
        knn=33.0,
        lr=0.3,
        cfg_update={"logger": {"wandb": {"project": "x"}}, "data.options.image_size": 32},
    )
    # not shown: a failed job (with a value of its own) and a stale one (stopped before training)
    fake_failed(
        tmp_path / "d", "simclr", 0, -1, "config key 'optimizer.lr': must be positive, got -1."
    )
    fake_run(
        tmp_path / "e",
        "simclr",
        2,
        lr=0.9,
        status="stale",
        cfg_update={"trainer": {"max_epochs": 7}},
    )
    fake_run(tmp_path / "f", "simclr", 3, status="interrupted", knn=1.0)
    rep = make_report([tmp_path], out=tmp_path / "report", quiet=True)
    assert rep["swept"] == ["optimizer.lr", "seed"]
    header, rows = _table(rep["text"].split("## Mean")[0])
    assert header == [
        "run",
        "method",
        "data",
        "backbone",
        "epochs",
        "optimizer.lr",
        "seed",
        "kNN init",
        "kNN best",
        "kNN final",
        "time s",
        "img/s",
    ]  # metrics no run has: no column
    assert not any(
        h.startswith(
            (
                "optimizr",
                "cpu_threads",
                "progress_bar",
                "logger",
                "run_name",
                "output_root",
                "data.options",
                "trainer",
            )
        )
        for h in header
    )
    assert [r["run"] for r in rows] == ["b", "c", "a"]
    assert {r["run"]: r["optimizer.lr"] for r in rows} == {"a": "0.3", "b": "0.6", "c": "0.3"}
    notes = [ln for ln in rep["text"].splitlines() if "not shown" in ln]
    assert len(notes) == 3  # one line per kind
    assert any(ln.startswith("- 1 failed run not shown: `d`") for ln in notes)
    assert any(ln.startswith("- 1 incomplete run not shown: `e`") for ln in notes)
    assert any(ln.startswith("- 1 interrupted run not shown: `f`") for ln in notes)
    hidden = {r["run"]: (r["status"], r["error"]) for r in rep["hidden"]}
    assert hidden["d"] == ("failed", "config key 'optimizer.lr': must be positive, got -1.")
    assert hidden["e"][0] == "incomplete" and "before training" in hidden["e"][1]
    for name in ("report.md", "report.csv"):
        assert (tmp_path / "report" / name).is_file()
    assert not (tmp_path / "report.md").exists()  # --out was honoured
    # --all: the failed run's lr=-1 and the stale run's epochs now differ too
    rep = make_report([tmp_path], out=tmp_path / "report", quiet=True, show_all=True)
    assert rep["swept"] == ["optimizer.lr", "trainer.max_epochs", "seed"] and len(rep["rows"]) == 6


def test_keys_that_follow_the_method_are_named_not_columns(tmp_path):
    fake_run(tmp_path / "a", "simclr", 0, knn=30.0, lr=0.3)
    fake_run(tmp_path / "b", "byol", 0, knn=35.0, lr=1.0, cfg_update={"method.base_tau": 0.99})
    rep = make_report([tmp_path], out=tmp_path / "r", quiet=True)
    assert rep["swept"] == [] and set(rep["by_identity"]) == {"method.base_tau", "optimizer.lr"}
    assert (
        "so no column: `optimizer.lr`." in rep["text"]
    )  # method.* keys follow the method column silently
    assert rep["accuracy_data"]["labels"] == [
        "byol",
        "simclr",
    ]  # configurations named by what differs
    # a second simclr lr makes optimizer.lr a column: it now differs between runs of the same method
    fake_run(tmp_path / "c", "simclr", 0, knn=20.0, lr=0.1)
    rep = make_report([tmp_path], out=tmp_path / "r", quiet=True)
    assert rep["swept"] == ["optimizer.lr"] and rep["by_identity"] == ["method.base_tau"]
    assert rep["accuracy_data"]["labels"] == ["byol lr=1.0", "simclr lr=0.3", "simclr lr=0.1"]


def test_missing_probe_values_are_absent_from_the_bars_and_init_knn_is_shown(tmp_path):
    fake_run(tmp_path / "a", "simclr", 0, knn=30.0, probe=25.0, lr=0.3)
    fake_run(tmp_path / "b", "simclr", 0, knn=35.0, probe=None, lr=0.6)  # no online probe logged
    rep = make_report([tmp_path], out=tmp_path / "r", quiet=True)
    data = rep["accuracy_data"]
    assert data["labels"] == ["lr=0.6", "lr=0.3"]
    series = {s["key"]: s["points"] for s in data["series"]}
    assert series["knn_top1_best"] == [(0, 35.0, 0.0), (1, 30.0, 0.0)]
    assert series["probe_top1_best"] == [(1, 25.0, 0.0)]  # no bar (not a zero) for lr=0.6
    assert series["knn_top1_init"] == [
        (0, 10.0, 0.0),
        (1, 10.0, 0.0),
    ]  # the random-init baseline per config
    assert "linear_top1" not in series  # no offline eval anywhere: no series
    assert all(
        s["points"][0] == (0.0, 10.0) for s in rep["curve_data"]["series"]
    )  # epoch 0: random init
    _decodes(rep["accuracy_png"])


def _drawn_tick_labels(axis):
    lo, hi = sorted(axis.get_view_interval())
    return [
        lab
        for loc, lab in zip(axis.get_ticklocs(), axis.get_ticklabels())
        if lo <= loc <= hi and lab.get_text()
    ]


def test_plot_labels_do_not_overlap_or_leave_the_figure():
    # 24 configurations with long labels: the bars' tick labels, the curves' legend (beside the
    # axes)
    labels = [
        f"{m} lr={lr} temperature={t} views.0.blur.prob={b}"
        for m in ("simclr", "moco_v2", "byol")
        for lr, t, b in (
            (0.03, 0.1, 0.5),
            (0.3, 0.2, 1.0),
            (3.0, 0.5, 0.0),
            (1.0, 0.07, 0.1),
            (0.01, 0.3, 0.2),
            (0.1, 1.0, 0.3),
            (0.5, 0.15, 0.4),
            (2.0, 0.25, 0.6),
        )
    ]
    acc = {
        "labels": labels,
        "reason": None,
        "series": [
            {
                "key": k,
                "label": k,
                "points": [(i, 10.0 + i, 1.0) for i in range(len(labels)) if i % 3 != j],
            }
            for j, k in enumerate(("knn_top1_init", "knn_top1_best", "probe_top1_best"))
        ],
    }
    curves = {
        "reason": None,
        "series": [
            {
                "run": f"{i}_{lb}",
                "label": lb,
                "status": "completed",
                "points": [(0.0, 10.0), (1.0, 12.0 + i)],
            }
            for i, lb in enumerate(labels)
        ],
    }
    import matplotlib.pyplot as plt

    for fig in (accuracy_figure(acc), curves_figure(curves)):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        box = fig.bbox
        texts = [
            t for ax in fig.axes for axis in (ax.xaxis, ax.yaxis) for t in _drawn_tick_labels(axis)
        ]
        texts += [t for leg in fig.legends for t in leg.get_texts()]
        texts += [
            t
            for ax in fig.axes
            for t in ax.texts + [ax.title, ax.xaxis.label, ax.yaxis.label]
            if t.get_text()
        ]
        assert len(texts) > 10
        for t in texts:  # inside the figure: not cut
            e = t.get_window_extent(renderer)
            assert (
                e.x0 >= box.x0 - 1
                and e.x1 <= box.x1 + 1
                and e.y0 >= box.y0 - 1
                and e.y1 <= box.y1 + 1
            ), t.get_text()
        for ax in fig.axes:  # tick labels of one axis do not overlap each other
            for axis in (ax.xaxis, ax.yaxis):
                ticks = [t.get_window_extent(renderer) for t in _drawn_tick_labels(axis)]
                for i, a in enumerate(ticks):
                    assert not any(a.overlaps(b) for b in ticks[i + 1 :])
        plt.close(fig)


def test_a_sweep_without_finished_epochs_writes_no_curves_png_and_says_why(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "report_curves.png").write_bytes(b"an earlier report's plot")
    for i in range(
        2
    ):  # completed, but no epoch with a kNN evaluation (e.g. trainer.fast_dev_run=true)
        d = fake_run(tmp_path / f"{i}_simclr", "simclr", i, knn=None, epochs=0)
        (d / "metrics.csv").write_text("epoch,step,train/loss\n0,0,3.0\n")
        res = json.loads((d / "results.json").read_text())
        res.update({"knn_top1_init": None, "best": {}, "final": {}})
        (d / "results.json").write_text(json.dumps(res))
    rep = make_report([tmp_path], out=out, quiet=True)
    assert rep["curves_png"] is None and not (out / "report_curves.png").exists()
    assert rep["accuracy_png"] is None and not (out / "report_accuracy.png").exists()
    md = (out / "report.md").read_text()
    assert (
        "No kNN curves plot: none of the 2 run(s) shown logged val/knn_top1 for a finished epoch"
        in md
    )
    assert ".png)" not in md
    assert "No accuracy plot: no completed run has a kNN" in md


def test_offline_linear_from_results_evals_or_eval_linear_json(tmp_path):
    """The newest linear eval of results.json's `evals` (entries as
    ssl_bench.eval.results.eval_entry writes them: numbers under `metrics`), else eval_linear.json;
    the notes say which one is shown."""
    evals = [
        {"mode": "linear", "time": "t1", "metrics": {"top1": 51.0}, "settings": {"lr": 0.1}},
        {"mode": "knn", "time": "t2", "metrics": {"top1": 40.0}, "settings": {"k": 20}},
        {
            "mode": "linear",
            "time": "t3",
            "metrics": {"top1": 55.5, "top5": 90.0},
            "settings": {"lr": 0.3, "epochs": 100},
        },
    ]
    fake_run(tmp_path / "a", "simclr", 0, knn=30.0, results_extra={"evals": evals}, linear=10.0)
    fake_run(tmp_path / "b", "simclr", 1, knn=31.0, linear=47.0)  # eval_linear.json only
    rep = make_report([tmp_path], out=tmp_path / "r", quiet=True)
    rows = {r["run"]: r for r in rep["rows"]}
    assert rows["a"]["linear_top1"] == 55.5 and rows["a"]["linear_settings"] == {
        "lr": 0.3,
        "epochs": 100,
    }
    assert (rows["a"]["linear_time"], rows["a"]["linear_evals"], rows["b"]["linear_evals"]) == (
        "t3",
        2,
        1,
    )
    assert rows["a"]["knn_eval_top1"] == 40.0 and rows["b"]["linear_top1"] == 47.0
    _, table = _table(rep["text"].split("## Mean")[0])
    assert {r["run"]: r["linear"] for r in table} == {"a": "55.50", "b": "47.00"}
    assert "newest offline linear eval" in rep["text"] and "`a` has several" in rep["text"]
    with open(tmp_path / "r" / "report.csv") as f:
        csv_rows = {r["run"]: r for r in csv.DictReader(f)}
    assert json.loads(csv_rows["a"]["linear_settings"]) == {"epochs": 100, "lr": 0.3}
    assert (csv_rows["a"]["linear_time"], csv_rows["a"]["linear_evals"]) == ("t3", "2")


def test_write_sweep_report_returns_paths(sweep):
    rep = write_sweep_report(sweep)
    assert rep["markdown"] == sweep / "report.md" and rep["csv"].is_file()
    assert [r["run"] for r in rep["hidden"]] == ["2_byol-s0"]
    _decodes(rep["curves_png"])


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    (base / "runs").mkdir()
    run_cli(
        *FAST,
        "trainer.max_epochs=1",
        run_dir=base / "runs" / "real",
        env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        check=True,
    )
    return base / "runs"


def test_report_on_a_real_run(real_run, tmp_path):
    rep = make_report([real_run], out=tmp_path, quiet=True)
    (row,) = rep["rows"]
    res = json.loads((real_run / "real" / "results.json").read_text())
    assert (
        row["status"] == "completed"
        and row["method"] == "simclr"
        and row["backbone"] == "resnet18_narrow"
    )
    assert row["knn_top1_best"] == res["best"]["val/knn_top1"] and row["epochs"] == 1
    assert [e for e, _ in row["_curve"]] == [0, 1]
    assert (
        row["_config"]["backbone.tag"] == "resnet18_narrow"
    )  # resolved from ${backbone.name}_narrow
    _decodes(rep["curves_png"])
    _decodes(rep["accuracy_png"])


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_report_bad_path_is_one_clear_message(tmp_path, case):
    target = tmp_path / "nowhere" if case == "missing" else tmp_path
    proc = subprocess.run(
        [sys.executable, "-m", "ssl_bench.report", str(target)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert str(target) in proc.stderr and proc.stderr.count("ssl_bench: error:") == 1
