"""The shipped PyTorch weights are the ONNX model (what bench/bench_model.py times), and INT8 tracks FP32."""

from __future__ import annotations

import numpy as np
import pytest
from eval_testkit import onnx_scores

from vibration_anomaly.model import load_default_model


def test_weights_npz_reproduces_onnx_fp32() -> None:
    torch = pytest.importorskip("torch")
    from vibration_anomaly.model.transformer import load_trained

    files = load_default_model()
    hp = files.meta["model"]
    assert (files.directory / "weights.npz").is_file()
    m = load_trained(files)
    assert (files.directory / "weights.npz").stat().st_size < 200_000
    x = np.random.default_rng(0).standard_normal((6, hp["n_tokens"], hp["n_features"])).astype(np.float32)
    x[0] += 5.0
    with torch.inference_mode():
        ref = m(torch.from_numpy(x)).numpy()
    got = onnx_scores(files.onnx_fp32, x)
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-4)
    q = onnx_scores(files.onnx, x)
    assert np.argmax(q) == 0 and np.corrcoef(q, got)[0, 1] > 0.99
