"""Barlow Twins: the projector, bad keys, the loss on the two views, 30 steps, the CLI, learning."""

import pytest
import torch
from conftest import FAST, RESNET18_TINY, learning_run, run_cli, train_fixed_batch
from conftest import narrow_backbone as narrow

from ssl_bench.errors import ConfigError
from ssl_bench.losses.redundancy import barlow_twins_loss
from ssl_bench.methods.barlow_twins import BarlowTwins

SMALL = dict(proj_hidden_dim=64, proj_output_dim=32)


def test_projector_follows_the_official_code():
    """main.py: Linear-BN-ReLU twice, then a plain Linear (no BN on the output: the loss
    standardises)."""
    m = BarlowTwins(narrow(), **SMALL)
    kinds = [type(layer).__name__ for layer in m.projector]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU"] * 2 + ["Linear"]
    assert m.projector[-1].out_features == 32 and m.projector[0].out_features == 64


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"lambd": -1.0}, "method.lambd"),
        ({"scale_loss": 0.0}, "method.scale_loss"),
        ({"proj_output_dim": 0}, "method.proj_output_dim"),
        ({"proj_layers": 0}, "method.proj_layers"),
    ],
)
def test_bad_values_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        BarlowTwins(narrow(), **{**SMALL, **kwargs})


def test_training_loss_is_the_loss_of_the_two_views_projections():
    torch.manual_seed(0)
    views = [torch.randn(8, 3, 16, 16) for _ in range(3)]  # a third view is not used
    m = BarlowTwins(narrow(), **SMALL, lambd=0.02, scale_loss=0.1)
    out = m.training_loss(views, None, None)
    z1, z2 = (m.projector(m.backbone(v)) for v in views[:2])  # one call per view (per_view)
    ref = barlow_twins_loss(z1, z2, 0.02, 0.1)
    assert torch.allclose(out["loss"], ref, atol=1e-5)
    assert torch.allclose(out["loss"], 0.1 * (out["on_diag"] + 0.02 * out["off_diag"]), atol=1e-5)
    assert out["representation"].shape == (16, m.feat_dim)


def test_thirty_steps_lower_the_loss():
    torch.manual_seed(0)
    m = BarlowTwins(narrow(), **SMALL, lambd=0.05)
    views = [torch.randn(16, 3, 16, 16) for _ in range(2)]
    losses, out = train_fixed_batch(m, views, lr=0.01)
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses
    assert out["z_std"] > 0.02


def test_fast_dev_run_through_cli_on_resnet18(tmp_path):
    run = run_cli(
        "method=barlow_twins",
        "trainer.fast_dev_run=true",
        *FAST,
        *RESNET18_TINY,
        "method.proj_hidden_dim=256",
        "method.proj_output_dim=256",
        run_dir=tmp_path / "run",
        check=True,
    )
    res = run.results
    assert res["status"] == "completed" and res["method"] == "barlow_twins"
    assert res["global_step"] == 1 and res["backbone"] == "resnet18"


# The learning recipe: the shared short run (conftest.LEARN: SimCLR's CIFAR views, 2 epochs, 62
# steps) with LARS 0.3 and 512-512 heads (lambda 0.0051). kNN top-1 gains (best - random init) over
# seeds 0-3 on the shared 2-core machine (~35 s when quiet, ~280 s beside 3-4 other runs):
#   +16.8 (22.2 -> 39.0), +6.8, +21.2, +15.2
BARLOW_TWINS_LEARN = [
    "optimizer=lars",
    "optimizer.lr=0.3",
    "method.proj_hidden_dim=512",
    "method.proj_output_dim=512",
]


@pytest.mark.slow
@pytest.mark.timeout(1300)
def test_barlow_twins_learns_without_collapse(tmp_path):
    init, best, z_std = learning_run("barlow_twins", tmp_path, BARLOW_TWINS_LEARN)
    assert best >= init + 4, (init, best)  # the lowest of 4 seeds +6.8
    # healthy spread of the normalised embeddings: 0.029-0.033 over seeds 0-3 (collapse: 0)
    assert min(z_std) > 0.5 / 512**0.5, z_std
