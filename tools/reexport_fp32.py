#!/usr/bin/env python3
"""Rebuild a model directory's FP32 twin (``model_fp32.onnx``) from its ``weights.npz``.

The FP32 twin is what ONNX Runtime on the robot's CPU runs, and every wake builds a session from it,
so its graph size is paid once per duty period. When the way it is written changes
(``model/cpu_twin.py``: the network with its constant parts folded in), this rebuilds the twin from
the *same* weights without retraining, checks it against PyTorch (``export.check_against_torch``) and
against the file it replaces on random and all-zero inputs, and updates ``model.json``'s ``files``
hash. The INT8 model (``model.onnx``, what TensorRT builds from, and the model id calibrations name)
is left as it is. After it, re-sign the example bundle (``tools/make_dev_bundle.py``: model.json's
sha256 changed).

    python tools/reexport_fp32.py [--model DIR] [--check]

``--check`` only reports the node counts and the largest difference; nothing is written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vibration_anomaly.bundle.files import atomic_write  # noqa: E402
from vibration_anomaly.model import DEFAULT_DIR, load_model_dir  # noqa: E402

MAX_DIFF = 1e-5  # relative to 1 + |score|: the same weights, so only float rounding may differ


def _scores(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(["score"], {"features": x})[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model", type=Path, default=DEFAULT_DIR, help="model directory (default: the shipped one)"
    )
    ap.add_argument("--check", action="store_true", help="compare only; write nothing")
    a = ap.parse_args()

    from vibration_anomaly.model.cpu_twin import build_cpu_twin, optimised_node_count
    from vibration_anomaly.model.export import check_against_torch
    from vibration_anomaly.model.transformer import load_trained

    files = load_model_dir(a.model)
    if not (files.directory / "weights.npz").is_file():
        print(f"{files.directory}: no weights.npz to export from", file=sys.stderr)
        return 2
    old = files.onnx_fp32.read_bytes() if files.onnx_fp32 is not None else None
    model = load_trained(files)  # weights.npz, read once: the twin is written from the same state dict
    new = build_cpu_twin({k: v.numpy() for k, v in model.state_dict().items()}, model.hparams())
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "model_fp32.onnx").write_bytes(new)
        torch_diff = check_against_torch(model, Path(tmp) / "model_fp32.onnx", atol=MAX_DIFF)
    rng = np.random.default_rng(0)
    t, f = model.n_tokens, model.n_features
    x = np.concatenate([rng.standard_normal((64, t, f)) * s for s in (0.5, 1.0, 3.0)] + [np.zeros((1, t, f))])
    x = x.astype(np.float32)
    nodes = {"new": optimised_node_count(new)}
    report: dict[str, object] = {"nodes_after_optimisation": nodes, "max_difference_to_torch": torch_diff}
    if old is not None:
        ref = _scores(old, x)
        diff = float(np.max(np.abs(_scores(new, x) - ref) / (1 + np.abs(ref))))
        nodes["previous"] = optimised_node_count(old)
        report["max_score_difference"] = diff
        if diff > MAX_DIFF:
            print(json.dumps(report), file=sys.stderr)
            print(
                f"the new export differs from the previous file by {diff:.3g} (> {MAX_DIFF:g})",
                file=sys.stderr,
            )
            return 1
    print(json.dumps(report))
    if a.check:
        return 0
    atomic_write(files.directory / "model_fp32.onnx", new)
    meta = dict(files.meta)
    meta["files"] = {**meta.get("files", {}), "model_fp32.onnx": hashlib.sha256(new).hexdigest()}
    atomic_write(files.directory / "model.json", json.dumps(meta, indent=1).encode())
    print(
        f"wrote {files.directory / 'model_fp32.onnx'} and model.json's files hash; now run tools/make_dev_bundle.py"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
