"""Speeds the calibration never saw (core.speed.SpeedGuard through DetectorRuntime).

The simulated robot (1 kHz IMU, motor hum at the shaft speed and its harmonics) calibrated at a steady 24 Hz
and then driven at 30 Hz: healthy, but its hum lines sit in other bands, and the model scores every window
over its threshold (seen: 1.5-1.8x). A calibration that records the speeds it was made at
(``calibrate(..., shaft_hz=)``, ``vibration-anomaly calibrate --shaft-hz`` or ``--speed-joint``) lets the
robot leave those windows unscored and say why, instead of raising a false alarm.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bundle_testkit import write_test_bundle
from prometheus_client import CollectorRegistry
from runtime_testkit import Clock, Log

from vibration_anomaly.bundle import load_verified_bundle
from vibration_anomaly.core.calibration import Calibration
from vibration_anomaly.core.health import OK, WARN, StatusRecord
from vibration_anomaly.core.speed import SPEED_MARGIN, ShaftSpeed, SpeedGuard
from vibration_anomaly.core.window import Batch, batch_samples
from vibration_anomaly.errors import InputError
from vibration_anomaly.runtime import DetectorRuntime, Pipeline, RuntimeParams
from vibration_anomaly.sim.robot import RobotConfig, SimulatedRobot
from vibration_anomaly.telemetry.metrics import RobotMetrics

RATE, SHAFT = 1000.0, 24.0
N = batch_samples(RATE, 5.0)


def _window(robot: SimulatedRobot, t0: float) -> tuple[np.ndarray, np.ndarray]:
    return robot.frames(t0, t0 + N / RATE)


@pytest.fixture(scope="module")
def calibrated() -> tuple[Any, Calibration]:
    """The shipped model calibrated on 20 healthy windows of the robot at 24 Hz, told the speed."""
    from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
    from vibration_anomaly.model import load_default_model

    model = load_default_model()
    robot = SimulatedRobot(RobotConfig(rate_hz=RATE, seed=7, shaft_hz=SHAFT))
    windows = [_window(robot, 10.0 + 60 * k)[1] for k in range(20)]
    engine = OnnxRuntimeEngine(intra_op_threads=1)
    engine.load(model.cpu_onnx)
    engine.wake()
    try:
        cal = model.calibrate(engine, windows, RATE, shaft_hz=SHAFT)
    finally:
        engine.unload()
    return model, cal


def _configured(
    tmp_path: Path, model: Any, cal: Calibration, events: list[dict[str, Any]], **params: Any
) -> tuple[DetectorRuntime, Clock, Log]:
    """The runtime configured with ``cal`` and ``params``, its events into ``events`` (a sink is taken at configure)."""
    from vibration_anomaly.core.scoring import AlarmVoter, Scorer
    from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine

    def factory(b: Any, _p: dict[str, Any]) -> Pipeline:
        engine = OnnxRuntimeEngine(intra_op_threads=1)
        engine.load(model.cpu_onnx)
        voter = AlarmVoter(b.alarm.votes_required, b.alarm.votes_window)
        return Pipeline(engine, Scorer(engine, model.frontend_for(cal), cal), voter, model.model_id, "test")

    files = write_test_bundle(tmp_path, alarm={"votes_required": 4, "votes_window": 6})
    bundle = load_verified_bundle(files.bundle, files.trust_dir, firmware_path=files.firmware)
    clock = Clock()
    log = Log()
    rt = DetectorRuntime(clock, pipeline_factory=factory, threaded=False, logger=log)
    rt.sinks.append(events.append)
    rt.configure(RuntimeParams(require_firmware=False, **params), bundle=bundle)
    return rt, clock, log


def _run(tmp_path: Path, model: Any, cal: Calibration, shaft_hz: float) -> tuple[DetectorRuntime, list[dict]]:
    """Eight duty periods of the healthy robot at ``shaft_hz``, its speed from a 50 Hz JointState topic."""
    events: list[dict[str, Any]] = []
    rt, clock, log = _configured(
        tmp_path, model, cal, events, speed_topic="/joint_states", speed_joint="wheel"
    )
    guarded = any(ln.startswith("speed guard on: ") and "24-24 Hz" in ln for ln in log.lines)
    assert guarded == ("speed_hz" in cal.extra), log.lines  # the configure log says whether it is on
    robot = SimulatedRobot(RobotConfig(rate_hz=RATE, seed=7, shaft_hz=shaft_hz))
    for k in range(8):
        t, x = _window(robot, 1210.0 + 60 * k)
        for s in np.arange(t[0] - 0.05, t[-1] + 0.05, 0.02):
            rt.speed.report(shaft_hz, float(s))
        clock.t = float(t[-1]) + 0.1
        assert rt.queue is not None
        rt.queue.put(Batch(float(t[0]), float(t[-1]), x.astype(np.float32), RATE))
        rt.activate()
        rt.infer_now(float(t[0]))
        rt.deactivate()
    return rt, events


def _model_diagnostic(rt: DetectorRuntime) -> Any:
    return next(t for t in rt.health_tasks() if t.name == "model").run(StatusRecord())


def test_a_speed_the_calibration_never_saw_is_not_scored_instead_of_false_alarming(
    tmp_path: Path, calibrated: Any
) -> None:
    model, cal = calibrated
    assert cal.extra["speed_hz"] == [SHAFT, SHAFT]
    # Without the record (a calibration made without the speed): the healthy robot at 30 Hz alarms.
    blind = replace(cal, extra={k: v for k, v in cal.extra.items() if k != "speed_hz"})
    rt, events = _run(tmp_path / "blind", model, blind, 30.0)
    try:
        infers = [e for e in events if e["event"] == "infer"]
        assert len(infers) == 8 and sum(e["above"] for e in infers) >= 6, infers  # seen: 8 of 8, 1.5-1.8x
        assert [e for e in events if e["event"] == "alarm"]
    finally:
        rt.close()
    # With it: every window is left unscored, with the speeds named; no vote, no alarm; the model
    # diagnostic warns after three, and the metric counts them.
    rt, events = _run(tmp_path / "guarded", model, cal, 30.0)
    try:
        assert rt.detector is not None and rt.detector.speed_guard is not None
        skips = [e for e in events if e["event"] == "skip"]
        assert len(skips) == 8 and all(e["reason"] == "speed" for e in skips), skips
        assert "30.00 Hz" in skips[0]["message"] and "24.00 Hz" in skips[0]["message"]
        assert not [e for e in events if e["event"] in ("infer", "alarm")]
        assert rt.detector.speed_unscored == rt.detector.unwatched_streak == 8
        diag = _model_diagnostic(rt)
        assert diag.level == WARN and "30.00 Hz" in diag.message and "recalibrate" in diag.message
        reg = CollectorRegistry()
        metrics = RobotMetrics(reg)
        for e in events:
            metrics.observe_event(e)
        assert reg.get_sample_value("vibration_anomaly_speed_unscored_windows_total") == 8
    finally:
        rt.close()


def test_at_the_calibrated_speed_it_is_scored_as_before(tmp_path: Path, calibrated: Any) -> None:
    model, cal = calibrated
    rt, events = _run(tmp_path, model, cal, SHAFT * (1 + SPEED_MARGIN / 2))  # within the margin
    try:
        infers = [e for e in events if e["event"] == "infer"]
        assert len(infers) == 8 and not any(e["above"] for e in infers), infers
        assert not [e for e in events if e["event"] == "skip"]
        assert _model_diagnostic(rt).level == OK
    finally:
        rt.close()


def test_the_guard_reads_the_speed_during_the_window() -> None:
    topic = ShaftSpeed(0.0, "/joint_states")
    guard = SpeedGuard(20.0, 30.0, topic)
    assert guard.check(0.0, 5.0) == ""  # no speed known: scored (a dead topic must not blind the detector)
    for hz, off in (
        (20.0 * (1 - SPEED_MARGIN) + 0.01, False),
        (25.0, False),
        (30.9, False),
        (31.0, True),
        (19.0, True),
    ):
        topic.report(hz, 4.0)
        assert bool(guard.check(0.0, 5.0)) is off, hz
    topic.report(40.0, -100.0)  # stale: the fixed shaft_hz (none here) decides, so unknown
    assert guard.check(0.0, 5.0) == ""
    fixed = SpeedGuard(24.0, 24.0, ShaftSpeed(30.0))
    assert "30.00 Hz, outside the 24.00 Hz" in fixed.check(0.0, 5.0)


def test_a_calibration_records_the_speeds_it_was_made_at(calibrated: Any) -> None:
    from vibration_anomaly.core.calibration import calibrate_features

    _, cal = calibrated
    d = cal.to_dict()
    assert Calibration.from_dict(d).extra["speed_hz"] == [SHAFT, SHAFT]
    plain = calibrate_features(
        lambda z: np.abs(z).mean(axis=(1, 2)),
        np.random.default_rng(0).normal(size=(8, 1, 3, 4)),
        fs_hz=RATE,
        window_samples=N,
    )
    assert "speed_hz" not in plain.extra  # no speed given: none recorded, no guard


@pytest.mark.parametrize(
    "bad", [[30.0, 20.0], [0.0, 24.0], [24.0], "24", [24.0, float("nan")], [24.0, True], [1.0, 5e3]]
)
def test_a_bad_speed_record_is_refused_by_name(calibrated: Any, bad: object) -> None:
    _, cal = calibrated
    d = cal.to_dict()
    d["extra"]["speed_hz"] = bad
    with pytest.raises(InputError) as ei:
        Calibration.from_dict(d, "robot.json")
    assert ei.value.field == "extra.speed_hz"


def test_a_calibration_made_at_a_speed_on_a_robot_that_knows_none_says_so(
    tmp_path: Path, calibrated: Any
) -> None:
    model, cal = calibrated
    rt, _clock, log = _configured(tmp_path, model, cal, [])  # shaft_hz 0, no speed_topic
    try:
        assert rt.detector is not None and rt.detector.speed_guard is None
        assert any("made at 24-24 Hz but no shaft speed is known" in ln for ln in log.lines), log.lines
    finally:
        rt.close()
