"""The shaft speed the alarm's diagnosis needs: a fixed ``shaft_hz``, or the latest reading of a speed topic.

The node translates each ``sensor_msgs/JointState`` on ``speed_topic`` with :func:`joint_speed_hz` (the
named joint's velocity in rad/s -> Hz) and hands it, with its stamp, to :meth:`ShaftSpeed.report`; the
runtime asks :meth:`ShaftSpeed.at` for the speed during the window it scored. A reading that is missing,
not a number, at a standstill, or stamped outside that window (stale) is *unknown*, with the reason
said, never a guess: the diagnosis then names no location. A fixed ``shaft_hz`` > 0 is the fallback
when the topic has nothing fresh (a robot that knows its nominal speed); 0 means unknown.

The topic's readings are kept for a while (``HISTORY``), so :meth:`ShaftSpeed.track` can follow the
speed *through* the window: the order score and the diagnosis read a window resampled to constant
speed (``core.order_track``) when the shaft sped up or slowed down while it was sampled.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vibration_anomaly.core.order_track import Tracked, track_window
from vibration_anomaly.errors import InputError

MIN_SHAFT_HZ = 0.5
"""Below half a turn per second no defect frequency can be resolved in a 5 s window: a standstill."""
MAX_SHAFT_HZ = 1000.0
"""60 000 rpm; above that a reading is a unit error (rpm given as rad/s, ...)."""
SPEED_MARGIN = 0.03
"""How far outside the speeds its calibration was made at (a fraction of them) a window is still scored.

Small on purpose, no safe margin exists: the simulated robot calibrated at a steady 24 Hz put every window
over its threshold at 25.2 Hz (+5 %, 1 kHz IMU), where its motor's second harmonic crossed a band edge
(docs/MODEL.md, "Speeds the calibration never saw"); 3 % lets a speed controller's jitter through."""
HISTORY = 8192
"""Topic readings kept for :meth:`ShaftSpeed.track`: over 5 s of a 1 kHz JointState, a minute of a 100 Hz one."""


def joint_speed_hz(names: Sequence[str], velocities: Sequence[float], joint: str) -> tuple[float | None, str]:
    """``(Hz, "")`` for ``joint``'s velocity (rad/s) in a JointState, or ``(None, why)``.

    The magnitude is used: a wheel turning backwards has the same defect frequencies.
    """
    names = list(names)
    if joint not in names:
        shown = ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")
        return None, f"joint {joint!r} not in the JointState (has {shown or 'no joints'})"
    i = names.index(joint)
    if i >= len(velocities):
        return (
            None,
            f"joint {joint!r} has no velocity in the JointState (velocity has {len(velocities)} entries)",
        )
    v = float(velocities[i])
    if not math.isfinite(v):
        return None, f"joint {joint!r} velocity is {v} (not a number)"
    return abs(v) / (2 * math.pi), ""


def joint_angle_turns(names: Sequence[str], positions: Sequence[float], joint: str) -> float:
    """``joint``'s position (rad) in a JointState, in turns; NaN where it has none (position is optional).

    Used for the shaft's angle by :meth:`ShaftSpeed.track` where it moves with the velocity
    (``core.order_track.angle_readings``); the speed itself always comes from the velocity.
    """
    names = list(names)
    i = names.index(joint) if joint in names else len(positions)  # past the end: no position
    v = float(positions[i]) if i < len(positions) else math.nan
    return v / (2 * math.pi) if math.isfinite(v) else math.nan


def usable_speed(hz: float) -> tuple[float | None, str]:
    """``(hz, "")``, or ``(None, why)`` for a standstill or a value no shaft turns at (a unit error)."""
    if hz < MIN_SHAFT_HZ:
        return None, f"{hz:.3g} Hz is a standstill (< {MIN_SHAFT_HZ:g} Hz)"
    if hz > MAX_SHAFT_HZ:
        return None, f"{hz:.4g} Hz is above {MAX_SHAFT_HZ:g} Hz (a unit error?)"
    return hz, ""


class ShaftSpeed:
    """The fixed speed, the latest topic reading (one tuple, replaced whole) and the recent ones (behind a lock)."""

    def __init__(self, fixed_hz: float = 0.0, topic: str = "") -> None:
        if isinstance(fixed_hz, bool) or not math.isfinite(fixed_hz) or fixed_hz < 0:
            raise ValueError(f"shaft_hz: expected a finite number >= 0 (0 = unknown), got {fixed_hz!r}")
        self.fixed_hz = float(fixed_hz)
        self.topic = topic
        self._latest: tuple[float | None, float, str] | None = None  # (Hz or None, stamp, why unknown)
        # (stamp, Hz or None, why unknown, the joint's position in turns or NaN)
        self._history: deque[tuple[float, float | None, str, float]] = deque(maxlen=HISTORY)
        self._lock = threading.Lock()  # the node's callback appends while the inference thread reads
        self._state = ""

    def report(self, hz: float | None, stamp: float, why: str = "", turns: float = math.nan) -> str | None:
        """Record a reading (None: unknown, ``why`` says so), with the joint's position in turns where the
        message has one (:func:`joint_angle_turns`). Returns a log line when the state changed."""
        if hz is not None:
            hz, why = usable_speed(hz)
        self._latest = (hz, float(stamp), why)
        with self._lock:
            self._history.append((float(stamp), hz, why, float(turns)))
        state = "known" if hz is not None else why
        if state == self._state:
            return None
        self._state = state
        where = f"speed on {self.topic}" if self.topic else "shaft speed"
        return f"{where}: {hz:.2f} Hz" if hz is not None else f"{where} unknown: {why}"

    def at(self, t0: float, t1: float) -> tuple[float | None, str]:
        """The speed during the window [t0, t1], and where it came from (or why it is unknown).

        A topic reading counts when it is stamped no more than one window before ``t0`` and no more than
        one window after ``t1``; otherwise it is stale and the fixed ``shaft_hz`` (if > 0) is used.
        """
        span = max(t1 - t0, 0.0)
        why = ""
        if self.topic:
            latest = self._latest
            if latest is None:
                why = f"no speed received on {self.topic}"
            else:
                hz, stamp, unknown = latest
                if not t0 - span <= stamp <= t1 + span:
                    why = (
                        f"speed on {self.topic} is stale (stamped {t0 - stamp:.1f} s before the window)"
                        if stamp < t0
                        else f"speed on {self.topic} is stamped {stamp - t1:.1f} s after the window (clock?)"
                    )
                elif hz is None:
                    why = f"speed on {self.topic} unknown: {unknown}"
                else:
                    return hz, f"{self.topic}"
        if self.fixed_hz > 0:
            return self.fixed_hz, "shaft_hz" + (f" ({why})" if why else "")
        return None, why or "shaft speed unknown (shaft_hz 0 and no speed_topic)"

    def track(self, window: np.ndarray, fs_hz: float, t0: float, t1: float) -> tuple[Tracked | None, str]:
        """``window`` (n, C), sampled over [t0, t1], at constant speed, and where the speed came from.

        ``(None, why)`` when the speed is unknown (as :meth:`at`), or was unknown for part of the window
        (a standstill, a NaN reading): no one speed or angle describes such a window. With two or more
        fresh readings that differ, the window is resampled to their mean speed (``core.order_track``,
        ``track_window``: at the joint's angle where its positions give it, else the speed integrated);
        otherwise it is returned as it is, at that (steady) speed.
        """
        hz, source = self.at(t0, t1)
        if hz is None or source != self.topic:  # unknown, or the fixed shaft_hz
            return (None if hz is None else Tracked(window, hz, 0.0, False)), source
        oldest = t0 - 2.0 * max(t1 - t0, 0.0)  # the freshness span, and one more for readings that came late
        readings: list[tuple[float, float | None, str, float]] = []
        with self._lock:
            for r in reversed(self._history):  # newest first: they arrive in about stamp order
                if r[0] < oldest:
                    break
                readings.append(r)
        stamps = np.array([r[0] for r in readings])
        values = np.array([np.nan if r[1] is None else r[1] for r in readings])
        got = track_window(window, fs_hz, t0, t1, stamps, values, np.array([r[3] for r in readings]))
        if got is None:
            inside = [r for r in readings if r[1] is None and t0 <= r[0] <= t1]
            return (
                None,
                f"speed on {self.topic} unknown during the window: {inside[0][2] if inside else '?'}",
            )
        return got, source


def speed_range(extra: Any, source: str = "calibration") -> tuple[float, float] | None:
    """A calibration's ``extra.speed_hz``, ``[lowest, highest]`` shaft speed of its windows, checked; None
    where it has none (made without a speed, or before speeds were recorded)."""
    got = extra.get("speed_hz") if isinstance(extra, dict) else None
    if got is None:
        return None
    ok = isinstance(got, list) and len(got) == 2
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in got)
    if not ok or not MIN_SHAFT_HZ <= got[0] <= got[1] <= MAX_SHAFT_HZ:
        raise InputError(
            source,
            "extra.speed_hz",
            f"expected [lowest, highest] shaft Hz within {MIN_SHAFT_HZ:g}-{MAX_SHAFT_HZ:g}, got {got!r}",
        )
    return float(got[0]), float(got[1])


@dataclass(frozen=True)
class SpeedGuard:
    """Windows at a shaft speed the calibration never saw are not scored (``Detector``: a ``skip``, reason
    ``speed``). A healthy machine at another speed is another machine to the model: its motor and mesh
    lines move across band edges, and it scores like a fault. Where the speed is unknown the window is
    scored as without the guard (a missing topic must not blind the detector; ``ShaftSpeed.at`` says)."""

    low_hz: float
    high_hz: float
    speed: ShaftSpeed
    margin: float = SPEED_MARGIN

    def check(self, t0: float, t1: float) -> str:
        """Why the window [t0, t1] is not to be scored ("" when it is)."""
        hz, _source = self.speed.at(t0, t1)
        if hz is None or self.low_hz * (1 - self.margin) <= hz <= self.high_hz * (1 + self.margin):
            return ""
        made = (
            f"{self.low_hz:.2f} Hz"
            if self.high_hz == self.low_hz
            else f"{self.low_hz:.2f}-{self.high_hz:.2f} Hz"
        )
        return (
            f"shaft at {hz:.2f} Hz, outside the {made} the calibration was made at (+-{self.margin:.0%}): "
            "recalibrate on a recording across the robot's speeds"
        )
