"""Export the trained band transformer to ONNX (opset 17, TensorRT 8.6/10 on JetPack can parse it).

Contract: input ``features`` float32 [B, T, F] (B dynamic), output ``score``
float32 [B]; the anomaly score is computed inside the graph.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

OPSET = 17


def export_onnx(model: object, path: str | Path, opset: int = OPSET) -> Path:
    """Write the model as ONNX and check that ONNX Runtime reproduces PyTorch on random input."""
    import onnx
    import torch

    m = model  # BandTransformer
    m.eval()  # type: ignore[attr-defined]
    t, f = m.n_tokens, m.n_features  # type: ignore[attr-defined]
    dummy = torch.zeros(2, t, f)
    buf = io.BytesIO()
    torch.onnx.export(
        m,  # type: ignore[arg-type]
        (dummy,),
        buf,  # type: ignore[arg-type]  # a file-like object works; the stubs name only paths
        input_names=["features"],
        output_names=["score"],
        dynamic_axes={"features": {0: "batch"}, "score": {0: "batch"}},
        opset_version=opset,
        do_constant_folding=True,
        dynamo=False,
    )
    proto = onnx.load_from_string(buf.getvalue())
    proto.producer_name = "vibration_anomaly"
    onnx.checker.check_model(proto)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out))
    check_against_torch(m, out)
    return out


def check_against_torch(model: object, path: Path, atol: float = 1e-3) -> float:
    import onnxruntime as ort
    import torch

    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, model.n_tokens, model.n_features)).astype(np.float32)  # type: ignore[attr-defined]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()  # type: ignore[operator]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["score"], {"features": x})[0]
    err = float(np.max(np.abs(got - ref) / (1 + np.abs(ref))))
    if err > atol:
        raise RuntimeError(f"ONNX export differs from PyTorch: max rel err {err:.2e}")
    return err
