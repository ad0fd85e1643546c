"""What the bench runs on, and the clocks and memory gauges it reads.

Every figure the bench writes carries the CPU model and whether the CPU computes bf16 natively
(AVX512-BF16 or AMX: the same test `precision=auto` uses, ssl_bench.training.cpu_supports_bf16) or
emulates it (bf16 autocast still runs there, converting to fp32 around every op, several times
slower than fp32 itself).
"""

from __future__ import annotations

import os
import platform
import resource
import time
from pathlib import Path

import torch

#: /proc/cpuinfo flags of native bf16 arithmetic
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def cpu_bf16_flags() -> list[str]:
    """The native-bf16 flags this CPU reports (empty: bf16 is emulated)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return [f for f in BF16_FLAGS if f in flags]


def cpu_bf16() -> str:
    """'native' (AVX512-BF16 or AMX) or 'emulated'."""
    from ssl_bench.training import cpu_supports_bf16

    return "native" if cpu_supports_bf16() else "emulated"


def gpu_name(device: torch.device | None = None) -> str | None:
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(device or 0)


def machine_info(device: torch.device | None = None) -> dict:
    """The machine facts every row and table carries."""
    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cpu_bf16": cpu_bf16(),
        "cpu_bf16_flags": cpu_bf16_flags(),
        "torch": torch.__version__,
    }
    if device is not None and device.type == "cuda":
        info["gpu"] = gpu_name(device)
        info["gpu_bf16"] = "native" if torch.cuda.is_bf16_supported() else "emulated"
    return info


def describe(info: dict) -> str:
    """One line: CPU model, cores, bf16 support (with the flag), torch, and the GPU if one is
    used."""
    flags = "/".join(info["cpu_bf16_flags"]) or "no avx512_bf16/amx_bf16"
    text = (
        f"{info['cpu']}, {info['cores']} cores, CPU bf16 {info['cpu_bf16']} ({flags}), "
        f"torch {info['torch']}"
    )
    if info.get("gpu"):
        text += f", GPU {info['gpu']} (bf16 {info['gpu_bf16']})"
    return text


def load_average() -> str:
    """The 1/5/15-minute load averages: how busy the machine was (other jobs share it)."""
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float:
    """CUDA max allocated since the last reset, or the process's peak RSS on a CPU (never reset:
    the largest of everything the process ran so far)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def matmul_peak_tflops(
    device: torch.device, dtype: torch.dtype, n: int | None = None, reps: int = 10
) -> float:
    """TFLOP/s of an n x n matmul of `dtype`: the peak a training step is compared with."""
    n = n or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12
