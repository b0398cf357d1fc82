"""Devices and arithmetic for the network: which can run here, and the default.

``--precision`` picks the arithmetic of the wav2vec 2.0 encoders: ``fp32`` (the
published model), ``bf16`` or ``fp16`` (CUDA only), run under autocast, which
casts each operation's inputs to 16 bits where PyTorch deems it safe (matrix
products, convolutions, attention) and keeps float32 where it does not. The
default is bf16 where the device has bf16 arithmetic in hardware, fp32
elsewhere: bf16 emulated in software was not measured to pay.
"""

from __future__ import annotations

import contextlib
import functools
import platform
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dualtalk_cli.options import precision_unknown

# /proc/cpuinfo flags of bf16 arithmetic: x86 (AVX512-BF16, AMX), Arm (BF16).
_X86_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}
_ARM_BF16_FLAGS = {"bf16"}


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def device_problem(device: str) -> str | None:
    """Why the network cannot run on ``device`` here, or None."""
    import torch

    try:
        kind = torch.device(device)
    except (RuntimeError, ValueError):
        kind = None
    if kind is None or kind.type not in ("cpu", "cuda"):
        return f"--device must be cpu, cuda or cuda:N, not {device!r}"
    if kind.type == "cuda":
        if not torch.cuda.is_available():
            build = "" if torch.version.cuda else " (this PyTorch is a CPU-only build)"
            return f"--device {device}: no CUDA device is available here{build}"
        count = torch.cuda.device_count()
        if kind.index is not None and kind.index >= count:
            return f"--device {device}: this machine has {count} CUDA device(s)"
    return None


def _cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux), or an empty set where unknown."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


@functools.cache
def native_bf16(device: str) -> bool:
    """Whether ``device`` has bf16 arithmetic in hardware: a CPU with
    AVX512-BF16 or AMX (x86) or BF16 (Arm), a CUDA GPU of compute capability 8+.
    (oneDNN's own check also says yes for plain AVX-512, which emulates it.)"""
    import torch

    kind = torch.device(device)
    if kind.type == "cuda":
        return torch.cuda.get_device_capability(kind)[0] >= 8
    arm = platform.machine().lower() in ("aarch64", "arm64")
    return bool(_cpu_flags() & (_ARM_BF16_FLAGS if arm else _X86_BF16_FLAGS))


def default_precision(device: str) -> str:
    """bf16 where the device computes it natively (1.7-1.8x faster than fp32
    on this project's CPUs; see README for what it changes), else fp32."""
    return "bf16" if native_bf16(device) else "fp32"


def precision_problem(precision: str, device: str) -> str | None:
    """Why ``precision`` cannot run on ``device``, or None."""
    if unknown := precision_unknown(precision):
        return unknown
    cuda = device.startswith("cuda")
    if precision == "fp16" and not cuda:
        return (
            f"--precision fp16 needs a CUDA device, not {device} "
            "(use bf16 or fp32 on a CPU)"
        )
    if precision == "bf16" and cuda and not native_bf16(device):
        return f"--precision bf16 is not supported by {device} (use fp16 or fp32)"
    return None


def dtype_of(precision: str) -> Any:
    import torch

    types = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    return types[precision]


@contextlib.contextmanager
def computing_in(precision: str, device: str) -> Iterator[None]:
    """Autocast to ``precision`` on ``device``; for fp32, float32 throughout,
    even inside a caller's autocast, and on CUDA without TF32."""
    import torch

    kind = torch.device(device).type
    if precision != "fp32":
        with torch.autocast(kind, dtype=dtype_of(precision)):
            yield
        return
    with torch.autocast(kind, enabled=False), _without_tf32(kind):
        yield


@contextlib.contextmanager
def _without_tf32(kind: str) -> Iterator[None]:
    """IEEE float32 matrix products, convolutions and LSTMs on CUDA, where
    PyTorch lets cuDNN use TF32 by default. (Process-wide settings, restored
    after; the CLI runs one engine per process.)"""
    import torch

    if kind != "cuda":
        yield
        return
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(matmul, "fp32_precision"):  # PyTorch 2.9 and later
        name, settings, exact = (
            "fp32_precision",
            [matmul, cudnn.conv, cudnn.rnn],
            "ieee",
        )
    else:
        name, settings, exact = "allow_tf32", [matmul, cudnn], False
    previous = [getattr(setting, name) for setting in settings]
    for setting in settings:
        setattr(setting, name, exact)
    try:
        yield
    finally:
        for setting, value in zip(settings, previous):
            setattr(setting, name, value)
