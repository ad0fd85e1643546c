"""Transcriptions of the sources the recipes in conf/recipe/ cite: one entry per recipe file.

Each entry: `cite` (the exact string the recipe's `recipe.source` holds) and `values` (a flat dict
of ssl_bench config keys -> the value the source uses; `NotInSource(why)` where the source has no
such setting). Values are copied from the source by hand, with the file and line they come from in a
comment; tests/test_recipes.py compares them with the composed config, key by key.
"""

from __future__ import annotations

from recipes.transcribe import NotInSource, view

SOLO = "vturrisi/solo-learn@9187ea39 scripts/pretrain/cifar"

SOURCES: dict[str, dict] = {}

#: a method's own defaults leave the batch and the epochs to the data and trainer configs
OWN_BATCH = NotInSource(
    "a method's own defaults keep data.batch_size (the lr follows it: scale_lr)"
)
OWN_EPOCHS = NotInSource("a method's own defaults keep trainer.max_epochs")
NO_WARMUP = NotInSource("the source has no warm-up, so no warm-up start lr")


# ---- solo-learn's CIFAR recipes
# --------------------------------------------------------------------------------- Common to every
# solo-learn CIFAR script: batch 256 per device on 1 device (`devices: [0]`), lr scaled by batch *
# devices / 256 (solo/args/pretrain.py, parse_cfg "adjust lr according to batch size"),
# warmup_cosine with solo-learn's defaults (solo/methods/base.py add_and_assert_specific_cfg:
# warmup_epochs 10, warmup_start_lr 3e-5, min_lr
# 0.0, interval "step"), `max_epochs: 1000`, SyncBN on, 16-mixed precision. Each crop goes through
# the backbone in its own call (BaseMethod.training_step: `[self.base_training_step(x, targets) for
# x in X[:...]]`), so BN statistics are per view.
def _solo_warmup_cosine() -> dict:
    return {
        "scheduler.name": "warmup_cosine",
        "scheduler.warmup_epochs": 10,
        "scheduler.warmup_steps": None,
        "scheduler.warmup_start_lr": 3.0e-5,
        "scheduler.min_lr": 0.0,
        "scheduler.milestones": None,
        "scheduler.gamma": None,
    }


def _solo_lars(lr: float, weight_decay: float) -> dict:
    # optimizer: name lars, kwargs {clip_lr: True, eta: 0.02, exclude_bias_n_norm: True}; momentum
    # 0.9 and eps 1e-8 are solo-learn's defaults (solo/args/pretrain.py, solo/utils/lars.py).
    # exclude_bias_n_norm: 1-D parameters skip both the trust ratio and the weight decay (lars.py
    # step: the `d_p.add(p, alpha=weight_decay)` sits inside `if p.ndim != 1 or not
    # group["exclude_bias_n_norm"]`).
    return {
        "optimizer.name": "lars",
        "optimizer.lr": lr,
        "optimizer.scale_lr": True,
        "optimizer.weight_decay": weight_decay,
        "optimizer.momentum": 0.9,
        "optimizer.nesterov": False,
        "optimizer.eta": 0.02,
        "optimizer.eps": 1.0e-8,
        "optimizer.clip_lr": True,
        "optimizer.betas": None,
        "optimizer.exclude_bias_n_norm": True,
    }


def _solo_sgd(lr: float, weight_decay: float) -> dict:
    # optimizer: name sgd; momentum 0.9 is parse_cfg's default for sgd; torch.optim.SGD's nesterov
    # False; every parameter decayed (base.py: optimizer.exclude_bias_n_norm_wd defaults to False)
    return {
        "optimizer.name": "sgd",
        "optimizer.lr": lr,
        "optimizer.scale_lr": True,
        "optimizer.weight_decay": weight_decay,
        "optimizer.momentum": 0.9,
        "optimizer.nesterov": False,
        "optimizer.eta": None,
        "optimizer.eps": None,
        "optimizer.clip_lr": None,
        "optimizer.betas": None,
        "optimizer.exclude_bias_n_norm": False,
    }


def _solo_run() -> dict:
    # optimizer.batch_size: 256, max_epochs: 1000; crop_size: 32 in the augmentations files
    return {"data.batch_size": 256, "data.image_size": 32, "trainer.max_epochs": 1000}


# solo/data/pretrain_dataloader.py build_transform_pipeline: RandomResizedCrop(crop_size,
# scale=(crop_min_scale, crop_max_scale)) with torchvision's ratio (3/4, 4/3);
# RandomApply(ColorJitter(b, c, s, h), p); RandomGrayscale; RandomApply(GaussianBlur(), p) whose
# sigma defaults to [0.1, 2.0] and which applies PIL's ImageFilter.GaussianBlur(radius=sigma): a
# Gaussian of std sigma spanning about +-3 sigma, i.e. a 13 px kernel at sigma 2 whatever the image
# size (ssl_bench: blur.kernel_size 13); Solarization; RandomHorizontalFlip.
PIL_KERNEL = 13


def _solo_symmetric() -> dict:
    # augmentations/symmetric.yaml: one pipeline, num_crops 2, crop_size 32, crop_min_scale 0.08,
    # crop_max_scale 1.0, color_jitter prob 0.8 brightness 0.8 contrast 0.8 saturation 0.8 hue 0.2,
    # grayscale
    # 0.2, gaussian_blur 0.5, solarization 0.0, horizontal_flip 0.5
    return view(
        0,
        num_crops=2,
        crop_size=32,
        scale=(0.08, 1.0),
        brightness=0.8,
        contrast=0.8,
        saturation=0.8,
        hue=0.2,
        grayscale=0.2,
        blur_prob=0.5,
        blur_kernel_size=PIL_KERNEL,
        solarize=0.0,
    )


def _solo_symmetric_weak() -> dict:
    # augmentations/symmetric_weak.yaml: as symmetric.yaml with color_jitter 0.4 / 0.4 / 0.4 / 0.1
    return view(
        0,
        num_crops=2,
        crop_size=32,
        scale=(0.08, 1.0),
        brightness=0.4,
        contrast=0.4,
        saturation=0.4,
        hue=0.1,
        grayscale=0.2,
        blur_prob=0.5,
        blur_kernel_size=PIL_KERNEL,
        solarize=0.0,
    )


def _solo_asymmetric() -> dict:
    # augmentations/asymmetric.yaml: two pipelines of one 32 px crop each, scale (0.08, 1), colour
    # jitter (0.4, 0.4, 0.2, 0.1) p 0.8, grayscale 0.2, no blur, solarize 0.0 / 0.2, flip 0.5
    common = dict(
        num_crops=1,
        crop_size=32,
        scale=(0.08, 1.0),
        brightness=0.4,
        contrast=0.4,
        saturation=0.2,
        hue=0.1,
        grayscale=0.2,
        blur_prob=0.0,
        blur_kernel_size=PIL_KERNEL,
    )
    return {**view(0, **common, solarize=0.0), **view(1, **common, solarize=0.2)}


SOURCES["simclr_cifar10"] = {
    "cite": f"{SOLO}/simclr.yaml + augmentations/symmetric.yaml",
    "values": {
        # simclr.yaml method_kwargs: proj_hidden_dim 2048, proj_output_dim 256, temperature 0.2
        "method.temperature": 0.2,
        "method.proj_hidden_dim": 2048,
        "method.proj_output_dim": 256,
        # solo/methods/simclr.py: projector = Sequential(Linear(feats, hidden), ReLU(),
        # Linear(hidden, out)): two layers, no BN
        "method.proj_layers": 2,
        "method.proj_bn": "none",
        "method.bn_stats": "per_view",
        # optimizer: lars, lr 0.4, weight_decay 1e-4, kwargs clip_lr True, eta 0.02,
        # exclude_bias_n_norm True
        **_solo_lars(lr=0.4, weight_decay=1.0e-4),
        **_solo_warmup_cosine(),
        **_solo_symmetric(),
        **_solo_run(),
    },
}

SOURCES["byol_cifar10"] = {
    "cite": f"{SOLO}/byol.yaml + augmentations/asymmetric.yaml",
    "values": {
        # byol.yaml method_kwargs and momentum
        "method.proj_hidden_dim": 4096,
        "method.proj_output_dim": 256,
        "method.pred_hidden_dim": 4096,
        "method.base_tau": 0.99,
        "method.final_tau": 1.0,
        "method.bn_stats": "per_view",
        # optimizer: lars, lr 1.0, weight_decay 1e-5, kwargs clip_lr True, eta 0.02,
        # exclude_bias_n_norm True
        **_solo_lars(lr=1.0, weight_decay=1.0e-5),
        **_solo_warmup_cosine(),
        **_solo_asymmetric(),
        **_solo_run(),
    },
}

SOURCES["simsiam_cifar10"] = {
    "cite": f"{SOLO}/simsiam.yaml + augmentations/symmetric_weak.yaml",
    "values": {
        # simsiam.yaml method_kwargs: proj_hidden_dim 2048, proj_output_dim 2048, pred_hidden_dim
        # 512 (its temperature 0.2 is read by nothing in solo/methods/simsiam.py)
        "method.proj_hidden_dim": 2048,
        "method.proj_output_dim": 2048,
        "method.pred_hidden_dim": 512,
        # solo/methods/simsiam.py: projector Linear-BN-ReLU, Linear-BN-ReLU, Linear,
        # BatchNorm1d(affine=False)
        "method.proj_layers": 3,
        # learnable_params: the predictor's group has "static_lr": True (base.py keeps it at
        # self.lr)
        "method.fixed_predictor_lr": True,
        # solo/losses/simsiam.py simsiam_loss_func: `z.detach()`
        "method.stop_gradient": True,
        "method.bn_stats": "per_view",
        # optimizer: sgd, lr 0.5, weight_decay 1e-5
        **_solo_sgd(lr=0.5, weight_decay=1.0e-5),
        **_solo_warmup_cosine(),
        **_solo_symmetric_weak(),
        **_solo_run(),
    },
}

SOURCES["swav_cifar10"] = {
    "cite": f"{SOLO}/swav.yaml + augmentations/symmetric.yaml",
    "values": {
        # swav.yaml method_kwargs: proj_hidden_dim 2048, queue_size 3840, proj_output_dim 128,
        # num_prototypes 3000, epoch_queue_starts 50, freeze_prototypes_epochs 2, temperature 0.1
        "method.proj_hidden_dim": 2048,
        "method.proj_output_dim": 128,
        "method.num_prototypes": 3000,
        "method.temperature": 0.1,
        "method.queue_length": 3840,
        "method.epoch_queue_starts": 50,
        "method.freeze_prototypes_epochs": 2,
        # solo/methods/swav.py add_and_assert_specific_cfg defaults: sk_iters 3, sk_epsilon 0.05
        "method.sk_iterations": 3,
        "method.sk_epsilon": 0.05,
        "method.bn_stats": "per_view",
        # optimizer: lars, lr 0.6, weight_decay 1e-6, kwargs clip_lr True, eta 0.02,
        # exclude_bias_n_norm True
        **_solo_lars(lr=0.6, weight_decay=1.0e-6),
        **_solo_warmup_cosine(),
        **_solo_symmetric(),
        **_solo_run(),
    },
}

SOURCES["moco_v2_cifar10"] = {
    "cite": f"{SOLO}/mocov2plus.yaml + augmentations/symmetric_weak.yaml",
    "values": {
        # mocov2plus.yaml method_kwargs: proj_hidden_dim 2048, proj_output_dim 256, queue_size
        # 32768, temperature 0.2; momentum: base_tau 0.99, final_tau 0.999 (solo/utils/momentum.py:
        # cosine over the steps)
        "method.temperature": 0.2,
        "method.queue_size": 32768,
        "method.base_tau": 0.99,
        "method.final_tau": 0.999,
        "method.proj_hidden_dim": 2048,
        "method.proj_output_dim": 256,
        # solo/methods/mocov2plus.py: projector Linear-ReLU-Linear without BN
        "method.proj_layers": 2,
        "method.proj_norm": False,
        # training_step: nce_loss = (loss(q1, k2, queue[1]) + loss(q2, k1, queue[0])) / 2 - the mean
        # of both directions, with one queue per crop
        "method.symmetric": "mean",
        # no shuffled BN: momentum_forward encodes each crop's batch as it is, one BN per device
        "method.bn_splits": 1,
        "method.bn_stats": "per_view",
        # optimizer: sgd, lr 0.3, weight_decay 1e-4
        **_solo_sgd(lr=0.3, weight_decay=1.0e-4),
        **_solo_warmup_cosine(),
        **_solo_symmetric_weak(),
        **_solo_run(),
    },
}

# solo-learn's scripts serve CIFAR-100 too ("change here for cifar100" at name and data.dataset):
# same values
for _m, _script, _views in (
    ("simclr", "simclr", "symmetric"),
    ("byol", "byol", "asymmetric"),
    ("simsiam", "simsiam", "symmetric_weak"),
    ("swav", "swav", "symmetric"),
    ("moco_v2", "mocov2plus", "symmetric_weak"),
):
    SOURCES[f"{_m}_cifar100"] = {
        "cite": f"{SOLO}/{_script}.yaml (data.dataset: cifar100) + augmentations/{_views}.yaml",
        "values": dict(SOURCES[f"{_m}_cifar10"]["values"]),
    }


# ---- the methods' own defaults: each paper's ImageNet recipe, from its official code
# ------------------------------ The tests compose these with data=image_folder (224 px images).
def _tf_lars(lr: float, weight_decay: float) -> dict:
    # google-research/simclr lars_optimizer.py LARSOptimizer: EETA_DEFAULT = 0.001, momentum 0.9,
    # use_nesterov False; trust ratio eeta * ||w|| / ||g + wd w|| with no epsilon; no clipping;
    # model.py / model_util.py pass exclude_from_weight_decay=['batch_normalization', 'bias', ...],
    # which also excludes them from the adaptation (exclude_from_layer_adaptation defaults to it).
    # The lr is per 256 images, scaled linearly (model_util.py learning_rate_schedule: scaled_lr =
    # base_learning_rate * train_batch_size / 256).
    return {
        "optimizer.name": "lars",
        "optimizer.lr": lr,
        "optimizer.scale_lr": True,
        "optimizer.weight_decay": weight_decay,
        "optimizer.momentum": 0.9,
        "optimizer.nesterov": False,
        "optimizer.eta": 1.0e-3,
        "optimizer.eps": NotInSource("the official LARS divides by ||g + wd w|| with no epsilon"),
        "optimizer.clip_lr": False,
        "optimizer.betas": None,
        "optimizer.exclude_bias_n_norm": True,
    }


def _warmup_from_zero_cosine(warmup_epochs: float) -> dict:
    # learning_rate = global_step / warmup_steps * scaled_lr during the warm-up (0 at step 0), then
    # cosine_decay to 0
    return {
        "scheduler.name": "warmup_cosine",
        "scheduler.warmup_epochs": warmup_epochs,
        "scheduler.warmup_steps": None,
        "scheduler.warmup_start_lr": 0.0,
        "scheduler.min_lr": 0.0,
        "scheduler.milestones": None,
        "scheduler.gamma": None,
    }


def _simclr_imagenet_views() -> dict:
    # data_util.py preprocess_for_train: crop_and_resize (distorted_bounding_box_crop, area_range
    # (0.08, 1.0), aspect_ratio_range (3/4, 4/3)), random_flip_left_right, random_color_jitter
    # (color_jitter with strength FLAGS.color_jitter_strength = 1.0: brightness 0.8 s, contrast 0.8
    # s, saturation 0.8 s, hue 0.2 s, applied with p=0.8, then to_grayscale with p=0.2); model.py:
    # batch_random_blur with blur_probability
    # 0.5, random_blur sigma uniform in [0.1, 2.0], kernel_size = height // 10 (radius 11 -> 23 px
    # at 224: ssl_bench's rule, null)
    return view(
        0,
        num_crops=2,
        crop_size=224,
        scale=(0.08, 1.0),
        brightness=0.8,
        contrast=0.8,
        saturation=0.8,
        hue=0.2,
        grayscale=0.2,
        blur_prob=0.5,
        blur_sigma=(0.1, 2.0),
        blur_kernel_size=None,
        solarize=0.0,
    )


SIMCLR_V1 = "google-research/simclr@be133b3"
SOURCES["simclr"] = {
    "cite": f"Chen et al. 2020 (SimCLR), official code {SIMCLR_V1} run.py flag defaults (+ "
    "model.py, "
    "model_util.py, lars_optimizer.py, data_util.py)",
    "values": {
        # run.py: temperature 0.1, head_proj_mode 'nonlinear', head_proj_dim 128, num_nlh_layers 1,
        # global_bn True
        "method.temperature": 0.1,
        "method.proj_output_dim": 128,
        # model_util.py projection_head: nl_0 = linear_layer(hiddens, ..., hiddens.shape[-1],
        # use_bn=True), then ReLU and nl_1 = linear_layer(..., head_proj_dim, use_bias=False,
        # use_bn=True): 2 layers, BN on both, the hidden one as wide as the backbone (resnet_depth
        # 50: 2048)
        "method.proj_hidden_dim": 2048,
        "method.proj_layers": 2,
        "method.proj_bn": "all",
        # model.py: features = tf.concat(features_list, 0): both views in one call (global BN over
        # 2N)
        "method.bn_stats": "joint",
        # run.py: learning_rate 0.3 ("per batch size of 256"), weight_decay 1e-6, optimizer 'lars',
        # momentum
        # 0.9
        **_tf_lars(lr=0.3, weight_decay=1.0e-6),
        # run.py: warmup_epochs 10; model_util.py learning_rate_schedule
        **_warmup_from_zero_cosine(10),
        # run.py: image_size 224, color_jitter_strength 1.0, use_blur True
        **_simclr_imagenet_views(),
        "data.image_size": 224,
        "data.batch_size": OWN_BATCH,
        "trainer.max_epochs": OWN_EPOCHS,
    },
}

SIMCLR_V2 = "google-research/simclr@383d414"
SOURCES["simclr_v2"] = {
    "cite": f"Chen et al. 2020b (SimCLR v2), official code {SIMCLR_V2} run.py flag defaults (+ "
    "model.py, "
    "model_util.py, lars_optimizer.py, data_util.py)",
    "values": {
        # run.py: temperature 0.1, proj_head_mode 'nonlinear', proj_out_dim 128, num_proj_layers 3,
        # ft_proj_selector 0 (no head layer kept for evaluation), global_bn True
        "method.temperature": 0.1,
        "method.proj_layers": 3,
        "method.proj_output_dim": 128,
        "method.probe_from_projector_layer": 0,
        # model_util.py projection_head: mid_dim = hiddens.shape[-1] (the backbone's width),
        # use_bn=True on every layer (the last with use_bias=False)
        "method.proj_hidden_dim": None,
        "method.proj_bn": "all",
        # model.py: tf.concat(features_list, 0): both views in one call
        "method.bn_stats": "joint",
        # the code has no MoCo-style memory
        "method.queue_size": 0,
        "method.base_tau": NotInSource(
            "used only with a memory (queue_size > 0); the code has none"
        ),
        "method.final_tau": NotInSource(
            "used only with a memory (queue_size > 0); the code has none"
        ),
        "method.bn_splits": NotInSource(
            "used only with a memory (queue_size > 0); the code has none"
        ),
        # run.py: learning_rate 0.3, learning_rate_scaling 'linear', weight_decay 1e-4, momentum
        # 0.9, optimizer 'lars'; model_util.py get_optimizer: exclude_from_weight_decay
        # ['batch_normalization', 'bias', 'head_supervised']
        **_tf_lars(lr=0.3, weight_decay=1.0e-4),
        # run.py: warmup_epochs 10; model_util.py learning_rate_schedule
        **_warmup_from_zero_cosine(10),
        # run.py: image_size 224, color_jitter_strength 1.0, use_blur True (data_util.py as SimCLR
        # v1's, with the multiplicative brightness of impl='simclrv2')
        **_simclr_imagenet_views(),
        "data.image_size": 224,
        "data.batch_size": OWN_BATCH,
        "trainer.max_epochs": OWN_EPOCHS,
    },
}


def _moco_sgd() -> dict:
    # main_moco.py: torch.optim.SGD(model.parameters(), args.lr, momentum=0.9, weight_decay=1e-4):
    # every parameter decayed, no nesterov. README: --lr 0.03 --batch-size 256, and "for 4-gpu
    # training, we recommend following the linear lr scaling recipe: --lr 0.015 --batch-size 128":
    # the lr is per 256 images, scaled.
    return {
        "optimizer.name": "sgd",
        "optimizer.lr": 0.03,
        "optimizer.scale_lr": True,
        "optimizer.weight_decay": 1.0e-4,
        "optimizer.momentum": 0.9,
        "optimizer.nesterov": False,
        "optimizer.eta": None,
        "optimizer.eps": None,
        "optimizer.clip_lr": None,
        "optimizer.betas": None,
        "optimizer.exclude_bias_n_norm": False,
    }


def _moco_method(temperature: float, proj_layers: int) -> dict:
    # main_moco.py: --moco-dim 128, --moco-k 65536, --moco-m 0.999, --moco-t; moco/builder.py: a
    # constant m, the loss of q = encoder_q(im_q) against k = encoder_k(im_k) (one direction);
    # _batch_shuffle_ddp shuffles the keys over the GPUs, 8 in the README's command (ssl_bench: 8
    # virtual devices, bn_splits); --mlp: fc replaced by Linear(dim_mlp, dim_mlp)-ReLU-fc, dim_mlp
    # the backbone's width, no BN
    return {
        "method.temperature": temperature,
        "method.queue_size": 65536,
        "method.base_tau": 0.999,
        "method.final_tau": None,
        "method.proj_layers": proj_layers,
        "method.proj_hidden_dim": None,
        "method.proj_output_dim": 128,
        "method.symmetric": False,
        "method.bn_splits": 8,
        "method.proj_norm": False,
        "method.bn_stats": "per_view",
    }


MOCO = "facebookresearch/moco@7397dfe"
SOURCES["moco_v1"] = {
    "cite": f"He et al. 2019 (MoCo), official code {MOCO} main_moco.py defaults + README.md "
    "pre-training "
    "command (MoCo v1)",
    "values": {
        **_moco_method(temperature=0.07, proj_layers=1),
        **_moco_sgd(),
        # main_moco.py adjust_learning_rate: lr *= 0.1 for each milestone of --schedule [120, 160]
        # passed by the epoch (set at the start of every epoch); no warm-up
        "scheduler.name": "warmup_step",
        "scheduler.warmup_epochs": 0,
        "scheduler.warmup_steps": None,
        "scheduler.warmup_start_lr": None,
        "scheduler.min_lr": None,
        "scheduler.milestones": [120, 160],
        "scheduler.gamma": 0.1,
        # the v1 augmentation: RandomResizedCrop(224, scale=(0.2, 1.)), RandomGrayscale(p=0.2),
        # ColorJitter(0.4, 0.4, 0.4, 0.4) (always), RandomHorizontalFlip(); no blur
        **view(
            0,
            num_crops=2,
            crop_size=224,
            scale=(0.2, 1.0),
            jitter_prob=1.0,
            brightness=0.4,
            contrast=0.4,
            saturation=0.4,
            hue=0.4,
            grayscale=0.2,
            blur_prob=0.0,
            blur_sigma=NotInSource("MoCo v1's views have no blur"),
            solarize=0.0,
        ),
        "data.image_size": 224,
        "data.batch_size": OWN_BATCH,
        "trainer.max_epochs": OWN_EPOCHS,
    },
}

# --aug-plus: RandomResizedCrop(224, scale=(0.2, 1.)), RandomApply([ColorJitter(0.4, 0.4, 0.4,
# 0.1)], p=0.8), RandomGrayscale(p=0.2), RandomApply([GaussianBlur([.1, 2.])], p=0.5),
# RandomHorizontalFlip(). The blur is PIL's GaussianBlur(radius=sigma) (moco/loader.py): at 224 px
# ssl_bench's 23 px kernel covers its +-3 sigma.
_MOCO_V2_VIEWS = view(
    0,
    num_crops=2,
    crop_size=224,
    scale=(0.2, 1.0),
    jitter_prob=0.8,
    brightness=0.4,
    contrast=0.4,
    saturation=0.4,
    hue=0.1,
    grayscale=0.2,
    blur_prob=0.5,
    blur_sigma=(0.1, 2.0),
    solarize=0.0,
)

SOURCES["moco_v2"] = {
    "cite": f"Chen et al. 2020 (MoCo v2), official code {MOCO} main_moco.py defaults + README.md "
    "pre-training command with --mlp --moco-t 0.2 "
    "--aug-plus --cos (MoCo v2)",
    "values": {
        **_moco_method(temperature=0.2, proj_layers=2),
        **_moco_sgd(),
        # --cos: lr *= 0.5 * (1 + cos(pi * epoch / epochs)): from the lr down to 0, no warm-up
        "scheduler.name": "warmup_cosine",
        "scheduler.warmup_epochs": 0,
        "scheduler.warmup_steps": None,
        "scheduler.warmup_start_lr": NO_WARMUP,
        "scheduler.min_lr": 0.0,
        "scheduler.milestones": None,
        "scheduler.gamma": None,
        **_MOCO_V2_VIEWS,
        "data.image_size": 224,
        "data.batch_size": OWN_BATCH,
        "trainer.max_epochs": OWN_EPOCHS,
    },
}

# ---- MoCo v3: the official code's ResNet-50 recipe and solo-learn's CIFAR one ------------------
MOCO_V3 = "facebookresearch/moco-v3@c349e6e"


def _moco_v3_views(crop_size: int, scale, blur: tuple[float, float], **kw) -> dict:
    # BYOL's asymmetric pipelines: colour jitter (0.4, 0.4, 0.2, 0.1) p 0.8, grayscale 0.2, blur
    # view 1 / view 2, solarize 0.0 / 0.2, flip 0.5
    common = dict(
        num_crops=1,
        crop_size=crop_size,
        scale=scale,
        brightness=0.4,
        contrast=0.4,
        saturation=0.2,
        hue=0.1,
        grayscale=0.2,
        **kw,
    )
    return {
        **view(0, **common, blur_prob=blur[0], solarize=0.0),
        **view(1, **common, blur_prob=blur[1], solarize=0.2),
    }


SOURCES["moco_v3"] = {
    "cite": f"Chen, Xie, He 2021 (MoCo v3), official code {MOCO_V3} main_moco.py argument defaults "
    "+ CONFIG.md ResNet-50 100-epoch command",
    "values": {
        # main_moco.py: --moco-t 1.0, --moco-dim 256, --moco-mlp-dim 4096, --moco-m 0.99 with
        # --moco-m-cos (CONFIG.md: adjust_moco_momentum, 1 - (1 - m) (1 + cos(pi t / T)) / 2, to 1);
        # builder.py MoCo_ResNet: projector _build_mlp(2, ...) with its output BN (affine=False),
        # predictor _build_mlp(2, ..., last_bn=False); forward: base_encoder(x1), base_encoder(x2)
        "method.temperature": 1.0,
        "method.proj_layers": 2,
        "method.proj_hidden_dim": 4096,
        "method.proj_output_dim": 256,
        "method.pred_hidden_dim": 4096,
        "method.pred_last_bn": False,
        "method.base_tau": 0.99,
        "method.final_tau": 1.0,
        # --stop-grad-conv1 is off by default and absent from the ResNet commands
        "method.freeze_patch_embed": False,
        "method.bn_stats": "per_view",
        # --optimizer lars: moco/optimizer.py LARS(lr, weight_decay=1e-6 (--wd), momentum=0.9,
        # trust_coefficient=0.001); 1-D parameters get neither weight decay nor the trust ratio;
        # ratio eta ||w|| / ||g + wd w||, no epsilon, no clipping; args.lr = 0.6 * batch_size / 256
        "optimizer.name": "lars",
        "optimizer.lr": 0.6,
        "optimizer.scale_lr": True,
        "optimizer.weight_decay": 1.0e-6,
        "optimizer.momentum": 0.9,
        "optimizer.nesterov": False,
        "optimizer.eta": 1.0e-3,
        "optimizer.eps": NotInSource("the official LARS divides by ||g + wd w|| with no epsilon"),
        "optimizer.clip_lr": False,
        "optimizer.betas": None,
        "optimizer.exclude_bias_n_norm": True,
        # adjust_learning_rate, per iteration: lr * epoch / warmup_epochs (--warmup-epochs 10) from
        # 0, then a half-cycle cosine to 0
        **_warmup_from_zero_cosine(10),
        # augmentation1 / augmentation2: RandomResizedCrop(224, scale=(args.crop_min, 1.)) with
        # CONFIG.md's --crop-min=.2, GaussianBlur([.1, 2.]) p 1.0 / 0.1, Solarize p 0 / 0.2
        **_moco_v3_views(224, (0.2, 1.0), blur=(1.0, 0.1)),
        "data.image_size": 224,
        "data.batch_size": OWN_BATCH,
        "trainer.max_epochs": OWN_EPOCHS,
    },
}

SOURCES["moco_v3_cifar10"] = {
    "cite": f"{SOLO}/mocov3.yaml + augmentations/asymmetric.yaml",
    "values": {
        # mocov3.yaml method_kwargs: proj_hidden_dim 4096, proj_output_dim 256, pred_hidden_dim
        # 4096, temperature 0.2; momentum: base_tau 0.99, final_tau 1.0 (solo/utils/momentum.py:
        # cosine over the steps). solo/methods/mocov3.py, "resnet" in the backbone name: projector
        # _build_mlp(2, ...) (output BN without affine), predictor _build_mlp(2, ..., last_bn=False)
        "method.temperature": 0.2,
        "method.proj_layers": 2,
        "method.proj_hidden_dim": 4096,
        "method.proj_output_dim": 256,
        "method.pred_hidden_dim": 4096,
        "method.pred_last_bn": False,
        "method.base_tau": 0.99,
        "method.final_tau": 1.0,
        "method.freeze_patch_embed": NotInSource("solo-learn has no frozen patch projection"),
        "method.bn_stats": "per_view",
        # optimizer: lars, lr 0.3, weight_decay 1e-6, kwargs clip_lr True, eta 0.02,
        # exclude_bias_n_norm True
        **_solo_lars(lr=0.3, weight_decay=1.0e-6),
        **_solo_warmup_cosine(),
        **_solo_asymmetric(),
        **_solo_run(),
    },
}

# ---- NNCLR: the paper's ImageNet recipe (no official code) and solo-learn's CIFAR one ------------
# The paper's text could not be read from here; every value below that the paper states was checked
# against VISSL's reproduction, facebookresearch/vissl configs/config/pretrain/nnclr/
# nnclr_8node_resnet.yaml and vissl/losses/nnclr_loss.py (read at the fork clane9/vissl@fc6cd41;
# VISSL's docs/source/ssl_approaches/nnclr.rst: "the exact hyperparameter settings to reproduce the
# model"), cited as VISSL below.
SOURCES["nnclr"] = {
    "cite": "Dwibedi et al. 2021 (NNCLR), arXiv:2104.14548 sec. 4.1 implementation details",
    "values": {
        # projection MLP [2048, 2048, d], BN after every layer, ReLU after all but the last;
        # d = 256; prediction MLP [4096, d]; temperature 0.1; support set 98,304 (VISSL: HEAD
        # PARAMS mlp [2048, 2048, 2048] + mlp [2048, 256] with BN, skip_mlp [256, 4096, 256];
        # nnclr_loss embedding_dim 256, queue_size 98304, temperature 0.1)
        "method.temperature": 0.1,
        "method.queue_size": 98304,
        "method.proj_layers": 3,
        "method.proj_hidden_dim": 2048,
        "method.proj_output_dim": 256,
        "method.pred_hidden_dim": 4096,
        # sec. 3.2 implementation details: the loss symmetrised by the term over the neighbours
        # (VISSL nnclr_loss.py: "transpose similarities are included to symmetrize the loss / see
        # Section 3.2 Implementation details")
        "method.transposed_term": True,
        "method.bn_stats": NotInSource("the paper does not say how the views are batched"),
        # LARS, learning rate 4.8 at batch 4096 (0.3 per 256 images), weight decay 1e-6, 10 warm-up
        # epochs, cosine decay to 0 (VISSL: base_value 0.3, base_lr_batch_size 256, auto_scale;
        # weight_decay 1e-6; linear then cosine to 0.0 over lengths [0.01, 0.99] of 1000 epochs)
        "optimizer.name": "lars",
        "optimizer.lr": 0.3,
        "optimizer.scale_lr": True,
        "optimizer.weight_decay": 1.0e-6,
        "optimizer.momentum": NotInSource("not in the paper's text (BYOL's and VISSL's: 0.9)"),
        "optimizer.nesterov": NotInSource("not stated (VISSL: nesterov False)"),
        "optimizer.eta": NotInSource("trust coefficient not stated (BYOL's and VISSL's: 1e-3)"),
        "optimizer.eps": NotInSource("not stated"),
        "optimizer.clip_lr": NotInSource("not stated (VISSL's LARS has no clipping)"),
        "optimizer.betas": None,
        "optimizer.exclude_bias_n_norm": NotInSource(
            "not stated (BYOL's exclusion; VISSL: exclude_bias_and_norm True)"
        ),
        # the warm-up's start is not in what we could check: VISSL's starts at 0.6 (4.8 / 8)
        **_warmup_from_zero_cosine(10),
        # "the same data augmentation as BYOL": BYOL's table 6 (VISSL's config says the paper
        # gives no other detail; its colour jitter is SimCLR's strength 0.5, with a TODO)
        **_moco_v3_views(224, (0.08, 1.0), blur=(1.0, 0.1)),
        "data.image_size": 224,
        "data.batch_size": OWN_BATCH,
        "trainer.max_epochs": OWN_EPOCHS,
    },
}

SOURCES["nnclr_cifar10"] = {
    "cite": f"{SOLO}/nnclr.yaml + augmentations/asymmetric.yaml",
    "values": {
        # nnclr.yaml method_kwargs: temperature 0.2, proj_hidden_dim 2048, pred_hidden_dim 4096,
        # proj_output_dim 256, queue_size 65536; solo/methods/nnclr.py: projector Linear-BN-ReLU
        # x 2, Linear-BN; predictor Linear-BN-ReLU, Linear; training_step: find_nn(z1),
        # find_nn(z2), loss (nn1 vs p2) / 2 + (nn2 vs p1) / 2, then dequeue_and_enqueue(z1)
        "method.temperature": 0.2,
        "method.queue_size": 65536,
        "method.proj_layers": 3,
        "method.proj_hidden_dim": 2048,
        "method.proj_output_dim": 256,
        "method.pred_hidden_dim": 4096,
        # solo/losses/nnclr.py: logits = nn @ p.T only, no term over the neighbours
        "method.transposed_term": False,
        "method.bn_stats": "per_view",
        # optimizer: lars, lr 0.4, weight_decay 1e-5, kwargs clip_lr True, eta 0.02,
        # exclude_bias_n_norm True
        **_solo_lars(lr=0.4, weight_decay=1.0e-5),
        **_solo_warmup_cosine(),
        **_solo_asymmetric(),
        **_solo_run(),
    },
}

# the CIFAR-100 recipes of the same scripts ("change here for cifar100"): same values
for _m, _script in (("moco_v3", "mocov3"), ("nnclr", "nnclr")):
    SOURCES[f"{_m}_cifar100"] = {
        "cite": f"{SOLO}/{_script}.yaml (data.dataset: cifar100) + augmentations/asymmetric.yaml",
        "values": dict(SOURCES[f"{_m}_cifar10"]["values"]),
    }

SOURCES["byol"] = {
    "cite": "Grill et al. 2020 (BYOL), official code deepmind/deepmind-research@d8df415 "
    "byol/configs/byol.py "
    "(num_epochs=1000) "
    "+ byol/utils/augmentations.py",
    "values": {
        # byol.py network_config: projector_hidden_size 4096, projector_output_size 256,
        # predictor_hidden_size 4096; base_target_ema = _EMA_PRESETS[1000] = 0.996;
        # byol/utils/schedules.py target_ema: 1 - (1 - base) * cosine decay over max_steps, i.e. up
        # to 1.0
        "method.proj_hidden_dim": 4096,
        "method.proj_output_dim": 256,
        "method.pred_hidden_dim": 4096,
        "method.base_tau": 0.996,
        "method.final_tau": 1.0,
        # byol_experiment.py _forward: apply_once_fn(inputs['view1']),
        # apply_once_fn(inputs['view2'])
        "method.bn_stats": "per_view",
        # optimizer_config: weight_decay _WD_PRESETS[1000] = 1.5e-6, eta 1e-3, momentum 0.9;
        # byol_experiment.py _optimizer: optimizers.lars(weight_decay_filter=exclude_bias_and_norm,
        # lars_adaptation_filter=exclude_bias_and_norm); byol/utils/optimizers.py: trust ratio eta *
        # ||w|| /
        # ||g + wd w||, no epsilon, no clipping, plain momentum
        "optimizer.name": "lars",
        "optimizer.lr": 0.2,
        "optimizer.scale_lr": True,
        "optimizer.weight_decay": 1.5e-6,
        "optimizer.momentum": 0.9,
        "optimizer.nesterov": False,
        "optimizer.eta": 1.0e-3,
        "optimizer.eps": NotInSource("BYOL's LARS divides by ||g + wd w|| with no epsilon"),
        "optimizer.clip_lr": False,
        "optimizer.betas": None,
        "optimizer.exclude_bias_n_norm": True,
        # lr_schedule_config: base_learning_rate _LR_PRESETS[1000] = 0.2, warmup_steps 10 epochs;
        # schedules.py learning_schedule: scaled_lr = base * batch_size / 256, step / warmup_steps *
        # scaled_lr, then cosine to 0
        **_warmup_from_zero_cosine(10),
        # augmentations.py augment_config (the paper's table 6): view1 / view2 with random_flip,
        # colour jitter (0.4, 0.4, 0.2, 0.1) p 0.8, grayscale 0.2, blur 1.0 / 0.1 (sigma 0.1-2.0,
        # kernel image_size / 10 -> 23 px at 224, ssl_bench's rule), solarize 0.0 / 0.2; dataset.py
        # _decode_and_random_crop: area (0.08, 1.0), log-uniform ratio (3/4, 4/3), resized to 224
        **view(
            0,
            num_crops=1,
            crop_size=224,
            scale=(0.08, 1.0),
            brightness=0.4,
            contrast=0.4,
            saturation=0.2,
            hue=0.1,
            grayscale=0.2,
            blur_prob=1.0,
            solarize=0.0,
        ),
        **view(
            1,
            num_crops=1,
            crop_size=224,
            scale=(0.08, 1.0),
            brightness=0.4,
            contrast=0.4,
            saturation=0.2,
            hue=0.1,
            grayscale=0.2,
            blur_prob=0.1,
            solarize=0.2,
        ),
        "data.image_size": 224,
        "data.batch_size": OWN_BATCH,
        "trainer.max_epochs": OWN_EPOCHS,
    },
}

SOURCES["simsiam"] = {
    "cite": "Chen & He 2020 (SimSiam), official code facebookresearch/simsiam@a7bc177 "
    "main_simsiam.py "
    "defaults + README.md pre-training command",
    "values": {
        # main_simsiam.py: --dim 2048, --pred-dim 512; simsiam/builder.py: a 3-layer projector
        # (Linear(prev_dim, prev_dim, bias=False)-BN-ReLU twice, then fc to dim and BatchNorm1d(dim,
        # affine=False)), prev_dim the backbone's width (2048 for its ResNet-50); predictor
        # Linear(dim, pred_dim)-BN-ReLU-Linear(pred_dim, dim); forward: z1 = encoder(x1), z2 =
        # encoder(x2) (a call per view), returns z1.detach(), z2.detach()
        "method.proj_hidden_dim": 2048,
        "method.proj_output_dim": 2048,
        "method.proj_layers": 3,
        "method.pred_hidden_dim": 512,
        "method.stop_gradient": True,
        "method.bn_stats": "per_view",
        # README command: --fix-pred-lr (the predictor's group keeps init_lr)
        "method.fixed_predictor_lr": True,
        # main_simsiam.py: SGD(optim_params, init_lr, momentum=0.9, weight_decay=1e-4), init_lr = lr
        # * batch / 256 with --lr 0.05; every parameter decayed
        "optimizer.name": "sgd",
        "optimizer.lr": 0.05,
        "optimizer.scale_lr": True,
        "optimizer.weight_decay": 1.0e-4,
        "optimizer.momentum": 0.9,
        "optimizer.nesterov": False,
        "optimizer.eta": None,
        "optimizer.eps": None,
        "optimizer.clip_lr": None,
        "optimizer.betas": None,
        "optimizer.exclude_bias_n_norm": False,
        # adjust_learning_rate: init_lr * 0.5 * (1 + cos(pi * epoch / epochs)), no warm-up
        "scheduler.name": "warmup_cosine",
        "scheduler.warmup_epochs": 0,
        "scheduler.warmup_steps": None,
        "scheduler.warmup_start_lr": NO_WARMUP,
        "scheduler.min_lr": 0.0,
        "scheduler.milestones": None,
        "scheduler.gamma": None,
        # main_simsiam.py augmentation: MoCo v2's (RandomResizedCrop(224, scale=(0.2, 1.)),
        # ColorJitter(0.4,
        # 0.4, 0.4, 0.1) p 0.8, RandomGrayscale(0.2), GaussianBlur([.1, 2.]) p 0.5,
        # RandomHorizontalFlip())
        **_MOCO_V2_VIEWS,
        "data.image_size": 224,
        "data.batch_size": OWN_BATCH,
        "trainer.max_epochs": OWN_EPOCHS,
    },
}


def _swav_crops(i: int, num_crops: int, crop_size, scale) -> dict:
    # src/multicropdataset.py: RandomResizedCrop(size_crops[i], scale=(min_scale_crops[i],
    # max_scale_crops[i])), RandomHorizontalFlip(p=0.5), get_color_distortion(s=1.0)
    # (ColorJitter(0.8s, 0.8s,
    # 0.8s, 0.2s) p=0.8, RandomGrayscale(p=0.2)), PILRandomGaussianBlur(p=0.5, radius_min=0.1,
    # radius_max=2.): PIL's Gaussian of std = radius spans about +-3 sigma, 13 px at 2.0 on every
    # crop size
    return view(
        i,
        num_crops=num_crops,
        crop_size=crop_size,
        scale=scale,
        brightness=0.8,
        contrast=0.8,
        saturation=0.8,
        hue=0.2,
        grayscale=0.2,
        blur_prob=0.5,
        blur_sigma=(0.1, 2.0),
        blur_kernel_size=PIL_KERNEL,
        solarize=0.0,
    )


SOURCES["swav"] = {
    "cite": "Caron et al. 2020 (SwAV), official code facebookresearch/swav@06b1b7c "
    "scripts/swav_400ep_bs256_pretrain.sh (+ main_swav.py, "
    "src/multicropdataset.py)",
    "values": {
        # the script: --temperature 0.1 --epsilon 0.05 --sinkhorn_iterations 3 --feat_dim 128
        # --nmb_prototypes 3000 --queue_length 3840 --epoch_queue_starts 15; main_swav.py
        # --hidden_mlp 2048 (default)
        "method.proj_hidden_dim": 2048,
        "method.proj_output_dim": 128,
        "method.num_prototypes": 3000,
        "method.temperature": 0.1,
        "method.sk_iterations": 3,
        "method.sk_epsilon": 0.05,
        "method.queue_length": 3840,
        "method.epoch_queue_starts": 15,
        # --freeze_prototypes_niters 5005: one epoch of ImageNet (1,281,167 images) at batch 4 x 64
        # = 256
        "method.freeze_prototypes_epochs": 1,
        # src/resnet50.py ResNet.forward: forward_backbone(torch.cat(inputs[start_idx: end_idx])),
        # one call per crop resolution
        "method.bn_stats": "joint",
        # main_swav.py: SGD(lr=base_lr, momentum=0.9, weight_decay=wd) wrapped in apex
        # LARC(trust_coefficient=
        # 0.001, clip=False) (LARC's eps 1e-8: ratio = 0.001 ||w|| / (||g|| + wd ||w|| + eps)) over
        # every parameter; the script: --base_lr 0.6 at its batch 256 (the lr per 256 images), --wd
        # 0.000001
        "optimizer.name": "lars",
        "optimizer.lr": 0.6,
        "optimizer.scale_lr": True,
        "optimizer.weight_decay": 1.0e-6,
        "optimizer.momentum": 0.9,
        "optimizer.nesterov": False,
        "optimizer.eta": 1.0e-3,
        "optimizer.eps": 1.0e-8,
        "optimizer.clip_lr": False,
        "optimizer.betas": None,
        "optimizer.exclude_bias_n_norm": False,
        # --warmup_epochs 0 --final_lr 0.0006: cosine from base_lr to final_lr over all iterations
        "scheduler.name": "warmup_cosine",
        "scheduler.warmup_epochs": 0,
        "scheduler.warmup_steps": None,
        "scheduler.warmup_start_lr": NO_WARMUP,
        "scheduler.min_lr": 6.0e-4,
        "scheduler.milestones": None,
        "scheduler.gamma": None,
        # --nmb_crops 2 6 --size_crops 224 96 --min_scale_crops 0.14 0.05 --max_scale_crops 1. 0.14
        **_swav_crops(0, num_crops=2, crop_size=224, scale=(0.14, 1.0)),
        **_swav_crops(1, num_crops=6, crop_size=96 / 224, scale=(0.05, 0.14)),
        "data.image_size": 224,
        "data.batch_size": OWN_BATCH,
        "trainer.max_epochs": OWN_EPOCHS,
    },
}


def _steps(milestones: list[int], gamma: float, warmup_steps=None) -> dict:
    # ssl_bench's warmup_step: the lr x gamma from epoch m (0-based, after m epochs) for each
    # milestone m
    return {
        "scheduler.name": "warmup_step",
        "scheduler.warmup_epochs": 0
        if warmup_steps is None
        else NotInSource(
            "the source's warm-up is counted in updates: scheduler.warmup_steps, which wins"
        ),
        "scheduler.warmup_steps": warmup_steps,
        "scheduler.warmup_start_lr": None,
        "scheduler.min_lr": None,
        "scheduler.milestones": milestones,
        "scheduler.gamma": gamma,
    }


def _torch_sgd(lr: float, weight_decay: float, scale_lr: bool = False) -> dict:
    # torch.optim.SGD(model.parameters(), lr, momentum=0.9, weight_decay=wd): every parameter
    # decayed, no nesterov
    return {
        "optimizer.name": "sgd",
        "optimizer.lr": lr,
        "optimizer.scale_lr": scale_lr,
        "optimizer.weight_decay": weight_decay,
        "optimizer.momentum": 0.9,
        "optimizer.nesterov": False,
        "optimizer.eta": None,
        "optimizer.eps": None,
        "optimizer.clip_lr": None,
        "optimizer.betas": None,
        "optimizer.exclude_bias_n_norm": False,
    }


NO_BLUR = NotInSource("the source's views have no blur")


# ---- InstDisc: the official lemniscate code
LEMNISCATE = "zhirongw/lemniscate.pytorch@f7cfe29"
SOURCES["instdisc"] = {
    "cite": f"Wu et al. 2018 (InstDisc), official code {LEMNISCATE} main.py defaults + README.md "
    "ImageNet "
    "command",
    "values": {
        # main.py argparse: --low-dim 128, --nce-k 4096, --nce-t 0.07, --nce-m 0.5 (the README
        # command passes the same); NCEAverage(args.low_dim, ndata, ...): one memory row per
        # training image; models/resnet.py: fc = Linear(512 * expansion, low_dim) then l2norm (the
        # paper's linear head)
        "method.temperature": 0.07,
        "method.proj_output_dim": 128,
        "method.num_negatives": 4096,
        "method.bank_momentum": 0.5,
        "method.bank_size": None,
        "method.head_norm": False,
        # main.py: SGD(model.parameters(), args.lr, momentum=args.momentum,
        # weight_decay=args.weight_decay) with --lr 0.03, --momentum 0.9, --weight-decay 1e-4; the
        # lr does not follow the batch
        **_torch_sgd(lr=0.03, weight_decay=1.0e-4),
        # adjust_learning_rate(optimizer, epoch), called before each epoch (0-based): lr for epoch <
        # 120, lr * 0.1 for 120 <= epoch < 160, lr * 0.01 after; no warm-up
        **_steps([120, 160], 0.1),
        # train_dataset: RandomResizedCrop(224, scale=(0.2,1.)), RandomGrayscale(p=0.2),
        # ColorJitter(0.4, 0.4,
        # 0.4, 0.4) (always), RandomHorizontalFlip(); one image per item
        **view(
            0,
            num_crops=1,
            crop_size=224,
            scale=(0.2, 1.0),
            hflip=0.5,
            jitter_prob=1.0,
            brightness=0.4,
            contrast=0.4,
            saturation=0.4,
            hue=0.4,
            grayscale=0.2,
            blur_prob=0.0,
            blur_sigma=NO_BLUR,
            solarize=0.0,
        ),
        "data.image_size": 224,
        "data.batch_size": OWN_BATCH,
        "trainer.max_epochs": OWN_EPOCHS,
    },
}

SOURCES["instdisc_cifar10"] = {
    "cite": f"{LEMNISCATE} cifar.py (argparse defaults)",
    "values": {
        # cifar.py argparse: --low-dim 128, --nce-k 4096, --nce-t 0.1, --nce-m 0.5;
        # models/resnet_cifar.py ResNet18: linear = Linear(512, low_dim) then l2norm
        "method.temperature": 0.1,
        "method.proj_output_dim": 128,
        "method.num_negatives": 4096,
        "method.bank_momentum": 0.5,
        "method.bank_size": None,
        "method.head_norm": False,
        # optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4), --lr 0.03
        **_torch_sgd(lr=0.03, weight_decay=5.0e-4),
        # adjust_learning_rate: lr * 0.1 ** ((epoch - 80) // 40) for epoch >= 80: x1 for 80-119,
        # x0.1 for 120-159, x0.01 for 160-199 (epochs 0-based, start_epoch 0)
        **_steps([120, 160], 0.1),
        # transform_train: RandomResizedCrop(size=32, scale=(0.2,1.)), ColorJitter(0.4, 0.4, 0.4,
        # 0.4), RandomGrayscale(p=0.2), `#transforms.RandomHorizontalFlip()` (commented out: no
        # flip)
        **view(
            0,
            num_crops=1,
            crop_size=32,
            scale=(0.2, 1.0),
            hflip=0.0,
            jitter_prob=1.0,
            brightness=0.4,
            contrast=0.4,
            saturation=0.4,
            hue=0.4,
            grayscale=0.2,
            blur_prob=0.0,
            blur_sigma=NO_BLUR,
            solarize=0.0,
        ),
        # trainloader batch_size=128; `for epoch in range(start_epoch, start_epoch+200)`
        "data.batch_size": 128,
        "data.image_size": 32,
        "trainer.max_epochs": 200,
    },
}


# ---- MoCo's CIFAR-10 demo
MOCO_DEMO = "facebookresearch/moco@f736491 (branch colab-notebook) colab/moco_cifar10_demo.ipynb"
SOURCES["moco_v1_cifar10"] = {
    "cite": f"{MOCO_DEMO} (argparse defaults + the notebook's settings)",
    "values": {
        # argparse: --moco-dim 128, --moco-k 4096, --moco-m 0.99, --moco-t 0.1, --bn-splits 8; the
        # notebook sets args.symmetric = False. ModelMoCo: a constant m; ModelBase:
        # resnet18(num_classes=feature_dim), the fc as the (linear) head, no BN in it;
        # SplitBatchNorm(num_splits=bn_splits) in both encoders and _batch_shuffle_single_gpu before
        # the key encoder
        "method.temperature": 0.1,
        "method.queue_size": 4096,
        "method.base_tau": 0.99,
        "method.final_tau": None,
        "method.proj_layers": 1,
        "method.proj_hidden_dim": None,
        "method.proj_output_dim": 128,
        "method.symmetric": False,
        "method.bn_splits": 8,
        "method.proj_norm": False,
        # contrastive_loss: encoder_q(im_q) on one crop per call
        "method.bn_stats": "per_view",
        # torch.optim.SGD(model.parameters(), lr=args.lr, weight_decay=args.wd, momentum=0.9), --lr
        # 0.06,
        # --wd 5e-4; the comment on --lr: "0.06 for batch 512 (or 0.03 for batch 256)", i.e. 0.03
        # per 256
        **_torch_sgd(lr=0.03, weight_decay=5.0e-4, scale_lr=True),
        # args.cos = True: lr *= 0.5 * (1 + cos(pi * epoch / args.epochs)) at the start of each
        # epoch; no warm-up, down to 0 at the last epoch
        "scheduler.name": "warmup_cosine",
        "scheduler.warmup_epochs": 0,
        "scheduler.warmup_steps": None,
        "scheduler.warmup_start_lr": NO_WARMUP,
        "scheduler.min_lr": 0.0,
        "scheduler.milestones": None,
        "scheduler.gamma": None,
        # train_transform (applied twice, CIFAR10Pair): RandomResizedCrop(32),
        # RandomHorizontalFlip(p=0.5), RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        # RandomGrayscale(p=0.2)
        **view(
            0,
            num_crops=2,
            crop_size=32,
            scale=(0.08, 1.0),
            hflip=0.5,
            jitter_prob=0.8,
            brightness=0.4,
            contrast=0.4,
            saturation=0.4,
            hue=0.1,
            grayscale=0.2,
            blur_prob=0.0,
            blur_sigma=NO_BLUR,
            solarize=0.0,
        ),
        # --batch-size 512; args.epochs = 200
        "data.batch_size": 512,
        "data.image_size": 32,
        "trainer.max_epochs": 200,
    },
}


# ---- AMDIM: the official code
AMDIM_CODE = "Philip-Bachman/amdim-public@8754ae1"


def _amdim_adam() -> dict:
    # task_self_supervised.py train_self_supervised: optim.Adam([{'params': mod.parameters(), 'lr':
    # learning_rate} for mod in mods_to_opt], betas=(0.8, 0.999), weight_decay=1e-5, eps=1e-8): L2
    # decay on every parameter; train.py --learning_rate 0.0002, used whatever --batch_size
    return {
        "optimizer.name": "adam",
        "optimizer.lr": 2.0e-4,
        "optimizer.scale_lr": False,
        "optimizer.weight_decay": 1.0e-5,
        "optimizer.momentum": None,
        "optimizer.nesterov": None,
        "optimizer.eta": None,
        "optimizer.eps": 1.0e-8,
        "optimizer.clip_lr": None,
        "optimizer.betas": [0.8, 0.999],
        "optimizer.exclude_bias_n_norm": False,
    }


def _amdim_method(n_rkhs: int) -> dict:
    return {
        # train.py --n_rkhs, --tclip 20.0; costs.py NCE_MI_MULTI._model_scores: lgt_reg = 5e-2 *
        # (raw_scores ** 2).mean(), summed over the three tasks averaged over both directions
        # (ssl_bench's score_reg)
        "method.n_rkhs": n_rkhs,
        "method.tclip": 20.0,
        "method.score_reg": 5.0e-2,
        "method.layer_5": NotInSource(
            "AMDIM's own encoder has a 5x5 layer; the ResNet's last map stands in"
        ),
        "method.layer_7": NotInSource(
            "AMDIM's own encoder has a 7x7 layer; the ResNet's layer3 stands in"
        ),
        # model.py Model.forward: self.encoder(x1), then self.encoder(x2): each view's own BN
        # statistics
        "method.bn_stats": "per_view",
    }


def _amdim_flipped_views(crop_size: int, scale, ratio, hue: float) -> dict:
    # TransformsSTL10 / TransformsImageNet128: RandomResizedCrop(size, scale, ratio,
    # interpolation=3), RandomApply([ColorJitter(0.4, 0.4, 0.4, hue)], p=0.8),
    # RandomGrayscale(p=0.25); __call__ flips the input once (RandomHorizontalFlip(p=0.5)) and draws
    # two views from it
    return view(
        0,
        num_crops=2,
        crop_size=crop_size,
        scale=scale,
        ratio=ratio,
        hflip=0.5,
        jitter_prob=0.8,
        brightness=0.4,
        contrast=0.4,
        saturation=0.4,
        hue=hue,
        grayscale=0.25,
        blur_prob=0.0,
        blur_sigma=NO_BLUR,
        solarize=0.0,
    )


SOURCES["amdim"] = {
    "cite": f"Bachman et al. 2019 (AMDIM), official code {AMDIM_CODE} README.md ImageNet command + "
    "train.py "
    "defaults (+ task_self_supervised.py, datasets.py, costs.py)",
    "values": {
        # README: train.py --ndf 192 --n_rkhs 1536 --batch_size 480 --tclip 20.0 --n_depth 8
        # --dataset IN128
        **_amdim_method(n_rkhs=1536),
        **_amdim_adam(),
        # _train: lr_scale = min(1., (total_updates + 1) / 500.) while total_updates < 500; then
        # (not C10, C100, STL10) MultiStepLR(milestones=[30, 45], gamma=0.2),
        # scheduler_inf.step(epoch) after epoch `epoch`: ssl_bench's milestones [31, 46]
        # (tests/test_optim.py transcribes the loop); epochs = 50
        **_steps([31, 46], 0.2, warmup_steps=500),
        # datasets.py TransformsImageNet128: RandomResizedCrop(128, scale=(0.3, 1.0), ratio=(0.7,
        # 1.4)), jitter (0.4, 0.4, 0.4, 0.1)
        **_amdim_flipped_views(128, scale=(0.3, 1.0), ratio=(0.7, 1.4), hue=0.1),
        "data.image_size": 128,
        "data.batch_size": OWN_BATCH,
        "trainer.max_epochs": OWN_EPOCHS,
    },
}


def _amdim_small(dataset: str) -> dict:
    # train.py defaults: --batch_size 200, --n_rkhs 1024; task_self_supervised.py: for C10, C100,
    # STL10 MultiStepLR(milestones=[250, 280], gamma=0.2), epochs = 300 (ssl_bench's milestones
    # [251, 281])
    return {
        **_amdim_method(n_rkhs=1024),
        **_amdim_adam(),
        **_steps([251, 281], 0.2, warmup_steps=500),
        "data.batch_size": 200,
        "trainer.max_epochs": 300,
    }


SOURCES["amdim_cifar10"] = {
    "cite": f"{AMDIM_CODE} train.py --dataset C10 (defaults) + task_self_supervised.py, "
    "datasets.py, "
    "costs.py",
    "values": {
        **_amdim_small("C10"),
        # datasets.py TransformsC10: RandomApply([RandomTranslateWithReflect(4)], p=0.8) - no crop,
        # no rescaling: the identity box -, RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.2)], p=0.8),
        # RandomGrayscale(p=0.25); __call__ flips once (p=0.5) and draws two views;
        # get_encoder_size: 32
        **view(
            0,
            num_crops=2,
            crop_size=32,
            scale=(1.0, 1.0),
            ratio=(1.0, 1.0),
            hflip=0.5,
            jitter_prob=0.8,
            brightness=0.4,
            contrast=0.4,
            saturation=0.4,
            hue=0.2,
            grayscale=0.25,
            blur_prob=0.0,
            blur_sigma=NO_BLUR,
            solarize=0.0,
        ),
        "data.image_size": 32,
    },
}

SOURCES["amdim_stl10"] = {
    "cite": f"{AMDIM_CODE} train.py defaults (--dataset STL10) + task_self_supervised.py, "
    "datasets.py, "
    "costs.py",
    "values": {
        **_amdim_small("STL10"),
        # datasets.py TransformsSTL10: RandomResizedCrop(64, scale=(0.3, 1.0), ratio=(0.7, 1.4)),
        # jitter (0.4,
        # 0.4, 0.4, 0.2); split 'train+unlabeled'; get_encoder_size: 64
        **_amdim_flipped_views(64, scale=(0.3, 1.0), ratio=(0.7, 1.4), hue=0.2),
        "data.image_size": 64,
    },
}


# ---- CMC: the official code
CMC_CODE = "HobbitLong/CMC@7b227be"


def _no_jitter(values: dict) -> dict:
    # views without colour jitter: the presets set only color_jitter.prob 0, no amounts
    amounts = ("brightness", "contrast", "saturation", "hue")
    return {
        k: v for k, v in values.items() if not any(k.endswith(f"color_jitter.{a}") for a in amounts)
    }


SOURCES["cmc"] = {
    "cite": f"Tian et al. 2020 (CMC), official code {CMC_CODE} train_CMC.py defaults + README.md "
    "ResNet "
    "command (--model resnet50v1 --batch_size 128)",
    "values": {
        # --view Lab: dataset.RGB2Lab, models/resnet.py ResNetV1: l_to_ab = resnet50(in_channel=1),
        # ab_to_l = resnet50(in_channel=2), x split into [1, 2] channels (L vs ab); two views, so
        # the core-view graph is the one pair
        "method.views": [["L"], ["a", "b"]],
        "method.graph": "core",
        # NCEAverage + NCECriterion (not --softmax): memory_l / memory_ab, K noise rows each;
        # --nce_k 16384,
        # --nce_t 0.07, --nce_m 0.5, --feat_dim 128 (fc to low_dim 128, then l2norm: a linear head);
        # NCEAverage(args.feat_dim, n_data, ...): one row per training image
        "method.negatives": "bank",
        "method.num_negatives": 16384,
        "method.temperature": 0.07,
        "method.bank_momentum": 0.5,
        "method.proj_output_dim": 128,
        "method.bank_size": None,
        "method.head_norm": False,
        # one crop per image, converted to Lab and split into L and ab
        "method.crop_per_view": False,
        # set_optimizer: SGD(model.parameters(), lr=--learning_rate 0.03, momentum=--momentum 0.9,
        # weight_decay=--weight_decay 1e-4); the README runs it at batch 256 (AlexNet) and 128
        # (ResNets) alike
        **_torch_sgd(lr=0.03, weight_decay=1.0e-4),
        # util.py adjust_learning_rate(epoch): steps = sum(epoch > [120, 160, 200]), lr * 0.1 **
        # steps, epochs counted from 1 (args.start_epoch = 1): decayed from the 121st epoch, i.e.
        # after 120 (0-based milestones 120, 160, 200); --epochs 240; no warm-up
        **_steps([120, 160, 200], 0.1),
        # get_train_loader: RandomResizedCrop(224, scale=(args.crop_low, 1.)),
        # RandomHorizontalFlip(), RGB2Lab; parse_option: crop_low = 0.08 for --dataset imagenet with
        # a non-AlexNet model
        **_no_jitter(
            view(
                0,
                num_crops=1,
                crop_size=224,
                scale=(0.08, 1.0),
                hflip=0.5,
                jitter_prob=0.0,
                grayscale=0.0,
                blur_prob=0.0,
                blur_sigma=NO_BLUR,
                solarize=0.0,
            )
        ),
        "data.image_size": 224,
        "data.batch_size": OWN_BATCH,
        "trainer.max_epochs": OWN_EPOCHS,
    },
}


# ---- DIM: the official code (rdevon/DIM on the dev branch of rdevon/cortex) and the paper's STL-10
# text
DIM_CODE = "rdevon/DIM@bac4765"
CORTEX = "rdevon/cortex@6ac18ae"
NO_JITTER = NotInSource("the source has no colour jitter (prob 0): the amounts are unused")


def _jitter_unused(values: dict) -> dict:
    # views without colour jitter whose preset still lists the (unused) amounts
    return {
        k: NO_JITTER
        if any(
            k.endswith(f"color_jitter.{a}") for a in ("brightness", "contrast", "saturation", "hue")
        )
        else v
        for k, v in values.items()
    }


def _dim_method() -> dict:
    return {
        # README prior command `local classifier prior coordinates ... --prior.scale 0.1`:
        # models/dim.py LocalDIM.routine(measure='JSD', mode='fd', scale=1.0) ("scale ... Called
        # `beta` in the paper") and build(mi_units=2048); `glob` (GlobalDIM, alpha) is not among the
        # models run
        "method.estimator": "jsd",
        "method.mi_units": 2048,
        "method.alpha": 0.0,
        "method.beta": 1.0,
        # models/prior_matching.py PriorMatching.routine(scale=...) ("Called `gamma` in the paper"),
        # --prior.scale 0.1; build(discriminator_layers=[linear 1000 ReLU, linear 200 ReLU],
        # task_idx=-1, dist='uniform', use_nonlinearity=True): D on sigmoid of the encoder's last
        # layer
        "method.gamma": 0.1,
        "method.prior_hidden_dims": [1000, 200],
        # models/controller.py Controller.build(output_units=64, ...): a linear top layer of 64
        # units is added to the encoder (`layers.append(dict(layer='linear',
        # args=(output_units,)))`), no activation
        "method.global_dim": 64,
        "method.global_hidden_dim": NotInSource(
            "global DIM is not run (alpha 0); the official GlobalDIM "
            "critic copies the encoder's layers, no hidden layer"
        ),
    }


def _dim_adam() -> dict:
    # cortex/_lib/optimizer.py setup(optimizer='Adam', learning_rate=1.e-4, weight_decay={}, ...):
    # _optimizer_defaults Adam=dict(betas=(0.5, 0.999)) when no optimizer_options are given, eps
    # torch's default, weight_decay.get(network_key, 0) = 0; scheduler=None; the Controller /
    # LocalDIM / PriorMatching defaults optimizer=dict(learning_rate=1e-4), whatever the batch
    return {
        "optimizer.name": "adam",
        "optimizer.lr": 1.0e-4,
        "optimizer.scale_lr": False,
        "optimizer.weight_decay": 0.0,
        "optimizer.momentum": None,
        "optimizer.nesterov": None,
        "optimizer.eta": None,
        "optimizer.eps": 1.0e-8,
        "optimizer.clip_lr": None,
        "optimizer.betas": [0.5, 0.999],
        "optimizer.exclude_bias_n_norm": False,
        "scheduler.name": "constant",
        "scheduler.warmup_epochs": None,
        "scheduler.warmup_steps": None,
        "scheduler.warmup_start_lr": None,
        "scheduler.min_lr": None,
        "scheduler.milestones": None,
        "scheduler.gamma": None,
    }


def _dim_whole_image(crop_size) -> dict:
    # cortex built_ins/datasets/torchvision_datasets.py handle(...) + utils.py build_transforms:
    # only the flags given are applied; the command gives none -> ToTensor + Normalize: one input
    # per image, whole
    return _jitter_unused(
        view(
            0,
            num_crops=1,
            crop_size=crop_size,
            scale=(1.0, 1.0),
            ratio=(1.0, 1.0),
            hflip=0.0,
            jitter_prob=0.0,
            grayscale=0.0,
            blur_prob=0.0,
            blur_sigma=NO_BLUR,
            solarize=0.0,
        )
    )


SOURCES["dim"] = {
    "cite": f"Hjelm et al. 2019 (DIM), official code {DIM_CODE} README.md prior command (local "
    "classifier "
    "prior coordinates --prior.scale 0.1) + the code's defaults (cortex_DIM/models/controller.py, "
    f"dim.py, prior_matching.py; {CORTEX} cortex/_lib/optimizer.py)",
    "values": {
        **_dim_method(),
        **_dim_adam(),
        **_dim_whole_image(
            NotInSource("the whole image at the data's size (no crop in the source)")
        ),
        "data.image_size": NotInSource(
            "the source builds its encoder for the dataset's own size "
            "(--d.source); own defaults keep the data's image size"
        ),
        "data.batch_size": OWN_BATCH,
        "trainer.max_epochs": OWN_EPOCHS,
    },
}

SOURCES["dim_cifar10"] = {
    "cite": f"{DIM_CODE} README.md CIFAR10 prior command (local classifier prior coordinates "
    "--d.source "
    f"CIFAR10 --t.epochs 1000 --prior.scale 0.1) + the code's defaults ({CORTEX})",
    "values": {
        **_dim_method(),
        **_dim_adam(),
        **_dim_whole_image(32),
        # Controller.defaults data=dict(batch_size=dict(train=64, test=64)); --t.epochs 1000;
        # CIFAR10 at 32 px
        "data.batch_size": 64,
        "data.image_size": 32,
        "trainer.max_epochs": 1000,
    },
}

DIM_STL_TEXT = NotInSource(
    "the paper's STL-10 text read here (sec. 4, datasets paragraph) does not give it: "
    "DIM's own defaults (conf/recipe/dim.yaml) or the data's / trainer's value stand"
)
SOURCES["dim_stl10"] = {
    "cite": "Hjelm et al. 2019 (DIM), arXiv 1808.06670 sec. 4, datasets paragraph (STL-10: random "
    "64 x 64 "
    "crops and horizontal flips during unsupervised learning)",
    "values": {
        **{
            f"method.{k}": DIM_STL_TEXT
            for k in (
                "estimator",
                "local_layer",
                "global_dim",
                "mi_units",
                "alpha",
                "beta",
                "gamma",
                "global_hidden_dim",
                "prior_hidden_dims",
            )
        },
        **{k: DIM_STL_TEXT for k in _dim_adam()},
        # "We use data augmentation with this dataset, taking random 64 x 64 crops and flipping
        # horizontally during unsupervised learning": a 64 px window of the 96 px image, not
        # rescaled (area (64/96)^2, square), a flip, and nothing else
        **_jitter_unused(
            view(
                0,
                num_crops=1,
                crop_size=64,
                scale=((64 / 96) ** 2, (64 / 96) ** 2),
                ratio=(1.0, 1.0),
                hflip=NotInSource("the text flips at random without a probability; ours 0.5"),
                jitter_prob=0.0,
                grayscale=0.0,
                blur_prob=0.0,
                blur_sigma=NO_BLUR,
                solarize=0.0,
            )
        ),
        "data.image_size": 64,
        "data.batch_size": DIM_STL_TEXT,
        "trainer.max_epochs": DIM_STL_TEXT,
    },
}


# ---- CPC v2: the paper only (no code was published; it pre-trains on ImageNet only)
CPC_UNREAD = NotInSource(
    "the paper's training details (appendix text) could not be read with the tools "
    "here; ssl_bench's stand-in (see conf/recipe/cpc_v2.yaml)"
)
SOURCES["cpc_v2"] = {
    "cite": "Henaff et al. 2020 (CPC v2), arXiv 1905.09272v3 sec. 4.1 + appendix A.2 pseudo-code "
    "(CPC, "
    "pixelCNN); its training details could not be read here",
    "values": {
        # appendix A.2 pseudo-code, read through public transcriptions of it (identical in several
        # reimplementations), not in the PDF: CPC(latents, target_dim=64, emb_scale=0.1,
        # steps_to_ignore=2, steps_to_predict=3): targets = 1x1 conv of the latents to target_dim;
        # for i in range(steps_to_ignore, steps_to_predict): preds_i = 1x1 conv of the context *
        # emb_scale, logits = preds_i @ targets^T over every target of the batch (labels: the target
        # i + 1 rows below)
        "method.steps_to_ignore": 2,
        "method.steps_to_predict": 3,
        "method.target_dim": 64,
        "method.emb_scale": 0.1,
        "method.num_negatives": None,
        # pixelCNN(latents): `for _ in range(5)`: 1x1 conv to 256 + ReLU, a (1, 3) conv, a causal
        # (2, 1) conv + ReLU, a 1x1 conv back to the latent width, residual
        "method.context_blocks": 5,
        "method.context_hidden": 256,
        "method.context_kernel": 3,
        # sec. 4.1 (through summaries of it): layer normalisation replaces batch normalisation in
        # the encoder
        "method.encoder_norm": "layer",
        # sec. 4.1 (through summaries of it): "color dropping", which drops two of the three colour
        # channels in each patch
        "method.patch_augment.color_drop": 1.0,
        "method.patch_augment.hflip": NotInSource(
            "sec. 4.1 adds random horizontal flips of the patches; the "
            "probability could not be read here (ours 0.5)"
        ),
        **{
            f"method.patch_augment.{k}": CPC_UNREAD
            for k in (
                "rotate",
                "shear",
                "scale",
                "translate",
                "brightness",
                "contrast",
                "saturation",
                "hue",
            )
        },
        "method.directions": NotInSource(
            "sec. 4.1 predicts in more than one direction; which ones could not "
            "be read here (ours: all four)"
        ),
        "method.patch_size": CPC_UNREAD,
        "method.patch_stride": CPC_UNREAD,
        # the image-level views (augmentation=cpc_v2: one crop + flip, no colour jitter: its preset
        # lists no jitter amounts)
        **{
            k: CPC_UNREAD for k in _no_jitter(view(0, num_crops=1, crop_size=224, scale=(0.3, 1.0)))
        },
        **{
            f"optimizer.{k}": CPC_UNREAD
            for k in (
                "name",
                "lr",
                "scale_lr",
                "weight_decay",
                "momentum",
                "nesterov",
                "eta",
                "eps",
                "clip_lr",
                "betas",
                "exclude_bias_n_norm",
            )
        },
        **{
            f"scheduler.{k}": CPC_UNREAD
            for k in (
                "name",
                "warmup_epochs",
                "warmup_steps",
                "warmup_start_lr",
                "min_lr",
                "milestones",
                "gamma",
            )
        },
        "data.image_size": CPC_UNREAD,
        "data.batch_size": OWN_BATCH,
        "trainer.max_epochs": OWN_EPOCHS,
    },
}


# ---- redundancy reduction: Barlow Twins and VICReg ----------------------------------------------
def _official_byol_views() -> dict:
    # barlowtwins main.py Transform / vicreg augmentations.py TrainTransform: RandomResizedCrop(224)
    # (scale (0.08, 1), ratio (3/4, 4/3): torchvision's defaults), flip 0.5, ColorJitter(0.4, 0.4,
    # 0.2, 0.1) p 0.8, grayscale 0.2, GaussianBlur p 1.0 / 0.1 (sigma uniform in [0.1, 2.0]),
    # Solarization p 0.0 / 0.2
    common = dict(
        num_crops=1,
        crop_size=224,
        scale=(0.08, 1.0),
        brightness=0.4,
        contrast=0.4,
        saturation=0.2,
        hue=0.1,
        grayscale=0.2,
    )
    return {
        **view(0, **common, blur_prob=1.0, solarize=0.0),
        **view(1, **common, blur_prob=0.1, solarize=0.2),
    }


def _official_lars(lr: float) -> dict:
    # main.py (both repos) LARS(..., weight_decay=1e-6 (--weight-decay / --wd), momentum=0.9,
    # eta=0.001) with weight_decay_filter and lars_adaptation_filter on 1-D parameters (p.ndim ==
    # 1); trust ratio eta ||w|| / ||g + wd w||, no epsilon, no clipping; adjust_learning_rate: lr x
    # batch_size / 256
    return {
        "optimizer.name": "lars",
        "optimizer.lr": lr,
        "optimizer.scale_lr": True,
        "optimizer.weight_decay": 1.0e-6,
        "optimizer.momentum": 0.9,
        "optimizer.nesterov": False,
        "optimizer.eta": 1.0e-3,
        "optimizer.eps": NotInSource("the official LARS divides by ||g + wd w|| with no epsilon"),
        "optimizer.clip_lr": False,
        "optimizer.betas": None,
        "optimizer.exclude_bias_n_norm": True,
    }


def _official_warmup_cosine() -> dict:
    # adjust_learning_rate (both repos): warmup_steps = 10 * len(loader), lr = base_lr * step /
    # warmup_steps, then base_lr * q + end_lr * (1 - q) with end_lr = base_lr * 0.001: a floor
    # relative to the peak, which ssl_bench's absolute min_lr cannot hold: left out here, stated as
    # the recipes' departure
    values = _warmup_from_zero_cosine(10)
    del values["scheduler.min_lr"]
    return values


BARLOW = "facebookresearch/barlowtwins@8e8d284"
SOURCES["barlow_twins"] = {
    "cite": f"Zbontar et al. 2021 (Barlow Twins), official code {BARLOW} main.py argument defaults "
    "+ Transform",
    "values": {
        # main.py: --projector 8192-8192-8192 (Linear-BN-ReLU twice, then Linear), --lambd 0.0051;
        # forward: loss = on_diag + lambd * off_diag (no scale); projector(backbone(y1)),
        # projector(backbone(y2))
        "method.proj_hidden_dim": 8192,
        "method.proj_output_dim": 8192,
        "method.proj_layers": 3,
        "method.lambd": 0.0051,
        "method.scale_loss": 1.0,
        "method.bn_stats": "per_view",
        # --learning-rate-weights 0.2 (--learning-rate-biases 0.0048 has no key here),
        # --weight-decay 1e-6
        **_official_lars(0.2),
        **_official_warmup_cosine(),
        **_official_byol_views(),
        "data.image_size": 224,
        "data.batch_size": OWN_BATCH,
        "trainer.max_epochs": OWN_EPOCHS,
    },
}

VICREG = "facebookresearch/vicreg@4e12602"
SOURCES["vicreg"] = {
    "cite": f"Bardes et al. 2022 (VICReg), official code {VICREG} main_vicreg.py argument defaults "
    "+ README.md 1000-epoch command + augmentations.py",
    "values": {
        # main_vicreg.py: --mlp 8192-8192-8192 (Projector: Linear-BN-ReLU twice, then Linear),
        # --sim-coeff 25, --std-coeff 25 on std_loss = mean(relu(1 - std_x)) / 2 + mean(relu(1 -
        # std_y)) / 2, i.e. 12.5 on the paper's sum v(Z) + v(Z'); --cov-coeff 1;
        # torch.sqrt(x.var(dim=0) + 0.0001), relu(1 - std)
        "method.proj_hidden_dim": 8192,
        "method.proj_output_dim": 8192,
        "method.proj_layers": 3,
        "method.sim_loss_weight": 25.0,
        "method.var_loss_weight": 12.5,
        "method.cov_loss_weight": 1.0,
        "method.gamma": 1.0,
        "method.eps": 1.0e-4,
        # forward: self.projector(self.backbone(x)), self.projector(self.backbone(y))
        "method.bn_stats": "per_view",
        # README: --base-lr 0.2 (--batch-size 2048, --epochs 1000); --wd 1e-6
        **_official_lars(0.2),
        **_official_warmup_cosine(),
        **_official_byol_views(),
        "data.image_size": 224,
        "data.batch_size": OWN_BATCH,
        "trainer.max_epochs": OWN_EPOCHS,
    },
}

SOURCES["barlow_twins_cifar10"] = {
    "cite": f"{SOLO}/barlow.yaml + augmentations/asymmetric.yaml",
    "values": {
        # barlow.yaml method_kwargs: proj_hidden_dim 2048, proj_output_dim 2048, scale_loss 0.1;
        # lamb unset: solo/methods/barlow_twins.py add_and_assert_specific_cfg default 0.0051;
        # projector Linear-BN-ReLU, Linear-BN-ReLU, Linear
        "method.proj_hidden_dim": 2048,
        "method.proj_output_dim": 2048,
        "method.proj_layers": 3,
        "method.lambd": 0.0051,
        "method.scale_loss": 0.1,
        "method.bn_stats": "per_view",
        # optimizer: lars, lr 0.3, weight_decay 1e-4, kwargs clip_lr True, eta 0.02,
        # exclude_bias_n_norm True
        **_solo_lars(lr=0.3, weight_decay=1.0e-4),
        **_solo_warmup_cosine(),
        **_solo_asymmetric(),
        **_solo_run(),
    },
}

SOURCES["vicreg_cifar10"] = {
    "cite": f"{SOLO}/vicreg.yaml (with its inline augmentations)",
    "values": {
        # vicreg.yaml method_kwargs: proj_hidden_dim 2048, proj_output_dim 2048, sim / var / cov
        # loss weights 25 / 25 / 1; solo/losses/vicreg.py variance_loss: eps 1e-4, relu(1 - std),
        # both views summed; solo/methods/vicreg.py projector Linear-BN-ReLU, Linear-BN-ReLU, Linear
        "method.proj_hidden_dim": 2048,
        "method.proj_output_dim": 2048,
        "method.proj_layers": 3,
        "method.sim_loss_weight": 25.0,
        "method.var_loss_weight": 25.0,
        "method.cov_loss_weight": 1.0,
        "method.gamma": 1.0,
        "method.eps": 1.0e-4,
        "method.bn_stats": "per_view",
        # optimizer: lars, lr 0.3, weight_decay 1e-4, kwargs clip_lr True, eta 0.02,
        # exclude_bias_n_norm True
        **_solo_lars(lr=0.3, weight_decay=1.0e-4),
        **_solo_warmup_cosine(),
        # augmentations (inline): rrc (0.2, 1.0), colour jitter 0.4 / 0.4 / 0.2 / 0.1 p 0.8,
        # grayscale 0.2, gaussian_blur enabled False (prob 0), solarization 0.1, horizontal_flip
        # 0.5, crop_size 32, 2 crops
        **view(
            0,
            num_crops=2,
            crop_size=32,
            scale=(0.2, 1.0),
            brightness=0.4,
            contrast=0.4,
            saturation=0.2,
            hue=0.1,
            grayscale=0.2,
            blur_prob=0.0,
            blur_kernel_size=PIL_KERNEL,
            solarize=0.1,
        ),
        **_solo_run(),
    },
}

for _m, _script, _views in (
    ("barlow_twins", "barlow", " + augmentations/asymmetric.yaml"),
    ("vicreg", "vicreg", " (with its inline augmentations)"),
):
    SOURCES[f"{_m}_cifar100"] = {
        "cite": f"{SOLO}/{_script}.yaml (data.dataset: cifar100){_views}",
        "values": dict(SOURCES[f"{_m}_cifar10"]["values"]),
    }


# ---- DINO (Caron et al. 2021)
DINO_CODE = "facebookresearch/dino@cc72fe9"


def _dino_crops(
    i: int, num_crops: int, crop_size, scale, blur_prob: float, solarize: float
) -> dict:
    # main_dino.py DataAugmentationDINO: RandomResizedCrop(size, scale=...) with torchvision's
    # ratio, RandomHorizontalFlip(p=0.5), RandomApply([ColorJitter(brightness=0.4, contrast=0.4,
    # saturation=0.2, hue=0.1)], p=0.8), RandomGrayscale(p=0.2), utils.GaussianBlur(p) (PIL
    # radius uniform in [0.1, 2.0]: 13 px at sigma 2, PIL_KERNEL), utils.Solarization(0.2) on the
    # second global crop only
    return view(
        i,
        num_crops=num_crops,
        crop_size=crop_size,
        scale=scale,
        brightness=0.4,
        contrast=0.4,
        saturation=0.2,
        hue=0.1,
        grayscale=0.2,
        blur_prob=blur_prob,
        blur_sigma=(0.1, 2.0),
        blur_kernel_size=PIL_KERNEL,
        solarize=solarize,
    )


SOURCES["dino"] = {
    "cite": f"Caron et al. 2021 (DINO), official code {DINO_CODE} main_dino.py defaults "
    "(+ utils.py, vision_transformer.py DINOHead)",
    "values": {
        # get_args_parser: --out_dim 65536, --norm_last_layer True, --use_bn_in_head False; DINOHead
        # defaults nlayers=3, hidden_dim=2048, bottleneck_dim=256
        "method.num_prototypes": 65536,
        "method.proj_hidden_dim": 2048,
        "method.proj_output_dim": 256,
        "method.proj_layers": 3,
        "method.use_bn_in_head": False,
        "method.norm_last_layer": True,
        # eval_knn.py, eval_linear.py: --checkpoint_key defaults to teacher (evaluated)
        "method.eval_network": "teacher",
        # --warmup_teacher_temp 0.04, --teacher_temp 0.04, --warmup_teacher_temp_epochs 0; DINOLoss
        # student_temp=0.1, center_momentum=0.9
        "method.student_temp": 0.1,
        "method.teacher_temp": 0.04,
        "method.warmup_teacher_temp": 0.04,
        "method.warmup_teacher_temp_epochs": 0,
        "method.center_momentum": 0.9,
        # --freeze_last_layer 1; --momentum_teacher 0.996, raised to 1 by utils.cosine_scheduler
        "method.freeze_last_layer": 1,
        "method.base_tau": 0.996,
        "method.final_tau": 1.0,
        # utils.MultiCropWrapper: the backbone on torch.cat of the crops of one resolution
        "method.bn_stats": "joint",
        # --optimizer adamw: torch.optim.AdamW(params_groups) with torch's betas and eps;
        # --weight_decay 0.04 (its cosine to --weight_decay_end 0.4 has no key here);
        # utils.get_params_groups: biases and 1-D parameters in a group without weight decay;
        # --lr 0.0005 scaled by batch_size_per_gpu * world_size / 256
        "optimizer.name": "adamw",
        "optimizer.lr": 5.0e-4,
        "optimizer.scale_lr": True,
        "optimizer.weight_decay": 0.04,
        "optimizer.betas": [0.9, 0.999],
        "optimizer.eps": 1.0e-8,
        "optimizer.exclude_bias_n_norm": True,
        "optimizer.momentum": None,
        "optimizer.nesterov": None,
        "optimizer.eta": None,
        "optimizer.clip_lr": None,
        # utils.cosine_scheduler(base, --min_lr 1e-6, epochs, iters, --warmup_epochs 10,
        # start_warmup_value=0): a linear warm-up from 0, then a cosine to min_lr, per iteration
        "scheduler.name": "warmup_cosine",
        "scheduler.warmup_epochs": 10,
        "scheduler.warmup_steps": None,
        "scheduler.warmup_start_lr": 0.0,
        "scheduler.min_lr": 1.0e-6,
        "scheduler.milestones": None,
        "scheduler.gamma": None,
        # --global_crops_scale 0.4 1. (224 px), --local_crops_number 8 --local_crops_scale 0.05 0.4
        # (96 px); GaussianBlur(1.0) / GaussianBlur(0.1) + Solarization(0.2) / GaussianBlur(p=0.5)
        **_dino_crops(0, 1, 224, (0.4, 1.0), blur_prob=1.0, solarize=0.0),
        **_dino_crops(1, 1, 224, (0.4, 1.0), blur_prob=0.1, solarize=0.2),
        **_dino_crops(2, 8, 96 / 224, (0.05, 0.4), blur_prob=0.5, solarize=0.0),
        "data.image_size": 224,
        "data.batch_size": OWN_BATCH,
        "trainer.max_epochs": OWN_EPOCHS,
    },
}

SOURCES["dino_cifar10"] = {
    "cite": f"{SOLO}/dino.yaml + augmentations/asymmetric.yaml",
    "values": {
        # dino.yaml method_kwargs: proj_hidden_dim 2048, proj_output_dim 256, num_prototypes 4096;
        # momentum: base_tau 0.9995, final_tau 1.0
        "method.proj_hidden_dim": 2048,
        "method.proj_output_dim": 256,
        "method.num_prototypes": 4096,
        "method.base_tau": 0.9995,
        "method.final_tau": 1.0,
        # solo/methods/dino.py add_and_assert_specific_cfg defaults: freeze_last_layer 1,
        # norm_last_layer True, use_bn_in_head False, student_temperature 0.1, teacher_temperature
        # 0.07, warmup_teacher_temperature 0.04, warmup_teacher_temperature_epochs 0 (clip_grad 0:
        # off); DINOHead num_layers=3; solo/losses/dino.py DINOLoss center_momentum=0.9
        "method.freeze_last_layer": 1,
        "method.norm_last_layer": True,
        "method.use_bn_in_head": False,
        "method.proj_layers": 3,
        "method.student_temp": 0.1,
        "method.teacher_temp": 0.07,
        "method.warmup_teacher_temp": 0.04,
        "method.warmup_teacher_temp_epochs": 0,
        "method.center_momentum": 0.9,
        "method.bn_stats": "per_view",
        # optimizer: lars, lr 0.3, weight_decay 1e-6, kwargs clip_lr True, eta 0.02,
        # exclude_bias_n_norm True
        **_solo_lars(lr=0.3, weight_decay=1.0e-6),
        **_solo_warmup_cosine(),
        **_solo_asymmetric(),
        **_solo_run(),
    },
}


# ---- MAE (He et al. 2022)
MAE_CODE = "facebookresearch/mae@efb2a80"


def _mae_views(crop_size: int, scale) -> dict:
    # one RandomResizedCrop (torchvision's ratio) + RandomHorizontalFlip (p 0.5), nothing else: no
    # colour jitter (its preset lists no amounts), grayscale, blur or solarization
    return _no_jitter(
        view(
            0,
            num_crops=1,
            crop_size=crop_size,
            scale=scale,
            jitter_prob=0.0,
            grayscale=0.0,
            blur_prob=0.0,
            blur_sigma=NO_BLUR,
            solarize=0.0,
        )
    )


SOURCES["mae"] = {
    "cite": f"He et al. 2022 (MAE) appendix A.1 Table 8, official code {MAE_CODE} PRETRAIN.md "
    "command (+ main_pretrain.py, models_mae.py)",
    "values": {
        # PRETRAIN.md: --mask_ratio 0.75 --norm_pix_loss; models_mae.py mae_vit_*_dec512d8b:
        # decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16; pos_embed "fixed sin-cos
        # embedding" (requires_grad=False)
        "method.mask_ratio": 0.75,
        "method.decoder_embed_dim": 512,
        "method.decoder_depth": 8,
        "method.decoder_num_heads": 16,
        "method.norm_pix_loss": True,
        "method.fixed_pos_embed": True,
        # main_pretrain.py: torch.optim.AdamW(param_groups, lr=args.lr, betas=(0.9, 0.95)) with
        # torch's eps; optim_factory.add_weight_decay(model, 0.05): 1-D parameters and biases
        # without weight decay; PRETRAIN.md --blr 1.5e-4 --weight_decay 0.05, lr = blr x effective
        # batch / 256 (Table 8: base lr 1.5e-4, weight decay 0.05, betas 0.9, 0.95)
        "optimizer.name": "adamw",
        "optimizer.lr": 1.5e-4,
        "optimizer.scale_lr": True,
        "optimizer.weight_decay": 0.05,
        "optimizer.betas": [0.9, 0.95],
        "optimizer.eps": 1.0e-8,
        "optimizer.exclude_bias_n_norm": True,
        "optimizer.momentum": None,
        "optimizer.nesterov": None,
        "optimizer.eta": None,
        "optimizer.clip_lr": None,
        # util/lr_sched.py adjust_learning_rate, per iteration: lr x epoch / warmup_epochs, then a
        # half-cycle cosine to --min_lr 0; PRETRAIN.md --warmup_epochs 40
        **_warmup_from_zero_cosine(40),
        # main_pretrain.py transform_train: RandomResizedCrop(input_size, scale=(0.2, 1.0),
        # interpolation=3), RandomHorizontalFlip(); --input_size 224
        **_mae_views(224, (0.2, 1.0)),
        "data.image_size": 224,
        "data.batch_size": OWN_BATCH,
        "trainer.max_epochs": OWN_EPOCHS,
    },
}

SOURCES["mae_cifar10"] = {
    "cite": f"{SOLO}/mae.yaml + augmentations/reconstruction.yaml",
    "values": {
        # mae.yaml method_kwargs: decoder_embed_dim 512, decoder_depth 8, decoder_num_heads 16,
        # mask_ratio 0.75, norm_pix_loss True; solo/backbones/vit/vit_mae.py MaskedAutoencoderViT:
        # pos_embed "fixed sin-cos embedding" (requires_grad=False)
        "method.mask_ratio": 0.75,
        "method.decoder_embed_dim": 512,
        "method.decoder_depth": 8,
        "method.decoder_num_heads": 16,
        "method.norm_pix_loss": True,
        "method.fixed_pos_embed": True,
        # optimizer: adamw, lr 2e-4 (scaled by batch / 256 in parse_cfg), weight_decay 0.05, kwargs
        # betas [0.9, 0.95]; torch.optim.AdamW's eps; exclude_bias_n_norm_wd default False
        "optimizer.name": "adamw",
        "optimizer.lr": 2.0e-4,
        "optimizer.scale_lr": True,
        "optimizer.weight_decay": 0.05,
        "optimizer.betas": [0.9, 0.95],
        "optimizer.eps": 1.0e-8,
        "optimizer.exclude_bias_n_norm": False,
        "optimizer.momentum": None,
        "optimizer.nesterov": None,
        "optimizer.eta": None,
        "optimizer.clip_lr": None,
        # scheduler: name warmup_cosine with solo-learn's defaults
        **_solo_warmup_cosine(),
        # augmentations/reconstruction.yaml: rrc crop_min_scale 0.08, crop_max_scale 1.0; every
        # colour op at prob 0.0; horizontal_flip 0.5; crop_size 32, num_crops 1
        **_mae_views(32, (0.08, 1.0)),
        **_solo_run(),
    },
}
