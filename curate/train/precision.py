"""Which arithmetic a neural learner trains in: fp32, or bf16 autocast where the hardware has it.

`train.precision = auto` picks bf16 on CUDA, and on a CPU only when it has native bf16 matrix units
(Intel AMX `amx_bf16`, or `avx512_bf16` on Intel and AMD): there a small conv net trains about 2.7x
(AMX) or 2.2x (AVX512-BF16, `benchmarks/bench_bf16_step.py`) faster under bf16 autocast. On other CPUs bf16 is emulated and slower than fp32, so auto stays fp32.
The choice is recorded in the `runs` table (`precision`).
"""

from __future__ import annotations

from pathlib import Path

import torch

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags as Linux reports them (empty where /proc/cpuinfo is absent)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def choose_precision(setting: str, device: torch.device, flags: set[str] | None = None) -> str:
    """ "bf16" or "fp32" for `train.precision = setting` ("auto", "fp32", "bf16") on `device`.

    flags : the CPU's feature flags (default: read from /proc/cpuinfo); only used for auto on a CPU.
    """
    if setting != "auto":
        return setting
    if device.type == "cuda":
        return "bf16"
    if device.type == "cpu":
        found = cpu_flags() if flags is None else flags
        return "bf16" if any(f in found for f in BF16_CPU_FLAGS) else "fp32"
    return "fp32"
