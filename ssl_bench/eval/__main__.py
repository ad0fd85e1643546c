"""`python -m ssl_bench.eval mode=linear|knn|finetune|embed ckpt=<run dir or .ckpt> [key=value]...`

Every mode evaluates the run's representation - its method's `forward`, rebuilt from the run's
config and checkpoint - computed as the run's online kNN computed it
(ssl_bench.eval.representation.Representation). Nothing is chosen on the test split: `mode=knn`
reports the online protocol (the run's k and T, the metric the online kNN uses:
ssl_bench.eval.knn.WeightedKNN), and a (k, T) grid or an lr list is decided on a held-out part of
the train split.

Options and defaults: conf/eval/eval.yaml. A key that is not an eval option but a key of the run's
own config (data.limit=500, data.test_limit=200, ...) overrides that config. Every invocation keeps
its result: an entry (mode, settings, metrics, checkpoint, time) appended to the `evals` list of the
run's results.json, <out>/evals/<time>_<mode>.json (out= defaults to the run dir), a copy as
<out>/eval_<mode>.json (the newest of its mode), embed.png, and the run's W&B run when it has one
(ssl_bench.eval.results). Linear and fine-tune show their progress with an ETA
(ssl_bench.eval.progress).

The package, by job: representation.py (rebuild the run's method, compute its representation),
splits.py (batches of a split, held-out parts), knn.py (the kNN metric and the (k, T) choice),
linear.py (linear protocol, fine-tuning), progress.py (their progress and ETA), embed.py (2-D map),
results.py (where results are kept: results.json's evals, the eval files, W&B), speed.py
(`python -m ssl_bench.eval.speed`: does evaluation run at inference speed - the random-init kNN
baseline timed against a training epoch's forward passes).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ssl_bench.config import CONFIG_DIR
from ssl_bench.errors import ConfigError, UserError, report_user_error

MODES = ("linear", "knn", "finetune", "embed")
EVAL_CONFIG = CONFIG_DIR / "eval" / "eval.yaml"
DEFAULTS = {
    "linear": {"epochs": 100, "lr": 0.1, "weight_decay": 0.0},
    "finetune": {"epochs": 30, "lr": 0.05, "weight_decay": 5e-4},
}
#: the optimizers of the linear and fine-tune evaluations (ssl_bench.optim.build_optimizer builds
#: them)
EVAL_OPTIMIZERS = ("sgd", "lars")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        print(EVAL_CONFIG.read_text())
        return 0
    try:
        cfg, overrides = parse_args(argv)
        run_eval(cfg, overrides)
    except UserError as err:
        report_user_error(err)
    return 0


# ---- options -------------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> tuple[DictConfig, list[str]]:
    """(eval config, overrides of the run's config) from `key=value` arguments."""
    cfg = OmegaConf.load(EVAL_CONFIG)
    run_overrides = []
    for arg in argv:
        if "=" not in arg:
            raise ConfigError(
                arg,
                "arguments are key=value pairs.",
                "e.g. python -m ssl_bench.eval mode=linear ckpt=outputs/runs/<date>/<run>.",
            )
        key, _, value = arg.partition("=")
        key = key.lstrip("+")
        if key.split(".")[0] in cfg.keys():
            try:
                OmegaConf.update(cfg, key, OmegaConf.from_dotlist([f"v={value}"]).v, merge=False)
            except Exception as err:  # noqa: BLE001
                raise ConfigError(key, f"cannot set it to {value!r}: {err}") from None
        else:
            run_overrides.append(f"{key}={value}")
    if OmegaConf.is_missing(cfg, "ckpt"):
        raise ConfigError(
            "ckpt", "no run given.", "pass ckpt=<run dir> or ckpt=<run dir>/checkpoints/last.ckpt."
        )
    if cfg.mode not in MODES:
        raise ConfigError("mode", f"unknown mode {cfg.mode!r}.", f"use one of {', '.join(MODES)}.")
    for key, value in DEFAULTS.get(cfg.mode, {}).items():
        if cfg.get(key) is None:
            cfg[key] = value
    return cfg, run_overrides


def run_eval(cfg: DictConfig, run_overrides: list[str] | None = None, log=print) -> dict[str, Any]:
    """Rebuild the run's method (its config + checkpoint) and evaluate its representation
    (mode=...)."""
    from ssl_bench.eval.representation import build_for_eval, pick_device

    _check(cfg)
    device = pick_device(cfg.device)
    run, dm, model = build_for_eval(cfg.ckpt, run_overrides)
    return evaluate(cfg, run, dm, model, device, run_overrides, log)


def _check(cfg: DictConfig) -> None:
    """Every option of the chosen mode, before anything is built."""
    if cfg.mode in ("linear", "finetune"):
        _check_training(cfg)
    for key, integer in (("k", True), ("t", False)):
        if OmegaConf.is_list(cfg[key]):
            raise ConfigError(
                key,
                "is the one value of the reported kNN protocol, not a grid.",
                f"pass {key}=<value> (or null: the run's online value); to choose among values "
                f"on held-out training images use grid_{key}=[...].",
            )
        if cfg.get(key) is not None:
            _positive(cfg, key, integer=integer)
    for key, integer in (("grid_k", True), ("grid_t", False)):
        if cfg.get(key) is not None:
            _positive(cfg, key, integer=integer)
    if cfg.get("eval_batch_size") is not None:
        _positive(cfg, "eval_batch_size", integer=True)
    f = cfg.select_fraction
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 < f < 1.0:
        raise ConfigError(
            "select_fraction", f"must be a number in (0, 1), got {f!r}.", "use e.g. 0.1."
        )


def _check_training(cfg: DictConfig) -> None:
    """The options of a head (linear) or network (finetune) training."""
    for key in ("epochs", "batch_size"):
        _positive(cfg, key, integer=True)
    _positive(cfg, "lr")
    if cfg.mode == "finetune" and len(_as_list(cfg.lr)) > 1:
        raise ConfigError("lr", "finetune trains with one lr.", "pass one value, e.g. lr=0.05.")
    if cfg.optimizer not in EVAL_OPTIMIZERS:
        raise ConfigError("optimizer", f"unknown optimizer {cfg.optimizer!r}.", "use sgd or lars.")
    for key in ("momentum", "weight_decay"):
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ConfigError(key, f"must be a number >= 0, got {v!r}.")


def _positive(cfg: DictConfig, key: str, integer: bool = False) -> None:
    for v in _as_list(cfg[key]):
        bad_type = isinstance(v, bool) or not isinstance(v, (int, float))
        if bad_type or v <= 0 or (integer and int(v) != v):
            raise ConfigError(
                key, f"must be a positive {'integer' if integer else 'number'}, got {v!r}."
            )


def _as_list(value) -> list:
    return list(value) if OmegaConf.is_list(value) or isinstance(value, (list, tuple)) else [value]


# ---- the evaluation ------------------------------------------------------------------------------
#: the eval options each mode reads (its `settings` in results.json's `evals`); besides these every
#: mode records seed, device, precision, eval_batch_size and the run-config overrides
MODE_KEYS = {
    "linear": (
        "epochs",
        "lr",
        "optimizer",
        "momentum",
        "weight_decay",
        "batch_size",
        "feature_norm",
        "cache_features",
        "crop_scale",
        "hflip",
        "select_fraction",
    ),
    "finetune": (
        "epochs",
        "lr",
        "optimizer",
        "momentum",
        "weight_decay",
        "batch_size",
        "crop_scale",
        "hflip",
    ),
    "knn": ("k", "t", "grid_k", "grid_t", "select_fraction"),
    "embed": ("k", "t", "method", "max_points", "perplexity"),
}


def eval_settings(cfg: DictConfig, rep, run_overrides: list[str] | None) -> dict[str, Any]:
    """What an evaluation's numbers depend on: the mode's options (resolved: defaults filled in),
    seed, the device, precision and feature batch actually used, and the overrides of the run's
    config. Paths (ckpt, out) and where it logs (wandb) are not settings."""
    opts = OmegaConf.to_container(cfg, resolve=True)
    settings = {k: opts[k] for k in ("seed", *MODE_KEYS[cfg.mode])}
    settings.update(
        device=str(rep.device),
        precision=rep.precision,
        eval_batch_size=rep.batch_size,
        run_overrides=list(run_overrides or []),
    )
    return settings


def evaluate(
    cfg: DictConfig, run, dm, model, device, run_overrides: list[str] | None = None, log=print
) -> dict[str, Any]:
    """The evaluation of a rebuilt run (see run_eval); keeps its result (ssl_bench.eval.results:
    an entry of results.json's `evals`, evals/<time>_<mode>.json, eval_<mode>.json, W&B) and
    returns it."""
    from ssl_bench.eval.representation import Representation, resolve_eval_precision
    from ssl_bench.eval.results import checkpoint_info, now

    mode = cfg.mode
    started, t0 = now(), time.time()
    torch.manual_seed(int(cfg.seed))
    rc = run.cfg
    rep = Representation(
        model,
        device,
        resolve_eval_precision(cfg.precision, run.run_dir, rc, device),
        channels_last=bool(rc.get("channels_last", True)),
        batch_size=int(cfg.eval_batch_size or dm.eval_batch_size),
    )
    result: dict[str, Any] = {
        "mode": mode,
        "time": started.isoformat(timespec="seconds"),
        "run_dir": str(run.run_dir),
        "ckpt": str(run.ckpt),
        "checkpoint": checkpoint_info(run.ckpt),
        "method": rc.method.name,
        "data": rc.data.name,
        "backbone": str(rc.backbone.tag),
        "num_classes": dm.num_classes,
        "num_train": len(dm.splits["train"]),
        "num_test": len(dm.splits["test"]),
        "device": str(device),
        "run_overrides": list(run_overrides or []),
    }
    job = {"linear": _linear, "finetune": _finetune, "knn": _knn, "embed": _embed}[mode]
    res, summary, images = job(cfg, run, dm, rep, log)
    result.update(res)
    result["representation"] = rep.info()
    result["eval_config"] = OmegaConf.to_container(cfg, resolve=True)
    result["settings"] = eval_settings(cfg, rep, run_overrides)
    result["wall_time_s"] = round(time.time() - t0, 2)
    _keep(cfg, run, result, summary, images, started, log)
    return result


def _keep(cfg: DictConfig, run, result: dict, summary: dict, images: dict, started, log) -> None:
    """Log to W&B, write the eval files and append the entry to the run's results.json."""
    from ssl_bench.eval.results import (
        append_eval,
        eval_entry,
        settings_tag,
        wandb_log,
        write_eval_files,
    )

    mode, settings = cfg.mode, result["settings"]
    tag = settings_tag(mode, settings)
    wb = wandb_log(run, summary, images, setting=cfg.wandb, tag=tag, settings=settings)
    result["wandb_run_id"] = wb["run_id"] if wb else None
    result["wandb_keys"] = wb["keys"] if wb else []
    path = write_eval_files(run, mode, started, result, cfg.out)
    metrics = {k.removeprefix(f"eval/{mode}_"): v for k, v in summary.items()}
    entry = eval_entry(result, settings, metrics, started, path, {"tag": tag, **(wb or {})})
    kept = append_eval(run.run_dir, entry)
    logged = (f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items())
    log(f"{mode} eval of {run.run_dir.name}: " + ", ".join(logged) + f" -> {path}")
    if kept is None:
        log(
            f"(not listed in {run.run_dir / 'results.json'}: the run has none, or it cannot be "
            f"written; the result is in {path})"
        )


#: what each mode returns: (its part of the eval's result, the W&B summary, the W&B images)
JobResult = tuple[dict[str, Any], dict[str, Any], dict[str, Path]]


def _linear(cfg: DictConfig, run, dm, rep, log) -> JobResult:
    from ssl_bench.eval.linear import linear_eval

    res = linear_eval(
        rep,
        dm,
        dm.num_classes,
        epochs=int(cfg.epochs),
        lr=_as_list(cfg.lr),
        batch_size=int(cfg.batch_size),
        momentum=float(cfg.momentum),
        weight_decay=float(cfg.weight_decay),
        optimizer=cfg.optimizer,
        feature_norm=bool(cfg.feature_norm),
        cache_features=bool(cfg.cache_features),
        crop_scale=tuple(cfg.crop_scale),
        hflip=float(cfg.hflip),
        seed=int(cfg.seed),
        select_fraction=float(cfg.select_fraction),
        log=log,
    )
    summary = {
        "eval/linear_top1": res["top1"],
        "eval/linear_top5": res["top5"],
        "eval/linear_lr": res["lr"],
    }
    return res, summary, {}


def _finetune(cfg: DictConfig, run, dm, rep, log) -> JobResult:
    from ssl_bench.eval.linear import finetune_eval

    res = finetune_eval(
        rep,
        dm,
        dm.num_classes,
        epochs=int(cfg.epochs),
        lr=float(_as_list(cfg.lr)[0]),
        batch_size=int(cfg.batch_size),
        momentum=float(cfg.momentum),
        weight_decay=float(cfg.weight_decay),
        optimizer=cfg.optimizer,
        crop_scale=tuple(cfg.crop_scale),
        hflip=float(cfg.hflip),
        seed=int(cfg.seed),
        log=log,
    )
    return res, {"eval/finetune_top1": res["top1"], "eval/finetune_top5": res["top5"]}, {}


def _knn(cfg: DictConfig, run, dm, rep, log) -> JobResult:
    """The online protocol (the run's k and T, or the k / t options) on the test split; with grid_k
    / grid_t also the pair chosen on held-out train images, and its test accuracy."""
    feats = _split_features(rep, dm)
    k, t, source = _knn_protocol(cfg, run.cfg)
    top1, top5 = _online_knn(feats, dm.num_classes, k, t)
    log(f"knn k={k} t={t:g} ({source}): test top1 {top1:.2f} top5 {top5:.2f}")
    res = {"top1": top1, "top5": top5, "k": k, "t": t, "k_t_from": source, "selection": None}
    summary = {"eval/knn_top1": top1, "eval/knn_top5": top5, "eval/knn_k": k, "eval/knn_t": t}
    if cfg.grid_k is not None or cfg.grid_t is not None:
        ks = [int(v) for v in _as_list(cfg.grid_k)] if cfg.grid_k is not None else [k]
        ts = [float(v) for v in _as_list(cfg.grid_t)] if cfg.grid_t is not None else [t]
        res["selection"] = _knn_selection(feats, dm.num_classes, ks, ts, cfg, log)
        chosen = res["selection"]["chosen"]
        summary.update(
            {
                "eval/knn_selected_top1": res["selection"]["test_top1"],
                "eval/knn_selected_k": chosen["k"],
                "eval/knn_selected_t": chosen["t"],
            }
        )
    return res, summary, {}


def _knn_selection(feats, num_classes: int, ks, ts, cfg: DictConfig, log) -> dict[str, Any]:
    """(k, T) chosen on a held-out part of the train split (bank: the rest of it), then scored on
    the test split with the whole train split as the bank."""
    from ssl_bench.eval.knn import knn_accuracy, select_knn
    from ssl_bench.eval.splits import stratified_holdout

    bank_x, bank_y, test_x, test_y = feats
    select = {"fraction": float(cfg.select_fraction), "seed": int(cfg.seed)}
    fit, held = stratified_holdout(bank_y.cpu(), select["fraction"], select["seed"])
    chosen, grid = select_knn(
        bank_x, bank_y, num_classes, ks, ts, fit.to(bank_x.device), held.to(bank_x.device)
    )
    for r in grid:
        log(f"knn k={r['k']} t={r['t']:g}: held-out train top1 {r['heldout_top1']:.2f}")
    s1, s5 = knn_accuracy(test_x, test_y, bank_x, bank_y, num_classes, chosen["k"], chosen["t"])
    log(f"knn chosen on held-out train k={chosen['k']} t={chosen['t']:g}: test top1 {s1:.2f}")
    return {
        "chosen_on": "held-out part of the train split (bank: the rest of the train split)",
        **select,
        "num_fit": int(fit.numel()),
        "num_heldout": int(held.numel()),
        "metric": "heldout_top1",
        "grid": grid,
        "chosen": chosen,
        "then": "test accuracy of the chosen pair, bank = the whole train split",
        "test_top1": s1,
        "test_top5": s5,
    }


def _embed(cfg: DictConfig, run, dm, rep, log) -> JobResult:
    """A 2-D map of (a class-balanced subset of) the test split, titled with the online-protocol
    kNN."""
    from ssl_bench.eval.embed import plot_embedding, reduce_2d, stratified_first

    feats = _split_features(rep, dm)
    test_x, test_y = feats[2].cpu(), feats[3].cpu()
    k, t, _ = _knn_protocol(cfg, run.cfg)
    top1, _ = _online_knn(feats, dm.num_classes, k, t)
    sel = stratified_first(test_y, int(cfg.max_points))
    pts = reduce_2d(test_x[sel], cfg.method, int(cfg.seed), float(cfg.perplexity))
    out_dir = Path(cfg.out) if cfg.out else run.run_dir
    rc = run.cfg
    title = (
        f"{rc.method.name} | {rc.data.name} | {rc.backbone.tag} | kNN top-1 {top1:.1f}% "
        f"({cfg.method})"
    )
    png = plot_embedding(pts, test_y[sel].tolist(), out_dir / "embed.png", title)
    log(f"embedding of {len(sel)} test images -> {png}")
    res = {
        "knn_top1": top1,
        "knn_k": k,
        "knn_t": t,
        "embed_method": cfg.method,
        "points": len(sel),
        "image": str(png),
    }
    return res, {"eval/embed_knn_top1": top1}, {"eval/embedding": png}


# ---- the kNN protocol ----------------------------------------------------------------------------
def _split_features(rep, dm) -> tuple[torch.Tensor, ...]:
    """(train features, train labels, test features, test labels), un-augmented."""
    return (*rep.features(dm, "train"), *rep.features(dm, "test"))


def _knn_protocol(cfg: DictConfig, rc: DictConfig) -> tuple[int, float, str]:
    """(k, T, their source): the eval options when set, else the run's online_eval (its online
    kNN)."""
    online = rc.get("online_eval") or {}
    k = int(cfg.k) if cfg.k is not None else int(online.get("knn_k", 200))
    t = float(cfg.t) if cfg.t is not None else float(online.get("knn_t", 0.1))
    return k, t, "run online_eval" if cfg.k is None and cfg.t is None else "eval options"


def _online_knn(feats, num_classes: int, k: int, t: float) -> tuple[float, float]:
    """(top-1, top-5) of the metric the run's online kNN logged, on the same bank and queries."""
    from ssl_bench.eval.knn import WeightedKNN

    bank_x, bank_y, test_x, test_y = feats
    knn = WeightedKNN(num_classes, k, t)
    knn.update(bank_x, bank_y, bank=True)
    knn.update(test_x, test_y, bank=False)
    return knn.compute()


if __name__ == "__main__":
    sys.exit(main())
