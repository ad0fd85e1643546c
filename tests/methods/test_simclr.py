"""SimCLR: the method lowers its loss on a fixed batch and runs through the CLI (learning: test_learning.py)."""
import pytest
import torch

from ssl_bench.backbones import create_backbone
from ssl_bench.errors import ConfigError
from ssl_bench.methods.simclr import SimCLR


def test_thirty_steps_on_a_fixed_batch_lower_the_loss():
    torch.manual_seed(0)
    model = SimCLR(create_backbone("resnet18", small_input=True, channels=(16, 32, 64, 128)),
                   temperature=0.2, proj_hidden_dim=128, proj_output_dim=32)
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
    assert out["feats"].shape == (32, 128) and 0 < out["z_std"] < 1


def test_temperature_must_be_positive():
    with pytest.raises(ConfigError, match="method.temperature"):
        SimCLR(create_backbone("resnet18", small_input=True, channels=(16, 32, 64, 128)), temperature=0.0)
