"""The attention kernel of timm's blocks chosen per call (nn/attention.py): explicit (two matmuls
and a softmax) for bf16 on a CPU, the fused F.scaled_dot_product_attention otherwise; on every
ViT a method builds (backbone, momentum teacher, MAE's decoder) and through deepcopy."""

import copy

import pytest
import torch
import torch.nn.functional as F

from ssl_bench.backbones import create_backbone
from ssl_bench.methods.dino import DINO
from ssl_bench.methods.mae import MAE
from ssl_bench.nn.attention import (
    attention_modules,
    explicit_attention_wanted,
    prefer_explicit_cpu_bf16_attention,
)


def tiny_vit(depth=2):
    return create_backbone("vit_tiny_patch16_224", img_size=16, patch_size=4, depth=depth)


def images(n=4):
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def sdpa_calls(monkeypatch) -> list:
    """Every call of F.scaled_dot_product_attention (timm's fused path) appended to the list."""
    calls, sdpa = [], F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(args[0].dtype)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    return calls


def test_the_condition():
    x = torch.ones(2, 3)
    assert not explicit_attention_wanted(x)
    assert explicit_attention_wanted(x.bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert explicit_attention_wanted(x)
        assert not explicit_attention_wanted(torch.ones(2, dtype=torch.long))
    with torch.autocast("cpu", dtype=torch.float16):
        assert not explicit_attention_wanted(x)


def test_bf16_on_cpu_runs_explicit_attention_and_float32_the_fused_kernel(monkeypatch):
    vit = tiny_vit().eval()
    assert prefer_explicit_cpu_bf16_attention(vit) == 2
    calls = sdpa_calls(monkeypatch)
    with torch.no_grad():
        full = vit(images())
        assert calls == [torch.float32] * 2  # float32: the fused kernel in both blocks
        assert all(m.fused_attn for m in attention_modules(vit))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = vit(images())
        assert len(calls) == 2  # bf16 autocast: explicit
        assert not any(m.fused_attn for m in attention_modules(vit))
        vit(images())  # float32 again: back to the fused kernel
    assert len(calls) == 4
    # the same function: explicit bf16 against the float32 fused result
    assert torch.allclose(low.float(), full, atol=0.1, rtol=0.05)


def test_explicit_and_fused_agree_in_bf16_values_and_gradients():
    vit = tiny_vit()
    prefer_explicit_cpu_bf16_attention(vit)
    ref = copy.deepcopy(vit)
    for m in ref.modules():  # the reference without the hook: always fused
        m._forward_pre_hooks.clear()
    x = images(8)
    outs, grads = [], []
    for net in (vit, ref):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = net(x)
        y.float().pow(2).sum().backward()
        outs.append(y.float())
        grads.append(net.blocks[0].attn.qkv.weight.grad.clone())
    assert not any(m.fused_attn for m in attention_modules(vit))
    assert all(m.fused_attn for m in attention_modules(ref))
    assert torch.allclose(outs[0], outs[1], atol=0.1, rtol=0.05)
    cos = F.cosine_similarity(grads[0].flatten(), grads[1].flatten(), dim=0)
    assert cos > 0.99


def test_the_hook_is_put_once_and_travels_with_deepcopy(monkeypatch):
    vit = tiny_vit()
    prefer_explicit_cpu_bf16_attention(vit)
    prefer_explicit_cpu_bf16_attention(vit)
    assert all(len(m._forward_pre_hooks) == 1 for m in attention_modules(vit))
    twin = copy.deepcopy(vit).eval()
    calls = sdpa_calls(monkeypatch)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        twin(images())
    assert calls == []
    assert prefer_explicit_cpu_bf16_attention(create_backbone("resnet18")) == 0


@pytest.mark.parametrize("method", ["mae", "dino"])
def test_every_attention_a_method_builds_gets_it(monkeypatch, method):
    """Backbone, DINO's teacher (a deepcopy), MAE's decoder: no fused call in a bf16 training
    step on a CPU; the same method in float32 makes them."""
    if method == "mae":
        m = MAE(tiny_vit(), decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4)
        views = [images()]
    else:
        m = DINO(tiny_vit(), proj_hidden_dim=32, proj_output_dim=16, num_prototypes=64)
        views = [images(), images()]
    modules = attention_modules(m)
    assert modules and all(len(a._forward_pre_hooks) == 1 for a in modules)
    calls = sdpa_calls(monkeypatch)
    labels, index = torch.zeros(4, dtype=torch.long), torch.arange(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        m.training_loss(views, labels, index)["loss"].backward()
    assert calls == []
    m.training_loss(views, labels, index)
    assert len(calls) >= len(modules)  # each attention module at least once


def test_setup_covers_attention_built_after_the_constructor(monkeypatch):
    """Lightning's setup() (before fit / validate / test / predict) adds the hook to attention a
    method built after SSLMethod.__init__ saw its backbone."""
    m = MAE(tiny_vit(), decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4)
    late = create_backbone("vit_tiny_patch16_224", img_size=16, patch_size=4, depth=1)
    m.extra = late
    assert all(len(a._forward_pre_hooks) == 0 for a in attention_modules(late))
    m.setup("fit")
    assert all(len(a._forward_pre_hooks) == 1 for a in attention_modules(m))
