"""EMA targets and stop-gradients: the exact update, the tau schedule, no gradient into a target,
and MomentumTargets (nn/ema.py), the one mechanism every momentum method declares its pairs in."""

import copy
import math

import pytest
import torch
from conftest import narrow_backbone as narrow
from torch import nn

import ssl_bench.methods.byol as byol_mod
import ssl_bench.methods.simsiam as simsiam_mod
from ssl_bench.errors import ConfigError
from ssl_bench.methods.byol import BYOL
from ssl_bench.methods.moco import MoCo
from ssl_bench.methods.moco_v3 import MoCoV3
from ssl_bench.methods.simclr_v2 import SimCLRv2
from ssl_bench.methods.simsiam import SimSiam
from ssl_bench.nn.ema import MomentumTargets, cosine_tau, ema_update, make_target


def test_one_update_is_tau_target_plus_one_minus_tau_online():
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    target = make_target(online)
    for p in online.parameters():  # move the online net away from its copy
        p.data.add_(torch.randn_like(p))
    online(torch.randn(5, 4))  # changes the online BN running statistics
    tau = 0.9
    before = [t.clone() for t in target.parameters()]
    ema_update(target, online, tau)
    for t, t0, o in zip(target.parameters(), before, online.parameters()):
        assert torch.allclose(t, tau * t0 + (1 - tau) * o, atol=1e-7, rtol=0)
        assert not t.requires_grad
    for tb, ob in zip(target.buffers(), online.buffers()):
        assert torch.equal(tb, ob)


def test_cosine_tau_endpoints_and_monotone():
    assert cosine_tau(0, 100, 0.99) == pytest.approx(0.99)
    assert cosine_tau(50, 100, 0.99) == pytest.approx(0.995)
    assert cosine_tau(100, 100, 0.99) == pytest.approx(1.0)
    assert cosine_tau(500, 100, 0.99) == pytest.approx(1.0)  # clamped past the end
    values = [cosine_tau(k, 100, 0.99) for k in range(101)]
    assert all(a <= b for a, b in zip(values, values[1:]))


def test_byol_target_gets_no_gradient_and_moves_only_by_ema(monkeypatch):
    torch.manual_seed(0)
    m = BYOL(narrow(), proj_hidden_dim=32, proj_output_dim=16, pred_hidden_dim=32)
    seen = []
    real = byol_mod.byol_loss
    monkeypatch.setattr(
        byol_mod, "byol_loss", lambda p, z: (seen.append(z.requires_grad), real(p, z))[1]
    )
    views = [torch.randn(8, 3, 16, 16) for _ in range(2)]
    opt = torch.optim.SGD([p for g in m.parameter_groups(True) for p in g["params"]], lr=0.1)
    target = [*m.target_backbone.parameters(), *m.target_projector.parameters()]
    online = [*m.backbone.parameters(), *m.projector.parameters()]
    assert not any(p.requires_grad for p in target)
    assert not {id(p) for p in target} & {id(p) for g in opt.param_groups for p in g["params"]}
    before = [p.clone() for p in target]
    m.training_loss(views, None, None)["loss"].backward()
    assert seen == [False, False]  # the regression targets carry no graph
    assert all(p.grad is None for p in target)
    opt.step()
    # the optimizer never touches the target
    assert all(torch.equal(p, b) for p, b in zip(target, before))
    m.momentum_targets.total_steps = 10
    m.after_optimizer_step()
    tau = cosine_tau(0, 10, 0.99)
    for t, b, o in zip(target, before, online):
        assert torch.allclose(t, tau * b + (1 - tau) * o, atol=1e-6, rtol=0)


@pytest.mark.parametrize("stop", [True, False])
def test_simsiam_stop_gradient_branch_gets_no_gradient(monkeypatch, stop):
    torch.manual_seed(0)
    m = SimSiam(
        narrow(), proj_hidden_dim=32, proj_output_dim=32, pred_hidden_dim=8, stop_gradient=stop
    )
    seen = []
    real = simsiam_mod.negative_cosine
    monkeypatch.setattr(
        simsiam_mod,
        "negative_cosine",
        lambda p, z: (seen.append((p.requires_grad, z.requires_grad)), real(p, z))[1],
    )
    m.training_loss([torch.randn(8, 3, 16, 16) for _ in range(2)], None, None)["loss"].backward()
    assert seen == [(True, not stop)] * 2


# ---- MomentumTargets: the one mechanism of (online, target) pairs and their tau schedule -------
def _pairs(n: int = 2) -> list[tuple[nn.Module, nn.Module]]:
    torch.manual_seed(0)
    pairs = []
    for _ in range(n):
        online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        target = make_target(online)
        for p in online.parameters():
            p.data.add_(torch.randn_like(p))
        online(torch.randn(6, 3))  # moves the online BN statistics
        pairs.append((online, target))
    return pairs


def test_momentum_targets_schedule_is_constant_or_byols_cosine():
    constant = MomentumTargets(_pairs(1), base_tau=0.99)
    assert [constant.tau_at(k, 100) for k in (0, 50, 100)] == [0.99] * 3
    assert MomentumTargets(_pairs(1), 0.99, 0.99).tau_at(70, 100) == pytest.approx(0.99)
    ramp = MomentumTargets(_pairs(1), base_tau=0.9, final_tau=0.999)
    for k in (0, 1, 37, 100, 150):
        assert ramp.tau_at(k, 100) == cosine_tau(k, 100, 0.9, 0.999)
    # tau_k = final - (final - base) (cos(pi k / K) + 1) / 2 (BYOL sec. 3.2, with final_tau = 1)
    assert ramp.tau_at(25, 100) == pytest.approx(
        0.999 - (0.999 - 0.9) * (math.cos(math.pi * 25 / 100) + 1) / 2
    )
    assert ramp.tau_at(5, 0) == 0.9  # total unknown: tau stays at base_tau


def test_momentum_targets_update_every_pair_with_the_tau_of_the_step():
    pairs = _pairs(2)
    targets = MomentumTargets(pairs, base_tau=0.5, final_tau=1.0)
    before = [[p.clone() for p in t.parameters()] for _, t in pairs]
    tau = targets.update(step=3, total_steps=10)
    assert tau == cosine_tau(3, 10, 0.5, 1.0) and targets.tau == tau and targets.updates == 1
    for (online, target), saved in zip(pairs, before):
        for t, t0, o in zip(target.parameters(), saved, online.parameters()):
            assert torch.allclose(t, tau * t0 + (1 - tau) * o, atol=1e-6, rtol=0)
        for tb, ob in zip(target.buffers(), online.buffers()):
            assert torch.equal(tb, ob)


@pytest.mark.parametrize(
    "base, final, key",
    [
        (1.5, None, "method.base_tau"),
        (0.9, -0.1, "method.final_tau"),
        (0.99, 0.9, "method.base_tau"),
    ],
)
def test_momentum_targets_bad_tau_names_the_key(base, final, key):
    with pytest.raises(ConfigError, match=key):
        MomentumTargets(_pairs(1), base, final)


def test_momentum_targets_refuse_a_target_that_trains():
    online = nn.Linear(3, 4)
    with pytest.raises(ValueError, match="make_target"):
        MomentumTargets([(online, copy.deepcopy(online))], 0.99)


def _momentum_methods():
    return {
        "byol": lambda: BYOL(narrow(), proj_hidden_dim=32, proj_output_dim=16, pred_hidden_dim=32),
        "moco": lambda: MoCo(narrow(), queue_size=16, bn_splits=2, base_tau=0.9, final_tau=0.99),
        "simclr_v2": lambda: SimCLRv2(narrow(), queue_size=16, bn_splits=2, base_tau=0.9),
        "moco_v3": lambda: MoCoV3(
            narrow(), proj_hidden_dim=32, proj_output_dim=16, pred_hidden_dim=32, base_tau=0.9
        ),
    }


@pytest.mark.parametrize("name", ["byol", "moco", "simclr_v2", "moco_v3"])
def test_every_momentum_method_declares_each_target_once(name):
    """Every frozen `target_*` module of a momentum method is in its pairs, opposite the online
    module of the same name, and after_optimizer_step moves all of them (and nothing else)."""
    torch.manual_seed(0)
    m = _momentum_methods()[name]()
    targets = {n: mod for n, mod in m.named_children() if n.startswith("target_")}
    declared = {id(t): o for o, t in m.momentum_targets.pairs}
    assert targets and set(declared) == {id(t) for t in targets.values()}
    for n, t in targets.items():
        assert declared[id(t)] is getattr(m, n.removeprefix("target_"))
    for p in m.parameters():  # move the online networks away from their targets
        if p.requires_grad:
            p.data.add_(0.1)
    frozen = {n: [p.clone() for p in t.parameters()] for n, t in targets.items()}
    online = [p.clone() for p in m.parameters() if p.requires_grad]
    m.momentum_targets.total_steps = 10
    m.after_optimizer_step()
    tau = m.momentum_targets.tau_at(0, 10)
    for n, t in targets.items():
        src = getattr(m, n.removeprefix("target_"))
        for p, p0, o in zip(t.parameters(), frozen[n], src.parameters()):
            assert torch.allclose(p, tau * p0 + (1 - tau) * o, atol=1e-6, rtol=0)
    assert all(
        torch.equal(p, p0) for p, p0 in zip(online, [p for p in m.parameters() if p.requires_grad])
    )


@pytest.mark.parametrize("name", ["byol", "moco_v3"])
def test_target_projections_are_the_momentum_encoder_per_view_without_grad(name):
    """SSLMethod.target_projections: target_projector(target_backbone(view)) for each view, one
    call per view (bn_stats per_view: each view's own BN statistics), no graph."""
    torch.manual_seed(0)
    m = _momentum_methods()[name]()
    views = [torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)]
    outs = m.target_projections(views)
    assert len(outs) == 2 and all(not o.requires_grad for o in outs)
    for v, o in zip(views, outs):
        assert torch.allclose(o, m.target_projector(m.target_backbone(v)), atol=1e-6)


def test_methods_without_a_momentum_target_declare_none():
    assert SimCLRv2(narrow(), queue_size=0).momentum_targets is None
    assert SimSiam(narrow(), proj_hidden_dim=32, proj_output_dim=32).momentum_targets is None


def test_under_a_trainer_targets_move_on_optimizer_steps_only_and_tau_is_logged(tmp_path):
    """4 batches with accumulate_grad_batches=2: 2 optimizer steps, so 2 EMA updates, with the tau
    of steps 0 and 1 of 2 (the trainer's global_step and estimated_stepping_batches); `train/tau` is
    the tau the update after each batch's step applies."""
    import pytorch_lightning as pl

    torch.manual_seed(0)
    m = BYOL(narrow(), proj_hidden_dim=16, proj_output_dim=8, pred_hidden_dim=16, base_tau=0.5)
    updates = []
    real_update = m.momentum_targets.update
    m.momentum_targets.update = lambda step, total: (
        updates.append((step, total)) or real_update(step, total)
    )
    images = torch.randn(2, 16, 3, 16, 16)  # two views of 16 images: 4 batches of 4
    data = [([images[0, i], images[1, i]], 0, i) for i in range(16)]
    trainer = pl.Trainer(
        max_epochs=1,
        accumulate_grad_batches=2,
        limit_val_batches=0,
        logger=pl.loggers.CSVLogger(tmp_path),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(m, train_dataloaders=torch.utils.data.DataLoader(data, batch_size=4))
    assert updates == [(0, 2), (1, 2)]
    assert m.momentum_targets.tau == cosine_tau(1, 2, 0.5, 1.0)
    # the last batch belongs to step 1: its log is the tau of the update after step 1
    assert float(trainer.logged_metrics["train/tau"]) == pytest.approx(cosine_tau(1, 2, 0.5, 1.0))
