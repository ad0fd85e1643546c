"""DataInfo: what a method is told about its data, in its constructor.

A method never reads `trainer.datamodule` (DESIGN.md: explicit contracts). The datamodule describes
the data it loaded (`SSLDataModule.data_info()`), `training.build_method` passes that to the method,
and a method built by hand (tests, notebooks) gets the defaults or what it is given.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataInfo:
    #: images of the pretraining split (a memory bank holds one row per image); 0 when unknown
    num_samples: int = 0
    #: classes of the labelled splits; 0: no labels, so no online probe or kNN
    num_classes: int = 0
    #: the normalisation the views come with; methods that work in pixel space (Lab colours,
    #: patch colour ops) undo it
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    #: side of the evaluation images (and of the large views by default)
    image_size: int = 32
    #: images per device in a training batch; the global batch is this x devices x gradient
    #: accumulation
    batch_size: int = 256
