"""Shared by the TensorRT tests (not a test file): TensorRT absent, or the GPU edge replaced where it is looked up."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import pytest


class _HideTensorRT:
    """An import hook at the edge: this process behaves as if TensorRT were not installed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.split(".")[0] in ("tensorrt", "tensorrt_lean"):
            raise ImportError(f"No module named {name!r}")


def hide_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    for mod in [m for m in sys.modules if m.split(".")[0] in ("tensorrt", "tensorrt_lean")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(sys, "meta_path", [_HideTensorRT(), *sys.meta_path])


# Where each piece of the GPU edge is looked up at call time, so a test replaces it there:
# select_engine imports from the package when called; TensorRTEngine and PyCudaApi use
# the names bound in their own modules.
_LOOKED_UP_IN: dict[str, tuple[str, ...]] = {
    # select_engine's "is TensorRT installed?" check; TensorRTEngine.load
    "import_tensorrt": ("vibration_anomaly.engine.tensorrt", "vibration_anomaly.engine.tensorrt.engine"),
    # select_engine's "is there a GPU?" check; PyCudaApi.probe
    "probe_cuda_driver": ("vibration_anomaly.engine.tensorrt", "vibration_anomaly.engine.tensorrt.cuda"),
    # TensorRTEngine() built without cuda=
    "PyCudaApi": ("vibration_anomaly.engine.tensorrt.engine",),
}


def patch_gpu_edge(monkeypatch: pytest.MonkeyPatch, **replacements: Any) -> None:
    """Replace ``import_tensorrt``, ``probe_cuda_driver`` or ``PyCudaApi`` everywhere the backend looks it up."""
    for name, value in replacements.items():
        for module in _LOOKED_UP_IN[name]:
            monkeypatch.setattr(importlib.import_module(module), name, value)
