"""The alarm names the likely location, its line and the score's trend: through the runtime the node runs.

The simulated robot's outer-race defect (86 Hz at its 24 Hz shaft, ringing a 310 Hz resonance) goes
through DetectorRuntime on the shipped model, with a bundle that states the bearing (CWRU's 6205,
BPFO 3.585) and the shaft speed handed in the way the node hands a JointState's. The ``alarm`` event,
the ``alarm`` health task and the log line carry the diagnosis; without a fresh speed it says unknown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from bundle_testkit import write_test_bundle
from runtime_testkit import Clock, Log

from vibration_anomaly.bundle import load_verified_bundle
from vibration_anomaly.core.health import OK, WARN, StatusRecord
from vibration_anomaly.core.window import Batch, batch_samples
from vibration_anomaly.runtime import DetectorRuntime, Pipeline, RuntimeParams
from vibration_anomaly.sim.robot import FaultSpec, RobotConfig, SimulatedRobot

RATE = 1000.0
CWRU_6205 = {"balls": 9, "ball_diameter": 0.3126, "pitch_diameter": 1.537}


def _runtime(
    tmp_path: Path, robot: SimulatedRobot, **params: Any
) -> tuple[DetectorRuntime, Clock, list[Any], Log]:
    from vibration_anomaly.core.scoring import AlarmVoter, Scorer
    from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
    from vibration_anomaly.model import load_default_model

    model = load_default_model()
    n = batch_samples(RATE, 5.0)

    def factory(b: Any, _p: dict[str, Any]) -> Pipeline:
        engine = OnnxRuntimeEngine(intra_op_threads=1)
        engine.load(model.onnx)
        engine.wake()
        windows = [robot.frames(20.0 + 60 * k, 20.0 + 60 * k + n / RATE)[1] for k in range(8)]
        cal = model.calibrate(engine, windows, RATE)
        engine.sleep()
        voter = AlarmVoter(b.alarm.votes_required, b.alarm.votes_window)
        return Pipeline(engine, Scorer(engine, model.frontend(), cal), voter, model.model_id, "test")

    files = write_test_bundle(tmp_path, bearing=CWRU_6205, alarm={"votes_required": 2, "votes_window": 3})
    bundle = load_verified_bundle(files.bundle, files.trust_dir, firmware_path=files.firmware)
    clock, log = Clock(), Log()
    rt = DetectorRuntime(clock, pipeline_factory=factory, threaded=False, logger=log)
    events: list[Any] = []
    rt.sinks.append(events.append)
    rt.configure(RuntimeParams(require_firmware=False, **params), bundle=bundle)
    return rt, clock, events, log


def _period(rt: DetectorRuntime, clock: Clock, robot: SimulatedRobot, t0: float) -> None:
    assert rt.queue is not None
    t, x = robot.frames(t0, t0 + batch_samples(RATE, 5.0) / RATE)
    clock.t = t0 + 5.0
    rt.queue.put(Batch(float(t[0]), float(t[-1]), x.astype(np.float32), RATE))
    rt.activate()
    rt.infer_now(t0)
    rt.deactivate()


def _alarm_task(rt: DetectorRuntime) -> StatusRecord:
    rec = next(t for t in rt.health_tasks() if t.name == "alarm").run(StatusRecord())
    assert isinstance(rec, StatusRecord)
    return rec


def test_the_alarm_names_the_outer_race_from_the_topics_speed_and_unknown_without_it(tmp_path: Path) -> None:
    fault_at = 1000.0
    robot = SimulatedRobot(
        RobotConfig(
            rate_hz=RATE,
            seed=5,
            fault=FaultSpec(start_s=fault_at, initial_peak=3.0, final_peak=6.0, growth_s=600.0),
        )
    )
    rt, clock, events, log = _runtime(tmp_path, robot, speed_topic="/joint_states", speed_joint="wheel")
    try:
        assert "alarm diagnosis: bearing bpfi,bpfo,bsf,ftf, speed /joint_states" in rt.describe()
        for k in range(4):  # healthy periods: the trend gets its first points
            _period(rt, clock, robot, fault_at - 240.0 + 60 * k)
        assert _alarm_task(rt).level == OK
        k = 0
        while not [e for e in events if e["event"] == "alarm"]:
            t0 = fault_at + 60.0 * k
            rt.speed.report(robot.cfg.shaft_hz, stamp=t0 + 2.5)  # what the node does with a JointState
            _period(rt, clock, robot, t0)
            k += 1
            assert k < 10, "no alarm from a growing outer-race defect"
        alarm = next(e for e in events if e["event"] == "alarm")
        assert alarm["location"] == "outer_race", alarm
        assert abs(alarm["frequency_hz"] - 3.5848 * 24.0) < 0.02 * 86.0
        assert alarm["shaft_hz"] == 24.0 and alarm["speed_source"] == "/joint_states"
        assert alarm["trend_inferences"] >= 5 and alarm["trend_slope_per_h"] > 0
        assert alarm["trend_change"] > 1.0
        rec = _alarm_task(rt)
        assert rec.level == WARN and "outer race" in rec.message, rec.message
        assert ("location", "outer_race") in rec.values
        assert any("ALARM" in line and "outer race" in line for line in log.lines), log.lines

        # Reset; the speed topic goes quiet: the next alarm is raised all the same, location unknown.
        rt.reset_alarm("test", "bearing inspected")
        assert _alarm_task(rt).level == OK
        start = len(events)
        for j in range(6):
            _period(rt, clock, robot, fault_at + 60.0 * (k + j))
            if [e for e in events[start:] if e["event"] == "alarm"]:
                break
        again = next(e for e in events[start:] if e["event"] == "alarm")
        assert again["location"] == "unknown" and again["frequency_hz"] is None
        assert "stale" in again["diagnosis"], again["diagnosis"]
    finally:
        rt.close()


def test_speed_parameters_are_checked_by_name() -> None:
    import pytest

    from vibration_anomaly.errors import InputError

    p = RuntimeParams.from_mapping({"shaft_hz": 24, "speed_topic": "/js", "speed_joint": "wheel"})
    assert (p.shaft_hz, p.speed_topic, p.speed_joint) == (24.0, "/js", "wheel")
    with pytest.raises(InputError, match="shaft_hz"):
        RuntimeParams.from_mapping({"shaft_hz": -24.0})
    with pytest.raises(InputError, match="shaft_hz"):
        RuntimeParams.from_mapping({"shaft_hz": float("nan")})
    with pytest.raises(InputError, match="speed_joint"):
        RuntimeParams.from_mapping({"speed_topic": "/joint_states"})


def test_an_alarm_latched_before_a_restart_warns_without_a_diagnosis() -> None:
    from vibration_anomaly.core.health import alarm_health

    restored = alarm_health(latched=True, diagnosis=None, trend={}, raised_t=None)
    assert restored.level == WARN and "no diagnosis in this process" in restored.message
    old = {"location": "ball", "frequency_hz": 113.0, "order": 4.71, "shaft_hz": 24.0}
    after_reset = alarm_health(latched=False, diagnosis=old, trend={"trend_slope_per_h": 0.1}, raised_t=5.0)
    assert after_reset.level == OK and "location" not in after_reset.values
    assert after_reset.values["score ratio slope per hour"] == 0.1
