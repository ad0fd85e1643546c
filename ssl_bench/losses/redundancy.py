"""Redundancy-reduction losses: statistics of the batch of embeddings, no negatives, no target
network (Barlow Twins, VICReg).

Both are functions of whole-batch statistics (a cross-correlation, variances, covariances), so
under DDP they are computed over the global batch, as their papers do: Barlow Twins sums the
per-rank cross-correlation matrices (an all-reduce), VICReg gathers the embeddings of every rank.
Both with gradients (nn/dist.py), so that DDP's gradient averaging gives exactly the gradient of
one process holding the whole batch. The embeddings' means and variances are computed in float32
at least (bf16 embeddings are promoted; float64 stays float64); under bf16 autocast the D x D
matrix products, and so the sums over their entries, are bf16, as the official Barlow Twins code
runs its whole loss under fp16 AMP (facebookresearch/barlowtwins@8e8d284 main.py:
`torch.cuda.amp.autocast()`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssl_bench.nn.dist import all_reduce_with_grad, gather_with_grad, world


def off_diagonal_square_sum(m: torch.Tensor) -> torch.Tensor:
    """sum_{i != j} m_ij^2 of a square matrix: the sum of all the squares minus the diagonal's.
    Neither a D x D mask nor a copy of the D^2 - D entries: selecting them (masked_select, and
    masked_scatter back) on Barlow Twins' 8192-wide matrix cost more than the matmul making it."""
    return m.square().sum() - torch.diagonal(m).square().sum()


def standardise_over_batch(z: torch.Tensor, eps: float = 1e-5, correction: int = 0) -> torch.Tensor:
    """(z - mean) / sqrt(var + eps) per dimension, mean and variance over the GLOBAL batch.

    z: V x N x D (V views, N local samples). The official Barlow Twins code normalises with
    `nn.BatchNorm1d(D, affine=False)` converted to SyncBatchNorm (facebookresearch/barlowtwins
    @8e8d284 main.py: `self.bn`, `convert_sync_batchnorm`): the biased variance and eps 1e-5 over
    all ranks, the defaults here. The paper's pseudo-code (Algorithm 1) divides by `z.std(0)`:
    correction=1, eps=0. Equal batches on every rank are assumed (DDP's DistributedSampler).
    """
    total = z.shape[1] * world()[1]
    mean = all_reduce_with_grad(z.sum(dim=1, keepdim=True)) / total
    centred = z - mean
    var = all_reduce_with_grad(centred.pow(2).sum(dim=1, keepdim=True)) / (total - correction)
    return centred / torch.sqrt(var + eps)


def barlow_twins_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    lambd: float = 0.0051,
    scale: float = 1.0,
    eps: float = 1e-5,
    correction: int = 0,
    return_terms: bool = False,
):
    """Barlow Twins (Zbontar et al. 2021, eq. 1-2):
        L = scale * [ sum_i (1 - C_ii)^2 + lambda * sum_i sum_{j != i} C_ij^2 ],
        C_ij = sum_b zn1_{b,i} zn2_{b,j} / N,
    zn the embeddings standardised per dimension over the batch (`standardise_over_batch`).

    z1, z2: N x D embeddings of two views of the same N images. Under DDP the batch is the global
    one: the standardisation uses the global mean and variance, and C is the sum of the per-rank
    matrices divided by the global N (the paper's `c.div_(batch_size); all_reduce(c)`), here
    through a differentiable all-reduce. `scale` multiplies the whole loss (solo-learn's
    `scale_loss`, solo/losses/barlow.py @ 9187ea3; 1 in the paper). With `return_terms` also
    returns {on_diag, off_diag}: the two unweighted sums.
    """
    if z1.shape != z2.shape:
        raise ValueError(
            f"barlow_twins_loss: shapes differ, {tuple(z1.shape)} vs {tuple(z2.shape)}"
        )
    total = z1.shape[0] * world()[1]
    z = torch.stack([z1, z2]).to(torch.promote_types(z1.dtype, torch.float32))  # 2 x N x D
    zn1, zn2 = standardise_over_batch(z, eps, correction)  # N x D each
    c = all_reduce_with_grad(zn1.T @ zn2) / total  # D x D, the global cross-correlation
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = off_diagonal_square_sum(c)
    loss = scale * (on_diag + lambd * off_diag)
    if not return_terms:
        return loss
    return loss, {"on_diag": on_diag.detach(), "off_diag": off_diag.detach()}


def variance_term(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg's v(Z) (Bardes et al. 2022, eq. 1-2): the hinge on the regularised std of each
    dimension, mean over the D dimensions:
        v(Z) = 1/D sum_j max(0, gamma - sqrt(Var(z^j) + eps)),
    Var the unbiased variance over the N rows of z (the paper's `z.var(dim=0)`)."""
    return F.relu(gamma - torch.sqrt(z.var(dim=0) + eps)).mean()


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """VICReg's c(Z) (Bardes et al. 2022, eq. 3-4): the squared off-diagonal entries of the
    covariance matrix C(Z) = (Z - mean)^T (Z - mean) / (N - 1), summed and divided by D."""
    n, d = z.shape
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (n - 1)
    return off_diagonal_square_sum(cov) / d


def vicreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
    return_terms: bool = False,
):
    """VICReg (Bardes et al. 2022, eq. 6):
        l(Z, Z') = lambda s(Z, Z') + mu [v(Z) + v(Z')] + nu [c(Z) + c(Z')],
    s the mean squared error between the two views' embeddings (eq. 5), v and c above; lambda, mu,
    nu = sim_weight, var_weight, cov_weight (25, 25, 1 in the paper).

    z1, z2: N x D embeddings of two views. The invariance term is the mean over this rank's pairs
    (DDP's gradient averaging makes it the global mean); v and c are statistics of the global
    batch, on the embeddings gathered from every rank with gradients (the official code's
    FullGatherLayer, facebookresearch/vicreg@4e12602 main_vicreg.py). The official code halves the
    variance term (`std_loss / 2`); this is the paper's sum, as solo-learn's (solo/losses/vicreg.py
    @ 9187ea3). With `return_terms` also returns the unweighted {invariance, variance, covariance}.
    """
    if z1.shape != z2.shape:
        raise ValueError(f"vicreg_loss: shapes differ, {tuple(z1.shape)} vs {tuple(z2.shape)}")
    dtype = torch.promote_types(z1.dtype, torch.float32)  # bf16 autocast -> float32
    z1, z2 = z1.to(dtype), z2.to(dtype)
    invariance = F.mse_loss(z1, z2)
    g1, g2 = gather_with_grad(z1), gather_with_grad(z2)  # (W*N) x D each
    variance = variance_term(g1, gamma, eps) + variance_term(g2, gamma, eps)
    covariance = covariance_term(g1) + covariance_term(g2)
    loss = sim_weight * invariance + var_weight * variance + cov_weight * covariance
    if not return_terms:
        return loss
    terms = {"invariance": invariance, "variance": variance, "covariance": covariance}
    return loss, {k: v.detach() for k, v in terms.items()}
