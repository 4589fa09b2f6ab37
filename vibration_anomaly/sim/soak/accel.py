"""The simulation's accelerations: pooled ONNX Runtime sessions and memoised frontend features.

They make the fleet fast without touching the runtime's logic: a robot's engine residency (and so its
power, health and ``held_resources``) stays its own, and every inference still runs the engine.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine


class _SessionPool:
    """ONNX Runtime sessions shared by all robots: creating one per wake would cost more than the inference."""

    def __init__(self) -> None:
        self._free: dict[str, list[Any]] = {}
        self._lock = threading.Lock()
        self.created = 0

    def take(self, key: str, make: Any) -> Any:
        with self._lock:
            free = self._free.get(key)
            if free:
                return free.pop()
        self.created += 1
        return make()

    def give(self, key: str, session: Any) -> None:
        with self._lock:
            self._free.setdefault(key, []).append(session)


class _PooledOnnxEngine(OnnxRuntimeEngine):
    """The ONNX Runtime engine with its wake served from a session pool; everything else unchanged.

    The residency stays per robot (``_session`` is set while awake, None while asleep), so the power
    model, the health board and ``held_resources`` see exactly what they would see without the pool.
    """

    soak_pool: _SessionPool
    soak_key: str
    soak_before_infer: Any = None

    def wake(self) -> None:
        from vibration_anomaly.engine.base import EngineState
        from vibration_anomaly.errors import EngineStateError

        if self._state is EngineState.AWAKE:
            return
        if self._state is EngineState.UNLOADED or self._optimized is None:
            raise EngineStateError(f"{self.name}: wake() before load()")
        optimized = self._optimized

        def make() -> Any:
            import onnxruntime as ort

            return ort.InferenceSession(
                optimized, sess_options=self._options(optimize=False), providers=["CPUExecutionProvider"]
            )

        self._session = self.soak_pool.take(self.soak_key, make)
        self._state = EngineState.AWAKE

    def infer(self, features: np.ndarray) -> np.ndarray:
        hook = self.soak_before_infer
        if hook is not None:
            hook()
        return super().infer(features)

    def sleep(self) -> None:
        from vibration_anomaly.engine.base import EngineState

        if self._session is not None:
            self.soak_pool.give(self.soak_key, self._session)
        self._session = None
        if self._state is EngineState.AWAKE:
            self._state = EngineState.LOADED


class _MemoFrontend:
    """The model's frontend, memoised by the window's bytes: pooled windows repeat, their features too."""

    def __init__(self, frontend: Any, cache: OrderedDict[bytes, np.ndarray], limit: int = 512) -> None:
        self.frontend, self.cache, self.limit = frontend, cache, limit
        self.config = getattr(frontend, "config", None)

    def __call__(self, window: Any, fs_hz: Any, source: str = "window") -> np.ndarray:
        w = np.ascontiguousarray(window)
        key = hashlib.blake2b(w.data, digest_size=16, person=b"%d" % int(fs_hz)).digest()
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        out = self.frontend(window, fs_hz, source)
        self.cache[key] = out
        if len(self.cache) > self.limit:
            self.cache.popitem(last=False)
        return out
