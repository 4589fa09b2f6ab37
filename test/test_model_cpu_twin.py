"""The FP32 twin ONNX Runtime runs (model/cpu_twin.py) computes BandTransformer's score, in fewer nodes."""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import numpy as np
import pytest
from eval_testkit import onnx_scores

from vibration_anomaly.model import load_default_model

# Skip marks, never a module-level importorskip (test_suite_collects.py says why).
needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("onnx") is None, reason="needs onnx (the [train] extra)"
)
needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("onnx") is None,
    reason="needs torch and onnx (the [train] extra)",
)


def _inputs(t: int, f: int) -> np.ndarray:
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.standard_normal((8, t, f)) * s for s in (0.5, 2.0, 6.0)] + [np.zeros((1, t, f))])
    return x.astype(np.float32)


@needs_onnx
def test_shipped_twin_is_what_cpu_twin_writes_from_the_shipped_weights() -> None:
    import onnx

    from vibration_anomaly.model.cpu_twin import build_cpu_twin

    files = load_default_model()
    assert files.onnx_fp32 is not None
    with np.load(files.directory / "weights.npz") as wz:
        built = build_cpu_twin({k: wz[k] for k in wz.files}, files.meta["model"])
    hp = files.meta["model"]
    x = _inputs(hp["n_tokens"], hp["n_features"])
    shipped = onnx_scores(files.onnx_fp32, x)
    np.testing.assert_allclose(onnx_scores(built, x), shipped, rtol=1e-6, atol=1e-6)
    assert shipped[-1] == pytest.approx(0.0, abs=1e-6)  # all-zero features: a calibrated-healthy window
    proto = onnx.load(str(files.onnx_fp32))
    assert proto.graph.name == "band_transformer_cpu_twin"
    # What an older ONNX Runtime on a robot can load: IR 8, standard operators of opset 17, no contrib ops.
    assert proto.ir_version <= 8
    assert {n.domain for n in proto.graph.node} <= {"", "ai.onnx"}
    assert max(o.version for o in proto.opset_import) <= 17


@needs_torch
@pytest.mark.parametrize("residual", ["excess", "two-sided"])
@pytest.mark.parametrize(
    "arch",
    [
        {},
        {
            "n_tokens": 15,
            "n_features": 3,
            "d_model": 16,
            "n_heads": 2,
            "n_layers": 3,
            "d_ff": 24,
            "n_masks": 3,
        },
        {"n_layers": 1, "clip": 3.0, "feature_weights": [0.0, 1.0, 2.0, 1.0]},
    ],
    ids=["default", "three-blocks", "one-block"],
)
def test_twin_computes_the_torch_score(residual: str, arch: dict[str, object]) -> None:
    import torch

    from vibration_anomaly.model.cpu_twin import build_cpu_twin
    from vibration_anomaly.model.transformer import BandTransformer

    torch.manual_seed(1)
    m = BandTransformer(residual=residual, **arch).eval()  # type: ignore[arg-type]
    with torch.no_grad():  # weights and res_std far from their initial values, so nothing folds to a no-op
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        m.res_std.uniform_(0.3, 2.0)
        x = _inputs(m.n_tokens, m.n_features)
        ref = m(torch.from_numpy(x)).numpy()
    got = onnx_scores(build_cpu_twin({k: v.numpy() for k, v in m.state_dict().items()}, m.hparams()), x)
    assert ref.max() > 1.0
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-5)


@needs_torch
def test_twin_has_a_quarter_fewer_nodes_than_the_pytorch_export() -> None:
    from vibration_anomaly.model.cpu_twin import optimised_node_count
    from vibration_anomaly.model.export import export_onnx
    from vibration_anomaly.model.transformer import load_trained

    files = load_default_model()
    assert files.onnx_fp32 is not None
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_onnx(load_trained(files), Path(tmp) / "e.onnx").read_bytes()
    twin, baseline = optimised_node_count(files.onnx_fp32.read_bytes()), optimised_node_count(exported)
    assert twin <= 0.75 * baseline, (twin, baseline)


def test_bad_residual_is_named() -> None:
    from vibration_anomaly.model.cpu_twin import build_cpu_twin

    files = load_default_model()
    with np.load(files.directory / "weights.npz") as wz:
        w = {k: wz[k] for k in wz.files}
    with pytest.raises(ValueError, match="model.residual"):
        build_cpu_twin(w, {**files.meta["model"], "residual": "both"})
