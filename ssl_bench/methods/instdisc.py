"""InstDisc: Unsupervised Feature Learning via Non-Parametric Instance Discrimination.
Wu, Xiong, Yu, Lin, 2018. https://arxiv.org/abs/1805.01978

Every training image is its own class. A memory bank holds one L2-normalised 128-d feature per
image; the non-parametric softmax P(i|f) = exp(v_i . f / T) / Z is trained by noise-contrastive
estimation against m = 4096 bank rows drawn uniformly (P_n = 1/n). After each batch only that
batch's rows move: v_i <- normalize(0.5 v_i + 0.5 f_i). One view per image is used.

The normaliser Z. The paper estimates it by Monte Carlo (eq. 6) and the official lemniscate code
does so once, on the first batch, against a bank of random vectors, then fixes it. On a long
ImageNet run that is harmless, but in a short run it is fatal: random rows score ~0 against f while
a random-init network's features are nearly parallel (cosine ~0.9), so once the bank holds real
features every noise row's P = exp(s/T)/Z is thousands of times m/n and the loss explodes (measured
on the LEARN recipe: loss 34 -> 205 in 25 steps, kNN 22.2 -> 21.8). Here, as a measured departure
that keeps the paper's estimator:
  * a row's first write stores the feature itself (no mix with its random init:
    `MemoryBank.copy_first_visit`; the bank and this schedule of Z are nn/memory_bank.py's
    `NCEMemory`, shared with CMC);
  * until every row has been written once (about the end of the first epoch; later when the loader
    drops a last partial batch) Z is re-estimated on every batch, eq. 6 over the batch's rows of the
    *current* bank, and then frozen (the value travels in checkpoints);
  * a row not yet written is no positive (it holds nothing of its image): its positive term is
    dropped, its image still learns from the negatives. From the second epoch on the loss is exactly
    the paper's.
`head_norm` (off by default: the paper's linear head) adds a BatchNorm without affine parameters
after the linear embedding. In short runs the paper's head lets the whole embedding drift away from
the stale bank rows (every f is pushed from the same old mean): measured z_std 0.035 -> 0.007 within
10 steps and kNN below its init; with the BN it stays ~0.088 (= 1/sqrt(128), uniform). MoCo's
`proj_norm` is the same cure.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_bench.errors import ConfigError
from ssl_bench.losses.nce import estimate_nce_z, instdisc_nce
from ssl_bench.methods.base import SSLMethod, embedding_std
from ssl_bench.nn.memory_bank import NCEMemory


class InstDisc(SSLMethod):
    def __init__(
        self,
        backbone: nn.Module,
        temperature: float = 0.07,
        proj_output_dim: int = 128,
        num_negatives: int = 4096,
        bank_momentum: float = 0.5,
        bank_size: int | None = None,
        head_norm: bool = False,
        **kwargs,
    ):
        super().__init__(backbone, **kwargs)
        if temperature <= 0:
            raise ConfigError(
                "method.temperature",
                f"must be positive, got {temperature}.",
                "use the paper's 0.07.",
            )
        if num_negatives < 1:
            raise ConfigError(
                "method.num_negatives",
                f"must be >= 1, got {num_negatives}.",
                "use the paper's 4096.",
            )
        if not 0.0 <= bank_momentum <= 1.0:
            raise ConfigError(
                "method.bank_momentum",
                f"must be in [0, 1], got {bank_momentum}.",
                "use the paper's 0.5.",
            )
        if bank_size is not None and bank_size < 1:
            raise ConfigError(
                "method.bank_size",
                f"must be positive or null (= the dataset size), got {bank_size}.",
            )
        self.temperature = temperature
        self.head = nn.Linear(self.feat_dim, proj_output_dim)  # the paper's linear 128-d embedding
        # + BN without affine: the embedding cannot drift as a whole (see the docstring)
        if head_norm:
            self.head = nn.Sequential(self.head, nn.BatchNorm1d(proj_output_dim, affine=False))
        # one row per training image: the pretraining set's size (DataInfo) when bank_size is null
        self.memory = NCEMemory(
            1, bank_size, self.data.num_samples, proj_output_dim, bank_momentum, num_negatives
        )
        (self.bank,) = self.memory.banks
        self.register_buffer("nce_z", torch.tensor(-1.0))  # Z of the NCE; < 0 until first estimated

    # ---- the loss on one view -----------------------------------------------------------------
    def training_loss(self, views, labels, index):
        feats = self.backbone(views[0])  # N x F
        f = F.normalize(self.head(feats).float(), dim=1)  # N x D
        # v_i of the batch N x D, m noise rows m x D shared by the batch, rows holding a feature N
        (positives,), (negatives,), (seen,) = self.memory.read(index)
        n = self.memory.num_samples
        if not self.memory.z_frozen(self.nce_z):  # first epoch: Z follows the bank as it fills
            self.nce_z.copy_(estimate_nce_z(f, positives, negatives, self.temperature, n, seen))
        loss, terms = instdisc_nce(
            f,
            positives,
            negatives,
            self.temperature,
            self.nce_z,
            n,
            return_terms=True,
            positive_mask=seen,
        )
        self.memory.write(index, [f])  # only the batch's rows move
        return {"loss": loss, "representation": feats, "z_std": embedding_std(f), **terms}
