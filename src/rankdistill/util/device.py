"""Where and in which precision to run: the device and dtype probes every stage asks, answered in one place."""

from __future__ import annotations

import os
from pathlib import Path

from rankdistill.errors import RankdistillError

DTYPES = ("auto", "float32", "bfloat16", "float16")


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 dot-product instructions (AVX512_BF16 or AMX), read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            return f"cuda:{local % torch.cuda.device_count()}"
        return "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise RankdistillError(f"device {device!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise RankdistillError(f"device {device!r} asked for, but torch sees no CUDA GPU; use device 'cpu'")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise RankdistillError(f"device {device!r}: torch sees {torch.cuda.device_count()} GPU(s), numbered from 0")
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto`` -> bfloat16 on GPUs that support it (else float16); on CPU see the comment below."""
    import torch

    if dtype not in DTYPES:
        raise RankdistillError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    # CPU: bf16 only where the CPU has native bf16 instructions: on the AVX512_BF16 benchmark machine it
    # was 1.76x faster than fp32 on DL20 with nDCG@10 within 0.002 (benchmarks/RESULTS.md); without
    # them bf16 matmuls are emulated and slower than fp32.
    return "bfloat16" if cpu_has_native_bf16() else "float32"


def resolve_bf16(flag: bool | str | None) -> bool:
    """Whether training autocasts to bf16. None: on with a bf16 GPU. "auto": also on a CPU with native bf16 dot
    products (AVX512_BF16 or AMX), where autocast trains faster than fp32 (benchmarks/RESULTS.md). True: the same,
    and an error on CPUs that would only emulate bf16."""
    import torch

    gpu = torch.cuda.is_available()
    if flag is None:
        return gpu and torch.cuda.is_bf16_supported()
    if flag == "auto":
        return torch.cuda.is_bf16_supported() if gpu else cpu_has_native_bf16()
    if flag and not gpu and not cpu_has_native_bf16():
        raise RankdistillError(
            "bf16: True needs a GPU or a CPU with native bf16 (avx512_bf16 / amx_bf16); set bf16 to 'auto' or False"
        )
    return bool(flag)


def default_threads() -> int:
    """CPU threads for this process: the usable cores, split between the processes of a torchrun job."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, cores // max(1, local))
