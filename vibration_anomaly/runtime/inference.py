"""The engine thread's inference loop: driver mode infers once per window, supervisor mode on demand.

Supervisor mode (the robot supervisor holds the node active) infers every completed batch, the newest
only when several came, with at most one job queued on the engine thread: batches that land while a
job runs set a flag the job checks before it returns, under the lock that decides whether a new job
is needed, so no batch waits for the next one and no second job piles up behind a slow call.
"""

from __future__ import annotations

import threading
import traceback
from typing import TYPE_CHECKING, Any

from vibration_anomaly.core.events import ERROR, WAKE

if TYPE_CHECKING:
    from vibration_anomaly.runtime.runtime import DetectorRuntime


class InferenceLoop:
    def __init__(self, rt: DetectorRuntime) -> None:
        self.rt = rt
        self._lock = threading.Lock()
        self.pending: Any = None  # the job queued or running on the engine thread
        self._want = threading.Event()

    def infer_now(self, fresh_after: float) -> None:
        from vibration_anomaly.runtime.awake import EngineBusy

        rt = self.rt
        assert rt.worker is not None
        if rt.worker.busy:
            raise EngineBusy(f"engine still inside an overrun call ({rt.stuck or 'busy'})")
        rt.worker.call(self._job, fresh_after)

    def _job(self, fresh_after: float) -> None:
        """On the engine thread: infer the newest batch while there is demand."""
        rt = self.rt
        assert rt.detector is not None
        while True:
            self._want.clear()
            if rt.active and not rt.detector.awake:
                # The engine's watchdog put it to sleep (no batch for a whole period while active,
                # e.g. the IMU stalled): wake it again rather than fail every later batch.
                rt.detector.activate()
                rt.emit(WAKE, what="re-woken after the engine watchdog forced sleep")
            v = rt.detector.infer_latest(fresh_after)
            if v is not None:
                rt.verdicts = [*rt.verdicts[-99:], v]
            # Decide to stop under the lock on_batch takes: a batch that lands between this check
            # and the return would otherwise find a job "still running" and wait for the next one.
            with self._lock:
                if not (rt.active and self._want.is_set()):
                    self.pending = None
                    return

    def on_batch(self, fresh_after: float) -> None:
        rt = self.rt
        if rt.driver_enabled or not rt.active or rt.worker is None:
            return
        self._want.set()
        with self._lock:
            if self.pending is None:
                fut = rt.worker.submit(self._job, fresh_after)
                fut.add_done_callback(self._done)
                self.pending = fut

    def _done(self, fut: Any) -> None:
        if fut.cancelled() or fut.exception() is None:
            return
        with self._lock:
            if self.pending is fut:
                self.pending = None
        exc = fut.exception()
        self.rt.emit(
            ERROR,
            message=f"inference job: {type(exc).__name__}: {exc}",
            traceback="".join(traceback.format_exception(exc)),
        )
