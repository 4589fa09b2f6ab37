#!/usr/bin/env python3
"""GPU check: exercise the TensorRT backend's CUDA side for real and measure asleep vs awake.

One command on a machine with an NVIDIA GPU (see docs/GPU.md for the packages)::

    python tools/gpu_check.py --seconds 5 --json-out gpu_check.json

It (1) creates a pycuda context of our own, device and pinned buffers and a
stream, copies data round-trip and checks it, then frees everything in the
backend's order; (2) where the full TensorRT can be had, builds a tiny engine
from a generated ONNX model (or uses --engine/--model) and runs
TensorRTEngine load/wake/infer/sleep cycles, checking results against ONNX
Runtime. For each phase it reports, from NVML, the GPU memory this process
holds (asleep must be 0: none of ours) and the board power averaged over
--seconds. Prints JSON; exits 0 when every check passed, 1 when one failed,
2 when it could not run here (no GPU / driver), saying why.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def say(msg: str) -> None:
    print(f"gpu_check: {msg}", file=sys.stderr, flush=True)


class Meter:
    """NVML power and per-process memory, or a note saying why there is none."""

    def __init__(self) -> None:
        from vibration_anomaly.power import PowerSourceUnavailable
        from vibration_anomaly.power.nvml import NvmlSource

        self.src: NvmlSource | None
        try:
            self.src = NvmlSource()
            self.note = self.src.source
        except PowerSourceUnavailable as exc:
            self.src, self.note = None, f"no NVML: {exc}"

    def memory(self) -> int | None:
        return self.src.process_gpu_memory() if self.src else None

    def power(self, seconds: float, busy: Any = None) -> dict[str, float] | None:
        if self.src is None:
            return None
        samples: list[float] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if busy is not None:
                busy()
            samples.append(self.src.read().watts)
            time.sleep(0.0 if busy is not None else 0.1)
        return {
            "mean_w": sum(samples) / len(samples),
            "min_w": min(samples),
            "max_w": max(samples),
            "n": len(samples),
        }

    def phase(self, name: str, seconds: float, busy: Any = None) -> dict[str, Any]:
        time.sleep(0.5)  # let the driver's per-process accounting settle
        out = {"phase": name, "process_gpu_memory_bytes": self.memory(), "power": self.power(seconds, busy)}
        say(f"{name}: memory {out['process_gpu_memory_bytes']} B, power {out['power']}")
        return out


def pycuda_check(meter: Meter, seconds: float, mib: int) -> dict[str, Any]:
    import numpy as np

    from vibration_anomaly.engine.tensorrt import PyCudaApi

    cuda = PyCudaApi()
    res: dict[str, Any] = {"phases": [meter.phase("before any CUDA work", seconds)]}
    ctx = cuda.create_context(0)
    res["device"] = cuda.device_name(0)
    n = mib * 1024 * 1024 // 4
    b: dict[str, Any] = {
        "dev_a": cuda.alloc(n * 4),
        "dev_b": cuda.alloc(n * 4),
        "host": cuda.alloc_pinned((n,), np.dtype(np.float32)),
        "back": cuda.alloc_pinned((n,), np.dtype(np.float32)),
        "stream": cuda.create_stream(),
    }
    b["host"][:] = np.arange(n, dtype=np.float32)
    cuda.htod_async(b["dev_a"], b["host"], b["stream"])
    cuda.dtoh_async(b["back"], b["dev_a"], b["stream"])
    cuda.synchronize(b["stream"])
    res["roundtrip_ok"] = bool(np.array_equal(b["host"], b["back"]))
    cuda.pop()
    res["phases"].append(meter.phase(f"awake idle (context, 2x{mib} MiB, stream)", seconds))

    def busy() -> None:
        cuda.push(ctx)
        try:
            for _ in range(4):
                cuda.htod_async(b["dev_b"], b["host"], b["stream"])
                cuda.dtoh_async(b["back"], b["dev_b"], b["stream"])
            cuda.synchronize(b["stream"])
        finally:
            cuda.pop()

    res["phases"].append(meter.phase("awake busy (copies)", seconds, busy))
    # The backend's sleep order: synchronize, buffers, stream, then the context.
    cuda.push(ctx)
    cuda.synchronize(b["stream"])
    cuda.free(b["dev_a"])
    cuda.free(b["dev_b"])
    cuda.free_pinned(b["host"])
    cuda.free_pinned(b["back"])
    cuda.destroy_stream(b["stream"])
    b.clear()
    cuda.destroy_context(ctx)  # while current: pycuda pops and destroys it on this thread
    res["phases"].append(meter.phase("asleep (all freed, context destroyed)", seconds))
    res["asleep_holds_none"] = res["phases"][-1]["process_gpu_memory_bytes"] in (0, None)
    return res


def tiny_model(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 64, 6])
    y = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])
    node = helper.make_node("ReduceMean", ["features"], ["score"], axes=[1, 2], keepdims=0)
    model = helper.make_model(
        helper.make_graph([node], "gpu_check", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    onnx.save(model, path)
    return path


def tensorrt_check(
    meter: Meter, seconds: float, engine: Path | None, model: Path | None, work: Path
) -> dict[str, Any]:
    import numpy as np

    from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
    from vibration_anomaly.engine.tensorrt import TensorRTEngine, import_tensorrt

    res: dict[str, Any] = {}
    trt, flavour = import_tensorrt("auto")
    res["tensorrt"] = f"{flavour} {getattr(trt, '__version__', '?')}"
    if model is None:
        model = tiny_model(work / "gpu_check.onnx")
    if engine is None:
        from vibration_anomaly.engine.build import BuildOptions, build_engine

        engine = build_engine(model, work / "gpu_check.engine", BuildOptions(precision="fp16", max_batch=4))
    ort = OnnxRuntimeEngine()
    ort.load(model)
    e = TensorRTEngine(ort.inputs, ort.outputs, max_idle_awake_s=60)
    res["phases"] = [meter.phase("TensorRT: before load", seconds)]
    e.load(engine)
    res["phases"].append(meter.phase("TensorRT: loaded (asleep)", seconds))
    shape = (2, *[d for d in ort.inputs[0].shape[1:]])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    wake_s = []
    for _ in range(3):
        t0 = time.perf_counter()
        e.wake()
        wake_s.append(time.perf_counter() - t0)
        e.infer(x)
        e.sleep()
    res["wake_seconds"] = wake_s
    e.wake()
    ort.wake()
    got, want = e.infer(x), ort.infer(x)
    res["max_abs_error_vs_onnxruntime"] = float(np.max(np.abs(got - want)))
    res["residency_awake"] = {"held": list(e.residency().held), "device_bytes": e.residency().device_bytes}
    res["phases"].append(meter.phase("TensorRT: awake idle", seconds))
    res["phases"].append(meter.phase("TensorRT: awake busy", seconds, busy=lambda: e.infer(x)))
    e.sleep()
    res["residency_asleep"] = {"held": list(e.residency().held), "asleep": e.residency().asleep}
    res["phases"].append(meter.phase("TensorRT: asleep after sleep()", seconds))
    e.unload()
    ort.unload()
    res["asleep_holds_none"] = res["phases"][-1]["process_gpu_memory_bytes"] in (0, None)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See docs/GPU.md.")
    ap.add_argument("--seconds", type=float, default=5.0, help="power sampling window per phase (default 5)")
    ap.add_argument("--mib", type=int, default=64, help="size of each pycuda test buffer in MiB (default 64)")
    ap.add_argument("--engine", type=Path, help="use this engine instead of building one (needs --model)")
    ap.add_argument("--model", type=Path, help="ONNX model the engine was built from")
    ap.add_argument("--skip-tensorrt", action="store_true", help="only the pycuda part")
    ap.add_argument("--json-out", type=Path, help="also write the JSON report here")
    args = ap.parse_args(argv)
    if args.engine is not None and args.model is None:
        ap.error("--engine needs --model (the engine is checked against it)")

    from vibration_anomaly.engine.tensorrt import probe_cuda_driver
    from vibration_anomaly.errors import VibrationAnomalyError

    report: dict[str, Any] = {"pid": os.getpid()}
    probe = probe_cuda_driver()
    report["cuda"] = probe.reason
    if not probe.ok:
        report["ran"] = False
        say(f"cannot run here: {probe.reason}. Run it on a machine with an NVIDIA GPU and driver.")
        print(json.dumps(report, indent=2))
        return 2
    meter = Meter()
    report["nvml"] = meter.note
    ok = True
    try:
        report["pycuda"] = pycuda_check(meter, args.seconds, args.mib)
        ok &= report["pycuda"]["roundtrip_ok"] and report["pycuda"]["asleep_holds_none"]
    except (ImportError, VibrationAnomalyError) as exc:
        report["pycuda"] = {"error": f"{type(exc).__name__}: {exc}"}
        ok = False
    if not args.skip_tensorrt:
        try:
            with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
                report["tensorrt"] = tensorrt_check(meter, args.seconds, args.engine, args.model, Path(tmp))
            t = report["tensorrt"]
            ok &= t["asleep_holds_none"] and t["max_abs_error_vs_onnxruntime"] < 1e-2
        except (ImportError, VibrationAnomalyError) as exc:
            report["tensorrt"] = {"skipped_or_failed": f"{type(exc).__name__}: {exc}"}
    report["ran"] = True
    report["ok"] = bool(ok)
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
