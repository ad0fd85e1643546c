"""The two kinds of image datasets every split is made of.

`TensorImages` holds images in memory: one uint8 [N, 3, H, W] tensor (grayscale replicated to 3
channels at load time) plus int64 labels, so the data module can move whole batches to the device
and augment them there. `FolderImages` holds paths, decoded on CPU workers, with bad files skipped
(or raised) by name. Both return `(image, label, index)` and take a sorted index tensor in
`subset`.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ssl_bench.errors import ConfigError, DataError


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
    """Image files decoded on access: (transform(uint8 [3, H, W]) or that tensor, label, index).

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
            f"none of the {n} image files of this dataset could be read "
            f"(first: {self.samples[0][0]}); "
            "check the folder given as data.root."
        )


def decode_file(path: str) -> torch.Tensor:
    """uint8 [3, H, W] RGB from an image file; `DataError` naming the file if it cannot be
    decoded."""
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
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            arr = np.asarray(im.convert("RGB"))
    except Exception as e:  # PIL raises many types for broken files
        raise DataError(
            f"image file {path} is corrupt or truncated ({type(e).__name__}: {e}); "
            "delete or replace it."
        ) from e
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
