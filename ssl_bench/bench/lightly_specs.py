"""lightly 1.6.0's loop of each method, as four small declarative pieces.

A `Spec` says what a lightly user writes for one method: the model (lightly's heads on the shared
backbone, deep copies for the momentum teacher, its memory bank), the criterion (lightly's loss),
which of lightly's transforms makes the views, and the loss of one batch. The loop that runs them
all, with the optimizer, the DataLoader of PIL images and the precision variants, is
`bench.lightly_loop`. The pieces follow lightly's own scripts, read at the installed 1.6.0
(lightly-ai/lightly@e8d317f, the same code): examples/pytorch/<method>.py and, where lightly
tuned a loop further, benchmarks/imagenet/resnet50/<method>.py - MoCo's shuffled keys
(batch_shuffle), BYOL's loss of both directions (2 x NegativeCosineSimilarity), DINO's backbone
calls on the crops of one resolution concatenated. Every width, temperature and queue size is
ssl_bench's row's (cfg.method), so both sides do the same work; lightly's heads with a fixed
number of layers refuse a config with another number (`check_layers`).

What the momentum teacher encodes is part of each spec (`bound_views`), for the bare-backbone bound
(bench.bound).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Ctx:
    """Where the loop is: optimizer steps done, steps in all, the epoch (0: a bench never leaves
    its first epoch), and the row's method config (cfg.method)."""

    step: int
    total_steps: int
    method: dict
    epoch: int = 0


def all_views(method: dict, num_views: int) -> tuple[int, int]:
    return num_views, 0


@dataclass(frozen=True)
class Spec:
    """One method's lightly loop.

    model(backbone, feat_dim, method cfg) -> named modules; criterion(method cfg) -> the loss
    module; loss(model, views, criterion, ctx) -> the scalar loss of one batch. `views`: how the
    row's view pipelines map onto lightly's transforms (bench.lightly_loop.make_transform): `pair`
    (two views: `pair_transform`, or BYOLTransform for two asymmetric pipelines), `multicrop`
    (SwaVTransform), `dino` (DINOTransform), `mae` (MAETransform). `momentum`: (online, target)
    module names updated with lightly's update_momentum before each step, tau on lightly's
    cosine_schedule from method.base_tau to method.final_tau. `bound_views(method cfg, views)` ->
    (views the backbone trains through, views the teacher encodes without gradient), None where a
    bare backbone is no bound (MAE's encoder sees a quarter of the patches).
    """

    model: Callable[[nn.Module, int, dict], dict[str, nn.Module]]
    criterion: Callable[[dict], nn.Module]
    loss: Callable[[nn.ModuleDict, list[torch.Tensor], nn.Module, Ctx], torch.Tensor]
    views: str = "pair"
    pair_transform: str = "SimCLRTransform"
    momentum: tuple[tuple[str, str], ...] = ()
    before_forward: Callable[[nn.ModuleDict, Ctx], None] | None = None
    after_backward: Callable[[nn.ModuleDict, Ctx], None] | None = None
    bound_views: Callable[[dict, int], tuple[int, int] | None] = field(default=all_views)
    joint: bool = False


# ---- shared pieces ---------------------------------------------------------------------------
def features(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`backbone(x).flatten(start_dim=1)`, lightly's examples' line."""
    return backbone(x).flatten(start_dim=1)


def teacher_copy(module: nn.Module) -> nn.Module:
    """copy.deepcopy + deactivate_requires_grad: lightly's momentum teacher."""
    from lightly.models.utils import deactivate_requires_grad

    target = copy.deepcopy(module)
    deactivate_requires_grad(target)
    return target


def check_layers(method: dict, expected: int, head: str) -> None:
    """lightly's `head` has `expected` layers: a row with another method.proj_layers has no
    lightly counterpart."""
    layers = method.get("proj_layers", expected)
    if layers != expected:
        raise ValueError(
            f"lightly's {head} has {expected} layers; method.proj_layers={layers} has no lightly "
            "counterpart (compare a row with the default)."
        )


def _two_embeddings(model: nn.ModuleDict, views: list[torch.Tensor]) -> list[torch.Tensor]:
    return [model.projection_head(features(model.backbone, x)) for x in views[:2]]


def _predicted(model: nn.ModuleDict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(z detached, p): SimSiam's and NNCLR's examples' forward."""
    z = model.projection_head(features(model.backbone, x))
    return z.detach(), model.prediction_head(z)


# ---- SimCLR, Barlow Twins, VICReg: one encoder, two views -------------------------------------
def _simclr_model(backbone, dim, m):
    from lightly.models.modules import SimCLRProjectionHead

    head = SimCLRProjectionHead(
        dim,
        m["proj_hidden_dim"],
        m["proj_output_dim"],
        num_layers=m.get("proj_layers", 2),
        batch_norm=m.get("proj_bn", "all") != "none",
    )
    return {"backbone": backbone, "projection_head": head}


def _ntxent(m):
    from lightly.loss import NTXentLoss

    return NTXentLoss(temperature=m["temperature"])


def _pair_loss(model, views, criterion, ctx):
    z0, z1 = _two_embeddings(model, views)
    return criterion(z0, z1) * ctx.method.get("scale_loss", 1.0)


def _barlow_model(backbone, dim, m):
    from lightly.models.modules import BarlowTwinsProjectionHead

    check_layers(m, 3, "BarlowTwinsProjectionHead")
    head = BarlowTwinsProjectionHead(dim, m["proj_hidden_dim"], m["proj_output_dim"])
    return {"backbone": backbone, "projection_head": head}


def _barlow_criterion(m):
    from lightly.loss import BarlowTwinsLoss

    return BarlowTwinsLoss(lambda_param=m["lambd"])


def _vicreg_model(backbone, dim, m):
    from lightly.models.modules.heads import VICRegProjectionHead

    head = VICRegProjectionHead(
        input_dim=dim,
        hidden_dim=m["proj_hidden_dim"],
        output_dim=m["proj_output_dim"],
        num_layers=m.get("proj_layers", 3),
    )
    return {"backbone": backbone, "projection_head": head}


def _vicreg_criterion(m):
    from lightly.loss import VICRegLoss

    return VICRegLoss(
        lambda_param=m["sim_loss_weight"],
        mu_param=m["var_loss_weight"],
        nu_param=m["cov_loss_weight"],
        eps=m.get("eps", 1e-4),
    )


# ---- MoCo v2, BYOL: a momentum teacher ------------------------------------------------------
def _moco_model(backbone, dim, m):
    from lightly.models.modules import MoCoProjectionHead

    head = MoCoProjectionHead(
        dim,
        m.get("proj_hidden_dim") or dim,
        m["proj_output_dim"],
        num_layers=m.get("proj_layers", 2),
        batch_norm=bool(m.get("proj_norm", False)),
    )
    return {
        "backbone": backbone,
        "projection_head": head,
        "backbone_momentum": teacher_copy(backbone),
        "projection_head_momentum": teacher_copy(head),
    }


def _moco_criterion(m):
    from lightly.loss import NTXentLoss

    return NTXentLoss(
        temperature=m["temperature"], memory_bank_size=(m["queue_size"], m["proj_output_dim"])
    )


def _moco_loss(model, views, criterion, ctx):
    """Queries of one view, keys of the other by the momentum encoder on a shuffled batch
    (lightly's mocov2 benchmark); both directions, summed, for ssl_bench's `symmetric`."""
    from lightly.models.utils import batch_shuffle, batch_unshuffle

    pairs = ((0, 1), (1, 0)) if ctx.method.get("symmetric") else ((0, 1),)
    loss = 0.0
    for q, k in pairs:
        query = model.projection_head(features(model.backbone, views[q]))
        with torch.no_grad():
            shuffled, order = batch_shuffle(batch=views[k])
            key = model.projection_head_momentum(features(model.backbone_momentum, shuffled))
            key = batch_unshuffle(batch=key, shuffle=order)
        loss = loss + criterion(query, key)
    return loss


def _moco_views(m, num_views):
    return (2, 2) if m.get("symmetric") else (1, 1)


def _byol_model(backbone, dim, m):
    from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead

    head = BYOLProjectionHead(dim, m["proj_hidden_dim"], m["proj_output_dim"])
    predictor = BYOLPredictionHead(m["proj_output_dim"], m["pred_hidden_dim"], m["proj_output_dim"])
    return {
        "backbone": backbone,
        "projection_head": head,
        "prediction_head": predictor,
        "backbone_momentum": teacher_copy(backbone),
        "projection_head_momentum": teacher_copy(head),
    }


def _negative_cosine(m):
    from lightly.loss import NegativeCosineSimilarity

    return NegativeCosineSimilarity()


def _byol_loss(model, views, criterion, ctx):
    """lightly's BYOL benchmark: 2 x NegativeCosineSimilarity per direction, summed."""
    with torch.no_grad():
        t0, t1 = (
            model.projection_head_momentum(features(model.backbone_momentum, x)) for x in views[:2]
        )
    p0, p1 = (model.prediction_head(z) for z in _two_embeddings(model, views))
    return 2 * criterion(t0, p1) + 2 * criterion(t1, p0)


# ---- SimSiam, NNCLR: a predictor on a stopped target ------------------------------------------
def _simsiam_model(backbone, dim, m):
    from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead

    check_layers(m, 3, "SimSiamProjectionHead")
    out = m["proj_output_dim"]
    return {
        "backbone": backbone,
        "projection_head": SimSiamProjectionHead(dim, m["proj_hidden_dim"], out),
        "prediction_head": SimSiamPredictionHead(out, m["pred_hidden_dim"], out),
    }


def _simsiam_loss(model, views, criterion, ctx):
    (z0, p0), (z1, p1) = (_predicted(model, x) for x in views[:2])
    return 0.5 * (criterion(z0, p1) + criterion(z1, p0))


def _nnclr_model(backbone, dim, m):
    from lightly.models.modules import (
        NNCLRPredictionHead,
        NNCLRProjectionHead,
        NNMemoryBankModule,
    )

    check_layers(m, 3, "NNCLRProjectionHead")
    out = m["proj_output_dim"]
    return {
        "backbone": backbone,
        "projection_head": NNCLRProjectionHead(dim, m["proj_hidden_dim"], out),
        "prediction_head": NNCLRPredictionHead(out, m["pred_hidden_dim"], out),
        "memory_bank": NNMemoryBankModule(size=(m["queue_size"], out)),
    }


def _nnclr_loss(model, views, criterion, ctx):
    """lightly's NNCLR example: the nearest neighbours from NNMemoryBankModule, which takes the
    second view's embeddings."""
    (z0, p0), (z1, p1) = (_predicted(model, x) for x in views[:2])
    z0 = model.memory_bank(z0, update=False)
    z1 = model.memory_bank(z1, update=True)
    return 0.5 * (criterion(z0, p1) + criterion(z1, p0))


# ---- SwAV, DINO: multi-crop ------------------------------------------------------------------
def _swav_model(backbone, dim, m):
    from lightly.models.modules import SwaVProjectionHead, SwaVPrototypes

    out = m["proj_output_dim"]
    prototypes = SwaVPrototypes(
        out, m["num_prototypes"], n_steps_frozen_prototypes=m.get("freeze_prototypes_epochs", 0)
    )
    return {
        "backbone": backbone,
        "projection_head": SwaVProjectionHead(dim, m["proj_hidden_dim"], out),
        "prototypes": prototypes,
    }


def _swav_criterion(m):
    from lightly.loss import SwaVLoss

    return SwaVLoss(
        temperature=m["temperature"],
        sinkhorn_iterations=m["sk_iterations"],
        sinkhorn_epsilon=m["sk_epsilon"],
    )


def _swav_loss(model, views, criterion, ctx):
    """lightly's SwAV benchmark: a backbone call per crop, the 2 large crops' codes predicted
    (its queue starts at epoch 15, as ssl_bench's: not in a bench)."""
    logits = []
    for x in views:
        z = F.normalize(model.projection_head(features(model.backbone, x)), dim=1, p=2)
        logits.append(model.prototypes(z, step=ctx.epoch))
    return criterion(logits[:2], logits[2:])


def _normalize_prototypes(model, ctx):
    model.prototypes.normalize()


def _dino_model(backbone, dim, m):
    """lightly's DINO example: the teacher's head is a second DINOProjectionHead (its weight-normed
    last layer cannot be deep-copied) with the row's widths, here loaded with the student's
    weights so the EMA starts where the student does."""
    from lightly.models.modules import DINOProjectionHead
    from lightly.models.utils import deactivate_requires_grad

    check_layers(m, 3, "DINOProjectionHead")

    def head(freeze_last_layer: int) -> nn.Module:
        with warnings.catch_warnings():  # lightly's head uses torch's deprecated weight_norm
            warnings.filterwarnings("ignore", "`torch.nn.utils.weight_norm` is deprecated")
            return DINOProjectionHead(
                dim,
                m["proj_hidden_dim"],
                m["proj_output_dim"],
                m["num_prototypes"],
                batch_norm=bool(m.get("use_bn_in_head", False)),
                freeze_last_layer=freeze_last_layer,
                norm_last_layer=bool(m.get("norm_last_layer", True)),
            )

    student_head, teacher_head = head(m.get("freeze_last_layer", -1)), head(-1)
    teacher_head.load_state_dict(student_head.state_dict())
    deactivate_requires_grad(teacher_head)
    return {
        "student_backbone": backbone,
        "student_head": student_head,
        "teacher_backbone": teacher_copy(backbone),
        "teacher_head": teacher_head,
    }


def _dino_criterion(m):
    from lightly.loss import DINOLoss

    return DINOLoss(
        output_dim=m["num_prototypes"],
        warmup_teacher_temp=m["warmup_teacher_temp"],
        teacher_temp=m["teacher_temp"],
        warmup_teacher_temp_epochs=m["warmup_teacher_temp_epochs"],
        student_temp=m["student_temp"],
        center_momentum=m["center_momentum"],
    )


def by_resolution(views: list[torch.Tensor]) -> list[torch.Tensor]:
    """Consecutive views of one shape concatenated: one backbone call per crop size."""
    groups: list[list[torch.Tensor]] = []
    for v in views:
        if groups and groups[-1][0].shape == v.shape:
            groups[-1].append(v)
        else:
            groups.append([v])
    return [torch.cat(g) if len(g) > 1 else g[0] for g in groups]


def _dino_loss(model, views, criterion, ctx):
    """lightly's DINO benchmark: the teacher on the 2 global crops, the student on all crops, one
    backbone call per resolution; the teacher temperature of the epoch (DINOLoss's warm-up)."""
    with torch.no_grad():
        teacher = model.teacher_head(features(model.teacher_backbone, torch.cat(views[:2])))
    student = torch.cat(
        [model.student_head(features(model.student_backbone, x)) for x in by_resolution(views)]
    )
    return criterion(teacher.chunk(2), student.chunk(len(views)), epoch=ctx.epoch)


def _cancel_last_layer(model, ctx):
    model.student_head.cancel_last_layer_gradients(current_epoch=ctx.epoch)


# ---- MAE ---------------------------------------------------------------------------------------
def first_of(m: dict, keys: tuple[str, ...], default):
    """The first of `keys` the method config has (ssl_bench's MAE names them), else `default`
    (lightly's MAE example)."""
    return next((m[k] for k in keys if m.get(k) is not None), default)


def _mae_model(backbone, dim, m):
    """lightly's MAE example on the row's timm ViT: MaskedVisionTransformerTIMM, a linear
    embedding into the decoder, MaskedVisionTransformerDecoderTIMM (1.6.0's successor of the
    deprecated MAEDecoderTIMM, which now warns) and a linear prediction of the pixels."""
    from lightly.models.modules import (
        MaskedVisionTransformerDecoderTIMM,
        MaskedVisionTransformerTIMM,
    )
    from lightly.models.modules.masked_vision_transformer_timm import init_weights

    width = first_of(m, ("decoder_dim", "decoder_embed_dim", "decoder_width"), 512)
    patch = backbone.patch_embed.patch_size[0]
    model = {
        "backbone": MaskedVisionTransformerTIMM(vit=backbone),
        "decoder_embed": nn.Linear(backbone.embed_dim, width),
        "decoder": MaskedVisionTransformerDecoderTIMM(
            num_patches=backbone.patch_embed.num_patches,
            embed_dim=width,
            depth=first_of(m, ("decoder_depth", "decoder_layers"), 1),
            num_heads=first_of(m, ("decoder_num_heads", "decoder_heads"), 16),
            num_prefix_tokens=backbone.num_prefix_tokens,
            mlp_ratio=4.0,
        ),
        "prediction_head": nn.Linear(width, patch**2 * 3),
    }
    model["decoder_embed"].apply(init_weights)
    model["prediction_head"].apply(init_weights)
    return model


def _mse(m):
    return nn.MSELoss()


def _mae_loss(model, views, criterion, ctx):
    """lightly's MAE example: keep a random (1 - mask_ratio) of the patches, encode them, decode
    the full sequence, predict the pixels of the masked patches."""
    from lightly.models import utils

    images, backbone = views[0], model.backbone
    batch, length = images.shape[0], backbone.sequence_length
    idx_keep, idx_mask = utils.random_token_mask(
        size=(batch, length),
        mask_ratio=first_of(ctx.method, ("mask_ratio",), 0.75),
        device=images.device,
    )
    encoded = model.decoder_embed(backbone.encode(images=images, idx_keep=idx_keep))
    tokens = encoded.new_zeros(batch, length, encoded.shape[-1])
    tokens = utils.set_at_index(tokens, idx_keep, encoded.type_as(tokens))
    decoded = model.decoder(tokens, idx_mask=idx_mask)
    prediction = model.prediction_head(utils.get_at_index(decoded, idx_mask))
    patches = utils.patchify(images, backbone.vit.patch_embed.patch_size[0])
    return criterion(prediction, utils.get_at_index(patches, idx_mask - 1))


# ---- the specs -------------------------------------------------------------------------------
_TEACHER = (("backbone", "backbone_momentum"), ("projection_head", "projection_head_momentum"))

SPECS: dict[str, Spec] = {
    "simclr": Spec(_simclr_model, _ntxent, _pair_loss),
    "moco_v2": Spec(
        _moco_model,
        _moco_criterion,
        _moco_loss,
        pair_transform="MoCoV2Transform",
        momentum=_TEACHER,
        bound_views=_moco_views,
    ),
    "byol": Spec(
        _byol_model,
        _negative_cosine,
        _byol_loss,
        pair_transform="BYOLTransform",
        momentum=_TEACHER,
        bound_views=lambda m, n: (2, 2),
    ),
    "simsiam": Spec(
        _simsiam_model, _negative_cosine, _simsiam_loss, pair_transform="SimSiamTransform"
    ),
    "swav": Spec(
        _swav_model,
        _swav_criterion,
        _swav_loss,
        views="multicrop",
        before_forward=_normalize_prototypes,
    ),
    "barlow_twins": Spec(
        _barlow_model, _barlow_criterion, _pair_loss, pair_transform="BYOLTransform"
    ),
    "vicreg": Spec(_vicreg_model, _vicreg_criterion, _pair_loss, pair_transform="VICRegTransform"),
    "dino": Spec(
        _dino_model,
        _dino_criterion,
        _dino_loss,
        views="dino",
        momentum=(("student_backbone", "teacher_backbone"), ("student_head", "teacher_head")),
        after_backward=_cancel_last_layer,
        bound_views=lambda m, n: (n, 2),
        joint=True,
    ),
    "nnclr": Spec(_nnclr_model, _ntxent, _nnclr_loss),
    "mae": Spec(_mae_model, _mse, _mae_loss, views="mae", bound_views=lambda m, n: None),
}

#: the methods lightly 1.6.0 implements that ssl_bench has (or will: mae)
LIGHTLY_METHODS = tuple(SPECS)
