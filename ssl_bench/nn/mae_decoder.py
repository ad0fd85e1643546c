"""MAE's lightweight decoder (He et al. 2022, sec. 3 "MAE decoder"; facebookresearch/mae@efb2a80
models_mae.py forward_decoder): the encoded visible tokens and a shared, learned mask token for
every masked position, unshuffled to grid order, plus fixed 2D sin-cos positional embeddings of its
own, through a few Transformer blocks, then a linear layer onto the pixels of each patch."""

from __future__ import annotations

from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import nn

from ssl_bench.nn.attention import prefer_explicit_cpu_bf16_attention
from ssl_bench.nn.masking import gather_tokens, sincos_pos_embed_2d


class MAEDecoder(nn.Module):
    """`depth` pre-norm Transformer blocks (timm's Block: width `embed_dim`, `num_heads` heads, MLP
    ratio 4, qkv bias, LayerNorm eps 1e-6, as the official mae_vit_*_dec512d8b models) on the full
    token sequence, then LayerNorm and Linear(embed_dim, patch * patch * in_chans).

    Its input: the encoder's output [N, prefix + K, in_dim] (the class token(s) first, then the K
    visible tokens in the shuffled order) and the masking's `restore` permutation [N, L]. The
    decoder embeds it linearly to `embed_dim`, appends L - K copies of `mask_token`, puts the L
    patch tokens back in grid order with `restore`, adds `pos_embed` (a buffer, not trained; zeros
    at the prefix positions) and returns the prediction for every patch [N, L, patch * patch *
    in_chans] (the prefix tokens dropped).

    Initialisation as the official initialize_weights: Linear weights Xavier-uniform and biases 0,
    LayerNorm 1 and 0, the mask token normal with std 0.02."""

    def __init__(
        self,
        in_dim: int,
        grid: tuple[int, int],
        patch: int,
        in_chans: int = 3,
        embed_dim: int = 512,
        depth: int = 8,
        num_heads: int = 16,
        prefix_tokens: int = 1,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        self.grid, self.prefix_tokens = tuple(grid), int(prefix_tokens)
        self.embed = nn.Linear(in_dim, embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        pos = sincos_pos_embed_2d(embed_dim, self.grid, self.prefix_tokens)
        self.register_buffer("pos_embed", pos.unsqueeze(0))
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.Sequential(
            *(
                Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm)
                for _ in range(depth)
            )
        )
        self.norm = norm(embed_dim)
        self.pred = nn.Linear(embed_dim, patch * patch * in_chans)
        self.apply(_init_weights)
        nn.init.normal_(self.mask_token, std=0.02)
        prefer_explicit_cpu_bf16_attention(self)  # timm's attention, explicit in bf16 on a CPU

    def forward(self, latent: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        x = self.embed(latent)  # N x (prefix + K) x E
        prefix, visible = x[:, : self.prefix_tokens], x[:, self.prefix_tokens :]
        n, length = restore.shape
        masked = self.mask_token.to(x.dtype).expand(n, length - visible.shape[1], -1)
        tokens = gather_tokens(torch.cat([visible, masked], dim=1), restore)  # grid order
        x = torch.cat([prefix, tokens], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.pred(x[:, self.prefix_tokens :])  # N x L x p*p*C


def _init_weights(m: nn.Module) -> None:
    # models_mae.py _init_weights: "we use xavier_uniform following official JAX ViT"
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
