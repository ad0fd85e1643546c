"""Readers of the files datasets come in: each returns uint8 image tensors and int64 labels.

A reader is given one folder; it returns None when the dataset is not there (so the lookup tries the
next place) and raises `DataError` naming the file when it is there but broken (truncated, corrupt,
incomplete), with the fix. Formats: Fashion-MNIST's idx files (gzipped or not, the torchvision
layout `FashionMNIST/raw` too), the CIFAR-10/100 python pickles, the STL-10 binaries, and image
folders (ImageNet layout: `<split>/<class>/<image files>`).
"""

from __future__ import annotations

import gzip
import os
import pickle
import zlib
from pathlib import Path

import numpy as np
import torch

from ssl_bench.errors import DataError

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".ppm",
    ".pgm",
    ".tif",
    ".tiff",
    ".webp",
    ".gif",
)


# ---- Fashion-MNIST (idx files) -------------------------------------------------------------------
def _read_idx(path: Path) -> np.ndarray:
    """An idx file (optionally .gz): big-endian header, magic 0x0000 <type 0x08 = uint8> <ndim>."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"{path} is corrupt or truncated ({type(e).__name__}: {e}); delete it and reinstall "
            "or re-download the data (e.g. apt-get install --reinstall dataset-fashion-mnist)."
        ) from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or not 1 <= raw[3] <= 4:
        raise DataError(
            f"{path} is not a uint8 idx file (bad header); delete it and reinstall or "
            "re-download the data."
        )
    ndim = raw[3]
    dims = (
        np.frombuffer(raw, dtype=">i4", count=ndim, offset=4).tolist()
        if len(raw) >= 4 + 4 * ndim
        else None
    )
    start = 4 + 4 * ndim
    if dims is None or len(raw) - start != int(np.prod(dims)):
        raise DataError(
            f"{path} is truncated: its header promises shape {dims} but the file has "
            f"{max(0, len(raw) - start)} data bytes; delete it and reinstall or re-download the "
            "data."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(dims)


_FMNIST_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


def _fashion_mnist_files(folder: Path) -> dict[str, Path] | None:
    for sub in (folder, folder / "FashionMNIST" / "raw"):
        found = {}
        for key, stem in _FMNIST_FILES.items():
            for cand in (sub / f"{stem}.gz", sub / stem):
                if cand.is_file():
                    found[key] = cand
                    break
        if len(found) == 4:
            return found
    return None


def read_fashion_mnist(folder: Path):
    """(train images, train labels, test images, test labels), or None if `folder` lacks a file."""
    files = _fashion_mnist_files(folder)
    if files is None:
        return None

    def images(p):
        x = _read_idx(p)
        if x.ndim != 3:
            raise DataError(
                f"{p} should hold [N, 28, 28] images, has shape {list(x.shape)}; re-download it."
            )
        return torch.from_numpy(x.copy()).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()

    def labels(p, n):
        y = _read_idx(p)
        if y.shape != (n,):
            raise DataError(
                f"{p} should hold {n} labels, has shape {list(y.shape)}; re-download it."
            )
        return torch.from_numpy(y.astype(np.int64))

    xtr, xte = images(files["train_x"]), images(files["test_x"])
    return xtr, labels(files["train_y"], len(xtr)), xte, labels(files["test_y"], len(xte))


# ---- CIFAR (python pickles) ----------------------------------------------------------------------
def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")
    except Exception as e:  # truncated / garbage pickles raise many types
        raise DataError(
            f"{path} is corrupt ({type(e).__name__}: {e}); delete its folder and download again "
            "(or copy a good copy to data.root)."
        ) from e


def read_cifar(root: Path, hundred: bool):
    """CIFAR-10 (or -100's fine labels): (train images, train labels, test images, test labels),
    or None if `root` has no cifar-10-batches-py (cifar-100-python) folder."""
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    if not folder.is_dir():
        return None
    train_files = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    test_files = ["test"] if hundred else ["test_batch"]
    key = b"fine_labels" if hundred else b"labels"

    def load(names):
        xs, ys = [], []
        for nm in names:
            p = folder / nm
            if not p.is_file():
                raise DataError(
                    f"{p} is missing (the folder {folder} is incomplete); delete the folder and "
                    "download again, or point data.root at a complete copy."
                )
            batch = _unpickle(p)
            try:
                x = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                y = np.asarray(batch[key], dtype=np.int64)
            except (KeyError, ValueError, TypeError) as e:
                raise DataError(
                    f"{p} does not hold CIFAR data ({type(e).__name__}: {e}); delete the folder "
                    "and download again."
                ) from e
            if len(x) != len(y):
                raise DataError(
                    f"{p} has {len(x)} images but {len(y)} labels; delete the folder and "
                    "download again."
                )
            xs.append(x)
            ys.append(y)
        return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))

    xtr, ytr = load(train_files)
    xte, yte = load(test_files)
    return xtr, ytr, xte, yte


# ---- STL-10 (binaries) ---------------------------------------------------------------------------
def _read_stl_images(p: Path) -> torch.Tensor:
    side = 96 * 96 * 3
    if not p.is_file():
        raise DataError(f"{p} is missing; delete its folder and download STL-10 again.")
    x = np.fromfile(p, dtype=np.uint8)
    if x.size == 0 or x.size % side:
        raise DataError(
            f"{p} is truncated ({x.size} bytes, not a multiple of {side}); delete it and "
            "download again."
        )
    # Stored column-major per image: [N, 3, W, H] -> [N, 3, H, W].
    return torch.from_numpy(x.reshape(-1, 3, 96, 96)).transpose(2, 3).contiguous()


def _read_stl_labels(p: Path, n: int) -> torch.Tensor:
    if not p.is_file():
        raise DataError(f"{p} is missing; delete its folder and download STL-10 again.")
    y = np.fromfile(p, dtype=np.uint8).astype(np.int64) - 1  # stored 1..10
    if y.shape != (n,) or y.min(initial=0) < 0 or y.max(initial=0) > 9:
        raise DataError(
            f"{p} should hold {n} labels in 1..10; delete it and download STL-10 again."
        )
    return torch.from_numpy(y)


def read_stl10(root: Path, unlabeled: bool = True):
    """(train images, train labels, test images, test labels, unlabeled images or None), or None if
    `root` has no stl10_binary folder."""
    folder = root / "stl10_binary"
    if not folder.is_dir():
        return None
    xtr = _read_stl_images(folder / "train_X.bin")
    ytr = _read_stl_labels(folder / "train_y.bin", len(xtr))
    xte = _read_stl_images(folder / "test_X.bin")
    yte = _read_stl_labels(folder / "test_y.bin", len(xte))
    xun = _read_stl_images(folder / "unlabeled_X.bin") if unlabeled else None
    return xtr, ytr, xte, yte, xun


# ---- image folders -------------------------------------------------------------------------------
def image_files(folder: Path) -> list[str]:
    """Every image file below `folder` (links followed, hidden entries skipped), in sorted order."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [
            os.path.join(dirpath, f)
            for f in sorted(filenames)
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
        ]
    return out


def class_folder_samples(
    split_dir: Path, classes: list[str] | None
) -> tuple[list[str], list[tuple[str, int]]]:
    """(class names, [(file, label)]) of `split_dir`/<class>/<image files>. `classes` (the train
    split's) fixes the labels of a val/test split; None takes the class folders found, sorted."""
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DataError(
            f"{split_dir} has no class folders; an image folder dataset needs "
            f"{split_dir}/<class>/<image files> (ImageNet layout)."
        )
    if classes is None:
        classes = found
    else:
        extra = [c for c in found if c not in classes]
        if extra:
            raise DataError(
                f"{split_dir} has class folders not in the train split: {', '.join(extra[:10])}; "
                "the train and val/test folders need the same class names."
            )
    index = {c: i for i, c in enumerate(classes)}
    samples = []
    for c in found:
        files = image_files(split_dir / c)
        if not files:
            raise DataError(
                f"class folder {split_dir / c} holds no image files "
                f"({', '.join(IMAGE_EXTENSIONS)}); "
                "add images or remove the folder."
            )
        samples += [(f, index[c]) for f in files]
    return classes, samples
