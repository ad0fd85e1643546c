"""MAE's patch tokens and masking (nn/masking.py): patchify / unpatchify, the per-sample random
masking and the 2D sin-cos positional embedding against the official util/pos_embed.py
(facebookresearch/mae@efb2a80), transcribed literally below."""

import numpy as np
import torch

from ssl_bench.nn.masking import (
    gather_tokens,
    patchify,
    random_masking,
    sincos_pos_embed_2d,
    unpatchify,
)


def get_2d_sincos_pos_embed(embed_dim, grid_size, cls_token=False):
    """
    grid_size: int of the grid height and width
    return:
    pos_embed: [grid_size*grid_size, embed_dim] or [1+grid_size*grid_size, embed_dim] (w/ or w/o cls_token)
    """  # noqa: E501
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.meshgrid(grid_w, grid_h)  # here w goes first
    grid = np.stack(grid, axis=0)

    grid = grid.reshape([2, 1, grid_size, grid_size])
    pos_embed = get_2d_sincos_pos_embed_from_grid(embed_dim, grid)
    if cls_token:
        pos_embed = np.concatenate([np.zeros([1, embed_dim]), pos_embed], axis=0)
    return pos_embed


def get_2d_sincos_pos_embed_from_grid(embed_dim, grid):
    assert embed_dim % 2 == 0

    # use half of dimensions to encode grid_h
    emb_h = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[0])  # (H*W, D/2)
    emb_w = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[1])  # (H*W, D/2)

    emb = np.concatenate([emb_h, emb_w], axis=1)  # (H*W, D)
    return emb


def get_1d_sincos_pos_embed_from_grid(embed_dim, pos):
    """
    embed_dim: output dimension for each position
    pos: a list of positions to be encoded: size (M,)
    out: (M, D)
    """
    assert embed_dim % 2 == 0
    omega = np.arange(embed_dim // 2, dtype=np.float64)  # np.float in the original (float64)
    omega /= embed_dim / 2.0
    omega = 1.0 / 10000**omega  # (D/2,)

    pos = pos.reshape(-1)  # (M,)
    out = np.einsum("m,d->md", pos, omega)  # (M, D/2), outer product

    emb_sin = np.sin(out)  # (M, D/2)
    emb_cos = np.cos(out)  # (M, D/2)

    emb = np.concatenate([emb_sin, emb_cos], axis=1)  # (M, D)
    return emb


def test_sincos_pos_embed_is_the_official_table():
    for dim, grid in ((192, 8), (32, 7), (512, 4)):
        ref = torch.from_numpy(get_2d_sincos_pos_embed(dim, grid, cls_token=True)).float()
        ours = sincos_pos_embed_2d(dim, (grid, grid), prefix_tokens=1)
        assert ours.shape == (1 + grid * grid, dim) and torch.allclose(ours, ref, atol=1e-6)
    assert torch.equal(sincos_pos_embed_2d(16, (3, 3)), sincos_pos_embed_2d(16, (3, 3), 1)[1:])


def test_patchify_unpatchify_round_trip_and_token_order():
    x = torch.randn(2, 3, 12, 8)
    tokens = patchify(x, 4)  # a 3 x 2 grid
    assert tokens.shape == (2, 6, 48)
    assert torch.equal(unpatchify(tokens, 4, (3, 2)), x)
    # token 3 is grid row 1, column 1: pixels [4:8, 4:8], flattened (row, column, channel)
    assert torch.equal(tokens[:, 3], x[:, :, 4:8, 4:8].permute(0, 2, 3, 1).reshape(2, -1))


def test_masking_keeps_exactly_the_share_and_restore_inverts_the_shuffle():
    g = torch.Generator().manual_seed(0)
    n, length = 16, 64
    m = random_masking(n, length, 0.75, generator=g)
    assert m.keep.shape == (n, 16) and m.restore.shape == (n, length)
    assert torch.equal(m.mask.sum(dim=1), torch.full((n,), 48.0))  # 1 - 0.75 of 64 kept, per sample
    # the kept tokens are exactly where the mask is 0
    assert torch.equal(torch.gather(m.mask, 1, m.keep), torch.zeros(n, 16))
    # [kept tokens, then the masked ones] put back in grid order by restore = the original sequence
    x = torch.randn(n, length, 5)
    masked = gather_tokens(x, torch.argsort(m.restore, dim=1)[:, 16:])
    assert torch.equal(
        gather_tokens(torch.cat([gather_tokens(x, m.keep), masked], 1), m.restore), x
    )
    # every sample draws its own mask
    assert len({tuple(row.tolist()) for row in m.mask}) == n
    assert random_masking(2, 49, 0.75).keep.shape == (2, 12)  # int(49 * 0.25): 7x7 grids at 28 px
