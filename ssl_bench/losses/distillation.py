"""Self-distillation losses: DINO's cross-entropy between a centred, sharpened teacher and a student
(Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers", sec. 3.1 and
Algorithm 1), with the centre's moving average."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssl_bench.nn.dist import world


def dino_loss(
    student: list[torch.Tensor],
    teacher: list[torch.Tensor],
    center: torch.Tensor,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
) -> torch.Tensor:
    """DINO's loss (sec. 3.1, eq. 2-3): for every teacher crop t (the global crops) and every
    student crop s != t (all crops, global first), H(P_t, P_s) = -sum_k P_t[k] log P_s[k] averaged
    over the batch, with P_s = softmax(g_s / student_temp) and
    P_t = softmax((g_t - center) / teacher_temp) (centred and sharpened, no gradient); the mean over
    all such (t, s) pairs.

    The mean over pairs, each a batch mean, is the official code's (facebookresearch/dino@cc72fe9
    main_dino.py DINOLoss.forward: `total_loss /= n_loss_terms`); Algorithm 1 writes the two-crop
    case as `H(t1, s2)/2 + H(t2, s1)/2`, the same. Student crop i and teacher crop i are the same
    view and are skipped. Computed in float32 (the teacher temperature 0.04 sharpens bf16 round-off
    into the softmax). student: V tensors N x K; teacher: T <= V tensors N x K; center: 1 x K.

    The V x T - T products are not formed one by one: summing the teacher's distributions first
    gives the same sum with two (on CPU, 10 crops of 65,536 prototypes at batch 128: forward +
    backward 2.8-3.6 s -> 1.5-1.7 s, gradients equal to bf16 rounding).
    """
    n_teacher, n_student = len(teacher), len(student)
    with torch.autocast(device_type=center.device.type, enabled=False):
        # every crop in one tensor: one copy to float32 and one log-softmax for all V crops
        log_p = F.log_softmax(torch.cat(student).float().div_(student_temp), dim=-1)
        log_p = log_p.view(n_student, -1, log_p.shape[-1])
        q = torch.cat(teacher).detach().float().sub_(center.float()).div_(teacher_temp)
        q = F.softmax(q, dim=-1).view(n_teacher, -1, q.shape[-1])
        # sum over the pairs (t, s != t) of q_t . log p_s, without a product per pair:
        # (sum_t q_t) . (sum_s log p_s) - sum_t q_t . log p_t (crop t is student crop t)
        total = (q.sum(0) * log_p.sum(0)).sum() - (q * log_p[:n_teacher]).sum()
        pairs = n_teacher * n_student - n_teacher
        return -total / (pairs * log_p.shape[1])


@torch.no_grad()
def dino_center(center: torch.Tensor, teacher: list[torch.Tensor], momentum: float) -> torch.Tensor:
    """The next centre (sec. 3.1, eq. 4): c <- m c + (1 - m) mean of the teacher's outputs over the
    global batch, all of its crops; under DDP the sum over the local rows is all-reduced and divided
    by the global row count (facebookresearch/dino@cc72fe9 main_dino.py DINOLoss.update_center).
    teacher: T tensors N x K (before centring); center: 1 x K. Returns a new tensor in float32."""
    rows = torch.cat([t.detach().float() for t in teacher])
    total = rows.sum(dim=0, keepdim=True)
    _, size = world()
    if size > 1:
        torch.distributed.all_reduce(total)
    return center.float() * momentum + total / (rows.shape[0] * size) * (1 - momentum)


def teacher_temp_at(epoch: int, warmup_temp: float, temp: float, warmup_epochs: int) -> float:
    """The teacher temperature of `epoch` (0-based): a linear warm-up from `warmup_temp` that
    reaches `temp` at epoch warmup_epochs - 1, then `temp` (the official schedule, main_dino.py
    DINOLoss: `np.linspace(warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs)` followed
    by `teacher_temp`)."""
    if epoch >= warmup_epochs:
        return float(temp)
    if warmup_epochs == 1:
        return float(warmup_temp)
    return float(warmup_temp + (temp - warmup_temp) * epoch / (warmup_epochs - 1))
