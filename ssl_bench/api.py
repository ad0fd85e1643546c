"""The Python API: `compose(overrides)` and `train(overrides)`, for notebooks and scripts.

Both compose the config exactly as `python -m ssl_bench <overrides>` does - Hydra's compose API over
the package's own conf/ dir (ssl_bench.config.CONFIG_DIR), the same groups and defaults - and
`train` runs the same checks and the same `training.run` as the CLI's one-run path
(ssl_bench.__main__), in this process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from ssl_bench.config import CONFIG_DIR
from ssl_bench.errors import ConfigError
from ssl_bench.hydra_callbacks import existing_run_error


@contextlib.contextmanager
def _hydra_initialised() -> Iterator[None]:
    """Hydra initialised on the package's conf dir; whatever Hydra state there was before (a
    caller's own Hydra app) is put back afterwards."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    gh = GlobalHydra.instance()
    previous = gh.hydra if gh.is_initialized() else None
    gh.clear()
    try:
        with initialize_config_dir(
            config_dir=str(CONFIG_DIR), version_base="1.3", job_name="ssl_bench"
        ):
            yield
    finally:
        if previous is not None:
            GlobalHydra.instance().initialize(previous)


def _overrides(overrides: Sequence[str] | None) -> list[str]:
    if overrides is None:
        return []
    if isinstance(overrides, str) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(
            "overrides",
            f"expected a list of 'key=value' strings, got {overrides!r}.",
            "e.g. ssl_bench.train(['method=byol', 'data=cifar10', 'trainer.max_epochs=5']).",
        )
    return list(overrides)


def _compose_with_hydra(overrides: list[str]) -> DictConfig:
    """The composed config with its `hydra` node (run dir, launcher, the overrides as given)."""
    from hydra import compose as hydra_compose
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with _hydra_initialised():
            return hydra_compose("config", overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:
        # Hydra's message without its search-path listing; the options of a group on one line
        text = str(err).split("\nConfig search path")[0].strip()
        text = " ".join(line.strip() for line in text.splitlines() if line.strip())
        raise ConfigError(
            "overrides",
            f"cannot compose {overrides}: {text}",
            "check each override against `python -m ssl_bench --help` (a group option such "
            "as method=byol, or an existing key such as optimizer.lr=0.1; '+key=value' adds a "
            "new key).",
        ) from None


def _task_config(cfg: DictConfig) -> DictConfig:
    """The run's config as the CLI's task function receives it: without the `hydra` node."""
    task = cfg.copy()
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


@contextlib.contextmanager
def _hydra_config_current(full: DictConfig) -> Iterator[None]:
    """`full` is Hydra's current config while the block runs (as under Hydra's run_job: the
    `${hydra:...}` resolver reads it); whatever was current before is put back."""
    from hydra.core.hydra_config import HydraConfig

    hydra_state = HydraConfig.instance()
    before = hydra_state.cfg
    try:
        hydra_state.set_config(full)
        yield
    finally:
        hydra_state.cfg = before


def compose(overrides: Sequence[str] | None = None) -> DictConfig:
    """The config `python -m ssl_bench <overrides>` would run, e.g. `compose(["method=byol"])`,
    checked against the typed schema as the CLI checks it (ssl_bench.schema: an unknown key or a
    value of the wrong type is a ConfigError naming the key)."""
    from ssl_bench.schema import check_schema

    full = _compose_with_hydra(_overrides(overrides))
    cfg = _task_config(full)
    with _hydra_config_current(full):
        check_schema(cfg)
    return cfg


def train(overrides: Sequence[str] | None = None) -> dict:
    """Train one run in this process, as `python -m ssl_bench <overrides>` would, and return its
    results dict (what results.json holds). The run dir is the CLI's (`hydra.run.dir=<dir>` sets
    it).

    A bad value ends in ssl_bench.errors.UserError (ConfigError names the key); a run whose loss
    became non-finite returns with `status == "failed"` (the CLI exits 3 there).
    """
    from ssl_bench.training import check_launch, ensure_writable, run

    overrides = _overrides(overrides)
    full = _compose_with_hydra(overrides)
    # as Hydra's run_job: the run dir resolved once (${now:...}), the Hydra config current while
    # the run reads it (its overrides name the recipe departures)
    run_dir = Path(str(OmegaConf.select(full, "hydra.run.dir"))).resolve()
    with read_write(full.hydra), open_dict(full.hydra):
        full.hydra.runtime.output_dir = str(run_dir)
    with _hydra_config_current(full):
        cfg = _task_config(full)
        error = existing_run_error(run_dir, cfg)
        if error is not None:
            raise error
        check_launch(cfg, False, str(full.hydra.launcher.get("_target_", "")))
        ensure_writable(run_dir / ".hydra")
        OmegaConf.save(OmegaConf.create(overrides), run_dir / ".hydra" / "overrides.yaml")
        return run(cfg, run_dir)
