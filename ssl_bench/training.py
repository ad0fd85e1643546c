"""cfg -> objects -> trainer.fit -> results. Nothing method-specific lives here."""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning_fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from ssl_bench.backbones import create_backbone
from ssl_bench.callbacks import BestMetrics, SSLProgressBar, ThroughputMonitor
from ssl_bench.console import (
    BASELINE_LABEL,
    data_line,
    device_line,
    ignore_known_noise,
    model_summary,
    print_summary,
    quiet_lightning_logs,
    say,
)
from ssl_bench.data.info import DataInfo
from ssl_bench.data.module import SSLDataModule
from ssl_bench.errors import ConfigError, UserError
from ssl_bench.eval.results import write_run_results
from ssl_bench.hydra_callbacks import ensure_writable
from ssl_bench.loading import RunRecord
from ssl_bench.methods.base import SSLMethod
from ssl_bench.reliability import (
    AtomicCheckpointIO,
    LastCheckpoint,
    NonFiniteGuard,
    NonFiniteLossError,
    PreemptedError,
    Preemption,
)
from ssl_bench.runs import find_resume_checkpoint, write_run_file
from ssl_bench.schema import check_schema, method_class

DATA_TARGET = "ssl_bench.data.module.SSLDataModule.from_config"
IGNORED_FOR_HASH = (
    "resume",
    "output_root",
    "logger",
    "optimize_metric",
    "cpu_threads",
    "progress_bar",
)


# ---- small helpers ---------------------------------------------------------------------------
def cpu_supports_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 autocast on such CPUs is several times faster than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: Any, accelerator: str) -> Any:
    if precision != "auto":
        return precision
    use_cuda = torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")
    if use_cuda:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_supports_bf16() else "32-true"


def config_hash(cfg: DictConfig) -> str:
    data = OmegaConf.to_container(cfg, resolve=True)
    for key in IGNORED_FOR_HASH:
        data.pop(key, None)
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def method_kwargs(cfg: DictConfig) -> dict:
    kwargs = OmegaConf.to_container(cfg.method, resolve=True)
    kwargs.pop("_target_", None)
    kwargs.pop("name", None)
    return kwargs


def build_loggers(cfg: DictConfig, run_dir: Path, run_name: str):
    from pytorch_lightning.loggers import CSVLogger

    loggers = [CSVLogger(save_dir=str(run_dir), name="", version="")]
    wb = cfg.logger.get("wandb") if cfg.get("logger") else None
    if wb:
        from ssl_bench.wandb_utils import make_wandb_logger

        loggers.append(make_wandb_logger(cfg, run_dir, run_name))
    return loggers


def build_trainer(
    cfg: DictConfig, run_dir: Path, callbacks: list, loggers: list, validate: bool = True
) -> pl.Trainer:
    """The Lightning Trainer of `cfg.trainer` with ssl_bench's fixed callbacks, `callbacks` and
    `loggers` (build_loggers: the caller keeps the list, as fast_dev_run swaps the Trainer's for
    dummies but a W&B run was started and must end). `validate=False` (the method has no online
    evaluation) skips the validation loop."""
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    kwargs["precision"] = resolve_precision(
        kwargs.get("precision", "auto"), str(kwargs.get("accelerator", "auto"))
    )
    # checkpoints/last.ckpt after every epoch (AtomicCheckpointIO keeps the one before as
    # last.ckpt.prev)
    ckpt = LastCheckpoint(run_dir / "checkpoints")
    all_callbacks = [
        NonFiniteGuard(),
        Preemption(run_dir / "checkpoints" / "last.ckpt"),
        ckpt,
        *callbacks,
    ]
    if cfg.get("progress_bar", True):
        all_callbacks.append(SSLProgressBar(leave=True))
    kwargs.setdefault("num_sanity_val_steps", 0)
    # run() prints its own (console.model_summary): Lightning's has a FLOPs column of 0 and warns
    # that bf16 is not supported by it
    kwargs.setdefault("enable_model_summary", False)
    # the datamodule shards itself (resumable, see EpochSampler)
    kwargs.setdefault("use_distributed_sampler", False)
    if not validate:  # nothing to measure: no pass over the train and test splits each epoch
        kwargs["limit_val_batches"] = 0
    try:
        trainer = pl.Trainer(
            default_root_dir=str(run_dir),
            logger=loggers,
            callbacks=all_callbacks,
            plugins=[AtomicCheckpointIO()],
            enable_progress_bar=bool(cfg.get("progress_bar", True)),
            **kwargs,
        )
        return trainer
    except (TypeError, ValueError, pl.utilities.exceptions.MisconfigurationException) as err:
        raise ConfigError(
            "trainer",
            f"Lightning's Trainer rejected the trainer settings: {err}",
            "check the trainer.* keys against pytorch_lightning.Trainer's arguments.",
        ) from None


def build_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    """The callbacks of `cfg.callbacks` (conf/callbacks/*.yaml), each built from its `_target_`;
    an entry set to null is left out. A bad entry is a `ConfigError` naming callbacks.<name>."""
    callbacks = []
    for name, node in (cfg.get("callbacks") or {}).items():
        key = f"callbacks.{name}"
        if node is None:
            continue
        if not OmegaConf.is_dict(node) or "_target_" not in node:
            raise ConfigError(
                key,
                "needs a _target_ (the import path of a Lightning callback class).",
                f"set {key}._target_=<module.Class>, or drop it with ~{key}.",
            )
        try:
            callback = instantiate(node)
        except InstantiationException as err:
            reason = str(err.__cause__ or err).splitlines()[0]
            raise ConfigError(
                key,
                f"cannot be built from its _target_ {node._target_!r}: {reason}",
                f"fix {key}'s _target_ and arguments, or drop it with ~{key}.",
            ) from None
        if not isinstance(callback, pl.Callback):
            raise ConfigError(
                key,
                f"built a {type(callback).__name__}, which is not a Lightning callback.",
                f"point {key}._target_ at a subclass of pytorch_lightning.Callback.",
            )
        callbacks.append(callback)
    return callbacks


def build_datamodule(cfg: DictConfig) -> SSLDataModule:
    """The data module of `cfg.data`, instantiated from its `_target_` (conf/data/*.yaml) with the
    run's views (cfg.augmentation.views), seed and channels_last."""
    data = cfg.data
    if "_target_" not in data:  # the config of a run saved before conf/data/*.yaml had a target
        data = OmegaConf.create(
            {"_target_": DATA_TARGET, **OmegaConf.to_container(data, resolve=True)}
        )
    views = cfg.augmentation.views
    if OmegaConf.is_config(views):
        views = OmegaConf.to_container(views, resolve=True)
    try:
        return instantiate(
            data,
            views=views,
            seed=cfg.seed,
            channels_last=cfg.get("channels_last", True),
            _convert_="all",
        )
    except InstantiationException as err:
        if isinstance(err.__cause__, UserError):  # a bad data value: its own message
            raise err.__cause__ from None
        if isinstance(err.__cause__, ImportError):
            raise ConfigError(
                "data._target_",
                f"cannot import '{data.get('_target_')}'.",
                "check conf/data/<name>.yaml.",
            ) from None
        raise


def build_method(cfg: DictConfig, data: DataInfo) -> SSLMethod:
    """The method of `cfg`, told about its `data` (SSLDataModule.data_info())."""
    cls = method_class(cfg)
    b = OmegaConf.to_container(cfg.backbone, resolve=True)
    backbone = create_backbone(
        b["name"], small_input=b.get("small_input", False), **(b.get("kwargs") or {})
    )
    online = cfg.get("online_eval")
    extra = {}
    if "backbone_factory" in inspect.signature(cls.__init__).parameters:
        # methods with more than one encoder (e.g. CMC: one per colour channel group) build the
        # others from the same backbone config: backbone_factory(in_chans=1) -> a fresh model
        extra["backbone_factory"] = functools.partial(
            create_backbone,
            b["name"],
            small_input=b.get("small_input", False),
            **(b.get("kwargs") or {}),
        )
    try:
        model = cls(
            backbone=backbone,
            data=data,
            **extra,
            optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
            scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True),
            online_eval=None if online is None else OmegaConf.to_container(online, resolve=True),
            nan_tolerance=int(cfg.get("nan_tolerance", 0)),
            **method_kwargs(cfg),
        )
    except TypeError as err:
        raise ConfigError(
            "method",
            f"{cls.__name__} rejected its arguments: {err}",
            f"check the keys of conf/method/{cfg.method.get('name', '?')}.yaml.",
        ) from None
    if cfg.get("channels_last", True):
        model = model.to(memory_format=torch.channels_last)
    if cfg.get("compile", False):
        model.compile_backbone()
    return model


# keys a recipe sets, as override prefixes: a user override starting with one of these changes the
# recipe
RECIPE_KEYS = (
    "method.",
    "augmentation",
    "optimizer",
    "scheduler",
    "data.batch_size",
    "trainer.max_epochs",
)


def departures_of(recipe) -> dict[str, str]:
    """`recipe.departures` as {key: reason}. The YAML holds a list of one-entry maps, not a map:
    Hydra merges maps, so a method's own-defaults recipe would leak its departures into every
    dataset recipe; a list is replaced."""
    out: dict[str, str] = {}
    for item in (recipe or {}).get("departures") or []:
        out.update(dict(item))
    return out


def recipe_info(cfg: DictConfig, overrides: list[str] | None = None) -> dict:
    """Which recipe the run trains: its name, source, the dataset it was published for (None: the
    method's own defaults), its stated departures from the source, and the user's overrides of
    recipe keys."""
    r = cfg.get("recipe") or {}
    return {
        "name": r.get("name"),
        "source": r.get("source"),
        "data": r.get("data"),
        "departures": departures_of(r),
        "overrides": [o for o in overrides or [] if o.lstrip("+~").startswith(RECIPE_KEYS)],
    }


def describe_recipe(cfg: DictConfig, info: dict) -> str:
    """One line: the recipe in use and its source, or that none is published for this method on
    this data."""
    method, data = cfg.method.get("name"), cfg.data.get("name")
    if info["name"] is None:
        line = f"recipe: none ({method} declares no defaults)"
    elif info["data"] is None:
        line = (
            f"recipe: no published recipe for {method} on {data}: {method}'s own defaults "
            f"({info['name']}: {info['source']})"
        )
    elif info["data"] != data:
        line = (
            f"recipe: {info['name']}, published for {info['data']}, applied to {data} "
            f"({info['source']})"
        )
    else:
        line = f"recipe: {info['name']} ({info['source']})"
    if info["departures"]:
        line += f"; {len(info['departures'])} stated departure(s): {', '.join(info['departures'])}"
    if info["overrides"]:
        line += f"; your overrides: {' '.join(info['overrides'])}"
    return line


def _task_overrides() -> list[str]:
    """The command line's overrides of this job (empty outside a Hydra app)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except (ImportError, ValueError):
        return []


def check_config(cfg: DictConfig) -> None:
    """Checks that need no data and no model; run before anything heavy: first the typed schema
    (ssl_bench.schema: unknown keys, wrong types, unknown names), then the values."""
    check_schema(cfg)
    cls = method_class(cfg)
    if cfg.data.batch_size < cls.min_batch_size:
        raise ConfigError(
            "data.batch_size",
            f"{cfg.method.get('name', cls.__name__)} needs at least "
            f"{cls.min_batch_size} images per device (its loss contrasts samples of a batch), "
            f"got {cfg.data.batch_size}.",
            "set data.batch_size to 32 or more.",
        )
    if cfg.optimizer.lr <= 0:
        raise ConfigError(
            "optimizer.lr",
            f"must be positive, got {cfg.optimizer.lr}.",
            "set e.g. optimizer.lr=0.3.",
        )
    temp = cfg.method.get("temperature")
    if temp is not None and temp <= 0:
        raise ConfigError(
            "method.temperature",
            f"must be positive, got {temp}.",
            "use e.g. method.temperature=0.1.",
        )
    check_devices(cfg.trainer.get("accelerator", "auto"), cfg.trainer.get("devices", 1))


def _requested_devices(devices: Any) -> tuple[int, int] | None:
    """(how many devices, highest index + 1) that `trainer.devices` asks for; None for "auto" /
    -1 (all there are)."""
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, (list, tuple)):
        return len(devices), max(devices, default=-1) + 1
    if isinstance(devices, int) and devices > 0:
        return devices, devices
    return None


def check_launch(cfg: DictConfig, multirun: bool, launcher: str) -> None:
    """DDP inside a local multirun is a known trap: Lightning's `ddp` starts the other ranks by
    re-running the command line, and in a Hydra sweep that command is the whole sweep. Refuse it
    with the two ways that work: a launcher that starts every rank itself (SLURM / submitit), or
    `ddp_spawn`."""
    t = cfg.trainer
    strategy = str(t.get("strategy", "auto"))
    requested = _requested_devices(t.get("devices", 1))
    several = int(t.get("num_nodes", 1) or 1) > 1 or requested is None or requested[0] > 1
    if multirun and several and "submitit" not in launcher and "spawn" not in strategy:
        raise ConfigError(
            "trainer.strategy",
            f"'{strategy}' with several devices inside a local multirun: Lightning "
            "would start the other ranks by re-running the whole sweep command.",
            "run the sweep through SLURM (launcher=slurm, or launcher=submitit_local on one "
            "machine), or set trainer.strategy=ddp_spawn for a local sweep.",
        )


def check_devices(accelerator: str, devices: Any) -> None:
    """More devices than this machine has: one message naming the key, before any data is loaded."""
    requested = _requested_devices(devices)
    if requested is None:
        return  # "auto" / -1: Lightning takes what there is
    wanted, highest = requested
    accelerator = str(accelerator)
    gpus = torch.cuda.device_count()
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and gpus > 0):
        if highest > gpus:
            raise ConfigError(
                "trainer.devices",
                f"asks for {wanted} GPU(s) (up to index {highest - 1}) but this machine "
                f"has {gpus}.",
                "set trainer.devices to at most the GPUs of one node (multi-node: "
                "trainer.num_nodes), or trainer=cpu / trainer=ddp_cpu to run on the CPU.",
            )
    elif accelerator in ("cpu", "auto") and wanted > (os.cpu_count() or 1):
        raise ConfigError(
            "trainer.devices",
            f"asks for {wanted} CPU processes but this machine has {os.cpu_count()} cores.",
            "use trainer.devices=1 (or 2 with trainer=ddp_cpu for testing).",
        )


# ---- the run ---------------------------------------------------------------------------------
def check_one_batch(cfg: DictConfig, dm: SSLDataModule) -> None:
    """A training set smaller than one global batch would give no training step at all (training
    batches drop the last, incomplete one): the run would "complete" with global_step 0. Refused
    before the model is built, with the numbers and the fix. The world size is the one the trainer
    settings ask for ("auto"/-1: every GPU there is, else one process)."""
    requested = _requested_devices(cfg.trainer.get("devices", 1))
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    gpus = torch.cuda.device_count() if accelerator in ("auto", "gpu", "cuda") else 0
    world = (requested[0] if requested else max(1, gpus)) * int(cfg.trainer.get("num_nodes") or 1)
    n = len(dm.splits["pretrain"])
    per_rank = n // world
    if per_rank >= dm.batch_size:
        return
    cut = [k for k in ("limit", "fraction") if cfg.data.get(k)]
    after = " after " + " and ".join(f"data.{k}={cfg.data[k]}" for k in cut) if cut else ""
    ranks = f", {per_rank} per process over {world} processes" if world > 1 else ""
    fix = "train on more images"
    if cut:
        fix += f" (raise or drop {' / '.join(f'data.{k}' for k in cut)})"
    if per_rank >= method_class(cfg).min_batch_size:
        fix = f"set data.batch_size to at most {per_rank}, or {fix}"
    raise ConfigError(
        "data.batch_size",
        f"the training set has {n} images{after}{ranks}: fewer than one batch of "
        f"{dm.batch_size}, so no training step would run (the last, incomplete batch of an epoch "
        "is dropped).",
        f"{fix}.",
    )


def fit_logging_interval(trainer: pl.Trainer, dm: SSLDataModule) -> None:
    """trainer.log_every_n_steps at most one epoch: with epochs shorter than the interval Lightning
    logs no training step at all (it warns "The number of training batches ... is smaller than the
    logging interval"), so a short run's metrics.csv had no train/* rows."""
    steps = len(dm.splits["pretrain"]) // trainer.world_size // dm.batch_size
    limit = trainer.limit_train_batches
    if isinstance(limit, int):
        steps = min(steps, limit)
    if 0 < steps < trainer.log_every_n_steps:
        trainer.log_every_n_steps = steps


def announce(cfg: DictConfig, recipe: dict, run_name: str, run_dir: Path) -> None:
    """The first lines of the block a run prints before training (the rest: describe_setup),
    printed before the data is loaded, so that a data error still follows the recipe line."""
    if rank_zero_only.rank != 0:
        return
    say(f"ssl_bench: {run_name}")
    say(f"  method: {cfg.method.name} ({cfg.method.get('_target_')})")
    say(f"  {describe_recipe(cfg, recipe)}")
    say(f"  run dir: {run_dir}")


def describe_setup(cfg: DictConfig, dm: SSLDataModule, model: SSLMethod, trainer) -> None:
    """The rest of the block before training: data sizes, backbone, precision, devices; then the
    model summary."""
    if not trainer.is_global_zero:
        return
    b = cfg.backbone
    stem = ", small-input stem" if b.get("small_input") else ""
    kwargs = "".join(f", {k}={v}" for k, v in (b.get("kwargs") or {}).items())
    say(f"  data: {data_line(dm, trainer.world_size)}")
    say(
        f"  backbone: {b.name}{stem}{kwargs}, "
        f"{sum(p.numel() for p in model.backbone.parameters()) / 1e6:.2f} M parameters, "
        f"{model.feat_dim} features"
    )
    say(f"  precision: {trainer.precision}")
    say(f"  devices: {device_line(trainer)}")
    for line in model_summary(model):
        say(line)


def init_baseline(trainer: pl.Trainer, model: SSLMethod, dm: SSLDataModule) -> bool:
    """val/knn_top1_init: the kNN top-1 of the untrained network, through Lightning's validate():
    eval mode, inference mode (no grad), the run's precision (autocast), channels_last inputs
    (on_after_batch_transfer), batches of data.eval_batch_size. False when a pre-emption signal
    stopped it (Preemption raises PreemptedError)."""
    if trainer.is_global_zero:
        say(
            f"ssl_bench: {BASELINE_LABEL}: {len(dm.splits['train']):,} bank + "
            f"{len(dm.splits['test']):,} test images, batches of {dm.eval_batch_size}, no grad, "
            f"{trainer.precision} ..."
        )
    started = time.perf_counter()
    try:
        with model.online_eval.as_init_baseline():
            trainer.validate(model, datamodule=dm, verbose=False)
    except PreemptedError:
        return False
    if trainer.is_global_zero and model.knn_init is not None:
        say(
            f"ssl_bench: kNN top-1 at random init: {model.knn_init:.2f}% "
            f"({time.perf_counter() - started:.1f} s)"
        )
    return True


def fit(
    cfg: DictConfig,
    trainer: pl.Trainer,
    model: SSLMethod,
    dm: SSLDataModule,
    resume_ckpt: Path | None,
    preemption: Preemption,
) -> str | None:
    """The random-init baseline (fresh runs on labelled data), then training; the error of a
    non-finite loss, else None. A pre-emption signal during the baseline skips training."""
    online = model.online_eval
    if resume_ckpt is None and dm.num_classes > 0 and online is not None and online.init_baseline:
        if not init_baseline(trainer, model, dm):
            return None
    if preemption.received:
        return None
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=str(resume_ckpt) if resume_ckpt else None)
    except NonFiniteLossError as err:
        return str(err)
    return None


def run(cfg: DictConfig, run_dir: Path) -> dict:
    started = time.time()
    check_config(cfg)
    ensure_writable(run_dir)
    quiet_lightning_logs()
    ignore_known_noise(run_dir)
    run_name = (
        cfg.get("run_name") or f"{cfg.method.name}-{cfg.data.name}-{cfg.backbone.tag}-s{cfg.seed}"
    )
    cfg_hash = config_hash(cfg)
    resume_ckpt = find_resume_checkpoint(
        cfg.get("resume"), cfg_hash, Path(cfg.output_root), run_dir
    )
    write_run_file(run_dir, cfg_hash, run_name)
    overrides = _task_overrides()
    recipe = recipe_info(cfg, overrides)
    announce(cfg, recipe, run_name, run_dir)
    if not (run_dir / ".hydra" / "config.yaml").exists():
        (run_dir / ".hydra").mkdir(exist_ok=True)
        OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")

    if cfg.get("cpu_threads"):  # a share of the cores, e.g. per job of a parallel local sweep
        torch.set_num_threads(int(cfg.cpu_threads))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")
    dm = build_datamodule(cfg)
    dm.setup("fit")
    check_one_batch(cfg, dm)
    model = build_method(cfg, dm.data_info())
    callbacks = build_callbacks(cfg)
    loggers = build_loggers(cfg, run_dir, run_name)
    # every checkpoint records how to rebuild the method (not a config entry: it needs the data)
    record = RunRecord(cfg, dm.data_info())
    validate = model.online_eval is not None
    trainer = build_trainer(cfg, run_dir, [*callbacks, record], loggers, validate=validate)
    fit_logging_interval(trainer, dm)
    describe_setup(cfg, dm, model, trainer)
    preemption = next(c for c in trainer.callbacks if isinstance(c, Preemption))
    preemption.install()
    try:
        failure = fit(cfg, trainer, model, dm, resume_ckpt, preemption)
    finally:
        preemption.restore()
    results = collect_results(cfg, trainer, model, dm, callbacks, failure, preemption)
    results.update(
        recipe=recipe,
        run_name=run_name,
        wall_time_s=round(time.time() - started, 2),
        resumed_from=str(resume_ckpt) if resume_ckpt else None,
        run_dir=str(run_dir),
        config_hash=cfg_hash,
    )
    finish(cfg, trainer, run_dir, results, overrides, loggers)
    return results  # status "failed": the caller exits with EXIT_NONFINITE (a sweep goes on)


def collect_results(cfg, trainer, model, dm, callbacks, failure, preemption) -> dict:
    """What results.json holds (run() adds the run's name, dir, hash, recipe and wall time)."""
    throughput = next((c for c in callbacks if isinstance(c, ThroughputMonitor)), None)
    best = next((c for c in callbacks if isinstance(c, BestMetrics)), None)
    if failure:
        status = "failed"
    elif preemption.received:
        status = "preempted"
    else:
        status = "interrupted" if trainer.interrupted else "completed"
    return {
        "status": status,
        "error": failure,
        "method": cfg.method.name,
        "data": cfg.data.name,
        "backbone": cfg.backbone.tag,
        "seed": cfg.seed,
        "run_name": None,
        "recipe": None,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "precision": str(trainer.precision),
        "devices": trainer.world_size,
        "batch_size": cfg.data.batch_size,
        "lr": cfg.optimizer.lr,
        "knn_top1_init": model.knn_init,
        "final": best.final if best else {},
        "best": best.best if best else {},
        "wall_time_s": None,
        "images_per_sec": throughput.average if throughput else None,
        "resumed_from": None,
        "run_dir": None,
        "config_hash": None,
        "bad_files": dm.bad_files(),
        "torch_threads": torch.get_num_threads(),
    }


def finish(
    cfg: DictConfig, trainer, run_dir: Path, results: dict, overrides: list[str], loggers: list
) -> None:
    """results.json, the W&B run's summary (from `loggers`, the list build_loggers made: under
    fast_dev_run the Trainer holds dummies), the error of a failed run, and the summary that ends
    every run - on rank zero."""
    if not trainer.is_global_zero:
        return
    write_run_results(run_dir, results)  # keeps the run's earlier offline evals
    for lg in loggers:
        if lg.__class__.__name__ == "WandbLogger":
            from ssl_bench.wandb_utils import finish_wandb

            finish_wandb(lg, results)
    if results["error"]:
        print(f"ssl_bench: error: {results['error']}", file=sys.stderr, flush=True)
    print_summary(results, overrides, cfg.trainer.get("max_epochs"))
