"""TensorRT backend (TensorRT 10+ API) over pycuda with an explicit CUDA context.

``TensorRTEngine`` implements the Engine protocol; its lifecycle (what ``load``,
``wake``, ``infer`` and ``sleep`` create and free, and why) is described in
``engine``. The package is split along its seams:

* ``cuda``: importing TensorRT (full or lean) and making its runtime; probing
  the CUDA driver; the ``CudaApi`` the engine calls and ``PyCudaApi``, the
  real one over pycuda.
* ``plan``: plan-file checks that need no GPU, deserialization, the engine's
  I/O against the model's, and ``load``'s one look at the plan on the GPU
  (``inspect_plan``: a short-lived context that keeps nothing).
* ``awake``: what one wake holds, and its teardown in dependency order.
* ``watchdog``: the awake watchdog, its diagnostic, and the at-exit sleep of
  every awake engine.
* ``engine``: ``TensorRTEngine``.

The package imports without TensorRT, pycuda or a GPU; each missing piece, and
every pycuda error, is a clear EngineError subclass raised by ``load``/``wake``.
Importing it registers ``sleep_all_awake_engines`` to run at exit.
"""

from vibration_anomaly.engine.tensorrt.cuda import (
    INSTALL_HINT,
    CudaApi,
    CudaDriverError,
    CudaProbe,
    NoCudaGpuError,
    PyCudaApi,
    PyCudaNotInstalledError,
    TensorRTNotInstalledError,
    import_tensorrt,
    probe_cuda_driver,
)
from vibration_anomaly.engine.tensorrt.engine import TensorRTEngine
from vibration_anomaly.engine.tensorrt.plan import (
    MAX_ENGINE_BYTES,
    MIN_ENGINE_BYTES,
    CorruptEngineError,
    EngineMismatchError,
    check_io,
    engine_io_specs,
    read_engine_file,
)
from vibration_anomaly.engine.tensorrt.watchdog import (
    DEFAULT_MAX_IDLE_AWAKE_S,
    AwakeWatchdog,
    WatchdogDiagnostic,
    WatchdogForcedSleep,
    check_max_idle_awake_s,
    sleep_all_awake_engines,
)

__all__ = [
    "DEFAULT_MAX_IDLE_AWAKE_S",
    "INSTALL_HINT",
    "MAX_ENGINE_BYTES",
    "MIN_ENGINE_BYTES",
    "AwakeWatchdog",
    "CorruptEngineError",
    "CudaApi",
    "CudaDriverError",
    "CudaProbe",
    "EngineMismatchError",
    "NoCudaGpuError",
    "PyCudaApi",
    "PyCudaNotInstalledError",
    "TensorRTEngine",
    "TensorRTNotInstalledError",
    "WatchdogDiagnostic",
    "WatchdogForcedSleep",
    "check_io",
    "check_max_idle_awake_s",
    "engine_io_specs",
    "import_tensorrt",
    "probe_cuda_driver",
    "read_engine_file",
    "sleep_all_awake_engines",
]
