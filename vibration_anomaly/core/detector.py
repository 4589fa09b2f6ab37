"""The detector as a plain object: load / wake / infer the newest batch / sleep / unload.

The demo drives it directly on simulated time; the ROS lifecycle node maps its
transitions onto these calls (configure = load, activate = wake, deactivate =
sleep, cleanup = unload). Keeping the sequence here means the power contract
(nothing held while asleep, never a stale batch) is tested once, without ROS.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vibration_anomaly.core.diagnosis import Diagnoser
from vibration_anomaly.core.events import ALARM, ALARM_RESET, ERROR, LOCATION_UNKNOWN, SENSOR, SKIP, EventBus
from vibration_anomaly.core.latch import AlarmLatch
from vibration_anomaly.core.order_check import OrderCheck, OrderReading
from vibration_anomaly.core.queue import LatestBatchQueue
from vibration_anomaly.core.sensor_health import ERROR as SENSOR_ERROR
from vibration_anomaly.core.sensor_health import LEVEL_NAMES, OK, SensorReport
from vibration_anomaly.core.sensor_watch import SensorWatch
from vibration_anomaly.core.window import Batch
from vibration_anomaly.engine.base import Engine, EngineState, Residency


class ScoredLike(Protocol):
    @property
    def score(self) -> float: ...

    @property
    def threshold(self) -> float: ...


class ScorerLike(Protocol):
    """``core.scoring.Scorer``: window -> features -> engine -> score against the machine's threshold."""

    def score_window(self, window: np.ndarray, fs_hz: float, source: str = ...) -> ScoredLike: ...


class SpeedGuardLike(Protocol):
    """``core.speed.SpeedGuard``: why a window at a speed the calibration never saw is not scored ("" if it is)."""

    def check(self, t0: float, t1: float) -> str: ...


class VoterLike(Protocol):
    """``core.scoring.AlarmVoter``: k-of-n vote, latched."""

    @property
    def latched(self) -> bool: ...

    def update(self, score_above_threshold: bool) -> bool: ...

    def restore(self) -> None: ...

    def reset(self) -> None: ...


@dataclass(frozen=True)
class Verdict:
    t: float
    batch_t0: float
    batch_t1: float
    score: float
    threshold: float
    above: bool
    alarm: bool  # latched alarm state after this vote
    raised: bool  # True only on the inference that raised the alarm
    infer_s: float  # wall seconds spent in frontend + engine (+ order score)
    order_ratio: float | None = None  # the order part's ratio (> 1: above), None when it did not score


class Detector:
    """Owns one engine; infers only while awake, only on the newest fresh batch."""

    def __init__(
        self,
        engine: Engine,
        scorer: ScorerLike,
        voter: VoterLike,
        queue: LatestBatchQueue,
        bus: EventBus,
        clock: Callable[[], float],
        threshold_override: float | None = None,
        sensor: SensorWatch | None = None,
        latch: AlarmLatch | None = None,
        diagnoser: Diagnoser | None = None,
        orders: OrderCheck | None = None,
        speed_guard: SpeedGuardLike | None = None,
    ) -> None:
        self.engine = engine
        self.speed_guard = speed_guard  # None: the calibration records no speeds (or none is known)
        self.diagnoser = diagnoser
        self.orders = orders  # speed- and bearing-aware scoring (core.order_calibration); None: model alone
        self.threshold_override = threshold_override
        self.scorer = scorer
        self.voter = voter
        self.queue = queue
        self.bus = bus
        self.clock = clock
        self.sensor = sensor
        self._sensor_level = OK
        self.latch = latch
        if latch is not None and latch.latched:
            voter.restore()  # raised before a restart or reconfigure: still raised until reset
        self.inferences = 0
        self.errors = 0
        self.knock_unscored = 0  # batches not scored: a knock left in (core.knock_gate.uncut_knock)
        self.speed_unscored = 0  # batches not scored: a shaft speed the calibration never saw (SpeedGuard)
        self.unwatched_streak = 0  # batches in a row not scored, for either reason (the model diagnostic)
        self.last_unscored = ""  # why the latest of them was not

    @property
    def awake(self) -> bool:
        return self.engine.state is EngineState.AWAKE

    def residency(self) -> Residency:
        return self.engine.residency()

    def configure(self, model_path: Path) -> None:
        self.engine.load(model_path)

    def activate(self) -> float:
        """Wake the engine (session / GPU context, buffers, stream); returns the seconds it took.

        The duty-cycle driver, not this object, emits the ``wake`` / ``sleep``
        events, because a duty period's awake time starts when sampling starts.
        """
        start = time.perf_counter()
        self.engine.wake()
        return time.perf_counter() - start

    def deactivate(self) -> float:
        """Synchronize and free everything the engine woke with; returns the seconds it took."""
        start = time.perf_counter()
        self.engine.sleep()
        return time.perf_counter() - start

    def cleanup(self) -> None:
        self.queue.clear()
        self.engine.unload()

    def _report_sensor(self, t: float, rep: SensorReport, **fields: Any) -> None:
        """Findings, and every change of level, as ``sensor`` events (metrics and the log read them)."""
        if rep.level != OK or rep.level != self._sensor_level:
            self.bus.emit(
                t,
                SENSOR,
                level=LEVEL_NAMES[rep.level],
                kinds=list(rep.kinds()),
                message=rep.message,
                **fields,
            )
        self._sensor_level = rep.level

    def _sensor_ok(self, t: float, batch: Batch) -> bool:
        """Check the sensor first: report changes and findings as ``sensor`` events; never score an ERROR batch."""
        assert self.sensor is not None
        rep = self.sensor.check(batch.data, batch.fs_hz, batch.t0, batch.t1)
        self._report_sensor(t, rep, batch_t0=round(batch.t0, 6), batch_t1=round(batch.t1, 6))
        if rep.level >= SENSOR_ERROR:
            self.bus.emit(t, SKIP, reason="sensor", message=rep.message)
            return False
        return True

    def infer_latest(self, fresh_after: float) -> Verdict | None:
        """Score the newest batch that ends at or after ``fresh_after``; None when there is none.

        Bad data (a wrong-length window, NaN that slipped through) is reported
        as an ``error`` event and returns None: the detector keeps running.
        """
        batch = self.queue.take_latest(fresh_after)
        t = self.clock()
        if batch is None:
            self.bus.emit(t, SKIP, reason="no fresh batch")
            if self.sensor is not None:
                self._report_sensor(t, self.sensor.no_data())
            return None
        if self.sensor is not None and not self._sensor_ok(t, batch):
            return None
        if self._off_speed(t, batch):
            return None
        start = time.perf_counter()
        try:
            scored = self.scorer.score_window(batch.data, batch.fs_hz, f"batch {batch.t0:.3f}-{batch.t1:.3f}")
        except Exception as exc:  # noqa: BLE001 - any failure of one batch must not stop the robot
            self.errors += 1
            self.bus.emit(
                t, "error", message=f"{type(exc).__name__}: {exc}", batch_t0=batch.t0, batch_t1=batch.t1
            )
            return None
        why = getattr(scored, "not_scored", "")
        if why:  # a knock left in the window (core.knock_gate.uncut_knock): not voted, nothing raised
            self.knock_unscored += 1
            self._unscored(t, batch, "knock", why)
            return None
        score = float(scored.score)
        if not math.isfinite(score):
            # A NaN score compares False against any threshold: counted as healthy it would
            # silently switch detection off (e.g. an fp16 overflow in an engine).
            self.errors += 1
            self.bus.emit(
                t,
                "error",
                message=f"engine returned a non-finite score ({score})",
                batch_t0=batch.t0,
                batch_t1=batch.t1,
            )
            return None
        order = self._read_orders(t, batch)
        infer_s = time.perf_counter() - start
        self.inferences += 1
        self.unwatched_streak = 0
        threshold = float(
            self.threshold_override if self.threshold_override is not None else scored.threshold
        )
        if order is not None and order.ratio is not None and self.threshold_override is None:
            assert self.orders is not None
            threshold = self.orders.model_threshold  # each part at half the target (union bound)
        order_ratio = None if order is None else order.ratio
        above = score > threshold or (order_ratio is not None and order_ratio > 1.0)
        was = self.voter.latched
        alarm = self.voter.update(above)
        v = Verdict(
            t, batch.t0, batch.t1, score, threshold, above, alarm, alarm and not was, infer_s, order_ratio
        )
        extra: dict[str, Any] = {} if order is None else order.fields()
        knocked = getattr(scored, "knocked_axes", ())
        self.bus.emit(
            t,
            "infer",
            batch_t0=round(batch.t0, 6),
            batch_t1=round(batch.t1, 6),
            score=round(score, 6),
            threshold=round(threshold, 6),
            above=above,
            alarm=alarm,
            infer_ms=round(infer_s * 1000, 3),
            **extra,
            **({"knocked_axes": list(knocked)} if knocked else {}),
        )
        if self.diagnoser is not None and threshold > 0:
            self.diagnoser.observe(t, max(score / threshold, order_ratio or 0.0))
        if v.raised:
            self._make_durable(t, score, threshold)
            diagnosis = self._diagnose(t, batch, scored, order)
            self.bus.emit(
                t, ALARM, score=round(score, 6), threshold=round(threshold, 6), **extra, **diagnosis
            )
        return v

    def _off_speed(self, t: float, batch: Batch) -> bool:
        """A shaft speed the calibration never saw (``core.speed.SpeedGuard``): a ``skip``, not voted."""
        why = "" if self.speed_guard is None else self.speed_guard.check(batch.t0, batch.t1)
        if why:
            self.speed_unscored += 1
            self._unscored(t, batch, "speed", why)
        return bool(why)

    def _unscored(self, t: float, batch: Batch, reason: str, why: str) -> None:
        """A batch left unscored (a knock, a speed): a ``skip`` event, and one more in the unwatched streak."""
        self.unwatched_streak += 1
        self.last_unscored = why
        self.bus.emit(t, SKIP, reason=reason, message=why, batch_t0=batch.t0, batch_t1=batch.t1)

    def _read_orders(self, t: float, batch: Batch) -> OrderReading | None:
        """The order part's reading of ``batch``; a failure is an ``error`` event and the model alone decides."""
        if self.orders is None:
            return None
        try:
            return self.orders.read(batch.data, batch.fs_hz, batch.t0, batch.t1)
        except Exception as exc:  # noqa: BLE001 - the model still scores this batch
            self.errors += 1
            self.bus.emit(t, ERROR, message=f"order score failed: {type(exc).__name__}: {exc}", what="orders")
            return OrderReading(None, None, f"order score failed: {type(exc).__name__}")

    def _diagnose(
        self, t: float, batch: Batch, scored: ScoredLike, order: OrderReading | None
    ) -> dict[str, Any]:
        """The alarm's diagnosis (``core.diagnosis``) on the window that raised it; never stops the alarm.

        Where it names no location and the order part was over its threshold, its line names it.
        """
        if self.diagnoser is None:
            return {}
        cs = tuple(getattr(scored, "channel_scores", ()) or ())
        channel = int(np.argmax(cs)) if cs else None
        try:
            d = self.diagnoser.diagnose(t, batch.data, batch.fs_hz, batch.t0, batch.t1, channel)
            named = OrderCheck.name_location(d, order)
            if named is not d:
                self.diagnoser.last = named  # the alarm diagnostic (rqt) says what the event says
            return named.fields()
        except Exception as exc:  # noqa: BLE001 - the alarm goes out whatever the diagnosis does
            return {
                "location": LOCATION_UNKNOWN,
                "diagnosis": f"diagnosis failed: {type(exc).__name__}: {exc}",
            }

    def _make_durable(self, t: float, score: float, threshold: float) -> None:
        if self.latch is None:
            return
        try:
            self.latch.raise_(t, score, threshold)
        except OSError as exc:  # the alarm still stands in memory and is published; the loss is reported
            self.errors += 1
            self.bus.emit(t, ERROR, message=f"alarm latch not durable: {exc}", what="storage")

    def reset_alarm(self, who: str, why: str) -> bool:
        """Clear the latched alarm (an operator acknowledged, or the bearing was replaced); logged as an event."""
        was = self.voter.latched or (self.latch is not None and self.latch.latched)
        self.voter.reset()
        t = self.clock()
        if self.latch is not None:
            try:
                self.latch.reset(t, who, why)
            except OSError as exc:
                self.bus.emit(t, ERROR, message=f"alarm reset not durable: {exc}", what="storage")
        self.bus.emit(t, ALARM_RESET, was_latched=was, who=who, why=why)
        return was
