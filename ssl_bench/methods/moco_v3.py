"""MoCo v3: An Empirical Study of Training Self-Supervised Vision Transformers. Chen, Xie, He, 2021.
https://arxiv.org/abs/2104.02057

A query encoder (backbone, projector, predictor) is trained with InfoNCE of each view's prediction
against the momentum encoder's key of the other view; the candidates are the keys of the batch,
gathered from every rank, with no queue (Algorithm 1; losses/contrastive.py `moco_v3_loss`).
The momentum encoder (backbone + projector, never the predictor) is the method's momentum target
(nn/ema.py), with tau on a cosine from `base_tau` to `final_tau` = 1 (`--moco-m-cos`).

Heads as the official PyTorch code (facebookresearch/moco-v3@c349e6e moco/builder.py `_build_mlp`):
every hidden layer Linear (no bias) - BN - ReLU, the output Linear (no bias) followed by a BN
without affine parameters ("for simplicity, we further removed gamma in BN"). The paper (sec. 4)
describes a 3-layer projector and a 2-layer predictor with BN on every layer, which is the official
code for ViT (`MoCo_ViT`: projector 3 layers, predictor with its output BN); for ResNet the official
code uses a 2-layer projector and a predictor without output BN (`MoCo_ResNet`). `proj_layers` and
`pred_last_bn` choose; conf/method/moco_v3.yaml holds the ResNet-50 defaults of the official code.

`freeze_patch_embed`: the frozen random patch projection the paper uses to stabilise ViT training
(sec. 4.2; official vits.py `stop_grad_conv1`): the weights of the ViT's patch embedding keep their
random init and get no gradient. Departure: the official code re-initialises that projection with
a Xavier-uniform init before freezing it; here it keeps timm's init (random either way).
"""

from __future__ import annotations

import torch
from torch import nn

from ssl_bench.errors import ConfigError
from ssl_bench.losses.contrastive import moco_v3_loss
from ssl_bench.methods.base import SSLMethod, embedding_std
from ssl_bench.nn.heads import MLP, check_head_sizes


def freeze_patch_embedding(backbone: nn.Module) -> list[nn.Parameter]:
    """Freeze the patch projection of a timm ViT (`patch_embed.proj`); returns its parameters. A
    backbone without one is a ConfigError on method.freeze_patch_embed."""
    proj = getattr(getattr(backbone, "patch_embed", None), "proj", None)
    if not isinstance(proj, nn.Module):
        raise ConfigError(
            "method.freeze_patch_embed",
            f"applies to ViT backbones with a patch embedding; {type(backbone).__name__} has none.",
            "set method.freeze_patch_embed=false, or use a ViT (backbone=vit_tiny).",
        )
    params = list(proj.parameters())
    for p in params:
        p.requires_grad_(False)
    return params


class MoCoV3(SSLMethod):
    min_batch_size = 2

    def __init__(
        self,
        backbone: nn.Module,
        temperature: float = 1.0,
        proj_layers: int = 2,
        proj_hidden_dim: int = 4096,
        proj_output_dim: int = 256,
        pred_hidden_dim: int = 4096,
        pred_last_bn: bool = False,
        base_tau: float = 0.99,
        final_tau: float | None = 1.0,
        freeze_patch_embed: bool = False,
        bn_stats: str = "per_view",
        **kwargs,
    ):
        super().__init__(backbone, bn_stats=bn_stats, **kwargs)
        if temperature <= 0:
            raise ConfigError(
                "method.temperature",
                f"must be positive, got {temperature}.",
                "use MoCo v3's 1.0 (ResNet) or 0.2 (ViT).",
            )
        check_head_sizes(
            proj_hidden_dim=proj_hidden_dim,
            proj_output_dim=proj_output_dim,
            pred_hidden_dim=pred_hidden_dim,
            proj_layers=proj_layers,
        )
        self.temperature = float(temperature)
        if freeze_patch_embed:  # before the copy: the target's patch projection is the same one
            freeze_patch_embedding(self.backbone)
        # builder.py _build_mlp(num_layers, ...): BN after every layer, the last one without affine
        self.projector = MLP(
            self.feat_dim,
            proj_hidden_dim,
            proj_output_dim,
            num_layers=proj_layers,
            bn="all",
            last_scale=False,
            last_shift=False,
        )
        self.predictor = MLP(
            proj_output_dim,
            pred_hidden_dim,
            proj_output_dim,
            num_layers=2,
            bn="all" if pred_last_bn else "hidden",
            last_scale=False,
            last_shift=False,
        )
        if not pred_last_bn:  # the official Linear(..., bias=False) (MLP gives a plain output one)
            self.predictor[-1].register_parameter("bias", None)
        # the momentum encoder: backbone + projector (the predictor is excluded, Algorithm 1 notes)
        self.add_momentum_encoder(base_tau, final_tau)

    def training_loss(self, views, labels, index):
        # q1, q2 = f_q(x1), f_q(x2); one call per view (builder.py forward), grouped by bn_stats
        feats = self.forward_views(self.backbone, views[:2])
        z = self.forward_views(self.projector, feats)
        q1, q2 = self.forward_views(self.predictor, z)
        k1, k2 = self.target_projections(views[:2])  # k = f_k(x): the momentum encoder's keys
        loss12, t12 = moco_v3_loss(q1, k2, self.temperature, return_terms=True)
        loss21, t21 = moco_v3_loss(q2, k1, self.temperature, return_terms=True)
        terms = {name: (t12[name] + t21[name]) / 2 for name in t12}  # logged: the mean of both
        return {
            "loss": loss12 + loss21,  # ctr(q1, k2) + ctr(q2, k1): Algorithm 1's symmetrised sum
            "representation": torch.cat(feats),
            "z_std": embedding_std(torch.cat(z)),
            **terms,
        }
