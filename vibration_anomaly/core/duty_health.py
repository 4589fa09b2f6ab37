"""The duty cycle's health: observed period and awake fraction against the signed bundle, without ROS.

:class:`DutyCycleMonitor` turns the pipeline's ``wake`` / ``sleep`` / ``infer`` / ``clock_jump`` events
(the same stream the metrics and the event log read) into the observed period and awake fraction;
:func:`duty_cycle_health` compares them with the bundle (part of ``core.health``'s checks).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vibration_anomaly.core.health_levels import ERROR, OK, STALE, WARN, Health


@dataclass(frozen=True)
class DutySnapshot:
    wakes: int
    sleeps: int
    last_period_s: float  # nan until two wakes
    mean_period_s: float
    worst_period_error_s: float  # max |period - contract| over the recent periods
    awake_fraction: float  # awake seconds / elapsed seconds over the recent periods (nan until a period)
    last_wake_t: float | None
    last_held: tuple[str, ...]
    inferences: int
    skips: int
    clock_jumps: int = 0
    last_jump_t: float | None = None
    last_jump_s: float | None = None
    forced_sleeps: int = 0
    last_forced_t: float | None = None


class DutyCycleMonitor:
    """An ``EventBus`` sink that keeps the last ``keep`` periods' timing. Thread-safe."""

    def __init__(self, period_s: float, keep: int = 10) -> None:
        self.period_s = float(period_s)
        self._wakes: deque[float] = deque(maxlen=keep + 1)
        self._awake: deque[tuple[float, float]] = deque(maxlen=keep)  # (wake t, awake_s)
        self._lock = threading.Lock()
        self.n_wakes = 0
        self.n_sleeps = 0
        self.inferences = 0
        self.skips = 0
        self.last_held: tuple[str, ...] = ()
        self.clock_jumps = 0
        self.last_jump: tuple[float, float] | None = None  # (t after the jump, delta_s)
        self.forced_sleeps = 0
        self.last_forced_t: float | None = None

    def __call__(self, event: Mapping[str, Any]) -> None:
        name, t = event.get("event"), float(event.get("t", math.nan))
        with self._lock:
            if name == "clock_jump":
                # Periods measured across a jump are meaningless (negative, or hours long): start over.
                self.clock_jumps += 1
                self.last_jump = (t, float(event.get("delta_s", math.nan)))
                self._wakes.clear()
                self._awake.clear()
            elif name == "error" and event.get("forced_sleep"):
                self.forced_sleeps += 1
                self.last_forced_t = t
            elif name == "wake":
                self._wakes.append(t)
                self.n_wakes += 1
            elif name == "sleep":
                self.n_sleeps += 1
                awake_s = float(event.get("awake_s", 0.0))
                self._awake.append((t - awake_s, awake_s))
                self.last_held = tuple(event.get("held", ()))
            elif name == "infer":
                self.inferences += 1
            elif name == "skip":
                self.skips += 1

    def snapshot(self) -> DutySnapshot:
        with self._lock:
            wakes = list(self._wakes)
            awake = list(self._awake)
            periods = [b - a for a, b in zip(wakes, wakes[1:], strict=False)]
            last = periods[-1] if periods else math.nan
            mean = sum(periods) / len(periods) if periods else math.nan
            worst = max((abs(p - self.period_s) for p in periods), default=math.nan)
            frac = math.nan
            if periods:
                # Awake time of the periods that are complete (wake .. next wake), over their length.
                span = wakes[-1] - wakes[0]
                first, last_wake = wakes[0], wakes[-1]
                awake_in = sum(a for start, a in awake if first - 1e-9 <= start < last_wake)
                frac = awake_in / span if span > 0 else math.nan
            jump_t, jump_s = self.last_jump if self.last_jump else (None, None)
            return DutySnapshot(
                self.n_wakes,
                self.n_sleeps,
                last,
                mean,
                worst,
                frac,
                wakes[-1] if wakes else None,
                self.last_held,
                self.inferences,
                self.skips,
                self.clock_jumps,
                jump_t,
                jump_s,
                self.forced_sleeps,
                self.last_forced_t,
            )


def duty_cycle_health(
    snap: DutySnapshot,
    *,
    sample_s: float,
    period_s: float,
    period_tolerance_s: float,
    awake_fraction_max: float,
    now: float,
    driver_enabled: bool = True,
) -> Health:
    """Observed period and awake fraction against the bundle.

    ERROR: no wake for more than two periods (the cycle stalled: nothing is
    sampled, or the robot is stuck awake), or the engine still held resources
    after the last sleep. WARN: a recent period off by more than the
    tolerance, or awake longer than ``awake_fraction_max`` of the time.
    """
    values: dict[str, Any] = {
        "contract period_s": period_s,
        "contract sample_s": sample_s,
        "contract awake fraction": sample_s / period_s,
        "observed period_s (last)": snap.last_period_s,
        "observed period_s (mean)": snap.mean_period_s,
        "observed awake fraction": snap.awake_fraction,
        "awake fraction max": awake_fraction_max,
        "period tolerance_s": period_tolerance_s,
        "periods": snap.sleeps,
        "inferences": snap.inferences,
        "no fresh batch": snap.skips,
    }
    if not driver_enabled:
        return Health(OK, "driven by the supervisor (built-in duty-cycle driver off)", values)
    values["clock jumps"] = snap.clock_jumps
    recent_jump = snap.last_jump_t is not None and now - snap.last_jump_t < 2 * period_s
    if recent_jump or (snap.last_wake_t is not None and now < snap.last_wake_t - 1.0):
        values["last clock jump_s"] = snap.last_jump_s if snap.last_jump_s is not None else math.nan
        if snap.last_jump_s is not None:
            what = f"moved {'back' if snap.last_jump_s < 0 else 'forward'} {abs(snap.last_jump_s):.1f} s"
        else:
            assert snap.last_wake_t is not None
            what = f"reads {snap.last_wake_t - now:.1f} s before the last wake"
        return Health(WARN, f"clock jump: the clock {what}; the duty cycle re-armed on the new time", values)
    values["forced sleeps"] = snap.forced_sleeps
    if snap.last_forced_t is not None and now - snap.last_forced_t < 2 * period_s:
        return Health(
            WARN,
            "a period ended with the engine still awake (a wake without its sleep): forced to sleep",
            values,
        )
    if snap.last_wake_t is None:
        return Health(STALE, "waiting for the first duty period", values)
    silent = now - snap.last_wake_t
    values["seconds since last wake"] = silent
    if silent > 2 * period_s + period_tolerance_s:
        return Health(
            ERROR, f"duty cycle stalled: no wake for {silent:.1f} s (period {period_s:g} s)", values
        )
    if snap.last_held:
        return Health(ERROR, f"engine still holds {', '.join(snap.last_held)} after sleep", values)
    if math.isnan(snap.worst_period_error_s):
        return Health(OK, "first period running", values)
    if snap.worst_period_error_s > period_tolerance_s:
        return Health(
            WARN,
            f"period off by {snap.worst_period_error_s:.2f} s (tolerance {period_tolerance_s:g} s; "
            f"contract {period_s:g} s)",
            values,
        )
    if not math.isnan(snap.awake_fraction) and snap.awake_fraction > awake_fraction_max:
        return Health(
            WARN, f"awake {snap.awake_fraction:.1%} of the time (max {awake_fraction_max:.1%})", values
        )
    return Health(OK, f"period {snap.mean_period_s:.2f} s, awake {snap.awake_fraction:.1%}", values)
