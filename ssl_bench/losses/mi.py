"""Mutual-information objectives: neural lower bounds on MI as pure functions of critic scores T(x,
y), and the objectives of AMDIM and DIM built on them.

Each estimator returns the *estimate* (a quantity to maximise); a method's loss is its negative.
Scores come from any critic: DIM's 1x1 "encode-and-dot" heads, AMDIM's clipped dot products, CPC's
predictions, CMC's cross-view similarities. All three bounds follow Hjelm et al. 2019 (Deep InfoMax,
sec. 3.1):

* `jsd_mi`:     Jensen-Shannon estimator, eq. 4 (the f-GAN form of Nowozin et al. 2016)
                I_JSD = E_P[-sp(-T)] - E_{P x P~}[sp(T)],  sp = softplus
* `dv_mi`:      Donsker-Varadhan bound of MINE (Belghazi et al. 2018), eq. 2
                I_DV = E_P[T] - log E_{P x P~}[exp(T)]
* `infonce_mi`: InfoNCE (van den Oord et al. 2018), eq. 5
                I_NCE = E_P[T(x, y) - log sum_{x'} exp(T(x', y))], the sum over the positive
                and its negatives. (The bound on I itself is this value + log(number of
                candidates); the constant is left out.)

`batch_mi` arranges the usual in-batch case: a query per image i scored against candidates of every
image k (optionally at L locations each); the candidates of image i are the positives, those of
other images the negatives. Computed in float32 whatever the input dtype (bf16 autocast loses too
much in log-sum-exp). `amdim_nce` / `multiscale_nce` are AMDIM's objective (Bachman et al. 2019,
sec. 3.2-3.4), `dim_loss` and `prior_matching_losses` DIM's (Hjelm et al. 2019, eq. 7-8).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ssl_bench.nn.local_features import global_local_scores

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

    pos_mask (Q x K bool) marks each row's positives (at least one per row); `neg_mask` its
    negatives (default: every other candidate; each row needs at least one). Every positive p of row
    q is contrasted with the row's negatives only (not with the row's other positives), as in DIM's
    and AMDIM's local objectives:
        s_qp - log(exp(s_qp) + sum_{n in neg(q)} exp(s_qn)),
    averaged over all positives of all rows. With one positive per row this is minus the
    cross-entropy.
    """
    s = scores.float()
    pos_mask = pos_mask.to(torch.bool)
    neg_mask = ~pos_mask if neg_mask is None else neg_mask.to(torch.bool)
    neg_lse = torch.logsumexp(s.masked_fill(~neg_mask, float("-inf")), dim=1, keepdim=True)  # Q x 1
    log_softmax = s - torch.logaddexp(s, neg_lse)  # Q x K
    pos = pos_mask.to(s.dtype)
    return (log_softmax * pos).sum() / pos.sum()


def tanh_clip(scores: torch.Tensor, clip: float | None) -> torch.Tensor:
    """Soft clipping c * tanh(s / c) of AMDIM (Bachman et al. 2019, sec. 3.4); None leaves the
    scores as they are."""
    return scores if clip is None else clip * torch.tanh(scores / clip)


def batch_mi(scores: torch.Tensor, estimator: str) -> torch.Tensor:
    """The estimate of `estimator` ("jsd" | "dv" | "nce") from in-batch scores.

    scores: N x N (x L): scores[i, k, l] = T(query of image i, candidate l of image k). Positives
    are the entries with k == i (N*L of them), negatives those with k != i (N*(N-1)*L). For "nce"
    each positive (i, i, l) is contrasted with all N*(N-1)*L negatives of row i (Hjelm et al. 2019,
    eq. 5 with DIM's local candidates; AMDIM's NCE, sec. 3.2).
    """
    n = scores.shape[0]
    if scores.dim() == 2:
        scores = scores.unsqueeze(-1)
    # N x N x L
    eye = torch.eye(n, dtype=torch.bool, device=scores.device).unsqueeze(-1).expand_as(scores)
    if estimator == "jsd":
        return jsd_mi(scores[eye], scores[~eye])
    if estimator == "dv":
        return dv_mi(scores[eye], scores[~eye])
    if estimator == "nce":
        return infonce_mi(scores.reshape(n, -1), eye.reshape(n, -1))
    raise ValueError(f"unknown MI estimator '{estimator}', choose one of {', '.join(ESTIMATORS)}")


# ---- AMDIM -------------------------------------------------------------------------------------
def amdim_nce(
    src: torch.Tensor, trg: torch.Tensor, tclip: float | None = 20.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """One NCE task src -> trg of AMDIM (Bachman et al. 2019, sec. 3.2 and 3.4):
        s = <src_i, trg_k,l> / sqrt(D),  loss = -I_NCE(c tanh(s / c)),  penalty term mean(s^2).

    src: N x D (one antecedent per image), trg: N x D x L (the consequents of the other view).
    Returns (-InfoNCE over the clipped scores, mean of the squared raw scores)."""
    raw = global_local_scores(src, trg) / math.sqrt(src.shape[1])  # N x N x L
    return -batch_mi(tanh_clip(raw, tclip), "nce"), raw.pow(2).mean()


def multiscale_nce(
    r1: tuple[torch.Tensor, torch.Tensor],
    r5: tuple[torch.Tensor, torch.Tensor],
    r7: tuple[torch.Tensor, torch.Tensor],
    loc5: tuple[torch.Tensor, torch.Tensor],
    tclip: float | None = 20.0,
    score_reg: float = 4e-2,
) -> dict[str, torch.Tensor]:
    """AMDIM's objective for the two views a = 0, b = 1 (sec. 3.3-3.4):
        loss = nce_1t5 + nce_1t7 + nce_5t5 + score_reg * (sum over the 3 tasks of mean(s^2)),
    each task (`amdim_nce`) and its penalty averaged over the two directions a -> b and b -> a.

    r1[v]: N x D global embeddings of view v; r5[v], r7[v]: N x D x L5 / L7 local embeddings;
    loc5[v]: the N locations of r5[v] used as 5-5 antecedents. Returns the loss and its four terms.
    """
    out: dict[str, torch.Tensor] = {}
    penalty = r1[0].new_zeros((), dtype=torch.float32)
    idx = torch.arange(r1[0].shape[0], device=r1[0].device)
    for name, src, trg in (
        ("nce_1t5", r1, r5),
        ("nce_1t7", r1, r7),
        ("nce_5t5", tuple(r5[v][idx, :, loc5[v]] for v in (0, 1)), r5),
    ):
        (l_ab, s_ab), (l_ba, s_ba) = (
            amdim_nce(src[0], trg[1], tclip),
            amdim_nce(src[1], trg[0], tclip),
        )
        out[name] = 0.5 * (l_ab + l_ba)
        penalty = penalty + 0.5 * (s_ab + s_ba)
    out["score_penalty"] = score_reg * penalty
    out["loss"] = out["nce_1t5"] + out["nce_1t7"] + out["nce_5t5"] + out["score_penalty"]
    return out


# ---- DIM ---------------------------------------------------------------------------------------
def prior_matching_losses(
    real: torch.Tensor, fake: torch.Tensor, judged: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """DIM's adversarial prior matching (Hjelm et al. 2019, sec. 3.3, eq. 7) from discriminator
    logits:
        discriminator: -log D(v) - log(1 - D(q)),   encoder (non-saturating): -log D(q),
    v ~ the prior, q = the encoder's squashed output.

    real: D's logits of prior samples v; fake: of q without gradient to the encoder (trains D);
    judged: of q by a parameter-detached D (trains the encoder only). Returns (encoder loss,
    discriminator loss)."""
    disc_loss = F.binary_cross_entropy_with_logits(
        real, torch.ones_like(real)
    ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
    encoder_loss = F.binary_cross_entropy_with_logits(judged, torch.ones_like(judged))
    return encoder_loss, disc_loss


def dim_loss(
    estimator: str,
    local_scores: torch.Tensor | None = None,
    global_scores: torch.Tensor | None = None,
    prior: tuple[torch.Tensor, torch.Tensor] | None = None,
    alpha: float = 0.0,
    beta: float = 1.0,
    gamma: float = 0.1,
) -> dict[str, torch.Tensor]:
    """DIM's objective (Hjelm et al. 2019, eq. 8) as a loss to minimise:
        loss = -beta mean_ij I(C_ij(X); Y) - alpha I(X; Y) + gamma L_enc + L_disc.

    local_scores: N x N x L scores of Y_i against location l of image k's map (local DIM, sec. 3.2);
    global_scores: N x N scores of Y_i against image k's whole map (global DIM, sec. 3.1); both
    estimated by `estimator` (`batch_mi`). prior: (L_enc, L_disc) of `prior_matching_losses`. A term
    whose input is None is left out. Returns the loss and its logged terms (local_mi, global_mi,
    prior_encoder, prior_disc)."""
    ref = next(t for t in (local_scores, global_scores, *(prior or ())) if t is not None)
    loss = ref.new_zeros((), dtype=torch.float32)
    terms: dict[str, torch.Tensor] = {}
    if local_scores is not None:
        local_mi = batch_mi(local_scores, estimator)
        loss = loss - beta * local_mi
        terms["local_mi"] = local_mi.detach()
    if global_scores is not None:
        global_mi = batch_mi(global_scores, estimator)
        loss = loss - alpha * global_mi
        terms["global_mi"] = global_mi.detach()
    if prior is not None:
        encoder_loss, disc_loss = prior
        loss = loss + gamma * encoder_loss + disc_loss
        terms.update(prior_encoder=encoder_loss.detach(), prior_disc=disc_loss.detach())
    return {"loss": loss, **terms}
