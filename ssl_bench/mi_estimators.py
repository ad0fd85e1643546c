"""Neural lower bounds on mutual information, as pure functions of critic scores T(x, y).

Each function returns the *estimate* (a quantity to maximise); a method's loss is its negative. Scores come
from any critic: DIM's 1x1 "encode-and-dot" heads, AMDIM's clipped dot products, CPC's predictions, CMC's
cross-view similarities. All three bounds follow Hjelm et al. 2019 (Deep InfoMax, sec. 3.1):

* `jsd_mi`:     Jensen-Shannon estimator, eq. 4 (the f-GAN form of Nowozin et al. 2016)
                I_JSD = E_P[-sp(-T)] - E_{P x P~}[sp(T)],  sp = softplus
* `dv_mi`:      Donsker-Varadhan bound of MINE (Belghazi et al. 2018), eq. 2
                I_DV = E_P[T] - log E_{P x P~}[exp(T)]
* `infonce_mi`: InfoNCE (van den Oord et al. 2018), eq. 5
                I_NCE = E_P[T(x, y) - log sum_{x'} exp(T(x', y))], the sum over the positive and its negatives.
                (The bound on I itself is this value + log(number of candidates); the constant is left out.)

`batch_mi` arranges the usual in-batch case: a query per image i scored against candidates of every image k
(optionally at L locations each); the candidates of image i are the positives, those of other images the
negatives. Computed in float32 whatever the input dtype (bf16 autocast loses too much in log-sum-exp).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ESTIMATORS = ("jsd", "dv", "nce")


def jsd_mi(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """E_pos[-softplus(-T)] - E_neg[softplus(T)] over all entries of each tensor (any shapes)."""
    pos, neg = pos_scores.float(), neg_scores.float()
    return -F.softplus(-pos).mean() - F.softplus(neg).mean()


def dv_mi(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """E_pos[T] - log E_neg[exp(T)] over all entries (log-mean-exp computed stably)."""
    pos, neg = pos_scores.float(), neg_scores.float().flatten()
    return pos.mean() - (torch.logsumexp(neg, dim=0) - math.log(neg.numel()))


def infonce_mi(
    scores: torch.Tensor, pos_mask: torch.Tensor, neg_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """InfoNCE over a Q x K score matrix: row q is a query, column k a candidate.

    pos_mask (Q x K bool) marks each row's positives (at least one per row); `neg_mask` its negatives (default:
    every other candidate; each row needs at least one). Every positive p of row q is contrasted with the
    row's negatives only (not with the row's other positives), as in DIM's and AMDIM's local objectives:
        s_qp - log(exp(s_qp) + sum_{n in neg(q)} exp(s_qn)),
    averaged over all positives of all rows. With one positive per row this is minus the cross-entropy.
    """
    s = scores.float()
    pos_mask = pos_mask.to(torch.bool)
    neg_mask = ~pos_mask if neg_mask is None else neg_mask.to(torch.bool)
    neg_lse = torch.logsumexp(s.masked_fill(~neg_mask, float("-inf")), dim=1, keepdim=True)  # Q x 1
    log_softmax = s - torch.logaddexp(s, neg_lse)  # Q x K
    pos = pos_mask.to(s.dtype)
    return (log_softmax * pos).sum() / pos.sum()


def tanh_clip(scores: torch.Tensor, clip: float | None) -> torch.Tensor:
    """Soft clipping c * tanh(s / c) of AMDIM (Bachman et al. 2019, sec. 3.4); None leaves the scores as they are."""
    return scores if clip is None else clip * torch.tanh(scores / clip)


def batch_mi(scores: torch.Tensor, estimator: str) -> torch.Tensor:
    """The estimate of `estimator` ("jsd" | "dv" | "nce") from in-batch scores.

    scores: N x N (x L): scores[i, k, l] = T(query of image i, candidate l of image k). Positives are the
    entries with k == i (N*L of them), negatives those with k != i (N*(N-1)*L). For "nce" each positive
    (i, i, l) is contrasted with all N*(N-1)*L negatives of row i (Hjelm et al. 2019, eq. 5 with DIM's local
    candidates; AMDIM's NCE, sec. 3.2).
    """
    n = scores.shape[0]
    if scores.dim() == 2:
        scores = scores.unsqueeze(-1)
    eye = (
        torch.eye(n, dtype=torch.bool, device=scores.device).unsqueeze(-1).expand_as(scores)
    )  # N x N x L
    if estimator == "jsd":
        return jsd_mi(scores[eye], scores[~eye])
    if estimator == "dv":
        return dv_mi(scores[eye], scores[~eye])
    if estimator == "nce":
        return infonce_mi(scores.reshape(n, -1), eye.reshape(n, -1))
    raise ValueError(f"unknown MI estimator '{estimator}', choose one of {', '.join(ESTIMATORS)}")
