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
def test_every_option_composes_resolves_and_passes_the_schema(group, option):
    from ssl_bench.schema import check_schema

    # a recipe with its method (recipe=<another method's> is refused: test_recipes.py)
    method = [f"method={_recipe_overrides(option)[0].split('=')[1]}"] if group == "recipe" else []
    cfg = compose_with(f"{group}={option}", *method)
    data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert data["method"]["name"] and data["data"]["name"] and data["backbone"]["name"]
    if group == "method":
        assert data["method"]["_target_"].startswith("ssl_bench.methods.")
    if OmegaConf.is_missing(cfg.data, "root"):  # data=image_folder*: the user names the folder
        cfg.data.root = "/unused"
    check_schema(cfg)


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


# ---- the typed schema (ssl_bench/schema.py) ------------------------------------------------------
def _recipe_overrides(name: str) -> list[str]:
    """`method=M data=D` that picks conf/recipe/<name>.yaml (a method's own defaults: the
    ImageNet-sized image folder of its paper)."""
    recipe = OmegaConf.load(CONFIG_DIR / "recipe" / f"{name}.yaml").recipe
    if recipe.data is None:
        return [f"method={recipe.method}", "data=image_folder", "data.root=/unused"]
    return [f"method={recipe.method}", f"data={recipe.data}"]


@pytest.mark.parametrize(
    "overrides",
    [
        *[_recipe_overrides(r) for r in options("recipe")],
        *[[f"experiment={e}"] for e in options("experiment")],
        ["logger=wandb", "trainer=ddp_cpu", "callbacks=default"],
    ],
    ids=lambda o: " ".join(o),
)
def test_every_recipe_and_experiment_passes_the_schema_and_the_config_checks(overrides):
    """Every recipe as `method=M data=D` picks it and every experiment: the schema holds every key
    the shipped files set, and check_config (schema, then the values) accepts the whole config.
    (Every single group option: test_every_option_composes_resolves_and_passes_the_schema.)"""
    from ssl_bench.training import check_config

    cfg = compose_with(*overrides)
    if overrides[0].startswith("method="):
        assert cfg.recipe.method == overrides[0].split("=")[1]
    check_config(cfg)


@pytest.mark.parametrize(
    "override", [*(f"launcher={o}" for o in options("launcher")), "hparams_search=optuna"]
)
def test_launchers_and_searches_pass_the_schema_through_the_api(override):
    """The launcher and search files set top-level keys too (cpu_threads resolves through
    ${hydra:launcher.n_jobs}: ssl_bench.compose checks with Hydra's config current)."""
    import ssl_bench

    cfg = ssl_bench.compose([override])
    assert cfg.method.name == "simclr"


# a wrong type in each group, unknown keys of each group, the names: (override, key, words)
BAD_VALUES = [
    ("data.batch_size=abc", "data.batch_size", "expected an integer, got 'abc'"),
    ("+optimizer.learning_rate=0.1", "optimizer.learning_rate", "did you mean optimizer.lr?"),
    ("+data.foo=1", "data.foo", "The keys of 'data' are: _target_, name, root"),
    ("backbone.name=resnet_18", "backbone.name", "did you mean resnet18 or "),
    ("method.temperature=abc", "method.temperature", "expected a number, got 'abc'"),
    ("optimizer.momentum=fast", "optimizer.momentum", "expected a number or null"),
    ("scheduler.warmup_epochs=soon", "scheduler.warmup_epochs", "expected a number or null"),
    ("trainer.max_epochs=many", "trainer.max_epochs", "expected an integer or null"),
    ("+trainer.limit_train_batches=all", "trainer.limit_train_batches", "expected an integer"),
    ("progress_bar=yes", "progress_bar", "expected true or false, got 'yes'"),
    ("online_eval.knn_k=1.5", "online_eval.knn_k", "expected an integer, got 1.5"),
    ("+method.temprature=0.1", "method.temprature", "did you mean method.temperature?"),
    ("+method.knn_k=20", "method.knn_k", "set online_eval.knn_k instead"),
    ("+backbone.kwarg=1", "backbone.kwarg", "did you mean backbone.kwargs?"),
    ("+scheduler.warmup=3", "scheduler.warmup", "did you mean scheduler.warmup_epochs"),
    ("+trainer.limit_train_batche=2", "trainer.limit_train_batche", "trainer.limit_train_batches"),
    ("+augmentation.view=[]", "augmentation.view", "did you mean augmentation.views?"),
    (
        "+augmentation.views.0.colour_jitter=1",
        "augmentation.views[0].colour_jitter",
        "color_jitter",
    ),
    ("+logger.wandb=1", "logger.wandb", "expected a mapping or null"),
    ("+recipe.sources=x", "recipe.sources", "did you mean recipe.source?"),
    ("+online_eval.knn_kk=3", "online_eval.knn_kk", "did you mean online_eval.knn_k"),
    ("+callbacks.throughput.every_n_step=3", "callbacks.throughput.every_n_step", "every_n_steps?"),
    ("+data.palette=grey", "data.palette", "go under data.options"),
    ("+data.options.pallete=grey", "data.options.pallete", "did you mean data.options.palette?"),
    ("+seeed=1", "seeed", "did you mean seed?"),
    ("data.root=???", "data.root", "has no value"),
]


@pytest.mark.parametrize("override,key,words", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_a_wrong_type_or_an_unknown_key_is_one_message_naming_the_key(override, key, words):
    """ssl_bench.compose runs the schema as the CLI does: one ConfigError naming the key and the
    expected type or the closest valid keys (synthetic data: its options exist)."""
    import ssl_bench
    from ssl_bench.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        ssl_bench.compose(["data=synthetic", override])
    assert e.value.key == key and words in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_method_keys_are_those_of_the_method_class():
    """The method group's schema is the class's constructor: a key of one method is unknown to
    another, and each key's type is its annotation."""
    import ssl_bench
    from ssl_bench.errors import ConfigError

    assert ssl_bench.compose(["method=moco_v2", "method.queue_size=4096"]).method.queue_size == 4096
    with pytest.raises(
        ConfigError, match="not an argument of SimCLR. Fix: The keys of 'method'"
    ) as e:
        ssl_bench.compose(["method=simclr", "+method.queue_size=4096"])
    assert e.value.key == "method.queue_size"
    with pytest.raises(ConfigError, match="expected an integer, got 1.5") as e:
        ssl_bench.compose(["method=moco_v2", "method.queue_size=1.5"])
    with pytest.raises(ConfigError, match="expected a list of 2 integers") as e:
        ssl_bench.compose(["method=dim", "method.prior_hidden_dims=[1000]"])
    assert e.value.key == "method.prior_hidden_dims"
    # a class's keys over its MRO, a mixin before the method included (tests/fault_methods.py)
    target = "method._target_=fault_methods.BYOLPreemptAt"
    assert ssl_bench.compose(["method=byol", target, "+method.preempt_at=6"]).method.preempt_at == 6
    # another method's recipe is named as such, before its keys are unknown to this method
    with pytest.raises(
        ConfigError, match="'amdim_cifar10' is a recipe of amdim, not of simclr"
    ) as e:
        ssl_bench.compose(["method=simclr", "recipe=amdim_cifar10"])
    assert e.value.key == "recipe"


def test_timm_names_are_ranked_by_closeness():
    from ssl_bench.backbones import closest_timm_names

    assert closest_timm_names("resnet_18")[0] == "resnet18"
    assert closest_timm_names("resnet_50")[0] == "resnet50"
    assert "vit_tiny_patch16_224" in closest_timm_names("vit_tiny_patch16")


def test_the_schema_is_the_code_it_feeds():
    """The dataclasses that are hand-written for a light import hold the keys of the code they
    feed: data = SSLDataModule.from_config's arguments, optimizer / scheduler = every key of
    ssl_bench.optim / ssl_bench.schedules, online_eval = SSLMethod's kNN and probe arguments."""
    import dataclasses
    import inspect
    import typing

    from ssl_bench.data.module import SSLDataModule
    from ssl_bench.eval.online import OnlineEval
    from ssl_bench.optim import ALL_OPTIMIZER_KEYS
    from ssl_bench.schedules import ALL_SCHEDULER_KEYS
    from ssl_bench.schema import DataSchema, OnlineEvalSchema, OptimizerSchema, SchedulerSchema

    def names(schema):
        return {f.name for f in dataclasses.fields(schema)}

    init = inspect.signature(SSLDataModule.__init__).parameters
    from_config = inspect.signature(SSLDataModule.from_config).parameters
    settings = (set(init) | set(from_config)) - {"self", "cls", "pipelines", "seed", "views"}
    settings -= {"channels_last", "settings"}
    assert names(DataSchema) == settings | {"_target_"}
    hints = typing.get_type_hints(DataSchema)
    for name, hint in typing.get_type_hints(SSLDataModule.__init__).items():
        if name in names(DataSchema) and name not in ("device_views", "on_bad_file"):
            assert hints[name] == hint, name
    assert names(OptimizerSchema) == {"name", "lr", "scale_lr", "weight_decay", *ALL_OPTIMIZER_KEYS}
    assert names(SchedulerSchema) == {"name", *ALL_SCHEDULER_KEYS}
    online = set(inspect.signature(OnlineEval.__init__).parameters)
    assert names(OnlineEvalSchema) == online - {"self", "feat_dim", "num_classes"}


def test_a_typo_ends_before_torch_is_imported(tmp_path):
    """The first phase of the schema needs only OmegaConf: the CLI's most common errors end without
    the ~10 s of torch / Lightning / timm imports. (A plain interpreter: the test zygote has torch
    imported already.)"""
    code = (
        "import sys\n"
        "from ssl_bench.api import compose\n"
        "from ssl_bench.errors import ConfigError\n"
        "try:\n"
        "    compose(['data.batch_size=abc'])\n"
        "except ConfigError as err:\n"
        "    print(err.key, 'torch' in sys.modules, 'pytorch_lightning' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.split() == ["data.batch_size", "False", "False"], out.stderr[-2000:]


def test_cli_refuses_a_bad_type_and_an_unknown_key_with_exit_2(tmp_path):
    from conftest import run_cli

    for override, says in (
        ("data.batch_size=abc", "config key 'data.batch_size': expected an integer"),
        ("+optimizer.learning_rate=0.1", "did you mean optimizer.lr?"),
    ):
        run = run_cli("data=synthetic", override, run_dir=tmp_path / "run")
        assert run.returncode == 2, run.stderr[-2000:]
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        assert lines == [lines[0]] and says in lines[0] and "Traceback" not in run.stderr, lines
        assert not (tmp_path / "run" / "results.json").exists()
