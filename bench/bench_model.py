"""Bench: per-window inference (ORT FP32 / INT8 vs PyTorch eager FP32) and one duty cycle's awake cost.

All on one CPU core (affinity pinned to one core where the OS allows, 1 thread
everywhere), in one run, so the ratios are like for like. Prints JSON.

PyTorch eager runs the same model: the architecture from model.json and the
trained weights from ``weights.npz`` shipped beside the ONNX files (the run
checks that PyTorch and ONNX Runtime FP32 give the same scores). The graph is
one pass over the batch with a block attention mask (see
``model/transformer.py``), which is what makes ONNX Runtime's per-node
advantage show.

``twin_ratio_to_pytorch_export``: wake + infer + sleep of the FP32 twin ONNX Runtime runs
(``model/cpu_twin.py``: the network with its constants folded) over the same on PyTorch's own ONNX
export of the same weights, interleaved cycle by cycle.

Usage: .venv/bin/python bench/bench_model.py [--model DIR] [--runs 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np


def _median_ms(fn, runs: int) -> float:
    for _ in range(min(20, runs)):
        fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", help="model dir (default: shipped)")
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--channels", type=int, default=3, help="batch = channels of one window (robot IMU: 3)")
    args = ap.parse_args()
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        pinned = True
    except (AttributeError, OSError):
        pinned = False

    import onnxruntime as ort
    import torch

    from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
    from vibration_anomaly.model import load_default_model, load_model_dir
    from vibration_anomaly.model.transformer import load_trained

    torch.set_num_threads(1)
    files = load_model_dir(args.model) if args.model else load_default_model()
    hp = files.meta["model"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.channels, hp["n_tokens"], hp["n_features"])).astype(np.float32)

    res: dict[str, object] = {"pinned_one_core": pinned, "batch": args.channels, "runs": args.runs}
    tm = load_trained(files)
    wpath = files.directory / "weights.npz"
    res["torch_weights"] = "trained (weights.npz)" if wpath.is_file() else "random init (no weights.npz)"
    xt = torch.from_numpy(x)

    def torch_run() -> None:
        with torch.inference_mode():
            tm(xt)

    res["torch_eager_fp32_ms"] = _median_ms(torch_run, args.runs)

    engines = {}
    for name, path in (("ort_fp32", files.onnx_fp32), ("ort_int8", files.onnx_int8)):
        if path is None:
            continue
        eng = OnnxRuntimeEngine(intra_op_threads=1)
        eng.load(path)
        eng.wake()
        res[f"{name}_ms"] = _median_ms(lambda e=eng: e.infer(x), args.runs)
        engines[name] = eng
    if "ort_fp32" in engines and wpath.is_file():
        with torch.inference_mode():
            ref = tm(xt).numpy()
        res["torch_vs_ort_fp32_max_abs_diff"] = float(np.max(np.abs(engines["ort_fp32"].infer(x) - ref)))
    best = min(v for k, v in res.items() if k.startswith("ort_") and k.endswith("_ms"))
    res["speedup_best_ort_vs_torch"] = res["torch_eager_fp32_ms"] / best

    # Duty cycle on the ORT backend: load once (configure), then wake + infer + sleep per cycle.
    for name, eng in engines.items():
        eng.sleep()

        def cycle(e=eng) -> None:
            e.wake()
            e.infer(x)
            e.sleep()

        res[f"duty_cycle_{name}_ms"] = _median_ms(cycle, max(30, args.runs // 5))
        eng.unload()

    # The FP32 twin (model/cpu_twin.py, what ONNX Runtime runs) against PyTorch's own export of the same
    # weights, wake + infer + sleep, the two interleaved cycle by cycle so the machine's drift hits both.
    if files.onnx_fp32 is not None and wpath.is_file():
        import tempfile

        from vibration_anomaly.model.export import export_onnx

        with tempfile.TemporaryDirectory() as tmp:
            exported = export_onnx(tm, os.path.join(tmp, "exported.onnx"))
            pair = {"twin": files.onnx_fp32, "export": exported}
            times: dict[str, list[float]] = {k: [] for k in pair}
            engs = {}
            for k, path in pair.items():
                engs[k] = OnnxRuntimeEngine(intra_op_threads=1)
                engs[k].load(path)
            for _ in range(max(60, args.runs // 2)):
                for k, e in engs.items():
                    t0 = time.perf_counter()
                    e.wake()
                    e.infer(x)
                    e.sleep()
                    times[k].append(time.perf_counter() - t0)
        twin_ms, export_ms = (statistics.median(times[k][10:]) * 1e3 for k in ("twin", "export"))
        res["duty_cycle_ort_fp32_twin_ms"] = twin_ms
        res["duty_cycle_ort_fp32_pytorch_export_ms"] = export_ms
        res["twin_ratio_to_pytorch_export"] = twin_ms / export_ms

    def naive() -> None:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        s = ort.InferenceSession(str(files.onnx_int8), so, providers=["CPUExecutionProvider"])
        s.run(["score"], {"features": x})

    res["naive_session_plus_infer_int8_ms"] = _median_ms(naive, max(20, args.runs // 10))
    fr = files.frontend()
    w = rng.standard_normal((5000, 3))
    res["frontend_5s_1khz_3axis_ms"] = _median_ms(lambda: fr(w, 1000.0), max(30, args.runs // 5))
    res["targets"] = {
        "speedup_best_ort_vs_torch >= 2": res["speedup_best_ort_vs_torch"] >= 2,
        "duty_cycle_ms < 15": min(v for k, v in res.items() if k.startswith("duty_cycle")) < 15,
    }
    print(
        json.dumps(
            {k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()}, separators=(",", ":")
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
