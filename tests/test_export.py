"""Using what was trained: `ssl_bench.load_backbone` / `load_method` and `python -m
ssl_bench.export`.

One tiny run (one optimizer step at full lr, so the weights have moved from their init) trained
through `ssl_bench.train` with timm's own ImageNet stem; checkpoints for the small-input (CIFAR)
stem and for a ViT are built from it by swapping the backbone weights and the recorded spec (a
second training would only cost time). Checked by reverting: without RunRecord in training.run, five
of the six tests fail (the checkpoint does not record its run config). The feature test also shows
the issue's trap: timm given the Lightning checkpoint itself (non-strict) keeps random weights.
"""

from __future__ import annotations

import json
import shutil

import pytest
import timm
import torch
from conftest import FAST

TINY = [
    *FAST,
    "backbone.small_input=false",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=1",
    "scheduler.warmup_epochs=0",
    "online_eval.init_baseline=false",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    import ssl_bench

    out = tmp_path_factory.mktemp("export") / "run"
    results = ssl_bench.train([*TINY, f"hydra.run.dir={out}"])
    assert results["status"] == "completed" and results["global_step"] == 1
    return out


def images(n: int = 4, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def test_lone_checkpoint_loads_the_trained_weights(run_dir, tmp_path):
    import ssl_bench
    from ssl_bench.backbones import create_backbone

    lone = tmp_path / "elsewhere" / "copied.ckpt"
    lone.parent.mkdir()
    shutil.copy(run_dir / "checkpoints" / "last.ckpt", lone)
    sd = torch.load(lone, map_location="cpu", weights_only=True)["state_dict"]
    backbone = ssl_bench.load_backbone(lone)
    method = ssl_bench.load_method(lone)
    assert not backbone.training and not method.training
    assert type(method).__name__ == "SimCLR" and method.online_eval.probe is not None
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, sd[f"backbone.{key}"]), key
    for key, value in method.state_dict().items():
        assert torch.equal(value, sd[key]), key
    x = images()
    # the method is built as training built it, channels_last: the same weights, another conv order
    torch.testing.assert_close(backbone(x), method.backbone(x), rtol=0, atol=1e-5)
    untrained = create_backbone("resnet18", channels=(16, 32, 64, 128)).eval()
    untrained.load_state_dict({k[9:]: v for k, v in sd.items() if k.startswith("backbone.")})
    assert torch.equal(backbone(x), untrained(x))
    assert torch.equal(ssl_bench.load_backbone(run_dir)(x), backbone(x))  # the run dir: the same
    from ssl_bench.errors import ConfigError
    from ssl_bench.methods.byol import BYOL
    from ssl_bench.methods.simclr import SimCLR

    # Lightning's classmethod works too (it used to fail: "missing 'backbone'")
    same = SimCLR.load_from_checkpoint(lone)
    assert all(torch.equal(v, sd[k]) for k, v in same.state_dict().items())
    with pytest.raises(ConfigError, match="holds a SimCLR, not a BYOL"):
        BYOL.load_from_checkpoint(lone)


@torch.no_grad()
def test_timm_loads_the_export_with_identical_features(run_dir, tmp_path):
    import ssl_bench
    from ssl_bench.export import main

    main([str(run_dir), f"out={tmp_path / 'exp'}"])
    cfg = json.loads((tmp_path / "exp" / "config.json").read_text())
    assert cfg["architecture"] == "resnet18" and cfg["num_features"] == 128
    assert cfg["model_args"] == {"channels": [16, 32, 64, 128], "in_chans": 3, "num_classes": 0}
    assert cfg["pretrained_cfg"]["input_size"] == [3, 32, 32]
    assert len(cfg["pretrained_cfg"]["mean"]) == 3 and cfg["ssl_bench"]["small_input"] is False
    theirs = timm.create_model(
        cfg["architecture"],
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(tmp_path / "exp" / "model.safetensors")),
        **cfg["model_args"],
    ).eval()
    ours = ssl_bench.load_backbone(run_dir)
    x = images()
    assert torch.equal(theirs(x), ours(x))
    assert torch.equal(ssl_bench.load_backbone(tmp_path / "exp")(x), ours(x))
    if hasattr(timm.models._hub, "load_model_config_from_path"):  # timm with "local-dir:" names
        local = timm.create_model(f"local-dir:{tmp_path / 'exp'}", pretrained=True).eval()
        assert torch.equal(local(x), ours(x)) and local.num_classes == 0
    # the trap the issue names: timm given the Lightning checkpoint keeps its random init
    trap = timm.create_model(
        "resnet18",
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(run_dir / "checkpoints" / "last.ckpt")),
        **cfg["model_args"],
        pretrained_strict=False,
    ).eval()
    assert not torch.allclose(trap(x), ours(x))
    # the default out dir: <run dir>/export
    main([str(run_dir / "checkpoints" / "last.ckpt")])
    assert (run_dir / "export" / "model.safetensors").is_file()


def swapped_checkpoint(run_dir, path, name: str, small_input: bool, **kwargs):
    """The run's checkpoint with another (seeded random) backbone and the matching recorded spec."""
    from ssl_bench.backbones import create_backbone
    from ssl_bench.loading import RECORD_KEY

    torch.manual_seed(1)
    model = create_backbone(name, small_input=small_input, **kwargs)
    obj = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    sd = {k: v for k, v in obj["state_dict"].items() if not k.startswith("backbone.")}
    sd.update({f"backbone.{k}": v for k, v in model.state_dict().items()})
    obj["state_dict"] = sd
    obj[RECORD_KEY]["backbone"] = {"name": name, "small_input": small_input, "kwargs": kwargs}
    torch.save(obj, path)
    return model.eval()


@torch.no_grad()
def test_small_input_stem_exports_for_ssl_bench_and_says_how(run_dir, tmp_path):
    import ssl_bench
    from ssl_bench.export import export_backbone

    model = swapped_checkpoint(run_dir, tmp_path / "s.ckpt", "resnet18", True, channels=[8] * 4)
    out = export_backbone(tmp_path / "s.ckpt", tmp_path / "exp")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["ssl_bench"]["small_input"] is True
    assert "kernel_size=3, stride=1" in cfg["ssl_bench"]["stem_change"]
    x = images()
    assert torch.equal(ssl_bench.load_backbone(out)(x), model(x))
    # the stem change stated in config.json, made by hand, loads the weights into timm's model
    from safetensors.torch import load_file

    by_hand = timm.create_model(cfg["architecture"], **cfg["model_args"])
    by_hand.conv1 = torch.nn.Conv2d(3, by_hand.conv1.out_channels, 3, 1, 1, bias=False)
    by_hand.maxpool = torch.nn.Identity()
    by_hand.load_state_dict(load_file(str(out / "model.safetensors")))
    assert torch.equal(by_hand.eval()(x), model(x))


@torch.no_grad()
def test_vit_export_loads_in_timm(run_dir, tmp_path):
    from ssl_bench.export import export_backbone

    kwargs = {"img_size": 32, "patch_size": 8, "depth": 2}
    model = swapped_checkpoint(
        run_dir, tmp_path / "v.ckpt", "vit_tiny_patch16_224", False, **kwargs
    )
    out = export_backbone(tmp_path / "v.ckpt", tmp_path / "exp")
    cfg = json.loads((out / "config.json").read_text())
    theirs = timm.create_model(
        cfg["architecture"],
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(out / "model.safetensors")),
        **cfg["model_args"],
    ).eval()
    x = images()
    assert torch.equal(theirs(x), model(x))


def test_bad_paths_name_the_path_and_the_fix(run_dir, tmp_path):
    import ssl_bench
    from ssl_bench.errors import ConfigError
    from ssl_bench.export import export_backbone
    from ssl_bench.loading import RECORD_KEY

    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    obj = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    del obj[RECORD_KEY]
    torch.save(obj, tmp_path / "old.ckpt")
    cases = {
        tmp_path / "missing": "does not exist",
        tmp_path / "empty": "neither a checkpoint nor a run dir",
        tmp_path / "notes.ckpt": "cannot read",
        tmp_path / "old.ckpt": "does not record its run config",
    }
    for path, problem in cases.items():
        for load in (ssl_bench.load_backbone, ssl_bench.load_method):
            with pytest.raises(ConfigError) as err:
                load(path)
            assert str(path) in str(err.value) and problem in str(err.value)
            assert "Fix:" in str(err.value)
    export_backbone(run_dir, tmp_path / "exp")
    with pytest.raises(ConfigError, match="export dir.*load_backbone"):
        ssl_bench.load_method(tmp_path / "exp")
    # a backbone the method reshaped (as CMC's encoders) has no timm export
    obj = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    obj["state_dict"]["backbone.extra.weight"] = torch.zeros(1)
    torch.save(obj, tmp_path / "reshaped.ckpt")
    with pytest.raises(ConfigError, match="not the timm model 'resnet18'"):
        export_backbone(tmp_path / "reshaped.ckpt", tmp_path / "exp2")


def test_export_cli_bad_argument_exits_2(tmp_path, capsys):
    from ssl_bench.export import main

    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), "outt=x"])
    assert exc.value.code == 2
    assert "unexpected argument 'outt=x'" in capsys.readouterr().err
