"""Mixed precision: `precision: fp32 | bf16 | auto` (trainables.config) runs forward passes under `torch.autocast`.

Weights, gradients and optimizer state stay fp32; only the forward computation (losses in the English, meta and
few-shot stages, and evaluation) runs in bf16, with autocast's usual fp32 islands (softmax, cross-entropy, norms).
Backward passes run outside autocast, as PyTorch recommends. `auto` picks bf16 where the hardware runs it natively
(a CUDA device with bf16; a CPU with AVX512-BF16 or AMX) and fp32 elsewhere: emulated bf16 is slower than fp32.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """Return the CPU's feature flags (avx2, avx512_bf16, amx_bf16, ...) from /proc/cpuinfo; empty off Linux."""
    try:
        return frozenset(Path("/proc/cpuinfo").read_text().split())
    except OSError:  # not Linux: no flags, so bf16 is taken as emulated (slower than fp32)
        return frozenset()


def cpu_has_native_bf16() -> bool:
    """Return True when this CPU runs bf16 natively (AVX512-BF16 or AMX), read from /proc/cpuinfo on Linux."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def native_bf16(device: torch.device) -> bool:
    """Return True when `device` runs bf16 natively."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Return the dtype forward passes run in for `precision` on `device` (None: plain fp32)."""
    if precision == "bf16" or (precision == "auto" and native_bf16(device)):
        return torch.bfloat16
    return None


def autocast(dtype: torch.dtype | None, device: torch.device | str) -> ContextManager:
    """Return a context that runs its forward passes in `dtype` on `device` (none for None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def with_autocast(loss_fn: Callable[..., torch.Tensor], dtype: torch.dtype | None,
                  device: torch.device | str) -> Callable[..., torch.Tensor]:
    """Return `loss_fn` computing its forward pass (and loss) under autocast in `dtype`; `loss_fn` itself for None."""
    if dtype is None:
        return loss_fn

    @functools.wraps(loss_fn)
    def loss(*args: Any, **kwargs: Any) -> torch.Tensor:
        with autocast(dtype, device):
            return loss_fn(*args, **kwargs).float()

    return loss
