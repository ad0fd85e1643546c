"""The LightningDataModule: datasets -> batches -> views.

Training batches are `(views, labels, index)`. For in-memory datasets (uint8 tensors of equal size)
the views are made on the whole batch after it reaches the device (`BatchViews`), so the DataLoader
only indexes a tensor; image folders decode and augment per sample in DataLoader workers.

Hydra builds it from conf/data/<name>.yaml, whose `_target_` is `SSLDataModule.from_config`: the
data keys are its arguments, the run adds its views, seed and channels_last
(ssl_bench.training.build_datamodule).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from ssl_bench.data.datasets import load_splits
from ssl_bench.data.images import TensorImages
from ssl_bench.data.info import DataInfo
from ssl_bench.data.registry import dataset_spec
from ssl_bench.data.sampler import EpochSampler
from ssl_bench.errors import ConfigError
from ssl_bench.views.batch import BatchEval, BatchViews
from ssl_bench.views.config import ViewPipeline, parse_pipelines
from ssl_bench.views.cpu import build_cpu_views, cpu_eval_transform


class _BatchIndexed(Dataset):
    """Wraps TensorImages so the DataLoader fetches a whole batch with one tensor index."""

    def __init__(self, data: TensorImages):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitems__(self, indices: list[int]):
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.data.images[idx], self.data.labels[idx], idx

    def __getitem__(self, i: int):
        return self.data[i]


def _passthrough(batch):
    return batch


class SSLDataModule(pl.LightningDataModule):
    """Dataset `name` (data/datasets.py) in training batches of views and un-augmented eval batches.

    `setup()` loads the splits; `data_info()` then says what a method needs to know about them.
    The sampler and the view generator are part of the checkpoint (`state_dict`), so a run resumed
    mid-epoch sees the batches and views an uninterrupted one would.
    """

    def __init__(
        self,
        name: str,
        pipelines: Sequence[ViewPipeline],
        root: str | None = None,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        image_size: int | None = None,
        fraction: float | None = None,
        limit: int | None = None,
        test_limit: int | None = None,
        download: bool = True,
        device_views: str | bool = "auto",
        on_bad_file: str = "skip",
        seed: int = 0,
        channels_last: bool = True,
        options: dict[str, Any] | None = None,
    ):
        super().__init__()
        if batch_size < 1:
            raise ConfigError("data.batch_size", f"must be >= 1, got {batch_size}.")
        if num_workers < 0:
            raise ConfigError("data.num_workers", f"must be >= 0, got {num_workers}.")
        if device_views not in (True, False, "auto"):
            raise ConfigError(
                "data.device_views", f"must be true, false or auto, got {device_views!r}."
            )
        self.name, self.root, self.pipelines = name, root, list(pipelines)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.eval_batch_size = eval_batch_size or max(batch_size, 256)
        self.image_size, self.fraction = image_size, fraction
        self.limit, self.test_limit = limit, test_limit
        self.download, self.device_views, self.on_bad_file = download, device_views, on_bad_file
        self.seed, self.channels_last, self.options = seed, channels_last, dict(options or {})
        self.info = None
        self._pending_skip: tuple[int, int] | None = None
        self.splits: dict[str, Dataset | None] = {}

    @classmethod
    def from_config(
        cls,
        views,
        seed: int,
        channels_last: bool = True,
        small_input: bool | None = None,
        vit_patch_size: int | None = None,
        **settings,
    ) -> SSLDataModule:
        """The `_target_` of conf/data/*.yaml: a data module from the data config, the run's views.

        `settings` are the keys of the data config (name, root, batch_size, ..., options), each an
        argument of `__init__`; any other key is a `ConfigError` naming it. `views` is
        cfg.augmentation.views, parsed here against data.image_size; `seed` and `channels_last` are
        the run's. `small_input` and `vit_patch_size` describe the images to the backbone group
        (conf/backbone/*.yaml reads ${data.small_input}); the data module has no use for them.
        """
        run_level = {"self", "pipelines", "seed", "channels_last"}
        own = set(inspect.signature(cls.__init__).parameters) - run_level
        for key in settings:
            if key not in own:
                raise ConfigError(
                    f"data.{key}",
                    f"is not a setting of the data module (those are: {', '.join(sorted(own))}).",
                    f"remove data.{key}; options of one dataset go under data.options.",
                )
        pipelines = parse_pipelines(views, image_size=settings.get("image_size"))
        return cls(pipelines=pipelines, seed=seed, channels_last=channels_last, **settings)

    # ---- loading ----------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.info is not None:
            if self.trainer is not None and getattr(self, "use_device_views", False):
                # each rank draws its own augmentations
                self.batch_views.reseed(self.seed + 1000 * self.trainer.global_rank)
            return
        options = dict(self.options)
        if "on_bad_file" in dataset_spec(self.name).options:  # datasets decoded from files
            options.setdefault("on_bad_file", self.on_bad_file)
        self.info, self.splits = load_splits(
            self.name,
            root=self.root,
            download=self.download,
            fraction=self.fraction,
            limit=self.limit,
            test_limit=self.test_limit,
            seed=self.seed,
            **options,
        )
        size = self.image_size or self.info.image_size
        if self.info.in_memory and size > self.info.image_size:
            raise ConfigError(
                "data.image_size",
                f"{size} is larger than the images of '{self.name}' ({self.info.image_size}px).",
                f"set data.image_size <= {self.info.image_size}.",
            )
        self.eval_size = size
        use_device = self.info.in_memory if self.device_views == "auto" else bool(self.device_views)
        if use_device and not self.info.in_memory:
            raise ConfigError(
                "data.device_views",
                f"'{self.name}' is an image folder; batched device-side views "
                "need equally sized in-memory images.",
                "set data.device_views=auto or false.",
            )
        self.use_device_views = use_device
        rank = self.trainer.global_rank if self.trainer is not None else 0
        if use_device:
            self.batch_views = BatchViews(
                self.pipelines, self.info.mean, self.info.std, seed=self.seed + 1000 * rank
            )
            self.batch_eval = BatchEval(size, self.info.mean, self.info.std)
        else:
            cpu_views = build_cpu_views(self.pipelines, self.info.mean, self.info.std)
            cpu_eval = cpu_eval_transform(size, self.info.mean, self.info.std)
            self.splits["pretrain"] = self._with_transform(self.splits["pretrain"], cpu_views)
            for key in ("train", "test"):
                if self.splits.get(key) is not None:
                    self.splits[key] = self._with_transform(self.splits[key], cpu_eval)

    @staticmethod
    def _with_transform(ds, transform):
        if isinstance(
            ds, TensorImages
        ):  # in-memory data augmented per item when device views are off
            return _Transformed(ds, transform)
        ds.transform = transform
        return ds

    def bad_files(self) -> list[str]:
        """Image files skipped as unreadable (data.on_bad_file=skip), over all splits."""
        found: list[str] = []
        for ds in self.splits.values():
            for path in getattr(ds, "bad_files", ()):
                if path not in found:
                    found.append(path)
        return found

    @property
    def num_classes(self) -> int:
        return self.info.num_classes if self.info is not None else 0

    def data_info(self) -> DataInfo:
        """What a method is told about this data (after setup); training.build_method passes it."""
        if self.info is None:
            raise RuntimeError("data_info() needs setup() first")
        return DataInfo(
            num_samples=len(self.splits["pretrain"]),
            num_classes=self.num_classes,
            mean=tuple(self.info.mean),
            std=tuple(self.info.std),
            image_size=int(self.eval_size),
            batch_size=int(self.batch_size),
        )

    # ---- loaders ----------------------------------------------------------------------------
    def _loader(self, ds, batch_size: int, train: bool) -> DataLoader:
        rank, world = (
            (self.trainer.global_rank, self.trainer.world_size)
            if self.trainer is not None
            else (0, 1)
        )
        # our own sharding (Trainer(use_distributed_sampler=False)): the order resumes mid-epoch
        sampler = EpochSampler(
            len(ds), shuffle=train, seed=self.seed, rank=rank, world_size=world, drop_last=train
        )
        if train:
            self.train_sampler = sampler
            if self._pending_skip is not None:
                sampler.skip_next(*self._pending_skip)
                self._pending_skip = None
        # a private generator for the workers' base seed: creating an iterator never draws from the
        # global RNG, so a resumed run's global random stream matches an uninterrupted one
        gen = torch.Generator().manual_seed(self.seed + 7919 * rank)
        if isinstance(ds, TensorImages) and self.use_device_views:
            return DataLoader(
                _BatchIndexed(ds),
                batch_size=batch_size,
                sampler=sampler,
                drop_last=train,
                collate_fn=_passthrough,
                num_workers=0,
                generator=gen,
            )
        workers = self.num_workers
        return DataLoader(
            ds,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=train,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            generator=gen,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.splits["pretrain"], self.batch_size, train=True)

    def val_dataloader(self):
        if self.splits.get("train") is None or self.splits.get("test") is None:
            return []
        # 0: the un-augmented labelled train set (kNN bank), 1: the test set
        return [
            self._loader(self.splits["train"], self.eval_batch_size, train=False),
            self._loader(self.splits["test"], self.eval_batch_size, train=False),
        ]

    # ---- on-device views ------------------------------------------------------------------------
    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, labels, index = batch
        training = self.trainer is not None and self.trainer.training
        if self.use_device_views:
            x = self.batch_views(x) if training else self.batch_eval(x)
        if self.channels_last:
            if isinstance(x, (list, tuple)):
                x = [v.contiguous(memory_format=torch.channels_last) for v in x]
            else:
                x = x.contiguous(memory_format=torch.channels_last)
        return x, labels, index

    # ---- exact resume: view RNG and the position in the epoch ----------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if getattr(self, "use_device_views", False):
            state["view_rng"] = self.batch_views.rng_state()
        trainer = self.trainer
        if trainer is not None and trainer.training:
            # batches of this epoch already trained on (a mid-epoch checkpoint resumes after them)
            done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
            if (
                done >= trainer.num_training_batches
            ):  # an epoch-end checkpoint: the next epoch starts afresh
                done = 0
            state["position"] = {
                "epoch": trainer.current_epoch,
                "batches": int(done),
                "batch_size": self.batch_size,
            }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "view_rng" in state_dict and getattr(self, "use_device_views", False):
            self.batch_views.set_rng_state(state_dict["view_rng"])
        pos = state_dict.get("position")
        if pos and pos["batches"] > 0:
            skip = (pos["epoch"], pos["batches"] * pos["batch_size"])
            if getattr(self, "train_sampler", None) is not None:
                self.train_sampler.skip_next(*skip)
            else:
                self._pending_skip = skip


class _Transformed(Dataset):
    """Per-item transform over an in-memory dataset (when device views are switched off)."""

    def __init__(self, data: TensorImages, transform):
        self.data, self.transform = data, transform
        self.labels = data.labels

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        img, label, idx = self.data[i]
        return self.transform(img), label, idx
