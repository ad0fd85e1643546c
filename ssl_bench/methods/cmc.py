"""CMC: Contrastive Multiview Coding. Tian, Krishnan, Isola, 2020 (ECCV).
https://arxiv.org/abs/1906.05849

The views of an image are groups of its Lab channels (sec. 4.1: L against ab; nn/color.py converts
the normalised RGB batch). Each view has its own encoder (built by `backbone_factory(in_chans=...)`,
the same backbone config) and a linear head to a 128-d L2-normalised embedding. Views of the same
image are pulled together, views of different images pushed apart (sec. 3.1): for two views
    L(V1, V2) = L^{V1,V2} + L^{V2,V1},  L^{V1,V2} = -E log h(v1_i, v2_i) / sum_j h(v1_i, v2_j),
with h = exp(cos / T). Negatives come from a memory bank per view with noise-contrastive estimation
(`negatives: bank`, sec. 3.3, as InstDisc: the anchor of view a is scored against the bank of view
b, whose row i is the positive) or from the other images of the batch (`negatives: batch`). For more
than two views (sec. 3.2) `graph: core` sums L(V1, Vj) over j > 1 (the first group is the core view)
and `graph: full` sums L(Vi, Vj) over all pairs i < j.

The representation (forward) is the concatenation of every encoder's features of the same image, as
the paper's linear evaluation on L + ab (sec. 4.1); `self.backbone` is that multi-view encoder, so
the probe and kNN see it; the 3-channel backbone that build_method passes is not used.
`crop_per_view` gives view g its own random crop (views[g]): a grey image (Fashion-MNIST) has no ab,
so its views are two crops of L. Bank NCE details (normaliser Z re-estimated per batch until every
row is written, first visit copies the feature, `head_norm`) follow InstDisc here, with the same
component (nn/memory_bank.py `NCEMemory`); the noise rows are shared by the batch (the official code
draws them per sample), the same estimator at a fraction of the memory. The losses are
ssl_bench/losses: `cross_view_nce` (bank) and `cross_view_batch_loss` (batch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssl_bench.errors import ConfigError
from ssl_bench.losses.contrastive import cross_view_batch_loss
from ssl_bench.losses.nce import cross_view_nce, estimate_nce_z
from ssl_bench.methods.base import SSLMethod, embedding_std
from ssl_bench.nn.color import ColorSplit, parse_channel_groups
from ssl_bench.nn.memory_bank import NCEMemory


def view_pairs(num_views: int, graph: str) -> list[tuple[int, int]]:
    """Sec. 3.2: core view = [(0, j) for j > 0]; full graph = every pair i < j."""
    if graph == "core":
        return [(0, j) for j in range(1, num_views)]
    return [(i, j) for i in range(num_views) for j in range(i + 1, num_views)]


class MultiViewEncoder(nn.Module):
    """Normalised RGB -> per-view Lab channel groups -> one encoder each; forward concatenates their
    features."""

    def __init__(self, groups: list[list[int]], factory: Callable[..., nn.Module]):
        super().__init__()
        self.split = ColorSplit(groups)
        self.encoders = nn.ModuleList([factory(in_chans=len(g)) for g in groups])
        self.num_features = sum(int(e.num_features) for e in self.encoders)

    def encode(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [enc(x) for enc, x in zip(self.encoders, inputs)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.encode(self.split(x)), dim=1)


class CMC(SSLMethod):
    min_batch_size = 2

    def __init__(
        self,
        backbone: nn.Module,
        backbone_factory: Callable[..., nn.Module] | None = None,
        views: Sequence[Sequence[str]] = (("L",), ("a", "b")),
        graph: str = "core",
        negatives: str = "bank",
        temperature: float = 0.07,
        proj_output_dim: int = 128,
        num_negatives: int = 16384,
        bank_momentum: float = 0.5,
        bank_size: int | None = None,
        head_norm: bool = False,
        crop_per_view: bool = False,
        **kwargs,
    ):
        try:
            groups = parse_channel_groups(views)
        except ValueError as err:
            raise ConfigError(
                "method.views", str(err), "write e.g. method.views=[[L],[a,b]]."
            ) from None
        for key, value, ok in (
            ("graph", graph, ("core", "full")),
            ("negatives", negatives, ("bank", "batch")),
        ):
            if value not in ok:
                raise ConfigError(
                    f"method.{key}", f"must be one of {', '.join(ok)}, got {value!r}."
                )
        if temperature <= 0 or num_negatives < 1 or not 0 <= bank_momentum <= 1:
            raise ConfigError(
                "method",
                f"CMC needs temperature > 0, num_negatives >= 1 and bank_momentum in [0, 1] "
                f"(got {temperature}, {num_negatives}, {bank_momentum}).",
                "use the paper's 0.07, 16384, 0.5.",
            )
        if backbone_factory is None:
            raise ConfigError(
                "method",
                "CMC builds one encoder per view and needs a backbone_factory.",
                "run it through ssl_bench.training.build_method (python -m ssl_bench method=cmc).",
            )
        super().__init__(MultiViewEncoder(groups, backbone_factory), **kwargs)
        self.num_views, self.pairs = len(groups), view_pairs(len(groups), graph)
        self.negatives, self.temperature = negatives, temperature
        self.crop_per_view = crop_per_view
        # the Lab conversion undoes the data's normalisation first
        self.backbone.split.set_stats(self.data.mean, self.data.std)
        heads = []
        for enc in self.backbone.encoders:  # the paper's linear 128-d embedding per view
            head = nn.Linear(int(enc.num_features), proj_output_dim)
            if head_norm:
                head = nn.Sequential(head, nn.BatchNorm1d(proj_output_dim, affine=False))
            heads.append(head)
        self.heads = nn.ModuleList(heads)
        # negatives: bank - one bank per view, one row per training image
        self.memory = (
            NCEMemory(
                self.num_views,
                bank_size,
                self.data.num_samples,
                proj_output_dim,
                bank_momentum,
                num_negatives,
            )
            if negatives == "bank"
            else None
        )
        self.banks = nn.ModuleList(self.memory.banks if self.memory is not None else [])
        # Z of anchor view a against the bank of view b; < 0 until first estimated
        self.register_buffer("nce_z", torch.full((self.num_views, self.num_views), -1.0))

    # ---- the loss on the views' channel groups --------------------------------------------------
    def embed(self, views: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(encoder features N x F_v, L2-normalised embeddings N x D), one of each per view."""
        if self.crop_per_view:
            if len(views) < self.num_views:
                raise ConfigError(
                    "augmentation.views",
                    f"crop_per_view needs {self.num_views} crops, got {len(views)}.",
                    f"set num_crops: {self.num_views}.",
                )
            inputs = [self.backbone.split(views[g])[g] for g in range(self.num_views)]
        else:
            inputs = self.backbone.split(views[0])  # one crop, its channel groups
        feats = self.backbone.encode(inputs)  # per view: N x F_v
        return feats, [F.normalize(h(x).float(), dim=1) for h, x in zip(self.heads, feats)]

    def training_loss(self, views, labels, index):
        feats, f = self.embed(views)  # per view: N x F_v, N x D
        out = {"representation": torch.cat(feats, dim=1), "z_std": embedding_std(f[0])}
        if self.negatives == "batch":
            out["loss"] = cross_view_batch_loss(f, self.temperature, self.pairs)
            return out
        # per bank: the batch's rows, noise rows (one draw shared by the views and the batch),
        # written rows
        positives, noise_rows, seen = self.memory.read(index)
        n = self.memory.num_samples
        if not self.memory.z_frozen(self.nce_z):  # Z follows the banks as they fill (see InstDisc)
            for a, b in self.pairs:
                for anchor, bank in ((a, b), (b, a)):
                    self.nce_z[anchor, bank] = estimate_nce_z(
                        f[anchor],
                        positives[bank],
                        noise_rows[bank],
                        self.temperature,
                        n,
                        seen[bank],
                    )
        out["loss"] = cross_view_nce(
            f, positives, noise_rows, self.temperature, self.nce_z, n, self.pairs, seen
        )
        self.memory.write(index, f)  # only the batch's rows move
        return out
