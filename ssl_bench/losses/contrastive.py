"""Contrastive losses: a positive scored against negatives by a softmax cross-entropy (InfoNCE
family).

NT-Xent (SimCLR), InfoNCE against a queue of keys (MoCo), MoCo v3's InfoNCE against the keys of
the batch, NNCLR's with a support-set neighbour as the anchor, CMC's cross-view loss with in-batch
candidates and CPC v2's InfoNCE over a grid of patch predictions. All compute in float32 whatever
the input dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ssl_bench.nn.dist import gather_no_grad, gather_with_grad, world


def nt_xent(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5, gather: bool = True
) -> torch.Tensor:
    """NT-Xent of SimCLR (Chen et al. 2020, eq. 1), averaged over all 2N anchors:
        l(i, j) = -log exp(sim(z_i, z_j) / T) / sum_{k != i} exp(sim(z_i, z_k) / T).

    z1, z2: NxD projections of two views of the same N images (row i of z1 and z2 is a positive
    pair). For anchor i the positive is its other view; the 2N - 2 other embeddings of the (global)
    batch are negatives. With `gather`, negatives come from every rank (with gradients) and the loss
    is the mean over this rank's anchors, so DDP's gradient averaging reproduces the single-process
    gradient.
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


def info_nce(
    q: torch.Tensor,
    k: torch.Tensor,
    queue: torch.Tensor,
    temperature: float = 0.07,
    return_terms: bool = False,
):
    """InfoNCE with a queue of negatives (MoCo, He et al. 2019, eq. 1 / Algorithm 1):
        L_q = -log exp(q.k+ / T) / (exp(q.k+ / T) + sum_{k- in queue} exp(q.k- / T)).

    q: NxD queries (gradients flow), k: NxD keys of the same N images (treated as constants), queue:
    KxD negatives with unit rows. q and k are L2-normalised here. logits = [q.k, q.queue^T] / T is N
    x (1+K) with the positive at column 0; the loss is cross-entropy towards column 0, mean over the
    N local queries (DDP's gradient averaging then gives the global mean: nothing here needs a
    gather). With `return_terms` also returns {pos_sim, neg_sim, acc}: mean cosines and the % of
    queries whose key beats every negative.
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


def cross_view_batch_loss(
    f: Sequence[torch.Tensor], temperature: float, pairs: Sequence[tuple[int, int]]
) -> torch.Tensor:
    """CMC's two-view loss with in-batch candidates (Tian et al. 2020, eq. 2-3), summed over view
    pairs:
        L(V_a, V_b) = L^{a,b} + L^{b,a},
        L^{a,b} = -E_i log h(v^a_i, v^b_i) / sum_j h(v^a_i, v^b_j),
    h = exp(cos / T); each term the mean over this rank's anchors.

    f: one N x D embedding per view (normalised here); pairs: the (a, b) view pairs of the graph
    (sec. 3.2). Under DDP the candidates v^b_j come from all ranks, with gradients."""
    f = [F.normalize(v.float(), dim=1) for v in f]
    rank, _ = world()
    n = f[0].shape[0]
    labels = torch.arange(n, device=f[0].device) + rank * n
    total = f[0].new_zeros(())
    for a, b in pairs:
        total = (
            total
            + F.cross_entropy(f[a] @ gather_with_grad(f[b]).T / temperature, labels)
            + F.cross_entropy(f[b] @ gather_with_grad(f[a]).T / temperature, labels)
        )
    return total


def grid_info_nce(
    pred: torch.Tensor, z: torch.Tensor, offset: int, neg_index: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """CPC's InfoNCE (Henaff et al. 2020, eq. 1-2; the body of the appendix `CPC` loop) for one
    offset k:
        L = -sum_{i,j} log exp(pred_{i,j} . z_{i+k,j}) / sum_{m in keys} exp(pred_{i,j} . z_m).

    pred: B x T x G x G, pred[b, :, i, j] (already scaled by emb_scale) predicts z[b, :, i + k, j]
    (rows i < G - k are used). z: B x T x G x G projected targets. Keys: every target of the batch
    (B*G*G, the positive among them) or, with `neg_index`, the positive plus z at those flat (b, i,
    j) positions (a drawn index equal to the positive is masked out). Scores are the dot products of
    predictions and targets. Returns (loss per prediction, correct per prediction).
    """
    B, D, G, _ = z.shape
    if not 0 < offset < G:
        raise ValueError(f"offset {offset} must be in [1, {G - 1}] on a {G}x{G} grid")
    dtype = torch.promote_types(z.dtype, torch.float32)  # bf16 autocast -> float32
    # queries: B(G-k)G x T
    q = pred[:, :, : G - offset].permute(0, 2, 3, 1).reshape(-1, D).to(dtype)
    keys = z.permute(0, 2, 3, 1).reshape(-1, D).to(dtype)  # keys: BGG x T
    b, i, j = torch.meshgrid(
        torch.arange(B), torch.arange(G - offset), torch.arange(G), indexing="ij"
    )
    target = (b * G * G + (i + offset) * G + j).flatten().to(z.device)  # the positive's flat index
    if neg_index is None:
        logits, labels = q @ keys.T, target
    else:
        pos = (q * keys[target]).sum(dim=1, keepdim=True)
        neg = (q @ keys[neg_index].T).masked_fill(
            neg_index.unsqueeze(0) == target.unsqueeze(1), float("-inf")
        )
        logits, labels = torch.cat([pos, neg], dim=1), torch.zeros_like(target)
    with torch.no_grad():
        correct = logits.argmax(dim=1) == labels
    return F.cross_entropy(logits, labels, reduction="none"), correct


def moco_v3_loss(
    q: torch.Tensor,
    k: torch.Tensor,
    temperature: float = 1.0,
    return_terms: bool = False,
):
    """MoCo v3's contrastive loss `ctr(q, k)` (Chen, Xie, He 2021, Algorithm 1): InfoNCE of each
    query against the keys of the whole (global) batch, its own key the positive, scaled by 2 tau:
        ctr(q, k) = 2 tau * CrossEntropy(q k^T / tau, range(N)).

    q: NxD predictions (gradients flow), k: NxD momentum-encoder keys of the same N images
    (constants). Both are L2-normalised here (the official code, facebookresearch/moco-v3@c349e6e
    moco/builder.py `contrastive_loss`). Under DDP the keys of every rank are gathered without
    gradient, so the candidates are the global batch, and the loss is the mean over this rank's
    queries: DDP's gradient averaging then gives the single-process gradient of the global batch.
    The method sums ctr(q1, k2) + ctr(q2, k1). With `return_terms` also returns {pos_sim, neg_sim,
    acc}.
    """
    q = F.normalize(q.float(), dim=1)  # NxD
    k = F.normalize(k.detach().float(), dim=1)  # NxD
    rank, size = world()
    keys = gather_no_grad(k) if size > 1 else k  # (W*N) x D, this rank's rows at rank * N
    logits = q @ keys.T  # N x WN cosines
    labels = torch.arange(q.shape[0], device=q.device) + rank * q.shape[0]
    loss = F.cross_entropy(logits / temperature, labels) * (2 * temperature)
    if not return_terms:
        return loss
    with torch.no_grad():
        pos = logits.gather(1, labels[:, None])
        terms = {
            "pos_sim": pos.mean(),
            "neg_sim": (logits.sum() - pos.sum()) / max(1, logits.numel() - pos.numel()),
            "acc": 100.0 * (logits.argmax(dim=1) == labels).float().mean(),
        }
    return loss, terms


@torch.no_grad()
def nearest_neighbour(z: torch.Tensor, support: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """NNCLR's NN(z, Q) = argmin_{q in Q} ||z - q||_2 (Dwibedi et al. 2021, eq. 2) for unit-norm
    rows: the support row of the highest cosine. z: NxD (normalised here), support: KxD unit rows.
    Returns (the neighbours, N x D, no gradient; their rows in `support`)."""
    idx = (F.normalize(z.float(), dim=1) @ support.float().T).argmax(dim=1)
    return support[idx], idx


def nnclr_loss(
    nn: torch.Tensor, p: torch.Tensor, temperature: float = 0.1, transposed: bool = False
) -> torch.Tensor:
    """NNCLR's loss (Dwibedi et al. 2021, eq. 2, with the prediction head of sec. 3.2):
        L_i = -log exp(NN(z_i, Q) . p_i^+ / T) / sum_k exp(NN(z_i, Q) . p_k^+ / T),
    the support-set neighbour of view 1's embedding as the anchor, the predictions of view 2 of the
    batch as candidates (its own the positive), cosines; the mean over this rank's anchors.

    With `transposed`, sec. 3.2's symmetrising term as well (as VISSL's reproduction cites it; the
    paper's text was not read here), the softmax over the batch's neighbours for a fixed prediction
    (the columns of the same logits):
        L'_i = -log exp(NN(z_i, Q) . p_i^+ / T) / sum_k exp(NN(z_k, Q) . p_i^+ / T),
    and the loss is (mean L + mean L') / 2. The paper adds the term; the mean of the two halves the
    loss so that it keeps the scale of eq. 2 alone (the reproductions in VISSL, nnclr_loss.py, and
    the keras example take the same mean of their four terms).

    nn: NxD neighbours (constants), p: NxD predictions of the other view (gradients flow). Under DDP
    the candidates p_k^+ come from every rank with gradients (as nt_xent), and the neighbours
    NN(z_k, Q) of L' from every rank without (they are constants), so DDP's gradient averaging gives
    the single-process gradient of the global batch (solo-learn@9187ea39 solo/losses/nnclr.py
    gathers the predictions the same way).
    """
    nn = F.normalize(nn.detach().float(), dim=1)
    p = F.normalize(p.float(), dim=1)
    rank, _ = world()
    candidates = gather_with_grad(p)  # (W*N) x D
    logits = nn @ candidates.T / temperature
    labels = torch.arange(nn.shape[0], device=nn.device) + rank * nn.shape[0]
    loss = F.cross_entropy(logits, labels)
    if not transposed:
        return loss
    anchors = gather_no_grad(nn)  # (W*N) x D: every rank's neighbours, constants
    return (loss + F.cross_entropy(p @ anchors.T / temperature, labels)) / 2
