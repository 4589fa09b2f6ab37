"""Health of the running pipeline as OK / WARN / ERROR with a message and key-values, without ROS.

Each check is a small function of plain numbers and the verified bundle's
``health`` thresholds, returning a :class:`Health`. :class:`HealthTask` wraps
one of them in the ``diagnostic_updater.DiagnosticTask`` shape (``name`` and
``run(stat)`` calling ``stat.summary(level, message)`` and ``stat.add(key,
value)``), so the ROS node only registers tasks, and tests run them on a
:class:`StatusRecord` here. Levels are ``diagnostic_msgs/DiagnosticStatus``'s
byte values.

:class:`DutyCycleMonitor` turns the pipeline's ``wake`` / ``sleep`` / ``infer``
events (the same stream the metrics and the event log read) into the observed
period and awake fraction the duty-cycle check compares with the bundle.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

OK = 0
WARN = 1
ERROR = 2
STALE = 3
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}


@dataclass(frozen=True)
class Health:
    level: int
    message: str
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def level_name(self) -> str:
        return LEVEL_NAMES[self.level]


class StatusLike(Protocol):
    """The part of ``diagnostic_updater.DiagnosticStatusWrapper`` a task uses."""

    def summary(self, level: int, message: str) -> Any: ...

    def add(self, key: str, value: str) -> Any: ...


@dataclass
class StatusRecord:
    """A plain ``StatusLike``: what a task reported (tests, and the fallback publisher)."""

    level: int = STALE
    message: str = ""
    values: list[tuple[str, str]] = field(default_factory=list)

    def summary(self, level: int, message: str) -> None:
        self.level, self.message = int(level), str(message)

    def add(self, key: str, value: str) -> None:
        self.values.append((str(key), str(value)))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return str(v)


class HealthTask:
    """``DiagnosticTask``-shaped: ``run(stat)`` fills the status from ``check()``; never raises."""

    def __init__(self, name: str, check: Callable[[], Health]) -> None:
        self.name = name
        self.check = check

    def run(self, stat: StatusLike) -> StatusLike:
        try:
            h = self.check()
        except Exception as exc:  # noqa: BLE001 - a broken check must show, not kill diagnostics
            h = Health(ERROR, f"health check failed: {type(exc).__name__}: {exc}")
        stat.summary(h.level, h.message)
        for k, v in h.values.items():
            stat.add(k, _fmt(v))
        return stat


# ------------------------------------------------------------------------ duty cycle


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

    def __call__(self, event: Mapping[str, Any]) -> None:
        name, t = event.get("event"), float(event.get("t", math.nan))
        with self._lock:
            if name == "clock_jump":
                # Periods measured across a jump are meaningless (negative, or hours long): start over.
                self.clock_jumps += 1
                self.last_jump = (t, float(event.get("delta_s", math.nan)))
                self._wakes.clear()
                self._awake.clear()
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


# ----------------------------------------------------------------------------- power


def power_health(
    *,
    source: str,
    modelled: bool,
    asleep_w: float | None,
    awake_w: float | None,
    asleep_power_max_w: float | None,
    held_while_asleep: tuple[str, ...] = (),
) -> Health:
    """Power source and watts asleep / awake.

    ERROR: the engine holds awake resources while the cycle is asleep (the
    GPU-kept-hot fault). WARN: asleep power above the bundle's limit (only
    checked on measured figures: a model cannot show a fault), or no reading.
    """
    values = {
        "source": source,
        "modelled": modelled,
        "watts asleep": math.nan if asleep_w is None else asleep_w,
        "watts awake": math.nan if awake_w is None else awake_w,
        "asleep max watts": "not checked" if asleep_power_max_w is None else asleep_power_max_w,
    }
    kind = "MODELLED" if modelled else "measured"
    if held_while_asleep:
        return Health(ERROR, f"asleep but holding {', '.join(held_while_asleep)}", values)
    if asleep_w is None and awake_w is None:
        return Health(WARN, f"no power reading yet ({source})", values)
    if (
        asleep_power_max_w is not None
        and asleep_w is not None
        and not modelled
        and asleep_w > asleep_power_max_w
    ):
        return Health(WARN, f"asleep at {asleep_w:.2f} W, over the {asleep_power_max_w:g} W limit", values)
    parts = [f"{s} {w:.2f} W" for s, w in (("asleep", asleep_w), ("awake", awake_w)) if w is not None]
    return Health(OK, f"{', '.join(parts)} ({kind}, {source})", values)


# --------------------------------------------------------------------------- backlog


@dataclass(frozen=True)
class BacklogCounts:
    """Cumulative counters from the queue and the input path."""

    queue_bound: int
    queue_depth: int
    queue_max_depth: int
    dropped_frames: int  # frames in batches dropped by the queue (overflow, superseded, stale)
    dropped_overflow: int  # batches pushed out by the bound
    refused_stale: int  # batches refused as older than the window
    rejected: Mapping[str, int]  # input frames refused, by reason (nonfinite, out_of_order, frame_id, ...)
    before_window: int = 0  # frames older than the window start (firmware burst, lead-in): refused, expected


_NOT_FAULTS = ("before_window",)


class BacklogHealth:
    """Backlog check with memory: WARN when anything was dropped or refused since the previous run."""

    def __init__(self) -> None:
        self._prev: BacklogCounts | None = None

    def __call__(self, c: BacklogCounts) -> Health:
        prev = self._prev
        self._prev = c
        bad_rejects = {k: int(v) for k, v in c.rejected.items() if k not in _NOT_FAULTS and v}
        values: dict[str, Any] = {
            "queue bound": c.queue_bound,
            "queue depth": c.queue_depth,
            "queue max depth": c.queue_max_depth,
            "frames dropped": c.dropped_frames,
            "batches dropped by the bound": c.dropped_overflow,
            "stale batches refused": c.refused_stale,
            "frames before window start": c.before_window,
            **{f"frames refused ({k})": v for k, v in sorted(bad_rejects.items())},
        }
        if c.queue_max_depth > c.queue_bound:
            return Health(
                ERROR, f"queue held {c.queue_max_depth} batches, over its bound {c.queue_bound}", values
            )
        new_drop = c.dropped_frames - (prev.dropped_frames if prev else 0)
        new_stale = c.refused_stale - (prev.refused_stale if prev else 0)
        prev_rej = prev.rejected if prev else {}
        new_rej = {
            k: v - int(prev_rej.get(k, 0)) for k, v in bad_rejects.items() if v - int(prev_rej.get(k, 0)) > 0
        }
        if new_drop or new_stale or new_rej:
            what = []
            if new_drop:
                what.append(f"{new_drop} frames dropped")
            if new_stale:
                what.append(f"{new_stale} stale batches refused")
            what += [f"{v} {k} frames refused" for k, v in sorted(new_rej.items())]
            return Health(WARN, "since last report: " + ", ".join(what), values)
        return Health(OK, "no backlog", values)


# ----------------------------------------------------------------------- model/engine


def model_health(
    *,
    lifecycle_state: str,
    backend: str | None,
    model: str | None,
    engine_state: str | None,
    held: tuple[str, ...] = (),
    inferences: int = 0,
    errors: int = 0,
    last_error: str | None = None,
    backend_reason: str | None = None,
) -> Health:
    """ERROR when the node is unconfigured or failed (no model loaded); WARN after inference errors."""
    values = {
        "lifecycle state": lifecycle_state,
        "backend": backend or "none",
        "backend choice": backend_reason or "none",
        "model": model or "none",
        "engine state": engine_state or "none",
        "engine holds": ", ".join(held) or "nothing",
        "inferences": inferences,
        "inference errors": errors,
    }
    if last_error:
        values["last error"] = last_error
    if backend is None or engine_state in (None, "unloaded"):
        return Health(ERROR, f"no model loaded (lifecycle {lifecycle_state})", values)
    if errors:
        return Health(WARN, f"{errors} inference errors; last: {last_error or '?'}", values)
    return Health(OK, f"{backend} {engine_state}", values)


# ---------------------------------------------------------------------------- bundle


def bundle_health(
    *,
    version: int | None,
    key_id: str | None,
    source: str | None,
    refused_reason: str | None = None,
    refused_detail: str | None = None,
    expired: bool = False,
    dev_key: bool = False,
) -> Health:
    """ERROR while refused (the node will not run); WARN when expired or signed with the dev key."""
    values = {
        "version": "none" if version is None else version,
        "key id": key_id or "none",
        "file": source or "none",
        "refused": refused_reason or "no",
    }
    if refused_reason:
        values["refusal"] = refused_detail or ""
        return Health(ERROR, f"bundle refused ({refused_reason}): {refused_detail or ''}", values)
    if version is None:
        return Health(STALE, "no bundle loaded yet (configure the detector)", values)
    if expired:
        return Health(WARN, f"bundle v{version} is past its expiry; still running it", values)
    if dev_key:
        return Health(WARN, f"bundle v{version} signed with the DEVELOPMENT key {key_id}", values)
    return Health(OK, f"bundle v{version}, key {key_id}", values)
