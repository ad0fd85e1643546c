"""Every recipe cites one source and matches it; `method=M data=D` trains M's recipe for D, or M's
own defaults.

For each conf/recipe/<name>.yaml the config is composed as a user gets it (`method=M data=D`; a
method's own defaults with the data of its paper, `data=image_folder`, 224 px) and every recipe key
of it - the method's hyperparameters, the views, the optimizer, the schedule, the batch, the epochs
- is compared with a transcription of the cited source (tests/recipes/sources.py). A value that
differs must be listed in `recipe.departures` with its reason, and every listed departure must be a
real difference.
"""

from __future__ import annotations

import math

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from recipes.sources import SOURCES
from recipes.transcribe import NotInSource

from ssl_bench.config import CONFIG_DIR
from ssl_bench.training import departures_of

RECIPE_DIR = CONFIG_DIR / "recipe"
#: the parts of the composed config a recipe is responsible for
RECIPE_SUBTREES = ("method", "augmentation", "optimizer", "scheduler")
RECIPE_SINGLE_KEYS = ("data.batch_size", "data.image_size", "trainer.max_epochs")
JITTER = ("brightness", "contrast", "saturation", "hue")


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def declared(name: str) -> dict:
    """The `recipe` node of conf/recipe/<name>.yaml; `departures` it does not state come from the
    recipe it builds on (a *_cifar100 recipe reuses its *_cifar10 one through its defaults list)."""
    node = OmegaConf.load(RECIPE_DIR / f"{name}.yaml")
    info = OmegaConf.to_container(node.recipe)
    if "departures" not in info:
        bases = [
            d
            for d in node.get("defaults", [])
            if isinstance(d, str) and (RECIPE_DIR / f"{d}.yaml").is_file()
        ]
        info["departures"] = declared(bases[-1])["departures"] if bases else []
    return info


def compose_recipe(name: str):
    info = declared(name)
    if info["data"] is None:  # a method's own defaults: the papers train on ImageNet-sized images
        overrides = [f"method={info['method']}", "data=image_folder", "data.root=/unused"]
    else:
        overrides = [f"method={info['method']}", f"data={info['data']}"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def _flatten(prefix: str, node, out: dict) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _flatten(f"{prefix}.{key}", value, out)
    elif isinstance(node, list) and node and all(isinstance(v, dict) for v in node):
        for i, value in enumerate(node):
            _flatten(f"{prefix}.{i}", value, out)
    else:
        out[prefix] = node


def recipe_keys(cfg) -> dict:
    """The composed recipe keys, flat; colour-jitter amounts multiplied by their strength (the final
    amounts)."""
    data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    flat: dict = {}
    for tree in RECIPE_SUBTREES:
        _flatten(tree, data[tree], flat)
    for key in RECIPE_SINGLE_KEYS:
        top, leaf = key.split(".")
        flat[key] = data[top].get(leaf)
    for drop in ("method._target_", "method.name"):
        flat.pop(drop, None)
    for key in [k for k in flat if k.endswith(".color_jitter.strength")]:
        strength = flat.pop(key)
        base = key[: -len("strength")]
        for amount in JITTER:
            if flat.get(base + amount) is not None:
                flat[base + amount] = flat[base + amount] * strength
    return flat


def same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def test_every_recipe_has_a_transcription_and_back():
    assert set(recipe_names()) == set(SOURCES), sorted(set(recipe_names()) ^ set(SOURCES))


@pytest.mark.parametrize("name", recipe_names())
def test_recipe_declares_itself_and_cites_its_source(name):
    info = declared(name)
    assert info["name"] == name
    method = info["method"]
    assert (CONFIG_DIR / "method" / f"{method}.yaml").is_file()
    assert name == (method if info["data"] is None else f"{method}_{info['data']}")
    if info["data"] is not None:
        assert (CONFIG_DIR / "data" / f"{info['data']}.yaml").is_file()
    assert (
        isinstance(info["source"], str) and info["source"].strip() and "TODO" not in info["source"]
    )
    assert info["source"] == SOURCES[name]["cite"], (
        "the recipe and its transcription cite different sources"
    )
    assert isinstance(info.get("departures"), list), (
        "recipe.departures is a list of {key: reason} (see departures_of)"
    )
    for key, reason in departures_of(info).items():
        assert isinstance(reason, str) and len(reason) > 10, f"departure {key} needs a reason"


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_recipe_matches_its_source(name):
    cfg = compose_recipe(name)
    assert cfg.recipe.name == name, f"composing it loaded recipe {cfg.recipe.name} instead"
    ours = recipe_keys(cfg)
    source = SOURCES[name]["values"]
    departures = departures_of(OmegaConf.to_container(cfg.recipe))
    assert departures == departures_of(declared(name)), (
        "departures of another recipe leaked into this one"
    )
    missing = sorted(
        k for k in ours if k not in source and not any(k.startswith(d) for d in departures)
    )
    assert not missing, (
        f"{name}: keys of the composed config the transcription does not account for: {missing}"
    )
    unknown = sorted(k for k in source if k not in ours)
    assert not unknown, (
        f"{name}: the transcription sets keys the composed config does not have: {unknown}"
    )
    differing = sorted(
        k for k, v in source.items() if not isinstance(v, NotInSource) and not same(ours[k], v)
    )
    undeclared = [
        f"{k}: ours {ours[k]!r}, source {source[k]!r}"
        for k in differing
        if not any(k == d or k.startswith(d + ".") for d in departures)
    ]
    assert not undeclared, (
        f"{name} differs from its source without a stated departure:\n" + "\n".join(undeclared)
    )
    for d in departures:
        covered = [k for k in differing if k == d or k.startswith(d + ".")]
        not_transcribed = [k for k in ours if (k == d or k.startswith(d + ".")) and k not in source]
        assert covered or not_transcribed, (
            f"{name}: departure {d!r} is stated but the value matches the source"
        )


@pytest.mark.parametrize("method", sorted(p.stem for p in (CONFIG_DIR / "method").glob("*.yaml")))
def test_every_method_has_its_own_defaults(method):
    """A method on data without a published recipe runs on its own views and optimizer, never
    another method's."""
    assert (RECIPE_DIR / f"{method}.yaml").is_file()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"method={method}", "data=synthetic"])
    assert cfg.recipe.name == method and cfg.recipe.data is None


def test_explicit_overrides_win_over_the_recipe():
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        recipe = compose(config_name="config", overrides=["method=byol", "data=cifar10"])
        ours = compose(
            config_name="config",
            overrides=[
                "method=byol",
                "data=cifar10",
                "augmentation=simclr",
                "optimizer=sgd",
                "optimizer.lr=0.7",
                "data.batch_size=64",
            ],
        )
        plain = compose(config_name="config", overrides=["augmentation=simclr", "optimizer=sgd"])
    assert recipe.recipe.name == "byol_cifar10"
    assert ours.optimizer.name == "sgd" and ours.optimizer.lr == 0.7 and ours.data.batch_size == 64
    assert OmegaConf.to_container(ours.augmentation) == OmegaConf.to_container(plain.augmentation)
    # a whole group replaces the recipe's: nothing of the recipe's LARS survives in the SGD config
    assert OmegaConf.to_container(ours.optimizer) == {
        **OmegaConf.to_container(plain.optimizer),
        "lr": 0.7,
    }


def test_dropping_the_dataset_recipe_leaves_the_methods_own():
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        dropped = compose(
            config_name="config", overrides=["method=byol", "data=cifar10", "~recipe"]
        )
        own = compose(config_name="config", overrides=["method=byol", "data=synthetic"])
    assert dropped.recipe.name == "byol"
    for tree in ("augmentation", "optimizer", "scheduler", "method"):
        a = OmegaConf.to_container(dropped[tree], resolve=False)
        b = OmegaConf.to_container(own[tree], resolve=False)
        assert a == b, tree
