"""Noise-contrastive estimation against a memory bank (InstDisc; CMC's cross-view form).

The memory (rows v_i, the noise draw, when Z is estimated) is nn/memory_bank.py's; these functions
only score given rows. Under DDP nothing here needs a gather except the Z estimate (all-reduced).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ssl_bench.nn.dist import world


def _instdisc_scores(f, positives, negatives, temperature):
    f = F.normalize(f.float(), dim=1)  # NxD
    s_pos = (f * positives.detach().float()).sum(dim=1) / temperature  # N
    neg = negatives.detach().float()
    if neg.dim() == 2:  # MxD shared by the whole batch
        s_neg = f @ neg.T / temperature  # NxM
    else:  # NxMxD, one draw per sample
        s_neg = torch.einsum("nd,nmd->nm", f, neg) / temperature
    return s_pos, s_neg


@torch.no_grad()
def estimate_nce_z(
    f: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float,
    num_samples: int,
    positive_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """InstDisc's normalisation constant by Monte Carlo (Wu et al. 2018, eq. 6):
        Z ~= n E_j[exp(v_j . f / T)]
    over the memory rows scored in this batch (positives, those of `positive_mask` if given, and
    negatives), averaged over ranks under DDP. Returns a 0-d float32 tensor."""
    s_pos, s_neg = _instdisc_scores(f, positives, negatives, temperature)
    if positive_mask is not None:
        s_pos = s_pos[positive_mask]
    mean = torch.cat([s_pos.exp(), s_neg.exp().flatten()]).mean()
    _, size = world()
    if size > 1:
        torch.distributed.all_reduce(mean)
        mean = mean / size
    return mean * num_samples


def instdisc_nce(
    f: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float,
    z: float | torch.Tensor,
    num_samples: int,
    return_terms: bool = False,
    positive_mask: torch.Tensor | None = None,
):
    """Noise-contrastive estimation of the non-parametric softmax (InstDisc, Wu et al. 2018, eq.
    2-5):
        J = -mean_over_N [ log h(i, f_i) + sum_{j in negatives} log(1 - h(j, f_i)) ],
        h(i, f) = P(i|f) / (P(i|f) + m P_n),  P(i|f) = exp(v_i . f / T) / Z,  P_n = 1/n.

    f: NxD features of the batch (gradients flow; L2-normalised here). positives: NxD memory rows
    v_i of the same images; negatives: m memory rows drawn from the noise distribution P_n, either
    MxD shared by the batch or NxMxD (constants). Z is fixed (`estimate_nce_z`). Written with
    softplus: -log h = softplus(log(m P_n) - log P), -log(1 - h) = softplus(log P - log(m P_n)).
    `positive_mask` (N bools, optional) keeps the positive term only where it is True: a memory row
    that was never written holds no feature of its image yet, so it is no positive (the negative
    terms always count). With `return_terms` also returns {nce_pos, nce_neg, pos_sim}: the two
    halves of J and mean v_i . f_i (over the kept positives; 0 when none is kept).
    """
    s_pos, s_neg = _instdisc_scores(f, positives, negatives, temperature)
    m = s_neg.shape[1]
    log_z = torch.log(torch.as_tensor(z, dtype=torch.float32, device=s_pos.device))
    # log(m P_n)
    log_noise = torch.log(torch.tensor(m / num_samples, dtype=torch.float32, device=s_pos.device))
    pos_term = F.softplus(log_noise - (s_pos - log_z))  # -log h(i, f_i):       N
    neg_term = F.softplus((s_neg - log_z) - log_noise).sum(dim=1)  # -sum log(1 - h(j, f_i)): N
    keep = torch.ones_like(pos_term) if positive_mask is None else positive_mask.to(pos_term.dtype)
    loss = (pos_term * keep + neg_term).mean()
    if not return_terms:
        return loss
    kept = keep.sum().clamp(min=1.0)
    return loss, {
        "nce_pos": ((pos_term * keep).sum() / kept).detach(),
        "nce_neg": neg_term.mean().detach(),
        "pos_sim": ((s_pos * keep).sum() / kept * temperature).detach(),
    }


def cross_view_nce(
    f: Sequence[torch.Tensor],
    positives: Sequence[torch.Tensor],
    negatives: Sequence[torch.Tensor],
    temperature: float,
    z: torch.Tensor,
    num_samples: int,
    pairs: Sequence[tuple[int, int]],
    positive_masks: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """CMC's NCE with a memory per view (Tian et al. 2020, sec. 3.3), summed over the view pairs:
        L(V_a, V_b) = J(f_a | memory of b) + J(f_b | memory of a),
    J: InstDisc's eq. 2-5 (`instdisc_nce`) with the other view's rows as positives and noise.

    f: N x D per view; positives[v]: bank v's rows of the batch; negatives[v]: M x D noise rows of
    bank v; z[a, b]: the normaliser of anchor view a against bank b; positive_masks[v]: bank v's
    written rows."""
    total = f[0].new_zeros((), dtype=torch.float32)
    for a, b in pairs:
        for anchor, bank in ((a, b), (b, a)):
            mask = positive_masks[bank] if positive_masks is not None else None
            total = total + instdisc_nce(
                f[anchor],
                positives[bank],
                negatives[bank],
                temperature,
                z[anchor, bank],
                num_samples,
                positive_mask=mask,
            )
    return total
