"""MAE: the ViT encoder on the visible patches only, the decoder's mask tokens, the loss on the
masked patches only, forward = the encoder on all patches, the fixed sin-cos positional embeddings,
bad keys and a non-ViT backbone, the CLI on ViT-Tiny, learning."""

import pytest
import torch
from conftest import FAST, learning_run, run_cli
from conftest import narrow_backbone as narrow

import ssl_bench.methods.mae as mae_module
from ssl_bench.backbones import create_backbone
from ssl_bench.errors import ConfigError
from ssl_bench.methods.mae import MAE
from ssl_bench.nn.masking import sincos_pos_embed_2d

SMALL = dict(decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4)


def tiny_vit(**kwargs):
    """ViT-Tiny's width (192, 3 heads) with 2 blocks, 16 px images in 4 px patches: a 4x4 grid."""
    return create_backbone("vit_tiny_patch16_224", img_size=16, patch_size=4, depth=2, **kwargs)


def images(n=4, seed=0):
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def recorded_masks(monkeypatch, m):
    """Every TokenMask that m.encode_visible draws, appended to the returned list."""
    masks, encode = [], m.encode_visible

    def recording(x):
        latent, mask = encode(x)
        masks.append(mask)
        return latent, mask

    monkeypatch.setattr(m, "encode_visible", recording)
    return masks


def test_the_encoder_sees_only_the_visible_patches():
    torch.manual_seed(0)
    m = MAE(tiny_vit(), **SMALL)
    seen = []
    m.backbone.blocks[0].register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape))
    latent, mask = m.encode_visible(images())
    # 16 patches, int(16 * 0.25) = 4 visible, plus the class token
    assert seen == [torch.Size([4, 5, 192])] and latent.shape == (4, 5, 192)
    assert mask.keep.shape == (4, 4) and torch.equal(mask.mask.sum(1), torch.full((4,), 12.0))


def test_the_decoder_sees_mask_tokens_at_the_masked_positions():
    torch.manual_seed(0)
    m = MAE(tiny_vit(), **SMALL)
    latent, mask = m.encode_visible(images())
    inputs = []
    m.decoder.blocks.register_forward_hook(lambda mod, inp, out: inputs.append(inp[0]))
    pred = m.decoder(latent, mask.restore)
    assert pred.shape == (4, 16, 4 * 4 * 3)
    tokens = (inputs[0] - m.decoder.pos_embed)[:, 1:]  # grid order, class token dropped
    masked = mask.mask.bool()
    assert torch.allclose(tokens[masked], m.decoder.mask_token[0, 0].expand(48, -1), atol=1e-6)
    embedded = m.decoder.embed(latent[:, 1:])  # the visible tokens, in the shuffled order
    for i in range(4):
        assert torch.allclose(tokens[i, mask.keep[i]], embedded[i], atol=1e-6)
    assert not torch.allclose(tokens[~masked], m.decoder.mask_token[0, 0].expand(16, -1))


def test_the_loss_counts_only_masked_patches(monkeypatch):
    """With the same masks, changing the target pixels of a visible patch leaves training_loss
    unchanged; changing those of a masked patch does not."""
    torch.manual_seed(0)
    m = MAE(tiny_vit(), **SMALL)
    masks = recorded_masks(monkeypatch, m)
    patchify = mae_module.patchify

    def loss_with(change):
        def changed(x, p):
            target = patchify(x, p).clone()
            pick = (masks[-1].mask[0] == change).nonzero()[0, 0]
            target[0, pick] += 1.0 + torch.arange(target.shape[-1]) / 10
            return target

        monkeypatch.setattr(mae_module, "patchify", changed)
        torch.manual_seed(1)
        return m.training_loss([images()], torch.zeros(4, dtype=torch.long), None)["loss"]

    monkeypatch.setattr(mae_module, "patchify", patchify)
    torch.manual_seed(1)
    base = m.training_loss([images()], torch.zeros(4, dtype=torch.long), None)["loss"]
    assert torch.equal(loss_with(change=0), base)  # a visible patch: the same loss
    assert not torch.allclose(loss_with(change=1), base)  # a masked patch: another one


def test_forward_is_the_encoder_on_all_patches():
    torch.manual_seed(0)
    m = MAE(tiny_vit(), **SMALL).eval()
    x = images()
    with torch.no_grad():
        out = m(x)
        assert torch.equal(out, m.backbone(x)) and torch.equal(out, m(x))  # deterministic
        # the masked path with nothing masked (all tokens, shuffled) pools to the same features:
        # the encoder of training runs the very modules and positional embeddings forward runs
        m.mask_ratio = 0.0
        latent, _ = m.encode_visible(x)
        pooled = m.backbone.forward_head(latent, pre_logits=True)
    assert out.shape == (4, 192) and torch.allclose(pooled, out, atol=1e-5)


def test_the_encoder_positional_embeddings_are_fixed_sincos():
    m = MAE(tiny_vit(), **SMALL)
    pos = m.backbone.pos_embed
    assert torch.equal(pos[0], sincos_pos_embed_2d(192, (4, 4), prefix_tokens=1))
    assert not pos.requires_grad
    assert all(p is not pos for g in m.parameter_groups(True) for p in g["params"])
    assert torch.equal(m.decoder.pos_embed[0], sincos_pos_embed_2d(32, (4, 4), prefix_tokens=1))
    learned = MAE(tiny_vit(), **SMALL, fixed_pos_embed=False).backbone.pos_embed
    assert learned.requires_grad and not torch.equal(learned, pos)


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"mask_ratio": 1.0}, "method.mask_ratio"),
        ({"mask_ratio": 0.95}, "method.mask_ratio"),  # int(16 * 0.05) = 0 patches left
        ({"decoder_depth": 0}, "method.decoder_depth"),
        ({"decoder_embed_dim": 30}, "method.decoder_embed_dim"),  # not a multiple of 4 heads
    ],
)
def test_bad_values_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        MAE(tiny_vit(), **{**SMALL, **kwargs})


def test_a_backbone_without_patches_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="backbone") as err:
        MAE(narrow(), **SMALL)
    assert "backbone=vit_tiny" in str(err.value)
    with pytest.raises(ConfigError, match="dynamic_img_size"):
        MAE(tiny_vit(dynamic_img_size=True), **SMALL)
    with pytest.raises(ConfigError, match="augmentation.views"):  # multi-crop: views of 2 sizes
        MAE(tiny_vit(), **SMALL).training_loss([images(), torch.randn(4, 3, 8, 8)], None, None)


def test_fast_dev_run_through_cli_on_vit_tiny(tmp_path):
    run = run_cli(
        "method=mae",
        "trainer.fast_dev_run=true",
        *FAST,
        "backbone=vit_tiny",
        "augmentation=mae",
        "optimizer=adamw",
        "data.options.n_train=64",
        "data.options.n_test=32",
        "data.batch_size=32",
        "online_eval.init_baseline=false",
        "method.decoder_embed_dim=128",
        "method.decoder_depth=2",
        run_dir=tmp_path / "run",
        check=True,
    )
    res = run.results
    assert res["status"] == "completed" and res["method"] == "mae" and res["global_step"] == 1
    assert res["backbone"].startswith("vit_tiny_patch16_224")


# ---- learning ------------------------------------------------------------------------------------
# MAE lifts kNN above its random init in the shared short run (conftest.LEARN: 2000 synthetic
# images, batch 64) with three changes from the earlier attempts below: pixel targets
# (norm_pix_loss=false; the normalised targets amplify the flat background's noise here and kNN
# falls), a decoder of the paper's depth (8 blocks, width 128: the paper's table 1a, a deeper
# decoder leaves the encoder's last layers more abstract) and average pooling of the encoder's
# tokens for kNN (timm's global_pool=avg, the pooling of the paper's fine-tuning; the class token is
# the default for probes). ViT-Tiny's width with 4 blocks, patch 8 (a 4x4 grid, 4 patches visible),
# AdamW lr 2e-3 (betas 0.9 / 0.95, weight decay 0.05), half an epoch of warm-up and a cosine, 6
# epochs (186 steps), kNN k=50 over 2000 test images (500 left the margin inside the noise: +-2
# points), one thread each, 2 runs side by side on the 2 cores (61-66 s each). kNN top-1 init -> per
# epoch, seeds 0-3 (2026-12-01):
#   20.1 -> 24.8 27.5 28.0 27.5 28.5 28.5 (+8.4); 21.2 -> 21.0 23.7 26.7 25.2 27.1 26.4 (+5.9);
#   20.7 -> 24.0 25.4 25.5 26.9 26.6 26.4 (+6.2); 20.1 -> 27.1 24.7 26.2 25.9 27.5 27.1 (+7.4)
# seeds 4-7: +7.3, +6.3, +5.0, +7.1. The same seeds 0-3 without the online probe (online_eval.
# probe=false: the probe's init draws from the RNG before the decoder's, so these are other random
# streams, not other code): +4.4, +3.0, +7.5, +6.6. Over these 12 runs the gain is 3.0-8.4, mean
# 6.3; the test asks for +3, the lowest of them: another CPU's float rounding makes another
# stream, hence the low bar (one evaluation on 2000 test images is noisy by about +-1 point). With
# 2 threads per run (other streams again) seeds 0-3 pass too. On Fashion-MNIST these settings
# reach 64.45 against fmnist_mae's 66.70 (BENCHMARKS.md), so the experiment keeps MAE's recipe.
# Near it: the class token instead of average pooling +7.6, +5.9, +4.1, +5.2 (falls back after epoch
# 2); lr 3e-3 +7.0, +7.1, +3.7, +7.0; 5 epochs +6.3, +5.3, +6.4, +8.4; mask ratio 0.5 +11.1, +5.5,
# +1.9, +5.8; 4000 images for 3 epochs +9.8, +3.2, +5.1, +6.1; normalised-pixel targets -1.2, -5.4
# (seeds 0, 2; 4 epochs, 500 test images); patch 4 (8x8 grid, 3x the time) +5.4, +2.6; decoder 8 x
# 256 +2.0, +4.8; lr 1e-3 (500 test images) 4 epochs +4.6, +3.8, 8 epochs +2.8, +3.4, +5.6, +2.8.
# With 2000 test images, decoder 4 x 128: +8.3, +5.3, +7.9, +8.9 (~15% less time a run); 8 x 64:
# +3.1, +3.8, +9.0, +2.3.
MAE_LEARN = [
    "backbone=vit_tiny",
    "augmentation=mae",
    "optimizer=adamw",
    "data.vit_patch_size=8",
    "+backbone.kwargs.depth=4",
    "+backbone.kwargs.global_pool=avg",
    "data.options.n_test=2000",
    "method.decoder_embed_dim=128",
    "method.decoder_depth=8",
    "method.decoder_num_heads=4",
    "method.norm_pix_loss=false",
    "optimizer.lr=2e-3",
    "optimizer.betas=[0.9,0.95]",
    "optimizer.weight_decay=0.05",
    "trainer.max_epochs=6",
]


# All four seeds run under `make test-long`, not `make test`: one run costs 52-58 s of a CI worker,
# and with seed 0 in `make test` the suite took 11:33, 12:13 and 12:01 in three clean-clone runs on
# 2026-12-01 (issue 17 item 5 asks for < 12 minutes). `make test` keeps the reconstruction test.
@pytest.mark.long
@pytest.mark.timeout(1300)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_mae_lifts_knn_above_its_random_init(tmp_path, seed):
    init, best, _ = learning_run("mae", tmp_path, [*MAE_LEARN, f"seed={seed}"])
    assert best >= init + 3, (seed, init, best)  # 12 runs: +3.0 to +8.4 (seed 0: +8.4)


# Earlier attempts, which did not lift kNN reliably: a decoder of 1-2 blocks, 500 test images.
# Measured on the shared 2-core machine with the conftest.LEARN run (kNN top-1 init -> best) and
# ViT-Tiny of 4 blocks, AdamW (betas 0.9 / 0.95), a decoder of 2 blocks x 128, no probe:
#   patch 8 (4x4 grid), pixel targets, lr 5e-4, 3 epochs (~27 CPU-s a run), seeds 0-3:
#   18.4 -> 29.2 (+10.8), 20.6 -> 26.8 (+6.2), 21.2 -> 15.8 (-5.4), 18.0 -> 19.2 (+1.2)
#   the same, seed 0: lr 1e-3 +6.6; lr 2e-3 30.8 after epoch 1, then 20.6, 23.2; mask ratio 0.5
#   +13.4 (seed 2: -2.8); average pooling +4.4 (seed 2: -0.2); 6 epochs, seed 2: 21.2 -> 15.2
#   normalised-pixel targets: kNN falls to 11-12 (patch 8, lr 5e-4; patch 4, lr 2e-3)
#   the whole ViT-Tiny, patch 4, normalised pixels, lr 2e-3, 2 epochs: 18.0 -> 20.2 (127 CPU-s)
# Again on 2026-11-30 (the same data and model, AdamW lr 1e-3 with half an epoch of warm-up and a
# cosine, kNN k=50 after every epoch, seeds 0-3; best gain over init):
#   normalised pixels, class token, 4 epochs: -5.0, -4.6 (seeds 0, 2); pixels: +0.4, +0.4, -5.6,
#   -1.4; pixels, average pooling: +2.0, +0.6, -1.2, +3.8; normalised pixels, average pooling:
#   4 epochs -5.2, -6.6, -6.0, -2.4, 8 epochs -4.6, -2.4, -5.2, -3.0 (kNN falls in epoch 1 and
#   climbs back slowly while the loss keeps falling); 32 epochs (~200 CPU-s), normalised pixels,
#   average pooling, seeds 0-1: +1.2, +4.2 (back at init by epoch ~20); features standardised per
#   dimension by the bank's mean and std before the cosine kNN (MAE's features have dimensions of
#   very different scale), 6 epochs, class token: -7.4, -4.6, -3.6, -7.2; average pooling: -10.2,
#   -8.8, -9.6, -10.0 (standardising lifts the random init more than the trained encoder).
# On Fashion-MNIST (experiment=fmnist_mae) kNN dips below its random init for the first epochs and
# passes it after ~8 (tests/test_learning.py).
#
# What MAE learns first - to reconstruct the masked patches from the visible ones - is checked on
# its own, in-process and with the normalised targets of MAE's recipe. The run: ViT-Tiny's width
# with 2 blocks, patch 8 at 32 px, a decoder of 1 x 64, normalised-pixel
# targets, 150 AdamW steps (lr 1e-3, betas 0.9 / 0.95) on batches of 64 flipped synthetic images
# (1024 to train on), scored on 256 others with one fixed mask. Held-out masked-patch loss (init ->
# trained; predicting 0 for every normalised target scores (P - 1) / P = 0.995) and the loss when
# each image is decoded from another image's visible tokens, over seeds 0-3 (7-10 CPU-s each):
#   1.486 -> 0.805 (other image's tokens: 1.139), 1.471 -> 0.806 (1.130), 1.523 -> 0.812 (1.148),
#   1.462 -> 0.799 (1.120)
# After 40 steps it only predicts 0 (0.985, the other image's tokens 0.987: a scratch run of seed 0
# normalised with fixed statistics).


def held_out_losses(m: MAE, x: torch.Tensor) -> tuple[float, float]:
    """(masked-patch loss on x, the same with each image decoded from its neighbour's visible
    tokens), one fixed mask, eval mode."""
    m.eval()
    with torch.no_grad():
        torch.manual_seed(123)
        latent, mask = m.encode_visible(x)
        target = mae_module.patchify(x, m.patch_size)
        own = mae_module.mae_loss(m.decoder(latent, mask.restore), target, mask.mask)
        other = mae_module.mae_loss(m.decoder(latent.roll(1, 0), mask.restore), target, mask.mask)
    m.train()
    return own.item(), other.item()


def check_reconstruction_learned(seed: int, steps: int = 150) -> None:
    from ssl_bench.data.synthetic import make_synthetic

    torch.manual_seed(seed)
    imgs, _ = make_synthetic(1024 + 256, 10, 32, seed=seed)
    x = imgs.float() / 255
    x = (x - x.mean(dim=(0, 2, 3), keepdim=True)) / x.std(dim=(0, 2, 3), keepdim=True)
    train, test = x[:1024], x[1024:]
    vit = create_backbone("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2)
    m = MAE(vit, decoder_embed_dim=64, decoder_depth=1, decoder_num_heads=4)
    init, _ = held_out_losses(m, test)
    params = [p for g in m.parameter_groups(True) for p in g["params"]]
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05)
    for _ in range(steps):
        batch = train[torch.randint(0, 1024, (64,))]
        flip = (torch.rand(64) < 0.5).reshape(-1, 1, 1, 1)
        loss = m.training_loss([torch.where(flip, batch.flip(-1), batch)], None, None)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    own, other = held_out_losses(m, test)
    assert own < 0.9 < init, (seed, init, own)  # measured <= 0.812; predicting 0 gives 0.995
    assert other > 1.2 * own, (seed, own, other)  # measured >= 1.40x: it reads the visible patches


@pytest.mark.slow
def test_mae_learns_to_reconstruct_from_the_visible_patches():
    check_reconstruction_learned(0)


@pytest.mark.long
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mae_learns_to_reconstruct_on_other_seeds(seed):
    """The margins of the default suite's seed 0 over seeds 1-3 (`make test-long`)."""
    check_reconstruction_learned(seed)
