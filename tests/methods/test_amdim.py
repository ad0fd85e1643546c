"""AMDIM: the multi-scale NCE with its score regularisation against the formula (value and
gradient), the BN grouping of the views (bn_stats), fixed-batch training, the CLI, and learning on
synthetic data and Fashion-MNIST."""

import pytest
import torch
from conftest import (
    FAST,
    knn_gain,
    learning_run,
    needs_fmnist,
    run_cli,
    train_fixed_batch,
)
from conftest import (
    narrow_backbone as narrow,
)

from ssl_bench.errors import ConfigError
from ssl_bench.losses.mi import multiscale_nce
from ssl_bench.methods.amdim import AMDIM
from ssl_bench.nn.local_features import forward_with_maps, random_locations


def test_bad_values_raise_config_errors():
    for kwargs, key in (
        ({"tclip": 0.0}, "method.tclip"),
        ({"score_reg": -1.0}, "method.score_reg"),
        ({"n_rkhs": 0}, "method.n_rkhs"),
        ({"layer_5": 5}, "method.layer_5"),
    ):
        with pytest.raises(ConfigError, match=key):
            AMDIM(narrow(), **kwargs)


def test_thirty_steps_on_a_fixed_batch_lower_the_loss():
    torch.manual_seed(0)
    m = AMDIM(narrow(), n_rkhs=64)
    x = torch.randn(16, 3, 16, 16)
    views = [x + 0.3 * torch.randn_like(x), x + 0.3 * torch.randn_like(x)]
    losses, out = train_fixed_batch(m, views, steps=30, lr=0.01)
    assert {"nce_1t5", "nce_1t7", "nce_5t5", "score_penalty"} <= set(out)
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses
    assert out["representation"].shape == (32, 128) and out["z_std"] > 0


def amdim_by_hand(m, views, joint):
    """AMDIM's loss with the views grouped by hand: both in one call of the encoder and of each
    embedding (joint) or one call per view, as the official Model.forward (self.encoder(x1),
    self.encoder(x2))."""

    def encode(x):
        feats, (m5, m7) = forward_with_maps(m.backbone, x, [m.layer_5, m.layer_7])
        return m.embed_1(feats), m.embed_5(m5).flatten(2), m.embed_7(m7).flatten(2)

    if joint:
        r1, r5, r7 = (r.chunk(2) for r in encode(torch.cat(views)))
    else:
        r1, r5, r7 = zip(*(encode(v) for v in views))
    loc5 = tuple(random_locations(r) for r in r5)
    return multiscale_nce(r1, r5, r7, loc5, m.tclip, m.score_reg)["loss"]


def test_bn_stats_per_view_and_joint_match_the_calls_by_hand():
    torch.manual_seed(0)
    views = [torch.randn(6, 3, 16, 16), torch.randn(6, 3, 16, 16)]
    losses = {}
    for mode in ("per_view", "joint"):
        torch.manual_seed(1)
        m = AMDIM(narrow(), n_rkhs=32, bn_stats=mode)
        with torch.no_grad():  # residual branches away from their zero init
            for embed in (m.embed_1, m.embed_5, m.embed_7):
                for p in embed.parameters():
                    p.add_(0.1 * torch.randn_like(p))
        torch.manual_seed(2)  # the same 5-5 antecedent locations in both
        losses[mode] = m.training_loss(views, None, None)["loss"]
        torch.manual_seed(2)
        ref = amdim_by_hand(m, views, mode == "joint")
        assert torch.allclose(losses[mode], ref, atol=1e-4), (mode, losses[mode], ref)
    assert abs(losses["per_view"] - losses["joint"]) > 1e-3, losses
    # the official code's grouping by default
    assert AMDIM(narrow(), n_rkhs=32).bn_stats == "per_view"


def test_fast_dev_run_through_cli(tmp_path):
    run = run_cli(
        "method=amdim",
        "trainer.fast_dev_run=true",
        *FAST,
        "augmentation=amdim",
        "method.n_rkhs=128",
        run_dir=tmp_path / "run",
        check=True,
    )
    res = run.results
    assert res["status"] == "completed" and res["method"] == "amdim" and res["global_step"] == 1


# The learning recipe: the shared short run (conftest.LEARN: 2k images, 2 epochs) with LARS 0.3. kNN
# top-1 gains (best - random init) over seeds 0-3, 2 runs sharing 2 cores, ~36 s each:
#   LARS 0.3 (this test):        +35.2 (22.2 -> 57.4), +12.0, +14.6, +23.0
#   Adam 1e-3 (the old recipe):  +5.6, -3.6, +3.4, +1.2;  4 epochs: +6.8, -2.4, +1.2, +2.2
AMDIM_RUN = [
    "augmentation=amdim",
    "augmentation.views.0.scale=[0.2,1.0]",
    "optimizer=lars",
    "optimizer.lr=0.3",
    "method.n_rkhs=256",
    "method.score_reg=4e-2",
]  # the measured runs' penalty (the default: 5e-2)


@pytest.mark.slow
@pytest.mark.timeout(1300)
def test_amdim_learns_on_synthetic(tmp_path):
    init, best, z_std = learning_run("amdim", tmp_path, AMDIM_RUN)
    assert best >= init + 9, (init, best)  # the lowest of 4 seeds +12.0
    assert min(z_std) > 0.25 / 256**0.5, z_std


@pytest.mark.long
@needs_fmnist
@pytest.mark.timeout(1300)
def test_amdim_learns_on_fashion_mnist(tmp_path):
    # the full fmnist_amdim experiment (5k images, 5 epochs): measured 53.1 -> 63.4 best, 63.2 final
    # (5 epochs, 206 s on 2 shared cores). Shorter runs (2000 images, 1-2 epochs at batch 64-128)
    # stayed at or below the baseline (49.8 -> 46-49), so the test runs it whole.
    run = run_cli(
        "experiment=fmnist_amdim", "progress_bar=false", run_dir=tmp_path / "run", check=True
    )
    init, after = knn_gain(run)
    assert after > init, (init, after)
