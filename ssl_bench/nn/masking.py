"""Patch tokens and their random masking, as MAE uses them (He et al. 2022, "Masked Autoencoders Are
Scalable Vision Learners", sec. 3; facebookresearch/mae@efb2a80 models_mae.py and
util/pos_embed.py).

* `patchify` / `unpatchify`: images [N, C, H, W] <-> non-overlapping p x p patches [N, L, p*p*C] in
  the order of a ViT's patch tokens (row-major over the grid), each patch's pixels in (row, column,
  channel) order - the reconstruction targets and the decoder's outputs.
* `random_masking`: a per-sample random subset of the tokens to keep (sec. 3 "Masking": "we sample
  random patches without replacement, following a uniform distribution"), drawn as the official code
  does it, by sorting uniform noise per sample.
* `sincos_pos_embed_2d`: the fixed 2D sine-cosine positional embedding of a token grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, (H/p)*(W/p), p*p*C]: token (i, j) of the grid holds the pixels of the p x
    p square at row i, column j, flattened as (row in the patch, column in the patch, channel)."""
    n, c, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError(f"{h}x{w} images do not split into {patch} px patches")
    gh, gw = h // patch, w // patch
    x = images.reshape(n, c, gh, patch, gw, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(n, gh * gw, patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, grid: tuple[int, int], channels: int = 3):
    """The inverse of `patchify`: [N, gh*gw, p*p*C] -> [N, C, gh*p, gw*p]."""
    n = patches.shape[0]
    gh, gw = grid
    x = patches.reshape(n, gh, gw, patch, patch, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(n, channels, gh * patch, gw * patch)


@dataclass(frozen=True)
class TokenMask:
    """One draw of random masking over N samples of L tokens each.

    `keep` [N, K]: the indices of the kept (visible) tokens, in the order the encoder sees them;
    `restore` [N, L]: the inverse permutation (position of token l in the shuffled order), which
    puts [visible tokens, mask tokens] back in grid order; `mask` [N, L]: 1 where a token is masked
    (the loss is computed there), 0 where it is visible.
    """

    keep: torch.Tensor
    restore: torch.Tensor
    mask: torch.Tensor


def kept_tokens(length: int, mask_ratio: float) -> int:
    """How many of `length` tokens stay visible: int(L * (1 - mask_ratio)), the official
    `len_keep`."""
    return int(length * (1 - mask_ratio))


def random_masking(
    n: int, length: int, mask_ratio: float, device=None, generator: torch.Generator | None = None
) -> TokenMask:
    """Per-sample random masking by per-sample shuffling (models_mae.py random_masking): uniform
    noise [N, L] sorted ascending gives each sample its own permutation; the first
    int(L * (1 - mask_ratio)) tokens of it are kept."""
    noise = torch.rand(n, length, device=device, generator=generator)
    shuffle = torch.argsort(noise, dim=1)  # ascending: small noise is kept, large is masked
    restore = torch.argsort(shuffle, dim=1)
    keep = shuffle[:, : kept_tokens(length, mask_ratio)]
    mask = torch.ones(n, length, device=device)
    mask[:, : keep.shape[1]] = 0
    return TokenMask(keep, restore, torch.gather(mask, 1, restore))


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [N, L, D], index [N, K] -> the K tokens of each sample that `index` names, [N, K, D]."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def sincos_pos_embed_2d(dim: int, grid: tuple[int, int], prefix_tokens: int = 0) -> torch.Tensor:
    """The fixed 2D sine-cosine positional embedding of a gh x gw token grid, [prefix + gh*gw, dim],
    float32, with `prefix_tokens` rows of zeros first (the class token's; util/pos_embed.py
    get_2d_sincos_pos_embed(..., cls_token=True)).

    As the official code: the first dim/2 channels encode the token's column, the last dim/2 its row
    (its meshgrid puts the width coordinate first); each half is [sin(pos * w_k), cos(pos * w_k)]
    over frequencies w_k = 1 / 10000^(k / (dim/4)), k < dim/4. Computed in float64, as numpy does
    there."""
    if dim % 4:
        raise ValueError(f"a 2D sin-cos embedding needs a width divisible by 4, got {dim}")
    gh, gw = grid
    rows, cols = torch.meshgrid(
        torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64), indexing="ij"
    )
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))

    def one_axis(pos: torch.Tensor) -> torch.Tensor:
        out = pos.reshape(-1, 1) * omega  # M x dim/4
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)

    emb = torch.cat([one_axis(cols), one_axis(rows)], dim=1)
    return torch.cat([torch.zeros(prefix_tokens, dim, dtype=torch.float64), emb]).float()
