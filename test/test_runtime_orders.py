"""Speed- and bearing-aware scoring on the robot (core.order_calibration through DetectorRuntime).

The simulated robot at a 3.2 kHz accelerometer, 24 Hz shaft, CWRU 6205 bearing in the signed bundle. Its
outer-race defect is small (impact peak 0.2 x the healthy RMS) and rings a 1.2 kHz resonance: the model
alone scores every faulty window under its threshold, the order part (its ball-pass lines in the
envelope, at the known speed) is over it on most. Calibrated with ``calibrate(..., shaft_hz, orders)``
(what ``vibration-anomaly calibrate --bearing --shaft-hz`` does) on 20 healthy windows of the robot.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bundle_testkit import write_test_bundle
from runtime_testkit import Clock, Log

from vibration_anomaly.bundle import load_verified_bundle
from vibration_anomaly.bundle.bearing import orders_from_geometry
from vibration_anomaly.core.calibration import Calibration
from vibration_anomaly.core.health import WARN, StatusRecord
from vibration_anomaly.core.order_calibration import EXTRA_KEY, OrderCalibration
from vibration_anomaly.core.window import Batch, batch_samples
from vibration_anomaly.errors import InputError
from vibration_anomaly.runtime import DetectorRuntime, Pipeline, RuntimeParams
from vibration_anomaly.sim.robot import FaultSpec, RobotConfig, SimulatedRobot

RATE, SHAFT = 3200.0, 24.0
CWRU_6205 = {"balls": 9, "ball_diameter": 0.3126, "pitch_diameter": 1.537}
ORDERS = {k: v for k, v in orders_from_geometry(**CWRU_6205).items() if k != "ftf"}
FAULT_AT = 2000.0
N = batch_samples(RATE, 5.0)


def _robot() -> SimulatedRobot:
    fault = FaultSpec(start_s=FAULT_AT, resonance_hz=1200.0, initial_peak=0.2, final_peak=0.2, growth_s=1.0)
    return SimulatedRobot(RobotConfig(rate_hz=RATE, seed=5, shaft_hz=SHAFT, fault=fault))


def _calibrate_robot(model: Any, *variants: dict[str, Any]) -> list[Calibration]:
    """The robot's 20 healthy windows calibrated once per ``variants`` (keyword arguments of calibrate)."""
    from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine

    robot = _robot()
    windows = [robot.frames(20.0 + 60 * k, 20.0 + 60 * k + N / RATE)[1] for k in range(20)]
    engine = OnnxRuntimeEngine(intra_op_threads=1)
    engine.load(model.onnx)
    engine.wake()
    try:
        return [model.calibrate(engine, windows, RATE, **kw) for kw in variants]
    finally:
        engine.unload()


@pytest.fixture(scope="module")
def calibrated() -> tuple[Any, Calibration, Calibration]:
    """The model, and the robot's calibration with and without the order reference (same 20 windows)."""
    from vibration_anomaly.model import load_default_model

    model = load_default_model()
    with_orders, alone = _calibrate_robot(model, {"shaft_hz": SHAFT, "orders": ORDERS}, {})
    return model, with_orders, alone


def _runtime(
    tmp_path: Path, model: Any, cal: Calibration, bearing: dict[str, Any], **params: Any
) -> tuple[DetectorRuntime, Clock, list[dict[str, Any]], Log]:
    from vibration_anomaly.core.scoring import AlarmVoter, Scorer
    from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine

    def factory(b: Any, _p: dict[str, Any]) -> Pipeline:
        engine = OnnxRuntimeEngine(intra_op_threads=1)
        engine.load(model.onnx)
        voter = AlarmVoter(b.alarm.votes_required, b.alarm.votes_window)
        return Pipeline(
            engine, Scorer(engine, model.frontend_for(cal, "test"), cal), voter, model.model_id, "test"
        )

    files = write_test_bundle(tmp_path, bearing=bearing, alarm={"votes_required": 4, "votes_window": 6})
    bundle = load_verified_bundle(files.bundle, files.trust_dir, firmware_path=files.firmware)
    clock, log = Clock(), Log()
    rt = DetectorRuntime(clock, pipeline_factory=factory, threaded=False, logger=log)
    events: list[dict[str, Any]] = []
    rt.sinks.append(events.append)
    rt.configure(RuntimeParams(require_firmware=False, **params), bundle=bundle)
    return rt, clock, events, log


def _periods(rt: DetectorRuntime, clock: Clock, starts: list[float], speed: bool = False) -> None:
    robot = _robot()
    for t0 in starts:
        assert rt.queue is not None
        t, x = robot.frames(t0, t0 + N / RATE)
        if speed:
            rt.speed.report(SHAFT, stamp=t0 + 2.5)  # what the node does with a JointState
        clock.t = t0 + 5.0
        rt.queue.put(Batch(float(t[0]), float(t[-1]), x.astype(np.float32), RATE))
        rt.activate()
        rt.infer_now(t0)
        rt.deactivate()


HEALTHY = [1300.0 + 60 * k for k in range(6)]
FAULTY = [FAULT_AT + 100.0 + 60 * k for k in range(8)]


def _infers(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "infer"]


def test_the_calibration_records_the_order_part_at_half_the_target(calibrated: Any) -> None:
    _, cal, alone = calibrated
    oc = OrderCalibration.from_dict(cal.extra[EXTRA_KEY])
    assert oc.lines == ("bpfo", "bpfi", "bsf") and oc.target_far == pytest.approx(cal.target_far / 2)
    # A 4.9 s window resolves the lines in the raw spectrum too: envelope and spectrum parts.
    assert oc.parts == ("envelope", "spectrum") and oc.shaft_hz == SHAFT
    assert oc.ref.shape == (2 * 3 * 3,) and np.isfinite(oc.ref).all()
    # Same windows: the full-target threshold is the one the model alone gets; the half-target one is higher.
    assert cal.threshold == pytest.approx(alone.threshold)
    assert oc.model_threshold is not None and oc.model_threshold > cal.threshold
    assert EXTRA_KEY not in alone.extra and "threshold_at" not in cal.extra
    again = OrderCalibration.from_dict(json.loads(json.dumps(oc.to_dict())))
    assert np.array_equal(again.ref, oc.ref) and again.threshold == oc.threshold
    assert (
        Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))).extra[EXTRA_KEY] == cal.extra[EXTRA_KEY]
    )


def test_with_the_speed_the_order_part_raises_the_alarm_the_model_alone_misses(
    tmp_path: Path, calibrated: Any
) -> None:
    model, cal, _ = calibrated
    oc = OrderCalibration.from_dict(cal.extra[EXTRA_KEY])
    rt, clock, events, log = _runtime(tmp_path / "on", model, cal, CWRU_6205, shaft_hz=SHAFT)
    try:
        assert "speed-aware scoring on" in rt.describe()
        _periods(rt, clock, HEALTHY)
        healthy = _infers(events)
        assert len(healthy) == len(HEALTHY) and not any(e["above"] for e in healthy)
        _periods(rt, clock, FAULTY)
        faulty = _infers(events)[len(HEALTHY) :]
        for e in healthy + faulty:  # each part against its own threshold, the model's at half the target
            assert e["threshold"] == pytest.approx(oc.model_threshold, rel=1e-5)
            assert e["above"] == (e["score"] > e["threshold"] or e["order_ratio"] > 1.0)
        assert not any(e["score"] > e["threshold"] for e in faulty)  # the model alone: all under
        assert sum(e["order_ratio"] > 1.0 for e in faulty) >= 5
        alarm = [e for e in events if e["event"] == "alarm"]
        assert len(alarm) == 1 and alarm[0]["order_ratio"] > 1.0
        # The line that carried it is the outer race's, and so is the alarm's location (named by the 12x
        # envelope rule, or from that line where the rule named none); the alarm diagnostic (rqt) agrees.
        assert (alarm[0]["order_line"], alarm[0]["order_location"]) == ("bpfo", "outer_race"), alarm[0]
        assert alarm[0]["location"] == "outer_race", alarm[0]
        assert alarm[0]["frequency_hz"] == pytest.approx(ORDERS["bpfo"] * SHAFT, rel=0.02)
        task = next(t for t in rt.health_tasks() if t.name == "alarm").run(StatusRecord())
        assert task.level == WARN and "outer race" in task.message, task.message
        over = [e for e in faulty if e["order_ratio"] > 1.0]
        assert sum(e["order_line"] == "bpfo" for e in over) >= len(over) - 1
    finally:
        rt.close()

    # The same robot without a speed: the model alone, at the calibration's full-target threshold, no alarm.
    rt, clock, events, log = _runtime(tmp_path / "off", model, cal, CWRU_6205)
    try:
        assert "speed-aware scoring off" in rt.describe()
        assert any("speed-aware scoring off: no shaft speed" in line for line in log.lines), log.lines
        _periods(rt, clock, HEALTHY + FAULTY)
        infers = _infers(events)
        assert all("order_ratio" not in e for e in infers)
        assert all(e["threshold"] == pytest.approx(cal.threshold, rel=1e-5) for e in infers)
        assert not [e for e in events if e["event"] == "alarm"]
    finally:
        rt.close()


def test_a_stale_speed_scores_that_window_with_the_model_alone(tmp_path: Path, calibrated: Any) -> None:
    model, cal, _ = calibrated
    rt, clock, events, _ = _runtime(
        tmp_path, model, cal, CWRU_6205, speed_topic="/joint_states", speed_joint="wheel"
    )
    try:
        _periods(rt, clock, FAULTY[:2], speed=True)
        _periods(rt, clock, FAULTY[2:4])  # the topic went quiet: its last reading is stale
        fresh, stale = _infers(events)[:2], _infers(events)[2:]
        assert all(e["order_ratio"] is not None and "order_note" not in e for e in fresh)
        assert all(e["order_ratio"] is None and "stale" in e["order_note"] for e in stale), stale
        assert all(e["threshold"] == pytest.approx(cal.threshold, rel=1e-5) for e in stale)
        assert all(e["above"] == (e["score"] > e["threshold"]) for e in stale)
    finally:
        rt.close()


def test_a_shaft_changing_speed_in_the_window_is_followed_by_the_speed_topic(
    tmp_path: Path, calibrated: Any
) -> None:
    """Calibrated at a steady 24 Hz, run while the shaft swings +-10 % over 20 s (up to 13 % within a window):
    with the topic's readings the order part resamples each window to constant speed (core.order_track)
    and sees the defect; one speed for the whole window (even the right mean) smears its lines away."""
    model, cal, _ = calibrated
    # The speeds a commissioning recording across the swing records (core.speed.SpeedGuard would otherwise
    # leave every window more than 3 % off 24 Hz unscored: test_runtime_speed_guard.py).
    cal = replace(cal, extra={**cal.extra, "speed_hz": [SHAFT * 0.9, SHAFT * 1.1]})
    fault = FaultSpec(start_s=FAULT_AT, resonance_hz=1200.0, initial_peak=0.2, final_peak=0.2, growth_s=1.0)
    robot = SimulatedRobot(
        RobotConfig(rate_hz=RATE, seed=5, shaft_hz=SHAFT, fault=fault, speed_swing=0.1, speed_swing_s=23.0)
    )
    healthy = [1307.0 + 60 * k for k in range(6)]
    faulty = [FAULT_AT + 107.0 + 60 * k for k in range(12)]
    runs: dict[str, list[dict[str, Any]]] = {}
    for mode in ("topic", "mean"):
        params: dict[str, Any] = (
            {"speed_topic": "/joint_states", "speed_joint": "wheel"}
            if mode == "topic"
            else {"shaft_hz": SHAFT}
        )
        rt, clock, events, _ = _runtime(tmp_path / mode, model, cal, CWRU_6205, **params)
        try:
            for t0 in healthy + faulty:
                t, x = robot.frames(t0, t0 + N / RATE)
                if mode == "topic":
                    for s in np.arange(t[0] - 0.05, t[-1] + 0.05, 0.02):  # a 50 Hz JointState
                        rt.speed.report(float(robot.shaft_hz_at(s)), float(s))
                else:
                    rt.speed.fixed_hz = float(np.mean(robot.shaft_hz_at(t)))
                clock.t = t0 + 5.0
                assert rt.queue is not None
                rt.queue.put(Batch(float(t[0]), float(t[-1]), x.astype(np.float32), RATE))
                rt.activate()
                rt.infer_now(t0)
                rt.deactivate()
            runs[mode] = events
        finally:
            rt.close()
    topic, mean = _infers(runs["topic"]), _infers(runs["mean"])
    assert all(e["order_tracked_spread"] > 0.01 for e in topic), topic
    assert all("order_tracked_spread" not in e and e["order_ratio"] is not None for e in mean)
    assert not any(e["above"] for e in topic[: len(healthy)] + mean[: len(healthy)])
    assert sum(e["order_ratio"] > 1.0 for e in topic[len(healthy) :]) >= 5
    assert sum(e["order_ratio"] > 1.0 for e in mean[len(healthy) :]) <= 1
    alarm = [e for e in runs["topic"] if e["event"] == "alarm"]
    assert alarm and alarm[0]["location"] == "outer_race", alarm
    assert not [e for e in runs["mean"] if e["event"] == "alarm"]


def test_a_bundle_with_another_bearing_turns_the_order_part_off(tmp_path: Path, calibrated: Any) -> None:
    model, cal, _ = calibrated
    other = dict(CWRU_6205, balls=8)
    rt, clock, events, log = _runtime(tmp_path, model, cal, other, shaft_hz=SHAFT)
    try:
        assert rt.detector is not None and rt.detector.orders is None
        assert any("speed-aware scoring off" in ln and "recalibrate" in ln for ln in log.lines), log.lines
        _periods(rt, clock, FAULTY[:1])
        assert "order_ratio" not in _infers(events)[0]
    finally:
        rt.close()


@pytest.mark.parametrize(
    "field, value, named",
    [
        ("threshold", -1.0, "extra.orders.threshold"),
        ("threshold", float("nan"), "extra.orders.threshold"),
        ("reference", [1.0, 2.0], "extra.orders.reference"),
        ("lines", ["bpfo", "xyz"], "extra.orders.lines"),
        ("orders", {"bpfo": "3.5"}, "extra.orders.orders.bpfo"),
        ("target_far", 0.7, "extra.orders.target_far"),
        ("model_threshold", 0, "extra.orders.model_threshold"),
        ("resonance_hz", [1400.0, 1000.0], "extra.orders.resonance_hz"),
        ("resonance_hz", 1200.0, "extra.orders.resonance_hz"),
    ],
)
def test_a_bad_order_record_is_refused_by_name(calibrated: Any, field: str, value: Any, named: str) -> None:
    _, cal, _ = calibrated
    rec = dict(cal.extra[EXTRA_KEY], **{field: value})
    with pytest.raises(InputError, match=named.replace(".", r"\.")):
        OrderCalibration.from_dict(rec, "robot.json")


def test_calibrate_cli_records_the_order_part_and_refuses_half_of_it(tmp_path: Path) -> None:
    robot = _robot()
    t, x = robot.frames(100.0, 100.0 + 25 * 5.0)  # 25 windows of 5 s
    rec = tmp_path / "healthy.npz"
    np.savez(rec, **{k: x[:, i].astype(np.float32) for i, k in enumerate("xyz")}, fs=np.float64(RATE))
    cmd = [sys.executable, "-m", "vibration_anomaly", "calibrate", "--input", str(rec)]
    out = tmp_path / "cal.json"
    bearing = ",".join(f"{k}={v:.6f}" for k, v in ORDERS.items())
    run = subprocess.run(
        [*cmd, "--out", str(out), "--bearing", bearing, "--shaft-hz", str(SHAFT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["segments"] == 1
    summary = json.loads(run.stdout)["speed_aware"]
    assert summary["lines"] == ["bpfo", "bpfi", "bsf"] and summary["model_threshold"] > 0
    assert "at least 60 are advised" in run.stderr  # 24 windows
    cal = Calibration.load(out)
    assert OrderCalibration.from_dict(cal.extra[EXTRA_KEY]).same_orders(ORDERS)
    assert not OrderCalibration.from_dict(cal.extra[EXTRA_KEY]).same_orders(dict(ORDERS, bpfo=3.0))
    assert cal.extra["speed_hz"] == [SHAFT, SHAFT] == json.loads(run.stdout)["speeds_hz"]
    alone = subprocess.run(  # a speed without orders: only the speeds the calibration was made at
        [*cmd, "--out", str(tmp_path / "speed.json"), "--shaft-hz", "24"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert alone.returncode == 0, alone.stderr
    assert json.loads(alone.stdout)["speed_aware"] is None and json.loads(alone.stdout)["speeds_hz"] == [
        24.0,
        24.0,
    ]
    assert EXTRA_KEY not in Calibration.load(tmp_path / "speed.json").extra
    told = subprocess.run(  # the resonance the bundle states, recorded with the order part
        [*cmd, "--out", str(tmp_path / "res.json"), "--bearing", bearing, "--shaft-hz", "24"]
        + ["--bearing-resonance-hz", "1000,1400"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert told.returncode == 0, told.stderr
    got = OrderCalibration.from_dict(Calibration.load(tmp_path / "res.json").extra[EXTRA_KEY])
    assert got.resonance_hz == (1000.0, 1400.0)
    assert json.loads(told.stdout)["speed_aware"]["resonance_hz"] == [1000.0, 1400.0]
    assert "resonance" not in told.stderr
    above = subprocess.run(  # a resonance this 3.2 kHz sensor cannot pass: said, the raw lines still read
        [*cmd, "--out", str(tmp_path / "above.json"), "--bearing", bearing, "--shaft-hz", "24"]
        + ["--bearing-resonance-hz", "2500,4500"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert above.returncode == 0 and "no envelope band holds the stated 2500-4500 Hz" in above.stderr, (
        above.stderr
    )
    assert EXTRA_KEY in Calibration.load(tmp_path / "above.json").extra
    assert OrderCalibration.from_dict(cal.extra[EXTRA_KEY]).resonance_hz is None
    for args, named in (
        (["--bearing", bearing], "--shaft-hz"),
        (["--bearing", "ftf=0.4", "--shaft-hz", "24"], "cage"),
        (["--bearing", f"{bearing},rpm=1500", "--shaft-hz", "24"], "disagrees"),
        (["--segments", "0"], "--segments"),
        (["--segments", "many"], "--segments"),
        (["--bearing-resonance-hz", "1000,1400", "--shaft-hz", "24"], "needs --bearing"),
        (["--bearing", bearing, "--shaft-hz", "24", "--bearing-resonance-hz", "1400,1000"], "0 < LO < HI"),
        (["--bearing", bearing, "--shaft-hz", "24", "--bearing-resonance-hz", "1200"], "LO,HI"),
    ):
        bad = subprocess.run(
            [*cmd, "--out", str(tmp_path / "bad.json"), *args], capture_output=True, text=True, timeout=300
        )
        assert bad.returncode == 2 and named in bad.stderr, (args, bad.stderr)
        assert not (tmp_path / "bad.json").exists()


def test_evaluate_and_the_robot_compute_the_same_order_ratio(calibrated: Any) -> None:
    """``model.fused`` (evaluate's model+orders) is the runtime's code: same reference, same ratio."""
    from vibration_anomaly.core.order_calibration import calibrate_orders
    from vibration_anomaly.core.order_check import OrderCheck
    from vibration_anomaly.core.speed import ShaftSpeed
    from vibration_anomaly.model.fused import calibrate_orders as fused_calibrate
    from vibration_anomaly.model.fused import order_scores

    assert fused_calibrate is calibrate_orders
    _, cal, _ = calibrated
    oc = OrderCalibration.from_dict(cal.extra[EXTRA_KEY])
    robot = _robot()
    t, x = robot.frames(FAULTY[0], FAULTY[0] + N / RATE)
    check = OrderCheck(oc, ShaftSpeed(SHAFT))
    got = check.read(x, RATE, float(t[0]), float(t[-1]))
    want = oc.ratio(order_scores(x[None], RATE, SHAFT, {k: ORDERS[k] for k in oc.lines}))[0]
    assert got.ratio == pytest.approx(want) and got.shaft_hz == SHAFT
    no_speed = OrderCheck(replace(oc), ShaftSpeed(0.0)).read(x, RATE, float(t[0]), float(t[-1]))
    assert no_speed.ratio is None and "unknown" in no_speed.why


def test_the_order_line_names_the_location_only_where_the_envelope_rule_named_none() -> None:
    from vibration_anomaly.core.diagnosis import Diagnosis
    from vibration_anomaly.core.order_check import OrderCheck, OrderReading

    over = OrderReading(1.4, SHAFT, "", "bpfi", "inner_race", 2, ORDERS["bpfi"] * SHAFT, "spectrum")
    unknown = Diagnosis("unknown", note="no defect order stands out 12x in the envelope spectrum")
    named = OrderCheck.name_location(unknown, over)
    assert (named.location, named.channel) == ("inner_race", 2)
    assert named.frequency_hz == pytest.approx(ORDERS["bpfi"] * SHAFT)
    assert named.order == pytest.approx(ORDERS["bpfi"])
    assert "bpfi line 1.40 x its calibrated threshold (order score, spectrum" in named.note
    assert "stands out 12x" in named.note  # what the envelope rule said is kept
    outer = Diagnosis("outer_race", frequency_hz=86.0)
    assert OrderCheck.name_location(outer, over) is outer  # the envelope rule's naming stands
    under = OrderReading(0.9, SHAFT, "", "bpfi", "inner_race", 2, ORDERS["bpfi"] * SHAFT, "spectrum")
    for reading in (under, OrderReading(None, None, "stale"), None):
        assert OrderCheck.name_location(unknown, reading) is unknown


def test_the_order_ratio_reaches_the_fleet_as_a_gauge(tmp_path: Path, calibrated: Any) -> None:
    """The infer events of the speed-aware runtime, through RobotMetrics (the pushed registry)."""
    import math

    from prometheus_client import CollectorRegistry

    from vibration_anomaly.telemetry.metrics import RobotMetrics

    model, cal, _ = calibrated
    rt, clock, events, _ = _runtime(tmp_path, model, cal, CWRU_6205, speed_topic="/js", speed_joint="w")
    reg = CollectorRegistry()
    metrics = RobotMetrics(reg)
    try:
        assert math.isnan(reg.get_sample_value("vibration_anomaly_order_ratio"))
        _periods(rt, clock, FAULTY[:1], speed=True)
        fresh = _infers(events)[-1]
        for e in events:
            metrics.observe_event(e)
        assert reg.get_sample_value("vibration_anomaly_order_ratio") == pytest.approx(fresh["order_ratio"])
        _periods(rt, clock, FAULTY[1:2])  # stale speed: not scored by the order part
        metrics.observe_event(_infers(events)[-1])
        assert math.isnan(reg.get_sample_value("vibration_anomaly_order_ratio"))
    finally:
        rt.close()


RESONANCE = (1000.0, 1400.0)  # where the robot's defect rings (1.2 kHz), as a tap test would state it


@pytest.fixture(scope="module")
def calibrated_at_resonance(calibrated: Any) -> tuple[Calibration, Calibration]:
    """The robot calibrated with the resonance stated: the defect's (1.0-1.4 kHz), and one above the
    3.2 kHz sensor's band (2.5-4.5 kHz)."""
    told = [{"shaft_hz": SHAFT, "orders": ORDERS, "resonance_hz": r} for r in (RESONANCE, (2500.0, 4500.0))]
    at_defect, above = _calibrate_robot(calibrated[0], *told)
    return at_defect, above


def test_a_stated_resonance_is_recorded_and_the_robot_reads_the_envelope_there(
    tmp_path: Path, calibrated: Any, calibrated_at_resonance: Any
) -> None:
    model = calibrated[0]
    cal, above = calibrated_at_resonance
    oc = OrderCalibration.from_dict(json.loads(json.dumps(cal.extra[EXTRA_KEY])))
    assert oc.resonance_hz == RESONANCE and oc.parts == ("envelope", "spectrum")
    # Beyond the sensor's band: no envelope column is read, the raw spectrum's lines still are.
    high = OrderCalibration.from_dict(above.extra[EXTRA_KEY])
    env, spec = np.split(high.ref, 2)
    assert high.resonance_hz == (2500.0, 4500.0) and np.isnan(env).all() and np.isfinite(spec).all()
    stated = dict(CWRU_6205, resonance_hz=list(RESONANCE))
    rt, clock, events, log = _runtime(tmp_path / "on", model, cal, stated, shaft_hz=SHAFT)
    try:
        assert "speed-aware scoring on" in rt.describe()
        _periods(rt, clock, HEALTHY + FAULTY)
        infers = _infers(events)
        assert not any(e["above"] for e in infers[: len(HEALTHY)])
        faulty = infers[len(HEALTHY) :]
        assert sum(e["order_ratio"] > 1.0 for e in faulty) >= 5, faulty
        assert [e for e in events if e["event"] == "alarm"]
    finally:
        rt.close()


@pytest.mark.parametrize("bundle_resonance", [None, [900.0, 1400.0]])
def test_a_resonance_other_than_the_calibrations_turns_the_order_part_off(
    tmp_path: Path, calibrated: Any, calibrated_at_resonance: Any, bundle_resonance: Any
) -> None:
    model = calibrated[0]
    cal = calibrated_at_resonance[0]
    bearing = dict(CWRU_6205) if bundle_resonance is None else dict(CWRU_6205, resonance_hz=bundle_resonance)
    rt, clock, events, log = _runtime(tmp_path, model, cal, bearing, shaft_hz=SHAFT)
    try:
        assert rt.detector is not None and rt.detector.orders is None
        off = [ln for ln in log.lines if "speed-aware scoring off" in ln]
        assert off and "1000-1400 Hz" in off[0] and "--bearing-resonance-hz" in off[0], log.lines
        _periods(rt, clock, FAULTY[:1])
        assert "order_ratio" not in _infers(events)[0]
    finally:
        rt.close()
