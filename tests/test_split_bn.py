"""Split BatchNorm in one call (nn/multicrop.py `grouped_batchnorm`): the whole batch through the
network once, each virtual device's rows normalised by their own BN statistics, equals the chunked
reference (one call per sub-batch, the MoCo CIFAR demo's emulation of 8 GPUs) in outputs and
gradients; the running statistics take one update from the mean of the groups' statistics."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import narrow_backbone
from torch import nn

from ssl_bench.nn.heads import MLP
from ssl_bench.nn.multicrop import forward_views, grouped_batchnorm, split_forward, split_sizes


def encoder() -> nn.Module:
    """Narrow ResNet-18 + MoCo's `proj_norm` head (BN after the hidden layer and on the output,
    the last without scale or shift): BatchNorm2d and BatchNorm1d, affine and not."""
    torch.manual_seed(0)
    return nn.Sequential(
        narrow_backbone(),
        MLP(128, 64, 16, num_layers=2, bn="all", last_scale=False, last_shift=False),
    )


def chunked(net: nn.Module, x: torch.Tensor, k: int) -> torch.Tensor:
    """The reference: one call per consecutive sub-batch (the code before the one-call path, its
    sub-batches those of torch.tensor_split)."""
    return torch.cat([net(c) for c in x.tensor_split(k)])


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to fp32 rounding relative to the tensor's scale: the convs round differently at
    another batch size, and BN over 3-row groups amplifies it (measured: 1.2e-5 of the largest
    gradient at 14 rows in 4 groups; one BN over the whole batch instead differs by > 1e-2)."""
    return bool((a - b).abs().max() <= 5e-5 * b.abs().max() + 1e-7)


def outputs_and_grads(run, net: nn.Module, x: torch.Tensor):
    """run(net, x), and the gradients of a fixed random projection of it w.r.t. the parameters
    and the input."""
    x = x.clone().requires_grad_(True)
    out = run(net, x)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad((out * w).sum(), [x, *net.parameters()])
    return out.detach(), grads


@pytest.mark.parametrize("batch, k", [(16, 4), (14, 4), (32, 8)])  # 14: 4, 4, 3, 3
def test_one_call_equals_the_chunked_calls_in_outputs_and_gradients(batch, k):
    net = encoder().train()
    ref_net = copy.deepcopy(net)
    x = torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    out, grads = outputs_and_grads(lambda n, v: split_forward(n, v, k), net, x)
    ref_out, ref_grads = outputs_and_grads(lambda n, v: chunked(n, v, k), ref_net, x)
    assert close(out, ref_out), (out - ref_out).abs().max()
    for g, r in zip(grads, ref_grads):
        assert close(g, r), ((g - r).abs().max(), r.abs().max())
    # and not the same as one BN over the whole batch (the test can tell the two apart)
    whole = net(x)
    assert (whole - ref_out).abs().max() > 1e-2
    # the layers' own forward is back, the state-dict keys unchanged
    assert not any("forward" in vars(m) for m in net.modules())
    assert net.state_dict().keys() == ref_net.state_dict().keys()


def test_joint_views_one_call_equals_a_call_per_virtual_device():
    """bn_stats=joint: device s holds the s-th sub-batch of every view of one shape."""
    net = encoder().train()
    ref_net = copy.deepcopy(net)
    g = torch.Generator().manual_seed(3)
    views = [torch.randn(8, 3, 16, 16, generator=g) for _ in range(2)]
    (a1, b1), (a2, b2) = views[0].chunk(2), views[1].chunk(2)
    out = forward_views(net, views, joint=True, splits=2)
    dev_a, dev_b = ref_net(torch.cat([a1, a2])), ref_net(torch.cat([b1, b2]))
    ref = [torch.cat([dev_a[:4], dev_b[:4]]), torch.cat([dev_a[4:], dev_b[4:]])]
    for o, r in zip(out, ref):
        assert close(o, r), (o - r).abs().max()


def test_running_statistics_take_one_update_from_the_mean_of_the_groups():
    """The official demo's rule: running <- (1 - m) running + m mean_g(stat_g), the variance
    unbiased per group; eval mode is the plain layer on the running statistics."""
    for bn, shape in ((nn.BatchNorm2d(5), (12, 5, 3, 3)), (nn.BatchNorm1d(5), (12, 5))):
        x = torch.randn(shape, generator=torch.Generator().manual_seed(4)) * 3 + 1
        dims = [0, *range(2, x.dim())]
        groups = x.split(split_sizes(12, 3))
        mean = torch.stack([p.mean(dims) for p in groups]).mean(0)
        var = torch.stack([p.var(dims, unbiased=True) for p in groups]).mean(0)
        with grouped_batchnorm([bn], split_sizes(12, 3)):
            bn(x)
            assert torch.allclose(bn.running_mean, 0.1 * mean, atol=1e-6)
            assert torch.allclose(bn.running_var, 0.9 + 0.1 * var, atol=1e-6)
            assert int(bn.num_batches_tracked) == 1
            bn.eval()
            expected = (x - bn.running_mean.view(-1, *[1] * (x.dim() - 2))) / torch.sqrt(
                bn.running_var.view(-1, *[1] * (x.dim() - 2)) + bn.eps
            )
            assert torch.allclose(bn(x), expected, atol=1e-5)
        bn.train()


def test_sub_batches_are_near_equal_never_below_two_and_a_wrong_batch_is_refused():
    for n in range(2, 40):
        for k in range(1, n // 2 + 1):  # num_splits keeps k <= n // 2
            sizes = split_sizes(n, k)
            assert sizes == [c.shape[0] for c in torch.empty(n).tensor_split(k)]
            assert len(sizes) == k and min(sizes) >= 2 and max(sizes) - min(sizes) <= 1
    # 10 rows in 4 sub-batches with BN in the head: torch.chunk's last sub-batch had 1 row
    net = encoder().train()
    assert split_forward(net, torch.randn(10, 3, 16, 16), 4).shape == (10, 16)
    assert split_forward(lambda v: net(v), torch.randn(10, 3, 16, 16), 4).shape == (10, 16)
    bn = nn.BatchNorm1d(3)
    with grouped_batchnorm([bn], [4, 4]), pytest.raises(RuntimeError, match="batch of 8 rows"):
        bn(torch.randn(6, 3))
    assert "forward" not in vars(bn)
