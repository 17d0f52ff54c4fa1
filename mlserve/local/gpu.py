"""GPU pinning for local model servers: one device set per version, via CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field

from mlserve.errors import ToolError

_GPU_LINE = re.compile(r"^GPU (\d+):")


def list_gpus() -> list[int]:
    """Indices of the GPUs ``nvidia-smi -L`` lists; empty when there is no driver or GPU."""
    if shutil.which("nvidia-smi") is None:
        return []
    from mlserve.tools import run

    try:
        out = run(["nvidia-smi", "-L"], timeout=20, check=False)
    except ToolError:
        return []
    if out.returncode != 0:
        return []
    return [int(m.group(1)) for line in out.stdout.splitlines() if (m := _GPU_LINE.match(line.strip()))]


@dataclass(frozen=True)
class GpuPlan:
    """Devices per process name, and what a person should be told about it."""

    devices: dict[str, list[int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def env_for(self, name: str) -> dict[str, str]:
        if name not in self.devices:
            return {}
        return {"CUDA_VISIBLE_DEVICES": ",".join(str(d) for d in self.devices[name])}


def assign(demands: Mapping[str, int], gpus: list[int]) -> GpuPlan:
    """Round-robin devices to processes by how many each asks for.

    Devices are handed out in order and only reused once every device is taken
    (oversubscription: a warning, the processes then share). No GPU at all: one
    note, and every process runs on the CPU (no CUDA_VISIBLE_DEVICES).
    """
    wanted = {name: n for name, n in demands.items() if n > 0}
    if not wanted:
        return GpuPlan()
    if not gpus:
        return GpuPlan(notes=["no GPU found: running on the CPU"])
    devices: dict[str, list[int]] = {}
    cursor = 0
    total = sum(wanted.values())
    for name in sorted(wanted):
        n = wanted[name]
        picked: list[int] = []
        for _ in range(min(n, len(gpus))):
            picked.append(gpus[cursor % len(gpus)])
            cursor += 1
        devices[name] = picked
    warnings = []
    if total > len(gpus):
        warnings.append(
            f"{total} GPU(s) requested across {len(wanted)} process(es) but {len(gpus)} found: some devices are shared"
        )
    short = [f"{name} ({wanted[name]} asked, {len(gpus)} exist)" for name in sorted(wanted) if wanted[name] > len(gpus)]
    if short:
        warnings.append("more GPUs asked than exist: " + ", ".join(short))
    return GpuPlan(devices=devices, warnings=warnings)
