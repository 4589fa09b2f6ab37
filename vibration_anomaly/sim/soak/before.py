"""The "before" robot: the incident's broken loop on the fleet's engine, model, calibration and frames."""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any

from vibration_anomaly.core.window import batch_samples
from vibration_anomaly.sim.soak.fleet import _Fleet
from vibration_anomaly.sim.soak.options import RATE_HZ, STALE_TOLERANCE_S


class _BeforeRobot:
    """The story's broken fleet: always awake, every batch into an unbounded FIFO, the backlog replayed in order.

    Same engine, model, calibration and frames as the fleet; none of the fixes: no duty cycle, no keep-last
    bound, no freshness check, the engine woken once and never put to sleep.
    """

    def __init__(self, fleet: _Fleet, hiccups: list[tuple[float, float]]) -> None:
        from vibration_anomaly.bundle import load_verified_bundle
        from vibration_anomaly.core.scoring import AlarmVoter
        from vibration_anomaly.runtime import RuntimeParams

        self.fleet = fleet
        bundle = load_verified_bundle(fleet.good, fleet.trust, firmware_path=None, require_firmware=False)
        params = RuntimeParams(calibration=str(fleet.calibrations[0]), backend="onnx", require_firmware=False)
        self.pipeline = fleet.factory(bundle, params.as_dict())
        self.pipeline.engine.wake()
        self.voter = AlarmVoter(bundle.alarm.votes_required, bundle.alarm.votes_window)
        self.hiccups = hiccups
        self.batch_s = batch_samples(RATE_HZ, fleet.sample_s) / RATE_HZ
        self.next_batch = 0
        self.fifo: deque[tuple[float, float, int]] = deque()
        self.buffered: list[tuple[float, float, int]] = []
        self.now = 0.0
        self.inferences = 0
        self.stale = 0
        self.max_age_s = 0.0
        self.max_backlog = 0
        self.infer_hours: Counter[int] = Counter()
        self.infer_wall_s = 0.0

    def _link_down(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.hiccups)

    def advance(self, target: float) -> None:
        pool = self.fleet.pools[(0, False)]
        while (self.next_batch + 1) * self.batch_s <= target:
            k = self.next_batch
            t0, t1 = k * self.batch_s, (k + 1) * self.batch_s
            self.next_batch += 1
            if self._link_down(t1):
                self.buffered.append((t0, t1, k))  # the firmware buffers everything, then replays it all
                continue
            self.fifo.extend(self.buffered)
            self.buffered.clear()
            self.fifo.append((t0, t1, k))
            self.max_backlog = max(self.max_backlog, len(self.fifo))
            self.now = t1
            while self.fifo:  # the broken loop: every queued batch, oldest first
                b0, b1, kk = self.fifo.popleft()
                x = pool[kk % len(pool)][: batch_samples(RATE_HZ, self.fleet.sample_s)]
                w0 = time.perf_counter()
                s = self.pipeline.scorer.score_window(x, RATE_HZ)
                self.infer_wall_s += time.perf_counter() - w0
                self.voter.update(bool(s.above))
                self.inferences += 1
                self.infer_hours[int(t1 // 3600)] += 1
                age = t1 - b1
                self.max_age_s = max(self.max_age_s, age)
                if age > self.fleet.period_s + STALE_TOLERANCE_S:
                    self.stale += 1
        self.now = target

    def report(self, hours: float) -> dict[str, Any]:
        from vibration_anomaly.power.modelled import DEFAULT_PLATFORM, PLATFORM_MODELS

        model = PLATFORM_MODELS[DEFAULT_PLATFORM]
        full = [self.infer_hours.get(h, 0) for h in range(int(hours))] or [self.inferences]
        self.pipeline.engine.sleep()
        self.pipeline.engine.unload()
        return {
            "what": "always awake, unbounded FIFO, whole backlog replayed oldest first (the incident's loop)",
            "stale_inferences": self.stale,
            "inferences": self.inferences,
            "inferences_per_robot_hour": {"min": min(full), "max": max(full)},
            "awake_fraction_max": 1.0,
            "energy_wh_per_robot_hour": {"mean": model.awake_w, "max": model.awake_w},
            "max_batch_age_s": round(self.max_age_s, 3),
            "max_backlog_batches": self.max_backlog,
            "hiccups": len(self.hiccups),
        }
