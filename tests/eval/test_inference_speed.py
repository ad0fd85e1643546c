"""Evaluation runs at inference speed (issue 17, item 3): the online kNN / probe pass (the
random-init baseline through Lightning's validate) and the offline representation run with grad
disabled, under the run's bf16 autocast, on channels_last inputs and weights, in the run's eval
batches; and `python -m ssl_bench.eval.speed`, which times the baseline against a training epoch's
forward passes, measures what it says on a tiny config."""

from __future__ import annotations

import pytest
import torch
from conftest import FAST, narrow_backbone

from ssl_bench.data.info import DataInfo
from ssl_bench.eval.representation import Representation
from ssl_bench.methods.simclr import SimCLR
from ssl_bench.nn.inference import has_batchnorm

#: a bf16 run whatever the CPU (precision=auto would pick fp32 where bf16 is not native)
TINY = [*FAST, "trainer.precision=bf16-mixed", "logger=csv"]


class Spy:
    """Records, at each call of the network an evaluation pass runs - the method's forward, or the
    copy with BatchNorm folded that SSLMethod.inference_forward builds for a validation pass - the
    state the representation is computed in."""

    def __init__(self, model):
        self.model, self.calls = model, []
        forward, build = model.forward, model.inference_forward
        model.forward = lambda x: self.record(x, model.backbone, forward)

        def spied_build():
            net = build()
            return lambda x: self.record(x, net, net)

        model.inference_forward = spied_build

    def record(self, x, net, fn):
        conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
        self.calls.append(
            {
                "grad": torch.is_grad_enabled(),
                "autocast": torch.is_autocast_enabled("cpu")
                and torch.get_autocast_dtype("cpu") == torch.bfloat16,
                "input_channels_last": x.is_contiguous(memory_format=torch.channels_last),
                "weights_channels_last": conv.weight.is_contiguous(
                    memory_format=torch.channels_last
                ),
                "eval_mode": not net.training,
                "bn_folded": not has_batchnorm(net),
                "batch": int(x.shape[0]),
            }
        )
        return fn(x)


def test_the_online_pass_runs_at_inference_settings(tmp_path):
    """The random-init baseline, as a run calls it (training.init_baseline: Lightning's validate):
    every forward without grad, under bf16 autocast, channels_last, eval mode, in batches of
    data.eval_batch_size (256 train + 128 test images: one batch each), on the network with its
    BatchNorm folded into its convolutions."""
    from ssl_bench.api import compose
    from ssl_bench.eval.speed import build
    from ssl_bench.training import init_baseline

    dm, model, trainer = build(compose(TINY), tmp_path)
    spy = Spy(model)
    assert init_baseline(trainer, model, dm)
    assert model.knn_init is not None
    want = {
        "grad": False,
        "autocast": True,
        "input_channels_last": True,
        "weights_channels_last": True,
        "eval_mode": True,
        "bn_folded": True,
    }
    assert [{k: c[k] for k in want} for c in spy.calls] == [want, want]
    assert [c["batch"] for c in spy.calls] == [256, 128]


def test_the_offline_representation_runs_at_inference_settings():
    model = SimCLR(narrow_backbone(), data=DataInfo(num_classes=4)).to(
        memory_format=torch.channels_last
    )
    rep = Representation(model, torch.device("cpu"), "bf16-mixed", channels_last=True)
    spy = Spy(model)
    feats = rep(torch.randn(3, 3, 16, 16))
    assert feats.dtype == torch.float32 and feats.shape == (3, model.feat_dim)
    assert spy.calls == [
        {
            "grad": False,
            "autocast": True,
            "input_channels_last": True,
            "weights_channels_last": True,
            "eval_mode": True,
            "bn_folded": False,
            "batch": 3,
        }
    ]


def test_speed_measures_the_baseline_and_a_training_epoch(tmp_path, capsys):
    """`python -m ssl_bench.eval.speed` on the tiny config: the baseline's time holds its kNN's, the
    training passes cover the epoch's whole batches of data.batch_size (256 // 64 = 4 of 64),
    forward + backward costs more than forward, and the ratio is baseline / forward."""
    import json

    from ssl_bench.eval.speed import main

    out = tmp_path / "speed.json"
    assert main(["--json", str(out), *TINY]) == 0
    res = json.loads(out.read_text())
    assert (res["bank"], res["queries"], res["train_images"], res["batch_size"]) == (
        256,
        128,
        256,
        64,
    )
    assert res["precision"] == "bf16-mixed" and res["eval_batch_size"] == 256
    assert 0 < res["knn_s"] < res["baseline_s"]
    assert 0 < res["train_forward_s"] < res["train_forward_backward_s"]
    assert res["ratio"] == pytest.approx(res["baseline_s"] / res["train_forward_s"])
    # the literal reading: every view of the epoch (SimCLR's two), so about twice the forwards
    assert res["views_per_image"] == 2 and res["train_views_forward_s"] > 0
    assert res["ratio_views"] == pytest.approx(res["baseline_s"] / res["train_views_forward_s"])
    out = capsys.readouterr().out
    assert "ratio baseline / training forward" in out and "forward passes of every view (2" in out


def test_view_batches_are_the_runs_views_of_whole_batches():
    """The views `ssl_bench.eval.speed` times: the run's own pipeline (two 32 px views for SimCLR
    on the tiny config) over every whole batch of the train split, channels_last; none without
    device views."""
    import tempfile
    from pathlib import Path

    from ssl_bench.api import compose
    from ssl_bench.eval.speed import build, view_batches, with_defaults

    with tempfile.TemporaryDirectory() as tmp:
        dm, _, _ = build(compose(with_defaults(TINY)), Path(tmp))
    views = view_batches(dm, torch.device("cpu"))
    assert len(views) == len(dm.splits["train"]) // dm.batch_size
    assert all(len(batch) == 2 for batch in views)
    v = views[0][0]
    assert v.shape == (dm.batch_size, 3, 32, 32) and v.is_contiguous(
        memory_format=torch.channels_last
    )
    assert not torch.equal(views[0][0], views[0][1])  # two random views, not one image twice
    dm.use_device_views = False
    assert view_batches(dm, torch.device("cpu")) is None
