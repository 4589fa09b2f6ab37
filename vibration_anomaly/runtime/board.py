"""The health board: the runtime's state as the ``core.health`` checks (``diagnostics`` shows them).

Each task is a ``core.health.HealthTask`` over a small function of the runtime's state, so the
diagnostics node only registers them and the logic is tested without ROS.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from vibration_anomaly.core.health import (
    ERROR,
    OK,
    STALE,
    WARN,
    BacklogCounts,
    Health,
    HealthTask,
    alarm_health,
    bundle_health,
    duty_cycle_health,
    model_health,
    power_health,
)
from vibration_anomaly.core.window import REJECT_BEFORE_WINDOW

if TYPE_CHECKING:
    from vibration_anomaly.runtime.runtime import DetectorRuntime


def health_tasks(rt: DetectorRuntime) -> list[HealthTask]:
    return [
        HealthTask("duty cycle", lambda: duty(rt)),
        HealthTask("power", lambda: power(rt)),
        HealthTask("backlog", lambda: backlog(rt)),
        HealthTask("model", lambda: model(rt)),
        HealthTask("bundle", lambda: bundle(rt)),
        HealthTask("sensor", lambda: sensor(rt)),
        HealthTask("storage", lambda: storage(rt)),
        HealthTask("alarm", lambda: alarm(rt)),
    ]


def duty(rt: DetectorRuntime) -> Health:
    b, m = rt.bundle, rt.monitor
    if b is None or m is None:
        return Health(STALE, f"not configured (lifecycle {rt.lifecycle_label()})")
    h, scale = b.health, rt.scale
    return duty_cycle_health(
        m.snapshot(),
        sample_s=rt.sample_s,
        period_s=rt.period_s,
        period_tolerance_s=h.period_tolerance_s * scale,
        awake_fraction_max=h.awake_fraction_max,
        now=rt.now(),
        driver_enabled=rt.driver_enabled,
    )


def power(rt: DetectorRuntime) -> Health:
    if rt.power is None:
        return Health(WARN, "no power source (vibration_anomaly.power unavailable)")
    asleep = rt.detector is None or rt.detector.residency().asleep
    if asleep:
        rt.read_power("asleep")
    held = () if rt.active or rt.detector is None else rt.detector.residency().awake_resources()
    return power_health(
        source=str(getattr(rt.power, "source", getattr(rt.power, "name", "?"))),
        modelled=bool(getattr(rt.power, "modelled", True)),
        asleep_w=rt.watts.get("asleep"),
        awake_w=rt.watts.get("awake"),
        asleep_power_max_w=rt.bundle.health.asleep_power_max_w if rt.bundle else None,
        held_while_asleep=tuple(held),
    )


def backlog(rt: DetectorRuntime) -> Health:
    q = rt.queue
    if q is None:
        return Health(STALE, "not configured")
    s = rt.sampler
    rejected = {**dict(s.windower.rejected), **dict(s.rejected)} if s is not None else {}
    st = q.stats
    return rt.backlog(
        BacklogCounts(
            queue_bound=q.bound,
            queue_depth=len(q),
            queue_max_depth=st.max_depth,
            dropped_frames=st.dropped_frames,
            dropped_overflow=st.dropped_overflow,
            refused_stale=st.refused_stale,
            rejected=rejected,
            before_window=rejected.get(REJECT_BEFORE_WINDOW, 0),
        )
    )


def model(rt: DetectorRuntime) -> Health:
    d, pl = rt.detector, rt.pipeline
    res = d.residency() if d is not None else None
    return model_health(
        lifecycle_state=rt.lifecycle_label(),
        backend=pl.engine.name if pl else None,
        model=pl.model if pl else None,
        engine_state=res.state.value if res else None,
        held=res.held if res else (),
        inferences=d.inferences if d else 0,
        errors=d.errors if d else 0,
        last_error=rt.last_error,
        backend_reason=pl.backend_reason if pl else None,
        knock_unscored=d.knock_unscored if d else 0,
        speed_unscored=d.speed_unscored if d else 0,
        unwatched_streak=d.unwatched_streak if d else 0,
        last_unscored=d.last_unscored if d else "",
    )


def bundle(rt: DetectorRuntime) -> Health:
    b, r = rt.bundle, rt.refused
    return bundle_health(
        version=b.version if b else None,
        key_id=b.key_id if b else None,
        source=b.source_path if b else (r.source if r else None),
        refused_reason=r.reason if r else None,
        refused_detail=r.detail if r else None,
        expired=b.is_expired(time.time()) if b else False,
        dev_key=b.signed_with_dev_key if b else False,
    )


def sensor(rt: DetectorRuntime) -> Health:
    """The IMU itself: dead, stuck, clipped, wrong rate, loose mount (never a bearing alarm)."""
    watch = rt.detector.sensor if rt.detector is not None else None
    if watch is None or watch.last is None:
        return Health(STALE, "no batch checked yet" if watch is not None else "not configured")
    rep = watch.last
    values: dict[str, object] = {f"batches with {k}": n for k, n in sorted(watch.counts.items())}
    values["loose-mount check"] = "on" if watch.baseline_rms else "off (calibration has no sensor baseline)"
    return Health(rep.level, rep.message, values)


def storage(rt: DetectorRuntime) -> Health:
    """Writes the robot depends on: the event log, the alarm latch, the rollback state."""
    log = rt.event_log
    values: dict[str, object] = {"event log": str(log.path) if log is not None else "off"}
    if log is not None:
        values.update(
            {"write failures": log.failures, "lines waiting": log.pending, "lines dropped": log.dropped}
        )
    if rt.storage_errors:
        what, why = next(iter(rt.storage_errors.items()))
        more = len(rt.storage_errors) - 1
        return Health(
            ERROR,
            f"{what}: {why}" + (f" (+{more} more)" if more else "") + "; the detector keeps running",
            values,
        )
    if log is None:
        return Health(WARN, 'event log off (event_log:="")', values)
    return Health(OK, f"event log {log.path}", values)


def alarm(rt: DetectorRuntime) -> Health:
    """The bearing alarm: latched or not, and the diagnosis of the window that raised it."""
    d = rt.detector
    if d is None:
        return Health(STALE, "not configured")
    diag = d.diagnoser
    last = diag.last if diag is not None else None
    return alarm_health(
        latched=d.voter.latched,
        diagnosis=None if last is None else last.fields(),
        trend=diag.trend.summary() if diag is not None else {},
        raised_t=diag.last_t if diag is not None else None,
    )
