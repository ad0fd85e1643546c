"""The attention kernel of timm's Transformer blocks, chosen per call for the device and dtype.

timm's `Attention` (and every timm attention module with a `fused_attn` flag) computes
softmax(q k^T / sqrt(d)) v either with `F.scaled_dot_product_attention` (fused) or as two matmuls
and a softmax (explicit). On a CPU in bf16 the fused kernel is the slow one. Forward + backward,
batch 128: 65 tokens, 16 heads of 32 (MAE's decoder at 32 px) 239 ms fused against 53 ms explicit;
17 tokens, 3 heads of 64 (ViT-Tiny's encoder in MAE) 20 against 4 ms; 197 tokens (batch 32) 125
against 51 ms (BENCHMARKS.md, "Attention on a CPU"). In float32 the fused kernel wins (102 against
180 ms at 65 tokens), and on a GPU the fused (flash) kernels do. The explicit path is also what the
MAE, DINO and MoCo v3 papers' code ran under autocast (timm's attention before PyTorch had a fused
kernel).

`prefer_explicit_cpu_bf16_attention(module)` puts a forward pre-hook on every such attention module
inside `module`: before each call it sets `fused_attn` to False when the call runs in bf16 on a CPU
(bf16 input, or CPU autocast to bf16) and back to True otherwise. The flag is only written when it
changes (torch.compile with this hook is untested: `compile` is off by default). The hook travels
with deepcopy (momentum teachers, the evaluation copy) and is not part of any state dict."""

from __future__ import annotations

import torch
from torch import nn

#: set on a module once the hook is on it: a second call leaves it alone
_MARK = "_ssl_bench_attention_kernel"


def explicit_attention_wanted(x: torch.Tensor) -> bool:
    """Whether an attention call on `x` runs in bf16 on a CPU: a bf16 tensor, or a float one under
    CPU autocast to bf16."""
    if x.device.type != "cpu":
        return False
    if x.dtype == torch.bfloat16:
        return True
    return (
        x.is_floating_point()
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
    )


def _choose_kernel(module: nn.Module, args: tuple, kwargs: dict):
    x = args[0] if args else kwargs.get("x")
    if isinstance(x, torch.Tensor):
        fused = not explicit_attention_wanted(x)
        if module.fused_attn != fused:
            module.fused_attn = fused
    return None


def attention_modules(module: nn.Module) -> list[nn.Module]:
    """The submodules of `module` (itself included) with timm's boolean `fused_attn` flag."""
    return [m for m in module.modules() if isinstance(getattr(m, "fused_attn", None), bool)]


def prefer_explicit_cpu_bf16_attention(module: nn.Module) -> int:
    """Puts the kernel-choosing pre-hook on every timm attention module in `module` that has none
    yet; returns how many it found in all (0 for a network without attention, e.g. a ResNet)."""
    found = attention_modules(module)
    for m in found:
        if not getattr(m, _MARK, False):
            m.register_forward_pre_hook(_choose_kernel, with_kwargs=True)
            setattr(m, _MARK, True)
    return len(found)
