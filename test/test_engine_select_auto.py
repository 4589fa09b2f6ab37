"""Backend choice: `auto` falls back to ONNX Runtime with a reason; explicit choices fail loudly."""

from __future__ import annotations

import logging
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from trt_testkit import hide_tensorrt, patch_gpu_edge

from vibration_anomaly.engine.base import EngineState
from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
from vibration_anomaly.engine.select import select_engine
from vibration_anomaly.engine.tensorrt import CudaProbe, probe_cuda_driver
from vibration_anomaly.errors import EngineError, InputError

NO_GPU = not probe_cuda_driver().ok


def check_runs_on_onnx(engine: Any) -> None:
    assert isinstance(engine, OnnxRuntimeEngine) and engine.state is EngineState.LOADED
    engine.wake()
    x = np.arange(12, dtype=np.float32).reshape(1, 4, 3)
    assert engine.infer(x)[0] == pytest.approx(x.mean())
    engine.unload()


def test_onnx_as_configured(tiny_onnx_model: Path) -> None:
    engine, reason = select_engine("onnx", tiny_onnx_model)
    assert reason.startswith("onnx as configured")
    check_runs_on_onnx(engine)


def test_auto_without_engine_file(tiny_onnx_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="vibration_anomaly.engine.select"):
        engine, reason = select_engine("auto", tiny_onnx_model)
    assert reason == "auto: no TensorRT engine file configured, using ONNX Runtime CPU"
    assert reason in caplog.text
    check_runs_on_onnx(engine)


def test_auto_with_missing_engine_file(tiny_onnx_model: Path, tmp_path: Path) -> None:
    engine, reason = select_engine("auto", tiny_onnx_model, tmp_path / "nope.engine")
    assert "not found" in reason and reason.endswith("using ONNX Runtime CPU")
    check_runs_on_onnx(engine)


def test_auto_when_tensorrt_is_missing(
    tiny_onnx_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = tmp_path / "m.engine"
    plan.write_bytes(bytes(range(256)) * 8)
    hide_tensorrt(monkeypatch)
    engine, reason = select_engine("auto", tiny_onnx_model, plan)
    assert reason == "auto: TensorRT is not installed (runtime auto), using ONNX Runtime CPU"
    check_runs_on_onnx(engine)


@pytest.mark.skipif(not NO_GPU, reason="this machine has a CUDA GPU")
def test_auto_without_gpu_uses_onnx_and_says_why(tiny_onnx_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorrt_lean")
    plan = tmp_path / "m.engine"
    plan.write_bytes(bytes(range(256)) * 8)
    engine, reason = select_engine("auto", tiny_onnx_model, plan, trt_runtime="lean")
    assert reason.startswith("auto: no CUDA GPU (") and reason.endswith("using ONNX Runtime CPU")
    check_runs_on_onnx(engine)


@pytest.mark.skipif(not NO_GPU, reason="this machine has a CUDA GPU")
def test_tensorrt_as_configured_fails_loudly_without_gpu(tiny_onnx_model: Path, tmp_path: Path) -> None:
    plan = tmp_path / "m.engine"
    plan.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(EngineError, match="no CUDA GPU|TensorRT is not installed"):
        select_engine("tensorrt", tiny_onnx_model, plan, trt_runtime="lean")


class _FakeCudaDriverError(Exception):
    """Stands in for ``pycuda._driver.Error`` (pycuda needs the CUDA toolkit to install, so it is absent here)."""


def gpu_whose_context_cannot_be_made(monkeypatch: pytest.MonkeyPatch, why: str) -> None:
    """The GPU edge: TensorRT imports, the driver sees a GPU, and pycuda's make_context raises like pycuda does."""

    class Device:
        def __init__(self, ordinal: int) -> None:
            self.ordinal = ordinal

        @staticmethod
        def count() -> int:
            return 1

        def make_context(self, flags: int = 0) -> Any:
            raise _FakeCudaDriverError(why)

    drv = types.ModuleType("pycuda.driver")
    drv.Error, drv.Device, drv.init = _FakeCudaDriverError, Device, lambda flags=0: None  # type: ignore[attr-defined]
    pkg = types.ModuleType("pycuda")
    pkg.driver = drv  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    trt = types.SimpleNamespace(Runtime=object, __version__="10.fake")
    patch_gpu_edge(
        monkeypatch,
        import_tensorrt=lambda runtime="auto": (trt, "full"),
        probe_cuda_driver=lambda: CudaProbe(True, "1 fake GPU", 1, 12040),
    )


@pytest.mark.parametrize(
    "why",
    [
        "cuCtxCreate failed: out of memory",
        "cuCtxCreate failed: CUDA-capable device(s) is/are busy or unavailable",
    ],
)
def test_auto_falls_back_when_the_cuda_context_cannot_be_made(
    tiny_onnx_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, why: str
) -> None:
    from vibration_anomaly.engine.select import reason_code
    from vibration_anomaly.engine.tensorrt import NoCudaGpuError

    plan = tmp_path / "m.engine"
    plan.write_bytes(bytes(range(256)) * 8)
    gpu_whose_context_cannot_be_made(monkeypatch, why)
    engine, reason = select_engine("auto", tiny_onnx_model, plan)
    assert reason.startswith("auto: TensorRT refused (no usable CUDA GPU #0: creating a context failed")
    assert why in reason and reason.endswith("using ONNX Runtime CPU") and reason_code(reason) == "refused"
    check_runs_on_onnx(engine)
    with pytest.raises(NoCudaGpuError, match="creating a context failed"):  # as configured: loud
        select_engine("tensorrt", tiny_onnx_model, plan)


def test_bad_choices_are_input_errors(tiny_onnx_model: Path) -> None:
    with pytest.raises(InputError, match="auto, tensorrt, onnx"):
        select_engine("cuda", tiny_onnx_model)
    with pytest.raises(InputError, match="engine_path"):
        select_engine("tensorrt", tiny_onnx_model)


def test_engine_cli_help_and_errors(
    tiny_onnx_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from vibration_anomaly.engine import cli

    parser = argparse.ArgumentParser(prog="vibration-anomaly")
    cli.register(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["engine", "build", "--help"])
    assert "--version-compatible" in capsys.readouterr().out
    args = parser.parse_args(["engine", "build", str(tiny_onnx_model), "--out", str(tmp_path / "x.engine")])
    if args.func(args) == 1:  # no full TensorRT / GPU here
        err = capsys.readouterr().err
        assert "TensorRT" in err or "no CUDA GPU" in err
    args = parser.parse_args(["engine", "info", str(tiny_onnx_model), "--model", str(tiny_onnx_model)])
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert "ONNX model, not a TensorRT engine" in out and "auto_choice: auto:" in out


def test_reason_codes_fold_every_auto_reason_to_a_small_label_set() -> None:
    from vibration_anomaly.engine.select import REASON_CODES, reason_code

    cases = {
        "onnx as configured: ONNX Runtime CPU": "configured",
        "tensorrt as configured: TensorRT 10 on Orin": "configured",
        "auto: no TensorRT engine file configured, using ONNX Runtime CPU": "no_engine",
        "auto: engine file /x.engine not found, using ONNX Runtime CPU": "no_engine",
        "auto: TensorRT is not installed (runtime auto), using ONNX Runtime CPU": "no_tensorrt",
        "auto: no CUDA GPU (cuInit failed: 100), using ONNX Runtime CPU": "no_gpu",
        "auto: TensorRT refused (engine I/O mismatch), using ONNX Runtime CPU": "refused",
        "auto: TensorRT 10 on Orin": "gpu",
    }
    for reason, code in cases.items():
        assert reason_code(reason) == code, reason
        assert code in REASON_CODES
