"""The typed schema of the run config, checked right after composition: `check_schema(cfg)`.

Every key of the composed config is either declared here, with its type, or refused: a value of the
wrong type (`data.batch_size=abc`) or an unknown key (`+optimizer.learning_rate=0.1`,
`+data.foo=1`) ends in one `ConfigError` naming the key and the expected type or the closest valid
keys (difflib), before any data or model is built.

The schema is dataclasses, one per group, plus the constructors the config feeds:
  - top level, online_eval, backbone, optimizer, scheduler, recipe, logger, augmentation and the
    keys conf/trainer sets: the dataclasses below (optimizer / scheduler: every key of every
    preset; tests/test_config.py holds them equal to ssl_bench.optim and ssl_bench.schedules);
  - data: `DataSchema`, the arguments of `SSLDataModule.from_config` (a test holds them equal), and
    data.options: the registered dataset's options (ssl_bench.data.registry);
  - method: the method class's constructor signature over its MRO (per method: the keys differ);
  - other trainer keys: the arguments of `pytorch_lightning.Trainer`;
  - callbacks: each entry's `_target_` class's constructor;
  - augmentation.views: ssl_bench.views.config.parse_pipelines, which checks every view key.

Why not Hydra structured configs in the ConfigStore: OmegaConf 2.3 types cannot say `int | str`
(trainer.devices) or `str | bool` (data.device_views), the method keys depend on the method class,
and a Hydra composition error exits 1 with Hydra's message, where a user error exits 2
(ssl_bench.errors). The checks run in two phases: first everything that needs only this module and
OmegaConf (a typo ends before torch is imported), then what needs the classes (method, Lightning's
Trainer, callbacks, the dataset registry, timm's model names).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field
from typing import Any, ClassVar, Literal, Union

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from ssl_bench.errors import ConfigError


def _aliases(*names: str) -> dict:
    """Field metadata: other names users write for this key (difflib alone would not find `lr`
    from `learning_rate`)."""
    return {"aliases": names}


# ---- the groups ------------------------------------------------------------------------------
@dataclass
class OnlineEvalSchema:
    """online_eval: the online probe and kNN and the random-init baseline (the arguments of
    ssl_bench.eval.online.OnlineEval); null drops the online evaluation."""

    probe: bool = True
    knn: bool = True
    probe_lr: float | None = None
    probe_norm: bool | None = None
    knn_k: int = 200
    knn_t: float = 0.1
    init_baseline: bool = True


@dataclass
class BackboneSchema:
    """conf/backbone: a timm model name (ssl_bench.backbones.create_backbone) and its kwargs."""

    name: str = field(metadata=_aliases("model", "arch", "architecture"))
    tag: str
    small_input: bool = False
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataSchema:
    """conf/data: the arguments of SSLDataModule.from_config (data/module.py)."""

    unknown_key_note: ClassVar[str] = (
        " Options of one dataset go under data.options (+data.options.<key>=<value>)."
    )

    _target_: str
    name: str = field(metadata=_aliases("dataset"))
    root: str | None = field(default=None, metadata=_aliases("path", "data_dir", "dir"))
    download: bool = True
    batch_size: int = field(default=256, metadata=_aliases("bs", "batch"))
    eval_batch_size: int | None = None
    num_workers: int = field(default=2, metadata=_aliases("workers"))
    image_size: int | None = field(default=None, metadata=_aliases("img_size", "resolution"))
    small_input: bool | None = None
    vit_patch_size: int | None = None
    fraction: float | None = None
    limit: int | None = None
    test_limit: int | None = None
    device_views: bool | Literal["auto"] = "auto"
    on_bad_file: Literal["skip", "error"] = "skip"
    options: dict[str, Any] | None = None


@dataclass
class OptimizerSchema:
    """conf/optimizer: every key of every preset (ssl_bench.optim.OPTIMIZER_KEYS)."""

    name: str = field(metadata=_aliases("optimizer", "type"))
    lr: float = field(metadata=_aliases("learning_rate", "base_lr", "lr_base"))
    scale_lr: bool = False
    weight_decay: float = field(default=0.0, metadata=_aliases("wd", "decay"))
    momentum: float | None = None
    nesterov: bool | None = None
    eta: float | None = field(default=None, metadata=_aliases("trust_coefficient"))
    eps: float | None = None
    clip_lr: bool | None = None
    betas: tuple[float, float] | None = None
    exclude_bias_n_norm: bool = False


@dataclass
class SchedulerSchema:
    """conf/scheduler: every key of every preset (ssl_bench.schedules.SCHEDULER_KEYS)."""

    name: str = field(default="constant", metadata=_aliases("scheduler", "type"))
    warmup_epochs: float | None = field(default=None, metadata=_aliases("warmup"))
    warmup_steps: int | None = None
    warmup_start_lr: float | None = None
    min_lr: float | None = field(default=None, metadata=_aliases("final_lr", "eta_min"))
    milestones: list[int] | None = None
    gamma: float | None = None


@dataclass
class RecipeSchema:
    """conf/recipe: which published recipe a run follows (ssl_bench.training.recipe_info)."""

    name: str | None = None
    method: str | None = None
    data: str | None = None
    source: str | None = None
    departures: list[dict[str, str]] = field(default_factory=list)


@dataclass
class WandbSchema:
    """logger.wandb (ssl_bench.wandb_utils.make_wandb_logger)."""

    project: str = "ssl_bench"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    mode: Literal["online", "offline", "disabled"] | None = None
    log_model: bool | Literal["all"] = False


@dataclass
class LoggerSchema:
    """conf/logger: metrics.csv always; W&B when logger.wandb is set."""

    wandb: WandbSchema | None = None


@dataclass
class AugmentationSchema:
    """conf/augmentation: the views list, each view checked by views.config.parse_pipelines."""

    views: list[Any] = field(metadata=_aliases("view", "pipelines", "transforms"))


@dataclass
class TrainerSchema:
    """The keys conf/trainer sets, typed; any other argument of pytorch_lightning.Trainer may be
    added (+trainer.limit_train_batches=2) and is checked against Lightning's signature."""

    open_keys: ClassVar[bool] = True  # other keys: check_trainer_extras

    accelerator: str = "auto"
    devices: int | str | list[int] = field(default=1, metadata=_aliases("gpus", "num_devices"))
    num_nodes: int = 1
    precision: str | int = "auto"
    strategy: str = "auto"
    sync_batchnorm: bool = False
    max_epochs: int | None = field(default=None, metadata=_aliases("epochs", "num_epochs"))
    max_steps: int = field(default=-1, metadata=_aliases("steps"))
    fast_dev_run: bool | int = False
    log_every_n_steps: int | None = None
    check_val_every_n_epoch: int | None = 1
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    deterministic: bool | Literal["warn"] | None = None
    benchmark: bool | None = None


@dataclass
class RunSchema:
    """The composed config (conf/config.yaml). method and callbacks: see check_schema."""

    method: dict[str, Any]
    backbone: BackboneSchema
    data: DataSchema
    trainer: TrainerSchema
    optimizer: OptimizerSchema
    scheduler: SchedulerSchema
    augmentation: AugmentationSchema
    online_eval: OnlineEvalSchema | None = field(default_factory=OnlineEvalSchema)
    logger: LoggerSchema | None = None
    callbacks: dict[str, Any] | None = None
    recipe: RecipeSchema | None = None
    seed: int = 0
    resume: str | None = None
    overwrite: bool = False
    channels_last: bool = True
    compile: bool = False
    nan_tolerance: int = 0
    progress_bar: bool = True
    output_root: str = field(default="outputs", metadata=_aliases("output_dir", "out"))
    cpu_threads: int | None = field(default=None, metadata=_aliases("threads", "num_threads"))
    optimize_metric: str = "val/knn_top1"
    run_name: str | None = field(default=None, metadata=_aliases("name"))


# the method constructor's arguments that the run gives from other groups (training.build_method)
RUN_PROVIDED = ("self", "backbone", "data", "optimizer", "scheduler", "backbone_factory")


# ---- the check -------------------------------------------------------------------------------
def check_schema(cfg: DictConfig) -> None:
    """Refuse an unknown key or a value of the wrong type anywhere in the run config `cfg` (a
    `ConfigError` naming the key). Run right after composition, before anything is built."""
    check_node("", cfg, RunSchema, skip=("method", "callbacks"))
    check_recipe_method(cfg)  # before the method's keys: another method's recipe sets others
    from ssl_bench.views.config import parse_pipelines

    parse_pipelines(cfg.augmentation.views, image_size=cfg.data.get("image_size"))
    # the second phase: the keys whose schema is a registry or a class's signature, in the order
    # of their imports' cost (timm, then the dataset registry: torch; the rest: Lightning)
    from ssl_bench.backbones import check_timm_name

    check_timm_name(cfg.backbone.name)
    check_data_options(cfg.data)
    check_method(cfg.method, method_class(cfg))
    check_trainer_extras(cfg.trainer)
    check_callbacks(cfg.get("callbacks"))


def check_node(path: str, node, schema: type, skip: Sequence[str] = ()) -> None:
    """`node` (a DictConfig at dotted `path`) against the dataclass `schema`: no unknown keys, every
    field without a default present, each value of its field's type."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    if not OmegaConf.is_dict(node):
        raise ConfigError(
            path or "config",
            f"expected a mapping with keys {', '.join(fields)}, got {_yaml(_plain(node))}.",
            None,
        )
    present = list(node.keys())  # `in node` is False for a ??? value
    for name in present:
        if name not in fields and not getattr(schema, "open_keys", False):
            err = unknown_key(_join(path, str(name)), list(fields), _field_aliases(schema))
            note = getattr(schema, "unknown_key_note", "")
            raise ConfigError(err.key, "is not a known key.", f"{err.fix}{note}")
    hints = typing.get_type_hints(schema)
    for name, f in fields.items():
        key = _join(path, name)
        if name not in present:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ConfigError(key, "is missing.", f"set +{key}=<{describe(hints[name])}>.")
            continue
        if name in skip:
            continue
        child = _child(node, name, key)
        inner = _optional_dataclass(hints[name])
        if inner is not None and OmegaConf.is_dict(child):
            check_node(key, child, inner)
        else:
            check_value(key, _plain(child), hints[name], _example(f))


def unknown_key(key: str, valid: Sequence[str], aliases: Mapping[str, str] | None = None):
    """The ConfigError for an unknown `key` (dotted): the closest valid keys first (difflib, and
    `aliases` {other name: key}), then all of them."""
    parent, _, name = key.rpartition(".")
    aliases = dict(aliases or {})
    close = difflib.get_close_matches(name, [*valid, *aliases], n=3, cutoff=0.6)
    close = list(dict.fromkeys(aliases.get(c, c) for c in close))
    where = f"'{parent}'" if parent else "the config"
    fix = f"did you mean {' or '.join(_join(parent, c) for c in close)}? " if close else ""
    fix += f"The keys of {where} are: {', '.join(map(str, valid))}."
    return ConfigError(key, "is not a known key.", fix)


def check_value(key: str, value, hint, example=None) -> None:
    """`value` (resolved, plain Python) against the type `hint`; a ConfigError naming the type."""
    inner = _optional_dataclass(hint)
    if inner is not None and isinstance(value, Mapping):
        check_node(key, OmegaConf.create(dict(value)), inner)
        return
    if not matches(value, hint):
        shown = example if isinstance(example, str) else _yaml(example)  # as typed on the CLI
        fix = f"set e.g. {key}={shown}." if example is not None else None
        raise ConfigError(
            key,
            f"expected {describe(hint)}, got {_yaml(value)}{_kind(value)}.",
            fix or f"set {key} to {describe(hint)}.",
        )


def _optional_dataclass(hint):
    """The dataclass of `hint` (`X` or `X | None`), else None."""
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint) if _is_union(hint) else ():
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def check_recipe_method(cfg: DictConfig) -> None:
    """A recipe (conf/recipe) is for one method: recipe=<another method's> is refused by name."""
    recipe = cfg.get("recipe") or {}
    method = cfg.method.get("name")
    if recipe.get("method") not in (None, method):
        raise ConfigError(
            "recipe",
            f"'{recipe.get('name')}' is a recipe of {recipe.get('method')}, not of {method}.",
            f"drop recipe=..., or pick one of conf/recipe/{method}_<data>.yaml.",
        )


# ---- the keys whose schema is a signature or a registry ------------------------------------
def method_class(cfg: DictConfig) -> type:
    """The SSLMethod subclass `method._target_` names; a ConfigError when it is not one."""
    from hydra.utils import get_class

    from ssl_bench.methods.base import SSLMethod

    target = cfg.method.get("_target_")
    try:
        cls = get_class(target)
    except Exception:  # noqa: BLE001 - hydra raises several kinds here
        raise ConfigError(
            "method._target_", f"cannot import '{target}'.", "check conf/method/<name>.yaml."
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, SSLMethod)):
        raise ConfigError("method._target_", f"'{target}' is not an SSLMethod.")
    return cls


def method_keys(cls: type) -> dict[str, tuple[Any, Any]]:
    """{key: (type, default)} of the method group for the SSLMethod subclass `cls`: `_target_`,
    `name`, and the constructor arguments over its MRO (as far as **kwargs passes them on), less
    those the run gives from other groups (RUN_PROVIDED, online_eval)."""
    from ssl_bench.methods.base import SSLMethod

    keys: dict[str, tuple[Any, Any]] = {"_target_": (str, None), "name": (str, None)}
    skip = {*RUN_PROVIDED, *(f.name for f in dataclasses.fields(OnlineEvalSchema))}
    for klass in cls.__mro__:
        if klass in SSLMethod.__mro__[1:]:  # LightningModule and above: not the method's keys
            break
        if "__init__" not in vars(klass):
            continue
        hints = _signature_hints(klass.__init__)
        params = inspect.signature(klass.__init__).parameters.values()
        for p in params:
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.name in skip:
                continue
            keys.setdefault(p.name, (hints.get(p.name, Any), p.default))
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return keys


def check_method(node: DictConfig, cls: type) -> None:
    """The method group against the constructor of its class (the keys differ per method)."""
    keys = method_keys(cls)
    for name in node:
        key = f"method.{name}"
        if name in {f.name for f in dataclasses.fields(OnlineEvalSchema)}:
            raise ConfigError(
                key,
                "is a setting of the online evaluation, not of the method.",
                f"set online_eval.{name} instead.",
            )
        if name not in keys:
            fix = unknown_key(key, list(keys)).fix
            raise ConfigError(key, f"is not an argument of {cls.__name__}.", fix)
        hint, default = keys[name]
        check_value(key, _plain(_child(node, name, key)), hint, _scalar(default))


def check_trainer_extras(node: DictConfig) -> None:
    """trainer keys beyond TrainerSchema's: arguments of pytorch_lightning.Trainer (those the run
    sets itself, ssl_bench.training.build_trainer, excluded), typed by Lightning's annotations."""
    own = {f.name for f in dataclasses.fields(TrainerSchema)}
    extras = [name for name in node if name not in own]
    if not extras:
        return
    import pytorch_lightning as pl

    hints = _signature_hints(pl.Trainer.__init__)
    params = inspect.signature(pl.Trainer.__init__).parameters
    valid = [p for p in params if p not in TRAINER_SET_BY_RUN and p != "self"]
    for name in extras:
        key = f"trainer.{name}"
        if name not in valid:
            raise unknown_key(key, sorted(set(valid) | own), _field_aliases(TrainerSchema))
        check_value(key, _plain(_child(node, name, key)), hints.get(name, Any), None)


def check_callbacks(node) -> None:
    """callbacks: each entry null (dropped) or a `_target_` class and arguments of its
    constructor."""
    from hydra.utils import get_class

    for name in node or {}:
        key = f"callbacks.{name}"
        entry = _child(node, name, key)
        if entry is None:
            continue
        if not OmegaConf.is_dict(entry) or "_target_" not in entry:
            raise ConfigError(
                key,
                "needs a _target_ (the import path of a Lightning callback class).",
                f"set {key}._target_=<module.Class>, or drop it with ~{key}.",
            )
        try:
            cls = get_class(str(entry._target_))
        except Exception:  # noqa: BLE001 - hydra raises several kinds here
            raise ConfigError(
                f"{key}._target_",
                f"cannot import '{entry._target_}'.",
                f"fix {key}._target_, or drop the callback with ~{key}.",
            ) from None
        _check_arguments(key, entry, cls)


def _check_arguments(key: str, entry: DictConfig, cls: type) -> None:
    params = inspect.signature(cls.__init__).parameters
    hints = _signature_hints(cls.__init__)
    open_ = any(p.kind is p.VAR_KEYWORD for p in params.values())
    valid = ["_target_", *(p for p in params if p != "self")]
    for name in entry:
        if name == "_target_":
            continue
        if name not in params and not open_:
            raise unknown_key(f"{key}.{name}", valid)
        default = params[name].default if name in params else None
        hint = hints.get(name, Any)
        check_value(
            f"{key}.{name}", _plain(_child(entry, name, f"{key}.{name}")), hint, _scalar(default)
        )


def check_data_options(data: DictConfig) -> None:
    """data.name a registered dataset, data.options among its options
    (ssl_bench.data.registry)."""
    import ssl_bench.data.datasets  # noqa: F401 - registers the built-in datasets
    from ssl_bench.data.registry import dataset_names, dataset_spec

    name = data.name
    if name not in dataset_names():
        close = difflib.get_close_matches(str(name), dataset_names(), n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ConfigError(
            "data.name",
            f"{name!r} is not a registered dataset.",
            f"{hint}The datasets are: {', '.join(dataset_names())} (data=<name> picks one).",
        )
    spec = dataset_spec(name)
    options, hints = spec.options, _signature_hints(spec.load)
    defaults = {p.name: p.default for p in inspect.signature(spec.load).parameters.values()}
    for option in data.get("options") or {}:
        key = f"data.options.{option}"
        if option not in options:
            fix = unknown_key(key, options).fix if options else f"remove {key}."
            takes = "" if options else f" ({name} takes no options)"
            raise ConfigError(key, f"is not an option of data.name={name}{takes}.", fix)
        value = _plain(_child(data.options, option, key))
        check_value(key, value, hints.get(option, Any), _scalar(defaults[option]))


#: pytorch_lightning.Trainer arguments that ssl_bench.training.build_trainer sets itself
TRAINER_SET_BY_RUN = ("logger", "callbacks", "plugins", "default_root_dir", "enable_progress_bar")


def _signature_hints(fn) -> dict:
    """typing.get_type_hints of `fn`; {} when an annotation cannot be evaluated (every value of
    such a parameter is then accepted)."""
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - a forward reference or a name under TYPE_CHECKING
        return {}


def _field_aliases(schema: type) -> dict[str, str]:
    return {a: f.name for f in dataclasses.fields(schema) for a in f.metadata.get("aliases", ())}


def _scalar(value):
    """`value` as an example for a message: a plain scalar, else None."""
    ok = isinstance(value, (bool, int, float, str)) and value is not inspect.Parameter.empty
    return value if ok else None


def matches(value, hint) -> bool:
    """Whether the plain value `value` is of the type `hint` (ints count as floats; a bool is not
    a number); an annotation a config value cannot satisfy (a class, a callable) never matches."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if _is_union(hint):
        return any(matches(value, a) for a in args)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, Mapping)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, Sequence) or hint in (list, tuple, Sequence):
        return _matches_sequence(value, origin or hint, args)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return isinstance(value, Mapping) and (
            not args or all(matches(v, args[1]) for v in value.values())
        )
    return False


def _matches_sequence(value, origin, args) -> bool:
    if not isinstance(value, (list, tuple)):
        return False
    if origin is tuple and args and args[-1] is not Ellipsis:
        return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args))
    return not args or all(matches(v, args[0]) for v in value)


def describe(hint) -> str:
    """A type in words: 'an integer', 'a number or null', 'a list of integers', ..."""
    if hint is None or hint is type(None):
        return "null"
    if _is_union(hint):
        parts = [describe(a) for a in typing.get_args(hint) if a is not type(None)]
        if type(None) in typing.get_args(hint):
            parts.append("null")
        return " or ".join(dict.fromkeys(parts))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(_yaml(a) for a in args)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} {_plural(args[0])}"
    if origin in (list, tuple, Sequence):
        return f"a list of {_plural(args[0])}" if args else "a list"
    if origin in (dict, Mapping) or hint in (dict, Mapping) or dataclasses.is_dataclass(hint):
        return "a mapping"
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return words.get(hint, getattr(hint, "__name__", str(hint)))


def _plural(hint) -> str:
    words = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}
    return words.get(hint, f"({describe(hint)})")


def _is_union(hint) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


# ---- values ----------------------------------------------------------------------------------
def _child(node, name: str, key: str):
    """node[name]; a missing mandatory value (???) or an interpolation that cannot be resolved is a
    ConfigError naming the key."""
    try:
        return node[name]
    except MissingMandatoryValue:
        raise ConfigError(key, "has no value (??? in its config file).", f"set {key}=...") from None
    except InterpolationResolutionError as err:
        raise ConfigError(
            key, f"cannot be resolved: {str(err).splitlines()[0]}", "fix the ${...} reference."
        ) from None


def _plain(value):
    """A config value as plain Python, interpolations resolved (a leaf that cannot be: a
    ConfigError naming the container's key is the caller's)."""
    if isinstance(value, (DictConfig, ListConfig)):
        try:
            return OmegaConf.to_container(value, resolve=True)
        except (MissingMandatoryValue, InterpolationResolutionError) as err:
            key = getattr(err, "full_key", None) or "config"
            raise ConfigError(
                str(key), f"cannot be resolved: {str(err).splitlines()[0]}", "set it."
            ) from None
    return value


def _example(f: dataclasses.Field):
    return None if f.default in (MISSING, None) else f.default


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _yaml(value) -> str:
    """A value as one would write it on the command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _kind(value) -> str:
    """' (a string)' and the like; empty for null and booleans, which say what they are."""
    if value is None or isinstance(value, bool):
        return ""
    words = {
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }
    return f" ({words.get(type(value), type(value).__name__)})"
