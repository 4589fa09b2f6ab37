"""Backend choice: ``auto`` takes TensorRT only when it can really run, else ONNX Runtime.

The reason for the choice is returned (and logged) so it can be shown in
diagnostics and metrics: a robot silently running on the CPU because its
engine did not match is a power bug nobody would otherwise see.
"""

from __future__ import annotations

import logging
from pathlib import Path

from vibration_anomaly.engine.base import Engine
from vibration_anomaly.errors import EngineError, InputError

log = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("auto", "tensorrt", "onnx")


def select_engine(
    backend: str,
    model_path: Path,
    engine_path: Path | None = None,
    *,
    intra_op_threads: int = 1,
    trt_runtime: str = "auto",
    max_idle_awake_s: float | None = None,
    model_bytes: bytes | None = None,
    engine_bytes: bytes | None = None,
    cpu_model: tuple[Path, bytes] | None = None,
) -> tuple[Engine, str]:
    """Return a LOADED engine and the reason it was chosen.

    The ONNX model is always loaded first: it is the contract (I/O names and
    shapes) a TensorRT engine is checked against, and the fallback. ``tensorrt``
    raises when TensorRT cannot be used; ``auto`` falls back and says why.

    ``max_idle_awake_s`` bounds how long a TensorRT engine may stay awake
    without an inference before its watchdog forces it to sleep; it should
    follow the deployment's cadence (e.g. the signed bundle's period), since a
    fixed bound is either too short for a slow period or too long for a fast
    one. ``None`` keeps ``DEFAULT_MAX_IDLE_AWAKE_S``. ONNX Runtime ignores it.

    ``model_bytes`` / ``engine_bytes``: the contents of ``model_path`` /
    ``engine_path`` already read (and hashed against the signed bundle) by the
    caller; they are loaded as given and the files are not opened again, so
    what was checked is what runs. The paths then only name them in messages.

    ``cpu_model``: (path, checked bytes) of the model ONNX Runtime runs instead of ``model_path``'s,
    the deploy model's FP32 twin: on the CPU it is the faster of the two (``bench/bench_model.py``:
    session from optimised bytes, inference), while TensorRT builds its INT8 engine from the QDQ
    deploy model. Same inputs and outputs, so it also serves as the contract a plan is checked against.
    """
    from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
    from vibration_anomaly.engine.tensorrt import (
        DEFAULT_MAX_IDLE_AWAKE_S,
        TensorRTEngine,
        check_max_idle_awake_s,
        import_tensorrt,
        probe_cuda_driver,
    )

    if backend not in BACKENDS:
        raise InputError("backend", "name", f"expected one of {', '.join(BACKENDS)}, got {backend!r}")
    idle_bound = (
        DEFAULT_MAX_IDLE_AWAKE_S
        if max_idle_awake_s is None
        else check_max_idle_awake_s(max_idle_awake_s, "select_engine")
    )
    onnx_engine = OnnxRuntimeEngine(intra_op_threads=intra_op_threads)
    if cpu_model is not None:
        onnx_engine.load_bytes(cpu_model[1], cpu_model[0])
    elif model_bytes is not None:
        onnx_engine.load_bytes(model_bytes, model_path)
    else:
        onnx_engine.load(Path(model_path))
    if backend == "onnx":
        return onnx_engine, _done("onnx as configured: ONNX Runtime CPU")

    def use_trt() -> tuple[Engine, str]:
        if engine_path is None:
            raise InputError(
                "backend tensorrt", "engine_path", "no engine file given (build one with `engine build`)"
            )
        trt_engine = TensorRTEngine(
            onnx_engine.inputs, onnx_engine.outputs, runtime=trt_runtime, max_idle_awake_s=idle_bound
        )
        if engine_bytes is not None:
            trt_engine.load_bytes(engine_bytes, engine_path)
        else:
            trt_engine.load(Path(engine_path))
        res = trt_engine.residency()
        return trt_engine, f"TensorRT {res.details.get('runtime', '')} on {res.details.get('device', 'GPU')}"

    if backend == "tensorrt":
        engine, why = use_trt()
        onnx_engine.unload()
        return engine, _done(f"tensorrt as configured: {why}")

    # auto: cheapest checks first, each one a reason to stay on the CPU.
    cause = ""
    if engine_path is None:
        cause = "no TensorRT engine file configured"
    elif engine_bytes is None and not Path(engine_path).is_file():
        cause = f"engine file {engine_path} not found"
    if not cause:
        try:
            import_tensorrt(trt_runtime)
        except EngineError:
            cause = f"TensorRT is not installed (runtime {trt_runtime})"
    if not cause:
        probe = probe_cuda_driver()
        if not probe.ok:
            cause = f"no CUDA GPU ({probe.reason})"
    if not cause:
        try:
            engine, why = use_trt()
        except EngineError as exc:
            reason = f"auto: TensorRT refused ({exc}), using ONNX Runtime CPU"
            log.warning("engine backend %s", reason)
            return onnx_engine, reason
        onnx_engine.unload()
        return engine, _done(f"auto: {why}")
    return onnx_engine, _done(f"auto: {cause}, using ONNX Runtime CPU")


REASON_CODES: tuple[str, ...] = ("configured", "gpu", "no_engine", "no_tensorrt", "no_gpu", "refused")


def reason_code(reason: str) -> str:
    """The reason ``select_engine`` gave, folded to a metric label: one of ``REASON_CODES``.

    The full sentence goes to logs and diagnostics; a label must stay
    low-cardinality, so fleet dashboards can count robots per cause.
    """
    if not reason.startswith("auto:"):
        return "configured"
    if "TensorRT refused" in reason:
        return "refused"
    if "no TensorRT engine file" in reason or "not found" in reason:
        return "no_engine"
    if "TensorRT is not installed" in reason:
        return "no_tensorrt"
    if "no CUDA GPU" in reason:
        return "no_gpu"
    return "gpu"


def _done(reason: str) -> str:
    log.info("engine backend %s", reason)
    return reason
