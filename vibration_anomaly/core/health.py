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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from vibration_anomaly.core.health_levels import ERROR, LEVEL_NAMES, OK, STALE, WARN, Health  # noqa: F401


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


from vibration_anomaly.core.duty_health import (  # noqa: E402,F401 - re-exported: part of core.health's API
    DutyCycleMonitor,
    DutySnapshot,
    duty_cycle_health,
)

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


UNWATCHED_STREAK_WARN = 3
"""Batches in a row left unscored, for a knock or a shaft speed, before the model diagnostic warns (3 duty periods unwatched)."""


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
    knock_unscored: int = 0,
    speed_unscored: int = 0,
    unwatched_streak: int = 0,
    last_unscored: str = "",
) -> Health:
    """ERROR when the node is unconfigured or failed (no model loaded); WARN after inference errors, or
    when the last :data:`UNWATCHED_STREAK_WARN` batches or more were all left unscored (``unwatched_streak``:
    the bearing is not being watched), for a knock (``core.knock_gate.uncut_knock``) or a shaft speed the
    calibration never saw (``core.speed.SpeedGuard``), in any mix; ``last_unscored`` says why the latest was."""
    values = {
        "lifecycle state": lifecycle_state,
        "backend": backend or "none",
        "backend choice": backend_reason or "none",
        "model": model or "none",
        "engine state": engine_state or "none",
        "engine holds": ", ".join(held) or "nothing",
        "inferences": inferences,
        "inference errors": errors,
        "not scored (knock)": knock_unscored,
        "not scored (speed)": speed_unscored,
    }
    if last_error:
        values["last error"] = last_error
    if backend is None or engine_state in (None, "unloaded"):
        return Health(ERROR, f"no model loaded (lifecycle {lifecycle_state})", values)
    if errors:
        return Health(WARN, f"{errors} inference errors; last: {last_error or '?'}", values)
    if unwatched_streak >= UNWATCHED_STREAK_WARN:
        return Health(WARN, f"last {unwatched_streak} batches not scored: {last_unscored or '?'}", values)
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


# ----------------------------------------------------------------------------- alarm


def alarm_health(
    *, latched: bool, diagnosis: Mapping[str, Any] | None, trend: Mapping[str, Any], raised_t: float | None
) -> Health:
    """WARN while a bearing alarm is latched, with its diagnosis (location, frequency, trend); else OK.

    ``diagnosis`` is the ``alarm`` event's fields (``core.diagnosis.Diagnosis.fields``); None when the
    alarm was raised before this process started (the durable latch) and has not been diagnosed here.
    """
    from vibration_anomaly.core.diagnosis import describe

    values: dict[str, Any] = {"latched": "yes" if latched else "no"}
    if latched and diagnosis is not None:  # after a reset the last diagnosis is history, not shown
        for key, label in (
            ("location", "location"),
            ("frequency_hz", "frequency Hz"),
            ("order", "order (x shaft)"),
            ("shaft_hz", "shaft Hz"),
            ("speed_source", "speed from"),
            ("line_ratio", "line over median"),
            ("envelope_peak_hz", "strongest envelope line Hz"),
            ("diagnosis", "diagnosis"),
        ):
            v = diagnosis.get(key)
            values[label] = "unknown" if v is None or v == "" else v
        if raised_t is not None:
            values["diagnosed at t"] = raised_t
    for key, label in (
        ("trend_slope_per_h", "score ratio slope per hour"),
        ("trend_change", "score ratio now / oldest kept"),
        ("trend_inferences", "trend inferences"),
    ):
        v = trend.get(key)
        values[label] = "n/a" if v is None else v
    if not latched:
        return Health(OK, "no bearing alarm", values)
    if diagnosis is None:
        return Health(
            WARN, "bearing ALARM latched (raised before this start; no diagnosis in this process)", values
        )
    return Health(WARN, f"bearing ALARM latched: {describe({**diagnosis, **trend})}", values)
