"""A tiny training run: train -> ONNX export -> INT8 QDQ -> ONNX Runtime, deterministic with a seed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
from vibration_anomaly.model import load_model_dir

# Skip marks, never a module-level importorskip (launch_testing's plugin imports test modules at
# collection; a Skipped raised there skips the whole folder).
_MISSING = [m for m in ("torch", "onnx") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(_MISSING), reason=f"training needs {', '.join(_MISSING)} (the [train] extra)"
)


def _run(out: Path, seed: int) -> np.ndarray:
    from vibration_anomaly.model.train import TrainConfig, train  # needs torch: imported when the test runs

    cfg = TrainConfig(synth_machines=3, synth_windows=10, steps=12, batch=32, seed=seed, d_model=16, d_ff=32)
    train(cfg, out, progress=False)
    files = load_model_dir(out)
    eng = OnnxRuntimeEngine(intra_op_threads=1)
    eng.load(files.onnx)
    eng.wake()
    x = np.random.default_rng(0).standard_normal((5, 31, 4)).astype(np.float32)
    x[0] += 6.0
    y = eng.infer(x)
    eng.unload()
    return y


def test_tiny_training_is_deterministic_and_exports_qdq(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", seed=3)
    b = _run(tmp_path / "b", seed=3)
    assert a.shape == (5,) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert a[0] > a[1:].max()  # far-from-healthy input scores higher

    import onnx

    m = onnx.load(str(tmp_path / "a" / "model.onnx"))
    ops = {n.op_type for n in m.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) <= 17
    assert [i.name for i in m.graph.input] == ["features"]
    assert [o.name for o in m.graph.output] == ["score"]
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value") and [d.dim_value for d in dims[1:]] == [31, 4]
    meta = json.loads((tmp_path / "a" / "model.json").read_text())
    assert meta["frontend"]["levels"] == 4 and len(meta["feature_prior_std"]) == 31
    assert (tmp_path / "a" / "model.onnx").read_bytes() == (tmp_path / "b" / "model.onnx").read_bytes()
    # ONNX Runtime's file is the folded twin (model/cpu_twin.py); PyTorch's export only fed the quantizer
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "model.json",
        "model.onnx",
        "model_fp32.onnx",
        "weights.npz",
    ]
    assert onnx.load(str(tmp_path / "a" / "model_fp32.onnx")).graph.name == "band_transformer_cpu_twin"
    assert set(meta["files"]) == {"model.onnx", "model_fp32.onnx"}
