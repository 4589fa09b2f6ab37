"""A sensor that lies is a ``sensor`` finding, never a bearing alarm: replayed through the runtime the node runs.

Dead, clipped and loose-mount recordings (the simulated robot's healthy frames, broken the way real
sensors break) go through the same DetectorRuntime as the node and the demo, on the shipped model
and a calibration made on the healthy machine. Within one duty period the ``sensor`` health task
leaves OK and a ``sensor`` event names the finding; no alarm is raised from them however long it lasts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from vibration_anomaly.bundle import load_example_bundle
from vibration_anomaly.core.health import ERROR, OK, WARN, StatusRecord
from vibration_anomaly.core.window import Batch, batch_samples
from vibration_anomaly.runtime import DetectorRuntime, Pipeline, RuntimeParams
from vibration_anomaly.sim.robot import RobotConfig, SimulatedRobot

RATE = 1000.0


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def healthy() -> Callable[[float], np.ndarray]:
    robot = SimulatedRobot(RobotConfig(seed=11))
    n = batch_samples(RATE, 5.0)
    return lambda t0: robot.frames(t0, t0 + n / RATE)[1]


def _runtime(
    healthy: Callable[[float], np.ndarray], **params: Any
) -> tuple[DetectorRuntime, Clock, list[Any]]:
    from vibration_anomaly.core.scoring import AlarmVoter, Scorer
    from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
    from vibration_anomaly.model import load_default_model

    model = load_default_model()

    def factory(b: Any, _p: dict[str, Any]) -> Pipeline:
        engine = OnnxRuntimeEngine(intra_op_threads=1)
        engine.load(model.onnx)
        engine.wake()
        cal = model.calibrate(engine, [healthy(20.0 + 60 * k) for k in range(10)], RATE)
        engine.sleep()
        voter = AlarmVoter(b.alarm.votes_required, b.alarm.votes_window)
        return Pipeline(engine, Scorer(engine, model.frontend(), cal), voter, model.model_id, "test")

    clock = Clock()
    rt = DetectorRuntime(clock, pipeline_factory=factory, threaded=False)
    events: list[Any] = []
    rt.sinks.append(events.append)
    rt.configure(RuntimeParams(require_firmware=False, **params), bundle=load_example_bundle())
    return rt, clock, events


def _period(rt: DetectorRuntime, clock: Clock, k: int, data: np.ndarray) -> None:
    """One duty period: the window's batch is queued, then wake -> infer the newest -> sleep."""
    assert rt.queue is not None
    t0 = 1000.0 + 60.0 * k
    clock.t = t0 + 5.0
    rt.queue.put(Batch(t0, t0 + (len(data) - 1) / RATE, data.astype(np.float32), RATE))
    rt.activate()
    rt.infer_now(t0)
    rt.deactivate()


def _sensor_task(rt: DetectorRuntime) -> StatusRecord:
    task = next(t for t in rt.health_tasks() if t.name == "sensor")
    rec = task.run(StatusRecord())
    assert isinstance(rec, StatusRecord)
    return rec


def dead(x: np.ndarray) -> np.ndarray:
    y = x.copy()
    y[:, 1] = 0.0  # an axis that stopped: a constant
    return y


def clipped(x: np.ndarray) -> np.ndarray:
    lim = 0.3 * float(np.max(np.abs(x[:, 2] - np.median(x[:, 2])))) + float(np.median(x[:, 2]))
    y = x.copy()
    y[:, 2] = np.minimum(y[:, 2], lim)  # the z axis saturates at its full scale
    return y


def loose(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=0)) * 0.05 + x.mean(axis=0)  # the mount let go: vibration barely reaches it


@pytest.mark.parametrize(
    ("broken", "kind", "word", "level"),
    [
        (dead, "dead_channel", "dead", ERROR),
        (clipped, "clipping", "clipped", ERROR),
        (loose, "loose_mount", "loose", WARN),
    ],
)
def test_a_broken_sensor_is_a_sensor_finding_within_one_period_and_never_an_alarm(
    healthy: Callable[[float], np.ndarray],
    broken: Callable[[np.ndarray], np.ndarray],
    kind: str,
    word: str,
    level: int,
) -> None:
    rt, clock, events = _runtime(healthy)
    try:
        _period(rt, clock, 0, healthy(400.0))
        assert _sensor_task(rt).level == OK
        _period(rt, clock, 1, broken(healthy(460.0)))  # the first period with the broken sensor
        rec = _sensor_task(rt)
        assert rec.level == level and word in rec.message, rec.message
        sensor_events = [e for e in events if e["event"] == "sensor"]
        assert sensor_events and kind in sensor_events[-1]["kinds"]
        for k in range(2, 10):  # more than a whole vote window of broken batches
            _period(rt, clock, k, broken(healthy(400.0 + 60 * k)))
        assert not [e for e in events if e["event"] == "alarm"]
        assert rt.detector is not None and not rt.detector.voter.latched
        if level == ERROR:  # an ERROR batch is not scored at all: its "verdict" would be noise
            assert [e for e in events if e["event"] == "skip" and e.get("reason") == "sensor"]
        _period(rt, clock, 10, healthy(1100.0))  # the sensor is repaired: back to OK, and said so
        assert _sensor_task(rt).level == OK
        assert [e for e in events if e["event"] == "sensor"][-1]["level"] == "OK"
    finally:
        rt.close()


def test_a_rate_far_from_the_configured_one_is_an_error(healthy: Callable[[float], np.ndarray]) -> None:
    rt, clock, events = _runtime(healthy)
    try:
        assert rt.queue is not None
        x = healthy(400.0)
        clock.t = 1005.0
        rt.queue.put(
            Batch(1000.0, 1000.0 + (len(x) - 1) / 800.0, x.astype(np.float32), RATE)
        )  # really 800 Hz
        rt.activate()
        rt.infer_now(1000.0)
        rt.deactivate()
        rec = _sensor_task(rt)
        assert rec.level == ERROR and "800" in rec.message
    finally:
        rt.close()


def test_an_imu_that_stops_delivering_is_a_sensor_finding_not_a_quiet_machine(
    healthy: Callable[[float], np.ndarray],
) -> None:
    rt, clock, events = _runtime(healthy)
    try:
        _period(rt, clock, 0, healthy(400.0))
        for k in range(1, 4):  # three windows in which no batch filled
            clock.t = 1000.0 + 60.0 * k + 5.0
            rt.activate()
            rt.infer_now(1000.0 + 60.0 * k)
            rt.deactivate()
            rec = _sensor_task(rt)
            assert rec.level == (ERROR if k >= 3 else WARN) and "stopped delivering" in rec.message, (
                rec.message
            )
        assert [e for e in events if e["event"] == "sensor"][-1]["kinds"] == ["dropout"]
        _period(rt, clock, 4, healthy(700.0))  # frames again
        assert _sensor_task(rt).level == OK
    finally:
        rt.close()
