"""CPC v2: Data-Efficient Image Recognition with Contrastive Predictive Coding.
Henaff, Srinivas, De Fauw, Razavi, Doersch, Eslami, van den Oord, 2020. https://arxiv.org/abs/1905.09272

Each image is cut into a G x G grid of overlapping patches (nn/patch_grid.py; 7x7 by default), every
patch is augmented on its own and encoded by the backbone into z_{i,j} (one call for all B*G*G patches).
A masked-convolution context network (nn/masked_conv.py) gives c_{i,j} from the rows u <= i only, and a
linear map W_k per offset predicts z_{i+k,j} for k = 1..K (sec. 2.1). The InfoNCE loss (eq. 1-2) scores
the prediction against the true patch and negatives "taken from other locations in the image and other
images in the mini-batch". Sec. 4.1 improvements, all here: layer normalisation in the encoder
(`encoder_norm`: batch statistics let patches see each other), predictions in several directions
(`directions`: the grid is rotated, one context network and one set of W_k per direction) and
patch-based augmentation (`patch_augment`: colour dropping, flips, spatial and colour transformations).

The evaluated representation (forward) is the paper's linear-evaluation feature: the patch embeddings of
the whole grid, mean-pooled (sec. 4.2) - so kNN and the probe see full images cut the same way.
Departures: the grid's proportions scale with the image (the paper's 256 px / 64 px patches); the
encoder is any timm backbone (BatchNorm swapped for per-sample LayerNorm = GroupNorm with one group)
rather than ResNet-161; `num_negatives` can sub-sample the keys shared by all predictions of a step
(null = every patch of the batch, as the paper). Under DDP the keys are this rank's patches.
`temperature` (null = the paper's dot products) scores cosine / T instead. Measured in short CPU runs (30
steps, synthetic, narrow ResNet-18): the paper's layer-normalised encoder collapsed (z_std 0.03 -> 0.005, loss at
log N) where batch norm learned, and dot-product scores start far above chance; the fmnist experiment therefore
uses encoder_norm=batch and temperature=0.1, while conf/method/cpc_v2.yaml keeps the paper's settings.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssl_bench.errors import ConfigError
from ssl_bench.methods.base import SSLMethod, embedding_std
from ssl_bench.nn.masked_conv import ContextNetwork
from ssl_bench.nn.patch_grid import PatchAugment, cut_patches, grid_geometry

#: quarter turns (torch.rot90 over H, W) that make a direction of prediction point down the rows
DIRECTIONS = {"down": 0, "left": 1, "up": 2, "right": 3}


def grid_info_nce(pred: torch.Tensor, z: torch.Tensor, offset: int, neg_index: torch.Tensor | None = None,
                  temperature: float | None = None):
    """CPC's InfoNCE (Henaff et al. 2020, eq. 1-2) for one offset k, per prediction.

    pred: B x D x G x G, pred[b, :, i, j] = W_k c_{i,j} predicts z[b, :, i + k, j] (rows i < G - k are used).
    z: B x D x G x G patch embeddings. Keys: every patch of the batch (B*G*G, the
    positive among them) or, with `neg_index`, the positive plus z at those flat (b, i, j) positions (a
    drawn index equal to the positive is masked out). Scores are the paper's dot products, or with a
    `temperature` cosine similarities / temperature. Returns (loss per prediction, correct per prediction).
    """
    B, D, G, _ = z.shape
    if not 0 < offset < G:
        raise ValueError(f"offset {offset} must be in [1, {G - 1}] on a {G}x{G} grid")
    q = pred[:, :, :G - offset].permute(0, 2, 3, 1).reshape(-1, D).float()      # queries: B(G-k)G x D
    keys = z.permute(0, 2, 3, 1).reshape(-1, D).float()                           # keys: BGG x D
    if temperature is not None:
        q, keys = F.normalize(q, dim=1) / temperature, F.normalize(keys, dim=1)
    b, i, j = torch.meshgrid(torch.arange(B), torch.arange(G - offset), torch.arange(G), indexing="ij")
    target = (b * G * G + (i + offset) * G + j).flatten().to(z.device)            # the positive's flat index
    if neg_index is None:
        logits, labels = q @ keys.T, target
    else:
        pos = (q * keys[target]).sum(dim=1, keepdim=True)
        neg = (q @ keys[neg_index].T).masked_fill(neg_index.unsqueeze(0) == target.unsqueeze(1), float("-inf"))
        logits, labels = torch.cat([pos, neg], dim=1), torch.zeros_like(target)
    with torch.no_grad():
        correct = logits.argmax(dim=1) == labels
    return F.cross_entropy(logits, labels, reduction="none"), correct


def batchnorm_to_layernorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d by GroupNorm(1, C) (LayerNorm over C, H, W of each sample), keeping the affine
    parameters (e.g. timm's zero-initialised last gamma of each block)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            norm = nn.GroupNorm(1, child.num_features, eps=child.eps, affine=child.affine)
            if child.affine:
                norm.weight.data.copy_(child.weight.data)
                norm.bias.data.copy_(child.bias.data)
            setattr(module, name, norm)
        else:
            batchnorm_to_layernorm(child)
    return module


class CPCv2(SSLMethod):
    num_large_crops = 1

    def __init__(self, backbone: nn.Module, patch_size: int | None = None, patch_stride: int | None = None,
                 pred_steps: int = 3, directions: Sequence[str] = ("down", "up", "left", "right"),
                 context_blocks: int = 5, context_hidden: int = 256, context_kernel: int = 3,
                 num_negatives: int | None = None, temperature: float | None = None, encoder_norm: str = "layer",
                 patch_augment: dict | None = None,
                 pixel_mean: Sequence[float] | None = None, pixel_std: Sequence[float] | None = None, **kwargs):
        if encoder_norm not in ("layer", "batch"):
            raise ConfigError("method.encoder_norm", f"must be layer or batch, got {encoder_norm!r}.",
                              "use layer (the paper, sec. 4.1).")
        super().__init__(batchnorm_to_layernorm(backbone) if encoder_norm == "layer" else backbone, **kwargs)
        if pred_steps < 1:
            raise ConfigError("method.pred_steps", f"must be >= 1, got {pred_steps}.", "use e.g. 3.")
        unknown = [d for d in directions if d not in DIRECTIONS]
        if not directions or unknown or len(set(directions)) != len(directions):
            raise ConfigError("method.directions", f"{list(directions)} is not a list of distinct directions.",
                              f"choose among {', '.join(DIRECTIONS)}.")
        if num_negatives is not None and num_negatives < 1:
            raise ConfigError("method.num_negatives", f"must be >= 1 or null (every patch), got {num_negatives}.")
        if temperature is not None and temperature <= 0:
            raise ConfigError("method.temperature", f"must be positive or null (dot products), got {temperature}.")
        self.patch_size, self.patch_stride, self.temperature = patch_size, patch_stride, temperature
        self.pred_steps, self.directions, self.num_negatives = int(pred_steps), list(directions), num_negatives
        try:
            self.context = nn.ModuleDict({d: ContextNetwork(self.feat_dim, context_hidden, context_blocks,
                                                            context_kernel) for d in self.directions})
            self.patch_augment = PatchAugment(**(patch_augment or {}))
        except (ValueError, TypeError) as err:
            raise ConfigError("method", f"CPC v2 rejected its context / patch_augment settings: {err}",
                              "check conf/method/cpc_v2.yaml.") from None
        # W_k, k = 1..K, stacked: one 1x1 conv D -> K*D per direction
        self.predictors = nn.ModuleDict({d: nn.Conv2d(self.feat_dim, self.pred_steps * self.feat_dim, 1)
                                         for d in self.directions})
        if pixel_mean is not None and pixel_std is not None:
            self.patch_augment.set_stats(pixel_mean, pixel_std)
        self._stats_given = pixel_mean is not None and pixel_std is not None

    def setup(self, stage: str) -> None:
        """The patch colour augmentation works in [0, 1] RGB: take the data's normalisation."""
        info = getattr(getattr(self._trainer, "datamodule", None), "info", None)
        if info is not None and not self._stats_given:
            self.patch_augment.set_stats(info.mean, info.std)

    # ---- the representation ------------------------------------------------------------------------
    def encode_grid(self, x: torch.Tensor, augment: bool = False) -> torch.Tensor:
        """[B, C, H, W] -> patch embeddings z [B, D, G, G] (one backbone call for all patches)."""
        try:
            patch, stride, _ = grid_geometry(x.shape[-1], self.patch_size, self.patch_stride)
        except ValueError as err:
            raise ConfigError("method.patch_size", str(err), "set method.patch_size / patch_stride, or null.") from None
        patches, g = cut_patches(x, patch, stride)                     # B*G*G x C x p x p
        if augment:
            patches = self.patch_augment(patches)
        z = self.backbone(patches)                                      # B*G*G x D
        return z.reshape(x.shape[0], g, g, -1).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mean-pooled patch embeddings of the grid (the paper's linear-evaluation feature): B x D."""
        return self.encode_grid(x).mean(dim=(2, 3))

    # ---- the loss ----------------------------------------------------------------------------------
    def training_loss(self, views, labels, index):
        z = self.encode_grid(views[0], augment=True)                   # B x D x G x G
        B, D, G, _ = z.shape
        if self.pred_steps >= G:
            raise ConfigError("method.pred_steps", f"{self.pred_steps} rows ahead do not fit a {G}x{G} grid.",
                              f"set method.pred_steps <= {G - 1}.")
        neg_index = None
        if self.num_negatives is not None and self.num_negatives < B * G * G:
            neg_index = torch.randint(0, B * G * G, (self.num_negatives,), device=z.device)
        losses, correct = [], []
        for d in self.directions:
            zr = torch.rot90(z, DIRECTIONS[d], dims=(2, 3))           # this direction points down the rows
            preds = self.predictors[d](self.context[d](zr))            # B x K*D x G x G
            for k in range(1, self.pred_steps + 1):
                loss_k, ok = grid_info_nce(preds[:, (k - 1) * D:k * D], zr, k, neg_index, self.temperature)
                losses.append(loss_k)
                correct.append(ok)
        loss = torch.cat(losses).mean()                                # mean over every (direction, k, b, i, j)
        feats = z.mean(dim=(2, 3))                                     # B x D, as forward()
        z_flat = z.permute(0, 2, 3, 1).reshape(-1, D)
        return {"loss": loss, "feats": feats, "z_std": embedding_std(z_flat),
                "cpc_acc": 100.0 * torch.cat(correct).float().mean()}
