"""NVML (``pynvml`` from the nvidia-ml-py package) for discrete GPUs.

Board power comes from ``nvmlDeviceGetPowerUsage`` (milliwatts). The GPU
memory this process holds comes from the per-process lists
(``nvmlDeviceGetComputeRunningProcesses`` / ``...GraphicsRunningProcesses``,
``usedGpuMemory`` in bytes, ``None`` where the driver cannot say): that is how
a check proves a sleeping engine holds nothing on the GPU. Jetsons have no
NVML power; use the INA3221 source there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

from vibration_anomaly.power.base import PowerReadError, PowerReading, PowerSourceUnavailable, monotonic


def _import_pynvml() -> ModuleType:
    try:
        import pynvml
    except ImportError as exc:
        raise PowerSourceUnavailable(
            "NVML bindings missing: pip install nvidia-ml-py (the [gpu] extra)"
        ) from exc
    return pynvml


class NvmlSource:
    """PowerSource over one NVIDIA GPU's NVML board power sensor.

    ``nvml`` is the pynvml module; it is a parameter only so that recorded NVML
    answers can stand in for a GPU in tests.
    """

    name = "nvml"
    modelled = False

    def __init__(
        self,
        device_index: int = 0,
        nvml: Any | None = None,
        clock: Callable[[], float] = monotonic,
        pid: int | None = None,
    ) -> None:
        self._nvml = nvml if nvml is not None else _import_pynvml()
        self._clock = clock
        self._pid = os.getpid() if pid is None else pid
        nv = self._nvml
        try:
            nv.nvmlInit()
        except nv.NVMLError as exc:
            raise PowerSourceUnavailable(
                f"NVML unavailable: {exc} (no NVIDIA driver on this machine?)"
            ) from exc
        self._open = True
        try:
            count = nv.nvmlDeviceGetCount()
            if device_index >= count:
                raise PowerSourceUnavailable(f"NVML: GPU index {device_index} requested, {count} present")
            self._handle = nv.nvmlDeviceGetHandleByIndex(device_index)
            name = nv.nvmlDeviceGetName(self._handle)
            self.device_name = name.decode() if isinstance(name, bytes) else str(name)
            try:
                nv.nvmlDeviceGetPowerUsage(self._handle)
            except nv.NVMLError as exc:
                raise PowerSourceUnavailable(f"NVML: {self.device_name} has no power reading: {exc}") from exc
        except BaseException:
            self.close()
            raise
        self.source = f"nvml {self.device_name} #{device_index}"

    def process_gpu_memory(self, pid: int | None = None) -> int | None:
        """Bytes of GPU memory held by ``pid`` (this process by default).

        0 when the process is not on the GPU at all; None when the driver lists
        the process but cannot say how much it holds.
        """
        want = self._pid if pid is None else pid
        nv = self._nvml
        found = False
        total = 0
        for fn_name in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            fn = getattr(nv, fn_name, None)
            if fn is None:
                continue
            try:
                procs = fn(self._handle)
            except nv.NVMLError as exc:
                raise PowerReadError(self.source, fn_name, str(exc)) from exc
            for p in procs:
                if int(p.pid) != want:
                    continue
                found = True
                if p.usedGpuMemory is None:
                    return None
                total = max(total, int(p.usedGpuMemory))  # the same context can be listed by both calls
        return total if found else 0

    def read(self) -> PowerReading:
        nv = self._nvml
        t = self._clock()
        try:
            mw = nv.nvmlDeviceGetPowerUsage(self._handle)
        except nv.NVMLError as exc:
            raise PowerReadError(self.source, "nvmlDeviceGetPowerUsage", str(exc)) from exc
        if not isinstance(mw, int) or mw < 0:
            raise PowerReadError(self.source, "nvmlDeviceGetPowerUsage", f"expected milliwatts, got {mw!r}")
        watts = mw / 1000.0
        details: dict[str, float] = {}
        problems: tuple[str, ...] = ()
        try:
            held = self.process_gpu_memory()
        except PowerReadError as exc:
            problems = (f"process memory: {exc.problem}",)
        else:
            if held is not None:
                details["process_gpu_memory_bytes"] = float(held)
        return PowerReading(watts, {"board": watts}, self.source, False, t, problems, "board", details)

    def close(self) -> None:
        if getattr(self, "_open", False):
            self._open = False
            with contextlib.suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()
