from pathlib import Path

import numpy as np
import pytest

from vibration_anomaly.engine.base import Engine, EngineState
from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
from vibration_anomaly.errors import EngineError, EngineStateError, InputError


def test_lifecycle_and_residency(tiny_onnx_model: Path) -> None:
    e = OnnxRuntimeEngine()
    assert isinstance(e, Engine)
    assert e.residency().held == ()
    e.load(tiny_onnx_model)
    r = e.residency()
    assert r.state is EngineState.LOADED and r.held == ("model_bytes",) and r.asleep
    assert e.inputs[0].name == "features" and e.inputs[0].shape == (None, 4, 3)
    assert e.outputs[0].name == "score"
    e.wake()
    assert "session" in e.residency().held and not e.residency().asleep
    x = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    np.testing.assert_allclose(e.infer(x), x.reshape(2, -1).mean(1), rtol=1e-6)
    e.sleep()
    assert e.residency().asleep and e.residency().awake_resources() == ()
    e.sleep()  # idempotent
    e.wake()
    e.unload()
    assert e.state is EngineState.UNLOADED and e.residency().held == ()


def test_wrong_state_calls_are_clear_errors(tiny_onnx_model: Path) -> None:
    e = OnnxRuntimeEngine()
    with pytest.raises(EngineStateError, match="before load"):
        e.wake()
    e.load(tiny_onnx_model)
    with pytest.raises(EngineStateError, match="wake"):
        e.infer(np.zeros((1, 4, 3), np.float32))
    with pytest.raises(EngineStateError, match="unload first"):
        e.load(tiny_onnx_model)


def test_bad_features_are_input_errors(tiny_onnx_model: Path) -> None:
    e = OnnxRuntimeEngine()
    e.load(tiny_onnx_model)
    e.wake()
    with pytest.raises(InputError, match="shape"):
        e.infer(np.zeros((1, 5, 3), np.float32))
    bad = np.zeros((1, 4, 3), np.float32)
    bad[0, 1, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        e.infer(bad)
    assert e.infer(np.ones((1, 4, 3), np.float32))[0] == pytest.approx(1.0)  # still usable


def test_missing_and_corrupt_model_files(tmp_path: Path) -> None:
    e = OnnxRuntimeEngine()
    with pytest.raises(EngineError, match="not found"):
        e.load(tmp_path / "nope.onnx")
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 50)
    with pytest.raises(EngineError, match="corrupt.onnx: not a loadable ONNX model"):
        e.load(bad)
    assert e.state is EngineState.UNLOADED
