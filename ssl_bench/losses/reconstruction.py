"""Reconstruction losses: MAE's mean squared error on the masked patches (He et al. 2022, "Masked
Autoencoders Are Scalable Vision Learners", sec. 3 "Reconstruction target")."""

from __future__ import annotations

import torch


def mae_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    norm_pix_loss: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """MAE's loss (sec. 3): the mean squared error between the decoder's prediction and the pixels
    of each patch, computed on the masked patches only.

        t_hat_i = (t_i - mean(t_i)) / sqrt(var(t_i) + eps)     (norm_pix_loss; else t_hat_i = t_i)
        loss = sum_i m_i * mean_j (pred_ij - t_hat_ij)^2 / sum_i m_i

    over the patches i of every sample (m_i = 1 where patch i was masked) and the P = p*p*C pixel
    values j of a patch; mean and var are over the patch's own pixels, var unbiased (/(P - 1)), as
    torch.var in the official forward_loss (facebookresearch/mae@efb2a80 models_mae.py). "Using
    normalized pixels as the reconstruction target improves representation quality" (sec. 3,
    Table 1d). pred, target [N, L, P] (target: nn/masking.patchify of the images); mask [N, L].
    Computed in float32 whatever the autocast dtype of `pred`; the target gets no gradient.
    """
    with torch.autocast(device_type=pred.device.type, enabled=False):
        target = target.detach().float()
        if norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + eps) ** 0.5
        per_patch = (pred.float() - target).pow(2).mean(dim=-1)  # N x L
        mask = mask.float()
        return (per_patch * mask).sum() / mask.sum()
