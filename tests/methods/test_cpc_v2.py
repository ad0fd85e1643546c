"""CPC v2: grid InfoNCE and the whole loss vs literal references (eq. 1-2, the appendix
pseudo-code), the context never sees the rows it predicts and the targets share no pixel with them,
the patch grid and its augmentation, fixed-batch training, the CLI and learning."""

import pytest
import torch
import torch.nn.functional as F
from conftest import FAST, knn_gain, learning_run, needs_fmnist, run_cli, train_fixed_batch

from ssl_bench.backbones import create_backbone
from ssl_bench.errors import ConfigError
from ssl_bench.methods.cpc_v2 import DIRECTIONS, CPCv2
from ssl_bench.nn.masked_conv import ContextNetwork
from ssl_bench.nn.patch_grid import PatchAugment, cut_patches, grid_geometry


def tiny_backbone():
    return create_backbone("resnet18", small_input=True, channels=(8, 16, 32, 64))


# ---- the appendix pseudo-code of Henaff et al. 2020, transcribed literally (TF-style NHWC tensors)
# ------ Each `Conv2D(...)` call of the pseudo-code creates a layer; here it takes the next (weight,
# bias) of the module under test, in the order the pseudo-code creates them, and checks its shape is
# the one asked for.
class PseudoCodeLayers:
    def __init__(self, weights):
        self.weights = list(weights)

    def Conv2D(self, output_channels, kernel_shape, type="SAME"):
        weight, bias = self.weights.pop(0)
        assert weight.shape[0] == output_channels and tuple(weight.shape[2:]) == kernel_shape

        def layer(x):  # x: [B, H, W, C]
            pad = [(k - 1) // 2 for k in kernel_shape] if type == "SAME" else [0, 0]
            y = F.conv2d(x.permute(0, 3, 1, 2), weight, bias, padding=pad)
            return y.permute(0, 2, 3, 1)

        return layer


def ReLU(x):
    return torch.relu(x)


def Pad(x, paddings):  # tf.pad: [[before, after]] per dimension
    return F.pad(x, [p for before_after in reversed(paddings) for p in before_after])


def reshape(x, shape):
    return torch.reshape(x, shape)


def matmul(a, b, transp_b=False):
    return a @ (b.T if transp_b else b)


def cross_entropy_with_logits(logits, labels):
    return F.cross_entropy(logits, labels)


def pseudo_code_cpc(
    L,
    latents,
    target_dim=64,
    emb_scale=0.1,
    steps_to_ignore=2,
    steps_to_predict=3,
    num_blocks=5,
    hidden=256,
):
    Conv2D = L.Conv2D

    def pixelCNN(latents):
        # latents: [B, H, W, D]
        cres = latents
        cres_dim = cres.shape[-1]
        for _ in range(num_blocks):  # the paper: range(5)
            c = Conv2D(output_channels=hidden, kernel_shape=(1, 1))(cres)
            c = ReLU(c)
            c = Conv2D(output_channels=hidden, kernel_shape=(1, 3))(c)
            c = Pad(c, [[0, 0], [1, 0], [0, 0], [0, 0]])
            c = Conv2D(output_channels=hidden, kernel_shape=(2, 1), type="VALID")(c)
            c = ReLU(c)
            c = Conv2D(output_channels=cres_dim, kernel_shape=(1, 1))(c)
            cres = cres + c
        cres = ReLU(cres)
        return cres

    def CPC(latents, target_dim=64, emb_scale=0.1, steps_to_ignore=2, steps_to_predict=3):
        # latents: [B, H, W, D]
        loss = 0.0
        context = pixelCNN(latents)
        targets = Conv2D(output_channels=target_dim, kernel_shape=(1, 1))(latents)
        batch_dim, col_dim, rows = targets.shape[:-1]
        targets = reshape(targets, [-1, target_dim])
        for i in range(steps_to_ignore, steps_to_predict):
            col_dim_i = col_dim - i - 1
            total_elements = batch_dim * col_dim_i * rows
            preds_i = Conv2D(output_channels=target_dim, kernel_shape=(1, 1))(context)
            preds_i = preds_i[:, : -(i + 1), :, :] * emb_scale
            preds_i = reshape(preds_i, [-1, target_dim])
            logits = matmul(preds_i, targets, transp_b=True)
            # the paper's `/`: integer division
            b = torch.arange(total_elements) // (col_dim_i * rows)
            col = torch.arange(total_elements) % (col_dim_i * rows)
            labels = b * col_dim * rows + (i + 1) * rows + col
            loss += cross_entropy_with_logits(logits, labels)
        return loss

    return CPC(latents, target_dim, emb_scale, steps_to_ignore, steps_to_predict)


def module_weights_in_pseudo_code_order(m, direction):
    """(weight, bias) of the context blocks, the target conv and each offset's prediction conv."""
    weights = []
    for block in m.context[direction].blocks:
        convs = (block.reduce, block.across, block.down, block.expand)
        weights += [(conv.weight, conv.bias) for conv in convs]
    weights.append((m.target_proj[direction].weight, m.target_proj[direction].bias))
    pred, T = m.predictors[direction], m.target_dim
    weights += [
        (pred.weight[n * T : (n + 1) * T], pred.bias[n * T : (n + 1) * T])
        for n in range(len(m.offsets))
    ]
    return weights


@pytest.mark.parametrize("steps", [(2, 3), (0, 3)])
def test_cpc_loss_matches_the_appendix_pseudo_code_value_and_gradient(steps):
    """The method's loss for one direction against the paper's pseudo-code (pixelCNN + CPC) on the
    same weights: the default predicts 3 rows ahead only; (0, 3) sums the offsets 1, 2 and 3 as the
    pseudo-code's loop does."""
    torch.manual_seed(0)
    m = CPCv2(
        tiny_backbone(),
        steps_to_ignore=steps[0],
        steps_to_predict=steps[1],
        target_dim=16,
        directions=["down"],
        context_hidden=12,
        context_blocks=5,
    ).double()
    # B x D x G x G patch embeddings
    z = torch.randn(3, 64, 7, 7, dtype=torch.float64, requires_grad=True)
    ours, correct = m.cpc_loss(z, "down")
    L = PseudoCodeLayers(module_weights_in_pseudo_code_order(m, "down"))
    ref = pseudo_code_cpc(
        L,
        z.permute(0, 2, 3, 1),
        target_dim=16,
        emb_scale=0.1,
        steps_to_ignore=steps[0],
        steps_to_predict=steps[1],
        num_blocks=5,
        hidden=12,
    )
    assert not L.weights  # every module weight used, none missing
    assert correct.numel() == sum(3 * (7 - k) * 7 for k in m.offsets)
    assert torch.allclose(ours.double(), ref, rtol=1e-10), (ours, ref)
    params = [z, *(p for name, p in m.named_parameters() if not name.startswith("backbone"))]
    g_ours = torch.autograd.grad(ours, params)
    g_ref = torch.autograd.grad(ref, params)
    for a, b in zip(g_ours, g_ref):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-12)


def test_defaults_are_the_papers():
    m = CPCv2(tiny_backbone(), context_hidden=8, context_blocks=1)
    assert m.offsets == (3,) and m.target_dim == 64 and m.emb_scale == 0.1
    assert m.directions == ["down", "up", "left", "right"]
    assert m.predictors["down"].out_channels == 64 and m.target_proj["down"].out_channels == 64


@pytest.mark.parametrize("image_size", [28, 32, 64, 96, 256])
def test_a_target_never_shares_pixels_with_the_context_rows_it_is_predicted_from(image_size):
    """Under the default grid (image / 4 px patches at half-patch stride; 8 px at stride 4 on 28 and
    32 px) every predicted offset leaves the target patch row clear of every pixel of the rows <= i
    the context sees. Offset 1 (the old defaults predicted offsets 1, 2, 3) shares half a patch: the
    check itself can fail."""
    fmnist = image_size == 28  # the fmnist experiment's 8 px / 4
    patch, stride, G = grid_geometry(image_size, 8 if fmnist else None, 4 if fmnist else None)
    ids = torch.arange(image_size * image_size, dtype=torch.float64).reshape(
        1, 1, image_size, image_size
    )
    patches, g = cut_patches(ids, patch, stride)  # the method's own cutting
    rows = patches.reshape(G, G, -1)  # row i: the pixel ids of its patches

    def shared(i, k):
        context = set(rows[: i + 1].flatten().long().tolist())
        return context & set(rows[i + k].flatten().long().tolist())

    offsets = CPCv2(tiny_backbone(), context_hidden=8, context_blocks=1).offsets
    assert offsets and max(offsets) < G
    for k in offsets:
        for i in range(G - k):
            assert not shared(i, k), (image_size, i, k)
    assert all(len(shared(i, 1)) == image_size * patch // 2 for i in range(G - 1))


def test_each_direction_is_the_pseudo_code_on_the_rotated_grid():
    """training_loss = mean over the directions of cpc_loss on the grid rotated so that the
    direction points down the rows; "up" predicts row i from the rows below it, "left" column j from
    those to its right."""
    torch.manual_seed(0)
    dirs = ["down", "up", "left", "right"]
    m = CPCv2(
        tiny_backbone(),
        directions=dirs,
        context_hidden=8,
        context_blocks=2,
        patch_augment={"color_drop": 0.0, "hflip": 0.0},
    ).double()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    out = m.training_loss([x], None, None)
    z = m.encode_grid(x)
    expected = sum(m.cpc_loss(torch.rot90(z, DIRECTIONS[d], dims=(2, 3)), d)[0] for d in dirs) / 4
    assert torch.allclose(out["loss"], expected, rtol=1e-10)
    pos = torch.arange(49).reshape(1, 1, 7, 7)  # flat (row, column) index of each patch
    up = torch.rot90(pos, DIRECTIONS["up"], dims=(2, 3))
    left = torch.rot90(pos, DIRECTIONS["left"], dims=(2, 3))
    assert up[0, 0, 0, 0] == 48 and up[0, 0, 6, 0] == 6  # rotated row 0 = the bottom row
    assert left[0, 0, 0, 0] == 6 and left[0, 0, 1, 0] == 5  # rotated row 0 = the right-most column


def test_bad_values_raise_config_errors():
    for kwargs, key in (
        ({"steps_to_ignore": -1}, "method.steps_to_ignore"),
        ({"steps_to_ignore": 3, "steps_to_predict": 3}, "method.steps_to_predict"),
        ({"target_dim": 0}, "method.target_dim"),
        ({"emb_scale": 0.0}, "method.emb_scale"),
        ({"directions": ["down", "down"]}, "method.directions"),
    ):
        with pytest.raises(ConfigError, match=key):
            CPCv2(tiny_backbone(), **kwargs)
    m = CPCv2(
        tiny_backbone(),
        steps_to_ignore=0,
        steps_to_predict=7,
        directions=["down"],
        context_hidden=8,
        context_blocks=1,
    )
    with pytest.raises(ConfigError, match="method.steps_to_predict"):  # 7 rows ahead on a 7x7 grid
        m.training_loss([torch.randn(2, 3, 32, 32)], None, None)


def test_context_never_sees_the_rows_it_predicts():
    torch.manual_seed(0)
    net = ContextNetwork(8, hidden=6, num_blocks=4).double()
    z = torch.randn(2, 8, 7, 7, dtype=torch.float64)
    base = net(z)
    for row in range(1, 7):
        changed = z.clone()
        changed[:, :, row] += 5 * torch.randn(2, 8, 7, dtype=torch.float64)  # a target row
        out = net(changed)
        assert torch.equal(out[:, :, :row], base[:, :, :row])  # earlier rows: bit-identical
        assert not torch.allclose(out[:, :, row], base[:, :, row])  # its own row does see it
    # the rows above do reach down: each 3x3 block one row further, so 4 blocks carry row 0 to row 4
    changed = z.clone()
    changed[:, :, 0] += 1.0
    assert not torch.allclose(net(changed)[:, :, 4], base[:, :, 4])


def test_through_the_method_a_changed_bottom_patch_leaves_earlier_contexts_alone():
    """End to end with the paper's layer-normalised encoder: pixels that only the last row of
    patches covers change z of that row, and the context of every earlier row stays exactly as it
    was."""
    torch.manual_seed(0)
    m = CPCv2(tiny_backbone(), directions=["down"], context_hidden=16, context_blocks=2).double()
    m.train()  # train mode: with batch norm this would leak across patches
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    y = x.clone()
    # rows 28-31: only the last patch row (24-31)
    y[:, :, 28:] = torch.randn(2, 3, 4, 32, dtype=torch.float64)
    with torch.no_grad():
        zx, zy = m.encode_grid(x), m.encode_grid(y)
        cx, cy = m.context["down"](zx), m.context["down"](zy)
    assert torch.equal(zx[:, :, :6], zy[:, :, :6]) and not torch.allclose(zx[:, :, 6], zy[:, :, 6])
    assert torch.equal(cx[:, :, :6], cy[:, :, :6])


def test_grid_geometry_and_patch_order():
    assert (
        grid_geometry(32) == (8, 4, 7)
        and grid_geometry(64) == (16, 8, 7)
        and grid_geometry(96) == (24, 12, 7)
    )
    assert grid_geometry(28, 8, 4) == (8, 4, 6)
    with pytest.raises(ValueError):
        grid_geometry(16, 16, 4)  # a 1x1 grid has nothing to predict
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32)
    patches, g = cut_patches(x, 8, 4)
    assert g == 7 and patches.shape == (2 * 49, 3, 8, 8)
    b, i, j = 1, 3, 5  # flat index b*49 + i*7 + j is the patch at (4i, 4j)
    assert torch.equal(patches[b * 49 + i * 7 + j], x[b, :, 12:20, 20:28])


def test_patch_augment_is_per_patch_and_drops_two_channels():
    torch.manual_seed(0)
    aug = PatchAugment(
        color_drop=1.0,
        hflip=0.5,
        rotate=10,
        shear=5,
        scale=[0.9, 1.1],
        translate=0.1,
        brightness=0.4,
        contrast=0.4,
        saturation=0.4,
        hue=0.1,
    )
    x = torch.randn(1, 3, 8, 8).expand(64, -1, -1, -1).contiguous()  # 64 copies of one patch
    y = aug(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert ((y != 0).flatten(2).any(dim=2).sum(dim=1) <= 1).all()  # at most one channel survives
    assert len({tuple(v.flatten().tolist()) for v in y}) == 64  # each patch drew its own transform
    identity = PatchAugment(color_drop=0.0, hflip=0.0)
    assert torch.allclose(identity(x), x, atol=1e-5)


def test_forward_is_the_mean_pooled_grid():
    torch.manual_seed(0)
    m = CPCv2(tiny_backbone(), directions=["down"], context_hidden=16, context_blocks=1).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        patches, _ = cut_patches(x, 8, 4)
        expected = m.backbone(patches).reshape(3, 49, -1).mean(dim=1)
        assert torch.allclose(m(x), expected, atol=1e-5)


def test_forty_steps_on_a_fixed_batch_lower_the_loss():
    """The paper's scores (dot products of predictions scaled by 0.1) start at chance, log(12 * 49)
    = 6.38, and move slowly: measured with SGD 0.01 -> 0.7% lower after 30 steps, 0.1 -> 6%, 0.3 ->
    11%."""
    from ssl_bench.data.synthetic import make_synthetic

    torch.manual_seed(0)
    m = CPCv2(
        tiny_backbone(),
        directions=["down", "up"],
        context_hidden=32,
        context_blocks=2,
        encoder_norm="batch",
        patch_augment={"color_drop": 0.0, "hflip": 0.0},
    )
    x = (make_synthetic(12, 10, 32, seed=0)[0].float() / 255 - 0.5) / 0.25
    losses, out = train_fixed_batch(m, [x], steps=40, lr=0.3)
    assert {"loss", "representation", "z_std", "cpc_acc"} == set(out)
    assert out["representation"].shape == (12, 64)
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5, losses


def test_fast_dev_run_through_the_cli(tmp_path):
    run = run_cli(
        "method=cpc_v2",
        *FAST,
        "augmentation=cpc_v2",
        "data.batch_size=16",
        "method.directions=[down,up]",
        "backbone.kwargs.channels=[8,16,32,64]",
        "trainer.fast_dev_run=true",
        run_dir=tmp_path / "run",
        check=True,
    )
    assert run.results["status"] == "completed" and run.results["method"] == "cpc_v2"


@pytest.mark.long
@needs_fmnist
def test_cpc_v2_learns_on_fashion_mnist(tmp_path):
    """experiment=fmnist_cpc_v2 (2k images, 3 epochs, 6x6 grid, the paper's loss). Measured on 2
    cores shared by 3-6 processes, one thread: kNN top-1 44.3 at init -> 54.4 / 59.4 / 61.2 after
    epochs 1-3, 77 s wall."""
    run = run_cli(
        "experiment=fmnist_cpc_v2",
        "progress_bar=false",
        run_dir=tmp_path / "run",
        check=True,
        timeout=1200,
    )
    init, after = knn_gain(run)
    assert after >= init + 5, (init, after)


# test-only settings of the synthetic learning test (conf/method/cpc_v2.yaml keeps the paper's): 12
# px patches at stride 6 (a 4x4 grid: one row of contexts 3 rows ahead of its targets, 6 px apart,
# and each patch a good part of the shape), a batch-normalised encoder, a 64-wide 3-block context
# network, AdamW 5e-3 and batches of 32 (more steps for the same time). The loss, the four
# directions and the patch augmentation are the paper's.
CPC_SYNTHETIC = [
    "augmentation=cpc_v2",
    "method.patch_size=12",
    "method.patch_stride=6",
    "method.encoder_norm=batch",
    "method.context_hidden=64",
    "method.context_blocks=3",
    "optimizer=adamw",
    "optimizer.lr=5e-3",
    "optimizer.weight_decay=1e-5",
    "data.batch_size=32",
]


@pytest.mark.slow
def test_cpc_v2_learns_on_synthetic(tmp_path):
    """The shared short run (conftest.LEARN: 2k images, 2 epochs) with CPC_SYNTHETIC. Measured kNN
    top-1 gains (best - init) over seeds 0-3: +5.8 (22.8 -> 28.6), +11.8 (25.4 -> 37.2), +13.0 (27.8
    -> 40.8), +10.4 (24.6 -> 35.0); about 56 s of CPU each on one thread (49-50 s wall, 2 cores
    shared by 3-6 processes). Before solo-learn's warm-up cosine and AdamW's decay of biases / norms
    (merged from main): +7.8, +10.8, +11.6, +7.4. What mattered (seed 1 unless said, before that
    merge): without the patch augmentation - the images' faint per-image tint and gradient tell them
    apart, the low-level cue colour dropping removes - -2.6 / -2.4 with 12 / 14 px patches and 2
    directions, -2.6 / +1.4 / -6.4 over seeds 1-3 (12 px), -4.6 with 4 directions; with it +10.8.
    The paper's 7x7 grid (8 px patches at stride 4) +20.8 but 82 s of CPU; batches of 64 +9.4 (8
    px); layer norm (the paper's encoder) +5.0, z_std down to 0.016. Cosine scores / 0.1 instead of
    the paper's: -2.8 (seed 0, 14 px, no augmentation; +16.4 with the paper's scores)."""
    init, after, z_std = learning_run("cpc_v2", tmp_path, CPC_SYNTHETIC)
    assert after >= init + 5, (init, after)  # the lowest of 4 seeds: +5.8
    assert min(z_std) > 0.02, z_std
