"""Datasets: a registry of names -> (DatasetInfo, splits), found local-first.

    info, splits = load_splits("cifar10", root=None, fraction=0.1)
    splits["pretrain"]  # what SSL trains on (STL-10: train + unlabeled, unlabeled labels = -1)
    splits["train"]     # labelled train split, un-augmented: kNN bank and probe reference (None if unlabelled)
    splits["test"]      # labelled test split (None if unlabelled)

In-memory datasets (CIFAR, STL-10, Fashion-MNIST, synthetic) are `TensorImages`: one uint8
[N, 3, H, W] tensor (grayscale replicated to 3 channels at load time) plus int64 labels, so the
data module can move whole batches to the device and augment there. Image folders are
`FolderImages`: paths decoded on CPU workers, with bad files skipped (or raised) by name.

Lookup order for a named dataset (see `resolve_root`): the `root` argument, `$SSL_BENCH_DATA`
(and `$SSL_BENCH_DATA/<name>`), known system locations (Fashion-MNIST from the Debian package
`dataset-fashion-mnist`), `./data`; only then a torchvision download into the first of root,
`$SSL_BENCH_DATA`, `./data`. Missing data ends in one `DataError` that lists every place looked.
"""

from __future__ import annotations

import gzip
import os
import pickle
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ssl_bench.errors import ConfigError, DataError

NAMES: tuple[str, ...] = (
    "cifar10",
    "cifar100",
    "stl10",
    "fashion_mnist",
    "image_folder",
    "image_folder_unlabelled",
    "synthetic",
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
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
ENV_VAR = "SSL_BENCH_DATA"
SYSTEM_LOCATIONS: dict[str, tuple[str, ...]] = {
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),
}


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int  # 0 for unlabelled data (no probe / kNN then)
    image_size: int  # native side length (in-memory tensors' H == W); folders: the configured size
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    in_memory: bool  # True: TensorImages (uint8, equal size); False: FolderImages


# ---------------------------------------------------------------------------------------------
# Dataset classes
# ---------------------------------------------------------------------------------------------


class TensorImages(Dataset):
    """Images held in memory: uint8 [N, 3, H, W] and int64 labels [N] (-1 = no label)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"images must be uint8 [N, 3, H, W], got {images.dtype} {tuple(images.shape)}"
            )
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must be [N={images.shape[0]}], got {tuple(labels.shape)}")
        self.images = images.contiguous()
        self.labels = labels.to(torch.int64)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        return self.images[i], int(self.labels[i]), int(i)

    def subset(self, indices: torch.Tensor) -> TensorImages:
        return TensorImages(self.images[indices], self.labels[indices])


class FolderImages(Dataset):
    """Image files decoded on access: (transform(uint8 [3, H, W]) or the uint8 tensor, label, index).

    An unreadable or truncated file raises `DataError` naming it when `on_bad_file='error'`; with
    'skip' it is warned about once, marked bad and replaced by the next readable sample (wrapping),
    so a DataLoader never dies mid-epoch. The marks live in shared memory: every DataLoader worker
    sees what the others found, and `bad_files` (read in the main process) lists them all.
    """

    def __init__(
        self,
        samples: list[tuple[str, int]],
        transform: Callable | None = None,
        on_bad_file: str = "skip",
    ):
        if on_bad_file not in ("skip", "error"):
            raise ConfigError(
                "data.on_bad_file",
                f"must be 'skip' or 'error', got {on_bad_file!r}.",
                "set data.on_bad_file=skip (warn and skip) or data.on_bad_file=error.",
            )
        self.samples = list(samples)
        self.labels = torch.tensor([label for _, label in self.samples], dtype=torch.int64)
        self.transform = transform
        self.on_bad_file = on_bad_file
        self._bad = torch.zeros(len(self.samples), dtype=torch.bool).share_memory_()

    @property
    def bad_files(self) -> list[str]:
        return [self.samples[j][0] for j in self._bad.nonzero().flatten().tolist()]

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, indices: torch.Tensor) -> FolderImages:
        return FolderImages(
            [self.samples[i] for i in indices.tolist()], self.transform, self.on_bad_file
        )

    def __getitem__(self, i: int):
        n = len(self.samples)
        for step in range(n):
            j = (int(i) + step) % n
            if self._bad[j]:
                continue
            path, label = self.samples[j]
            try:
                img = decode_file(path)
            except DataError:
                if self.on_bad_file == "error":
                    raise
                self._bad[j] = True
                warnings.warn(
                    f"skipping unreadable image file {path} (data.on_bad_file=skip); "
                    "using the next sample instead",
                    stacklevel=2,
                )
                continue
            if self.transform is not None:
                img = self.transform(img)
            # The index returned is the one asked for, so memory banks stay consistent.
            return img, label, int(i)
        raise DataError(
            f"none of the {n} image files of this dataset could be read (first: {self.samples[0][0]}); "
            "check the folder given as data.root."
        )


def decode_file(path: str) -> torch.Tensor:
    """uint8 [3, H, W] RGB from an image file; `DataError` naming the file if it cannot be decoded."""
    from torchvision.io import ImageReadMode, decode_image

    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"cannot read image file {path}: {e.strerror or e}.") from e
    if not data:
        raise DataError(f"image file {path} is empty (0 bytes); delete or replace it.")
    try:
        return decode_image(
            torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB
        )
    except (RuntimeError, ValueError):
        pass  # not a format torchvision decodes (bmp, tiff, ...) or a broken file: let PIL decide
    try:
        import io

        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            arr = np.asarray(im.convert("RGB"))
    except Exception as e:  # PIL raises many types for broken files
        raise DataError(
            f"image file {path} is corrupt or truncated ({type(e).__name__}: {e}); "
            "delete or replace it."
        ) from e
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


# ---------------------------------------------------------------------------------------------
# Subsets and lookup
# ---------------------------------------------------------------------------------------------


def stratified_subset(
    labels: torch.Tensor, fraction: float | None, limit: int | None, seed: int, key: str = "data"
) -> torch.Tensor:
    """Sorted indices of a subset with the same per-label proportions as `labels`.

    The size is round(fraction * N), capped by `limit` (each optional; neither -> everything).
    Label -1 (unlabelled) is one more group, so unlabelled samples are subsampled uniformly.
    Per-group counts use largest remainders (total exact); within a group the choice is a random
    permutation seeded by (seed, label), so it is deterministic and independent of other groups.
    """
    labels = torch.as_tensor(labels).to(torch.int64).flatten()
    n = labels.numel()
    if fraction is not None:
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, (int, float))
            or not 0 < fraction <= 1
        ):
            raise ConfigError(
                f"{key}.fraction",
                f"must be a number in (0, 1], got {fraction!r}.",
                f"set e.g. {key}.fraction=0.1, or null for all the data.",
            )
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(
                f"{key}.limit",
                f"must be a positive integer, got {limit!r}.",
                f"set e.g. {key}.limit=1000, or null for all the data.",
            )
    target = n
    if fraction is not None:
        target = max(1, round(fraction * n))
    if limit is not None:
        target = min(target, limit)
    if target >= n:
        return torch.arange(n)

    groups, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * target / n
    quota = exact.floor().long()
    short = target - int(quota.sum())
    if short > 0:  # largest remainders first, ties by group order (stable sort)
        order = torch.sort(exact - quota, descending=True, stable=True).indices
        quota[order[:short]] += 1
    chosen = []
    for group, q in zip(groups.tolist(), quota.tolist()):
        if q == 0:
            continue
        members = (labels == group).nonzero().squeeze(1)
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + group + 7)
        chosen.append(members[torch.randperm(members.numel(), generator=g)[:q]])
    return torch.sort(torch.cat(chosen)).values


def resolve_root(name: str, root: str | None) -> list[Path]:
    """Candidate directories for dataset `name`, in lookup order (duplicates removed)."""
    _check_name(name)
    folder = name in ("image_folder", "image_folder_unlabelled")  # a folder dataset *is* the root
    out: list[Path] = []
    if root:
        out += (
            [Path(root).expanduser()]
            if folder
            else [Path(root).expanduser(), Path(root).expanduser() / name]
        )
    env = os.environ.get(ENV_VAR)
    if env:
        out += (
            [Path(env).expanduser() / name]
            if folder
            else [Path(env).expanduser(), Path(env).expanduser() / name]
        )
    out += [Path(p) for p in SYSTEM_LOCATIONS.get(name, ())]
    if not folder and name != "synthetic":
        out += [Path("data"), Path("data") / name]
    seen, unique = set(), []
    for p in out:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


def _download_dir(root: str | None) -> Path:
    if root:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path("data")


def _check_name(name: str) -> None:
    if name not in NAMES:
        raise ConfigError(
            "data.name",
            f"unknown dataset {name!r}; valid names: {', '.join(NAMES)}.",
            "pick one of these, e.g. data=cifar10 (or data.name=image_folder with data.root=...).",
        )


def _looked(cands: list[Path]) -> str:
    return ", ".join(str(p.absolute()) for p in cands) if cands else "(nowhere: no root given)"


# ---------------------------------------------------------------------------------------------
# Per-dataset loaders: each returns (train_images, train_labels, test_images, test_labels, extra)
# ---------------------------------------------------------------------------------------------


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
            f"{path} is not a uint8 idx file (bad header); delete it and reinstall or re-download the data."
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
            f"{max(0, len(raw) - start)} data bytes; delete it and reinstall or re-download the data."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(dims)


_FMNIST_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


def _find_fmnist(d: Path) -> dict[str, Path] | None:
    for sub in (d, d / "FashionMNIST" / "raw"):
        found = {}
        for key, stem in _FMNIST_FILES.items():
            for cand in (sub / f"{stem}.gz", sub / stem):
                if cand.is_file():
                    found[key] = cand
                    break
        if len(found) == 4:
            return found
    return None


def _load_fashion_mnist(d: Path):
    files = _find_fmnist(d)
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
    return xtr, labels(files["train_y"], len(xtr)), xte, labels(files["test_y"], len(xte)), None


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")
    except Exception as e:  # truncated / garbage pickles raise many types
        raise DataError(
            f"{path} is corrupt ({type(e).__name__}: {e}); delete its folder and download again "
            "(or copy a good copy to data.root)."
        ) from e


def _load_cifar(d: Path, hundred: bool):
    folder = d / ("cifar-100-python" if hundred else "cifar-10-batches-py")
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
                    f"{p} has {len(x)} images but {len(y)} labels; delete the folder and download again."
                )
            xs.append(x)
            ys.append(y)
        return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))

    xtr, ytr = load(train_files)
    xte, yte = load(test_files)
    return xtr, ytr, xte, yte, None


def _read_stl_images(p: Path) -> torch.Tensor:
    side = 96 * 96 * 3
    if not p.is_file():
        raise DataError(f"{p} is missing; delete its folder and download STL-10 again.")
    x = np.fromfile(p, dtype=np.uint8)
    if x.size == 0 or x.size % side:
        raise DataError(
            f"{p} is truncated ({x.size} bytes, not a multiple of {side}); delete it and download again."
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


def _load_stl10(d: Path, unlabeled: bool = True):
    folder = d / "stl10_binary"
    if not folder.is_dir():
        return None
    xtr = _read_stl_images(folder / "train_X.bin")
    ytr = _read_stl_labels(folder / "train_y.bin", len(xtr))
    xte = _read_stl_images(folder / "test_X.bin")
    yte = _read_stl_labels(folder / "test_y.bin", len(xte))
    xun = _read_stl_images(folder / "unlabeled_X.bin") if unlabeled else None
    return xtr, ytr, xte, yte, xun


_TORCHVISION_CLASS = {
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
    "stl10": "STL10",
    "fashion_mnist": "FashionMNIST",
}
_STATS = {  # mean, std per channel (RGB, values in [0, 1])
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "stl10": ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
    "fashion_mnist": ((0.2860, 0.2860, 0.2860), (0.3530, 0.3530, 0.3530)),
}
_CLASSES = {"cifar10": 10, "cifar100": 100, "stl10": 10, "fashion_mnist": 10}
_SIZES = {"cifar10": 32, "cifar100": 32, "stl10": 96, "fashion_mnist": 28}


def _download(name: str, dest: Path) -> None:
    """Fetch `name` with torchvision into `dest` (raises whatever torchvision raises)."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, _TORCHVISION_CLASS[name])
    dest.mkdir(parents=True, exist_ok=True)
    if name == "stl10":
        cls(root=str(dest), split="train", download=True)
    else:
        cls(root=str(dest), train=True, download=True)
        cls(root=str(dest), train=False, download=True)


def _load_named(name: str, root: str | None, download: bool, opts: dict):
    loader = {
        "cifar10": lambda d: _load_cifar(d, hundred=False),
        "cifar100": lambda d: _load_cifar(d, hundred=True),
        "stl10": lambda d: _load_stl10(d, unlabeled=opts.get("unlabeled", True)),
        "fashion_mnist": _load_fashion_mnist,
    }[name]
    cands = resolve_root(name, root)
    for d in cands:
        if d.is_dir():
            got = loader(d)
            if got is not None:
                return got
    how = (
        f"Fix: point data.root=/path/to/{name} (or ${ENV_VAR}) at a folder holding it"
        + (
            ", or on Debian/Ubuntu run `apt-get install dataset-fashion-mnist` (files go to "
            "/usr/share/datasets/fashion-mnist)"
            if name == "fashion_mnist"
            else ""
        )
        + ", or run once with network access and data.download=true."
    )
    if not download:
        raise DataError(
            f"dataset {name!r} not found; looked in: {_looked(cands)}. Download is off "
            f"(data.download=false). {how}"
        )
    dest = _download_dir(root)
    try:
        _download(name, dest)
    except Exception as e:  # network, disk, checksum: all end in the same message
        reason = f"{type(e).__name__}: {e}".splitlines()[0][:200]
        raise DataError(
            f"dataset {name!r} not found; looked in: {_looked(cands)}. The download into {dest} "
            f"failed ({reason}). {how}"
        ) from e
    got = loader(dest)
    if got is None:
        raise DataError(
            f"dataset {name!r}: the download into {dest} finished but its files were not found there; "
            f"delete {dest} and try again. {how}"
        )
    return got


# ---------------------------------------------------------------------------------------------
# Image folders
# ---------------------------------------------------------------------------------------------


def _image_files(folder: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [
            os.path.join(dirpath, f)
            for f in sorted(filenames)
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
        ]
    return out


def _class_folder_samples(
    split_dir: Path, classes: list[str] | None
) -> tuple[list[str], list[tuple[str, int]]]:
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
        files = _image_files(split_dir / c)
        if not files:
            raise DataError(
                f"class folder {split_dir / c} holds no image files ({', '.join(IMAGE_EXTENSIONS)}); "
                "add images or remove the folder."
            )
        samples += [(f, index[c]) for f in files]
    return classes, samples


def _load_folder(name: str, root: str | None, opts: dict):
    cands = resolve_root(name, root)
    hint = (
        "Fix: set data.root=/path/to/dataset holding train/<class>/* and val/<class>/* (ImageNet layout)"
        if name == "image_folder"
        else "Fix: set data.root=/path/to/images (every image below it is used)"
    )
    on_bad = opts.get("on_bad_file", "skip")
    if name == "image_folder":
        for d in cands:
            if (d / "train").is_dir():
                test_dir = next((d / s for s in ("val", "test") if (d / s).is_dir()), None)
                if test_dir is None:
                    raise DataError(
                        f"{d} has a train folder but neither {d / 'val'} nor {d / 'test'}; "
                        "add a val/<class>/* split for the kNN / probe evaluation."
                    )
                classes, train = _class_folder_samples(d / "train", None)
                _, test = _class_folder_samples(test_dir, classes)
                return (
                    len(classes),
                    FolderImages(train, on_bad_file=on_bad),
                    FolderImages(test, on_bad_file=on_bad),
                )
        raise DataError(
            f"no image folder dataset found; looked for a train/ folder in: {_looked(cands)}. {hint}."
        )
    for d in cands:
        if d.is_dir():
            files = _image_files(d)
            if not files:
                raise DataError(
                    f"{d} holds no image files ({', '.join(IMAGE_EXTENSIONS)}) in any subfolder. {hint}."
                )
            return 0, FolderImages([(f, -1) for f in files], on_bad_file=on_bad), None
    raise DataError(f"no image folder found; looked in: {_looked(cands)}. {hint}.")


# ---------------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------------

_OPTIONS = {
    "cifar10": (),
    "cifar100": (),
    "fashion_mnist": (),
    "stl10": ("unlabeled",),
    "image_folder": ("image_size", "on_bad_file"),
    "image_folder_unlabelled": ("image_size", "on_bad_file"),
    "synthetic": ("n_train", "n_test", "num_classes", "image_size", "data_seed", "palette"),
}


def load_splits(
    name: str,
    root: str | None = None,
    download: bool = True,
    fraction: float | None = None,
    limit: int | None = None,
    test_limit: int | None = None,
    seed: int = 0,
    **options,
) -> tuple[DatasetInfo, dict[str, Dataset | None]]:
    """Info and splits {'pretrain', 'train', 'test'} of dataset `name` (see the module docstring).

    fraction (0 < f <= 1) / limit (int > 0) take a stratified subset (deterministic given seed) of
    pretrain and train, each on its own (STL-10's unlabelled part is subsampled uniformly);
    test_limit a stratified subset of test. Options by dataset: stl10 `unlabeled` (default True:
    pretrain = train + unlabeled); image folders `image_size` (default 224), `on_bad_file`
    ('skip' | 'error'); synthetic `n_train` (5000), `n_test` (1000), `num_classes` (10),
    `image_size` (32), `data_seed` (0; the images, not the subset), `palette` ('grey' | 'colour').
    Unknown options raise.
    """
    _check_name(name)
    unknown = sorted(set(options) - set(_OPTIONS[name]))
    if unknown:
        allowed = ", ".join(_OPTIONS[name]) or "none"
        raise ConfigError(
            f"data.{unknown[0]}",
            f"is not an option of data.name={name} (its options: {allowed}).",
            f"remove data.{unknown[0]} from the data config.",
        )
    root = str(root) if root else None
    unlabelled_pretrain = None

    if name == "synthetic":
        from ssl_bench.data.synthetic import make_synthetic

        k, size, ds = (
            options.get("num_classes", 10),
            options.get("image_size", 32),
            int(options.get("data_seed", 0)),
        )
        palette = options.get("palette", "grey")
        xtr, ytr = make_synthetic(
            options.get("n_train", 5000), k, size, seed=2 * ds, palette=palette
        )
        xte, yte = make_synthetic(
            options.get("n_test", 1000), k, size, seed=2 * ds + 1, palette=palette
        )
        mean = tuple(round(v, 4) for v in (xtr.float().mean(dim=(0, 2, 3)) / 255).tolist())
        std = tuple(round(v, 4) for v in (xtr.float().std(dim=(0, 2, 3)) / 255).tolist())
        info = DatasetInfo(name, k, size, mean, std, in_memory=True)
        train, test = TensorImages(xtr, ytr), TensorImages(xte, yte)
    elif name in ("image_folder", "image_folder_unlabelled"):
        k, train, test = _load_folder(name, root, options)
        size = options.get("image_size", 224)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(
                "data.image_size",
                f"must be a positive integer, got {size!r}.",
                "set e.g. data.image_size=224.",
            )
        info = DatasetInfo(name, k, size, IMAGENET_MEAN, IMAGENET_STD, in_memory=False)
        if k == 0:
            pretrain = train.subset(stratified_subset(train.labels, fraction, limit, seed))
            return info, {"pretrain": pretrain, "train": None, "test": None}
    else:
        xtr, ytr, xte, yte, xun = _load_named(name, root, download, options)
        mean, std = _STATS[name]
        info = DatasetInfo(name, _CLASSES[name], _SIZES[name], mean, std, in_memory=True)
        if xun is not None:
            # One tensor for pretrain; the train split is a view of its first rows (no copy).
            images = torch.cat([xtr, xun])
            labels = torch.cat([ytr, torch.full((len(xun),), -1, dtype=torch.int64)])
            unlabelled_pretrain = TensorImages(images, labels)
            train = TensorImages(images[: len(xtr)], ytr)
        else:
            train = TensorImages(xtr, ytr)
        test = TensorImages(xte, yte)

    for split, ds in (("train", train), ("test", test)):
        if len(ds) == 0:
            raise DataError(f"the {split} split of {name!r} is empty; check data.root.")

    subset = lambda ds, f, lim: (
        ds
        if f is None and lim is None
        else ds.subset(  # noqa: E731
            stratified_subset(ds.labels, f, lim, seed)
        )
    )
    train_sub = subset(train, fraction, limit)
    if unlabelled_pretrain is not None:
        pretrain = subset(unlabelled_pretrain, fraction, limit)
    else:  # the same samples as train, but its own object: the data module sets a different transform
        pretrain = (
            train_sub.subset(torch.arange(len(train_sub)))
            if isinstance(train_sub, FolderImages)
            else TensorImages(train_sub.images, train_sub.labels)
        )
    if test_limit is not None and (
        isinstance(test_limit, bool) or not isinstance(test_limit, int) or test_limit < 1
    ):
        raise ConfigError(
            "data.test_limit",
            f"must be a positive integer, got {test_limit!r}.",
            "set e.g. data.test_limit=1000, or null for the whole test split.",
        )
    test_sub = subset(test, None, test_limit)
    return info, {"pretrain": pretrain, "train": train_sub, "test": test_sub}
