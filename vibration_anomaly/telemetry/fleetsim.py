"""A synthetic fleet: event streams of healthy robots and of each fault in the incident story.

The fleet integration test, the benchmark and the docs all need robots that
misbehave in known ways. Each robot here is driven through the *real*
``RobotMetrics.observe_event`` and setters with the same event dicts the
pipeline emits, so what reaches Prometheus is what a real robot would send.

Power figures are the guide's: about 4 W asleep, 11 W asleep with the GPU
kept hot; they are modelled, as on any machine without a power sensor.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from vibration_anomaly.bundle import defaults
from vibration_anomaly.telemetry.metrics import RobotMetrics

HEALTHY = "healthy"
BACKLOG_REPLAY = "backlog_replay"  # fault 1: buffered frames inferred instead of dropped
BACKLOG_DROPPED = "backlog_dropped"  # a backlog the latest-batch queue handled: drops, stale refused
GPU_HOT_ASLEEP = "gpu_hot_asleep"  # fault 2: GPU held while asleep
NOT_SLEEPING = "not_sleeping"  # never leaves the awake state
DUTY_MISMATCH = "duty_mismatch"  # fault 3: runs a 100 s period against a 60 s contract
BUNDLE_REFUSED = "bundle_refused"  # firmware and container disagree: refused to boot
BEARING_ALARM = "bearing_alarm"  # the detector doing its job
SILENT = "silent"  # stops pushing

FAULTS: tuple[str, ...] = (
    BACKLOG_REPLAY,
    BACKLOG_DROPPED,
    GPU_HOT_ASLEEP,
    NOT_SLEEPING,
    DUTY_MISMATCH,
    BUNDLE_REFUSED,
    BEARING_ALARM,
    SILENT,
)

EXPECTED_ALERTS: dict[str, frozenset[str]] = {
    HEALTHY: frozenset(),
    BACKLOG_REPLAY: frozenset({"VibrationAnomalyStaleDataReplayed"}),
    BACKLOG_DROPPED: frozenset({"VibrationAnomalyBacklogDropped"}),
    GPU_HOT_ASLEEP: frozenset({"VibrationAnomalyGpuHotWhileAsleep"}),
    NOT_SLEEPING: frozenset({"VibrationAnomalyRobotNotSleeping"}),
    DUTY_MISMATCH: frozenset({"VibrationAnomalyDutyCycleDeviation"}),
    BUNDLE_REFUSED: frozenset({"VibrationAnomalyBundleRefused"}),
    BEARING_ALARM: frozenset({"VibrationAnomalyBearingAlarm"}),
    SILENT: frozenset({"VibrationAnomalyRobotSilent"}),
}
"""The alerts each kind of robot must fire, and no others."""

ASLEEP_W = 4.0
AWAKE_W = 7.5
HOT_ASLEEP_W = 11.0


@dataclass(frozen=True)
class RobotPlan:
    robot_id: str
    fault: str = HEALTHY
    cycles: int = 15
    period_s: float = defaults.PERIOD_S
    sample_s: float = defaults.SAMPLE_S
    bundle_version: str = "2024.06.1"


def events_for(plan: RobotPlan) -> Iterator[dict]:
    """The pipeline events of ``plan.cycles`` duty periods of a robot with ``plan.fault``."""
    contract_period, sample = plan.period_s, plan.sample_s
    if plan.fault == BUNDLE_REFUSED:
        return
    if plan.fault == NOT_SLEEPING:
        yield {"t": 0.0, "event": "wake"}
        t = 0.0
        while t < plan.cycles * contract_period:
            t += sample
            yield {
                "t": t + 0.2,
                "event": "infer",
                "score": 0.1,
                "batch_t0": t - sample,
                "batch_t1": t,
                "alarm": False,
            }
        return
    period = 100.0 if plan.fault == DUTY_MISMATCH else contract_period
    last = plan.cycles - 1
    for c in range(plan.cycles):
        t0 = c * period
        yield {"t": t0, "event": "wake"}
        if c == last and plan.fault == BACKLOG_REPLAY:
            # Firmware flushed minutes of buffered frames; each became a batch and was scored.
            for k in range(12):
                b0 = t0 - 600.0 + k * sample
                yield {
                    "t": t0 + sample + 0.01 * k,
                    "event": "infer",
                    "score": 0.1,
                    "batch_t0": b0,
                    "batch_t1": b0 + sample,
                    "alarm": False,
                }
        if c == last and plan.fault == BACKLOG_DROPPED:
            for _ in range(6):
                yield {"t": t0 + sample, "event": "drop", "reason": "overflow", "frames": 5000}
            yield {"t": t0 + sample, "event": "drop", "reason": "stale", "frames": 5000}
        alarm = plan.fault == BEARING_ALARM and c >= last - 2
        score = 0.92 if alarm else 0.1
        yield {
            "t": t0 + sample + 0.2,
            "event": "infer",
            "score": score,
            "batch_t0": t0,
            "batch_t1": t0 + sample,
            "alarm": alarm,
        }
        if alarm:
            yield {"t": t0 + sample + 0.2, "event": "alarm", "score": score}
        yield {"t": t0 + sample + 0.3, "event": "sleep", "awake_s": sample + 0.3}


def drive(metrics: RobotMetrics, plan: RobotPlan) -> None:
    """Feed one robot's whole history into ``metrics`` (setters first, as a node does at start-up)."""
    if plan.fault == BUNDLE_REFUSED:
        metrics.set_bundle_refused("mismatch")
        return
    metrics.set_contract(plan.period_s, plan.sample_s)
    metrics.set_bundle(plan.bundle_version)
    metrics.set_backend("onnxruntime")
    for ev in events_for(plan):
        metrics.observe_event(ev)
    if plan.fault != NOT_SLEEPING:
        asleep_w = HOT_ASLEEP_W if plan.fault == GPU_HOT_ASLEEP else ASLEEP_W
        metrics.set_power(
            asleep_w,
            state="asleep",
            source="model",
            modelled=True,
            duration_s=plan.cycles * (plan.period_s - plan.sample_s),
        )
    metrics.set_power(
        AWAKE_W, state="awake", source="model", modelled=True, duration_s=plan.cycles * plan.sample_s
    )


def fleet_plans(n_robots: int, faulty_per_kind: int = 5, prefix: str = "robot") -> list[RobotPlan]:
    """``n_robots`` robots: ``faulty_per_kind`` of each fault, spread through the fleet, the rest healthy."""
    kinds = [f for f in FAULTS for _ in range(faulty_per_kind)]
    if len(kinds) > n_robots:
        raise ValueError(f"fleet of {n_robots} is too small for {len(kinds)} faulty robots")
    step = n_robots // len(kinds) if kinds else 1
    faults = {i * step + 1: kind for i, kind in enumerate(kinds)}
    return [RobotPlan(robot_id=f"{prefix}-{i:04d}", fault=faults.get(i, HEALTHY)) for i in range(n_robots)]
