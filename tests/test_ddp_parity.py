"""Gradient parity under DDP (issue: sweeps and scale-out): for each loss that talks across ranks -
MoCo's InfoNCE with its queue (keys gathered into the queue), SwAV's Sinkhorn (all-reduced
marginals) and InstDisc's and CMC's memory banks (gathered row updates, an all-reduced Z), CMC's
in-batch cross-view loss (candidates gathered with gradients), Barlow Twins' cross-correlation
(global standardisation, all-reduced matrix), VICReg's variance and covariance (embeddings gathered
with gradients), MoCo v3's in-batch keys (gathered without gradient), NNCLR's support set (every
rank's embeddings written), its candidate predictions (gathered with gradients) and the neighbours
of its transposed term (gathered), DINO's centre (the teacher's batch mean all-reduced) - the
parameter gradients of 2 CPU processes with batch B each, averaged as DDP averages them, equal those
of 1 process with batch 2B on the same samples. Two steps each, so what the first step wrote into
the queue / bank / support set is part of the second step's loss.

BatchNorm layers are put in eval mode: per-rank batch statistics are what `trainer.sync_batchnorm`
is for, not what this test is about (MoCo's shuffled BN is tested in test_queue.py)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from ssl_bench.data.info import DataInfo

N, STEPS = 8, 2  # global batch, steps


class Tiny(nn.Sequential):
    """A BN-free conv net with the backbone interface (`num_features`)."""

    def __init__(self, in_chans: int = 3):
        super().__init__(
            nn.Conv2d(in_chans, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.num_features = 8


def _build(name):
    torch.manual_seed(0)
    if name == "moco_v2":
        from ssl_bench.methods.moco import MoCo

        return MoCo(
            Tiny(),
            temperature=0.2,
            queue_size=16,
            proj_layers=2,
            proj_hidden_dim=16,
            proj_output_dim=8,
            bn_splits=1,
        )
    if name == "swav":
        from ssl_bench.methods.swav import SwAV

        return SwAV(
            Tiny(),
            proj_hidden_dim=16,
            proj_output_dim=8,
            num_prototypes=6,
            freeze_prototypes_epochs=0,
        )
    if name == "dino":
        from ssl_bench.methods.dino import DINO

        # the centre written by step 1 (from both ranks' teacher outputs) centres step 2's teacher;
        # center_momentum 0: the centre is that batch mean alone, so a rank's own mean stands out
        return DINO(
            Tiny(),
            proj_hidden_dim=16,
            proj_output_dim=8,
            num_prototypes=12,
            freeze_last_layer=0,
            center_momentum=0.0,
            base_tau=0.9,
        )
    if name.startswith("cmc"):
        from ssl_bench.methods.cmc import CMC

        return CMC(
            Tiny(),
            backbone_factory=lambda in_chans: Tiny(in_chans),
            negatives=name.split("_")[1],
            temperature=0.1,
            proj_output_dim=8,
            num_negatives=5,
            bank_size=3 * N,
            data=DataInfo(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
        )
    if name == "barlow_twins":
        from ssl_bench.methods.barlow_twins import BarlowTwins

        # float64: the standardisation over the batch amplifies float32 round-off past the tolerance
        return BarlowTwins(Tiny(), proj_hidden_dim=16, proj_output_dim=8, lambd=0.1).double()
    if name == "vicreg":
        from ssl_bench.methods.vicreg import VICReg

        return VICReg(Tiny(), proj_hidden_dim=16, proj_output_dim=8).double()
    if name == "moco_v3":
        from ssl_bench.methods.moco_v3 import MoCoV3

        return MoCoV3(
            Tiny(), temperature=0.2, proj_hidden_dim=16, proj_output_dim=8, pred_hidden_dim=16
        )
    if name == "nnclr":
        from ssl_bench.methods.nnclr import NNCLR

        # a support set smaller than two global batches: step 2 reads step 1's embeddings
        return NNCLR(
            Tiny(),
            temperature=0.2,
            queue_size=12,
            proj_hidden_dim=16,
            proj_output_dim=8,
            pred_hidden_dim=16,
        )
    from ssl_bench.methods.instdisc import InstDisc

    return InstDisc(Tiny(), temperature=0.1, proj_output_dim=8, num_negatives=5, bank_size=3 * N)


def _batches(name):
    g = torch.Generator().manual_seed(1)
    out = []
    for step in range(STEPS):
        views = [torch.randn(N, 3, 12, 12, generator=g) for _ in range(2)]
        if name in ("swav", "dino"):
            views += [
                torch.randn(N, 3, 8, 8, generator=g) for _ in range(2)
            ]  # 2 large + 2 small crops
        out.append(
            (views, torch.zeros(N, dtype=torch.long), torch.arange(step * N, (step + 1) * N))
        )
    return out


def _train(name, rank=0, world=1):
    """Per-step gradients (averaged over ranks like DDP) of `STEPS` steps on this rank's share of
    each batch."""
    model = _build(name)
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    grads = []
    n = N // world
    for views, labels, index in _batches(name):
        sl = slice(rank * n, (rank + 1) * n)
        torch.manual_seed(100)  # the same global RNG on every rank (negatives of InstDisc)
        model.zero_grad()
        dtype = next(model.parameters()).dtype
        out = model.training_loss([v[sl].to(dtype) for v in views], labels[sl], index[sl])
        out["loss"].backward()
        g = {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}
        if world > 1:
            for v in g.values():
                dist.all_reduce(v)
                v /= world
        grads.append(g)
        with torch.no_grad():  # the same plain SGD step everywhere, then EMA targets
            for k, p in model.named_parameters():
                if k in g:
                    p.sub_(0.1 * g[k])
        model.after_optimizer_step()
    return grads


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NAMES = ["moco_v2", "swav", "instdisc", "cmc_bank", "cmc_batch", "barlow_twins", "vicreg"]
NAMES += ["moco_v3", "nnclr"]
NAMES += ["dino"]


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        out[rank] = {name: _train(name, rank, world) for name in NAMES}
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_grads():
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    return dict(out)


@pytest.mark.parametrize("name", NAMES)
def test_two_processes_match_one_process(name, two_process_grads):
    single = _train(name)
    for step, ref in enumerate(single):
        for rank in (0, 1):
            got = two_process_grads[rank][name][step]
            assert got.keys() == ref.keys(), (step, rank)
            for k in ref:
                gap = (got[k] - ref[k]).abs().max()
                assert torch.allclose(got[k], ref[k], atol=1e-6, rtol=1e-4), (
                    f"{name} step {step} rank {rank}: gradient of {k} differs by {gap:.3g}"
                )
        assert any(v.abs().sum() > 0 for v in ref.values())
