"""The detector sequence with the shipped model on ONNX Runtime: bad batches are reported, never fatal."""

from __future__ import annotations

import numpy as np
import pytest

from vibration_anomaly.core.detector import Detector
from vibration_anomaly.core.events import EventBus
from vibration_anomaly.core.queue import LatestBatchQueue
from vibration_anomaly.core.scoring import AlarmVoter, Scorer
from vibration_anomaly.core.window import Batch, batch_samples
from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
from vibration_anomaly.model import load_default_model
from vibration_anomaly.sim.robot import RobotConfig, SimulatedRobot

N = batch_samples(1000.0, 5.0)


@pytest.fixture(scope="module")
def parts() -> tuple[OnnxRuntimeEngine, Scorer, SimulatedRobot]:
    model = load_default_model()
    robot = SimulatedRobot(RobotConfig(seed=3))
    engine = OnnxRuntimeEngine()
    engine.load(model.onnx)
    engine.wake()
    frontend = model.frontend()
    windows = [robot.frames(30 + 60 * k, 30 + 60 * k + N / 1000)[1] for k in range(12)]
    cal = model.calibrate(engine, windows, 1000.0)
    engine.sleep()
    return engine, Scorer(engine, frontend, cal), robot


def make(parts: tuple, events: list) -> Detector:
    engine, scorer, _ = parts
    now = [0.0]
    return Detector(
        engine, scorer, AlarmVoter(2, 3), LatestBatchQueue(3), EventBus(events.append), lambda: now[0]
    )


def good_batch(robot: SimulatedRobot, t0: float) -> Batch:
    t, x = robot.frames(t0, t0 + N / 1000)
    return Batch(float(t[0]), float(t[-1]), x, 1000.0)


def test_wrong_length_and_nan_batches_are_error_events_and_the_detector_keeps_going(parts: tuple) -> None:
    events: list[dict] = []
    det = make(parts, events)
    det.activate()
    det.queue.put(Batch(1.0, 1.5, np.zeros((500, 3), np.float32), 1000.0))
    assert det.infer_latest(fresh_after=0.0) is None
    bad = good_batch(parts[2], 100.0)
    bad.data[10, 1] = np.nan
    det.queue.put(bad)
    assert det.infer_latest(fresh_after=0.0) is None
    errors = [e for e in events if e["event"] == "error"]
    assert len(errors) == 2 and det.errors == 2
    assert "InputError" in errors[0]["message"] and "500" in errors[0]["message"]
    assert "NaN" in errors[1]["message"] or "finite" in errors[1]["message"]
    det.queue.put(good_batch(parts[2], 200.0))
    v = det.infer_latest(fresh_after=0.0)
    assert v is not None and np.isfinite(v.score) and not v.above
    det.deactivate()
    assert det.residency().awake_resources() == ()


def test_only_the_newest_fresh_batch_is_inferred(parts: tuple) -> None:
    events: list[dict] = []
    det = make(parts, events)
    for t0 in (60.0, 120.0, 180.0, 240.0, 300.0):
        det.queue.put(good_batch(parts[2], t0))
    det.activate()
    v = det.infer_latest(fresh_after=300.0)
    det.deactivate()
    assert v is not None and v.batch_t0 == pytest.approx(300.0)
    assert det.queue.stats.dropped_overflow == 2 and det.queue.stats.refused_stale == 2
    assert det.inferences == 1


def test_infer_while_asleep_is_an_error_event_not_a_crash(parts: tuple) -> None:
    events: list[dict] = []
    det = make(parts, events)
    det.queue.put(good_batch(parts[2], 60.0))
    assert det.infer_latest(fresh_after=0.0) is None
    assert events[-1]["event"] == "error" and "wake" in events[-1]["message"]


def test_a_non_finite_score_is_an_error_not_a_healthy_verdict(parts: tuple) -> None:
    """A broken engine output (fp16 overflow, say) must not read as 'below threshold'."""
    from types import SimpleNamespace

    engine, scorer, robot = parts

    class NonFiniteScorer:  # wraps the real scorer and corrupts only its score
        def score_window(self, window: np.ndarray, fs_hz: float, source: str = "") -> SimpleNamespace:
            v = scorer.score_window(window, fs_hz, source)
            return SimpleNamespace(score=float("nan"), threshold=v.threshold)

    events: list[dict] = []
    det = Detector(
        engine, NonFiniteScorer(), AlarmVoter(1, 1), LatestBatchQueue(3), EventBus(events.append), lambda: 0.0
    )
    det.activate()
    det.queue.put(good_batch(robot, 60.0))
    assert det.infer_latest(fresh_after=0.0) is None
    det.deactivate()
    assert det.errors == 1 and det.inferences == 0
    assert events[-1]["event"] == "error" and "non-finite" in events[-1]["message"]


def test_an_infer_event_names_the_axes_a_knock_was_cut_out_of(parts: tuple) -> None:
    """The knock gate (``core.knock_gate``) is not silent: ``knocked_axes`` on the window it acted on."""
    from vibration_anomaly.core.knock_gate import knock_runs
    from vibration_anomaly.model.synth import physical_knock

    events: list[dict] = []
    det = make(parts, events)
    det.activate()
    robot = parts[2]
    rng = np.random.default_rng(0)
    batches = []
    for t0 in (4000.0, 4060.0):
        b = good_batch(robot, t0)
        batches.append(b)
        if t0 == 4060.0:  # a knock of 30 x the axis's RMS on axes 0 and 2
            for ax in (0, 2):
                b.data[:, ax] += physical_knock(rng, 1000.0, N, 30.0 * float(b.data[:, ax].std()))
        det.queue.put(b)
        assert det.infer_latest(fresh_after=0.0) is not None
    infers = [e for e in events if e["event"] == "infer"]
    assert len(infers) == 2
    assert infers[1]["knocked_axes"] == [0, 2]
    assert infers[1]["above"] is False  # the knock was cut out, not scored
    # the other window: the simulated robot's own knocks, where the gate finds any (field absent when none)
    own = knock_runs(batches[0].data.astype(np.float64), 1000.0, 20.0, 4.0)[0]
    assert infers[0].get("knocked_axes", []) == sorted({r.channel for r in own})


def test_knocked_windows_are_counted_for_the_fleet(parts: tuple) -> None:
    """The infer events of the detector (one knocked, one not), through RobotMetrics (the pushed registry)."""
    from prometheus_client import CollectorRegistry

    from vibration_anomaly.model.synth import physical_knock
    from vibration_anomaly.telemetry.metrics import RobotMetrics

    events: list[dict] = []
    det = make(parts, events)
    det.activate()
    rng = np.random.default_rng(3)
    for k, knock in enumerate((False, True, True)):
        b = good_batch(parts[2], 5000.0 + 60 * k)
        if knock:
            b.data[:, 1] += physical_knock(rng, 1000.0, N, 30.0 * float(b.data[:, 1].std()))
        det.queue.put(b)
        det.infer_latest(fresh_after=0.0)
    reg = CollectorRegistry()
    metrics = RobotMetrics(reg)
    for e in events:
        metrics.observe_event(e)
    infers = [e for e in events if e["event"] == "infer"]
    expected = sum(bool(e.get("knocked_axes")) for e in infers)
    assert expected >= 2  # the two knocked batches, and the robot's own knocks where the gate found any
    assert reg.get_sample_value("vibration_anomaly_knocked_windows_total") == expected


def test_a_knock_the_gate_cannot_cut_is_a_skip_not_a_vote(parts: tuple) -> None:
    """A knock ringing 1.5 s (over a third of the window: the gate leaves it) dominates its window: the batch
    is a ``skip`` with reason ``knock``, the vote does not count it, and the fleet sees it counted."""
    from prometheus_client import CollectorRegistry

    from vibration_anomaly.model.synth import accel_ring
    from vibration_anomaly.telemetry.metrics import RobotMetrics

    events: list[dict] = []
    det = make(parts, events)
    det.activate()
    ring, onset = accel_ring(1000.0, 150.0, 0.002)
    b = good_batch(parts[2], 7000.0)
    i0 = 1500 - onset
    k = ring[: N - i0]
    b.data[i0 : i0 + len(k), 1] += (k * 30.0 * float(b.data[:, 1].std()) / np.abs(k).max()).astype(
        b.data.dtype
    )
    det.queue.put(b)
    before = det.voter.updates
    assert det.infer_latest(fresh_after=0.0) is None
    assert det.voter.updates == before and det.inferences == 0 and det.errors == 0
    assert det.knock_unscored == det.unwatched_streak == 1 and "axis 1" in det.last_unscored
    skip = events[-1]
    assert skip["event"] == "skip" and skip["reason"] == "knock", events
    assert "axis 1" in skip["message"] and skip["batch_t0"] == pytest.approx(b.t0)
    det.queue.put(good_batch(parts[2], 7060.0))  # the next clean batch is scored as usual
    v = det.infer_latest(fresh_after=0.0)
    assert v is not None and np.isfinite(v.score) and det.voter.updates == before + 1
    assert det.knock_unscored == 1 and det.unwatched_streak == 0  # watched again: the streak ends
    reg = CollectorRegistry()
    metrics = RobotMetrics(reg)
    for e in events:
        metrics.observe_event(e)
    assert reg.get_sample_value("vibration_anomaly_knock_unscored_windows_total") == 1


def test_knock_and_speed_skips_in_a_row_are_one_unwatched_streak(parts: tuple) -> None:
    """The model diagnostic warns after 3 batches in a row left unscored, whatever mix of reasons: a knock the
    gate cannot cut, then two at a shaft speed the calibration never saw (``core.speed.SpeedGuard``)."""
    from vibration_anomaly.core.health import OK, WARN, model_health
    from vibration_anomaly.core.speed import ShaftSpeed, SpeedGuard
    from vibration_anomaly.model.synth import accel_ring

    events: list[dict] = []
    det = make(parts, events)
    speed = ShaftSpeed(24.0)
    det.speed_guard = SpeedGuard(24.0, 24.0, speed)
    det.activate()
    ring, onset = accel_ring(1000.0, 150.0, 0.002)

    def health() -> object:
        return model_health(
            lifecycle_state="active",
            backend="onnxruntime",
            model="m",
            engine_state="awake",
            knock_unscored=det.knock_unscored,
            speed_unscored=det.speed_unscored,
            unwatched_streak=det.unwatched_streak,
            last_unscored=det.last_unscored,
        )

    b = good_batch(parts[2], 8000.0)  # a knock ringing 1.5 s on axis 1: not scored
    k = ring[: N - (1500 - onset)]
    b.data[1500 - onset : 1500 - onset + len(k), 1] += (
        k * 30.0 * float(b.data[:, 1].std()) / np.abs(k).max()
    ).astype(b.data.dtype)
    det.queue.put(b)
    assert det.infer_latest(fresh_after=0.0) is None
    speed.fixed_hz = 30.0  # the robot drives faster than it was commissioned at
    for t0 in (8060.0, 8120.0):
        det.queue.put(good_batch(parts[2], t0))
        assert det.infer_latest(fresh_after=0.0) is None
    assert [e["reason"] for e in events if e["event"] == "skip"] == ["knock", "speed", "speed"]
    assert (det.knock_unscored, det.speed_unscored, det.unwatched_streak) == (1, 2, 3)
    h = health()
    assert h.level == WARN and "last 3 batches not scored" in h.message and "30.00 Hz" in h.message
    assert h.values["not scored (knock)"] == 1 and h.values["not scored (speed)"] == 2
    speed.fixed_hz = 24.0  # back at its speed: scored, watched again
    det.queue.put(good_batch(parts[2], 8180.0))
    assert det.infer_latest(fresh_after=0.0) is not None
    assert det.unwatched_streak == 0 and health().level == OK
