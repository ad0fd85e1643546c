"""`python -m ssl_bench.export <run dir or .ckpt> [out=DIR]`: the trained backbone for downstream
use.

Writes `model.safetensors` (the backbone's weights under timm's own key names) and `config.json` in
timm's Hub layout (`architecture`, `num_classes`, `num_features`, `model_args`, `pretrained_cfg`
with the run's input size and normalisation; timm/models/_hub.py, timm 1.0), plus an `ssl_bench`
section (the run, the stem). Where timm builds the trained architecture itself - ImageNet-stem
ResNets, ViTs - either

    timm.create_model(name, pretrained=True, **model_args,
                      pretrained_cfg_overlay=dict(file="<export dir>/model.safetensors"))
    timm.create_model("local-dir:<export dir>", pretrained=True)      # timm versions with local-dir

gives the run's backbone exactly. A backbone with ssl_bench's small-input (CIFAR) stem is not a timm
architecture: `ssl_bench.load_backbone(<export dir>)` loads it, and config.json states the stem
change that rebuilds it by hand. Default out: `<run dir>/export`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ssl_bench.errors import ConfigError, UserError
from ssl_bench.loading import (
    EXPORT_CONFIG,
    EXPORT_WEIGHTS,
    RECORD_KEY,
    checkpoint_file,
    plain_backbone,
    read_checkpoint,
)

USAGE = "python -m ssl_bench.export <run dir or .ckpt> [out=<dir>]"


def stem_change(name: str, in_chans: int) -> str:
    """How to rebuild the small-input stem by hand
    (ssl_bench.backbones._swap_to_small_input_stem)."""
    return (
        "trained with ssl_bench's small-input stem (SimCLR appendix B.9): timm's "
        f"'{name}' has a 7x7 stride-2 conv1 and a max-pool; this backbone has conv1 = nn.Conv2d("
        f"{in_chans}, <conv1.out_channels>, kernel_size=3, stride=1, padding=1, bias=False) and "
        "maxpool = nn.Identity(). By hand: m = timm.create_model(architecture, **model_args); "
        f"m.conv1 = torch.nn.Conv2d({in_chans}, m.conv1.out_channels, 3, 1, 1, bias=False); "
        "m.maxpool = torch.nn.Identity(); "
        "m.load_state_dict(safetensors.torch.load_file('model.safetensors')). "
        "Or: ssl_bench.load_backbone('<this dir>')."
    )


def export_config(record: dict[str, Any], num_features: int, obj: dict[str, Any]) -> dict:
    """config.json: timm's Hub layout plus the run it came from."""
    spec, data, cfg = record["backbone"], record.get("data") or {}, record.get("config") or {}
    in_chans = int(spec["kwargs"].get("in_chans", 3))
    size = int(data.get("image_size", 224))
    model_args = {**spec["kwargs"], "in_chans": in_chans, "num_classes": 0}
    ssl = {
        "small_input": spec["small_input"],
        "timm_builds_architecture": not spec["small_input"],
        "method": (cfg.get("method") or {}).get("name"),
        "data": (cfg.get("data") or {}).get("name"),
        "backbone_tag": (cfg.get("backbone") or {}).get("tag"),
        "seed": cfg.get("seed"),
        "epoch": obj.get("epoch"),
        "global_step": obj.get("global_step"),
    }
    if spec["small_input"]:
        ssl["stem_change"] = stem_change(spec["name"], in_chans)
    return {
        "architecture": spec["name"],
        "num_classes": 0,
        "num_features": num_features,
        "model_args": model_args,
        "pretrained_cfg": {
            "input_size": [in_chans, size, size],
            "fixed_input_size": "img_size" in spec["kwargs"],
            "mean": list(data.get("mean", (0.5,) * in_chans)),
            "std": list(data.get("std", (0.5,) * in_chans)),
            "num_classes": 0,
            "interpolation": "bilinear",
            "crop_pct": 1.0,
        },
        "ssl_bench": ssl,
    }


def default_out(path: Path, ckpt: Path) -> Path:
    """<run dir>/export for a run dir or a checkpoint in <run dir>/checkpoints; else next to the
    file."""
    if path.is_dir():
        return path / "export"
    if ckpt.parent.name == "checkpoints":
        return ckpt.parent.parent / "export"
    return ckpt.parent / f"{ckpt.stem}_export"


def export_backbone(path: str | Path, out: str | Path | None = None) -> Path:
    """Export the backbone of a run dir or `.ckpt` to `out`; returns the export dir."""
    from safetensors.torch import save_file

    ckpt = checkpoint_file(path)
    obj = read_checkpoint(ckpt)
    record = obj[RECORD_KEY]
    model = plain_backbone(obj, ckpt)
    if model is None:
        method = (record.get("config", {}).get("method") or {}).get("name")
        raise ConfigError(
            "path",
            f"the backbone of '{ckpt}' ({method}) is not the timm model "
            f"'{record['backbone']['name']}' (the method reshapes it: per-view encoders, or "
            "LayerNorm for BatchNorm), so it has no timm export.",
            "use it from Python: ssl_bench.load_backbone(path) or ssl_bench.load_method(path).",
        )
    out_dir = Path(out).expanduser() if out else default_out(Path(str(path)).expanduser(), ckpt)
    config = export_config(record, int(model.num_features), obj)
    weights = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_file(weights, str(out_dir / EXPORT_WEIGHTS), metadata={"format": "pt"})
        (out_dir / EXPORT_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    except OSError as err:
        raise UserError(
            f"cannot write the export to '{out_dir}' ({err.strerror or err}). Fix: pass "
            "out=<writable dir>."
        ) from None
    return out_dir


def parse_args(argv: list[str]) -> tuple[str, str | None]:
    """(path, out) from `<path> [out=<dir>]` (`path=<path>` also works)."""
    path, out = None, None
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and key in ("out", "path"):
            path, out = (value, out) if key == "path" else (path, value)
        elif not eq and path is None:
            path = arg
        else:
            raise ConfigError(
                key if eq else "path", f"unexpected argument {arg!r}.", f"usage: {USAGE}"
            )
    if not path:
        raise ConfigError("path", "no run given.", f"usage: {USAGE}")
    return path, out


def main(argv: list[str] | None = None) -> None:
    from ssl_bench.errors import report_user_error

    try:
        path, out = parse_args(sys.argv[1:] if argv is None else argv)
        out_dir = export_backbone(path, out)
    except UserError as err:
        report_user_error(err)
    cfg = json.loads((out_dir / EXPORT_CONFIG).read_text())
    print(f"ssl_bench: exported {cfg['architecture']} to {out_dir}")
    if cfg["ssl_bench"]["small_input"]:
        print(f"ssl_bench: small-input stem: load it with ssl_bench.load_backbone('{out_dir}')")
    else:
        print(
            f"ssl_bench: timm.create_model('{cfg['architecture']}', pretrained=True, "
            f"pretrained_cfg_overlay=dict(file='{out_dir / EXPORT_WEIGHTS}'), "
            f"**{cfg['model_args']})"
        )


if __name__ == "__main__":
    main()
