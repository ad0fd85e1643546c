"""The built-in datasets, one registered function each, and `load_splits`, which loads any of them.

    info, splits = load_splits("cifar10", root=None, fraction=0.1)
    splits["pretrain"]  # what SSL trains on (STL-10: train + unlabeled, unlabeled labels = -1)
    splits["train"]     # labelled train split, un-augmented: kNN bank and probe reference
                        # (None if unlabelled)
    splits["test"]      # labelled test split (None if unlabelled)

In-memory datasets (CIFAR, STL-10, Fashion-MNIST, synthetic) are `TensorImages`, image folders
`FolderImages` (data/images.py). Files are found local-first, then downloaded (data/lookup.py).
A new dataset is one more function registered here (or in any module imported before the run) with
`@register_dataset` (data/registry.py), and a conf/data/<name>.yaml.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from ssl_bench.data.images import FolderImages, TensorImages
from ssl_bench.data.lookup import DataLookup, candidate_dirs, torchvision_download
from ssl_bench.data.readers import (
    IMAGE_EXTENSIONS,
    class_folder_samples,
    image_files,
    read_cifar,
    read_fashion_mnist,
    read_stl10,
)
from ssl_bench.data.registry import DatasetInfo, LoadedSplits, dataset_spec, register_dataset
from ssl_bench.data.subsets import stratified_subset
from ssl_bench.data.synthetic import make_synthetic
from ssl_bench.errors import ConfigError, DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---- downloadable files ------------------------------------------------------------------------
@register_dataset(
    "cifar10",
    in_memory=True,
    num_classes=10,
    image_size=32,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    fetch=torchvision_download("CIFAR10", {"train": True}, {"train": False}),
)
def cifar10(lookup: DataLookup) -> LoadedSplits:
    xtr, ytr, xte, yte = lookup.find(lambda folder: read_cifar(folder, hundred=False))
    return LoadedSplits(TensorImages(xtr, ytr), TensorImages(xte, yte))


@register_dataset(
    "cifar100",
    in_memory=True,
    num_classes=100,
    image_size=32,
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
    fetch=torchvision_download("CIFAR100", {"train": True}, {"train": False}),
)
def cifar100(lookup: DataLookup) -> LoadedSplits:
    xtr, ytr, xte, yte = lookup.find(lambda folder: read_cifar(folder, hundred=True))
    return LoadedSplits(TensorImages(xtr, ytr), TensorImages(xte, yte))


@register_dataset(
    "stl10",
    in_memory=True,
    num_classes=10,
    image_size=96,
    mean=(0.4467, 0.4398, 0.4066),
    std=(0.2603, 0.2566, 0.2713),
    fetch=torchvision_download("STL10", {"split": "train"}),  # the archive holds every split
)
def stl10(lookup: DataLookup, *, unlabeled: bool = True) -> LoadedSplits:
    """`unlabeled` (default): pretrain on train + the 100k unlabeled images (label -1)."""
    xtr, ytr, xte, yte, xun = lookup.find(lambda folder: read_stl10(folder, unlabeled=unlabeled))
    if xun is None:
        return LoadedSplits(TensorImages(xtr, ytr), TensorImages(xte, yte))
    # One tensor for pretrain; the train split is a view of its first rows (no copy).
    images = torch.cat([xtr, xun])
    labels = torch.cat([ytr, torch.full((len(xun),), -1, dtype=torch.int64)])
    return LoadedSplits(
        train=TensorImages(images[: len(xtr)], ytr),
        test=TensorImages(xte, yte),
        pretrain=TensorImages(images, labels),
    )


@register_dataset(
    "fashion_mnist",
    in_memory=True,
    num_classes=10,
    image_size=28,
    mean=(0.2860, 0.2860, 0.2860),
    std=(0.3530, 0.3530, 0.3530),
    fetch=torchvision_download("FashionMNIST", {"train": True}, {"train": False}),
    system_locations=("/usr/share/datasets/fashion-mnist",),
    install_hint="on Debian/Ubuntu run `apt-get install dataset-fashion-mnist` (files go to "
    "/usr/share/datasets/fashion-mnist)",
)
def fashion_mnist(lookup: DataLookup) -> LoadedSplits:
    """Grey images, replicated to 3 channels at load time."""
    xtr, ytr, xte, yte = lookup.find(read_fashion_mnist)
    return LoadedSplits(TensorImages(xtr, ytr), TensorImages(xte, yte))


# ---- image folders ------------------------------------------------------------------------------
@register_dataset(
    "image_folder",
    in_memory=False,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    storage="folder",
)
def image_folder(
    lookup: DataLookup, *, image_size: int = 224, on_bad_file: str = "skip"
) -> LoadedSplits:
    """ImageNet layout: root/train/<class>/*, root/val/<class>/* (or root/test/...)."""
    for root in lookup.candidates:
        if (root / "train").is_dir():
            test_dir = next((root / s for s in ("val", "test") if (root / s).is_dir()), None)
            if test_dir is None:
                raise DataError(
                    f"{root} has a train folder but neither {root / 'val'} nor {root / 'test'}; "
                    "add a val/<class>/* split for the kNN / probe evaluation."
                )
            classes, train = class_folder_samples(root / "train", None)
            _, test = class_folder_samples(test_dir, classes)
            return LoadedSplits(
                train=FolderImages(train, on_bad_file=on_bad_file),
                test=FolderImages(test, on_bad_file=on_bad_file),
                num_classes=len(classes),
                image_size=_folder_image_size(image_size),
            )
    raise DataError(
        "no image folder dataset found; looked for a train/ folder in: "
        f"{lookup.looked()}. Fix: set data.root=/path/to/dataset holding train/<class>/* and "
        "val/<class>/* (ImageNet layout)."
    )


@register_dataset(
    "image_folder_unlabelled",
    in_memory=False,
    num_classes=0,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    storage="folder",
)
def image_folder_unlabelled(
    lookup: DataLookup, *, image_size: int = 224, on_bad_file: str = "skip"
) -> LoadedSplits:
    """Every image below root, for pretraining only (no probe or kNN)."""
    hint = "Fix: set data.root=/path/to/images (every image below it is used)"
    for root in lookup.candidates:
        if root.is_dir():
            files = image_files(root)
            if not files:
                raise DataError(
                    f"{root} holds no image files ({', '.join(IMAGE_EXTENSIONS)}) in any "
                    f"subfolder. {hint}."
                )
            samples = [(f, -1) for f in files]
            return LoadedSplits(
                train=FolderImages(samples, on_bad_file=on_bad_file),
                test=None,
                image_size=_folder_image_size(image_size),
            )
    raise DataError(f"no image folder found; looked in: {lookup.looked()}. {hint}.")


def _folder_image_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(
            "data.image_size",
            f"must be a positive integer, got {size!r}.",
            "set e.g. data.image_size=224.",
        )
    return size


# ---- generated ----------------------------------------------------------------------------------
@register_dataset("synthetic", in_memory=True, storage="generated")
def synthetic(
    lookup: DataLookup,
    *,
    n_train: int = 5000,
    n_test: int = 1000,
    num_classes: int = 10,
    image_size: int = 32,
    data_seed: int = 0,
    palette: str = "grey",
) -> LoadedSplits:
    """Shapes and textures drawn in-process (data/synthetic.py). `data_seed` seeds the images (the
    subset is seeded by the run's seed); the statistics are those of the drawn train split."""
    seed = int(data_seed)
    xtr, ytr = make_synthetic(n_train, num_classes, image_size, seed=2 * seed, palette=palette)
    xte, yte = make_synthetic(n_test, num_classes, image_size, seed=2 * seed + 1, palette=palette)
    mean = tuple(round(v, 4) for v in (xtr.float().mean(dim=(0, 2, 3)) / 255).tolist())
    std = tuple(round(v, 4) for v in (xtr.float().std(dim=(0, 2, 3)) / 255).tolist())
    return LoadedSplits(
        TensorImages(xtr, ytr),
        TensorImages(xte, yte),
        num_classes=num_classes,
        image_size=image_size,
        mean=mean,
        std=std,
    )


# ---- loading ------------------------------------------------------------------------------------
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
    test_limit a stratified subset of test. `options` are the keyword arguments of the dataset's
    registered function (e.g. stl10's `unlabeled`, synthetic's `n_train`); others raise.
    """
    spec = dataset_spec(name)
    spec.check_options(options)
    loaded = spec.load(DataLookup(spec, str(root) if root else None, download), **options)
    info = spec.info(loaded)
    if info.num_classes == 0:  # unlabelled: pretraining only
        images = loaded.train
        pretrain = images.subset(stratified_subset(images.labels, fraction, limit, seed))
        return info, {"pretrain": pretrain, "train": None, "test": None}
    for split, ds in (("train", loaded.train), ("test", loaded.test)):
        if len(ds) == 0:
            raise DataError(f"the {split} split of {name!r} is empty; check data.root.")

    def subset(ds, fraction, limit):
        if fraction is None and limit is None:
            return ds
        return ds.subset(stratified_subset(ds.labels, fraction, limit, seed))

    train = subset(loaded.train, fraction, limit)
    if loaded.pretrain is not None:
        pretrain = subset(loaded.pretrain, fraction, limit)
    else:  # the same samples as train, but its own object: the data module sets another transform
        pretrain = (
            train.subset(torch.arange(len(train)))
            if isinstance(train, FolderImages)
            else TensorImages(train.images, train.labels)
        )
    if test_limit is not None and (
        isinstance(test_limit, bool) or not isinstance(test_limit, int) or test_limit < 1
    ):
        raise ConfigError(
            "data.test_limit",
            f"must be a positive integer, got {test_limit!r}.",
            "set e.g. data.test_limit=1000, or null for the whole test split.",
        )
    return info, {
        "pretrain": pretrain,
        "train": train,
        "test": subset(loaded.test, None, test_limit),
    }


def resolve_root(name: str, root: str | None) -> list[Path]:
    """The folders dataset `name` is looked for in, in lookup order (data/lookup.py)."""
    return candidate_dirs(dataset_spec(name), root)
