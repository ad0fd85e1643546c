"""OnlineEval (ssl_bench.eval.online): the online probe and kNN as a component a method owns, that a
run can change or drop; and the declared contracts between SSLMethod and the rest of ssl_bench."""

from __future__ import annotations

import types

import pytest
import torch
from conftest import FAST, narrow_backbone, run_cli

from ssl_bench.data.info import DataInfo
from ssl_bench.errors import ConfigError
from ssl_bench.eval.knn import knn_accuracy
from ssl_bench.eval.online import OnlineEval
from ssl_bench.methods.simclr import SimCLR
from ssl_bench.reliability import NonFiniteGuard, NonFiniteLossError


def _feed(online: OnlineEval, seed: int = 0):
    """Bank (dataloader 0) and query (dataloader 1) batches of 4-class features; returns them."""
    g = torch.Generator().manual_seed(seed)
    bank, bank_y = torch.randn(40, 8, generator=g), torch.arange(40) % 4
    query, query_y = torch.randn(24, 8, generator=g), torch.arange(24) % 4
    for i in range(0, 40, 16):
        online.update(bank[i : i + 16], bank_y[i : i + 16], dataloader_idx=0)
    for i in range(0, 24, 16):
        online.update(query[i : i + 16], query_y[i : i + 16], dataloader_idx=1)
    return bank, bank_y, query, query_y


def test_compute_names_the_metrics_and_scores_the_knn_as_knn_accuracy():
    online = OnlineEval(8, 4, knn_k=5, knn_t=0.2)
    bank, bank_y, query, query_y = _feed(online)
    out = online.compute()
    assert list(out) == ["val/knn_top1", "val/knn_top5", "val/probe_top1"]
    assert (out["val/knn_top1"], out["val/knn_top5"]) == knn_accuracy(
        query, query_y, bank, bank_y, 4, 5, 0.2
    )
    with torch.no_grad():
        hits = (online.probe(query).argmax(1) == query_y).float().mean()
    assert float(out["val/probe_top1"]) == pytest.approx(100.0 * float(hits))
    assert online.compute() == {}  # reset: a new epoch starts empty


def test_init_baseline_suffix_and_knn_init():
    online = OnlineEval(8, 4, knn_k=5)
    _feed(online)
    with online.as_init_baseline():
        out = online.compute()
    assert set(out) == {"val/knn_top1_init", "val/knn_top5_init", "val/probe_top1_init"}
    assert online.knn_init == out["val/knn_top1_init"] and online.metric_suffix == ""
    _feed(online)
    assert "val/knn_top1" in online.compute()  # after the block: plain names again


def test_probe_or_knn_dropped():
    no_knn = OnlineEval(8, 4, knn=False)
    _feed(no_knn)
    assert no_knn.knn is None and list(no_knn.compute()) == ["val/probe_top1"]
    no_probe = OnlineEval(8, 4, probe=False, knn_k=5)
    _feed(no_probe)
    assert no_probe.probe is None and no_probe.param_group() is None
    assert list(no_probe.compute()) == ["val/knn_top1", "val/knn_top5"]
    assert no_probe.probe_loss(torch.randn(6, 8), torch.zeros(3, dtype=torch.long)) is None


def test_from_options_null_both_off_and_unknown_key():
    assert OnlineEval.from_options(8, 4, None) is None
    assert OnlineEval.from_options(8, 4, {"probe": False, "knn": False}) is None
    assert OnlineEval.from_options(8, 4, {}).probe.in_features == 8
    with pytest.raises(ConfigError, match=r"online_eval\.knnk.*online_eval=null"):
        OnlineEval.from_options(8, 4, {"knnk": 5})
    with pytest.raises(ConfigError, match=r"online_eval\.probe_lr"):
        OnlineEval.from_options(8, 4, {"probe_lr": 0.0})


@pytest.mark.parametrize(
    "optimizer, lr", [("sgd", 0.1), ("lars", 0.1), ("adam", 1e-3), ("adamw", 1e-3)]
)
def test_probe_lr_default_follows_the_optimizer(optimizer, lr, monkeypatch):
    """online_eval.probe_lr null: the probe group the method's optimizer gets has the default of
    that optimizer (Adam(W) at SGD's 0.1 left the probe near chance); a value given wins."""
    m = SimCLR(
        narrow_backbone(), data=DataInfo(num_classes=3), optimizer={"name": optimizer, "lr": 0.05}
    )
    monkeypatch.setattr(m, "_build_scheduler", lambda opt: None)
    groups = m.configure_optimizers()["optimizer"].param_groups
    assert [g["lr"] for g in groups if g.get("is_probe")] == [lr]
    assert all(g["lr"] == 0.05 for g in groups if not g.get("is_probe"))
    assert OnlineEval(8, 4, probe_lr=0.02).param_group(optimizer)["lr"] == 0.02
    with pytest.raises(ConfigError, match=r"online_eval\.probe_lr.*'rmsprop'"):
        OnlineEval(8, 4).param_group("rmsprop")


def test_probe_norm_standardises_each_feature_before_the_probe():
    """probe_norm: BatchNorm without affine parameters before the probe (MAE's linear probing). In
    train mode the probe's logits are blind to a per-feature scale and shift (batch statistics);
    in eval mode the running statistics stand in; it adds buffers, no parameters."""
    torch.manual_seed(0)
    normed, plain = OnlineEval(8, 4, probe_norm=True), OnlineEval(8, 4)
    plain.probe.load_state_dict(normed.probe.state_dict())
    x = torch.randn(64, 8)
    scale, shift = torch.rand(8) * 50 + 0.5, torch.randn(8) * 20
    with torch.no_grad():
        assert torch.allclose(
            normed.probe_logits(x * scale + shift), normed.probe_logits(x), atol=1e-3
        )
        assert not torch.allclose(
            plain.probe_logits(x * scale + shift), plain.probe_logits(x), atol=1
        )
        normed.eval()
        bn = normed.probe_norm
        expected = normed.probe((x - bn.running_mean) / (bn.running_var + bn.eps).sqrt())
        assert torch.allclose(normed.probe_logits(x), expected, atol=1e-5)
    assert bn.running_var.max() > 10  # the batches' statistics were tracked
    assert [id(p) for p in normed.param_group()["params"]] == [
        id(p) for p in normed.probe.parameters()
    ]
    assert {k for k in normed.state_dict() if k.startswith("probe_norm.")} == {
        "probe_norm.running_mean",
        "probe_norm.running_var",
        "probe_norm.num_batches_tracked",
    }
    assert (
        plain.probe_norm is None
        and OnlineEval(8, 4, probe=False, probe_norm=True).probe_norm is None
    )


def test_probe_norm_null_is_the_method_s_and_old_checkpoints_load():
    """online_eval.probe_norm null takes the method's default (MAE's paper probes BatchNorm-ed
    features; SimCLR's plain ones); a value given wins. A checkpoint written before the norm existed
    loads strictly and its probe scores as it did (fresh statistics: the identity)."""
    from ssl_bench.backbones import create_backbone
    from ssl_bench.methods.mae import MAE

    def vit():
        return create_backbone("vit_tiny_patch16_224", img_size=16, patch_size=4, depth=1)

    data, small = (
        DataInfo(num_classes=3),
        dict(decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4),
    )
    assert MAE(vit(), data=data, **small).online_eval.probe_norm is not None
    assert (
        MAE(vit(), data=data, online_eval={"probe_norm": False}, **small).online_eval.probe_norm
        is None
    )
    assert SimCLR(narrow_backbone(), data=data).online_eval.probe_norm is None
    assert SimCLR(
        narrow_backbone(), data=data, online_eval={"probe_norm": True}
    ).online_eval.probe_norm
    torch.manual_seed(0)
    before = MAE(vit(), data=data, online_eval={"probe_norm": False}, **small)
    after = MAE(vit(), data=data, **small)
    after.load_state_dict(before.state_dict(), strict=True)
    feats = torch.randn(5, 192)
    with torch.no_grad():
        assert torch.allclose(
            after.eval().online_eval.probe_logits(feats), before.online_eval.probe(feats), atol=1e-4
        )


def test_method_owns_it_and_a_run_can_drop_it():
    data = DataInfo(num_classes=3)
    m = SimCLR(narrow_backbone(), data=data)
    assert isinstance(m.online_eval, OnlineEval)
    assert {k for k in m.state_dict() if "probe" in k} == {
        "online_eval.probe.weight",
        "online_eval.probe.bias",
    }
    probe_params = {id(p) for p in m.online_eval.parameters()}
    assert not probe_params & {id(p) for g in m.parameter_groups() for p in g["params"]}
    dropped = SimCLR(narrow_backbone(), data=data, online_eval=None)
    assert dropped.online_eval is None and dropped.knn_init is None
    assert not [k for k in dropped.state_dict() if "probe" in k or "online_eval" in k]


def test_checkpoints_with_the_old_probe_keys_still_load():
    """Runs saved while the probe was SSLMethod.probe hold `probe.*`: they must resume, evaluate
    and load (strict) into the method whose probe is online_eval.probe."""
    torch.manual_seed(0)
    src = SimCLR(narrow_backbone(), data=DataInfo(num_classes=3))
    old = {k.replace("online_eval.probe.", "probe."): v for k, v in src.state_dict().items()}
    assert "probe.weight" in old and "online_eval.probe.weight" not in old
    dst = SimCLR(narrow_backbone(), data=DataInfo(num_classes=3))
    dst.load_state_dict(old, strict=True)
    assert torch.equal(dst.online_eval.probe.weight, src.online_eval.probe.weight)


def test_nonfinite_guard_reads_the_declared_step_outputs():
    """The guard names the terms and the step that SSLMethod.training_step returns (`loss_terms`,
    `loss_step`), not the trainer's step counter (already one further at batch end)."""
    guard = NonFiniteGuard()
    trainer = types.SimpleNamespace(global_step=6, current_epoch=1)
    nan = torch.tensor(float("nan"))
    outputs = {
        "loss": nan,
        "loss_terms": {"loss": nan, "z_std": torch.tensor(0.25)},
        "loss_step": 5,
    }
    with pytest.raises(
        NonFiniteLossError, match=r"global step 5 \(epoch 1\): loss=nan, z_std=0.25"
    ):
        guard.on_train_batch_end(trainer, None, outputs, None, 0)
    # any other LightningModule: its loss and Lightning's step
    with pytest.raises(NonFiniteLossError, match=r"global step 6 \(epoch 1\): loss=nan\. "):
        guard.on_train_batch_end(trainer, None, {"loss": nan}, None, 0)


@pytest.fixture(scope="module")
def knn_only_and_dropped(tmp_path_factory):
    root = tmp_path_factory.mktemp("online")
    common = [*FAST, "trainer.max_epochs=1", "data.options.n_train=128", "data.options.n_test=64"]
    knn_only = run_cli(*common, "online_eval.probe=false", run_dir=root / "knn", check=True)
    dropped = run_cli(*common, "online_eval=null", run_dir=root / "none", check=True)
    return knn_only, dropped


def test_cli_online_eval_probe_false(knn_only_and_dropped):
    res = knn_only_and_dropped[0].results
    assert res["status"] == "completed" and res["knn_top1_init"] is not None
    assert set(res["final"]) == {
        "val/knn_top1",
        "val/knn_top5",
        "val/knn_top1_init",
        "val/knn_top5_init",
    }
    assert "train/probe_loss" not in knn_only_and_dropped[0].metrics()[0]


def test_cli_online_eval_null(knn_only_and_dropped):
    run = knn_only_and_dropped[1]
    res = run.results
    assert res["status"] == "completed" and res["global_step"] == 2
    assert res["final"] == {} and res["knn_top1_init"] is None
    assert (run.run_dir / "checkpoints" / "last.ckpt").is_file()
    assert not any(k.startswith("val/") for k in run.metrics()[0])
