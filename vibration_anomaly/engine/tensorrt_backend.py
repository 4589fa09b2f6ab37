"""TensorRT backend (TensorRT 10+ API) over pycuda with an explicit CUDA context.

Why it is shaped this way (the fleet drained because a stray
``execute_async_v3`` without a matching synchronize/free kept the GPU hot):

* ``load`` validates the plan file before touching the GPU, then deserializes
  it once inside a short-lived context only to check its I/O against the model
  contract, and keeps nothing but the plan bytes (host memory).
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

import contextlib
import ctypes
import functools
import importlib
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from vibration_anomaly.engine.base import EngineState, Residency, TensorSpec
from vibration_anomaly.errors import EngineError, EngineStateError, InputError

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

MIN_ENGINE_BYTES = 1024
"""Smaller than any real serialized engine (a plan carries a header, metadata and kernels)."""
MAX_ENGINE_BYTES = 2 * 1024**3
DEFAULT_MAX_IDLE_AWAKE_S = 10.0
"""Watchdog bound: awake with no inference for this long is a wake without a sleep."""

INSTALL_HINT = (
    "pip install tensorrt-cu12 (x86_64 with a CUDA 12 driver), or on a Jetson use JetPack's "
    "python3-libnvinfer; for version-compatible engines the lean runtime is enough: pip install tensorrt-lean-cu12"
)


# --------------------------------------------------------------------------- errors


class TensorRTNotInstalledError(EngineError):
    """Neither ``tensorrt`` nor ``tensorrt_lean`` can be imported."""


class NoCudaGpuError(EngineError):
    """No usable CUDA driver or device."""


class PyCudaNotInstalledError(EngineError):
    """``pycuda`` is missing (it needs the CUDA toolkit to build)."""


class CudaDriverError(EngineError):
    """A CUDA driver call through pycuda failed (the pycuda error is the ``__cause__``)."""


class CorruptEngineError(EngineError):
    """The file is not a serialized engine this TensorRT can deserialize."""


class EngineMismatchError(EngineError):
    """The engine's tensor names, modes, shapes or dtypes differ from what the caller expects."""


class WatchdogForcedSleep(EngineStateError):
    """The watchdog put an awake, idle engine to sleep; the message carries the diagnostic."""


# --------------------------------------------------------------------------- TensorRT import


def import_tensorrt(runtime: str = "auto") -> tuple[Any, str]:
    """Import the TensorRT Python module: ``full`` (tensorrt), ``lean`` (tensorrt_lean) or ``auto``.

    The ``tensorrt-stubs`` package installs a ``tensorrt`` folder with only
    ``.pyi`` files, which imports as an empty namespace package; that counts as
    missing, not as TensorRT.
    """
    if runtime not in ("auto", "full", "lean"):
        raise EngineError(f"TensorRT runtime {runtime!r}: expected auto, full or lean")
    names = {"auto": ("tensorrt", "tensorrt_lean"), "full": ("tensorrt",), "lean": ("tensorrt_lean",)}[runtime]
    seen: list[str] = []
    for name in names:
        try:
            mod = importlib.import_module(name)
        except ImportError as exc:
            seen.append(f"{name}: {exc}")
            continue
        if getattr(mod, "Runtime", None) is None:
            seen.append(f"{name}: only type stubs or an empty package found")
            continue
        return mod, ("lean" if name == "tensorrt_lean" else "full")
    raise TensorRTNotInstalledError(f"TensorRT is not installed ({'; '.join(seen)}): {INSTALL_HINT}")


def _make_logger(trt_mod: Any) -> Any:
    """A TensorRT logger that keeps errors, so a failed call can say why."""

    class _Recorder(trt_mod.ILogger):
        def __init__(self) -> None:
            trt_mod.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity <= trt_mod.ILogger.Severity.ERROR:
                self.errors.append(msg)
                log.error("TensorRT: %s", msg)
            elif severity <= trt_mod.ILogger.Severity.WARNING:
                log.warning("TensorRT: %s", msg)

    return _Recorder()


# --------------------------------------------------------------------------- CUDA edge


@dataclass(frozen=True)
class CudaProbe:
    ok: bool
    reason: str
    device_count: int = 0
    driver_version: int = 0


def probe_cuda_driver() -> CudaProbe:
    """Ask the CUDA driver (libcuda, through ctypes) whether a GPU is usable, without pycuda or TensorRT.

    Done first because TensorRT's own runtime, created with no usable driver,
    logs an error and hands back an object that crashes the process when used.
    """
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        return CudaProbe(False, f"no CUDA driver: libcuda.so.1 not loadable ({exc})")
    rc = lib.cuInit(0)
    if rc != 0:
        return CudaProbe(False, f"cuInit failed with CUresult {rc} (no usable GPU, or driver/kernel module mismatch)")
    count = ctypes.c_int(0)
    rc = lib.cuDeviceGetCount(ctypes.byref(count))
    if rc != 0 or count.value == 0:
        return CudaProbe(False, f"no CUDA device (cuDeviceGetCount -> {rc}, count {count.value})")
    ver = ctypes.c_int(0)
    lib.cuDriverGetVersion(ctypes.byref(ver))
    return CudaProbe(True, f"{count.value} CUDA device(s), driver API {ver.value}", count.value, ver.value)


class CudaApi(Protocol):
    """The few CUDA driver operations the backend needs; PyCudaApi is the real one.

    Contexts follow pycuda's rules: which context is current is per thread, and
    ``push``/``pop`` act on the calling thread. ``destroy_context`` takes a
    context that is current on the calling thread and destroys and pops it in
    one step: pycuda's ``Context.detach`` of a context that is not current,
    called from a thread other than the one that created it, does nothing but
    leak it, and ``sleep`` may run on the watchdog's thread or at exit rather
    than on the thread that woke the engine.
    """

    def probe(self) -> CudaProbe: ...
    def create_context(self, device: int) -> Any: ...  # created and made current on this thread
    def push(self, ctx: Any) -> None: ...
    def pop(self) -> None: ...
    def destroy_context(self, ctx: Any) -> None: ...  # ctx current on this thread; this pops it
    def device_name(self, device: int) -> str: ...
    def create_stream(self) -> Any: ...
    def stream_handle(self, stream: Any) -> int: ...
    def synchronize(self, stream: Any) -> None: ...
    def destroy_stream(self, stream: Any) -> None: ...  # the caller drops its last reference at once
    def alloc(self, nbytes: int) -> Any: ...
    def device_ptr(self, buf: Any) -> int: ...
    def free(self, buf: Any) -> None: ...
    def alloc_pinned(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray: ...
    def free_pinned(self, arr: np.ndarray) -> None: ...
    def htod_async(self, dst: Any, src: np.ndarray, stream: Any) -> None: ...
    def dtoh_async(self, dst: np.ndarray, src: Any, stream: Any) -> None: ...


class PyCudaApi:
    """CudaApi over pycuda.driver, with explicit init and contexts (no pycuda.autoinit).

    Every pycuda error (``pycuda.driver.Error`` and its subclasses: an out of
    memory ``cuCtxCreate``, a device in exclusive-process mode held by another
    process, a failed copy) leaves as an EngineError subclass, so that
    ``select_engine("auto")`` falls back to ONNX Runtime instead of the error
    escaping it, and the node's error handling sees one family of errors.
    """

    def __init__(self) -> None:
        self._cuda: Any = None

    def _drv(self) -> Any:
        if self._cuda is None:
            try:
                import pycuda.driver as cuda
            except ImportError as exc:
                raise PyCudaNotInstalledError(
                    f"pycuda is not installed ({exc}): pip install pycuda (needs the CUDA toolkit; "
                    "JetPack ships it), or the [gpu] extra"
                ) from exc
            try:
                cuda.init()
            except cuda.Error as exc:
                raise NoCudaGpuError(f"no CUDA GPU: pycuda cuda.init() failed: {exc}") from exc
            self._cuda = cuda
        return self._cuda

    @contextlib.contextmanager
    def _driver_errors(self, what: str, kind: type[EngineError] | None = None) -> Iterator[Any]:
        """Yield pycuda.driver; turn a pycuda error inside into ``kind`` saying what failed."""
        cuda = self._drv()
        try:
            yield cuda
        except cuda.Error as exc:
            raise (kind or CudaDriverError)(f"{what}: {type(exc).__name__}: {exc}") from exc

    def probe(self) -> CudaProbe:
        return probe_cuda_driver()

    def create_context(self, device: int) -> Any:
        what = (
            f"no usable CUDA GPU #{device}: creating a context failed (out of GPU memory, or the device is in "
            "exclusive-process mode and another process holds it?)"
        )
        with self._driver_errors(what, NoCudaGpuError) as cuda:
            count = int(cuda.Device.count())
            if device >= count:
                raise NoCudaGpuError(f"no CUDA GPU #{device}: {count} present")
            return cuda.Device(device).make_context()

    def push(self, ctx: Any) -> None:
        with self._driver_errors("CUDA: making the engine's context current failed"):
            ctx.push()

    def pop(self) -> None:
        with self._driver_errors("CUDA: popping the engine's context failed") as cuda:
            cuda.Context.pop()

    def destroy_context(self, ctx: Any) -> None:
        with self._driver_errors("CUDA: destroying the engine's context failed") as cuda:
            current = cuda.Context.get_current()
            if current is None or current != ctx:
                # Callers make it current first; this only guards a caller that
                # did not, since detaching it non-current from another thread leaks.
                ctx.push()
            ctx.detach()  # detaching the current context destroys it and pops it

    def device_name(self, device: int) -> str:
        with self._driver_errors(f"no usable CUDA GPU #{device}: reading its name failed", NoCudaGpuError) as cuda:
            return str(cuda.Device(device).name())

    def create_stream(self) -> Any:
        with self._driver_errors("CUDA: creating a stream failed") as cuda:
            return cuda.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def synchronize(self, stream: Any) -> None:
        with self._driver_errors("CUDA: stream synchronize failed (an earlier asynchronous error?)"):
            stream.synchronize()

    def destroy_stream(self, stream: Any) -> None:
        # pycuda has no explicit stream free: cuStreamDestroy runs when the last
        # reference goes, so the caller drops its own right after this call, while
        # the context is still current (later it would be skipped as a dead context).
        del stream

    def alloc(self, nbytes: int) -> Any:
        with self._driver_errors(f"CUDA: allocating {nbytes} bytes of device memory failed") as cuda:
            return cuda.mem_alloc(max(1, nbytes))

    def device_ptr(self, buf: Any) -> int:
        return int(buf)

    def free(self, buf: Any) -> None:
        with self._driver_errors("CUDA: freeing device memory failed"):
            buf.free()

    def alloc_pinned(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
        with self._driver_errors(f"CUDA: allocating pinned host memory {shape} {dtype} failed") as cuda:
            arr: np.ndarray = cuda.pagelocked_empty(shape, dtype)
            return arr

    def free_pinned(self, arr: np.ndarray) -> None:
        base = getattr(arr, "base", None)
        if base is not None and hasattr(base, "free"):
            with self._driver_errors("CUDA: freeing pinned host memory failed"):
                base.free()

    def htod_async(self, dst: Any, src: np.ndarray, stream: Any) -> None:
        with self._driver_errors("CUDA: host-to-device copy failed") as cuda:
            cuda.memcpy_htod_async(dst, src, stream)

    def dtoh_async(self, dst: np.ndarray, src: Any, stream: Any) -> None:
        with self._driver_errors("CUDA: device-to-host copy failed") as cuda:
            cuda.memcpy_dtoh_async(dst, src, stream)


# --------------------------------------------------------------------------- plan-file checks


_ONNX_NEXT_FIELD_TAGS = frozenset((n << 3) | 2 for n in range(2, 9))


def read_engine_file(path: Path) -> bytes:
    """Read a plan file and refuse what can be recognised as not-an-engine without a GPU."""
    p = Path(path)
    if not p.is_file():
        raise CorruptEngineError(f"engine file {p}: not found (build one with `vibration-anomaly engine build`)")
    size = p.stat().st_size
    if size > MAX_ENGINE_BYTES:
        raise CorruptEngineError(f"engine file {p}: {size} bytes, larger than {MAX_ENGINE_BYTES}; not our engine")
    blob = p.read_bytes()
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


def engine_io_specs(trt_mod: Any, engine: trt.ICudaEngine) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
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


# --------------------------------------------------------------------------- watchdog


@dataclass(frozen=True)
class WatchdogDiagnostic:
    engine: str
    awake_for_s: float
    idle_for_s: float
    bound_s: float
    inferences_since_wake: int

    @property
    def message(self) -> str:
        return (
            f"{self.engine}: awake and idle for {self.idle_for_s:.1f} s (bound {self.bound_s:.1f} s; "
            f"awake {self.awake_for_s:.1f} s, {self.inferences_since_wake} inference(s) since wake) "
            "without sleep(): forced sleep to free the GPU. Call sleep() after inference."
        )


class AwakeWatchdog:
    """Calls ``on_expire`` once when ``touch()`` has not been called for ``bound_s`` seconds.

    ``poll()`` does the check and is what the thread runs; tests call it with
    an injected clock instead of waiting.
    """

    def __init__(
        self,
        bound_s: float,
        on_expire: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
        thread: bool = True,
    ) -> None:
        self.bound_s = bound_s
        self._on_expire = on_expire
        self._clock = clock
        self._last = clock()
        self._stop = threading.Event()
        self._fired = False
        self._thread: threading.Thread | None = None
        if thread:
            self._thread = threading.Thread(target=self._run, name="trt-awake-watchdog", daemon=True)
            self._thread.start()

    def touch(self) -> None:
        self._last = self._clock()

    def idle_for(self) -> float:
        return self._clock() - self._last

    def poll(self) -> bool:
        if self._fired or self._stop.is_set() or self.idle_for() < self.bound_s:
            return False
        self._fired = True
        self._on_expire()
        return True

    def _run(self) -> None:
        step = min(1.0, max(0.01, self.bound_s / 4))
        while not self._stop.wait(step):
            if self.poll():
                return

    def stop(self) -> None:
        # No join: the thread may be waiting for the engine lock that our caller
        # holds. It exits within one step, and a late expiry is ignored (see
        # TensorRTEngine._watchdog_expired).
        self._stop.set()


# --------------------------------------------------------------------------- the engine


def check_max_idle_awake_s(value: float, source: str) -> float:
    """The watchdog bound as a float, or an InputError: zero, negative or NaN would never (or always) fire."""
    try:
        bound = float(value)
    except (TypeError, ValueError):
        bound = math.nan
    if not math.isfinite(bound) or bound <= 0:
        raise InputError(source, "max_idle_awake_s", f"expected a finite number of seconds > 0, got {value!r}")
    return bound


_AWAKE_ENGINES: weakref.WeakSet[TensorRTEngine] = weakref.WeakSet()


def sleep_all_awake_engines() -> None:
    """Put every awake engine to sleep (registered at exit: a process never leaves ours on the GPU)."""
    for e in list(_AWAKE_ENGINES):
        try:
            e.sleep()
        except EngineError as exc:
            log.error("at exit: %s", exc)


@dataclass
class _Awake:
    ctx: Any
    runtime: Any = None
    engine: Any = None
    exec_ctx: Any = None
    stream: Any = None
    dev_bufs: dict[str, Any] | None = None
    host_bufs: dict[str, np.ndarray] | None = None
    dev_bytes: int = 0
    scratch_bytes: int = 0


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
        with self._lock:
            if self._state is not EngineState.UNLOADED:
                raise EngineStateError(f"{self.name}: load() while {self._state.value}; unload first")
            path = Path(model_path)
            blob = read_engine_file(path)
            if self._trt_given is not None:
                trt_mod, flavour = self._trt_given, "given"
            else:
                trt_mod, flavour = import_tensorrt(self._runtime_kind)
            probe = self._cuda.probe()
            if not probe.ok:
                raise NoCudaGpuError(f"no CUDA GPU: {probe.reason}; the TensorRT backend needs one (use onnx)")
            ctx = self._cuda.create_context(self._device)
            held: dict[str, Any] = {}
            failure: BaseException | None = None
            try:
                held["runtime"], logger = self._new_runtime(trt_mod)
                held["engine"] = self._deserialize(held["runtime"], logger, blob, path)
                ins, outs = engine_io_specs(trt_mod, held["engine"])
                if not ins or not outs:
                    raise EngineMismatchError(f"engine file {path}: needs at least one input and one output")
                profile_max = self._profile_max_batch(held["engine"], ins[0])
            except BaseException as exc:
                # Drop the traceback: its frames would keep TensorRT objects alive
                # past the context they belong to.
                failure = exc.with_traceback(None)
            finally:
                held.clear()
                # Still current on this thread: detach destroys and pops it.
                self._cuda.destroy_context(ctx)
                del ctx
            if failure is not None:
                if isinstance(failure, EngineError | KeyboardInterrupt | SystemExit):
                    raise failure
                raise EngineError(f"engine file {path}: TensorRT failed while reading it: {failure!r}")
            check_io(ins, outs, self._expected[0], self._expected[1], f"engine file {path}")
            self._device_label = self._cuda.device_name(self._device)
            self._trt, self._flavour = trt_mod, flavour
            self._plan, self._path = blob, path
            self._inputs, self._outputs = ins, outs
            self._max_batch = self._max_batch_override or profile_max
            self._state = EngineState.LOADED
            log.info(
                "loaded TensorRT engine %s (%d bytes, %s runtime %s, max batch %d)",
                path, len(blob), flavour, getattr(trt_mod, "__version__", "?"), self._max_batch,
            )

    def unload(self) -> None:
        with self._lock:
            self.sleep()
            self._plan = None
            self._path = None
            self._trt = None
            self._state = EngineState.UNLOADED

    # ----- TensorRT calls (typed against tensorrt-stubs)
    def _new_runtime(self, trt_mod: Any) -> tuple[trt.Runtime, Any]:
        logger = _make_logger(trt_mod)
        runtime: trt.Runtime = trt_mod.Runtime(logger)
        if logger.errors or runtime is None:
            # Without a usable driver TensorRT logs an error and still returns an
            # object; using it would crash the process, so stop here.
            del runtime
            raise NoCudaGpuError(f"no CUDA GPU: TensorRT runtime creation failed: {' | '.join(logger.errors)}")
        if self._allow_host_code:
            runtime.engine_host_code_allowed = True
        return runtime, logger

    def _deserialize(self, runtime: trt.Runtime, logger: Any, blob: bytes, path: Path) -> trt.ICudaEngine:
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

    def _profile_max_batch(self, engine: trt.ICudaEngine, first: TensorSpec) -> int:
        """The batch the buffers are sized for: the profile's max for a dynamic batch axis."""
        if first.shape and first.shape[0] is None:
            return int(engine.get_tensor_profile_shape(first.name, 0)[2][0])
        return int(first.shape[0]) if first.shape and first.shape[0] else 1

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
                self._teardown(aw, current=True)
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
        aw.runtime, logger = self._new_runtime(trt_mod)
        aw.engine = self._deserialize(aw.runtime, logger, self._plan, self._path or Path("?"))
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
                    raise InputError("features", "shape", f"{x.shape} is outside the engine's optimisation profile")
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
        if x.ndim != len(spec.shape) or any(w is not None and g != w for g, w in zip(x.shape, spec.shape, strict=True)):
            raise InputError("features", "shape", f"got {x.shape}, engine expects {spec.shape} (None = batch)")
        if x.shape and (x.shape[0] < 1 or x.shape[0] > self._max_batch):
            raise InputError("features", "batch", f"got {x.shape[0]}, engine profile allows 1..{self._max_batch}")
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
            errors = self._teardown(aw, current=False)
            self._sleep_errors = errors
            self._state = EngineState.LOADED
            _AWAKE_ENGINES.discard(self)
            if errors:
                raise EngineError(f"{self.name}: sleep freed everything it could, but: {'; '.join(errors)}")

    def _teardown(self, aw: _Awake, current: bool) -> list[str]:
        """Free in dependency order, then destroy ``aw.ctx`` while it is current on the calling thread.

        ``sleep`` can run on another thread than ``wake`` (the watchdog's, or
        the main thread at exit). pycuda frees buffers only in a context it can
        make current, and its ``Context.detach`` on a context that is not
        current here and was made by another thread silently leaks it. So the
        context is pushed on this thread (unless ``current``: wake's own failure
        path), everything is freed inside it, and it is detached while still
        current, which destroys it and pops it. A failing step does not stop the
        later ones; the failures are returned.
        """
        errors: list[str] = []

        def step(what: str, fn: Callable[[], None]) -> None:
            try:
                fn()
            except Exception as exc:  # keep freeing; report at the end
                errors.append(f"{what}: {exc}")
                log.error("%s: teardown %s failed: %s", self.name, what, exc)

        if not current:
            step("push context", functools.partial(self._cuda.push, aw.ctx))
        if aw.stream is not None:
            step("synchronize", functools.partial(self._cuda.synchronize, aw.stream))

        def free_each(kind: str, bufs: dict[str, Any] | None, free: Callable[[Any], None]) -> None:
            # In its own scope so no loop variable keeps a buffer alive past its context.
            for name, obj in (bufs or {}).items():
                step(f"free {kind} {name}", functools.partial(free, obj))

        aw.exec_ctx = None
        free_each("device buffer", aw.dev_bufs, self._cuda.free)
        aw.dev_bufs = {}
        free_each("pinned buffer", aw.host_bufs, self._cuda.free_pinned)
        aw.host_bufs = {}
        aw.engine = None
        aw.runtime = None
        if aw.stream is not None:
            # No closure or local may outlive this block: pycuda destroys the
            # stream when its last reference goes, which must happen while the
            # context is still alive and current.
            stream, aw.stream = aw.stream, None
            try:
                self._cuda.destroy_stream(stream)
            except Exception as exc:
                errors.append(f"destroy stream: {exc}")
                log.error("%s: teardown destroy stream failed: %s", self.name, exc)
            finally:
                del stream
        ctx, aw.ctx = aw.ctx, None
        step("destroy context", functools.partial(self._cuda.destroy_context, ctx))
        del ctx
        return errors

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
            diag = WatchdogDiagnostic(self.name, now - self._woke_at, wd.idle_for(), self._max_idle, self._inferences)
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
                if aw.ctx is not None:
                    held.append("context")
                if aw.runtime is not None:
                    held.append("runtime")
                if aw.engine is not None:
                    held.append("engine")
                if aw.exec_ctx is not None:
                    held.append("execution_context")
                held += [f"device_buffer:{n}" for n in aw.dev_bufs or {}]
                held += [f"pinned_buffer:{n}" for n in aw.host_bufs or {}]
                if aw.stream is not None:
                    held.append("stream")
                device_bytes = aw.dev_bytes + aw.scratch_bytes
            return Residency(
                backend=self.name,
                state=self._state,
                held=tuple(held),
                device_bytes=device_bytes,
                host_bytes=len(self._plan or b""),
                details=details,
            )


def _register_atexit() -> None:
    import atexit

    atexit.register(sleep_all_awake_engines)


_register_atexit()
