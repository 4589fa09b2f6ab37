"""Field faults of issue 14, each reproduced on the ROS-free runtime the node, the demo and the soak share.

A failed configure must not raise the rollback floor; a raised alarm survives restart and reconfigure
until reset; a clock moved backwards or forwards re-arms the duty cycle within one period (never a
subscription held open); a full or read-only disk is an ERROR health, a log line and a storage event
while the detector keeps running, and the event log is on by default, rotated and bounded; an engine
call that overruns leaves the engine asleep and the runtime recoverable.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bundle_testkit import write_test_bundle
from runtime_testkit import score_model

from vibration_anomaly.core.driver import DriverState
from vibration_anomaly.core.events import JsonlEventLog, read_events
from vibration_anomaly.core.health import ERROR, WARN, StatusRecord
from vibration_anomaly.core.scheduler import SampleWindow
from vibration_anomaly.core.window import Batch, batch_samples
from vibration_anomaly.runtime import ConfigureFailed, DetectorRuntime, Pipeline, RuntimeParams
from vibration_anomaly.sim.robot import FaultSpec, RobotConfig, SimulatedRobot

RATE = 1000.0


class Clock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class ScoreModel:
    """A real ONNX model (features -> mean z^2) built once, like the node tests' pipeline."""

    path: Path | None = None


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return score_model(tmp_path_factory.mktemp("model") / "zsq.onnx")


def sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


class SlowEngine:
    """A GPU call that hangs (the true system edge here): wraps a real engine, ``infer`` sleeps when asked."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.delay_s = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def infer(self, x: Any) -> Any:
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.inner.infer(x)


def factory(model: Path, sample_s: float, slow: list[SlowEngine] | None = None) -> Any:
    def build(bundle: Any, params: dict[str, Any]) -> Pipeline:
        from vibration_anomaly.bundle import verify_model_file
        from vibration_anomaly.core.calibration import calibrate
        from vibration_anomaly.core.scoring import AlarmVoter, Scorer
        from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
        from vibration_anomaly.model.frontend import Frontend

        verify_model_file(bundle, model)
        engine: Any = OnnxRuntimeEngine()
        engine.load(model)
        robot = SimulatedRobot(RobotConfig(rate_hz=RATE, seed=3))
        n = batch_samples(RATE, sample_s)
        engine.wake()
        cal = calibrate(
            engine,
            Frontend(),
            [robot.frames(100 + 3 * k, 100 + 3 * k + n / RATE)[1] for k in range(12)],
            RATE,
            target_far=0.001,
        )
        engine.sleep()
        if slow is not None:
            engine = SlowEngine(engine)
            slow.append(engine)
        voter = AlarmVoter(bundle.alarm.votes_required, bundle.alarm.votes_window)
        return Pipeline(engine, Scorer(engine, Frontend(), cal), voter, str(model), "onnx (test)")

    return build


def deploy(tmp: Path, model: Path, **changes: Any) -> Any:
    return write_test_bundle(
        tmp,
        model_sha256=sha(model),
        duty_cycle={"sample_s": 0.5, "period_s": 6.0},
        alarm={"votes_required": 2, "votes_window": 3},
        **changes,
    )


def params(files: Any, state: Path, **kw: Any) -> RuntimeParams:
    return RuntimeParams(
        bundle=str(files.bundle),
        trust_dir=str(files.trust_dir),
        firmware=str(files.firmware),
        rollback_state=str(state / "bundle_state.json"),
        event_log=str(state / "events.jsonl"),
        use_duty_cycle_driver=False,
        **kw,
    )


def health(rt: DetectorRuntime, name: str) -> StatusRecord:
    rec = next(t for t in rt.health_tasks() if t.name == name).run(StatusRecord())
    assert isinstance(rec, StatusRecord)
    return rec


def feed(rt: DetectorRuntime, clock: Clock, robot: SimulatedRobot, t0: float) -> None:
    """One supervisor-style period: queue the window's batch, wake, infer it, sleep."""
    assert rt.queue is not None
    n = batch_samples(RATE, 0.5)
    _, x = robot.frames(t0, t0 + n / RATE)
    clock.t = t0 + 0.5
    rt.queue.put(Batch(t0, t0 + (n - 1) / RATE, x.astype(np.float32), RATE))
    rt.activate()
    rt.infer_now(t0)
    rt.deactivate()


# ------------------------------------------------------------------------------ 1. rollback floor


def test_a_configure_that_fails_after_verification_does_not_raise_the_rollback_floor(
    tmp_path: Path, model_path: Path
) -> None:
    v1 = deploy(tmp_path / "v1", model_path, version=10)
    state = tmp_path / "state"
    rt = DetectorRuntime(Clock(100.0), pipeline_factory=factory(model_path, 0.5), threaded=False)
    rt.configure(params(v1, state))
    rt.teardown()
    # A validly signed v11 with a value this robot cannot run (a window too short for one batch).
    key_dir = v1.trust_dir
    v11 = write_test_bundle(
        tmp_path / "v11",
        model_sha256=sha(model_path),
        version=11,
        duty_cycle={"sample_s": 0.001, "period_s": 6.0},
    )
    (Path(key_dir) / next(Path(v11.trust_dir).glob("*.pub")).name).write_bytes(
        next(Path(v11.trust_dir).glob("*.pub")).read_bytes()
    )
    from vibration_anomaly.core.imu_buffer import ImuSampler
    from vibration_anomaly.core.window import Windower

    def attach(queue: Any, sample_s: float) -> ImuSampler:
        return ImuSampler(
            Windower(batch_samples(RATE, sample_s), channels=3, fs_hz=RATE), queue, capacity=8192
        )

    bad = RuntimeParams(
        **{**params(v1, state).as_dict(), "bundle": str(v11.bundle), "firmware": str(v11.firmware)}
    )
    with pytest.raises(ConfigureFailed):
        rt.configure(bad, attach=attach)
    assert rt.detector is None  # nothing left loaded
    # The previous, working bundle is still accepted: v11 never became the floor.
    rt.configure(params(v1, state), attach=attach)
    assert rt.bundle is not None and rt.bundle.version == 10
    rt.close()


def test_a_read_only_event_log_does_not_stop_the_detector(tmp_path: Path, model_path: Path) -> None:
    files = deploy(tmp_path / "b", model_path)
    state = tmp_path / "state"
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the log folder should be")
    p = RuntimeParams(**{**params(files, state).as_dict(), "event_log": str(blocker / "events.jsonl")})
    clock = Clock(1000.0)
    rt = DetectorRuntime(clock, pipeline_factory=factory(model_path, 0.5), threaded=False)
    rt.configure(p)  # configures: the log is optional, its failure is reported
    rec = health(rt, "storage")
    assert rec.level == ERROR and "event log" in rec.message, rec.message
    feed(rt, clock, SimulatedRobot(RobotConfig(rate_hz=RATE, seed=3)), 1000.0)
    assert rt.detector is not None and rt.detector.inferences == 1  # the detector keeps running
    rt.close()


# --------------------------------------------------------------------------------- 2. the latch


def test_a_raised_alarm_survives_restart_and_reconfigure_until_reset(
    tmp_path: Path, model_path: Path
) -> None:
    files = deploy(tmp_path / "b", model_path)
    state = tmp_path / "state"
    faulty = SimulatedRobot(RobotConfig(rate_hz=RATE, seed=3, fault=FaultSpec(start_s=0.0, growth_s=1.0)))
    healthy = SimulatedRobot(RobotConfig(rate_hz=RATE, seed=3))
    clock = Clock(2000.0)
    rt = DetectorRuntime(clock, pipeline_factory=factory(model_path, 0.5), threaded=False)
    events: list[dict[str, Any]] = []
    rt.sinks.append(events.append)
    rt.configure(params(files, state))
    for k in range(4):
        feed(rt, clock, faulty, 2000.0 + 6 * k)
    assert rt.detector is not None and rt.detector.voter.latched
    rt.close()
    # A new process on the same state files: the first verdict after the restart still says alarm.
    rt2 = DetectorRuntime(clock, pipeline_factory=factory(model_path, 0.5), threaded=False)
    events2: list[dict[str, Any]] = []
    rt2.sinks.append(events2.append)
    rt2.configure(params(files, state))
    feed(rt2, clock, healthy, 3000.0)
    infers = [e for e in events2 if e["event"] == "infer"]
    assert infers and infers[-1]["alarm"] is True and not infers[-1]["above"]
    # A reconfigure (same process) keeps it too.
    rt2.teardown()
    rt2.configure(params(files, state))
    feed(rt2, clock, healthy, 3006.0)
    assert [e for e in events2 if e["event"] == "infer"][-1]["alarm"] is True
    # Only an explicit reset clears it, and it is logged.
    assert rt2.reset_alarm("test", "bearing replaced") is True
    feed(rt2, clock, healthy, 3012.0)
    assert [e for e in events2 if e["event"] == "infer"][-1]["alarm"] is False
    resets = [e for e in events2 if e["event"] == "alarm_reset"]
    assert resets and resets[0]["who"] == "test" and resets[0]["was_latched"] is True
    rt2.close()
    logged = read_events(state / "events.jsonl")
    assert any(e["event"] == "alarm" for e in logged) and any(e["event"] == "alarm_reset" for e in logged)


# ------------------------------------------------------------------------------- 3. clock jumps


class Hooks:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.open: SampleWindow | None = None
        self.opened_for: list[float] = []
        self.calls: list[tuple[str, float]] = []

    def open_sampling(self, w: SampleWindow) -> None:
        self.open = w
        self.opened_for.append(self.clock.t)
        self.calls.append(("open", self.clock.t))

    def close_sampling(self, w: SampleWindow) -> None:
        self.open = None
        self.calls.append(("close", self.clock.t))

    def infer_once(self, w: SampleWindow) -> None:
        self.calls.append(("infer", self.clock.t))

    def held_resources(self) -> tuple[str, ...]:
        return ()


def _driver(
    tmp_path: Path, model_path: Path, clock: Clock
) -> tuple[DetectorRuntime, Hooks, list[dict[str, Any]]]:
    files = deploy(tmp_path / "b", model_path)
    rt = DetectorRuntime(clock, pipeline_factory=factory(model_path, 0.5), threaded=False)
    events: list[dict[str, Any]] = []
    rt.sinks.append(events.append)
    hooks = Hooks(clock)
    rt.configure(
        RuntimeParams(**{**params(files, tmp_path / "state").as_dict(), "use_duty_cycle_driver": True}),
        hooks=hooks,
    )
    assert rt.driver is not None
    return rt, hooks, events


def _run(rt: DetectorRuntime, clock: Clock, until: float) -> None:
    assert rt.driver is not None
    due = rt.driver.step()
    while due is not None and due <= until:
        clock.t = max(clock.t, due)
        due = rt.driver.step()


@pytest.mark.parametrize("jump_s", [-3600.0, -30.0, 3600.0])
def test_a_clock_jump_while_asleep_re_arms_within_one_period(
    tmp_path: Path, model_path: Path, jump_s: float
) -> None:
    clock = Clock(10_000.0)
    rt, hooks, events = _driver(tmp_path, model_path, clock)
    assert rt.driver is not None
    rt.driver.start()
    _run(rt, clock, 10_030.0)
    clock.t += 2.0  # asleep between windows
    clock.t += jump_s
    at_jump = clock.t
    n_infers = sum(1 for c in hooks.calls if c[0] == "infer")
    _run(rt, clock, at_jump + 6.0 + 1.0)  # one period (6 s) and a little
    assert sum(1 for c in hooks.calls if c[0] == "infer") > n_infers, (
        "no inference within a period of the jump"
    )
    jumps = [e for e in events if e["event"] == "clock_jump"]
    assert jumps and jumps[0]["delta_s"] == pytest.approx(jump_s + 2.0 - 0.0, abs=6.5)
    rec = health(rt, "duty cycle")
    assert rec.level == WARN and "clock jump" in rec.message, rec.message
    rt.close()


def test_a_backward_jump_mid_window_closes_the_subscription_at_once(tmp_path: Path, model_path: Path) -> None:
    clock = Clock(10_000.0)
    rt, hooks, events = _driver(tmp_path, model_path, clock)
    assert rt.driver is not None
    due = rt.driver.start()
    clock.t = due
    rt.driver.step()  # the window opens
    assert rt.driver.state is DriverState.SAMPLING and hooks.open is not None
    clock.t -= 3600.0  # NTP stepped the clock back an hour mid-window
    rt.driver.step()  # the node's 1 Hz steady watch calls this within a second
    assert hooks.open is None and rt.driver.state is DriverState.WAITING
    assert not [c for c in hooks.calls if c[0] == "infer"], "nothing of the abandoned window is inferred"
    _run(rt, clock, clock.t + 7.0)
    assert [c for c in hooks.calls if c[0] == "infer"]
    rt.close()


# ---------------------------------------------------------------------------- 7. full disk


def test_the_event_log_survives_a_full_disk_and_keeps_the_alarm(tmp_path: Path) -> None:
    states: list[tuple[bool, str]] = []
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    path = log_dir / "events.jsonl"
    path.symlink_to("/dev/full")  # a full disk: every write answers ENOSPC
    log = JsonlEventLog(path, on_state=lambda ok, m: states.append((ok, m)))
    log({"t": 2.0, "event": "alarm", "score": 9.0})
    assert log.failing and states and states[-1][0] is False and "No space" in states[-1][1]
    log({"t": 3.0, "event": "infer"})
    assert log.pending == 2  # nothing accepted is lost
    path.unlink()  # space again
    log({"t": 4.0, "event": "sleep"})  # the next write reopens the file and flushes the backlog first
    assert not log.failing and states[-1][0] is True
    log.close()
    assert [e["event"] for e in read_events(path)] == ["alarm", "infer", "sleep"]


def test_the_event_log_rotates_and_stays_bounded(tmp_path: Path) -> None:
    log = JsonlEventLog(tmp_path / "events.jsonl", max_bytes=2000, keep=2)
    for i in range(400):
        log({"t": float(i), "event": "infer", "score": 0.5})
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    assert all((tmp_path / f).stat().st_size < 2200 for f in files)
    assert read_events(tmp_path / "events.jsonl")[-1]["t"] == 399.0


def test_the_event_log_is_on_by_default_beside_ros_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path / "roslog"))
    assert RuntimeParams().event_log_path() == tmp_path / "roslog" / "vibration_anomaly" / "events.jsonl"
    assert RuntimeParams(event_log="").event_log_path() is None


# ----------------------------------------------------------------------- 5. an overrun engine call


def test_an_overrun_engine_call_leaves_the_runtime_recoverable_and_the_engine_asleep(
    tmp_path: Path, model_path: Path
) -> None:
    files = deploy(tmp_path / "b", model_path)
    slow: list[SlowEngine] = []
    clock = Clock(5000.0)
    rt = DetectorRuntime(clock, pipeline_factory=factory(model_path, 0.5, slow), threaded=True)
    events: list[dict[str, Any]] = []
    rt.sinks.append(events.append)
    rt.configure(params(files, tmp_path / "state"))
    assert rt.worker is not None and rt.worker.timeout_s == pytest.approx(3.0)  # half the 6 s period
    robot = SimulatedRobot(RobotConfig(rate_hz=RATE, seed=3))
    slow[0].delay_s = 4.5  # longer than the bound
    rt.activate()
    n = batch_samples(RATE, 0.5)
    _, x = robot.frames(5000.0, 5000.0 + n / RATE)
    assert rt.queue is not None
    rt.queue.put(Batch(5000.0, 5000.0 + (n - 1) / RATE, x.astype(np.float32), RATE))
    from vibration_anomaly.runtime.worker import EngineCallTimeout

    with pytest.raises(EngineCallTimeout):
        rt.infer_now(5000.0)
    rt.deactivate()  # returns at once: the sleep is queued behind the hung call
    assert rt.stuck and [e for e in events if e["event"] == "error" and e.get("what") == "engine"]
    from vibration_anomaly.runtime.runtime import EngineBusy

    with pytest.raises(EngineBusy):
        rt.activate()  # refused (FAILURE on the node), not an error state
    deadline = time.monotonic() + 10.0
    while rt.stuck and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rt.stuck is None
    assert rt.detector is not None and rt.detector.residency().asleep  # the queued sleep ran
    slow[0].delay_s = 0.0
    feed(rt, clock, robot, 5006.0)  # and the next period works again
    assert rt.detector.inferences >= 1
    rt.close()


def test_a_wake_without_its_sleep_is_freed_at_the_end_of_the_period(tmp_path: Path, model_path: Path) -> None:
    """A deactivate that never came: the driver frees the engine at once instead of for the whole sleep."""
    clock = Clock(20_000.0)
    files = deploy(tmp_path / "b", model_path)
    rt = DetectorRuntime(clock, pipeline_factory=factory(model_path, 0.5), threaded=False)
    events: list[dict[str, Any]] = []
    rt.sinks.append(events.append)

    class Forgetful(Hooks):
        def infer_once(self, w: SampleWindow) -> None:
            rt.activate()  # woken, and the matching deactivate is lost
            rt.infer_now(w.start)

        def held_resources(self) -> tuple[str, ...]:
            return rt.held_resources()

    rt.configure(
        RuntimeParams(**{**params(files, tmp_path / "state").as_dict(), "use_duty_cycle_driver": True}),
        hooks=Forgetful(clock),
    )
    assert rt.driver is not None and rt.detector is not None
    due = rt.driver.start()
    while rt.driver.periods < 1:
        clock.t = max(clock.t, due)
        due = rt.driver.step()
    assert rt.detector.residency().asleep, "the engine stayed resident through the sleep"
    forced = [e for e in events if e["event"] == "error" and "forced to sleep" in e["message"]]
    assert forced and forced[0]["held"]
    assert [e for e in events if e["event"] == "sleep"][-1]["held"] == []
    rec = health(rt, "duty cycle")
    assert rec.level == WARN and "forced to sleep" in rec.message, rec.message
    rt.close()
