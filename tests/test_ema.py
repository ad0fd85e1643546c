"""EMA targets and stop-gradients: the exact update, the tau schedule, and no gradient into a target."""

import pytest
import torch
from conftest import narrow_backbone as narrow
from torch import nn

import ssl_bench.methods.byol as byol_mod
import ssl_bench.methods.simsiam as simsiam_mod
from ssl_bench.methods.byol import BYOL
from ssl_bench.methods.simsiam import SimSiam
from ssl_bench.nn.ema import cosine_tau, ema_update, make_target


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
    assert all(
        torch.equal(p, b) for p, b in zip(target, before)
    )  # the optimizer never touches the target
    m.total_steps = 10
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
