"""One robot's Prometheus metrics, fed by the pipeline's event stream.

The pipeline already reports everything it does as flat event dicts (see
``vibration_anomaly.core.events``); this class turns that one stream into
metrics, so the trace file, the diagnostics and the fleet dashboards can never
disagree. Things that are not events (power readings, the verified bundle, the
backend in use) come in through a few explicit setters.

Naming follows the Prometheus conventions: base units in names (seconds,
watts, joules, ratio), ``_total`` on counters, and only low-cardinality label
values (the fixed sets of ``metrics_labels``; anything else is folded into ``other``). The robot's
identity is deliberately *not* a label here: it belongs to the Pushgateway
grouping key, so one registry is the same shape on every robot.

The registry is always passed in; library code never touches prometheus_client's
global default registry, so two robots (or a test's 400) can live in one process.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from vibration_anomaly.errors import InputError
from vibration_anomaly.telemetry.alarm_metrics import AlarmDiagnosisMetrics
from vibration_anomaly.telemetry.metrics_labels import (
    DROP_REASONS,
    KNOWN_EVENTS,
    NAMESPACE,
    POWER_STATES,
    REFUSAL_REASONS,
    REJECT_REASONS,
    fold,
    number,
)

DEFAULT_WINDOW_S = 600.0
"""Awake ratio is measured over this much of the pipeline clock: ten default duty periods."""


class RobotMetrics:
    """Prometheus metrics of one robot, registered in the registry you pass.

    Feed it with :meth:`observe_event` (wire it as an ``EventBus`` sink) and
    the setters :meth:`set_contract`, :meth:`set_power`, :meth:`set_bundle`,
    :meth:`set_bundle_refused`, :meth:`set_backend`. The pusher records its
    own interval and push times through :meth:`set_push_interval` and
    :meth:`mark_push`. All methods are thread-safe.

    Gauges that have not been observed yet (duty period before the second
    wake, contract before a bundle) hold NaN rather than 0, so an alert rule
    comparing them is false instead of firing on a robot that just booted.
    """

    def __init__(self, registry: CollectorRegistry, *, window_s: float = DEFAULT_WINDOW_S) -> None:
        if not isinstance(registry, CollectorRegistry):
            raise InputError(
                "RobotMetrics", "registry", f"expected a CollectorRegistry, got {type(registry).__name__}"
            )
        self.registry = registry
        self.window_s = number("RobotMetrics", "window_s", window_s)
        if self.window_s <= 0:
            raise InputError("RobotMetrics", "window_s", f"expected > 0, got {window_s!r}")
        self._lock = threading.Lock()
        ns, reg = NAMESPACE, registry

        def gauge(name: str, doc: str, labels: tuple[str, ...] = (), nan: bool = False) -> Gauge:
            g = Gauge(name, doc, labelnames=labels, namespace=ns, registry=reg)
            if nan and not labels:
                g.set(math.nan)
            return g

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labelnames=labels, namespace=ns, registry=reg)

        # Work done.
        self.inferences = counter("inferences", "Batches scored by the model.")
        self.events = counter("events", "Pipeline events seen, by event name.", ("event",))
        self.anomaly_score = gauge("anomaly_score", "Anomaly score of the latest scored batch.", nan=True)
        self.alarms = counter("alarms", "Bearing alarms raised.")
        self.alarm_active = gauge("alarm_active", "1 while the latest scored batch is an alarm.")
        self.diagnosis = AlarmDiagnosisMetrics(reg)  # location (a label), line and trend of the alarm
        # Duty cycle.
        self.duty_period = gauge(
            "duty_period_seconds",
            "Observed seconds between the last two wakes (NaN until two wakes).",
            nan=True,
        )
        self.duty_period_contract = gauge(
            "duty_period_contract_seconds", "Duty period the verified bundle demands.", nan=True
        )
        self.duty_sample_contract = gauge(
            "duty_sample_contract_seconds", "Sample window the verified bundle demands.", nan=True
        )
        self.awake = gauge("awake", "1 while the robot is awake (sampling or inferring).")
        self.awake_seconds = counter("awake_seconds", "Seconds spent awake, on the pipeline clock.")
        self.awake_ratio = gauge(
            "awake_ratio", "Share of the recent window (window_s of pipeline clock) spent awake.", nan=True
        )
        # Power.
        self.power = gauge("power_watts", "Latest power reading, by duty-cycle state.", ("state",))
        self.power_source = gauge(
            "power_source_info",
            "Where power figures come from; modelled=true means no sensor.",
            ("source", "modelled"),
        )
        self.energy = counter("energy_joules", "Energy used, by duty-cycle state.", ("state",))
        # Backpressure and stale data.
        self.frames_dropped = counter(
            "frames_dropped", "IMU frames dropped by backpressure, by reason.", ("reason",)
        )
        self.stale_refused = counter("stale_batches_refused", "Batches refused because they were stale.")
        self.stale_inferred = counter(
            "stale_batches_inferred", "Batches scored although older than the freshness bound: a replay."
        )
        self.batch_age = gauge(
            "batch_age_seconds", "Age of the latest scored batch when it was scored.", nan=True
        )
        self.inputs_rejected = counter(
            "inputs_rejected", "IMU samples refused as bad input, by reason.", ("reason",)
        )
        # Configuration and backend.
        # The sensor itself and the robot's own writes: faults that are not a bearing alarm.
        self.sensor_level = gauge(
            "sensor_health_level", "IMU sensor health of the latest checked batch: 0 OK, 1 WARN, 2 ERROR."
        )
        self.storage_failing = gauge(
            "storage_failing", "1 while a write the robot depends on fails (event log, alarm latch)."
        )
        self.bundle_info = gauge("bundle_info", "The verified config bundle in use (value 1).", ("version",))
        self.bundle_expired = gauge("bundle_expired", "1 when the bundle in use is past its expiry.")
        self.bundle_refused = gauge(
            "bundle_refused", "1, labelled by reason, while the latest bundle load was refused.", ("reason",)
        )
        self.bundle_refusals = counter("bundle_refusals", "Config bundles refused, by reason.", ("reason",))
        self.backend_info = gauge(
            "backend_info",
            "The inference backend in use and why it was chosen (value 1).",
            ("backend", "choice"),
        )
        # Push bookkeeping (written by the pusher).
        self.push_interval = gauge(
            "push_interval_seconds", "Seconds between pushes to the Pushgateway.", nan=True
        )
        self.last_push = gauge(
            "last_push_timestamp_seconds",
            "Robot wall clock (Unix seconds) when this state was pushed.",
            nan=True,
        )
        self.push_failures = counter("push_failures", "Pushes to the Pushgateway that failed.")

        for state in POWER_STATES:
            self.power.labels(state=state).set(math.nan)
            self.energy.labels(state=state)
        for reason in DROP_REASONS:
            self.frames_dropped.labels(reason=reason)

        # Pipeline-clock state behind the awake ratio and the duty period.
        self._first_t: float | None = None
        self._last_t: float | None = None
        self._awake_since: float | None = None
        self._accrued_to: float | None = None
        self._last_wake: float | None = None
        self._intervals: deque[tuple[float, float]] = deque(maxlen=4096)
        self._max_batch_age_s: float = math.inf
        self._contract_period: float = math.nan
        self._bundle_version: str | None = None
        self._backend: tuple[str, str] | None = None
        self._power_source: tuple[str, str] | None = None

    # ------------------------------------------------------------------ events
    def observe_event(self, event: Mapping[str, Any]) -> None:
        """Update the metrics from one pipeline event.

        Raises ``InputError`` for an event without a numeric ``t`` or an
        ``event`` name, or with a malformed field it needs; the ``EventBus``
        counts such errors instead of stopping the pipeline. Unknown event
        names are counted as ``other`` and otherwise ignored.
        """
        if not isinstance(event, Mapping):
            raise InputError("event", "<event>", f"expected a dict, got {type(event).__name__}")
        name = event.get("event")
        if not isinstance(name, str):
            raise InputError("event", "event", f"expected an event name string, got {name!r}")
        t = number(f"{name} event", "t", event.get("t"), allow_negative=True)
        with self._lock:
            self._advance(t)
            self.events.labels(event=fold(name, KNOWN_EVENTS)).inc()
            for owner in (self, self.diagnosis):
                handler = getattr(owner, f"_on_{name}", None)
                if handler is not None and name in KNOWN_EVENTS:
                    handler(t, event)
            self._update_ratio()

    def tick(self, t: float) -> None:
        """Advance the pipeline clock without an event, so time-based gauges stay current while idle or hung."""
        t = number("tick", "t", t, allow_negative=True)
        with self._lock:
            self._advance(t)
            self._update_ratio()

    def _on_wake(self, t: float, event: Mapping[str, Any]) -> None:
        if self._last_wake is not None and t > self._last_wake:
            self.duty_period.set(t - self._last_wake)
        self._last_wake = t
        if self._awake_since is None:
            self._awake_since = t
            self._accrued_to = t
        self.awake.set(1)

    def _on_sleep(self, t: float, event: Mapping[str, Any]) -> None:
        start = self._awake_since
        if start is None:
            # A sleep without a wake we saw (we started mid-cycle): trust the pipeline's own measure.
            awake_s = event.get("awake_s")
            if awake_s is None:
                return
            start = max(t - number("sleep event", "awake_s", awake_s), self._first_t or t)
            self.awake_seconds.inc(t - start)
        self._intervals.append((start, t))
        self._awake_since = None
        self._accrued_to = None
        self.awake.set(0)

    def _on_infer(self, t: float, event: Mapping[str, Any]) -> None:
        self.inferences.inc()
        if "score" in event and event["score"] is not None:
            self.anomaly_score.set(number("infer event", "score", event["score"], allow_negative=True))
        if "alarm" in event:
            self.alarm_active.set(1 if event["alarm"] else 0)
        else:
            self.alarm_active.set(0)  # an ``alarm`` event for this batch, if any, follows and sets it
        if event.get("batch_t1") is not None:
            age = t - number("infer event", "batch_t1", event["batch_t1"], allow_negative=True)
            self.batch_age.set(age)
            if age > self._max_batch_age_s:
                self.stale_inferred.inc()

    def _on_alarm(self, t: float, event: Mapping[str, Any]) -> None:
        self.alarms.inc()
        self.alarm_active.set(1)

    def _on_drop(self, t: float, event: Mapping[str, Any]) -> None:
        reason = fold(event.get("reason", "other"), DROP_REASONS)
        frames = event.get("frames", 0)
        self.frames_dropped.labels(reason=reason).inc(number("drop event", "frames", frames))
        if reason == "stale":
            self.stale_refused.inc(number("drop event", "count", event.get("count", 1)))

    def _on_sensor(self, t: float, event: Mapping[str, Any]) -> None:
        self.sensor_level.set({"OK": 0, "WARN": 1, "ERROR": 2}.get(str(event.get("level")), 2))

    def _on_storage(self, t: float, event: Mapping[str, Any]) -> None:
        self.storage_failing.set(0 if event.get("ok") else 1)

    def _on_stale(self, t: float, event: Mapping[str, Any]) -> None:
        self.stale_refused.inc(number("stale event", "count", event.get("count", 1)))
        if "frames" in event:
            self.frames_dropped.labels(reason="stale").inc(number("stale event", "frames", event["frames"]))

    def _on_reject(self, t: float, event: Mapping[str, Any]) -> None:
        reason = fold(event.get("reason", "other"), REJECT_REASONS)
        self.inputs_rejected.labels(reason=reason).inc(number("reject event", "count", event.get("count", 1)))

    # ------------------------------------------------------------ clock state
    def _advance(self, t: float) -> None:
        if self._first_t is None:
            self._first_t = t
        if self._last_t is None or t > self._last_t:
            self._last_t = t
        if self._awake_since is not None and self._accrued_to is not None and t > self._accrued_to:
            # Accrue while awake, not only at sleep: a robot that never sleeps must still show it.
            self.awake_seconds.inc(t - self._accrued_to)
            self._accrued_to = t

    def _update_ratio(self) -> None:
        if self._last_t is None or self._first_t is None:
            return
        now = self._last_t
        lo = now - self.window_s
        while self._intervals and self._intervals[0][1] <= lo:
            self._intervals.popleft()
        awake = sum(max(0.0, min(end, now) - max(start, lo)) for start, end in self._intervals)
        if self._awake_since is not None:
            awake += max(0.0, now - max(self._awake_since, lo))
        span = min(self.window_s, now - self._first_t)
        # Below one contract period (or a minute without a contract) the ratio says nothing.
        min_span = self._contract_period if math.isfinite(self._contract_period) else 60.0
        if span >= min(min_span, self.window_s) and span > 0:
            self.awake_ratio.set(min(1.0, awake / span))

    # ---------------------------------------------------------------- setters
    def set_contract(self, period_s: float, sample_s: float, *, max_batch_age_s: float | None = None) -> None:
        """Record the duty-cycle contract from the verified bundle; alert rules compare against it.

        A scored batch older than ``max_batch_age_s`` (default: one period,
        i.e. data from an earlier duty period) counts as a replay.
        """
        period = number("duty contract", "period_s", period_s)
        sample = number("duty contract", "sample_s", sample_s)
        if not 0 < sample < period:
            raise InputError(
                "duty contract", "sample_s", f"expected 0 < sample_s < period_s, got {sample}, {period}"
            )
        with self._lock:
            self.duty_period_contract.set(period)
            self.duty_sample_contract.set(sample)
            self._contract_period = period
            self._max_batch_age_s = (
                period
                if max_batch_age_s is None
                else number("duty contract", "max_batch_age_s", max_batch_age_s)
            )

    def set_power(
        self, watts: float, *, state: str, source: str, modelled: bool, duration_s: float | None = None
    ) -> None:
        """Record a power reading for ``state`` (asleep or awake).

        ``duration_s``, when the caller knows how long the reading stands for
        (e.g. the mean over a sleep), adds ``watts * duration_s`` to energy.
        ``source`` names the sensor (ina3221, nvml, tegrastats, model);
        ``modelled`` says the figure is computed, not measured.
        """
        if state not in POWER_STATES:
            raise InputError(
                "power reading", "state", f"expected one of {', '.join(POWER_STATES)}, got {state!r}"
            )
        w = number("power reading", "watts", watts)
        src = str(source).strip().lower() or "unknown"
        key = (src[:32], "true" if modelled else "false")
        with self._lock:
            self.power.labels(state=state).set(w)
            if duration_s is not None:
                self.energy.labels(state=state).inc(w * number("power reading", "duration_s", duration_s))
            if key != self._power_source:
                if self._power_source is not None:
                    self.power_source.remove(*self._power_source)
                self.power_source.labels(source=key[0], modelled=key[1]).set(1)
                self._power_source = key

    def add_energy(self, joules: float, *, state: str) -> None:
        """Add energy measured directly (an energy counter on the sensor), by duty-cycle state."""
        if state not in POWER_STATES:
            raise InputError(
                "energy reading", "state", f"expected one of {', '.join(POWER_STATES)}, got {state!r}"
            )
        self.energy.labels(state=state).inc(number("energy reading", "joules", joules))

    def set_bundle(self, version: str, *, expired: bool = False) -> None:
        """Record the bundle that verified and is in use; clears any earlier refusal."""
        version = str(version).strip()
        if not version:
            raise InputError("bundle", "version", "expected a non-empty version string")
        with self._lock:
            if self._bundle_version is not None and self._bundle_version != version:
                self.bundle_info.remove(self._bundle_version)
            self.bundle_info.labels(version=version).set(1)
            self._bundle_version = version
            self.bundle_expired.set(1 if expired else 0)
            self.bundle_refused.clear()

    def set_bundle_refused(self, reason: str) -> None:
        """Record that a bundle was refused (the process will not run inference with it)."""
        folded = fold(reason, REFUSAL_REASONS)
        with self._lock:
            self.bundle_refusals.labels(reason=folded).inc()
            self.bundle_refused.clear()
            self.bundle_refused.labels(reason=folded).set(1)
            if self._bundle_version is not None:
                self.bundle_info.remove(self._bundle_version)
                self._bundle_version = None

    def set_backend(self, name: str, choice: str = "configured") -> None:
        """Record the inference backend in use (onnxruntime, tensorrt ...) and why (``engine.select.reason_code``)."""
        name = str(name).strip().lower()[:32]
        if not name:
            raise InputError("backend", "name", "expected a non-empty backend name")
        key = (name, str(choice).strip().lower()[:32] or "configured")
        with self._lock:
            if self._backend is not None and self._backend != key:
                self.backend_info.remove(*self._backend)
            self.backend_info.labels(backend=key[0], choice=key[1]).set(1)
            self._backend = key

    def set_push_interval(self, interval_s: float) -> None:
        """The "robot silent" alert measures silence in missed pushes, so it needs the interval."""
        self.push_interval.set(number("pusher", "interval_s", interval_s))

    def mark_push(self, unix_time: float) -> None:
        self.last_push.set(unix_time)

    def count_push_failure(self) -> None:
        self.push_failures.inc()
