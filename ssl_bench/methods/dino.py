"""DINO: Emerging Properties in Self-Supervised Vision Transformers (self-distillation with no
labels). Caron et al., 2021. https://arxiv.org/abs/2104.14294
"""

from __future__ import annotations

import torch
from torch import nn

from ssl_bench.errors import ConfigError
from ssl_bench.losses.distillation import dino_center, dino_loss, teacher_temp_at
from ssl_bench.methods.base import SSLMethod, embedding_std
from ssl_bench.nn.dino_head import DINOHead
from ssl_bench.nn.ema import MomentumTargets, make_target


class DINO(SSLMethod):
    """A student (backbone + DINO head) matches the output distribution of a momentum teacher over
    all crops; the teacher sees only the global crops (paper, sec. 3.1 and Algorithm 1).

    * Teacher output: centred by `center` (an EMA with `center_momentum` of the teacher's batch
      mean, all-reduced over DDP ranks: eq. 4) and sharpened by `teacher_temp`, which warms up
      linearly from `warmup_teacher_temp` over `warmup_teacher_temp_epochs` epochs; the student's
      temperature is `student_temp`. The loss: losses/distillation.dino_loss.
    * Teacher weights: the EMA of the student's (backbone and head), tau from `base_tau` to
      `final_tau` on a cosine over all optimizer steps (nn/ema.MomentumTargets, sec. 3.1).
    * Head: nn/dino_head.DINOHead (3 layers, GELU, bottleneck `proj_output_dim`, L2-normalised, a
      weight-normalised last layer of `num_prototypes` outputs, its norm frozen at 1 with
      `norm_last_layer`); the last layer gets no update in the first `freeze_last_layer` epochs.

    Evaluation (`eval_network`): the teacher's backbone, as the official code evaluates it
    (eval_knn.py and eval_linear.py: `--checkpoint_key teacher` by default; paper, sec. 5.3: the
    teacher outperforms the student throughout training); `student` evaluates the online backbone.
    `forward`, the online kNN/probe, `load_backbone` and the export all take the one chosen.

    Views arrive large crops first (the global ones: `num_large_crops`). As the official
    MultiCropWrapper (facebookresearch/dino@cc72fe9 utils.py) the backbone runs once per crop
    resolution (`bn_stats: joint`) and the head once on all features. The centre is a buffer, so
    checkpoints and resumes keep it. Not reproduced (no key here): the official per-parameter
    gradient clipping (clip_grad 3.0), the weight-decay cosine (0.04 -> 0.4) and stochastic depth
    (drop_path_rate 0.1) of its ViTs.
    """

    #: the global crops: the teacher's inputs (paper, sec. 3.1: two 224 px crops)
    num_large_crops = 2

    def __init__(
        self,
        backbone: nn.Module,
        proj_hidden_dim: int = 2048,
        proj_output_dim: int = 256,
        num_prototypes: int = 65536,
        proj_layers: int = 3,
        use_bn_in_head: bool = False,
        norm_last_layer: bool = True,
        student_temp: float = 0.1,
        teacher_temp: float = 0.04,
        warmup_teacher_temp: float = 0.04,
        warmup_teacher_temp_epochs: int = 0,
        center_momentum: float = 0.9,
        freeze_last_layer: int = 1,
        base_tau: float = 0.996,
        final_tau: float = 1.0,
        bn_stats: str = "joint",
        eval_network: str = "teacher",
        **kwargs,
    ):
        super().__init__(backbone, bn_stats=bn_stats, **kwargs)
        _check(locals())
        self.eval_backbone = "teacher_backbone" if eval_network == "teacher" else "backbone"
        self.student_temp, self.teacher_temp = student_temp, teacher_temp
        self.warmup_teacher_temp = warmup_teacher_temp
        self.warmup_teacher_temp_epochs = warmup_teacher_temp_epochs
        self.center_momentum, self.freeze_last_layer = center_momentum, freeze_last_layer
        self.head = DINOHead(
            self.feat_dim,
            num_prototypes,
            proj_hidden_dim,
            proj_output_dim,
            proj_layers,
            use_bn_in_head,
            norm_last_layer,
        )
        self.teacher_backbone = make_target(self.backbone)
        self.teacher_head = make_target(self.head)
        self.momentum_targets = MomentumTargets(
            [(self.backbone, self.teacher_backbone), (self.head, self.teacher_head)],
            base_tau,
            final_tau,
        )
        self.register_buffer("center", torch.zeros(1, num_prototypes))

    def current_teacher_temp(self) -> float:
        return teacher_temp_at(
            self.current_epoch,
            self.warmup_teacher_temp,
            self.teacher_temp,
            self.warmup_teacher_temp_epochs,
        )

    @torch.no_grad()
    def teacher_forward(self, views: list[torch.Tensor]) -> tuple[list, list]:
        """The teacher's pooled features and logits of the global crops (no gradient)."""
        feats = self.forward_views(self.teacher_backbone, views[: self.num_large_crops])
        return feats, self.forward_views(self.teacher_head, feats)

    def training_loss(self, views, labels, index):
        if len(views) < self.num_large_crops:
            raise ConfigError(
                "augmentation.views",
                f"DINO needs at least {self.num_large_crops} views (global crops), got "
                f"{len(views)}.",
                "use augmentation=swav (2 global + 6 local crops) or a 2-view preset.",
            )
        if getattr(self.backbone, "dynamic_img_size", None) is False and any(
            v.shape[-2:] != views[0].shape[-2:] for v in views
        ):  # a timm ViT built for one image size cannot take the local crops
            raise ConfigError(
                "backbone.kwargs.dynamic_img_size",
                "the ViT takes only its img_size, but the views have several sizes (multi-crop).",
                "add +backbone.kwargs.dynamic_img_size=true (positional embeddings interpolated "
                "to each crop size, as the official DINO ViT does).",
            )
        feats = self.forward_views(self.backbone, views)  # V x (N x F), a call per resolution
        z = self.forward_views(self.head.bottleneck, feats)  # V x (N x D), L2-normalised
        student = self.forward_views(self.head.last_layer, z)  # V x (N x K)
        teacher_feats, teacher = self.teacher_forward(views)  # 2 x (N x K), no grad
        temp = self.current_teacher_temp()
        loss = dino_loss(student, teacher, self.center, self.student_temp, temp)
        if self.training:  # eq. 4: after the loss, from this batch's raw teacher outputs
            self.center.copy_(dino_center(self.center, teacher, self.center_momentum))
        large = self.num_large_crops
        evaluated = teacher_feats if self.eval_backbone == "teacher_backbone" else feats[:large]
        return {
            "loss": loss,
            "representation": torch.cat(evaluated),  # what forward gives: the probe's input
            "z_std": embedding_std(torch.cat(z[:large])),
            "teacher_temp": loss.new_tensor(temp),  # a tensor, as every logged term
        }

    def on_before_optimizer_step(self, optimizer) -> None:
        # the last layer gets no update in the first epochs (official main_dino.py
        # cancel_gradients_last_layer: its gradients set to None before optimizer.step)
        if self.current_epoch < self.freeze_last_layer:
            for p in self.head.last_layer.parameters():
                p.grad = None


def _check(args: dict) -> None:
    """A ConfigError naming the first bad key of DINO's constructor arguments."""
    checks = (
        ("student_temp", args["student_temp"] > 0, "> 0", "use 0.1 (the paper's)."),
        ("teacher_temp", args["teacher_temp"] > 0, "> 0", "use 0.04 (the paper's) to 0.07."),
        ("warmup_teacher_temp", args["warmup_teacher_temp"] > 0, "> 0", "use 0.04."),
        ("warmup_teacher_temp_epochs", args["warmup_teacher_temp_epochs"] >= 0, ">= 0", "use 0."),
        ("center_momentum", 0 <= args["center_momentum"] <= 1, "in [0, 1]", "use 0.9."),
        ("freeze_last_layer", args["freeze_last_layer"] >= 0, ">= 0", "use 1 (epochs)."),
        ("num_prototypes", args["num_prototypes"] >= 2, ">= 2", "use 65536 or e.g. 4096."),
        ("proj_hidden_dim", args["proj_hidden_dim"] >= 1, ">= 1", "use 2048."),
        ("proj_output_dim", args["proj_output_dim"] >= 1, ">= 1", "use 256."),
        ("proj_layers", args["proj_layers"] >= 1, ">= 1", "use 3."),
    )
    if args["eval_network"] not in ("teacher", "student"):
        raise ConfigError(
            "method.eval_network",
            f"must be teacher or student, got {args['eval_network']!r}.",
            "use teacher (the official evaluation) or student.",
        )
    for key, ok, need, fix in checks:
        if not ok:
            raise ConfigError(f"method.{key}", f"must be {need}, got {args[key]}.", fix)
