"""Runs on disk: find a run dir, its config and its checkpoint, and the earlier run `resume=auto`
continues.

What a run dir (outputs/runs/<date>/<time>_<name>, or one job dir of a multirun) holds, as far as
finding it goes:

    .hydra/config.yaml       the composed config (Hydra writes it; training.run when Hydra did not)
    ssl_bench_run.json       {config_hash, run_name}: what `resume=auto` matches on
    checkpoints/last.ckpt    the newest checkpoint (last.ckpt.prev, the one before:
    ssl_bench.reliability)

Training (`resume=`, ssl_bench.training) and the offline evaluation (`ckpt=`, ssl_bench.eval) both
find runs and checkpoints here. Every path a user gives that leads nowhere ends in one message
naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ssl_bench.errors import ConfigError, UserError

CONFIG_FILE = Path(".hydra") / "config.yaml"
RUN_FILE = "ssl_bench_run.json"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


def is_run_dir(path: Path) -> bool:
    """Whether `path` is a run dir: it holds the run's composed config."""
    return (path / CONFIG_FILE).is_file()


def write_run_file(run_dir: Path, config_hash: str, run_name: str) -> None:
    """Record what a later `resume=auto` matches on (see find_resume_checkpoint)."""
    (run_dir / RUN_FILE).write_text(json.dumps({"config_hash": config_hash, "run_name": run_name}))


# ---- training: resume= ---------------------------------------------------------------------------
def find_resume_checkpoint(
    resume: str | None, cfg_hash: str, output_root: Path, run_dir: Path
) -> Path | None:
    """The checkpoint a run resumes from. `resume=auto`: the newest `last.ckpt` of an earlier run
    below `output_root` with the same config hash (None when there is none); `resume=<path>`: that
    file, or a run dir's checkpoints/last.ckpt. A corrupt checkpoint falls back to its `.prev`
    sibling (ssl_bench.reliability.usable_checkpoint)."""
    if resume in (None, "", "none", "null"):
        return None
    # reliability imports Lightning: only once there is a checkpoint to check (the eval imports this
    # file)
    from ssl_bench.reliability import usable_checkpoint

    if resume == "auto":
        newest = _newest_with_config(cfg_hash, output_root, run_dir)
        return usable_checkpoint(newest) if newest is not None else None
    path = Path(resume).expanduser()
    if path.is_dir():
        path = path / LAST_CHECKPOINT
    if not path.is_file():
        raise ConfigError(
            "resume",
            f"no checkpoint at '{path}'.",
            "pass resume=auto, a run dir, or the path of a .ckpt file.",
        )
    return usable_checkpoint(path)


def _newest_with_config(cfg_hash: str, output_root: Path, run_dir: Path) -> Path | None:
    """The most recently written `last.ckpt` of the runs below `output_root` (`run_dir` aside) whose
    run file records `cfg_hash`."""
    candidates = []
    for run_file in output_root.rglob(RUN_FILE):
        other = run_file.parent
        ckpt = other / LAST_CHECKPOINT
        if other.resolve() == run_dir.resolve() or not ckpt.is_file():
            continue
        try:
            if json.loads(run_file.read_text()).get("config_hash") == cfg_hash:
                candidates.append(ckpt)
        except (OSError, json.JSONDecodeError):
            continue
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


# ---- evaluation: ckpt= ---------------------------------------------------------------------------
@dataclass
class RunRef:
    """A run as an evaluation addresses it: its dir, the checkpoint chosen, its config (overrides
    applied)."""

    run_dir: Path
    ckpt: Path
    cfg: DictConfig


def open_run(ckpt: str | Path | None, overrides: list[str] | None = None) -> RunRef:
    """The run of `ckpt` (a run dir or a .ckpt inside one, see resolve_run) with its own config."""
    run_dir, ckpt_file = resolve_run(ckpt)
    return RunRef(run_dir, ckpt_file, load_run_config(run_dir, overrides))


def resolve_run(ckpt: str | Path | None) -> tuple[Path, Path]:
    """(run dir, checkpoint file) of `ckpt`: a run dir (its checkpoints/last.ckpt) or a .ckpt file
    inside `<run>/checkpoints/` (or directly in a run dir); else a UserError naming the path."""
    if ckpt in (None, "", "???"):
        raise ConfigError(
            "ckpt", "no run given.", "pass ckpt=<run dir> or ckpt=<run dir>/checkpoints/last.ckpt."
        )
    path = Path(str(ckpt)).expanduser()
    if not path.exists():
        raise UserError(
            f"ckpt '{path}' does not exist. Fix: pass ckpt=<run dir> (holding .hydra/config.yaml "
            "and checkpoints/last.ckpt) or the path of a .ckpt file in such a run dir."
        )
    if path.is_dir():
        return path, _last_checkpoint_of_run(path)
    run_dir = next((p for p in (path.parent.parent, path.parent) if is_run_dir(p)), None)
    if run_dir is None:
        raise UserError(
            f"cannot find the run config for checkpoint '{path}': no {CONFIG_FILE} in "
            f"'{path.parent.parent}'. Fix: pass a checkpoint inside a run dir "
            "(<run>/checkpoints/*.ckpt)."
        )
    return run_dir, path


def _last_checkpoint_of_run(run_dir: Path) -> Path:
    if not is_run_dir(run_dir):
        raise UserError(
            f"'{run_dir}' is not a run dir: it has no {CONFIG_FILE}. Fix: pass the dir of one run "
            "(outputs/runs/<date>/<time>_<name> or a multirun job dir)."
        )
    ckpt = run_dir / LAST_CHECKPOINT
    if not ckpt.is_file():
        raise UserError(
            f"run dir '{run_dir}' has no checkpoints/last.ckpt (did the run finish an epoch?). "
            "Fix: pass ckpt=<path of a .ckpt file>."
        )
    return ckpt


def load_run_config(run_dir: Path, overrides: list[str] | None = None) -> DictConfig:
    """The run's own config (.hydra/config.yaml), with `key=value` overrides of its existing keys
    applied on top (e.g. data.limit=500); an unknown top-level key is a ConfigError."""
    cfg = OmegaConf.load(run_dir / CONFIG_FILE)
    OmegaConf.set_struct(cfg, False)
    for item in overrides or []:
        key, _, value = item.partition("=")
        if key.split(".")[0] not in cfg:
            raise ConfigError(
                key,
                "is neither an eval option nor a key of the run's config "
                f"({run_dir / CONFIG_FILE}).",
                "check the spelling; run-config keys look like data.limit=500.",
            )
        try:
            OmegaConf.update(cfg, key, OmegaConf.from_dotlist([f"v={value}"]).v, merge=True)
        except Exception as err:  # noqa: BLE001 - omegaconf raises several kinds
            raise ConfigError(key, f"cannot set it to {value!r}: {err}") from None
    return cfg


def load_state_dict(ckpt: Path) -> dict[str, torch.Tensor]:
    """The method's state dict in a checkpoint written by ssl_bench (a Lightning .ckpt, or a bare
    state dict); a UserError naming the file when it cannot be read or holds no `backbone.*`
    weights."""
    try:
        try:
            obj = torch.load(ckpt, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a Lightning .ckpt may hold plain-python hparams objects
            obj = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001
        raise UserError(
            f"cannot read checkpoint '{ckpt}': {err}. Fix: pass a Lightning .ckpt written by "
            "ssl_bench (checkpoints/last.ckpt)."
        ) from None
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not any(k.startswith("backbone.") for k in sd):
        raise UserError(
            f"checkpoint '{ckpt}' holds no 'backbone.*' weights. Fix: pass a checkpoint of an "
            "ssl_bench run (checkpoints/last.ckpt)."
        )
    return sd
