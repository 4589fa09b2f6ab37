"""The awake watchdog: a wake without a sleep is caught, forced to sleep and reported.

``AwakeWatchdog`` fires once when an awake engine has gone ``bound_s`` without
an inference; ``TensorRTEngine`` then sleeps and keeps a ``WatchdogDiagnostic``
that its next ``infer`` raises as ``WatchdogForcedSleep``. Every awake engine
is also registered here, and ``sleep_all_awake_engines`` runs at exit: a
process never leaves ours on the GPU.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vibration_anomaly.errors import EngineError, EngineStateError, InputError

if TYPE_CHECKING:
    from vibration_anomaly.engine.tensorrt.engine import TensorRTEngine

log = logging.getLogger(__name__)

DEFAULT_MAX_IDLE_AWAKE_S = 10.0
"""Watchdog bound: awake with no inference for this long is a wake without a sleep."""


class WatchdogForcedSleep(EngineStateError):
    """The watchdog put an awake, idle engine to sleep; the message carries the diagnostic."""


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


def check_max_idle_awake_s(value: float, source: str) -> float:
    """The watchdog bound as a float, or an InputError: zero, negative or NaN would never (or always) fire."""
    try:
        bound = float(value)
    except (TypeError, ValueError):
        bound = math.nan
    if not math.isfinite(bound) or bound <= 0:
        raise InputError(
            source, "max_idle_awake_s", f"expected a finite number of seconds > 0, got {value!r}"
        )
    return bound


_AWAKE_ENGINES: weakref.WeakSet[TensorRTEngine] = weakref.WeakSet()


def sleep_all_awake_engines() -> None:
    """Put every awake engine to sleep (registered at exit: a process never leaves ours on the GPU)."""
    for e in list(_AWAKE_ENGINES):
        try:
            e.sleep()
        except EngineError as exc:
            log.error("at exit: %s", exc)


def _register_atexit() -> None:
    import atexit

    atexit.register(sleep_all_awake_engines)


_register_atexit()
