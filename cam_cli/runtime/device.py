"""The device and precision policy, decided once for inference and training alike.

- ``auto`` is the first CUDA device where there is one, else the CPU.
- Low precision is bf16 where the hardware has it (CUDA with bf16, CPUs with AVX512-BF16 or
  AMX), and fp16 on CUDA devices without bf16. fp16 needs gradient scaling when training; bf16
  has fp32's range and needs none.
- It is on by default where it pays: on CUDA, and on CPUs with native bf16. Without native bf16,
  CPU autocast emulates it and runs slower than fp32 (measured with
  scripts/benchmarks/bench_bbox.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util

import torch

from cam_cli.errors import ArgumentError

DEVICE_HELP = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str) -> torch.device:
    """``device`` -> a torch device that exists here, or an `ArgumentError` saying why not."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ArgumentError("device", f"{name!r}: not a device; use {DEVICE_HELP}") from None
    if device.type not in ("cpu", "cuda"):
        raise ArgumentError(
            "device", f"{name!r}: cam-cli runs on the CPU or CUDA; use {DEVICE_HELP}"
        )
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ArgumentError("device", f"{name}: no CUDA device is available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ArgumentError(
                "device", f"{name}: there are {torch.cuda.device_count()} CUDA devices"
            )
    return device


def native_low_precision(device: torch.device) -> bool:
    """Does low precision run faster than fp32 here (CUDA, or a CPU with native bf16)?"""
    if device.type == "cuda":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # noqa: SLF001 - no public probe
    except (AttributeError, RuntimeError):
        return False


def low_precision_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


class Precision:
    """Autocast to `low_precision_dtype` when enabled; ``enabled=None`` means: where it pays
    (`native_low_precision`). CAMs and boxes are computed in float32 either way."""

    def __init__(self, device: torch.device, enabled: bool | None = None) -> None:
        self.device = device
        self.enabled = native_low_precision(device) if enabled is None else bool(enabled)
        self.dtype = low_precision_dtype(device)

    @property
    def needs_grad_scaling(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 ones do not."""
        return self.enabled and self.dtype == torch.float16

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)


def keep_freed_memory() -> bool:
    """glibc: serve allocations from the heap (no mmap) and never trim it back.

    Every batch allocates the same large activations; with glibc's defaults each is a fresh
    mmap that the kernel must zero-fill page by page. Peak memory is unchanged (it does not grow
    with the number of images: see the RSS check of scripts/benchmarks/bench_bbox.py).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False
