"""The simulated robot's side of the duty cycle: the clock the demo runs on and its driver hooks.

``SimHooks`` is what the ROS node does for ``core.driver.DutyCycleDriver``,
on simulated time: open and close the subscription around each sample window,
deliver the robot's frames (and any firmware burst, through the keep-last
queue) to the windower, and run one inference through the runtime. It keeps
the row of the period that ``sim.demo`` turns into a timeline line, and the
timings and held resources that go into the demo's summary.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from vibration_anomaly.core.detector import Verdict
from vibration_anomaly.core.events import (
    DROP,
    DROP_BEFORE_WINDOW,
    DROP_INCOMPLETE_WINDOW,
    DROP_KEEP_LAST,
    RejectReporter,
)
from vibration_anomaly.core.scheduler import SampleWindow
from vibration_anomaly.core.window import Windower
from vibration_anomaly.runtime import DetectorRuntime
from vibration_anomaly.sim.robot import Delivery, SimulatedRobot


@dataclass
class SimClock:
    """Simulated seconds: the scheduler and the runtime read it; the hooks and ``sim.demo``'s loop move it."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now


class SimHooks:
    """``core.driver.DriverHooks`` for the simulated robot: what the ROS node does, on simulated time.

    The subscription "exists" from open to close: the frames the robot (and a firmware burst,
    through the keep-last queue) delivers in that window are windowed at close; ``infer_once`` is
    the runtime's activate -> newest fresh batch -> deactivate, as the node's lifecycle runs it.
    """

    def __init__(
        self, robot: SimulatedRobot, windower: Windower, rt: DetectorRuntime, clock: SimClock, depth: int
    ) -> None:
        self.robot, self.windower, self.rt, self.clock, self.depth = robot, windower, rt, clock, depth
        self.rejects = RejectReporter(lambda: dict(windower.rejected), rt.bus.emit)
        self.held_after_sleep: list[str] = []
        self.timings: dict[str, list[float]] = {"wake_ms": [], "infer_ms": [], "sleep_ms": []}
        self.last_cycle: dict[str, Any] = {}
        self._delivery: Delivery | None = None
        self._dropped = 0
        self._partial = 0

    def _row(self, window: SampleWindow, verdict: Verdict | None, t_fault: float) -> dict[str, Any]:
        delivery = self._delivery or Delivery()
        assert self.rt.detector is not None
        return {
            "cycle": window.period,
            "t": window.start,
            "frames": sum(int(t.size) for t, _ in delivery.chunks),
            "burst": delivery.burst_frames,
            "dropped": self._dropped,
            "score": None if verdict is None else verdict.score,
            "threshold": None if verdict is None else verdict.threshold,
            "above": None if verdict is None else verdict.above,
            "alarm": self.rt.detector.voter.latched,
            "raised": bool(verdict and verdict.raised),
            "fault_peak": self.robot.fault_peak(t_fault),
        }

    def open_sampling(self, window: SampleWindow) -> None:
        self.windower.open_window(window.start)
        self._delivery, self._dropped = None, 0
        self.last_cycle = self._row(window, None, window.start)  # shown if a later step fails

    def close_sampling(self, window: SampleWindow) -> None:
        w, bus, clock, queue = self.windower, self.rt.bus, self.clock, self.rt.queue
        assert queue is not None
        disc0 = sum(w.discarded.values())
        delivery = self.robot.deliver(window.start, window.end, self.depth)
        if delivery.lost_keep_last:
            bus.emit(window.start, DROP, frames=delivery.lost_keep_last, reason=DROP_KEEP_LAST)
        for t, x in delivery.chunks:
            if t.size:
                clock.now = float(t[-1])
            for b in w.push_many(t, x):
                queue.put(b)
        clock.now = window.end
        w.close_window()
        stale = self.rejects.report(clock.now).get(DROP_BEFORE_WINDOW, 0)
        self._partial = sum(w.discarded.values()) - disc0
        self._delivery = delivery
        self._dropped = delivery.lost_keep_last + stale

    def infer_once(self, window: SampleWindow) -> None:
        rt, clock = self.rt, self.clock
        assert rt.detector is not None
        n_before = rt.detector.inferences
        wake_s = rt.activate()
        rt.infer_now(window.start)
        verdict = rt.verdicts[-1] if rt.detector.inferences > n_before else None
        if verdict is None and self._partial:
            # The window never filled a batch: its frames are lost to inference.
            rt.bus.emit(clock.now, DROP, frames=self._partial, reason=DROP_INCOMPLETE_WINDOW)
            self._dropped += self._partial
        t0 = time.perf_counter()
        rt.deactivate()
        sleep_s = time.perf_counter() - t0
        clock.now = window.end + wake_s + (verdict.infer_s if verdict else 0.0) + sleep_s
        self.timings["wake_ms"].append(wake_s * 1000)
        self.timings["sleep_ms"].append(sleep_s * 1000)
        if verdict:
            self.timings["infer_ms"].append(verdict.infer_s * 1000)
        self.last_cycle = self._row(window, verdict, window.end)

    def held_resources(self) -> tuple[str, ...]:
        held = self.rt.held_resources()
        self.held_after_sleep.extend(held)
        return held
