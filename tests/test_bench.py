"""The benchmark harness (ssl_bench.bench) in tiny configurations: every column present and
positive, every lightly loop runs and makes the row's views, the comparison and the GPU suite's code
path (on the CPU) write consistent tables and JSON."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from ssl_bench.bench import COLUMNS, main
from ssl_bench.bench.bound import bound_views, groupings
from ssl_bench.bench.gpu import checks, timed_steps
from ssl_bench.bench.lightly_loop import VARIANTS, make_transform, run_lightly
from ssl_bench.bench.lightly_specs import SPECS
from ssl_bench.bench.ours import Setting, bench_config, row_backbone
from ssl_bench.views.config import parse_pipelines

TINY = ["--backbone", "resnet18_narrow", "--image-size", "16", "--batch-size", "8"]
TINY += ["--warmup", "1", "--steps", "1", "--accelerator", "cpu"]
METHODS = [m for m in SPECS if m != "mae"]  # MAE needs a ViT: test_mae_rows_...


def test_bench_tiny_configuration(tmp_path):
    out_md, out_json = tmp_path / "BENCH.md", tmp_path / "rows.json"
    argv = ["--methods", "simclr", *TINY, "--steps", "2", "--out", str(out_md)]
    assert main([*argv, "--json", str(out_json)]) == 0
    rows = json.loads(out_json.read_text())
    assert len(rows) == 1
    row = rows[0]
    for col in COLUMNS:
        assert col in row
    for col in ("train_img_s", "views_img_s", "step_tflops", "peak_tflops", "mfu_pct"):
        assert row[col] > 0, col
    assert row["peak_mem_mib"] > 0 and row["machine"]["cpu_bf16"] in ("native", "emulated")
    text = out_md.read_text()
    assert "| method |" in text and "simclr" in text and "cores" in text and "CPU bf16" in text


def _pipes(cfg):
    return parse_pipelines(cfg.augmentation.views, image_size=int(cfg.data.image_size))


def _sizes(cfg) -> list[int]:
    return [p.crop_size for p in _pipes(cfg) for _ in range(p.num_crops)]


def test_lightly_transforms_make_the_rows_views():
    """lightly's transform of every method, configured from the ResNet-18 row (its recipe's
    views), gives the row's number of views at the row's sizes, large crops first (SwAV's and
    DINO's multi-crop included; test_every_lightly_loop_runs checks the small rows' views)."""
    from PIL import Image

    image = Image.new("RGB", (32, 32), (90, 120, 60))
    for method in METHODS:
        cfg = bench_config(Setting(method, "resnet18", 32, 8), 16, "32-true", [])
        views = make_transform(SPECS[method], _pipes(cfg))(image)
        assert [v.shape[-1] for v in views] == _sizes(cfg), method


@pytest.mark.parametrize("method", METHODS)
def test_every_lightly_loop_runs(method):
    """Each method's lightly loop (the small row's config, bf16 autocast + channels_last) trains
    two steps with a finite loss on batches of the row's views."""
    cfg = bench_config(Setting.small_row(method, 8), 64, "auto", [])
    out = run_lightly(cfg, VARIANTS["bf16_cl"], torch.device("cpu"), 1, 1, 0)
    assert math.isfinite(out["loss"]) and out["img_s"] > 0
    assert [s[-1] for s in out["view_shapes"]] == _sizes(cfg)
    assert all(s[0] == 8 for s in out["view_shapes"])


def test_lightly_mae_loop_runs():
    """lightly's MAE loop on a tiny timm ViT (ssl_bench's method=mae is merged from another
    branch: its keys are read with lightly's example's defaults when absent)."""
    cfg = bench_config(Setting("simclr", "vit_tiny", 16, 4), 32, "auto", [])
    with open_dict(cfg):
        cfg.method = OmegaConf.create(
            {"name": "mae", "mask_ratio": 0.75, "decoder_dim": 32, "decoder_num_heads": 2}
        )
        cfg.augmentation.views = [{"num_crops": 1, "crop_size": 16, "scale": [0.2, 1.0]}]
    for variant in ("fp32", "bf16_cl"):
        out = run_lightly(cfg, VARIANTS[variant], torch.device("cpu"), 1, 1, 0)
        assert math.isfinite(out["loss"]) and out["view_shapes"] == [(4, 3, 16, 16)]
    assert bound_views(cfg) is None  # a bare ViT on whole images bounds nothing for MAE


def test_mae_rows_take_a_vit_and_a_failing_row_spares_the_others(tmp_path, monkeypatch):
    """MAE masks patch tokens: where the suite's backbone is a ResNet its rows take ViT-Tiny (the
    small row: fmnist_mae's, patch 7 at 28 px) and run beside lightly's MAE loop. A row that fails
    is reported in the table's header, the other rows are still written, and the exit status is 1
    (a bench that stopped at its 10th method lost 20 minutes of measurements)."""
    from ssl_bench.bench import compare

    assert row_backbone("mae", "resnet18") == "vit_tiny"
    assert row_backbone("simclr", "resnet18") == "resnet18"
    small = bench_config(Setting.small_row("mae", 8), 16, "auto", [])
    assert small.backbone.name.startswith("vit_tiny") and small.data.image_size == 28
    assert small.backbone.kwargs.patch_size == 7

    real = compare.bench_row

    def failing_simclr(setting, args):
        if setting.method == "simclr":
            raise RuntimeError("simulated failure")
        return real(setting, args)

    monkeypatch.setattr(compare, "bench_row", failing_simclr)
    out_md, out_json = tmp_path / "BENCH.md", tmp_path / "rows.json"
    argv = ["--suite", "lightly", "--methods", "simclr,mae", "--no-small", *TINY]
    argv += ["--override", "method.decoder_embed_dim=32", "--override", "method.decoder_depth=1"]
    argv += ["--override", "method.decoder_num_heads=2", "--lightly-workers", "1"]
    assert main([*argv, "--out", str(out_md), "--json", str(out_json)]) == 1
    rows = json.loads(out_json.read_text())
    assert [(r["method"], r["backbone"]) for r in rows] == [("mae", "vit_tiny")]
    x = rows[0]["extra"]
    assert rows[0]["train_img_s"] > 0
    assert x["lightly_fast_img_s"] > 0 and x["lightly_fp32_img_s"] > 0
    text = out_md.read_text()
    assert "Not measured (the row failed): simclr (resnet18_narrow, 16 px): simulated" in text


def test_the_bound_times_both_sides_backbone_calls():
    """The bound groups the views as ssl_bench's method does (bn_stats) and as lightly's loop does
    (one call per view; per resolution for DINO): both where they differ."""
    expected = {"simclr": [False, True], "byol": [False], "dino": [True], "swav": [False, True]}
    for method, calls in expected.items():
        assert groupings(bench_config(Setting(method, "resnet18", 32, 8), 16, "auto", [])) == calls
    cfg = bench_config(Setting("byol", "resnet18", 32, 8), 16, "auto", [])
    assert bound_views(cfg) == ([32, 32], 2, 2)  # two views trained, two through the teacher


def test_lightly_comparison_each_kind(tmp_path):
    """The lightly suite on one method of each kind (contrastive: SimCLR; momentum and memory bank:
    MoCo v2, lightly's NTXentLoss with its memory bank; multi-crop: SwAV): every row has
    ssl_bench, lightly's fast and fp32 loops (in a DataLoader worker) and the bound, and the ratios
    are their quotients."""
    out_md, out_json = tmp_path / "BENCH.md", tmp_path / "rows.json"
    argv = ["--suite", "lightly", "--methods", "simclr,moco_v2,swav", "--no-small", *TINY]
    argv += ["--lightly-workers", "1", "--out", str(out_md), "--json", str(out_json)]
    assert main(argv) == 0
    rows = json.loads(out_json.read_text())
    assert [r["method"] for r in rows] == ["simclr", "moco_v2", "swav"]
    for r in rows:
        x = r["extra"]
        assert x["lightly_fast"] == ("bf16_cl" if x["cpu_bf16"] == "native" else "fp32_cl")
        for key in ("lightly_fast_img_s", "lightly_fp32_img_s", "bound_img_s"):
            assert x[key] > 0, (r["method"], key)
        assert x["bound_calls"] in ("per_view", "joint")
        assert x["ratio_vs_lightly_fast"] == pytest.approx(
            r["train_img_s"] / x["lightly_fast_img_s"]
        )
        assert x["ratio_vs_lightly_fp32"] == pytest.approx(
            r["train_img_s"] / x["lightly_fp32_img_s"]
        )
        assert x["pct_of_bound"] == pytest.approx(100 * r["train_img_s"] / x["bound_img_s"])
        assert math.isfinite(x["lightly_fast_loss"]) and math.isfinite(x["lightly_fp32_loss"])
    assert rows[2]["extra"]["views"] == "2x16+6x16"  # SwAV's multi-crop (16 px images here)
    text = out_md.read_text()
    assert "ratio_vs_lightly_fast" in text and "pct_of_bound" in text and "load average" in text


def test_gpu_suite_code_path_on_cpu(tmp_path):
    """The GPU suite's code path with tiny sizes on the CPU: SimCLR and BYOL on their CIFAR-10
    recipes, the epoch extrapolated from the timed steps, lightly's ratio, the targets judged."""
    out_md, out_json = tmp_path / "BENCH.md", tmp_path / "gpu.json"
    argv = ["--suite", "gpu", *TINY, "--steps", "2", "--epoch-images", "48"]
    argv += ["--lightly-workers", "0", "--out", str(out_md), "--json", str(out_json)]
    assert main(argv) == 0
    payload = json.loads(out_json.read_text())
    rows = payload["rows"]
    assert [r["method"] for r in rows] == ["simclr", "byol"]
    for r in rows:
        assert r["recipe"] == f"{r['method']}_cifar10"
        assert r["views"] == {"simclr": "2x16", "byol": "1x16+1x16"}[r["method"]]
        assert r["timed_images"] == 16 and r["precision"] == "bf16-mixed"
        assert r["epoch_s"] == pytest.approx(48 / r["train_img_s"])
        assert r["ratio_vs_lightly"] == pytest.approx(r["train_img_s"] / r["lightly_img_s"])
    targets = {t["target"]: t for t in payload["targets"]}
    assert set(targets) == {
        "simclr s per epoch",
        "byol s per epoch",
        "views images/s (min)",
        "peak memory GB (max)",
    }
    assert targets["simclr s per epoch"]["pass"] == (rows[0]["epoch_s"] <= 4.0)
    text = out_md.read_text()
    assert "GPU suite" in text and "no GPU" in text and "Targets" in text and "extrapolated" in text


def test_gpu_targets_are_judged():
    rows = [
        {"method": "simclr", "epoch_s": 3.9, "views_img_s": 60_000.0, "peak_mem_gb": 2.0},
        {"method": "byol", "epoch_s": 5.1, "views_img_s": 49_000.0, "peak_mem_gb": 4.5},
    ]
    verdicts = {what: ok for what, _, _, ok in checks(rows)}
    assert verdicts == {
        "simclr s per epoch": True,
        "byol s per epoch": False,
        "views images/s (min)": False,
        "peak memory GB (max)": False,
    }
    # by default every step of one epoch after the warm-up is timed: 97 - 15
    args = SimpleNamespace(epoch_images=50_000, batch_size=512, warmup=15, steps=None)
    assert timed_steps(args) == 82


def test_unknown_method_is_one_clear_error(capsys):
    assert main(["--methods", "simclr,nosuch", "--out", ""]) == 2
    err = capsys.readouterr().err
    assert "nosuch" in err and "conf/method" in err and "Traceback" not in err


def test_attention_kernel_bench_tiny(tmp_path):
    """python -m ssl_bench.bench.attention on one tiny shape: both kernels timed in both passes and
    dtypes, the table appended to --out; a bad shape or dtype is one clear message."""
    from ssl_bench.bench import attention

    out = tmp_path / "b.md"
    lines = attention.main(["--shapes", "2x2x5x8", "--reps", "1", "--out", str(out)])
    assert [line[1:3] for line in lines] == [
        ["bf16", "forward + backward"],
        ["bf16", "forward (no grad)"],
        ["fp32", "forward + backward"],
        ["fp32", "forward (no grad)"],
    ]
    for line in lines:
        assert line[0] == "2x2x5x8" and line[3] > 0 and line[4] > 0
        assert line[5] > 0  # fused / explicit, from the unrounded times
    text = out.read_text()
    assert "### Attention kernels on" in text and "| shape | dtype | pass | fused_ms |" in text
    with pytest.raises(SystemExit, match="--shapes: '2x2x5'"):
        attention.main(["--shapes", "2x2x5"])
    with pytest.raises(SystemExit, match="--dtypes: fp8"):
        attention.main(["--dtypes", "fp8"])
    # the two kernels compute the same attention
    q, k, v = (
        torch.randn(2, 2, 5, 8, generator=torch.Generator().manual_seed(i)) for i in range(3)
    )
    explicit, fused = (attention.attention(q, k, v, e) for e in (True, False))
    assert torch.allclose(explicit, fused, atol=1e-5)


def test_phases_bench_tiny(tmp_path):
    """python -m ssl_bench.bench.phases on a tiny config: one line a method with every part of both
    steps timed (the momentum update only where the method has one), the ratio lightly / ours, the
    table appended to --out; a method without a lightly loop is one clear message."""
    from ssl_bench.bench import phases

    out = tmp_path / "p.md"
    args = ["--methods", "byol,simclr", "--backbone", "resnet18_narrow", "--image-size", "16"]
    lines = phases.main([*args, "--batch-size", "8", "--steps", "1", "--out", str(out)])
    assert [line[0] for line in lines] == ["byol", "simclr"]
    for line in lines:
        row = dict(zip(phases.COLUMNS, line))
        for side in ("ours", "lightly"):
            for part in ("forward", "backward", "optimizer"):
                assert row[f"{side}_{part}_s"] > 0, (line, side, part)
            assert row[f"{side}_step_s"] > 0
        ratio = row["lightly_step_s"] / row["ours_step_s"]
        assert math.isclose(row["ratio_vs_lightly"], ratio, rel_tol=0.2, abs_tol=0.02)
    byol, simclr = (dict(zip(phases.COLUMNS, line)) for line in lines)
    assert byol["ours_momentum_s"] > 0 and byol["lightly_momentum_s"] > 0  # EMA targets
    text = out.read_text()
    assert "### One step split into its parts" in text and "| method | variant |" in text
    with pytest.raises(SystemExit, match="--methods: cpc_v2 has no lightly loop"):
        phases.main(["--methods", "cpc_v2"])
    # --small: the suite's small row (the Fashion-MNIST experiment's settings, 28 px)
    small = phases.setup("simclr", "resnet18", 32, 8, [], small=True)
    assert small.views[0].shape[-1] == 28
    (line,) = phases.main(["--methods", "simclr", "--small", "--batch-size", "8", "--steps", "1"])
    assert line[0] == "simclr" and line[-1] > 0
