"""SimCLR: the method lowers its loss on a fixed batch, groups its views as bn_stats says on every
device, builds the head proj_bn asks for, and runs through the CLI (learning: test_learning.py)."""

from pathlib import Path

import pytest
import torch
from conftest import FAST, run_cli
from conftest import narrow_backbone as narrow
from omegaconf import OmegaConf
from torch import nn

from ssl_bench.backbones import create_backbone
from ssl_bench.errors import ConfigError
from ssl_bench.losses.contrastive import nt_xent
from ssl_bench.methods.simclr import SimCLR


def test_thirty_steps_on_a_fixed_batch_lower_the_loss():
    torch.manual_seed(0)
    model = SimCLR(
        create_backbone("resnet18", small_input=True, channels=(16, 32, 64, 128)),
        temperature=0.2,
        proj_hidden_dim=128,
        proj_output_dim=32,
    )
    views = [torch.randn(16, 3, 32, 32), torch.randn(16, 3, 32, 32)]
    views[1] = views[0] + 0.3 * views[1]
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(30):
        out = model.training_loss(views, torch.zeros(16, dtype=torch.long), torch.arange(16))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert out["representation"].shape == (32, 128) and 0 < out["z_std"] < 1


def test_temperature_must_be_positive():
    with pytest.raises(ConfigError, match="method.temperature"):
        SimCLR(
            create_backbone("resnet18", small_input=True, channels=(16, 32, 64, 128)),
            temperature=0.0,
        )


# ---- BatchNorm grouping of the views (method.bn_stats), the head's BN placement (method.proj_bn)
def simclr_by_hand(m, views, joint):
    """SimCLR's loss with the views grouped by hand: both in one call (joint) or one call each (per
    view)."""
    if joint:
        z1, z2 = m.projector(m.backbone(torch.cat(views))).chunk(2)
    else:
        z1, z2 = (m.projector(m.backbone(v)) for v in views)
    return nt_xent(z1, z2, m.temperature)


def test_bn_stats_per_view_and_joint_match_the_calls_by_hand():
    torch.manual_seed(0)
    views = [torch.randn(8, 3, 16, 16), torch.randn(8, 3, 16, 16)]
    losses = {}
    for mode in ("per_view", "joint"):
        torch.manual_seed(1)
        m = SimCLR(narrow(), proj_hidden_dim=32, proj_output_dim=16, bn_stats=mode)
        losses[mode] = m.training_loss(views, torch.zeros(8, dtype=torch.long), torch.arange(8))[
            "loss"
        ]
        ref = simclr_by_hand(m, views, joint=mode == "joint")
        assert torch.allclose(losses[mode], ref, atol=1e-6), (mode, losses[mode], ref)
    assert abs(losses["per_view"] - losses["joint"]) > 1e-3, losses  # the grouping changes the math


def test_bn_stats_groups_the_backbone_calls_alike_on_every_device(monkeypatch):
    """The calls depend on bn_stats only: the same batch sizes whatever the device says it is."""
    views = [torch.randn(6, 3, 16, 16), torch.randn(6, 3, 16, 16)]
    for mode, expected in (("per_view", [6, 6]), ("joint", [12])):
        m = SimCLR(narrow(), proj_hidden_dim=32, proj_output_dim=16, bn_stats=mode)
        calls: list[int] = []
        m.backbone.register_forward_pre_hook(
            lambda mod, args, calls=calls: calls.append(args[0].shape[0])
        )
        m.training_loss(views, None, None)
        assert calls == expected, (mode, calls)


def test_no_code_path_of_the_view_methods_reads_the_device_type():
    """The grouping of views must not depend on the device (it used to: SimCLR concatenated on GPUs
    only)."""
    root = Path(__file__).resolve().parents[2] / "ssl_bench"
    files = [root / "nn" / "multicrop.py", root / "nn" / "heads.py", root / "methods" / "base.py"]
    files += [
        root / "methods" / f"{name}.py"
        for name in ("simclr", "simclr_v2", "byol", "simsiam", "swav", "moco", "amdim")
    ]
    allowed = {("base.py", "cuda.is_available")}  # saving the CUDA RNG states in checkpoints
    for path in files:
        text = path.read_text()
        for needle in ("device.type", "is_cuda", "cuda.is_available", "concat_views"):
            assert needle not in text or (path.name, needle) in allowed, (path, needle)


def test_bad_bn_stats_and_proj_bn_name_their_keys():
    with pytest.raises(ConfigError, match="method.bn_stats"):
        SimCLR(narrow(), bn_stats="cat")
    with pytest.raises(ConfigError, match="method.proj_bn"):
        SimCLR(narrow(), proj_bn="last")


def layer_kinds(mlp):
    """Each layer as a short string: L+b / L (Linear with / without bias), BN(scale, shift),
    ReLU."""
    kinds = []
    for layer in mlp:
        if isinstance(layer, nn.Linear):
            kinds.append("L+b" if layer.bias is not None else "L")
        elif isinstance(layer, nn.BatchNorm1d):
            kinds.append(f"BN({int(layer.weight is not None)},{int(layer.bias is not None)})")
        else:
            kinds.append(type(layer).__name__)
    return kinds


@pytest.mark.parametrize(
    "proj_bn, kinds",
    [
        ("none", ["L+b", "ReLU", "L+b"]),  # solo-learn's SimCLR head
        ("hidden", ["L", "BN(1,1)", "ReLU", "L+b"]),  # the head before proj_bn existed
        ("all", ["L", "BN(1,1)", "ReLU", "L", "BN(1,0)"]),  # official code: last BN scale only
    ],
)
def test_proj_bn_layer_structure(proj_bn, kinds):
    m = SimCLR(narrow(), proj_hidden_dim=32, proj_output_dim=16, proj_bn=proj_bn)
    assert layer_kinds(m.projector) == kinds
    if proj_bn == "all":  # no shift parameter: nothing to train, save or decay
        last = m.projector[-1]
        state = m.state_dict()
        assert (
            last.bias is None and "projector.4.bias" not in state and "projector.4.weight" in state
        )
        z = m.projector(torch.randn(8, 128))  # the output BN still normalises: zero feature means
        assert torch.allclose(z.mean(0), torch.zeros(16), atol=1e-5)


def test_default_head_and_grouping_follow_the_official_code():
    """conf/method/simclr.yaml and the class agree: joint BN over both views, BN after every head
    layer."""
    cfg = OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "method" / "simclr.yaml")
    assert cfg.bn_stats == "joint" and cfg.proj_bn == "all"
    m = SimCLR(narrow())
    assert m.bn_stats == "joint" and layer_kinds(m.projector)[-1] == "BN(1,0)"


def test_cli_rejects_a_bad_bn_stats(tmp_path):
    run = run_cli(
        "method=simclr",
        "method.bn_stats=both",
        "trainer.fast_dev_run=true",
        *FAST,
        run_dir=tmp_path / "run",
    )
    assert run.returncode == 2 and "method.bn_stats" in run.stderr and "Traceback" not in run.stderr
