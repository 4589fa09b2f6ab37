"""Shared by the TensorRT tests (not a test file): make this process behave as if TensorRT were absent."""

from __future__ import annotations

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
