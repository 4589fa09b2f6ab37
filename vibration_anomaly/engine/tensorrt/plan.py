"""TensorRT plan files: what can be refused without a GPU, and an engine's I/O against the model's.

``read_engine_file`` refuses a missing, oversized, ONNX, text, truncated or
all-zero file before any GPU call; ``deserialize_plan`` turns the bytes into an
engine, or a CorruptEngineError saying why TensorRT could not;
``engine_io_specs`` reads a deserialized engine's I/O tensors and ``check_io``
compares them with what the caller expects, naming both sides;
``inspect_plan`` is ``load``'s one look at the plan on the GPU (deserialize it in
a short-lived context, read its I/O and profile, keep nothing). The TensorRT
calls are typed against tensorrt-stubs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vibration_anomaly.engine.base import TensorSpec
from vibration_anomaly.engine.tensorrt.cuda import CudaApi, NoCudaGpuError, new_runtime
from vibration_anomaly.errors import EngineError

if TYPE_CHECKING:
    import tensorrt as trt

MIN_ENGINE_BYTES = 1024
"""Smaller than any real serialized engine (a plan carries a header, metadata and kernels)."""
MAX_ENGINE_BYTES = 2 * 1024**3


# --------------------------------------------------------------------------- errors


class CorruptEngineError(EngineError):
    """The file is not a serialized engine this TensorRT can deserialize."""


class EngineMismatchError(EngineError):
    """The engine's tensor names, modes, shapes or dtypes differ from what the caller expects."""


# --------------------------------------------------------------------------- plan-file checks


_ONNX_NEXT_FIELD_TAGS = frozenset((n << 3) | 2 for n in range(2, 9))


def read_engine_file(path: Path) -> bytes:
    """Read a plan file and refuse what can be recognised as not-an-engine without a GPU."""
    p = Path(path)
    if not p.is_file():
        raise CorruptEngineError(
            f"engine file {p}: not found (build one with `vibration-anomaly engine build`)"
        )
    size = p.stat().st_size
    if size > MAX_ENGINE_BYTES:
        raise CorruptEngineError(
            f"engine file {p}: {size} bytes, larger than {MAX_ENGINE_BYTES}; not our engine"
        )
    return check_engine_blob(p.read_bytes(), p)


def check_engine_blob(blob: bytes, p: Path) -> bytes:
    """Refuse plan bytes that can be recognised as not-an-engine without a GPU; ``p`` names them."""
    size = len(blob)
    if size > MAX_ENGINE_BYTES:
        raise CorruptEngineError(
            f"engine file {p}: {size} bytes, larger than {MAX_ENGINE_BYTES}; not our engine"
        )
    head = blob[:512]
    # An ONNX ModelProto as onnx writes it starts with field 1 (ir_version,
    # varint, 3..15) then one of fields 2..8 (strings / graph / opset_import).
    onnx_like = len(head) > 2 and head[0] == 0x08 and 3 <= head[1] <= 15 and head[2] in _ONNX_NEXT_FIELD_TAGS
    if p.suffix.lower() == ".onnx" or onnx_like:
        raise CorruptEngineError(
            f"engine file {p}: this is an ONNX model, not a TensorRT engine; "
            f"build one with `vibration-anomaly engine build {p} --out MODEL.engine`"
        )
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        hint = " (a Git LFS pointer?)" if head.startswith(b"version https://git-lfs") else ""
        raise CorruptEngineError(f"engine file {p}: is text, not a serialized engine{hint}: {head[:60]!r}")
    if size < MIN_ENGINE_BYTES:
        raise CorruptEngineError(
            f"engine file {p}: {size} bytes, too small for a serialized TensorRT engine "
            f"(at least {MIN_ENGINE_BYTES}); truncated or not an engine"
        )
    if not head.strip(b"\x00"):
        raise CorruptEngineError(f"engine file {p}: starts with zeros only (truncated or never written)")
    return blob


def _dtype_name(trt_mod: Any, dt: Any) -> str:
    try:
        return str(np.dtype(trt_mod.nptype(dt)))
    except (TypeError, KeyError, AttributeError):
        return str(dt).rsplit(".", 1)[-1].lower()


def engine_io_specs(
    trt_mod: Any, engine: trt.ICudaEngine
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Read the I/O tensors of a deserialized engine (name-based TensorRT 10 API); -1 dims become None."""
    ins: list[TensorSpec] = []
    outs: list[TensorSpec] = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        dims = engine.get_tensor_shape(name)
        shape = tuple(None if int(dims[k]) < 0 else int(dims[k]) for k in range(len(dims)))
        spec = TensorSpec(name, shape, _dtype_name(trt_mod, engine.get_tensor_dtype(name)))
        mode = engine.get_tensor_mode(name)
        if mode == trt_mod.TensorIOMode.INPUT:
            ins.append(spec)
        elif mode == trt_mod.TensorIOMode.OUTPUT:
            outs.append(spec)
    return tuple(ins), tuple(outs)


def check_io(
    got_in: tuple[TensorSpec, ...],
    got_out: tuple[TensorSpec, ...],
    want_in: tuple[TensorSpec, ...] | None,
    want_out: tuple[TensorSpec, ...] | None,
    where: str,
) -> None:
    """Refuse an engine whose I/O differs from what is expected, naming both sides."""

    def fmt(specs: tuple[TensorSpec, ...]) -> str:
        return ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in specs) or "(none)"

    for kind, got, want in (("inputs", got_in, want_in), ("outputs", got_out, want_out)):
        if want is None:
            continue
        problems: list[str] = []
        if [s.name for s in got] != [s.name for s in want]:
            problems.append("tensor names differ")
        else:
            for g, w in zip(got, want, strict=True):
                if len(g.shape) != len(w.shape) or any(
                    a is not None and b is not None and a != b for a, b in zip(g.shape, w.shape, strict=True)
                ):
                    problems.append(f"{g.name}: shape {list(g.shape)} vs {list(w.shape)}")
                if g.dtype != w.dtype:
                    problems.append(f"{g.name}: dtype {g.dtype} vs {w.dtype}")
        if problems:
            raise EngineMismatchError(
                f"{where}: engine {kind} do not match the model ({'; '.join(problems)}): "
                f"engine has {fmt(got)}, model expects {fmt(want)}. Rebuild the engine from this model."
            )


# --------------------------------------------------------------------------- deserialization


def deserialize_plan(runtime: trt.Runtime, logger: Any, blob: bytes, path: Path) -> trt.ICudaEngine:
    engine: trt.ICudaEngine | None = runtime.deserialize_cuda_engine(blob)
    del runtime  # an error's traceback must not keep it alive
    if engine is None:
        why = " | ".join(logger.errors) or "no reason given"
        hint = ""
        if "host code" in why.lower() or "version compat" in why.lower():
            hint = " (a version-compatible plan with an embedded lean runtime needs allow_host_code=True)"
        raise CorruptEngineError(
            f"engine file {path}: TensorRT could not deserialize it: {why}{hint}. "
            "Corrupt, or built by another TensorRT version / for another GPU: rebuild it on this machine."
        )
    return engine


def profile_max_batch(engine: trt.ICudaEngine, first: TensorSpec) -> int:
    """The batch the buffers are sized for: the profile's max for a dynamic batch axis."""
    if first.shape and first.shape[0] is None:
        return int(engine.get_tensor_profile_shape(first.name, 0)[2][0])
    return int(first.shape[0]) if first.shape and first.shape[0] else 1


def inspect_plan(
    trt_mod: Any, cuda: CudaApi, device: int, blob: bytes, path: Path, *, allow_host_code: bool
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...], int]:
    """Deserialize ``blob`` once, in a short-lived CUDA context, for its I/O and its profile's max batch.

    Returns the engine's inputs, its outputs and the batch the buffers would be
    sized for (``profile_max_batch``). Nothing TensorRT made outlives the call:
    the runtime and engine are dropped and the context is destroyed while still
    current on this thread. Raises ``NoCudaGpuError`` when the driver probe
    finds no GPU, ``EngineError`` (a subclass where the cause is known) for
    anything TensorRT fails on.
    """
    probe = cuda.probe()
    if not probe.ok:
        raise NoCudaGpuError(f"no CUDA GPU: {probe.reason}; the TensorRT backend needs one (use onnx)")
    ctx = cuda.create_context(device)
    held: dict[str, Any] = {}
    failure: BaseException | None = None
    try:
        held["runtime"], logger = new_runtime(trt_mod, allow_host_code)
        held["engine"] = deserialize_plan(held["runtime"], logger, blob, path)
        ins, outs = engine_io_specs(trt_mod, held["engine"])
        if not ins or not outs:
            raise EngineMismatchError(f"engine file {path}: needs at least one input and one output")
        profile_max = profile_max_batch(held["engine"], ins[0])
    except BaseException as exc:
        # Drop the traceback: its frames would keep TensorRT objects alive
        # past the context they belong to.
        failure = exc.with_traceback(None)
    finally:
        held.clear()
        # Still current on this thread: detach destroys and pops it.
        cuda.destroy_context(ctx)
        del ctx
    if failure is not None:
        if isinstance(failure, EngineError | KeyboardInterrupt | SystemExit):
            raise failure
        raise EngineError(f"engine file {path}: TensorRT failed while reading it: {failure!r}")
    return ins, outs, profile_max
