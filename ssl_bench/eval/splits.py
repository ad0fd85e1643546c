"""The images an offline evaluation reads: batches of a split (plain, or random crop + flip views of
the linear protocol), whole or a held-out part, and the seeded, class-stratified held-out part
itself."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator

import torch

from ssl_bench.errors import ConfigError


def stratified_holdout(
    labels: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit indices, held-out indices) of a split: `fraction` of every class (rounded, at least one
    image of a class with two or more) drawn with a fixed seed, so a selection on the held-out part
    is reproducible and the class balance of both parts follows the split's. Indices are sorted."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError("select_fraction", f"must be in (0, 1), got {fraction}.", "use e.g. 0.1.")
    labels = torch.as_tensor(labels).cpu()
    gen = torch.Generator().manual_seed(int(seed))
    held = []
    for c in labels.unique(sorted=True):
        idx = (labels == c).nonzero().squeeze(1)
        n = idx.numel()
        take = min(n - 1, max(1, round(fraction * n))) if n >= 2 else 0
        held.append(idx[torch.randperm(n, generator=gen)[:take]])
    val = torch.cat(held).sort().values if held else torch.zeros(0, dtype=torch.long)
    mask = torch.ones(labels.numel(), dtype=torch.bool)
    mask[val] = False
    fit = mask.nonzero().squeeze(1)
    if val.numel() == 0 or fit.numel() == 0:
        raise ConfigError(
            "select_fraction",
            f"leaves no held-out or no fitting images of the {labels.numel()} training images.",
            "use more training data (data.limit) or another fraction.",
        )
    return fit, val


def augment_pipeline(size: int, scale=(0.08, 1.0), hflip: float = 0.5):
    """The linear-protocol training transform: random resized crop + flip, no colour changes."""
    from ssl_bench.views.config import ViewPipeline

    return ViewPipeline(
        num_crops=1,
        crop_size=int(size),
        scale=tuple(float(s) for s in scale),
        hflip=float(hflip),
        jitter_prob=0.0,
        brightness=0.0,
        contrast=0.0,
        saturation=0.0,
        hue=0.0,
        grayscale=0.0,
        blur_prob=0.0,
        solarize=0.0,
    )


class SplitBatches:
    """Batches `(x float normalised [B,3,S,S] on device, labels)` of one split of a set-up
    SSLDataModule, or of the images `indices` of it (a held-out part of the train split, or the
    rest).

    `augment` (a ViewPipeline) draws a fresh random crop+flip per image and pass; without it the
    images are the un-augmented eval transform. In-memory data is indexed and transformed on the
    device (BatchViews / BatchEval); image folders go through a DataLoader with per-item transforms.
    """

    def __init__(
        self,
        dm,
        split: str,
        batch_size: int,
        device: torch.device,
        augment=None,
        seed: int = 0,
        indices: torch.Tensor | None = None,
    ):
        from ssl_bench.data.images import TensorImages

        self.dm, self.batch_size, self.device = dm, int(batch_size), device
        ds = dm.splits[split]
        self.base = getattr(
            ds, "data", ds
        )  # _Transformed wraps in-memory data without device views
        self.in_memory = isinstance(self.base, TensorImages)
        self.indices = None if indices is None else torch.as_tensor(indices, dtype=torch.long).cpu()
        if self.in_memory and self.indices is not None:
            self.base, self.indices = self.base.subset(self.indices), None
        self.generator = torch.Generator().manual_seed(seed)
        if self.in_memory:
            self._device_transform(augment, seed)
        else:
            self._item_transform(augment)

    def _device_transform(self, augment, seed: int) -> None:
        from ssl_bench.views.batch import BatchEval, BatchViews

        info = self.dm.info
        self.transform = (
            BatchViews([augment], info.mean, info.std, seed=seed)
            if augment
            else BatchEval(self.dm.eval_size, info.mean, info.std)
        )
        self.augment = augment is not None

    def _item_transform(self, augment) -> None:
        from ssl_bench.views.cpu import build_cpu_views, cpu_eval_transform

        info = self.dm.info
        self.folder = copy.copy(self.base)
        self._labels = torch.as_tensor(self.base.labels)
        if self.indices is not None:
            self._labels = self._labels[self.indices]
        if augment:
            self.folder.transform = _FirstView(build_cpu_views([augment], info.mean, info.std))
        else:
            self.folder.transform = cpu_eval_transform(self.dm.eval_size, info.mean, info.std)

    @property
    def labels(self) -> torch.Tensor:
        return torch.as_tensor(self.base.labels) if self.in_memory else self._labels

    def __len__(self) -> int:
        return len(self.base) if self.in_memory else int(self._labels.numel())

    def num_batches(self, drop_last: bool = False) -> int:
        n = len(self)
        return n // self.batch_size if drop_last else math.ceil(n / self.batch_size)

    def __call__(
        self, shuffle: bool = False, drop_last: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.in_memory:
            yield from self._in_memory_batches(shuffle, drop_last)
            return
        from torch.utils.data import DataLoader, Subset

        ds = self.folder if self.indices is None else Subset(self.folder, self.indices.tolist())
        loader = DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=self.dm.num_workers,
            generator=self.generator,
        )
        for x, y, _ in loader:
            yield x.to(self.device), y.to(self.device)

    def _in_memory_batches(self, shuffle: bool, drop_last: bool):
        n = len(self.base)
        order = torch.randperm(n, generator=self.generator) if shuffle else torch.arange(n)
        whole = drop_last and n >= self.batch_size
        stop = (n // self.batch_size) * self.batch_size if whole else n
        for start in range(0, stop, self.batch_size):
            idx = order[start : start + self.batch_size]
            imgs = self.base.images[idx].to(self.device, non_blocking=True)
            x = self.transform(imgs)
            x = x[0] if isinstance(x, list) else x
            yield x, self.base.labels[idx].to(self.device)


class _FirstView:
    """Picklable: per-item CpuViews -> its single view."""

    def __init__(self, views):
        self.views = views

    def __call__(self, img):
        return self.views(img)[0]
