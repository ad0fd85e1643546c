"""Clustering losses: SwAV's equipartitioned codes (Sinkhorn-Knopp) and its swapped prediction."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssl_bench.nn.dist import world


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, iterations: int = 3, eps: float = 0.05) -> torch.Tensor:
    """SwAV's equipartitioned codes (Caron et al. 2020, sec. 3.1 / appendix A.1), in float32 even
    under autocast: Q* = Diag(u) exp(C^T Z / eps) Diag(v), the renormalisation vectors u, v found by
    alternate scaling.

    scores: BxK prototype scores of the (local) batch. Q = exp(scores / eps), then `iterations`
    rounds of alternately scaling the K prototype rows to total 1/K and the B sample columns to
    total 1/B (B = global batch: under DDP the row sums are all-reduced). Returns BxK codes whose
    rows (one per sample) sum to 1; each prototype's mass over the global batch tends to B/K (exact
    only as iterations grow).
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
    """SwAV's swapped prediction (Caron et al. 2020, eq. 1-2; multi-crop, sec. 3.2):
        L(z_t, z_s) = l(z_t, q_s) + l(z_s, q_t),
        l(z_t, q_s) = -sum_k q_s^(k) log softmax(z_t^T C / T)_k.

    scores: one NxK tensor of prototype scores per view (large crops first); codes: one NxK code
    tensor per large crop (`codes[i]` belongs to `scores[i]`). For each code i, every other view v
    predicts it: -sum_k q_i log softmax(s_v / T)_k, averaged over N, over the V - 1 views and over
    the codes.
    """
    total = scores[0].new_zeros((), dtype=torch.float32)
    for i, q in enumerate(codes):
        sub = total.new_zeros(())
        for v, s in enumerate(scores):
            if v != i:
                log_p = F.log_softmax(s.float() / temperature, dim=1)
                sub = sub - (q.float() * log_p).sum(dim=1).mean()
        total = total + sub / (len(scores) - 1)
    return total / len(codes)
