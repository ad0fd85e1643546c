"""FeatureQueue (MoCo): order, wrap-around, checkpoints; with MemoryBank and the key shuffle across
2 ranks (the bank alone: test_memory_bank.py)."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ssl_bench.nn.memory_bank import MemoryBank
from ssl_bench.nn.multicrop import shuffled_key_forward
from ssl_bench.nn.queue import FeatureQueue


def test_queue_starts_with_unit_rows_and_wraps_a_batch_that_does_not_divide_it():
    q = FeatureQueue(size=10, dim=4)
    assert torch.allclose(q.queue.norm(dim=1), torch.ones(10))
    keys = torch.arange(12 * 4, dtype=torch.float32).view(12, 4)  # key j is row j
    for start in range(0, 12, 3):  # 4 batches of 3 into 10 slots
        q.enqueue(keys[start : start + 3])
    assert int(q.ptr) == 12 % 10
    assert torch.equal(q.queue[:2], keys[10:12])  # the last batch wrapped to the front
    assert torch.equal(q.queue[2:], keys[2:10])  # keys 0, 1 (the oldest) are gone
    q.enqueue(keys[:1])
    assert int(q.ptr) == 3 and torch.equal(q.queue[2], keys[0])


def test_queue_batch_larger_than_queue_keeps_the_newest():
    q = FeatureQueue(size=4, dim=2)
    keys = torch.arange(14, dtype=torch.float32).view(7, 2)
    q.enqueue(keys)
    assert torch.equal(q.queue, keys[3:]) and int(q.ptr) == 0


def test_queue_forward_is_a_copy_and_state_is_checkpointed():
    q = FeatureQueue(size=6, dim=3)
    snapshot = q()
    q.enqueue(torch.ones(2, 3))
    assert not torch.equal(snapshot[:2], q.queue[:2])  # the copy did not change
    state = q.state_dict()
    assert set(state) == {"queue", "ptr"}
    fresh = FeatureQueue(size=6, dim=3)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.queue, q.queue) and int(fresh.ptr) == 2


# ---- two processes (gloo): memories stay identical across ranks; the key shuffle is undone ----
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, keys, index, feats, images, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(123 + rank)  # the bank and queue init differ unless we copy them
    n = keys.shape[0] // world
    queue = FeatureQueue(size=10, dim=keys.shape[1])
    queue.queue.zero_()
    queue.enqueue(keys[rank * n : (rank + 1) * n])
    bank = MemoryBank(num_samples=16, dim=feats.shape[1])
    bank.bank.copy_(torch.eye(16, feats.shape[1]) + 0.1)
    m = index.shape[0] // world
    bank.update(index[rank * m : (rank + 1) * m], feats[rank * m : (rank + 1) * m])
    seen = []

    def encoder(b):  # per-sample map + a record of what this rank encoded
        seen.append(b[:, 0, 0, 0].clone())
        return b.flatten(1)[:, :4] * 2

    k = images.shape[0] // world
    local = images[rank * k : (rank + 1) * k]
    keys_out = shuffled_key_forward(encoder, local, bn_splits=1)
    out[rank] = (
        queue.queue.clone(),
        int(queue.ptr),
        bank.bank.clone(),
        keys_out,
        torch.cat(seen),
        local[:, 0, 0, 0],
    )
    dist.destroy_process_group()


def test_queue_bank_and_shuffle_across_two_ranks():
    torch.manual_seed(5)
    keys, feats = torch.randn(6, 4), torch.randn(6, 4)
    index = torch.tensor([0, 5, 9, 2, 14, 7])
    images = torch.arange(16 * 3 * 2 * 2, dtype=torch.float32).view(16, 3, 2, 2)
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(2, _free_port(), keys, index, feats, images, out), nprocs=2, join=True)
    ref_q = FeatureQueue(size=10, dim=4)
    ref_q.queue.zero_()
    ref_q.enqueue(keys)  # one process, the whole global batch in rank order
    ref_b = MemoryBank(num_samples=16, dim=4)
    ref_b.bank.copy_(torch.eye(16, 4) + 0.1)
    ref_b.update(index, feats)
    for r in range(2):
        queue, ptr, bank, keys_out, seen, own = out[r]
        assert torch.equal(queue, ref_q.queue) and ptr == int(ref_q.ptr)
        assert torch.allclose(bank, ref_b.bank, atol=1e-6)
        # un-shuffled
        assert torch.equal(keys_out, images[r * 8 : (r + 1) * 8].flatten(1)[:, :4] * 2)
        assert set(seen.tolist()) != set(own.tolist())  # shuffled across ranks
    assert sorted(torch.cat([out[0][4], out[1][4]]).tolist()) == sorted(images[:, 0, 0, 0].tolist())
