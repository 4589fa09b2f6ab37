"""TensorRT backend (TensorRT 10+ API) over pycuda with an explicit CUDA context.

Why it is shaped this way (the fleet drained because a stray
``execute_async_v3`` without a matching synchronize/free kept the GPU hot):

* ``load`` validates the plan file before touching the GPU, then deserializes
  it once inside a short-lived context only to check its I/O against the model
  contract (``plan.inspect_plan``), and keeps nothing but the plan bytes (host
  memory).
* ``wake`` creates, inside a context of our own (``make_context``; never
  ``pycuda.autoinit``, never the primary context that would outlive us), the
  runtime, the engine, the execution context, device and pinned buffers and a
  stream. A deserialized engine holds its weights in device memory and the
  runtime binds to the context it was made in, so both live only while awake.
* ``infer`` copies in, executes, copies out and synchronizes before it returns,
  on every path, including errors.
* ``sleep`` makes the engine's context current on the calling thread,
  synchronizes, then frees in dependency order: execution context, device
  buffers, pinned buffers, engine, runtime, stream, and last the context,
  destroyed while still current. ``sleep`` may run on another thread than
  ``wake`` (the watchdog's, or the main thread at exit), and pycuda silently
  leaks a context detached from a thread where it is neither current nor
  created. A failing step does not stop the later ones.
* A watchdog forces ``sleep`` when the engine has been awake and idle past a
  bound, and reports it; the next ``infer`` raises the diagnostic.

The module imports without TensorRT, pycuda or a GPU; each missing piece, and
every pycuda error, is a clear EngineError subclass raised by ``load``/``wake``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vibration_anomaly.engine.base import EngineState, Residency, TensorSpec
from vibration_anomaly.engine.tensorrt.awake import _Awake, teardown
from vibration_anomaly.engine.tensorrt.cuda import (
    CudaApi,
    PyCudaApi,
    import_tensorrt,
    new_runtime,
)
from vibration_anomaly.engine.tensorrt.plan import (
    check_engine_blob,
    check_io,
    deserialize_plan,
    inspect_plan,
    read_engine_file,
)
from vibration_anomaly.engine.tensorrt.watchdog import (
    _AWAKE_ENGINES,
    DEFAULT_MAX_IDLE_AWAKE_S,
    AwakeWatchdog,
    WatchdogDiagnostic,
    WatchdogForcedSleep,
    check_max_idle_awake_s,
)
from vibration_anomaly.errors import EngineError, EngineStateError, InputError

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)


class TensorRTEngine:
    """Engine protocol over a TensorRT plan file; see the module docstring for the lifecycle."""

    name = "tensorrt"

    def __init__(
        self,
        expected_inputs: tuple[TensorSpec, ...] | None = None,
        expected_outputs: tuple[TensorSpec, ...] | None = None,
        *,
        runtime: str = "auto",
        device: int = 0,
        max_batch: int | None = None,
        allow_host_code: bool = False,
        max_idle_awake_s: float = DEFAULT_MAX_IDLE_AWAKE_S,
        on_diagnostic: Callable[[WatchdogDiagnostic], None] | None = None,
        cuda: CudaApi | None = None,
        trt_module: Any | None = None,
        clock: Callable[[], float] = time.monotonic,
        watchdog_thread: bool = True,
    ) -> None:
        self._expected = (expected_inputs, expected_outputs)
        self._runtime_kind = runtime
        self._device = device
        self._max_batch_override = max_batch
        self._allow_host_code = allow_host_code
        self._max_idle = check_max_idle_awake_s(max_idle_awake_s, "TensorRTEngine")
        self._on_diagnostic = on_diagnostic
        self._cuda: CudaApi = cuda if cuda is not None else PyCudaApi()
        self._trt_given = trt_module
        self._clock = clock
        self._watchdog_thread = watchdog_thread
        self._lock = threading.RLock()
        self._state = EngineState.UNLOADED
        self._trt: Any = None
        self._flavour = ""
        self._plan: bytes | None = None
        self._path: Path | None = None
        self._inputs: tuple[TensorSpec, ...] = ()
        self._outputs: tuple[TensorSpec, ...] = ()
        self._max_batch = 0
        self._awake: _Awake | None = None
        self._watchdog: AwakeWatchdog | None = None
        self._woke_at = 0.0
        self._inferences = 0
        self._forced: WatchdogDiagnostic | None = None
        self._device_label = ""
        self._sleep_errors: list[str] = []

    # ----- protocol properties
    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    @property
    def last_watchdog(self) -> WatchdogDiagnostic | None:
        return self._forced

    # ----- load / unload
    def load(self, model_path: Path) -> None:
        """Validate the plan (file, TensorRT, GPU, deserialization, I/O) and keep only its bytes."""
        path = Path(model_path)
        self._load(lambda: read_engine_file(path), path)

    def load_bytes(self, plan: bytes, source: Path | str = "<plan bytes>") -> None:
        """As :meth:`load`, from plan bytes already read (and hashed) by the caller: no second read of the file."""
        path = Path(source)
        self._load(lambda: check_engine_blob(bytes(plan), path), path)

    def _load(self, read: Callable[[], bytes], path: Path) -> None:
        with self._lock:
            if self._state is not EngineState.UNLOADED:
                raise EngineStateError(f"{self.name}: load() while {self._state.value}; unload first")
            blob = read()
            if self._trt_given is not None:
                trt_mod, flavour = self._trt_given, "given"
            else:
                trt_mod, flavour = import_tensorrt(self._runtime_kind)
            ins, outs, profile_max = inspect_plan(
                trt_mod, self._cuda, self._device, blob, path, allow_host_code=self._allow_host_code
            )
            check_io(ins, outs, self._expected[0], self._expected[1], f"engine file {path}")
            self._device_label = self._cuda.device_name(self._device)
            self._trt, self._flavour = trt_mod, flavour
            self._plan, self._path = blob, path
            self._inputs, self._outputs = ins, outs
            self._max_batch = self._max_batch_override or profile_max
            self._state = EngineState.LOADED
            log.info(
                "loaded TensorRT engine %s (%d bytes, %s runtime %s, max batch %d)",
                path,
                len(blob),
                flavour,
                getattr(trt_mod, "__version__", "?"),
                self._max_batch,
            )

    def unload(self) -> None:
        with self._lock:
            self.sleep()
            self._plan = None
            self._path = None
            self._trt = None
            self._state = EngineState.UNLOADED

    # ----- wake / infer / sleep
    def wake(self) -> None:
        with self._lock:
            if self._state is EngineState.AWAKE:
                return
            if self._state is EngineState.UNLOADED or self._plan is None:
                raise EngineStateError(f"{self.name}: wake() before load()")
            trt_mod = self._trt
            ctx = self._cuda.create_context(self._device)
            aw = _Awake(ctx=ctx, dev_bufs={}, host_bufs={})
            self._awake = aw
            try:
                self._build_awake(aw, trt_mod)
            except BaseException as exc:
                teardown(aw, self._cuda, self.name, current=True)
                self._awake = None
                raise exc.with_traceback(None) from None
            self._cuda.pop()
            self._state = EngineState.AWAKE
            self._forced = None
            self._woke_at = self._clock()
            self._inferences = 0
            _AWAKE_ENGINES.add(self)
            wd: AwakeWatchdog | None = None

            def expire() -> None:
                self._watchdog_expired(wd)

            wd = AwakeWatchdog(self._max_idle, expire, self._clock, self._watchdog_thread)
            self._watchdog = wd

    def _build_awake(self, aw: _Awake, trt_mod: Any) -> None:
        """Create everything inference needs, storing each object in ``aw`` at once so teardown sees it."""
        assert self._plan is not None and aw.dev_bufs is not None and aw.host_bufs is not None
        aw.runtime, logger = new_runtime(trt_mod, self._allow_host_code)
        aw.engine = deserialize_plan(aw.runtime, logger, self._plan, self._path or Path("?"))
        engine: trt.ICudaEngine = aw.engine
        aw.exec_ctx = engine.create_execution_context()
        del engine
        if aw.exec_ctx is None:
            raise EngineError(f"{self.name}: could not create an execution context: {logger.errors}")
        aw.scratch_bytes = int(getattr(aw.engine, "device_memory_size", 0) or 0)
        aw.stream = self._cuda.create_stream()
        for spec in self._inputs + self._outputs:
            shape = self._max_shape(spec)
            dtype = np.dtype(spec.dtype)
            nbytes = int(np.prod(shape)) * dtype.itemsize
            aw.dev_bufs[spec.name] = self._cuda.alloc(nbytes)
            aw.dev_bytes += nbytes
            aw.host_bufs[spec.name] = self._cuda.alloc_pinned(shape, dtype)
            exec_ctx: trt.IExecutionContext = aw.exec_ctx
            ok = exec_ctx.set_tensor_address(spec.name, self._cuda.device_ptr(aw.dev_bufs[spec.name]))
            del exec_ctx
            if not ok:
                raise EngineError(f"{self.name}: set_tensor_address({spec.name!r}) refused")

    def _max_shape(self, spec: TensorSpec) -> tuple[int, ...]:
        return tuple(self._max_batch if d is None else d for d in spec.shape) or (1,)

    def infer(self, features: np.ndarray) -> np.ndarray:
        with self._lock:
            if self._state is not EngineState.AWAKE or self._awake is None:
                if self._forced is not None:
                    raise WatchdogForcedSleep(self._forced.message)
                raise EngineStateError(f"{self.name}: infer() while {self._state.value}; wake() first")
            x = self._check_features(features)
            aw = self._awake
            assert aw.exec_ctx is not None and aw.dev_bufs is not None and aw.host_bufs is not None
            exec_ctx: trt.IExecutionContext = aw.exec_ctx
            spec_in, spec_out = self._inputs[0], self._outputs[0]
            self._cuda.push(aw.ctx)
            try:
                if not exec_ctx.set_input_shape(spec_in.name, x.shape):
                    raise InputError(
                        "features", "shape", f"{x.shape} is outside the engine's optimisation profile"
                    )
                host_in = aw.host_bufs[spec_in.name]
                flat_in = host_in.reshape(-1)[: x.size]
                flat_in[:] = x.reshape(-1)
                self._cuda.htod_async(aw.dev_bufs[spec_in.name], flat_in, aw.stream)
                ok = exec_ctx.execute_async_v3(self._cuda.stream_handle(aw.stream))
                dims = exec_ctx.get_tensor_shape(spec_out.name)
                out_shape = tuple(int(dims[k]) for k in range(len(dims)))
                n_out = int(np.prod(out_shape)) if out_shape else 1
                flat_out = aw.host_bufs[spec_out.name].reshape(-1)[:n_out]
                self._cuda.dtoh_async(flat_out, aw.dev_bufs[spec_out.name], aw.stream)
            finally:
                # Whatever happened above, nothing of ours is left in flight.
                try:
                    self._cuda.synchronize(aw.stream)
                finally:
                    self._cuda.pop()
            if not ok:
                raise EngineError(f"{self.name}: execute_async_v3 reported failure (see the TensorRT log)")
            self._inferences += 1
            if self._watchdog is not None:
                self._watchdog.touch()
            return flat_out.reshape(out_shape).copy()

    def _check_features(self, features: np.ndarray) -> np.ndarray:
        spec = self._inputs[0]
        x = np.asarray(features)
        if x.dtype != np.dtype(spec.dtype):
            if not np.issubdtype(x.dtype, np.floating):
                raise InputError("features", "dtype", f"got {x.dtype}, engine expects {spec.dtype}")
            x = x.astype(spec.dtype)
        if x.ndim != len(spec.shape) or any(
            w is not None and g != w for g, w in zip(x.shape, spec.shape, strict=True)
        ):
            raise InputError(
                "features", "shape", f"got {x.shape}, engine expects {spec.shape} (None = batch)"
            )
        if x.shape and (x.shape[0] < 1 or x.shape[0] > self._max_batch):
            raise InputError(
                "features", "batch", f"got {x.shape[0]}, engine profile allows 1..{self._max_batch}"
            )
        if not np.isfinite(x).all():
            raise InputError("features", "values", "contains NaN or inf")
        return np.ascontiguousarray(x)

    def sleep(self) -> None:
        with self._lock:
            self._stop_watchdog()
            aw, self._awake = self._awake, None
            if aw is None:
                if self._state is EngineState.AWAKE:
                    self._state = EngineState.LOADED
                return
            errors = teardown(aw, self._cuda, self.name, current=False)
            self._sleep_errors = errors
            self._state = EngineState.LOADED
            _AWAKE_ENGINES.discard(self)
            if errors:
                raise EngineError(f"{self.name}: sleep freed everything it could, but: {'; '.join(errors)}")

    # ----- watchdog
    def _stop_watchdog(self) -> None:
        wd, self._watchdog = self._watchdog, None
        if wd is not None:
            wd.stop()

    def _watchdog_expired(self, wd: AwakeWatchdog | None) -> None:
        with self._lock:
            # A watchdog of an earlier wake that lost a race with sleep() must not
            # put a later wake to sleep.
            if self._state is not EngineState.AWAKE or wd is None or self._watchdog is not wd:
                return
            now = self._clock()
            diag = WatchdogDiagnostic(
                self.name, now - self._woke_at, wd.idle_for(), self._max_idle, self._inferences
            )
            self._watchdog = None  # the watchdog thread is the caller; do not join it
            try:
                self.sleep()
            finally:
                self._forced = diag
        log.error("%s", diag.message)
        if self._on_diagnostic is not None:
            self._on_diagnostic(diag)

    def check_watchdog(self) -> bool:
        """Run the watchdog check now (what its thread does); True if it forced sleep."""
        wd = self._watchdog
        return wd.poll() if wd is not None else False

    # ----- residency
    def residency(self) -> Residency:
        with self._lock:
            held: list[str] = []
            details = {
                "engine": str(self._path or ""),
                "runtime": f"{self._flavour} {getattr(self._trt, '__version__', '')}".strip(),
                "device": self._device_label,
                "max_batch": str(self._max_batch),
                "watchdog_bound_s": f"{self._max_idle:g}",
            }
            if self._forced is not None:
                details["watchdog"] = self._forced.message
            if self._sleep_errors:
                # The last sleep could not free everything: say so rather than
                # report an empty GPU footprint that may not be true.
                details["last_sleep_errors"] = "; ".join(self._sleep_errors)
            if self._plan is not None:
                held.append("model_plan")
            device_bytes = 0
            aw = self._awake
            if aw is not None:
                held += aw.held()
                device_bytes = aw.dev_bytes + aw.scratch_bytes
            return Residency(
                backend=self.name,
                state=self._state,
                held=tuple(held),
                device_bytes=device_bytes,
                host_bytes=len(self._plan or b""),
                details=details,
            )
