"""The GPU edge of the TensorRT backend: importing TensorRT, its runtime, and the CUDA driver.

``import_tensorrt`` finds the full or lean TensorRT module and ``new_runtime``
makes a runtime whose logger keeps errors; ``probe_cuda_driver``
asks libcuda (through ctypes) whether a GPU is usable before TensorRT is
touched; ``CudaApi`` is the handful of driver operations the engine needs and
``PyCudaApi`` the real one over pycuda, turning every pycuda error into an
EngineError subclass. The module imports without TensorRT, pycuda or a GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from vibration_anomaly.errors import EngineError

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

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


# --------------------------------------------------------------------------- TensorRT import and runtime


def import_tensorrt(runtime: str = "auto") -> tuple[Any, str]:
    """Import the TensorRT Python module: ``full`` (tensorrt), ``lean`` (tensorrt_lean) or ``auto``.

    The ``tensorrt-stubs`` package installs a ``tensorrt`` folder with only
    ``.pyi`` files, which imports as an empty namespace package; that counts as
    missing, not as TensorRT.
    """
    if runtime not in ("auto", "full", "lean"):
        raise EngineError(f"TensorRT runtime {runtime!r}: expected auto, full or lean")
    names = {"auto": ("tensorrt", "tensorrt_lean"), "full": ("tensorrt",), "lean": ("tensorrt_lean",)}[
        runtime
    ]
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


def new_runtime(trt_mod: Any, allow_host_code: bool) -> tuple[trt.Runtime, Any]:
    """A TensorRT runtime and its recording logger (typed against tensorrt-stubs)."""
    logger = _make_logger(trt_mod)
    runtime: trt.Runtime = trt_mod.Runtime(logger)
    if logger.errors or runtime is None:
        # Without a usable driver TensorRT logs an error and still returns an
        # object; using it would crash the process, so stop here.
        del runtime
        raise NoCudaGpuError(f"no CUDA GPU: TensorRT runtime creation failed: {' | '.join(logger.errors)}")
    if allow_host_code:
        runtime.engine_host_code_allowed = True
    return runtime, logger


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
        return CudaProbe(
            False, f"cuInit failed with CUresult {rc} (no usable GPU, or driver/kernel module mismatch)"
        )
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
        with self._driver_errors(
            f"no usable CUDA GPU #{device}: reading its name failed", NoCudaGpuError
        ) as cuda:
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
