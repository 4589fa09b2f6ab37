"""The one thread that owns the engine.

A CUDA context is current on one thread only, so every engine call (load, wake, infer, sleep, unload)
runs on this thread; callers wait for it, bounded by ``timeout_s``. The simulation runs the same code
inline (``threaded=False``): one thread, no waiting, the same sequence.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class EngineWorker:
    def __init__(self, name: str, timeout_s: float, threaded: bool = True) -> None:
        self.timeout_s = float(timeout_s)
        self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-engine") if threaded else None

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run on the engine thread and wait (at most ``timeout_s``)."""
        if self._pool is None:
            return fn(*args)
        return self._pool.submit(fn, *args).result(timeout=self.timeout_s)

    def submit(self, fn: Callable[..., T], *args: Any) -> cf.Future[T]:
        """Run on the engine thread without waiting."""
        if self._pool is not None:
            return self._pool.submit(fn, *args)
        fut: cf.Future[T] = cf.Future()
        try:
            fut.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001 - handed to the future's owner, as the thread would
            fut.set_exception(exc)
        return fut

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
