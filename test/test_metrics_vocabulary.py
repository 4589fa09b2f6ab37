"""The fleet's metrics speak the pipeline's vocabulary (core.events): no cause folded into ``other``.

The node and the demo once named the same drop differently and metrics folded both into ``other``;
the sensor, storage and clock-jump faults must reach the fleet as well as the diagnostics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from vibration_anomaly.core import events
from vibration_anomaly.telemetry.metrics import RobotMetrics


def _value(reg: CollectorRegistry, name: str, **labels: str) -> float | None:
    return reg.get_sample_value(f"vibration_anomaly_{name}", labels or None)


def test_every_event_name_and_drop_reason_has_its_own_label() -> None:
    reg = CollectorRegistry()
    m = RobotMetrics(reg)
    for i, name in enumerate(sorted(events.EVENT_NAMES)):
        m.observe_event(
            {
                "t": float(i),
                "event": name,
                "frames": 1,
                "count": 1,
                "reason": "keep_last",
                "score": 0.1,
                "threshold": 1.0,
                "above": False,
                "alarm": False,
                "awake_s": 0.0,
                "level": "OK",
                "ok": True,
            }
        )
    for name in events.EVENT_NAMES:
        assert _value(reg, "events_total", event=name) == 1.0, name
    assert _value(reg, "events_total", event="other") in (None, 0.0)
    for i, reason in enumerate(sorted(events.DROP_REASONS)):
        m.observe_event({"t": 100.0 + i, "event": "drop", "frames": 7, "reason": reason})
    for reason in events.DROP_REASONS:
        assert (_value(reg, "frames_dropped_total", reason=reason) or 0) >= 7, reason
    assert (_value(reg, "frames_dropped_total", reason="other") or 0) == 0


def test_sensor_and_storage_faults_reach_the_fleet() -> None:
    reg = CollectorRegistry()
    m = RobotMetrics(reg)
    m.observe_event(
        {"t": 1.0, "event": "sensor", "level": "ERROR", "kinds": ["dead_channel"], "message": "dead"}
    )
    m.observe_event(
        {"t": 2.0, "event": "storage", "ok": False, "what": "event log", "message": "No space left"}
    )
    assert _value(reg, "sensor_health_level") == 2.0 and _value(reg, "storage_failing") == 1.0
    m.observe_event({"t": 3.0, "event": "sensor", "level": "OK", "kinds": [], "message": "sensor OK"})
    m.observe_event(
        {"t": 4.0, "event": "storage", "ok": True, "what": "event log", "message": "written again"}
    )
    assert _value(reg, "sensor_health_level") == 0.0 and _value(reg, "storage_failing") == 0.0


def test_the_alarms_diagnosis_is_a_location_label_and_numbers_never_a_frequency_label() -> None:
    reg = CollectorRegistry()
    m = RobotMetrics(reg)
    for loc in events.LOCATIONS:  # every location is a series from the start, all 0: no alarm
        assert _value(reg, "alarm_location_info", location=loc) == 0.0
    m.observe_event(
        {
            "t": 1.0,
            "event": "alarm",
            "score": 2.0,
            "threshold": 1.0,
            "location": "outer_race",
            "frequency_hz": 86.04,
            "trend_change": 1.8,
        }
    )
    assert _value(reg, "alarm_location_info", location="outer_race") == 1.0
    assert _value(reg, "alarm_location_info", location="unknown") == 0.0
    assert _value(reg, "alarm_defect_frequency_hertz") == 86.04
    assert _value(reg, "alarm_score_growth_ratio") == 1.8
    # A location outside the vocabulary is "unknown", never a new series.
    m.observe_event({"t": 2.0, "event": "alarm", "location": "left wheel at 86 Hz", "frequency_hz": None})
    assert _value(reg, "alarm_location_info", location="unknown") == 1.0
    assert _value(reg, "alarm_location_info", location="outer_race") == 0.0
    assert _value(reg, "alarm_location_info", location="left wheel at 86 hz") is None
    m.observe_event({"t": 3.0, "event": "alarm_reset", "who": "op", "why": "replaced", "was_latched": True})
    assert all(_value(reg, "alarm_location_info", location=loc) == 0.0 for loc in events.LOCATIONS)
    series = {s.labels.get("location") for f in reg.collect() for s in f.samples if "location" in s.labels}
    assert series == set(events.LOCATIONS)
