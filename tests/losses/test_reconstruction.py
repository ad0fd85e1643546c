"""MAE's loss against the official forward_loss (He et al. 2022; facebookresearch/mae@efb2a80
models_mae.py), transcribed literally below: values and gradients, with and without norm_pix_loss;
only the masked patches count."""

import pytest
import torch

from ssl_bench.losses.reconstruction import mae_loss
from ssl_bench.nn.masking import patchify


class OfficialMAE:
    """The official patchify and forward_loss, the model's patch size given."""

    def __init__(self, p, norm_pix_loss):
        self.p, self.norm_pix_loss = p, norm_pix_loss

    def patchify(self, imgs):
        """
        imgs: (N, 3, H, W)
        x: (N, L, patch_size**2 *3)
        """
        p = self.p
        assert imgs.shape[2] == imgs.shape[3] and imgs.shape[2] % p == 0

        h = w = imgs.shape[2] // p
        x = imgs.reshape(shape=(imgs.shape[0], 3, h, p, w, p))
        x = torch.einsum("nchpwq->nhwpqc", x)
        x = x.reshape(shape=(imgs.shape[0], h * w, p**2 * 3))
        return x

    def forward_loss(self, imgs, pred, mask):
        """
        imgs: [N, 3, H, W]
        pred: [N, L, p*p*3]
        mask: [N, L], 0 is keep, 1 is remove,
        """
        target = self.patchify(imgs)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5

        loss = (pred - target) ** 2
        loss = loss.mean(dim=-1)  # [N, L], mean loss per patch

        loss = (loss * mask).sum() / mask.sum()  # mean loss on removed patches
        return loss


def batch(n=3, size=8, p=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randn(n, 3, size, size, generator=g, dtype=torch.float64)
    length = (size // p) ** 2
    pred = torch.randn(n, length, p * p * 3, generator=g, dtype=torch.float64)
    mask = (torch.rand(n, length, generator=g) < 0.75).double()
    mask[:, 0] = 1.0  # at least one masked patch per sample
    return imgs, pred.requires_grad_(True), mask


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_equals_the_official_forward_loss_values_and_gradients(norm_pix_loss):
    imgs, pred, mask = batch()
    ref = OfficialMAE(2, norm_pix_loss).forward_loss(imgs, pred, mask)
    (ref_grad,) = torch.autograd.grad(ref, pred)
    ours = mae_loss(pred, patchify(imgs, 2), mask, norm_pix_loss=norm_pix_loss)
    (grad,) = torch.autograd.grad(ours, pred)
    assert torch.allclose(ours.double(), ref, atol=1e-6), (ours, ref)
    assert torch.allclose(grad.double(), ref_grad, atol=1e-7)


def test_patchify_is_the_official_one():
    imgs, _, _ = batch(size=12, p=4)
    assert torch.equal(patchify(imgs, 4), OfficialMAE(4, True).patchify(imgs))


def test_only_masked_patches_count():
    """Changing a visible patch's prediction or its target pixels leaves the loss unchanged; a
    masked one changes it."""
    imgs, pred, mask = batch(n=1)
    mask = torch.zeros_like(mask)
    mask[0, 5:] = 1.0
    target = patchify(imgs, 2)
    base = mae_loss(pred, target, mask)
    visible_pred, visible_target = pred.detach().clone(), target.clone()
    visible_pred[0, 2] += 3.0
    visible_target[0, 3] *= -2.0
    assert torch.equal(mae_loss(visible_pred, visible_target, mask), base.detach())
    masked_target = target.clone()
    masked_target[0, 7] += torch.linspace(0, 1, target.shape[-1], dtype=target.dtype)
    assert not torch.allclose(mae_loss(pred, masked_target, mask), base)
    (grad,) = torch.autograd.grad(base, pred)
    assert grad[0, :5].abs().sum() == 0 and grad[0, 5:].abs().sum() > 0


def test_normalised_targets_ignore_each_patchs_offset_and_scale():
    imgs, pred, mask = batch()
    target = patchify(imgs, 2)
    shifted = 5.0 * target + 2.0  # the same affine change of every pixel
    assert torch.allclose(mae_loss(pred, shifted, mask), mae_loss(pred, target, mask), atol=1e-5)
    assert not torch.allclose(
        mae_loss(pred, shifted, mask, norm_pix_loss=False),
        mae_loss(pred, target, mask, norm_pix_loss=False),
    )


def test_bf16_predictions_give_a_float32_loss():
    imgs, pred, mask = batch()
    ours = mae_loss(pred.detach().bfloat16(), patchify(imgs, 2).bfloat16(), mask)
    ref = OfficialMAE(2, True).forward_loss(imgs, pred.detach().bfloat16().double(), mask)
    assert ours.dtype == torch.float32 and abs(ours.item() - ref.item()) < 0.05 * ref.item()
