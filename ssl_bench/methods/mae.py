"""MAE: Masked Autoencoders Are Scalable Vision Learners. He, Chen, Xie, Li, Dollar, Girshick, 2022.
https://arxiv.org/abs/2111.06377

A ViT encoder sees a random 25% of the patches of each image (mask_ratio 0.75, a new draw per sample
and step); a light decoder gets the encoded visible tokens and a learned mask token at every masked
position, each with its own fixed positional embedding, and predicts the pixels of every patch; the
loss is the mean squared error on the masked patches only, with per-patch normalised targets
(`norm_pix_loss`; losses/reconstruction.mae_loss). Sec. 3 of the paper; the official code is
facebookresearch/mae@efb2a80 models_mae.py.

The encoder is the run's timm ViT itself (`backbone=vit_tiny`: 32 px images, patch 4, an 8x8 grid):
`encode_visible` runs its own modules - patch_embed, pos_embed, cls_token, blocks, norm - on the
visible tokens, so there is no second ViT to keep in step. The representation (`forward`, inherited)
is that ViT on all patches, pooled as the backbone pools (timm's global_pool: the class token for
vit_tiny): what `ssl_bench.load_backbone` gives offline, and what the paper evaluates ("the encoder
is applied to uncorrupted images (full sets of patches) for recognition tasks", fig. 1).

The reconstruction target is the view the encoder sees, normalised by the data's mean and std, as
the official code computes its loss on its normalised input images (main_pretrain.py normalises with
the ImageNet statistics; forward_loss patchifies `imgs`); with `norm_pix_loss` each patch is
normalised again on its own, which leaves only the per-channel scale of the data's std.

`fixed_pos_embed`: the encoder's positional embeddings set to the 2D sin-cos table and frozen, as
the official encoder's (`pos_embed` with requires_grad=False); false keeps timm's learned ones.

Departures (no key here): the ViT keeps timm's initialisation (the official code re-initialises its
Linear layers and patch projection Xavier-uniform; timm's `+backbone.kwargs.weight_init=jax` comes
closest). The online probe trains on the unmasked encoder's features of the view (computed without
gradient, only when a probe is on), the representation it is evaluated on; solo-learn's trains its
classifier on the masked encoding.
"""

from __future__ import annotations

import torch
from torch import nn

from ssl_bench.errors import ConfigError
from ssl_bench.losses.reconstruction import mae_loss
from ssl_bench.methods.base import SSLMethod, embedding_std
from ssl_bench.nn.mae_decoder import MAEDecoder
from ssl_bench.nn.masking import (
    TokenMask,
    gather_tokens,
    kept_tokens,
    patchify,
    random_masking,
    sincos_pos_embed_2d,
)

VIT_FIX = "use backbone=vit_tiny, or another timm ViT (backbone.name=vit_small_patch16_224)."


def check_vit(backbone: nn.Module) -> None:
    """A ConfigError on `backbone` unless it is a timm VisionTransformer MAE can mask: patch tokens
    from a patch embedding, absolute positional embeddings, a fixed image size."""
    needed = ("patch_embed", "pos_embed", "blocks", "norm", "num_prefix_tokens")
    if any(getattr(backbone, name, None) is None for name in needed):
        raise ConfigError(
            "backbone",
            f"MAE masks the patch tokens of a Vision Transformer; {type(backbone).__name__} has "
            "none (no patch_embed / pos_embed).",
            VIT_FIX,
        )
    if getattr(backbone, "dynamic_img_size", False):
        raise ConfigError(
            "backbone.kwargs.dynamic_img_size",
            "MAE's decoder has one positional embedding per patch of a fixed grid.",
            "drop backbone.kwargs.dynamic_img_size (MAE trains on one view size).",
        )
    if not isinstance(getattr(backbone, "patch_drop", nn.Identity()), nn.Identity):
        raise ConfigError(
            "backbone.kwargs.patch_drop_rate",
            "MAE drops the masked tokens itself; timm's patch dropout would drop more of them.",
            "set backbone.kwargs.patch_drop_rate=0.",
        )


class MAE(SSLMethod):
    #: the online probe reads BatchNorm-ed features (no affine): the paper's linear probing
    #: (He et al. 2022, appendix, linear probing; facebookresearch/mae@efb2a80 main_linprobe.py:
    #: BatchNorm1d(affine=False, eps=1e-6) before the head)
    probe_norm = True

    def __init__(
        self,
        backbone: nn.Module,
        mask_ratio: float = 0.75,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        norm_pix_loss: bool = True,
        fixed_pos_embed: bool = True,
        **kwargs,
    ):
        super().__init__(backbone, **kwargs)
        check_vit(self.backbone)
        embed = self.backbone.patch_embed
        self.patch_size = int(embed.patch_size[0])
        self.grid = tuple(int(g) for g in embed.grid_size)
        self.num_patches = self.grid[0] * self.grid[1]
        _check(locals(), self.num_patches)
        self.mask_ratio, self.norm_pix_loss = float(mask_ratio), bool(norm_pix_loss)
        if fixed_pos_embed:
            self.freeze_sincos_pos_embed()
        self.decoder = MAEDecoder(
            in_dim=int(self.backbone.embed_dim),
            grid=self.grid,
            patch=self.patch_size,
            in_chans=int(embed.proj.in_channels),
            embed_dim=decoder_embed_dim,
            depth=decoder_depth,
            num_heads=decoder_num_heads,
            prefix_tokens=int(self.backbone.num_prefix_tokens),
        )

    @torch.no_grad()
    def freeze_sincos_pos_embed(self) -> None:
        """The encoder's positional embeddings := the fixed 2D sin-cos table (zeros for the class
        token), not trained (models_mae.py initialize_weights)."""
        pos = self.backbone.pos_embed
        if pos.shape[-1] % 4:
            raise ConfigError(
                "method.fixed_pos_embed",
                "the 2D sin-cos embedding needs a width divisible by 4; the ViT's is "
                f"{pos.shape[-1]}.",
                "set method.fixed_pos_embed=false (timm's learned positional embeddings).",
            )
        prefix = pos.shape[1] - self.num_patches  # 0 when timm's no_embed_class
        pos.copy_(sincos_pos_embed_2d(pos.shape[-1], self.grid, prefix).unsqueeze(0))
        pos.requires_grad_(False)

    # ---- the encoder on the visible patches ---------------------------------------------------
    def encode_visible(self, x: torch.Tensor) -> tuple[torch.Tensor, TokenMask]:
        """models_mae.py forward_encoder with the ViT's own modules: patch tokens plus their
        positional embeddings, a random `mask_ratio` of them dropped per sample, the class token
        (with its positional embedding) put first, then the blocks and the final norm. Returns the
        latent [N, prefix + K, D] and the mask."""
        vit = self.backbone
        tokens = vit.patch_embed(x)  # N x L x D
        n_prefix = int(vit.num_prefix_tokens)
        pos = vit.pos_embed
        patch_pos = pos if vit.no_embed_class else pos[:, n_prefix:]
        tokens = tokens + patch_pos
        mask = random_masking(tokens.shape[0], tokens.shape[1], self.mask_ratio, tokens.device)
        visible = gather_tokens(tokens, mask.keep)  # N x K x D
        prefix = [t for t in (vit.cls_token, getattr(vit, "reg_token", None)) if t is not None]
        if prefix:
            first = torch.cat(prefix, dim=1)
            if not vit.no_embed_class:
                first = first + pos[:, :n_prefix]
            visible = torch.cat([first.expand(visible.shape[0], -1, -1), visible], dim=1)
        latent = vit.norm(vit.blocks(vit.norm_pre(vit.pos_drop(visible))))
        return latent, mask

    def training_loss(self, views, labels, index):
        size = tuple(self.backbone.patch_embed.img_size)
        if any(tuple(v.shape[-2:]) != size for v in views):
            raise ConfigError(
                "augmentation.views",
                f"MAE reconstructs views of the ViT's image size {size}; got "
                f"{sorted({tuple(v.shape[-2:]) for v in views})}.",
                "use augmentation=mae (one crop of data.image_size).",
            )
        losses, pooled = [], []
        for v in views:  # one view per image with augmentation=mae; several: the mean loss
            latent, mask = self.encode_visible(v)
            pred = self.decoder(latent, mask.restore)  # N x L x p*p*C
            target = patchify(v, self.patch_size)
            losses.append(mae_loss(pred, target, mask.mask, self.norm_pix_loss))
            pooled.append(self.backbone.forward_head(latent, pre_logits=True).detach())
        masked_feats = torch.cat(pooled)
        return {
            "loss": torch.stack(losses).mean(),
            "representation": self.probe_features(views, masked_feats),
            "z_std": embedding_std(masked_feats),
        }

    def probe_features(self, views, masked_feats: torch.Tensor) -> torch.Tensor:
        """What the online probe trains on: forward() of the views (all patches, no gradient) when
        there is a probe; else the pooled masked encoding already computed (nothing reads it)."""
        if self.online_eval is None or self.online_eval.probe is None:
            return masked_feats
        with torch.no_grad():
            return torch.cat([self(v) for v in views])


def _check(args: dict, num_patches: int) -> None:
    """A ConfigError naming the first bad key of MAE's constructor arguments."""
    ratio, width, heads = args["mask_ratio"], args["decoder_embed_dim"], args["decoder_num_heads"]
    keep = kept_tokens(num_patches, ratio) if 0 < ratio < 1 else 0
    checks = (
        (
            "mask_ratio",
            0 < ratio < 1 and keep >= 1,
            f"in (0, 1) and keep at least one of the {num_patches} patches",
            "use 0.75 (the paper's).",
        ),
        ("decoder_depth", args["decoder_depth"] >= 1, ">= 1", "use 8 (the paper's) or fewer."),
        ("decoder_num_heads", heads >= 1, ">= 1", "use 16 (the paper's)."),
        (
            "decoder_embed_dim",
            width >= 4 and width % 4 == 0 and width % max(heads, 1) == 0,
            "a multiple of 4 (the 2D sin-cos embedding) and of method.decoder_num_heads",
            "use 512 (the paper's) with 16 heads.",
        ),
    )
    for key, ok, need, fix in checks:
        if not ok:
            raise ConfigError(f"method.{key}", f"must be {need}, got {args[key]}.", fix)
