"""Where a dataset's data is: local first, then a download.

Lookup order for a dataset stored as files (see `candidate_dirs`): the `root` argument (data.root)
and `root/<name>`, `$SSL_BENCH_DATA` and `$SSL_BENCH_DATA/<name>`, the dataset's system locations
(Fashion-MNIST from the Debian package `dataset-fashion-mnist`), `./data` and `./data/<name>`; only
then a download into the first of root, `$SSL_BENCH_DATA`, `./data`. An image folder dataset *is*
data.root (or `$SSL_BENCH_DATA/<name>`). Missing data ends in one `DataError` that lists every
place looked and the ways to get the data.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ssl_bench.data.registry import DatasetSpec
from ssl_bench.errors import DataError

ENV_VAR = "SSL_BENCH_DATA"
T = TypeVar("T")


class DataLookup:
    """The places dataset `spec` may be in (`candidates`, in lookup order), the download fallback.

    A registered dataset function gets one: file datasets call `find(read)`; folder datasets read
    `candidates` themselves and name them with `looked()` when nothing is there.
    """

    def __init__(self, spec: DatasetSpec, root: str | None, download: bool):
        self.spec, self.root, self.download = spec, root, download
        self.candidates = candidate_dirs(spec, root)

    def looked(self) -> str:
        """The candidate folders as absolute paths, for messages."""
        if not self.candidates:
            return "(nowhere: no root given)"
        return ", ".join(str(p.absolute()) for p in self.candidates)

    def find(self, read: Callable[[Path], T | None]) -> T:
        """`read(folder)` of the first existing candidate folder where it is not None; else the
        dataset is downloaded (data.download and a registered fetch) and read from there. Raises
        `DataError` saying where it looked and how to get the data."""
        for folder in self.candidates:
            if folder.is_dir():
                found = read(folder)
                if found is not None:
                    return found
        name, fetch = self.spec.name, self.spec.fetch
        if fetch is None or not self.download:
            off = " Download is off (data.download=false)." if fetch is not None else ""
            raise DataError(
                f"dataset {name!r} not found; looked in: {self.looked()}.{off} {self._how()}"
            )
        dest = download_dir(self.root)
        try:
            fetch(dest)
        except Exception as e:  # network, disk, checksum: all end in the same message
            reason = f"{type(e).__name__}: {e}".splitlines()[0][:200]
            raise DataError(
                f"dataset {name!r} not found; looked in: {self.looked()}. The download into "
                f"{dest} failed ({reason}). {self._how()}"
            ) from e
        found = read(dest)
        if found is None:
            raise DataError(
                f"dataset {name!r}: the download into {dest} finished but its files were not "
                f"found there; delete {dest} and try again. {self._how()}"
            )
        return found

    def _how(self) -> str:
        """The ways to get the data, for the missing-data messages."""
        ways = [f"point data.root=/path/to/{self.spec.name} (or ${ENV_VAR}) at a folder holding it"]
        if self.spec.install_hint:
            ways.append(self.spec.install_hint)
        if self.spec.fetch is not None:
            ways.append("run once with network access and data.download=true")
        return "Fix: " + ", or ".join(ways) + "."


def candidate_dirs(spec: DatasetSpec, root: str | None) -> list[Path]:
    """The folders dataset `spec` may be in, in lookup order (duplicates removed)."""
    if spec.storage == "generated":
        return []
    is_root = spec.storage == "folder"  # an image folder dataset *is* the root
    out: list[Path] = []
    for base, own_folder in ((root, True), (os.environ.get(ENV_VAR), False)):
        if base:
            base = Path(base).expanduser()
            if is_root:
                out.append(base if own_folder else base / spec.name)
            else:
                out += [base, base / spec.name]
    out += [Path(p) for p in spec.system_locations]
    if not is_root:
        out += [Path("data"), Path("data") / spec.name]
    return list(dict.fromkeys(out))


def download_dir(root: str | None) -> Path:
    """Where a download goes: data.root, else $SSL_BENCH_DATA, else ./data."""
    if root:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path("data")


def torchvision_download(class_name: str, *splits: dict) -> Callable[[Path], None]:
    """A `fetch` for `register_dataset`: torchvision.datasets.<class_name>(root=dest,
    download=True, **split) for each split (e.g. {"train": True}, {"train": False})."""

    def fetch(dest: Path) -> None:
        import torchvision.datasets

        dataset_class = getattr(torchvision.datasets, class_name)
        dest.mkdir(parents=True, exist_ok=True)
        for split in splits:
            dataset_class(root=str(dest), download=True, **split)

    return fetch
