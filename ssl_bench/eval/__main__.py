"""`python -m ssl_bench.eval mode=linear|knn|finetune|embed ckpt=<run dir or .ckpt> [key=value ...]`.

Options and defaults: conf/eval/eval.yaml. A key that is not an eval option but a key of the run's
own config (data.limit=500, data.test_limit=200, ...) overrides that config. Results go to
<run dir>/eval_<mode>.json (and embed.png), and to the run's W&B run when it has one.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ssl_bench.config import CONFIG_DIR, report_user_error
from ssl_bench.errors import ConfigError, UserError

MODES = ("linear", "knn", "finetune", "embed")
EVAL_CONFIG = CONFIG_DIR / "eval" / "eval.yaml"
DEFAULTS = {"linear": {"epochs": 100, "lr": 0.1, "weight_decay": 0.0},
            "finetune": {"epochs": 30, "lr": 0.05, "weight_decay": 5e-4}}


def parse_args(argv: list[str]) -> tuple[DictConfig, list[str]]:
    """(eval config, overrides of the run's config) from `key=value` arguments."""
    cfg = OmegaConf.load(EVAL_CONFIG)
    run_overrides = []
    for arg in argv:
        if "=" not in arg:
            raise ConfigError(arg, "arguments are key=value pairs.",
                              "e.g. python -m ssl_bench.eval mode=linear ckpt=outputs/runs/<date>/<run>.")
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
        raise ConfigError("ckpt", "no run given.", "pass ckpt=<run dir> or ckpt=<run dir>/checkpoints/last.ckpt.")
    if cfg.mode not in MODES:
        raise ConfigError("mode", f"unknown mode {cfg.mode!r}.", f"use one of {', '.join(MODES)}.")
    for key, value in DEFAULTS.get(cfg.mode, {}).items():
        if cfg.get(key) is None:
            cfg[key] = value
    return cfg, run_overrides


def _positive(cfg: DictConfig, key: str, integer: bool = False) -> None:
    values = cfg[key] if OmegaConf.is_list(cfg[key]) else [cfg[key]]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 or (integer and int(v) != v):
            raise ConfigError(key, f"must be a positive {'integer' if integer else 'number'}, got {v!r}.")


def _as_list(value) -> list:
    return list(value) if OmegaConf.is_list(value) or isinstance(value, (list, tuple)) else [value]


def run_eval(cfg: DictConfig, run_overrides: list[str] | None = None, log=print) -> dict[str, Any]:
    from ssl_bench.eval.common import (build_for_eval, extract_features, pick_device, wandb_log, write_results,
                                       SplitBatches)
    from ssl_bench.eval.knn import knn_accuracy

    mode = cfg.mode
    if mode in ("linear", "finetune"):
        for key in ("epochs", "batch_size"):
            _positive(cfg, key, integer=True)
        _positive(cfg, "lr")
    if mode == "knn":
        _positive(cfg, "k", integer=True)
        _positive(cfg, "t")
    device = pick_device(cfg.device)
    started = time.time()
    run, dm, model = build_for_eval(cfg.ckpt, run_overrides)
    torch.manual_seed(int(cfg.seed))
    backbone = model.backbone.to(device).to(memory_format=torch.contiguous_format)
    rc = run.cfg
    k = dm.num_classes
    result: dict[str, Any] = {"mode": mode, "run_dir": str(run.run_dir), "ckpt": str(run.ckpt),
                              "method": rc.method.name, "data": rc.data.name, "backbone": str(rc.backbone.tag),
                              "num_classes": k, "num_train": len(dm.splits["train"]),
                              "num_test": len(dm.splits["test"]), "device": str(device),
                              "run_overrides": list(run_overrides or [])}
    summary, images = {}, {}
    eval_bs = max(int(cfg.batch_size), 256)

    if mode == "linear":
        from ssl_bench.eval.linear import linear_eval

        res = linear_eval(backbone, dm, k, device, epochs=int(cfg.epochs), lr=_as_list(cfg.lr),
                          batch_size=int(cfg.batch_size), momentum=float(cfg.momentum),
                          weight_decay=float(cfg.weight_decay), optimizer=cfg.optimizer,
                          feature_norm=bool(cfg.feature_norm), cache_features=bool(cfg.cache_features),
                          crop_scale=tuple(cfg.crop_scale), hflip=float(cfg.hflip), seed=int(cfg.seed), log=log)
        result.update(res)
        summary = {"eval/linear_top1": res["top1"], "eval/linear_top5": res["top5"], "eval/linear_lr": res["lr"]}
    elif mode == "finetune":
        from ssl_bench.eval.linear import finetune_eval

        res = finetune_eval(backbone, dm, k, device, epochs=int(cfg.epochs), lr=float(_as_list(cfg.lr)[0]),
                            batch_size=int(cfg.batch_size), momentum=float(cfg.momentum),
                            weight_decay=float(cfg.weight_decay), optimizer=cfg.optimizer,
                            crop_scale=tuple(cfg.crop_scale), hflip=float(cfg.hflip), seed=int(cfg.seed), log=log)
        result.update(res)
        summary = {"eval/finetune_top1": res["top1"], "eval/finetune_top5": res["top5"]}
    else:
        backbone.eval()
        bank_x, bank_y = extract_features(backbone, SplitBatches(dm, "train", eval_bs, device))
        test_x, test_y = extract_features(backbone, SplitBatches(dm, "test", eval_bs, device))
        if mode == "knn":
            grid = []
            for kk in _as_list(cfg.k):
                for t in _as_list(cfg.t):
                    top1, top5 = knn_accuracy(test_x, test_y, bank_x, bank_y, k, int(kk), float(t))
                    grid.append({"k": int(kk), "t": float(t), "top1": top1, "top5": top5})
                    log(f"knn k={kk} t={t:g}: top1 {top1:.2f} top5 {top5:.2f}")
            best = max(grid, key=lambda r: r["top1"])
            result.update({"top1": best["top1"], "top5": best["top5"], "k": best["k"], "t": best["t"], "sweep": grid})
            summary = {"eval/knn_top1": best["top1"], "eval/knn_top5": best["top5"], "eval/knn_k": best["k"],
                       "eval/knn_t": best["t"]}
        else:  # embed
            from ssl_bench.eval.embed import plot_embedding, reduce_2d, stratified_first

            kk, t = int(rc.online_eval.get("knn_k", 200)), float(rc.online_eval.get("knn_t", 0.1))
            top1, _ = knn_accuracy(test_x, test_y, bank_x, bank_y, k, kk, t)
            sel = stratified_first(test_y.cpu(), int(cfg.max_points))
            pts = reduce_2d(test_x.cpu()[sel], cfg.method, int(cfg.seed), float(cfg.perplexity))
            out_dir = Path(cfg.out) if cfg.out else run.run_dir
            title = f"{rc.method.name} | {rc.data.name} | {rc.backbone.tag} | kNN top-1 {top1:.1f}% ({cfg.method})"
            png = plot_embedding(pts, test_y.cpu()[sel].tolist(), out_dir / "embed.png", title)
            log(f"embedding of {len(sel)} test images -> {png}")
            result.update({"knn_top1": top1, "knn_k": kk, "knn_t": t, "embed_method": cfg.method,
                           "points": len(sel), "image": str(png)})
            summary = {"eval/embed_knn_top1": top1}
            images = {"eval/embedding": png}
    result["eval_config"] = OmegaConf.to_container(cfg, resolve=True)
    result["wall_time_s"] = round(time.time() - started, 2)
    result["wandb_run_id"] = wandb_log(run, mode, summary, images, setting=cfg.wandb)
    path = write_results(run, mode, result, cfg.out)
    log(f"{mode} eval of {run.run_dir.name}: " + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                                          for k, v in summary.items()) + f" -> {path}")
    return result


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


if __name__ == "__main__":
    sys.exit(main())
