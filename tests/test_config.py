"""Every option of every config group composes and resolves; the configs travel with the package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ssl_bench.config import CONFIG_DIR

GROUPS = [
    "method",
    "backbone",
    "data",
    "augmentation",
    "optimizer",
    "scheduler",
    "trainer",
    "logger",
    "callbacks",
    "recipe",
    "experiment",
]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def all_options():
    return [(g, o) for g in GROUPS for o in options(g)]


def compose_with(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.mark.parametrize("group,option", all_options())
def test_every_option_composes_and_resolves(group, option):
    cfg = compose_with(f"{group}={option}")
    data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert data["method"]["name"] and data["data"]["name"] and data["backbone"]["name"]
    if group == "method":
        assert data["method"]["_target_"].startswith("ssl_bench.methods.")


def test_groups_are_not_empty():
    for group in GROUPS[:-1]:
        assert options(group), group


@pytest.mark.parametrize("option", options("method"))
def test_method_targets_import_and_take_their_yaml_keys(option):
    import inspect

    from hydra.utils import get_class

    cfg = compose_with(f"method={option}")
    cls = get_class(cfg.method._target_)
    params = set()
    for klass in cls.__mro__:
        if "__init__" in klass.__dict__:
            params |= set(inspect.signature(klass.__init__).parameters)
    for key in cfg.method:
        if key not in ("_target_", "name"):
            assert key in params, (
                f"conf/method/{option}.yaml key {key!r} is not an argument of {cls.__name__}"
            )


def test_keys_documented_in_readme_exist():
    cfg = compose_with()
    for key in (
        "data.batch_size",
        "data.num_workers",
        "optimizer.lr",
        "method.temperature",
        "trainer.max_epochs",
        "trainer.max_steps",
        "trainer.fast_dev_run",
        "trainer.precision",
        "trainer.devices",
        "seed",
        "resume",
    ):
        assert OmegaConf.select(cfg, key, default="__missing__") != "__missing__", key


def test_backbones_build_with_expected_widths():
    from ssl_bench.backbones import create_backbone

    for option, width in (("resnet18", 512), ("resnet18_narrow", 128), ("vit_tiny", 192)):
        cfg = compose_with(f"backbone={option}", "data=cifar10")
        b = OmegaConf.to_container(cfg.backbone, resolve=True)
        model = create_backbone(b["name"], small_input=b["small_input"], **b["kwargs"])
        assert model.num_features == width
        import torch

        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, width)


def test_wheel_carries_the_configs(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(repo),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheel = next(tmp_path.glob("ssl_bench-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "ssl_bench/conf/config.yaml" in names
    for group in GROUPS[:-1]:
        for option in options(group):
            assert f"ssl_bench/conf/{group}/{option}.yaml" in names
    repo_modules = {str(p.relative_to(repo)) for p in (repo / "ssl_bench").rglob("*.py")}
    assert repo_modules <= names, (
        f"modules missing from the wheel (add their package to pyproject): "
        f"{sorted(repo_modules - names)}"
    )


def test_byol_on_cifar10_has_no_blur_as_solo_learns_cifar_recipe():
    views = compose_with("method=byol", "data=cifar10").augmentation.views
    assert [v.blur.prob for v in views] == [0.0, 0.0] and [v.solarize for v in views] == [0.0, 0.2]
    assert (
        compose_with("augmentation=byol").augmentation.views[0].blur.prob == 1.0
    )  # the ImageNet views keep it


def test_synthetic_images_are_drawn_at_the_training_size_and_palette_is_an_option():
    cfg = compose_with("data=synthetic", "data.image_size=16", "data.options.palette=colour")
    assert cfg.data.options.image_size == 16 and cfg.data.options.palette == "colour"


@pytest.mark.parametrize("option", options("data"))
def test_data_targets_build_the_data_module_from_their_yaml_keys(option, tmp_path):
    """conf/data/<option>.yaml is instantiated by its `_target_`: every key reaches the data module
    (small_input / vit_patch_size are for the backbone group), the options are the registered
    dataset's, and the run adds its seed and channels_last."""
    from ssl_bench.data.module import SSLDataModule
    from ssl_bench.data.registry import dataset_spec
    from ssl_bench.training import build_datamodule

    cfg = compose_with(f"data={option}", f"data.root={tmp_path}", "seed=7", "channels_last=false")
    dm = build_datamodule(cfg)  # nothing is loaded before setup()
    assert type(dm) is SSLDataModule and dm.seed == 7 and dm.channels_last is False
    data = OmegaConf.to_container(cfg.data, resolve=True)
    for key in set(data) - {"_target_", "small_input", "vit_patch_size"}:
        assert getattr(dm, key) == data[key], key
    assert set(data["options"]) <= set(dataset_spec(data["name"]).options)
    assert len(dm.pipelines) == len(cfg.augmentation.views)


def test_data_config_errors_name_the_key():
    from omegaconf import open_dict

    from ssl_bench.errors import ConfigError
    from ssl_bench.training import build_datamodule

    with pytest.raises(ConfigError, match="options of one dataset go under data.options") as e:
        build_datamodule(compose_with("+data.palette=colour"))
    assert e.value.key == "data.palette"
    with pytest.raises(ConfigError) as e:
        build_datamodule(compose_with("data._target_=ssl_bench.data.module.NoSuchModule"))
    assert e.value.key == "data._target_"
    with pytest.raises(ConfigError) as e:
        build_datamodule(compose_with("data.batch_size=0"))
    assert e.value.key == "data.batch_size"
    cfg = compose_with("data.batch_size=64")
    with open_dict(cfg):  # the config of a run saved before conf/data/*.yaml had a target
        del cfg.data["_target_"]
    assert build_datamodule(cfg).batch_size == 64


def test_callbacks_group_builds_each_target_and_overrides_add_or_drop_one():
    from types import SimpleNamespace

    import torch

    from ssl_bench.callbacks import BadFileCounter, BestMetrics, ThroughputMonitor
    from ssl_bench.errors import ConfigError
    from ssl_bench.training import build_callbacks

    built = build_callbacks(compose_with())
    assert [type(c) for c in built] == [ThroughputMonitor, BestMetrics, BadFileCounter]
    # the rate is logged every trainer.log_every_n_steps (after 3 warm-up steps), as in code before
    logged = []
    module = SimpleNamespace(log=lambda name, value, **kwargs: logged.append(name))
    trainer = SimpleNamespace(log_every_n_steps=7, world_size=1)
    batch = (None, None, torch.zeros(4))  # (views, labels, index): 4 images
    for step in range(7):
        assert logged == []
        built[0].on_train_batch_end(trainer, module, None, batch, step)
    assert logged == ["train/images_per_sec"]
    lr_monitor = "pytorch_lightning.callbacks.LearningRateMonitor"
    built = build_callbacks(
        compose_with("~callbacks.bad_files", f"+callbacks.lr._target_={lr_monitor}")
    )
    assert [type(c).__name__ for c in built] == [
        "ThroughputMonitor",
        "BestMetrics",
        "LearningRateMonitor",
    ]
    assert [type(c) for c in build_callbacks(compose_with("callbacks.throughput=null"))] == [
        BestMetrics,
        BadFileCounter,
    ]
    for override, says in (
        ("+callbacks.x._target_=ssl_bench.callbacks.NoSuchCallback", "cannot be built"),
        ("+callbacks.x._target_=collections.OrderedDict", "not a Lightning callback"),
        ("+callbacks.x.every_n_steps=3", "needs a _target_"),
    ):
        with pytest.raises(ConfigError, match=says) as e:
            build_callbacks(compose_with(override))
        assert e.value.key == "callbacks.x"
