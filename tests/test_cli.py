"""The real CLI: fast_dev_run, every bad input of the foundation issue, resume, offline W&B."""

from __future__ import annotations

import re

import pytest
from conftest import FAST, PINNED, run_cli


def test_fast_dev_run_through_cli(tmp_path):
    run = run_cli(
        "method=simclr",
        "data=synthetic",
        "trainer.fast_dev_run=true",
        *FAST,
        run_dir=tmp_path / "run",
        check=True,
    )
    res = run.results
    assert res["status"] == "completed" and res["method"] == "simclr" and res["data"] == "synthetic"
    assert res["global_step"] == 1
    assert "val/knn_top1" in res["final"] and res["knn_top1_init"] is not None
    assert (tmp_path / "run" / ".hydra" / "config.yaml").is_file()
    # fast_dev_run writes no checkpoint and no metrics.csv (Lightning suppresses both); results.json
    # it has
    out = re.sub(r"(?<=\S) {2,}", "  ", run.stdout)  # table columns: any width
    block = ["  method: simclr", "  recipe: ", "  run dir: ", "  data: synthetic, 256 images to"]
    block += ["  backbone: resnet18, small-input stem", "  precision: ", "  devices: 1 x cpu"]
    block += ["  backbone  ResNet", "ssl_bench: kNN baseline (random init): 256 bank + 128 test"]
    at = [out.index(line) for line in block]
    assert at == sorted(at), out  # one block, in this order, before the baseline
    assert_quiet(run)
    # the summary ends the run
    tail = out[out.index("ssl_bench: run completed after") :]
    assert f"{tmp_path / 'run'}" in tail and "  kNN top-1: " in tail and "random init ->" in tail
    assert "epoch(s), 1 step(s)" in tail and "results.json" in tail
    assert "no checkpoint was written" in tail  # fast_dev_run: nothing to resume or evaluate


# the console noise of issue 15 (item 5): none of it may reach stdout or stderr
NOISE = [
    "[INFO]",
    "GPU available",
    "LitLogger",
    "exists and is not empty",
    "LeafSpec",
    "not supported by the model summary",
    "FLOPs",
    "smaller than the logging interval",
    "anonymous setting",
    "v_num",
]


def assert_quiet(run) -> None:
    for line in NOISE:
        assert line not in run.stdout + run.stderr, f"{line!r} on the console:\n{run.stderr}"


def test_cfg_job_prints_composed_config(tmp_path):
    run = run_cli(
        "--cfg",
        "job",
        "method=simclr",
        "data=cifar10",
        "backbone=resnet18",
        run_dir=tmp_path / "x",
        check=True,
    )
    for key in (
        "temperature: 0.2",
        "batch_size: 256",
        "name: resnet18",
        "max_epochs: 1000",
        "name: simclr_cifar10",
    ):
        assert key in run.stdout


def test_method_and_data_compose_the_published_recipe(tmp_path):
    """The headline command trains BYOL's CIFAR recipe: its views and optimizer, not SimCLR's."""
    import yaml

    run = run_cli("--cfg", "job", "method=byol", "data=cifar10", run_dir=tmp_path / "x", check=True)
    cfg = yaml.safe_load(run.stdout)
    assert cfg["recipe"]["name"] == "byol_cifar10" and "solo-learn" in cfg["recipe"]["source"]
    views = cfg["augmentation"]["views"]
    assert [v["solarize"] for v in views] == [0.0, 0.2] and {v["blur"]["prob"] for v in views} == {
        0.0
    }
    assert {v["color_jitter"]["saturation"] * v["color_jitter"]["strength"] for v in views} == {0.2}
    opt = cfg["optimizer"]
    assert (opt["name"], opt["lr"], opt["weight_decay"], opt["clip_lr"]) == (
        "lars",
        1.0,
        1.0e-5,
        True,
    )
    assert cfg["trainer"]["max_epochs"] == 1000 and cfg["method"]["base_tau"] == 0.99


def test_method_without_a_published_recipe_says_what_it_falls_back_to(tmp_path):
    # STL-10 is not here and cannot be downloaded: the run names its recipe first, then stops at the
    # data
    run = run_cli(
        "method=byol",
        "data=stl10",
        f"data.root={tmp_path / 'none'}",
        "data.download=false",
        run_dir=tmp_path / "stl",
    )
    assert run.returncode == 2
    assert "recipe: no published recipe for byol on stl10: byol's own defaults" in run.stdout
    # on data that is here the run trains byol's own views and optimizer and results.json says so
    done = run_cli(
        "method=byol",
        "trainer.fast_dev_run=true",
        *FAST[len(PINNED) :],
        "method.proj_hidden_dim=64",
        "method.pred_hidden_dim=64",
        "optimizer.lr=0.1",
        run_dir=tmp_path / "synthetic",
        check=True,
    )
    recipe = done.results["recipe"]
    assert recipe["name"] == "byol" and recipe["data"] is None and "Grill" in recipe["source"]
    # the overrides of recipe keys are recorded (and only those: data=..., backbone=... are not
    # recipe keys)
    assert set(recipe["overrides"]) == {
        "method.proj_hidden_dim=64",
        "method.pred_hidden_dim=64",
        "optimizer.lr=0.1",
        "data.batch_size=64",
    }
    assert "recipe: no published recipe for byol on synthetic" in done.stdout


# (overrides, exit code, words the message must contain)
BAD_INPUTS = {
    "unknown_method": (["method=nope"], 1, ["method", "simclr"]),
    "unknown_backbone_option": (["backbone=nope"], 1, ["backbone", "resnet18"]),
    "unknown_dataset": (["data=nope"], 1, ["data", "cifar10"]),
    "unknown_augmentation": (["augmentation=nope"], 1, ["augmentation", "simclr"]),
    "unknown_timm_model": (["backbone.name=resnet_does_not_exist"], 2, ["backbone.name", "timm"]),
    "temperature_not_positive": (["method.temperature=0"], 2, ["method.temperature", "positive"]),
    "lr_not_positive": (["optimizer.lr=-0.1"], 2, ["optimizer.lr", "positive"]),
    "contrastive_batch_of_one": (["data.batch_size=1"], 2, ["data.batch_size", "at least 2"]),
    "crop_larger_than_image": (
        ["augmentation.views.0.crop_size=64"],
        2,
        ["crop_size", "larger than the image"],
    ),
    "unknown_key": (["method.temprature=0.1"], 1, ["temprature"]),
    "tau_outside_0_1": (["method=byol", "method.base_tau=1.5"], 2, ["method.base_tau", "[0, 1]"]),
    "mae_without_a_vit": (["method=mae"], 2, ["backbone", "Vision Transformer", "vit_tiny"]),
    "more_gpus_than_available": (
        ["trainer.accelerator=gpu", "trainer.devices=64"],
        2,
        ["trainer.devices", "GPU"],
    ),
    "dataset_smaller_than_a_batch": (
        ["data.limit=100", "data.batch_size=256"],
        2,
        ["data.batch_size", "100 images after data.limit=100", "fewer than one batch of 256"],
    ),
    "more_cpu_processes_than_cores": (
        ["trainer.accelerator=cpu", "trainer.devices=4096"],
        2,
        ["trainer.devices", "cores"],
    ),
}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad")

    # one after another through this worker's zygote: most end in config checks within ~1 s, and
    # calls in parallel would each start a zygote of their own (~7 CPU-seconds of imports) on 2
    # cores that the other test worker keeps busy anyway
    return {
        name: run_cli(
            *FAST,
            "trainer.fast_dev_run=true",
            *overrides,
            run_dir=base / name,
            timeout=300,
            env={"OMP_NUM_THREADS": "1"},
        )
        for name, (overrides, _, _) in BAD_INPUTS.items()
    }


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_gives_one_clear_message(bad_runs, name):
    _, code, words = BAD_INPUTS[name]
    run = bad_runs[name]
    assert run.returncode == code, run.stderr[-2000:]
    text = run.stderr + run.stdout
    for word in words:
        assert word in text, f"{word!r} missing from:\n{text[-2000:]}"
    assert "Traceback" not in text
    assert not (run.run_dir / "checkpoints").exists()


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    run = run_cli(
        *FAST,
        "trainer.fast_dev_run=true",
        f"hydra.run.dir={blocker}/run",
        run_dir=tmp_path / "unused",
    )
    assert run.returncode == 2
    assert str(blocker / "run") in run.stderr and "cannot be written" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_callback_is_added_and_one_dropped_from_the_cli(tmp_path):
    """The callbacks group (conf/callbacks/default.yaml, README "Callbacks"):
    `+callbacks.<name>._target_=...` adds a Lightning callback, `~callbacks.<name>` drops one, and
    a callback that cannot be built is a config error naming it (exit 2)."""
    run = run_cli(
        *FAST,
        "trainer.max_epochs=1",
        "trainer.log_every_n_steps=1",
        "online_eval.init_baseline=false",
        "+callbacks.lr_monitor._target_=pytorch_lightning.callbacks.LearningRateMonitor",
        "~callbacks.throughput",
        run_dir=tmp_path / "run",
        check=True,
    )
    logged = {k for r in run.metrics() for k, v in r.items() if v}
    assert any(k.startswith("lr-") for k in logged), logged  # LearningRateMonitor: lr-<optimizer>
    assert "train/images_per_sec" not in logged and run.results["images_per_sec"] is None
    assert "val/knn_top1" in run.results["best"]  # the other callbacks are still there
    bad = run_cli(
        *FAST,
        "trainer.fast_dev_run=true",
        "+callbacks.x._target_=ssl_bench.callbacks.NoSuchCallback",
        run_dir=tmp_path / "bad",
    )
    assert bad.returncode == 2 and "callbacks.x" in bad.stderr, bad.stderr[-2000:]
    assert "Traceback" not in bad.stderr


def test_resume_continues_global_step(tmp_path):
    common = [*FAST, "trainer.max_epochs=2", "trainer.log_every_n_steps=1", "optimizer=sgd"]
    first = run_cli(*common, run_dir=tmp_path / "first", check=True)
    saved = first.results["global_step"]
    assert saved == 2 * (256 // 64)
    # a longer schedule, resumed from the first run's checkpoint
    second = run_cli(
        *[o for o in common if not o.startswith("trainer.max_epochs")],
        "trainer.max_epochs=3",
        f"resume={tmp_path / 'first'}",
        run_dir=tmp_path / "second",
        check=True,
    )
    steps = [int(r["step"]) for r in second.metrics() if r.get("train/loss")]
    assert min(steps) >= saved, (
        steps
    )  # the first logged training step continues from the checkpoint
    assert second.results["global_step"] == saved + 256 // 64
    assert second.results["resumed_from"].endswith("last.ckpt")
    assert "val/knn_top1_init" not in {k for r in second.metrics() for k, v in r.items() if v}
    # resume=auto finds the newest run with the same config
    third = run_cli(
        *common, "resume=auto", f"output_root={tmp_path}", run_dir=tmp_path / "third", check=True
    )
    assert third.results["resumed_from"] == str(tmp_path / "first" / "checkpoints" / "last.ckpt")
    assert third.results["global_step"] == saved


def test_resume_missing_checkpoint_is_a_clear_error(tmp_path):
    run = run_cli(*FAST, f"resume={tmp_path / 'nowhere.ckpt'}", run_dir=tmp_path / "run")
    assert run.returncode == 2 and "resume" in run.stderr and "nowhere.ckpt" in run.stderr


def test_offline_wandb_run_has_summary(tmp_path):
    from wandb_records import read_offline_run

    # with the progress bar, W&B's own messages and Lightning's default logging interval (longer
    # than this run's 4-step epoch): the run whose console must stay quiet (issue 15, item 5)
    run = run_cli(
        *FAST,
        "logger=wandb",
        "trainer.max_epochs=1",
        "progress_bar=true",
        run_dir=tmp_path / "run",
        env={"WANDB_MODE": "offline", "WANDB_API_KEY": "", "WANDB_SILENT": "false"},
        check=True,
    )
    assert_quiet(run)
    assert "kNN baseline (random init) ━" in run.stdout  # the baseline's bar says what it is
    assert "run completed" in run.stdout.splitlines()[-7]  # the summary ends the output
    log = "".join(p.read_text() for p in (tmp_path / "run").glob("*.log"))
    assert "GPU available" in log  # Lightning's INFO lines still go to the run's log file
    logged = read_offline_run(tmp_path / "run")
    assert "val/knn_top1" in logged["summary"]
    assert logged["summary"]["val/knn_top1"] == pytest.approx(run.results["best"]["val/knn_top1"])
    assert any("train/loss" in row for row in logged["history"])
    assert logged["config"].get("method", {}).get("name") == "simclr"
