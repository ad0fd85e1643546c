"""BYOL: loss vs its formula, EMA target with the cosine tau schedule, 30 steps, the CLI,
learning."""

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
from ssl_bench.losses.bootstrap import byol_loss
from ssl_bench.methods.byol import BYOL

SMALL = dict(proj_hidden_dim=64, proj_output_dim=32, pred_hidden_dim=64)


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"base_tau": 1.5}, "method.base_tau"),
        ({"final_tau": -0.1}, "method.final_tau"),
        ({"base_tau": 0.999, "final_tau": 0.99}, "method.base_tau"),
    ],
)
def test_bad_tau_names_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        BYOL(narrow(), **SMALL, **kwargs)


def test_tau_follows_the_cosine_without_a_trainer():
    m = BYOL(narrow(), **SMALL)
    m.momentum_targets.total_steps = 4
    taus = []
    for _ in range(5):
        m.after_optimizer_step()
        taus.append(m.momentum_targets.tau)
    assert (
        taus[0] == pytest.approx(0.99)
        and taus[2] == pytest.approx(0.995)
        and taus[4] == pytest.approx(1.0)
    )


def test_thirty_steps_lower_the_loss():
    torch.manual_seed(0)
    m = BYOL(narrow(), **SMALL)
    m.momentum_targets.total_steps = 30
    views = [torch.randn(16, 3, 16, 16) for _ in range(2)]
    losses, out = train_fixed_batch(m, views)
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses
    assert out["z_std"] > 0.02


def test_fast_dev_run_through_cli(tmp_path):
    run = run_cli(
        "method=byol",
        "trainer.fast_dev_run=true",
        *FAST,
        "augmentation=byol",
        "method.proj_hidden_dim=128",
        "method.pred_hidden_dim=128",
        run_dir=tmp_path / "run",
        check=True,
    )
    res = run.results
    assert res["status"] == "completed" and res["method"] == "byol" and res["global_step"] == 1


# The learning recipe: the shared short run (conftest.LEARN) for 5 epochs (155 steps), SimCLR's
# symmetric views (colour strength 0.5, no blur), LARS 0.3, tau rising from 0.9 (over so few steps
# the target must move). kNN top-1 gains (best - random init) over seeds 0-3, 2 runs sharing 2
# cores:
#   SimCLR views, LARS 0.3, tau 0.9, 5 epochs (this test, ~66 s):
#       +14.6 (22.2 -> 36.8), +4.8, +14.8, +8.8
#     re-measured 2026-11-30 (the code of then): +10.8 (22.6 -> 33.4), +7.6, +8.4, +7.6; the same
#     recipe cut to 4 epochs +8.4, +4.0 (seeds 0-1), to 3 epochs +8.0, +4.6, +4.2, +6.4 - too
#     little slack over the margin to save the time
#   the same, 4 epochs: +14.2, +2.6, +9.4, +7.8 (LARS 0.2: +7.4, +2.4, +14.2, +8.2)
#   the same, 4 epochs, tau from 0.99: +5.8, -3.6, +9.8, +2.6
#   BYOL's views (blur 1.0 / 0.1, strength 1.0), LARS 1.0, 3 epochs: +4.4, -2.8, +8.6, +0.4
#       (LARS 0.3, 4 epochs: +9.4, -2.2, +3.6, +4.6)
#   BYOL's views without blur (byol_cifar), LARS 1.0, 3 epochs: +4.4, -4.6, -0.2, +1.8
#       (LARS 0.3, 4 epochs: +6.0, -1.4, -1.4, +3.8)
BYOL_LEARN = [
    "augmentation=simclr",
    "method.proj_hidden_dim=512",
    "method.pred_hidden_dim=512",
    "method.proj_output_dim=128",
    "optimizer=lars",
    "optimizer.lr=0.3",
    "trainer.max_epochs=5",
    "method.base_tau=0.9",
]


@pytest.mark.slow
@pytest.mark.timeout(1300)  # ~66 s on 2 quiet cores; minutes when shared
def test_byol_learns_without_collapse(tmp_path):
    init, best, z_std = learning_run("byol", tmp_path, BYOL_LEARN)
    assert best >= init + 4, (init, best)  # the lowest of 4 seeds +4.8 (re-measured: +7.6)
    assert min(z_std) > 0.25 / 128**0.5, z_std


@pytest.mark.long  # 40 s of CI's 12 minutes: test_byol_learns_without_collapse is CI's BYOL check
@needs_fmnist
@pytest.mark.timeout(1300)
def test_byol_learns_on_fashion_mnist(tmp_path):
    """Where BYOL's short run is reliable: 2k Fashion-MNIST images, 3 epochs of batch 64 (~35 s on
    one core; `make test-long`, beside experiment=fmnist_byol's whole run). kNN gains over seeds
    0-3: with 2 epochs +8.7, +11.7, +15.2, +17.6 on an Intel Xeon (AMX) but +4.6, +7.2, +10.6,
    +16.6 on an AMD EPYC (Zen 4, AVX512-BF16: bf16 kernels differ); with 3 epochs on the EPYC +8.5,
    +12.9, +15.0, +16.3 (init 43-50)."""
    run = run_cli(
        "experiment=fmnist_byol",
        "progress_bar=false",
        "data.limit=2000",
        "data.test_limit=1000",
        "data.batch_size=64",
        "trainer.max_epochs=3",
        "scheduler.warmup_epochs=0.3",
        "method.base_tau=0.9",
        run_dir=tmp_path / "run",
        check=True,
    )
    init, after = knn_gain(run)
    assert after >= init + 6, (init, after)


def byol_by_hand(m, views, joint):
    """BYOL's loss with the views grouped by hand: both in one call of each network (joint) or one
    call per view, as the official code's apply_once_fn (byol_experiment.py _forward)."""

    def online(x):
        return m.predictor(m.projector(m.backbone(x)))

    def target(x):
        return m.target_projector(m.target_backbone(x))

    if joint:
        (p1, p2), (t1, t2) = online(torch.cat(views)).chunk(2), target(torch.cat(views)).chunk(2)
    else:
        (p1, p2), (t1, t2) = (online(v) for v in views), (target(v) for v in views)
    return byol_loss(p1, t2) + byol_loss(p2, t1)


def test_bn_stats_per_view_and_joint_match_the_calls_by_hand():
    torch.manual_seed(0)
    views = [torch.randn(8, 3, 16, 16), torch.randn(8, 3, 16, 16)]
    losses = {}
    for mode in ("per_view", "joint"):
        torch.manual_seed(1)
        m = BYOL(narrow(), **SMALL, bn_stats=mode)
        with torch.no_grad():
            for p in m.target_projector.parameters():  # a target unlike the online net
                p.add_(0.1 * torch.randn_like(p))
        losses[mode] = m.training_loss(views, None, None)["loss"]
        assert torch.allclose(losses[mode], byol_by_hand(m, views, mode == "joint"), atol=1e-5), (
            mode
        )
    assert abs(losses["per_view"] - losses["joint"]) > 1e-3, losses
    assert BYOL(narrow(), **SMALL).bn_stats == "per_view"  # the official code's grouping by default
