"""The duty-cycle driver: one per-period sequence, driven by the ROS node's timer and by the demo's loop.

Per duty period (windows from :class:`DutyCycleScheduler`, so the demo, the
soak and the node share one grid)::

    start - lead_s   open_sampling(window)   subscribe; frames before start are refused    -> "wake" event
    end + tail_s     close_sampling(window)  unsubscribe, flush, queue the batch
                     infer_once(window)      activate -> infer_latest(fresh_after=start) -> deactivate
                                                                                           -> "sleep" event

``lead_s`` opens the subscription a moment early because the middleware needs
a few milliseconds to match a new reader to the publisher (measured: 2-5 ms
with Fast DDS on one machine); without it the first frames of every window
would be lost. ``tail_s`` keeps it open a moment after the end for the frames
still in flight (stamped inside the window, delivered after it), so the batch
(``core.window.batch_samples``: 98 % of the window) fills even when frames arrive late.
The driver never sleeps itself: ``step(now)`` does what is due
and returns when it wants to be called next, so a ROS timer (on ROS time,
``use_sim_time`` friendly) or a simulation loop can drive it.
"""

from __future__ import annotations

import enum
import math
import traceback
from collections.abc import Callable
from typing import Protocol

from vibration_anomaly.core.events import CLOCK_JUMP, ERROR, SLEEP, EventBus
from vibration_anomaly.core.scheduler import DutyCycleScheduler, SampleWindow


class DriverHooks(Protocol):
    def open_sampling(self, window: SampleWindow) -> None: ...

    def close_sampling(self, window: SampleWindow) -> None: ...

    def infer_once(self, window: SampleWindow) -> None: ...

    def held_resources(self) -> tuple[str, ...]: ...


JUMP_TOLERANCE_S = 0.5  # a clock read this much earlier than the last one moved backwards


class DriverState(enum.Enum):
    STOPPED = "stopped"
    WAITING = "waiting"  # asleep until the next window's lead-in
    SAMPLING = "sampling"


class DutyCycleDriver:
    """Runs sample -> infer once -> sleep on the scheduler's grid; every step reports through the bus."""

    def __init__(
        self,
        scheduler: DutyCycleScheduler,
        hooks: DriverHooks,
        bus: EventBus,
        lead_s: float = 0.0,
        tail_s: float = 0.0,
        steady: Callable[[], float] | None = None,
    ) -> None:
        sleep_s = scheduler.period_s - scheduler.sample_s
        if not (
            math.isfinite(lead_s)
            and math.isfinite(tail_s)
            and lead_s >= 0
            and tail_s >= 0
            and lead_s + tail_s < sleep_s
        ):
            raise ValueError(
                f"duty-cycle driver: lead_s and tail_s must be >= 0 and together shorter than the sleep "
                f"({sleep_s:g} s), got lead_s={lead_s!r} tail_s={tail_s!r}"
            )
        self.scheduler = scheduler
        self.hooks = hooks
        self.bus = bus
        self.lead_s = float(lead_s)
        self.tail_s = float(tail_s)
        self.state = DriverState.STOPPED
        self.target: SampleWindow | None = None
        self.opened_at: float | None = None
        self.periods = 0
        self.missed = 0
        self.errors = 0
        self.jumps = 0
        self._last_now: float | None = None
        self.on_clock_jump: Callable[[float], None] | None = None  # e.g. drop queued batches of the old time
        # Frees the engine when a period ends still holding it (a wake without its sleep).
        self.force_sleep: Callable[[], None] | None = None
        # A monotonic clock in seconds when the driver's clock is the wall clock (not sim time, whose rate
        # is the replay's): it bounds a window by real time, whatever the wall clock did in between.
        self.steady = steady
        self._opened_steady = 0.0
        self._progress = 0.0  # forward clock movement since the window opened
        self._open_for = 0.0  # how much of it the window needs (end + tail - open)

    @property
    def clock(self) -> Callable[[], float]:
        return self.scheduler.clock

    def _first_window(self, now: float) -> SampleWindow:
        # A window whose lead-in has passed cannot be sampled whole: take the next one.
        return self.scheduler.next_window(now + self.lead_s)

    def start(self, now: float | None = None) -> float:
        """Arm the driver; returns the time of the first step."""
        now = self.clock() if now is None else now
        self.target = self._first_window(now)
        self.state = DriverState.WAITING
        self._last_now = now
        return self.target.start - self.lead_s

    def stop(self) -> None:
        """Stop driving; a window in progress is closed (its partial data is dropped)."""
        if self.state is DriverState.SAMPLING and self.target is not None:
            self._guard("close_sampling", self.hooks.close_sampling, self.target)
        self.state = DriverState.STOPPED
        self.target = None

    def step(self, now: float | None = None) -> float | None:
        """Do what is due at ``now``; returns when to call again (None once stopped)."""
        now = self.clock() if now is None else now
        w = self.target
        if self.state is DriverState.STOPPED or w is None:
            return None
        last = self._last_now
        jumped = self._clock_jump(now)
        if jumped is not None:
            return jumped
        if self.state is DriverState.SAMPLING and last is not None:
            self._progress += max(0.0, now - last)  # clock time that only moves forward
        if self.state is DriverState.WAITING:
            if now < w.start - self.lead_s:
                return w.start - self.lead_s
            if now >= w.end:
                # Too late to sample any of it (a stalled process, a clock jump): skip to the next one.
                self.missed += 1
                self.bus.emit(now, "error", message=f"duty cycle: missed the window of period {w.period}")
                self.target = self._first_window(now)
                return self.target.start - self.lead_s
            self._guard("open_sampling", self.hooks.open_sampling, w)
            self.opened_at = now
            self._progress = 0.0
            self._open_for = max(0.0, w.end + self.tail_s - now)
            self._opened_steady = self.steady() if self.steady is not None else 0.0
            self.state = DriverState.SAMPLING
            late = max(0.0, now - w.start)  # a coarse clock (sim time steps) can open a little late
            self.bus.emit(
                now,
                "wake",
                period=w.period,
                what="sample window opens",
                window_start=w.start,
                late_s=round(late, 6),
            )
            return w.end + self.tail_s
        # SAMPLING: close at the window's end, or once the clock has moved forward by as much in all,
        # so clock steps backwards smaller than a jump cannot hold the subscription open longer.
        # With a steady clock, real time bounds it too: a step back between two looks at the clock is
        # invisible to the clock alone.
        remaining = self._open_for - self._progress
        if self.steady is not None:
            remaining = min(remaining, self._open_for - (self.steady() - self._opened_steady))
        if now < w.end + self.tail_s and remaining > 1e-9:
            return min(w.end + self.tail_s, now + remaining)
        self._guard("close_sampling", self.hooks.close_sampling, w)
        self._guard("infer_once", self.hooks.infer_once, w)
        done = self.clock()
        self._last_now = max(now, done)
        held = list(self.hooks.held_resources())
        if held and self.force_sleep is not None:
            # A wake without its sleep (a deactivate that failed or never came) would keep the engine
            # resident for the whole sleep: the 11 W idle minute of the fleet incident. Free it now.
            self._guard("force_sleep", lambda _w: self.force_sleep() if self.force_sleep else None, w)
            self.bus.emit(
                done,
                ERROR,
                what="engine",
                held=held,
                forced_sleep=True,
                message=f"duty cycle: engine still held {', '.join(held)} after the period; forced to sleep",
            )
            held = list(self.hooks.held_resources())
        opened = self.opened_at if self.opened_at is not None else w.start
        self.bus.emit(done, SLEEP, period=w.period, awake_s=round(max(0.0, done - opened), 6), held=held)
        self.periods += 1
        self.state = DriverState.WAITING
        self.target = self._first_window(max(done, w.end))
        return self.target.start - self.lead_s

    def _clock_jump(self, now: float) -> float | None:
        """Backwards (any amount over the tolerance) or forwards by more than a period: re-arm on the new time.

        Without this a clock moved back an hour left the driver waiting an hour for its next window
        (no inference) or, mid-window, kept the IMU subscription open for an hour. The window in
        progress is closed without inference (its frames belong to the old time), the next window is
        taken from the new time, and a ``clock_jump`` event says what happened. Returns the next step
        time when it re-armed, None when the clock moved normally.
        """
        last, self._last_now = self._last_now, now
        if last is None:
            return None
        delta = now - last
        if delta > self.scheduler.period_s + self.lead_s + self.tail_s:
            # Forwards by more than a period (or a process stalled that long: without a second clock the two
            # look the same). The normal step re-arms on the next window and counts the missed one.
            self.jumps += 1
            self.bus.emit(now, CLOCK_JUMP, delta_s=round(delta, 6), state=self.state.value)
            return None
        if delta >= -JUMP_TOLERANCE_S:
            return None
        self.jumps += 1
        was = self.state
        if was is DriverState.SAMPLING and self.target is not None:
            self._guard("close_sampling", self.hooks.close_sampling, self.target)
        if self.on_clock_jump is not None:
            try:
                self.on_clock_jump(delta)
            except Exception as exc:  # noqa: BLE001 - the duty cycle must re-arm whatever failed
                self.errors += 1
                self.bus.emit(now, ERROR, message=f"duty cycle clock jump hook: {type(exc).__name__}: {exc}")
        self.state = DriverState.WAITING
        self.target = self._first_window(now)
        self.bus.emit(
            now, CLOCK_JUMP, delta_s=round(delta, 6), state=was.value, next_window=self.target.start
        )
        if was is DriverState.SAMPLING:
            self.bus.emit(
                now,
                SLEEP,
                period=self.target.period - 1,
                awake_s=0.0,
                held=list(self.hooks.held_resources()),
                what="window abandoned after a clock jump",
            )
        return self.target.start - self.lead_s

    def _guard(self, what: str, fn: Callable[[SampleWindow], None], w: SampleWindow) -> None:
        """A failing step is an error event with its traceback; the cycle goes on (and sleeps)."""
        try:
            fn(w)
        except Exception as exc:  # noqa: BLE001 - the duty cycle must keep sleeping whatever failed
            self.errors += 1
            self.bus.emit(
                self.clock(),
                "error",
                message=f"duty cycle {what}: {type(exc).__name__}: {exc}",
                traceback=traceback.format_exc(),
            )
