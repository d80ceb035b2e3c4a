"""What the local hardware does fast, for choosing a default precision (docs/training.md, "Speed").

bfloat16 matmuls are several times faster than float32 on CPUs with AMX or AVX512-BF16
(this project's benchmarks print the measured peaks: ``bench/train_throughput.py``), and
about the same or slower elsewhere, so ``auto`` precisions pick bfloat16 only where the
hardware has it natively.
"""

from __future__ import annotations

import functools
from pathlib import Path

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags the kernel reports (empty where /proc/cpuinfo does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def cpu_has_fast_bf16() -> bool:
    """True when the CPU multiplies bfloat16 natively (AMX or AVX512-BF16)."""
    return any(f in cpu_flags() for f in BF16_CPU_FLAGS)


def auto_dtype(device: str | None = None) -> str:
    """``bfloat16`` where this device computes it natively (CUDA with bf16, AMX/AVX512-BF16 CPUs),
    else ``float32``. ``device=None``: CUDA when there is one, else the CPU."""
    if device is None or device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
        if device is not None:
            return "float32"
    return "bfloat16" if cpu_has_fast_bf16() else "float32"
