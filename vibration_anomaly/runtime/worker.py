"""The one thread that owns the engine, with every call bounded.

A CUDA context is current on one thread only, so every engine call (load, wake, infer, sleep, unload)
runs on this thread; callers wait for it at most ``timeout_s``. A call that overruns (a hung GPU
kernel, a stalled driver) must not take the node with it: :meth:`call` raises
:class:`EngineCallTimeout`, :attr:`busy` says the thread is still inside that call, and work submitted
meanwhile (the sleep that frees everything) runs as soon as it returns. :meth:`abandon` lets a new
configure start on a fresh thread without waiting for a call that may never return.

The simulation runs the same code inline (``threaded=False``): one thread, no waiting.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from vibration_anomaly.errors import EngineError

T = TypeVar("T")


class EngineCallTimeout(EngineError):
    """An engine call overran its bound; the engine thread is still inside it."""


class EngineWorker:
    def __init__(self, name: str, timeout_s: float, threaded: bool = True) -> None:
        self.name = name
        self.timeout_s = float(timeout_s)
        self._pool = (
            cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-engine") if threaded else None
        )
        self._lock = threading.Lock()
        self._running = 0

    @property
    def busy(self) -> bool:
        """True while a call is running or queued on the engine thread."""
        with self._lock:
            return self._running > 0

    def _tracked(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        finally:
            with self._lock:
                self._running -= 1

    def submit(self, fn: Callable[..., T], *args: Any) -> cf.Future[T]:
        """Run on the engine thread without waiting."""
        if self._pool is None:
            fut: cf.Future[T] = cf.Future()
            try:
                fut.set_result(fn(*args))
            except Exception as exc:  # noqa: BLE001 - handed to the future's owner, as the thread would
                fut.set_exception(exc)
            return fut
        with self._lock:
            self._running += 1
        return self._pool.submit(self._tracked, fn, *args)

    def call(self, fn: Callable[..., T], *args: Any, timeout_s: float | None = None) -> T:
        """Run on the engine thread and wait at most ``timeout_s`` (default: the worker's bound)."""
        if self._pool is None:
            return fn(*args)
        fut = self.submit(fn, *args)
        limit = self.timeout_s if timeout_s is None else timeout_s
        try:
            return fut.result(timeout=limit)
        except cf.TimeoutError:
            raise EngineCallTimeout(
                f"{self.name}: engine call {getattr(fn, '__name__', fn)!s} still running after {limit:g} s"
            ) from None

    def stop(self) -> None:
        """Wait for the thread's work to finish and end it."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def abandon(self) -> None:
        """End the thread once its queued work is done, without waiting for it (a call may never return)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
