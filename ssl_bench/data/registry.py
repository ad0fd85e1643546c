"""The dataset registry: a dataset is one registered function, its facts, and a conf/data yaml.

    @register_dataset(
        "cifar10", in_memory=True, num_classes=10, image_size=32,
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
        fetch=torchvision_download("CIFAR10", {"train": True}, {"train": False}),
    )
    def cifar10(lookup: DataLookup) -> LoadedSplits:
        xtr, ytr, xte, yte = lookup.find(lambda folder: read_cifar(folder, hundred=False))
        return LoadedSplits(TensorImages(xtr, ytr), TensorImages(xte, yte))

The function is given a `DataLookup` (data/lookup.py: where the files may be, in order, and the
download fallback) and the dataset's options - the config's `data.options` - as keyword arguments:
its signature is the list of options and their defaults, and an option it does not take is a
`ConfigError` naming the key. It returns `LoadedSplits`. The facts (classes, mean/std, image side,
in memory or decoded from files, how to find and fetch the data) are given to the decorator; a fact
that depends on the data (the classes of an image folder, the statistics of generated images) is
left None there and given by the function in `LoadedSplits`.

The pattern is timm's `@register_model` (huggingface/pytorch-image-models,
timm/models/_registry.py): a table filled by decorators when the defining module is imported. The
built-in datasets are in data/datasets.py, which `load_splits` lives in, so they are registered
whenever it can be called.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from ssl_bench.errors import ConfigError

#: how a dataset's data is found (data/lookup.py): "files" - in a folder named after the dataset,
#: under data.root, $SSL_BENCH_DATA, a system location or ./data, downloaded if it has a fetch;
#: "folder" - data.root is the dataset itself; "generated" - made in-process, nothing to find
STORAGE_KINDS = ("files", "folder", "generated")


@dataclass(frozen=True)
class DatasetInfo:
    """The facts of a loaded dataset (what the data module and the methods are told)."""

    name: str
    num_classes: int  # 0 for unlabelled data (no probe / kNN then)
    image_size: int  # native side length (in-memory tensors' H == W); folders: the configured size
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    in_memory: bool  # True: TensorImages (uint8, equal size); False: FolderImages


@dataclass
class LoadedSplits:
    """What a registered dataset function returns.

    `train`: the labelled training split, or for unlabelled data (num_classes 0) every image with
    label -1; `test`: the labelled test split (None for unlabelled data); `pretrain`: what SSL
    trains on when it is more than `train` (STL-10: train + unlabeled, label -1), else None. The
    facts left None at registration are given here.
    """

    train: Dataset
    test: Dataset | None
    pretrain: Dataset | None = None
    num_classes: int | None = None
    image_size: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its loading function and its facts (None: the function gives it)."""

    name: str
    load: Callable[..., LoadedSplits]
    in_memory: bool
    num_classes: int | None = None
    image_size: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    storage: str = "files"
    fetch: Callable[[Path], None] | None = None  # fetch(dest): download the files into dest
    system_locations: tuple[str, ...] = ()  # where a system package installs the files
    install_hint: str = ""  # one more way to get the data, for the missing-data message

    @property
    def options(self) -> tuple[str, ...]:
        """The options `load` takes (its keyword arguments after the lookup), in signature order."""
        params = list(inspect.signature(self.load).parameters.values())[1:]
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return tuple(p.name for p in params if p.kind in kinds)

    def check_options(self, options: dict) -> None:
        """`ConfigError` naming the first option `load` does not take."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            allowed = ", ".join(self.options) or "none"
            raise ConfigError(
                f"data.{unknown[0]}",
                f"is not an option of data.name={self.name} (its options: {allowed}).",
                f"remove data.{unknown[0]} from the data config.",
            )

    def info(self, loaded: LoadedSplits) -> DatasetInfo:
        """The facts of this dataset as loaded: the registered ones, completed by `loaded`."""
        facts = {}
        for fact in ("num_classes", "image_size", "mean", "std"):
            value = getattr(self, fact)
            facts[fact] = getattr(loaded, fact) if value is None else value
            if facts[fact] is None:
                raise ValueError(
                    f"dataset {self.name!r}: {fact} is neither registered nor given by its loader"
                )
        return DatasetInfo(self.name, in_memory=self.in_memory, **facts)


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(
    name: str,
    *,
    in_memory: bool,
    num_classes: int | None = None,
    image_size: int | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    storage: str = "files",
    fetch: Callable[[Path], None] | None = None,
    system_locations: tuple[str, ...] = (),
    install_hint: str = "",
) -> Callable:
    """Decorator: register the decorated function as dataset `name` with these facts (see
    `DatasetSpec`; None: the function gives it in `LoadedSplits`). Returns the function
    unchanged."""
    if storage not in STORAGE_KINDS:
        raise ValueError(f"dataset {name!r}: storage must be one of {', '.join(STORAGE_KINDS)}")

    def register(load: Callable[..., LoadedSplits]) -> Callable[..., LoadedSplits]:
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} is registered twice")
        _REGISTRY[name] = DatasetSpec(
            name,
            load,
            in_memory,
            num_classes,
            image_size,
            mean,
            std,
            storage,
            fetch,
            tuple(system_locations),
            install_hint,
        )
        return load

    return register


def dataset_names() -> tuple[str, ...]:
    """The registered datasets, in registration order."""
    return tuple(_REGISTRY)


def dataset_spec(name: str) -> DatasetSpec:
    """The registered dataset `name`; a `ConfigError` on data.name listing the valid names."""
    if name not in _REGISTRY:
        raise ConfigError(
            "data.name",
            f"unknown dataset {name!r}; valid names: {', '.join(_REGISTRY)}.",
            "pick one of these, e.g. data=cifar10 (or data.name=image_folder with data.root=...).",
        )
    return _REGISTRY[name]
