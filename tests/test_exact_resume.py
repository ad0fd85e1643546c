"""Exact resume (reliability point 3): a run pre-empted mid-epoch and resumed ends with
bit-identical weights, optimizer state, queue/bank and EMA target to a run that was never
interrupted - on CPU with trainer.deterministic=true, through the real CLI."""

from __future__ import annotations

import pytest
import torch
from conftest import FAST, REPO, run_cli

ENV = {"PYTHONPATH": str(REPO / "tests")}
COMMON = [
    *FAST,
    "data.options.n_train=128",  # 2 steps an epoch: 6 in all, enough for a cut mid-epoch 1
    "trainer.max_epochs=3",
    "trainer.deterministic=true",
    "trainer.log_every_n_steps=1",
    "scheduler=warmup_cosine",
    "scheduler.warmup_epochs=1",
]
# (method preset, test class, its extra overrides): MoCo v2 has a queue, an EMA key encoder and
# shuffled BN (randperm from the global RNG); BYOL a tau schedule over the steps; InstDisc a memory
# bank and NCE negatives drawn from the global RNG. All three train the online probe.
CASES = {
    "moco_v2": ("fault_methods.MoCoPreemptAt", ["method.queue_size=128"]),
    "byol": ("fault_methods.BYOLPreemptAt", []),
    "instdisc": ("fault_methods.InstDiscPreemptAt", ["method.num_negatives=64"]),
}


def _state(ckpt):
    c = torch.load(ckpt, map_location="cpu", weights_only=False)
    return (
        c["global_step"],
        c["state_dict"],
        c["optimizer_states"][0]["state"],
        c["lr_schedulers"][0],
    )


def _assert_same(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), (
            f"{where} differs (max abs diff {(a.float() - b.float()).abs().max():.3g})"
        )
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("method", list(CASES))
def test_preempted_and_resumed_run_is_bit_identical(tmp_path, method):
    target, extra = CASES[method]
    args = [*COMMON, f"method={method}", f"method._target_={target}", *extra]
    whole = run_cli(*args, run_dir=tmp_path / "whole", env=ENV, check=True)
    # pre-empted during step 2, the first batch of epoch 1 (2 steps per epoch): the resumed run
    # starts mid-epoch, in epoch 1, and goes on into epoch 2
    cut = run_cli(*args, "+method.preempt_at=2", run_dir=tmp_path / "cut", env=ENV, check=True)
    assert cut.results["status"] == "preempted" and cut.results["global_step"] == 3
    resumed = run_cli(
        *args, f"resume={tmp_path / 'cut'}", run_dir=tmp_path / "resumed", env=ENV, check=True
    )
    assert resumed.results["status"] == "completed"
    a = _state(tmp_path / "whole" / "checkpoints" / "last.ckpt")
    b = _state(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert a[0] == b[0] == 6
    _assert_same(a, b, "checkpoint")
    assert whole.results["final"] == resumed.results["final"]  # the same kNN / probe figures
    # the loss curve after the cut matches step by step
    la = {r["step"]: r["train/loss"] for r in whole.metrics() if r.get("train/loss")}
    lb = {r["step"]: r["train/loss"] for r in resumed.metrics() if r.get("train/loss")}
    assert lb and all(la[s] == v for s, v in lb.items()), (la, lb)


def test_epoch_sampler_is_seeded_sharded_and_skips_once():
    from ssl_bench.data.sampler import EpochSampler

    one = EpochSampler(10, shuffle=True, seed=3)
    e0, e1 = list(one), (one.set_epoch(1), list(one))[1]
    assert sorted(e0) == list(range(10)) and e0 != e1 and list(EpochSampler(10, True, seed=3)) == e0
    # two ranks: disjoint strides of the same permutation (padded from the start when not dropping)
    ranks = [EpochSampler(10, True, seed=3, rank=r, world_size=2) for r in (0, 1)]
    assert [list(r) for r in ranks] == [e0[0::2], e0[1::2]]
    odd = [EpochSampler(5, False, rank=r, world_size=2) for r in (0, 1)]
    assert [list(r) for r in odd] == [[0, 2, 4], [1, 3, 0]] and len(odd[1]) == 3
    assert len(EpochSampler(5, False, rank=1, world_size=2, drop_last=True)) == 2
    # a mid-epoch resume drops what was trained on, in that epoch only
    one.skip_next(1, 4)
    assert list(one) == e1[4:] and list(one) == e1
    one.skip_next(0, 4)
    one.set_epoch(2)
    assert len(list(one)) == 10
