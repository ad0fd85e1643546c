"""Evaluation passes run on a copy of the evaluated network with BatchNorm folded into its
convolutions (ssl_bench.nn.inference): the same function, never in a checkpoint, rebuilt for every
pass."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import narrow_backbone
from torch import nn

from ssl_bench.backbones import create_backbone
from ssl_bench.data.info import DataInfo
from ssl_bench.methods.simclr import SimCLR
from ssl_bench.nn.inference import folded_for_inference, has_batchnorm


def _trained_stats(net: nn.Module) -> nn.Module:
    """BN running statistics away from (0, 1), as after training."""
    torch.manual_seed(0)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(16, 3, 16, 16) * 2 + 0.5)
    return net.eval()


def test_folding_keeps_the_function_and_drops_every_batchnorm():
    net = _trained_stats(narrow_backbone())
    folded = folded_for_inference(net)
    assert has_batchnorm(net) and not has_batchnorm(folded)
    x = torch.randn(8, 3, 16, 16)
    with torch.no_grad():
        want = net(x)
        assert torch.allclose(folded(x), want, atol=1e-4, rtol=1e-4)
        # a copy: training the network afterwards does not reach it
        next(net.parameters()).add_(1.0)
        assert torch.allclose(folded(x), want, atol=1e-4, rtol=1e-4)


def test_what_is_not_folded():
    vit = create_backbone("vit_tiny_patch16_224", img_size=16, patch_size=4, depth=1).eval()
    assert folded_for_inference(vit) is vit  # no BatchNorm: the network itself
    with pytest.raises(ValueError, match="eval mode"):
        folded_for_inference(narrow_backbone().train())

    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                x = -x
            return self.bn(self.conv(x))

    odd = DataDependent().eval()
    with pytest.warns(UserWarning, match="DataDependent without BatchNorm folding"):
        assert folded_for_inference(odd) is odd
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per network type, not at every epoch
        assert folded_for_inference(odd) is odd


def test_the_validation_pass_runs_the_folded_network():
    m = SimCLR(narrow_backbone(), data=DataInfo(num_classes=3))
    _trained_stats(m.backbone)
    m.eval()
    keys = set(m.state_dict())
    m.on_validation_epoch_start()
    net = m.__dict__["_inference_net"]
    assert not has_batchnorm(net) and set(m.state_dict()) == keys  # not a submodule
    x, labels = torch.randn(6, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        assert torch.allclose(net(x), m(x), atol=1e-4, rtol=1e-4)
        m.validation_step((x, labels, torch.arange(6)), 0, dataloader_idx=0)
    m.on_validation_epoch_end()
    assert "_inference_net" not in m.__dict__


def test_a_method_with_its_own_forward_keeps_it():
    class OwnForward(SimCLR):
        def forward(self, x):
            return super().forward(x) * 2

    m = OwnForward(narrow_backbone(), data=DataInfo(num_classes=3)).eval()
    assert m.inference_forward() is m
