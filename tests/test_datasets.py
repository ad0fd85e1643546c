"""Dataset registry, local-first lookup, subsets, folders, the synthetic shapes (offline, CPU)."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ssl_bench.data import datasets as D
from ssl_bench.data.datasets import load_splits, resolve_root
from ssl_bench.data.images import FolderImages, TensorImages
from ssl_bench.data.registry import DatasetInfo, dataset_names
from ssl_bench.data.subsets import stratified_subset
from ssl_bench.data.synthetic import SHAPES, make_synthetic
from ssl_bench.errors import ConfigError, DataError

FMNIST_SYSTEM = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No $SSL_BENCH_DATA from the caller's shell, no ./data from the caller's cwd."""
    monkeypatch.delenv("SSL_BENCH_DATA", raising=False)
    monkeypatch.chdir(tmp_path)


# --------------------------------------------------------------------------------- synthetic


def test_synthetic_shapes_dtype_balance():
    x, y = make_synthetic(103, num_classes=10, image_size=24, seed=0)
    assert x.shape == (103, 3, 24, 24) and x.dtype == torch.uint8
    assert y.shape == (103,) and y.dtype == torch.int64
    counts = torch.bincount(y, minlength=10)
    assert counts.max() - counts.min() <= 1
    assert x.float().std() > 20  # not blank


def test_synthetic_deterministic_and_seeded():
    x1, y1 = make_synthetic(50, seed=3)
    x2, y2 = make_synthetic(50, seed=3)
    x3, _ = make_synthetic(50, seed=4)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)


def test_synthetic_bad_num_classes():
    with pytest.raises(ConfigError, match="data.num_classes"):
        make_synthetic(10, num_classes=len(SHAPES) + 1)


def test_synthetic_colour_palette_puts_the_shape_in_both_l_and_ab():
    """palette=colour: shape and background differ in Lab lightness and in chroma (so an L view and
    an ab view each show the shape), the default grey palette is unchanged, and colour says nothing
    about the class."""
    from ssl_bench.data.synthetic import _colour_pair
    from ssl_bench.nn.color import rgb_to_lab

    bg, fg = _colour_pair(2000, torch.Generator().manual_seed(0))
    lab_bg, lab_fg = (
        rgb_to_lab(bg[:, :, None, None]).flatten(1),
        rgb_to_lab(fg[:, :, None, None]).flatten(1),
    )
    d_light = (lab_fg[:, 0] - lab_bg[:, 0]).abs()
    d_chroma = (lab_fg[:, 1:] - lab_bg[:, 1:]).norm(dim=1)
    assert d_light.min() > 20 and d_chroma.min() > 20, (
        d_light.min(),
        d_chroma.min(),
    )  # Lab units (L: 0-100)
    assert 0.3 < (lab_fg[:, 0] > lab_bg[:, 0]).float().mean() < 0.7  # light or dark shapes

    x, y = make_synthetic(400, seed=0, palette="colour")
    grey, _ = make_synthetic(400, seed=0)
    assert torch.equal(grey, make_synthetic(400, seed=0, palette="grey")[0])
    lab = rgb_to_lab(x.float() / 255)
    assert lab[:, 1:].abs().mean() > 1.5 * rgb_to_lab(grey.float() / 255)[:, 1:].abs().mean()
    # the per-class mean colour is the same up to sampling noise: ~40 images per class
    means = torch.stack([lab[y == k].mean(dim=(0, 2, 3)) for k in range(10)])
    assert (means[:, 1:] - means[:, 1:].mean(0)).abs().max() < 6, means


def test_synthetic_bad_palette():
    with pytest.raises(ConfigError, match="data.options.palette"):
        make_synthetic(10, palette="rainbow")


def test_synthetic_load_splits():
    info, splits = load_splits("synthetic", n_train=200, n_test=50, num_classes=5, image_size=16)
    assert info == DatasetInfo("synthetic", 5, 16, info.mean, info.std, True)
    assert all(0.3 < m < 0.7 for m in info.mean) and all(0.15 < s < 0.45 for s in info.std)
    pre, train, test = splits["pretrain"], splits["train"], splits["test"]
    assert isinstance(pre, TensorImages) and len(pre) == len(train) == 200 and len(test) == 50
    assert torch.equal(pre.images, train.images) and torch.equal(pre.labels, train.labels)
    assert not torch.equal(train.images[:50], test.images)  # test is drawn with its own seed
    img, label, i = train[7]
    assert (
        img.shape == (3, 16, 16)
        and img.dtype == torch.uint8
        and label == int(train.labels[7])
        and i == 7
    )


def test_synthetic_unknown_option():
    with pytest.raises(ConfigError, match="data.n_trian"):
        load_splits("synthetic", n_trian=10)


def _small_cnn(num_classes: int) -> nn.Module:
    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]

    return nn.Sequential(
        *block(3, 16),
        nn.MaxPool2d(2),
        *block(16, 32),
        nn.MaxPool2d(2),
        *block(32, 64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )


@pytest.mark.slow
def test_synthetic_classes_need_shape_not_pixels():
    """Raw-pixel linear models stay far from solving it (random positions, sizes, tints, clutter); a
    small CNN does clearly better."""
    xtr, ytr = make_synthetic(2000, seed=0)
    xte, yte = make_synthetic(500, seed=1)
    pix = lambda x: F.avg_pool2d(x.float() / 255, 2).flatten(1)  # noqa: E731
    a, b = pix(xtr), pix(xte)
    centroids = torch.stack([a[ytr == k].mean(0) for k in range(10)])
    centroid_acc = (torch.cdist(b, centroids).argmin(1) == yte).float().mean().item()
    mu = a.mean(0)
    w = torch.linalg.solve(
        (a - mu).T @ (a - mu) + 10 * torch.eye(a.shape[1]), (a - mu).T @ F.one_hot(ytr, 10).float()
    )
    ridge_acc = (((b - mu) @ w).argmax(1) == yte).float().mean().item()
    assert centroid_acc < 0.45 and ridge_acc < 0.45, (
        centroid_acc,
        ridge_acc,
    )  # measured 0.28 / 0.33

    torch.manual_seed(0)
    net = _small_cnn(10)
    norm = lambda x: (x.float() / 255 - 0.5) / 0.29  # noqa: E731
    xa, xb = norm(xtr), norm(xte)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(2):
        perm = torch.randperm(len(xa))
        for i in range(0, len(xa), 64):
            idx = perm[i : i + 64]
            loss = F.cross_entropy(net(xa[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        cnn_acc = (net(xb).argmax(1) == yte).float().mean().item()
    assert cnn_acc > 0.3 and cnn_acc > ridge_acc + 0.1, (cnn_acc, ridge_acc)


# ----------------------------------------------------------------------------- Fashion-MNIST


def _write_idx(path: Path, arr: np.ndarray, truncate: int | None = None) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, dtype=">i4").tobytes()
    data = header + arr.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as f:
        f.write(data if truncate is None else data[:truncate])


def _fake_fmnist(folder: Path, n_train: int, n_test: int = 10) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n_train)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return folder


@pytest.mark.skipif(
    not FMNIST_SYSTEM.is_dir(),
    reason="Fashion-MNIST not installed at /usr/share/datasets/fashion-mnist "
    "(apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_from_system_location():
    info, splits = load_splits("fashion_mnist", download=False)
    assert info.num_classes == 10 and info.image_size == 28 and info.in_memory
    train, test = splits["train"], splits["test"]
    assert train.images.shape == (60000, 3, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (10000, 3, 28, 28)
    assert train.labels.min() == 0 and train.labels.max() == 9
    assert torch.equal(train.images[:5, 0], train.images[:5, 2])  # grayscale replicated
    assert splits["pretrain"].images.data_ptr() == train.images.data_ptr()  # shared, not copied


def test_fashion_mnist_env_and_root_precedence(tmp_path, monkeypatch):
    env_dir = _fake_fmnist(tmp_path / "env" / "fashion_mnist", n_train=20)
    monkeypatch.setenv("SSL_BENCH_DATA", str(tmp_path / "env"))
    assert resolve_root("fashion_mnist", None)[:2] == [tmp_path / "env", env_dir]
    info, splits = load_splits("fashion_mnist", download=False)
    assert len(splits["train"]) == 20 and len(splits["test"]) == 10
    assert splits["train"].images.shape == (20, 3, 28, 28)

    root = _fake_fmnist(tmp_path / "mine", n_train=30)
    assert resolve_root("fashion_mnist", str(root))[0] == root
    _, splits = load_splits("fashion_mnist", root=str(root), download=False)
    assert len(splits["train"]) == 30


@pytest.mark.parametrize("truncate", [40, 200])  # inside the header / inside the data
def test_fashion_mnist_corrupt_file(tmp_path, truncate):
    folder = _fake_fmnist(tmp_path / "fm", n_train=20)
    bad = folder / "train-images-idx3-ubyte.gz"
    _write_idx(bad, np.zeros((20, 28, 28)), truncate=truncate)
    with pytest.raises(DataError, match=str(bad)):
        load_splits("fashion_mnist", root=str(folder), download=False)
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 10)[:-6])  # truncated gzip stream
    with pytest.raises(DataError, match=str(bad)):
        load_splits("fashion_mnist", root=str(folder), download=False)


# ---------------------------------------------------------------------------- CIFAR / STL-10


def test_cifar10_missing_and_download_fails(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError("network unreachable (test)")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(DataError) as e:
        load_splits("cifar10", root=str(root))
    msg = str(e.value)
    assert (
        str(root) in msg and "data.root" in msg and "network unreachable" in msg and "\n" not in msg
    )
    with pytest.raises(DataError, match="data.download=false"):
        load_splits("cifar10", root=str(root), download=False)


def _fake_cifar10(root: Path, n: int = 6) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": np.full((n, 3072), 7, dtype=np.uint8), b"labels": list(range(n))}
        (folder / name).write_bytes(pickle.dumps(batch))
    return folder


def test_cifar10_local_and_bad_pickle(tmp_path):
    folder = _fake_cifar10(tmp_path / "c10")
    info, splits = load_splits("cifar10", root=str(tmp_path / "c10"), download=False)
    assert info.image_size == 32 and info.mean == (0.4914, 0.4822, 0.4465)
    assert splits["train"].images.shape == (30, 3, 32, 32) and len(splits["test"]) == 6
    (folder / "data_batch_3").write_bytes(b"garbage, not a pickle")
    with pytest.raises(DataError, match=str(folder / "data_batch_3")):
        load_splits("cifar10", root=str(tmp_path / "c10"), download=False)


def test_stl10_pretrain_has_unlabelled(tmp_path):
    folder = tmp_path / "stl" / "stl10_binary"
    folder.mkdir(parents=True)
    side = 3 * 96 * 96
    for split, n in (("train", 4), ("test", 2), ("unlabeled", 3)):
        (folder / f"{split}_X.bin").write_bytes(np.arange(n * side, dtype=np.uint8).tobytes())
        if split != "unlabeled":
            (folder / f"{split}_y.bin").write_bytes(np.arange(1, n + 1, dtype=np.uint8).tobytes())
    info, splits = load_splits("stl10", root=str(tmp_path / "stl"), download=False)
    assert info.image_size == 96
    assert splits["pretrain"].images.shape == (7, 3, 96, 96)
    assert splits["pretrain"].labels.tolist() == [0, 1, 2, 3, -1, -1, -1]
    assert splits["train"].labels.tolist() == [0, 1, 2, 3] and len(splits["test"]) == 2
    _, splits = load_splits("stl10", root=str(tmp_path / "stl"), download=False, unlabeled=False)
    assert len(splits["pretrain"]) == 4


# ----------------------------------------------------------------------------------- subsets


def test_stratified_subset_proportions_and_determinism():
    labels = torch.cat(
        [torch.full((n,), k) for k, n in enumerate([500, 300, 200])] + [torch.full((1000,), -1)]
    )
    idx = stratified_subset(labels, 0.1, None, seed=0)
    assert torch.equal(idx, torch.sort(idx).values) and len(idx) == 200
    counts = {k: int((labels[idx] == k).sum()) for k in (-1, 0, 1, 2)}
    assert counts == {-1: 100, 0: 50, 1: 30, 2: 20}
    assert torch.equal(idx, stratified_subset(labels, 0.1, None, seed=0))
    assert not torch.equal(idx, stratified_subset(labels, 0.1, None, seed=1))
    assert len(stratified_subset(labels, None, 77, seed=0)) == 77
    assert len(stratified_subset(labels, 0.5, 10, seed=0)) == 10
    assert torch.equal(stratified_subset(labels, None, None, seed=0), torch.arange(2000))
    with pytest.raises(ConfigError, match="data.fraction"):
        stratified_subset(labels, 1.5, None, seed=0)
    with pytest.raises(ConfigError, match="data.limit"):
        stratified_subset(labels, None, 0, seed=0)


def test_load_splits_subsets():
    _, splits = load_splits("synthetic", n_train=400, n_test=200, limit=100, test_limit=50, seed=1)
    assert len(splits["pretrain"]) == len(splits["train"]) == 100 and len(splits["test"]) == 50
    assert torch.bincount(splits["train"].labels).tolist() == [10] * 10
    assert torch.bincount(splits["test"].labels).tolist() == [5] * 10
    with pytest.raises(ConfigError, match="data.test_limit"):
        load_splits("synthetic", n_train=40, n_test=20, test_limit=-1)


# ----------------------------------------------------------------------------- image folders


def _write_image(path: Path, size: int = 12, color=(200, 30, 30), fmt: str | None = None) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size + 2), color).save(path, format=fmt)


def _folder_dataset(root: Path) -> None:
    for split, n in (("train", 3), ("val", 2)):
        for c, color in (("cat", (255, 0, 0)), ("dog", (0, 255, 0))):
            for i in range(n):
                _write_image(root / split / c / f"{i}.png", color=color)


def test_image_folder_labels_from_class_folders(tmp_path):
    _folder_dataset(tmp_path / "ds")
    (tmp_path / "ds" / "train" / "cat" / "notes.txt").write_text("not an image")
    info, splits = load_splits("image_folder", root=str(tmp_path / "ds"), image_size=64)
    assert info == DatasetInfo("image_folder", 2, 64, D.IMAGENET_MEAN, D.IMAGENET_STD, False)
    train, test, pre = splits["train"], splits["test"], splits["pretrain"]
    assert isinstance(train, FolderImages) and train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert test.labels.tolist() == [0, 0, 1, 1] and len(pre) == 6 and pre is not train
    img, label, i = train[4]
    assert img.shape == (3, 14, 12) and img.dtype == torch.uint8 and label == 1 and i == 4
    assert img[1].float().mean() > 200  # dog is green
    train.transform = lambda t: t.float() / 255
    assert (
        train[0][0].dtype == torch.float32 and pre[0][0].dtype == torch.uint8
    )  # transforms are per split


def test_image_folder_unlabelled(tmp_path):
    _write_image(tmp_path / "imgs" / "a.jpg", fmt="JPEG")
    _write_image(tmp_path / "imgs" / "deep" / "er" / "b.PNG", fmt="PNG")
    _write_image(tmp_path / "imgs" / "c.bmp", fmt="BMP")  # decoded by PIL
    info, splits = load_splits("image_folder_unlabelled", root=str(tmp_path / "imgs"))
    assert info.num_classes == 0 and info.image_size == 224
    assert splits["train"] is None and splits["test"] is None
    pre = splits["pretrain"]
    assert len(pre) == 3 and pre.labels.tolist() == [-1, -1, -1]
    assert all(pre[i][0].shape == (3, 14, 12) for i in range(3))


def test_folder_bad_files_skipped_or_raised(tmp_path):
    good = [tmp_path / f"good{i}.jpg" for i in range(2)]
    for p in good:
        _write_image(p, size=32, fmt="JPEG")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good[0].read_bytes()[:150])
    samples = [(str(good[0]), 0), (str(empty), 1), (str(truncated), 2), (str(good[1]), 3)]

    ds = FolderImages(samples)
    with pytest.warns(UserWarning) as record:
        img, label, i = ds[1]
    assert label == 3 and i == 1 and img.shape == (3, 34, 32)  # the next readable sample
    messages = [str(w.message) for w in record if issubclass(w.category, UserWarning)]
    assert len(messages) == 2 and "empty.jpg" in messages[0] and "truncated.jpg" in messages[1]
    assert ds.bad_files == [str(empty), str(truncated)]
    assert [ds[k][1] for k in range(4)] == [
        0,
        3,
        3,
        3,
    ]  # known-bad files are not re-read or re-warned
    assert len(ds.bad_files) == 2

    strict = FolderImages(samples, on_bad_file="error")
    with pytest.raises(DataError, match="truncated.jpg"):
        strict[2]
    with pytest.raises(DataError, match="empty.jpg"):
        strict[1]
    with pytest.raises(ConfigError, match="data.on_bad_file"):
        FolderImages(samples, on_bad_file="ignore")


def test_folder_empty_class_and_missing_data(tmp_path):
    _folder_dataset(tmp_path / "ds")
    (tmp_path / "ds" / "train" / "empty_class").mkdir()
    with pytest.raises(DataError, match=str(tmp_path / "ds" / "train" / "empty_class")):
        load_splits("image_folder", root=str(tmp_path / "ds"))
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="nothing"):
        load_splits("image_folder_unlabelled", root=str(tmp_path / "nothing"))
    with pytest.raises(DataError, match="data.root"):
        load_splits("image_folder", root=None)


# ------------------------------------------------------------------------------------ names


def test_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError) as e:
        load_splits("imagenet_1k")
    assert e.value.key == "data.name"
    assert all(n in str(e.value) for n in dataset_names())
    with pytest.raises(ConfigError, match="data.name"):
        resolve_root("cifar11", None)


def test_a_registered_dataset_loads_by_name_and_its_signature_lists_its_options(monkeypatch):
    """A new dataset is one decorated function: `load_splits` finds it by name, its keyword
    arguments are its options (any other is a ConfigError naming it), and the facts it leaves to
    the function come back in its `LoadedSplits`."""
    from ssl_bench.data import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # restored after the test

    @registry.register_dataset("tiny", in_memory=True, num_classes=2, storage="generated")
    def tiny(lookup, *, n: int = 8):
        assert lookup.candidates == []  # generated: nothing to look for
        x = torch.arange(n * 48, dtype=torch.int64).remainder(256).to(torch.uint8)
        y = torch.arange(n) % 2
        images = TensorImages(x.reshape(n, 3, 4, 4), y)
        mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
        return registry.LoadedSplits(images, images, image_size=4, mean=mean, std=std)

    assert dataset_names()[-1] == "tiny" and registry.dataset_spec("tiny").options == ("n",)
    info, splits = load_splits("tiny", n=6, limit=4, seed=3)
    assert info == DatasetInfo("tiny", 2, 4, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), in_memory=True)
    assert [len(splits[s]) for s in ("pretrain", "train", "test")] == [4, 4, 6]
    assert splits["pretrain"] is not splits["train"]  # its own object: the module sets its views
    assert sorted(splits["train"].labels.tolist()) == [0, 0, 1, 1]  # stratified
    with pytest.raises(ConfigError, match="its options: n") as e:
        load_splits("tiny", m=1)
    assert e.value.key == "data.m"
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_dataset("tiny", in_memory=True)(tiny)


def test_a_fact_neither_registered_nor_loaded_is_an_error(monkeypatch):
    from ssl_bench.data import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @registry.register_dataset("no_stats", in_memory=True, num_classes=1, storage="generated")
    def no_stats(lookup):
        images = TensorImages(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(2))
        return registry.LoadedSplits(images, images, image_size=4)

    with pytest.raises(ValueError, match="'no_stats': mean is neither registered nor given"):
        load_splits("no_stats")
