"""SSL objectives as pure functions of embeddings. Each names its paper and follows its formula."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssl_bench.nn.dist import gather_with_grad, world


def nt_xent(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5, gather: bool = True
) -> torch.Tensor:
    """NT-Xent of SimCLR (Chen et al. 2020, eq. 1), averaged over all 2N anchors.

    z1, z2: NxD projections of two views of the same N images (row i of z1 and z2 is a positive pair).
    For anchor i the positive is its other view; the 2N - 2 other embeddings of the (global) batch are
    negatives. With `gather`, negatives come from every rank (with gradients) and the loss is the mean
    over this rank's anchors, so DDP's gradient averaging reproduces the single-process gradient.
    """
    if z1.shape != z2.shape:
        raise ValueError(f"nt_xent: view shapes differ, {tuple(z1.shape)} vs {tuple(z2.shape)}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # queries: 2N x D
    rank, size = world() if gather else (0, 1)
    if size > 1:
        k1, k2 = gather_with_grad(z[:n]), gather_with_grad(z[n:])  # keys: (W*N) x D each
        keys = torch.cat([k1, k2])  # 2WN x D
    else:
        keys = z
    total = keys.shape[0] // 2  # W*N images in the global batch
    logits = z @ keys.T / temperature  # 2N x 2WN
    local = torch.arange(n, device=z.device) + rank * n  # global index of local images
    self_idx = torch.cat([local, local + total])  # each query's own column
    pos_idx = torch.cat([local + total, local])  # each query's positive column
    logits = logits.masked_fill(F.one_hot(self_idx, keys.shape[0]).bool(), float("-inf"))
    return F.cross_entropy(logits, pos_idx)


# ---- BYOL / SimSiam / SwAV ---------------------------------------------------------------------
def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss (Grill et al. 2020, eq. 2): ||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z), mean over N.

    p: NxD online predictions, z: NxD target projections (the caller passes them without gradient).
    The method sums the two directions, L = L(v, v') + L(v', v), as the paper's symmetrised loss.
    """
    return (2 - 2 * F.cosine_similarity(p.float(), z.float(), dim=1)).mean()


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """SimSiam's D(p, z) = -cos(p, z) (Chen & He 2020, eq. 1), mean over N. Stop-gradient is the caller's."""
    return -F.cosine_similarity(p.float(), z.float(), dim=1).mean()


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, iterations: int = 3, eps: float = 0.05) -> torch.Tensor:
    """SwAV's equipartitioned codes (Caron et al. 2020, sec. 3.1 / appendix A.1), in float32 even under autocast.

    scores: BxK prototype scores of the (local) batch. Q = exp(scores / eps), then `iterations` rounds of
    alternately scaling the K prototype rows to total 1/K and the B sample columns to total 1/B (B = global
    batch: under DDP the row sums are all-reduced). Returns BxK codes whose rows (one per sample) sum to 1;
    each prototype's mass over the global batch tends to B/K (exact only as iterations grow).
    """
    with torch.autocast(device_type=scores.device.type, enabled=False):
        s = scores.detach().float() / eps
        _, size = world()
        peak = s.max()
        if size > 1:
            torch.distributed.all_reduce(peak, op=torch.distributed.ReduceOp.MAX)
        q = torch.exp(s - peak).T  # K x B (a global constant cancels below)
        k, b = q.shape[0], q.shape[1] * size
        total = q.sum()
        if size > 1:
            torch.distributed.all_reduce(total)
        q /= total
        for _ in range(iterations):
            rows = q.sum(dim=1, keepdim=True)  # K x 1: mass per prototype
            if size > 1:
                torch.distributed.all_reduce(rows)
            q /= rows * k
            q /= q.sum(dim=0, keepdim=True) * b  # 1 x B: mass per sample
        return (q * b).T  # B x K, rows sum to 1


def swav_loss(
    scores: list[torch.Tensor], codes: list[torch.Tensor], temperature: float = 0.1
) -> torch.Tensor:
    """SwAV's swapped prediction (Caron et al. 2020, eq. 1 and the multi-crop eq. 3).

    scores: one NxK tensor of prototype scores per view (large crops first); codes: one NxK code tensor per
    large crop (`codes[i]` belongs to `scores[i]`). For each code i, every other view v predicts it:
    -sum_k q_i log softmax(s_v / T)_k, averaged over N, over the V - 1 views and over the codes.
    """
    total = scores[0].new_zeros((), dtype=torch.float32)
    for i, q in enumerate(codes):
        sub = total.new_zeros(())
        for v, s in enumerate(scores):
            if v != i:
                sub = (
                    sub
                    - (q.float() * F.log_softmax(s.float() / temperature, dim=1)).sum(dim=1).mean()
                )
        total = total + sub / (len(scores) - 1)
    return total / len(codes)


# ---- MoCo / InstDisc -----------------------------------------------------------------------------
def info_nce(
    q: torch.Tensor,
    k: torch.Tensor,
    queue: torch.Tensor,
    temperature: float = 0.07,
    return_terms: bool = False,
):
    """InfoNCE with a queue of negatives (MoCo, He et al. 2019, eq. 1 / Algorithm 1).

    q: NxD queries (gradients flow), k: NxD keys of the same N images (treated as constants), queue: KxD
    negatives with unit rows. q and k are L2-normalised here. logits = [q.k, q.queue^T] / T is N x (1+K)
    with the positive at column 0; the loss is cross-entropy towards column 0, mean over the N local
    queries (DDP's gradient averaging then gives the global mean: nothing here needs a gather).
    With `return_terms` also returns {pos_sim, neg_sim, acc}: mean cosines and the % of queries whose
    key beats every negative.
    """
    q = F.normalize(q.float(), dim=1)  # queries: NxD
    k = F.normalize(k.detach().float(), dim=1)  # keys: NxD
    l_pos = (q * k).sum(dim=1, keepdim=True)  # positive logits: Nx1
    l_neg = q @ queue.detach().float().T  # negative logits: NxK
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature  # Nx(1+K)
    labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    loss = F.cross_entropy(logits, labels)
    if not return_terms:
        return loss
    with torch.no_grad():
        terms = {
            "pos_sim": l_pos.mean(),
            "neg_sim": l_neg.mean(),
            "acc": 100.0 * (logits.argmax(dim=1) == 0).float().mean(),
        }
    return loss, terms


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
    """InstDisc's normalisation constant by Monte Carlo (Wu et al. 2018, eq. 6): Z ~= n * E_j[exp(v_j . f / T)]
    over the memory rows scored in this batch (positives, those of `positive_mask` if given, and negatives),
    averaged over ranks under DDP. Returns a 0-d float32 tensor."""
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
    """Noise-contrastive estimation of the non-parametric softmax (InstDisc, Wu et al. 2018, eq. 2-5).

    f: NxD features of the batch (gradients flow; L2-normalised here). positives: NxD memory rows v_i of
    the same images; negatives: m memory rows drawn from the noise distribution P_n = 1/n, either MxD
    shared by the batch or NxMxD (constants). With P(i|f) = exp(v_i . f / T) / Z and Z fixed
    (`estimate_nce_z`), a row is "data" with probability h(i, f) = P(i|f) / (P(i|f) + m P_n), and
        J = -mean_over_N [ log h(i, f_i) + sum_{j in negatives} log(1 - h(j, f_i)) ].
    Written with softplus: -log h = softplus(log(m P_n) - log P), -log(1 - h) = softplus(log P - log(m P_n)).
    `positive_mask` (N bools, optional) keeps the positive term only where it is True: a memory row that was
    never written holds no feature of its image yet, so it is no positive (the negative terms always count).
    With `return_terms` also returns {nce_pos, nce_neg, pos_sim}: the two halves of J and mean v_i . f_i
    (over the kept positives; 0 when none is kept).
    """
    s_pos, s_neg = _instdisc_scores(f, positives, negatives, temperature)
    m = s_neg.shape[1]
    log_z = torch.log(torch.as_tensor(z, dtype=torch.float32, device=s_pos.device))
    log_noise = torch.log(
        torch.tensor(m / num_samples, dtype=torch.float32, device=s_pos.device)
    )  # log(m P_n)
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
