"""Memory banks (nn/memory_bank.py): MemoryBank's row updates and checkpoints, and NCEMemory, the
one home of InstDisc's and CMC's bank sizing, noise draw and NCE normaliser freeze."""

import functools

import pytest
import torch
import torch.nn.functional as F
from conftest import narrow_backbone as narrow

from ssl_bench.backbones import create_backbone
from ssl_bench.data.info import DataInfo
from ssl_bench.errors import ConfigError
from ssl_bench.methods.cmc import CMC
from ssl_bench.methods.instdisc import InstDisc
from ssl_bench.nn.memory_bank import MemoryBank, NCEMemory, bank_rows


def test_bank_updates_only_the_batch_rows():
    torch.manual_seed(0)
    bank = MemoryBank(num_samples=20, dim=8, momentum=0.5)
    assert torch.allclose(bank.bank.norm(dim=1), torch.ones(20))
    before = bank.bank.clone()
    index = torch.tensor([3, 7, 11])
    feats = torch.randn(3, 8)
    bank.update(index, feats)
    untouched = torch.ones(20, dtype=torch.bool)
    untouched[index] = False
    assert torch.equal(bank.bank[untouched], before[untouched])
    expected = F.normalize(0.5 * before[index] + 0.5 * F.normalize(feats, dim=1), dim=1)
    assert torch.allclose(bank.bank[index], expected, atol=1e-6)
    assert torch.equal(bank(index), bank.bank[index])


def test_copy_first_visit_stores_the_feature_then_mixes():
    torch.manual_seed(0)
    bank = MemoryBank(num_samples=6, dim=4, momentum=0.5, copy_first_visit=True)
    index, f1, f2 = torch.tensor([1, 4]), torch.randn(2, 4), torch.randn(2, 4)
    bank.update(index, f1)
    assert torch.allclose(bank.bank[index], F.normalize(f1, dim=1), atol=1e-6)
    assert bank.visited.nonzero().flatten().tolist() == [1, 4] and not bank.all_visited()
    bank.update(index, f2)  # second visit: the momentum mix
    expected = F.normalize(0.5 * F.normalize(f1, dim=1) + 0.5 * F.normalize(f2, dim=1), dim=1)
    assert torch.allclose(bank.bank[index], expected, atol=1e-6)


def test_bank_allocated_late_adopts_the_checkpoint_shape():
    bank = MemoryBank(num_samples=12, dim=4)
    empty = MemoryBank(num_samples=0, dim=4)
    empty.load_state_dict(bank.state_dict())
    assert torch.equal(empty.bank, bank.bank)


def test_bank_rows_come_from_the_data_unless_given():
    assert bank_rows(None, 50) == 50  # null: one row per pretraining image
    assert bank_rows(50, 50) == 50 and bank_rows(30, 0) == 30  # given (size unknown: trusted)
    assert bank_rows(None, 0) == 0  # neither known: NCEMemory.read says so
    with pytest.raises(ConfigError, match="method.bank_size"):
        bank_rows(30, 50)


def _memory(num_banks=2, rows=10, negatives=5):
    torch.manual_seed(0)
    return NCEMemory(num_banks, None, rows, dim=4, momentum=0.5, num_negatives=negatives)


def test_nce_memory_reads_the_batch_rows_and_one_noise_draw_for_all_banks():
    mem = _memory()
    assert [b.num_samples for b in mem.banks] == [10, 10] and all(
        b.copy_first_visit for b in mem.banks
    )
    mem.banks[1].bank.copy_(mem.banks[0].bank * 2)  # bank 1 = 2 x bank 0, row by row
    index = torch.tensor([2, 5, 9])
    mem.banks[0].update(index[:1], torch.randn(1, 4))
    torch.manual_seed(3)
    positives, noise, written = mem.read(index)
    torch.manual_seed(3)
    draw = torch.randint(0, 10, (5,))  # P_n uniform over the n rows
    for v, bank in enumerate(mem.banks):
        assert torch.equal(positives[v], bank.bank[index]) and torch.equal(
            noise[v], bank.bank[draw]
        )
    assert written[0].tolist() == [True, False, False] and written[1].tolist() == [False] * 3


def test_nce_memory_without_a_size_names_the_key():
    with pytest.raises(ConfigError, match="method.bank_size"):
        _memory(rows=0).read(torch.arange(2))


def test_nce_memory_freezes_z_once_every_row_is_written_and_z_estimated():
    mem, z = _memory(rows=4), torch.full((2, 2), -1.0)
    assert not mem.z_frozen(z)
    mem.write(torch.arange(4), [torch.randn(4, 4), torch.randn(4, 4)])
    assert all(b.all_visited() for b in mem.banks)
    assert not mem.z_frozen(z)  # every row written, but Z not estimated yet
    z.fill_(3.0)
    assert mem.z_frozen(z)
    z.fill_(-1.0)
    assert mem.z_frozen(z)  # frozen for good: no more checks (and no host syncs)
    restored = _memory(rows=4)  # after a restore: re-derived from the saved banks and Z
    for new, old in zip(restored.banks, mem.banks):
        new.load_state_dict(old.state_dict())
    assert restored.z_frozen(torch.full((2, 2), 3.0))


def test_nce_memory_write_moves_only_the_batch_rows_of_each_bank():
    mem = _memory()
    before = [b.bank.clone() for b in mem.banks]
    index, feats = torch.tensor([0, 7]), [torch.randn(2, 4), torch.randn(2, 4)]
    mem.write(index, feats)
    for bank, old, f in zip(mem.banks, before, feats):
        assert torch.allclose(bank.bank[index], F.normalize(f, dim=1), atol=1e-6)  # first visits
        rest = torch.ones(10, dtype=torch.bool)
        rest[index] = False
        assert torch.equal(bank.bank[rest], old[rest])


factory = functools.partial(create_backbone, "resnet18", small_input=True, channels=(8, 16, 32, 64))


def test_instdisc_and_cmc_keep_their_banks_in_an_nce_memory_sized_from_the_data():
    data = DataInfo(num_classes=10, num_samples=14)
    inst = InstDisc(narrow(), bank_size=None, num_negatives=4, data=data)
    cmc = CMC(None, backbone_factory=factory, views=[["L"], ["a", "b"]], num_negatives=4, data=data)
    assert inst.memory.banks == [inst.bank] and inst.bank.num_samples == 14
    assert cmc.memory.banks == list(cmc.banks) and [b.num_samples for b in cmc.banks] == [14, 14]
    assert CMC(None, backbone_factory=factory, negatives="batch", data=data).memory is None
    for build in (
        lambda: InstDisc(narrow(), bank_size=20, data=data),
        lambda: CMC(None, backbone_factory=factory, bank_size=20, data=data),
    ):
        with pytest.raises(ConfigError, match="method.bank_size"):
            build()
