"""The alarm's diagnosis as metrics: where the latest alarm places the fault, its line, its growth; and
the latest batch's order ratio (speed-aware scoring, ``core.order_calibration``); and how many scored
batches had a knock cut out first (``core.knock_gate``: a floor that knocks the robot often shows here),
and how many were not scored because a knock dominated them and could not be cut out, or because the
shaft ran at a speed the calibration was not made at (``core.speed.SpeedGuard``).

``location`` is the only label, from the fixed set of ``core.events.LOCATIONS`` (anything else is
``unknown``): a frequency is a gauge's value, never a label, so an alarm cannot add a series.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from vibration_anomaly.telemetry.metrics_labels import LOCATIONS, NAMESPACE, number


class AlarmDiagnosisMetrics:
    """``alarm_location_info{location}``, ``alarm_defect_frequency_hertz``, ``alarm_score_growth_ratio``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, labelnames=labels, namespace=NAMESPACE, registry=registry)

        self.location = gauge(
            "alarm_location_info",
            "1 for the likely location of the latched alarm, 0 for the others.",
            ("location",),
        )
        self.frequency = gauge(
            "alarm_defect_frequency_hertz",
            "Envelope line that carries the latched alarm's location (NaN: none).",
        )
        self.growth = gauge(
            "alarm_score_growth_ratio",
            "Score ratio when the latched alarm was raised over the oldest of the trend (NaN: too few points).",
        )
        self.order_ratio = gauge(
            "order_ratio",
            "Speed-aware scoring: the latest batch's defect-line strength over its threshold (> 1: above); "
            "NaN when the order part did not score it (off, or no fresh speed).",
        )
        self.order_ratio.set(math.nan)
        self.knocked = Counter(
            "knocked_windows",
            "Scored batches a knock was cut out of before scoring (core.knock_gate), on any axis.",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.knock_unscored = Counter(
            "knock_unscored_windows",
            "Batches not scored because a knock dominated them and could not be cut out "
            "(core.knock_gate.uncut_knock; a skip event with reason knock): not voted.",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.speed_unscored = Counter(
            "speed_unscored_windows",
            "Batches not scored because the shaft ran at a speed the calibration was not made at "
            "(core.speed.SpeedGuard; a skip event with reason speed): not voted.",
            namespace=NAMESPACE,
            registry=registry,
        )
        self._on_alarm_reset(0.0, {})

    def _on_skip(self, t: float, event: Mapping[str, Any]) -> None:
        if event.get("reason") == "knock":
            self.knock_unscored.inc()
        elif event.get("reason") == "speed":
            self.speed_unscored.inc()

    def _on_infer(self, t: float, event: Mapping[str, Any]) -> None:
        r = event.get("order_ratio")
        self.order_ratio.set(math.nan if r is None else number("infer event", "order_ratio", r))
        if event.get("knocked_axes"):
            self.knocked.inc()

    def _set(self, where: str, frequency: float, growth: float) -> None:
        for location in LOCATIONS:
            self.location.labels(location=location).set(1 if location == where else 0)
        self.frequency.set(frequency)
        self.growth.set(growth)

    def _on_alarm(self, t: float, event: Mapping[str, Any]) -> None:
        where = str(event.get("location") or "unknown").strip().lower()
        values = [event.get(k) for k in ("frequency_hz", "trend_change")]
        f, s = (
            math.nan if v is None else number("alarm event", "diagnosis", v, allow_negative=True)
            for v in values
        )
        self._set(where if where in LOCATIONS else "unknown", f, s)

    def _on_alarm_reset(self, t: float, event: Mapping[str, Any]) -> None:
        self._set("", math.nan, math.nan)
