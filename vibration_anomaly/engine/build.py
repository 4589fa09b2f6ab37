"""Build a TensorRT engine from the ONNX model (full TensorRT only: JetPack ships it).

FP16 by default; INT8 from the QDQ model (explicit quantization: the scales
are in the model's QuantizeLinear/DequantizeLinear nodes, so no calibrator);
one optimisation profile over the batch axis; optionally version-compatible
(runs on later TensorRT versions, and on the lean runtime with
``exclude_lean_runtime``). Everything that can be checked without a GPU is
checked before the (minutes-long) build starts.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vibration_anomaly.engine.tensorrt.cuda import (
    INSTALL_HINT,
    NoCudaGpuError,
    TensorRTNotInstalledError,
    _make_logger,
    import_tensorrt,
    probe_cuda_driver,
)
from vibration_anomaly.errors import EngineError, InputError
from vibration_anomaly.fileio import check_regular_file, read_regular_file, write_bytes_atomic

log = logging.getLogger(__name__)

PRECISIONS = ("fp16", "int8", "fp32")

MAX_ONNX_BYTES = 2 * 1024**3
"""protobuf's own ceiling for one ONNX file (as ``engine.cli``): a larger file cannot be a model."""


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "fp16"
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 8
    version_compatible: bool = False
    exclude_lean_runtime: bool = False
    workspace_mib: int = 256
    input_name: str = "features"
    output_name: str = "score"

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise InputError(
                "engine build", "precision", f"expected one of {PRECISIONS}, got {self.precision!r}"
            )
        if not (1 <= self.min_batch <= self.opt_batch <= self.max_batch):
            raise InputError(
                "engine build",
                "batch profile",
                f"expected 1 <= min <= opt <= max, got {self.min_batch}, {self.opt_batch}, {self.max_batch}",
            )
        if self.exclude_lean_runtime and not self.version_compatible:
            raise InputError(
                "engine build", "exclude_lean_runtime", "only meaningful with --version-compatible"
            )
        if self.workspace_mib < 1:
            raise InputError("engine build", "workspace_mib", f"expected >= 1, got {self.workspace_mib}")


def _heartbeat(stop: threading.Event, started: float) -> None:
    while not stop.wait(10.0):
        print(
            f"engine build: still building ({time.monotonic() - started:.0f} s)...",
            file=sys.stderr,
            flush=True,
        )


def build_engine(
    onnx_path: Path, out_path: Path, options: BuildOptions | None = None, trt_module: Any = None
) -> Path:
    """Build and write the plan atomically; return its path."""
    opts = options or BuildOptions()
    opts.validate()
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    # From stat alone, before TensorRT is imported: a FIFO would hang the read, a 2 GB file be read whole.
    check_regular_file(onnx_path, "ONNX model", max_bytes=MAX_ONNX_BYTES)
    trt = trt_module
    if trt is None:
        try:
            trt, _ = import_tensorrt("full")
        except TensorRTNotInstalledError as exc:
            try:
                import_tensorrt("lean")
            except TensorRTNotInstalledError:
                raise exc from None
            raise TensorRTNotInstalledError(
                "only the TensorRT lean runtime is installed; it runs version-compatible engines but cannot "
                f"build them. Build on a machine with the full TensorRT (JetPack ships it): {INSTALL_HINT}"
            ) from None
    if getattr(trt, "Builder", None) is None:
        raise TensorRTNotInstalledError(
            f"this TensorRT module has no Builder (lean runtime?): {INSTALL_HINT}"
        )
    probe = probe_cuda_driver() if trt_module is None else None
    if probe is not None and not probe.ok:
        raise NoCudaGpuError(f"no CUDA GPU: {probe.reason}; TensorRT builds engines for the GPU it runs on")

    print(f"engine build: parsing {onnx_path}", file=sys.stderr, flush=True)
    logger = _make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(read_regular_file(onnx_path, "ONNX model", max_bytes=MAX_ONNX_BYTES)):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise InputError(str(onnx_path), "model", f"TensorRT's ONNX parser refused it: {errs}")
    inp = network.get_input(0)
    names_in = [network.get_input(i).name for i in range(network.num_inputs)]
    names_out = [network.get_output(i).name for i in range(network.num_outputs)]
    if names_in != [opts.input_name] or names_out != [opts.output_name]:
        raise InputError(
            str(onnx_path),
            "I/O names",
            f"model has inputs {names_in} and outputs {names_out}; expected [{opts.input_name!r}] -> [{opts.output_name!r}]",
        )
    shape = [int(inp.shape[i]) for i in range(len(inp.shape))]
    if len(shape) != 3 or shape[1] < 1 or shape[2] < 1:
        raise InputError(
            str(onnx_path), f"{opts.input_name} shape", f"expected [B, T, F] with fixed T, F; got {shape}"
        )
    if opts.precision == "int8":
        has_qdq = any(network.get_layer(i).type == trt.LayerType.QUANTIZE for i in range(network.num_layers))
        if not has_qdq:
            raise InputError(
                str(onnx_path),
                "precision int8",
                "the model has no QuantizeLinear nodes; INT8 needs the QDQ model (quantize it first)",
            )

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_mib * 1024 * 1024)
    if opts.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if opts.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    if opts.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        if opts.exclude_lean_runtime:
            config.set_flag(trt.BuilderFlag.EXCLUDE_LEAN_RUNTIME)
    t, f = shape[1], shape[2]
    profile = builder.create_optimization_profile()
    profile.set_shape(opts.input_name, (opts.min_batch, t, f), (opts.opt_batch, t, f), (opts.max_batch, t, f))
    config.add_optimization_profile(profile)

    print(
        f"engine build: building {opts.precision} engine, batch {opts.min_batch}..{opts.max_batch} "
        f"(this takes minutes)",
        file=sys.stderr,
        flush=True,
    )
    started = time.monotonic()
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(stop, started), daemon=True)
    beat.start()
    try:
        plan = builder.build_serialized_network(network, config)
    finally:
        stop.set()
    if plan is None:
        raise EngineError(
            f"engine build failed for {onnx_path}: {' | '.join(logger.errors) or 'see the TensorRT log'}"
        )
    write_plan(out_path, plan)
    print(
        f"engine build: wrote {out_path} ({out_path.stat().st_size} bytes) in {time.monotonic() - started:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    return out_path


def write_plan(out_path: Path | str, plan: Any) -> Path:
    """Write a serialized engine through a unique temp file beside ``out_path``, renamed over it on success.

    A failed write (disk full, Ctrl-C) leaves the old plan untouched and no temp
    file behind; a reader never sees half a plan.
    """
    write_bytes_atomic(out_path, memoryview(plan))
    return Path(out_path)
