"""The fleet soak: N simulated robots for H hours through the shared ``DetectorRuntime``, faults injected.

Every robot is the runtime the node builds (``runtime.DetectorRuntime``: signed bundle verified against a
trust dir and a firmware statement, rollback state, durable alarm latch, event log, ONNX Runtime on the
shipped model, modelled power, telemetry to a real Pushgateway when one is given), driven by its own
``DutyCycleDriver`` (the one ``configure`` builds from the soak's hooks) on its own simulated clock.
The fleet advances in lock step, one duty period of fleet time at a time, so a fleet-wide fault (the
Pushgateway down for an hour) hits every robot at the same simulated moment.

What is injected, per robot on a schedule drawn from ``--seed`` (docs/SOAK.md lists it): connectivity
hiccups whose firmware burst hands the keep-last queue thousands of buffered frames; a wake whose
deactivate never comes; bundle / firmware disagreement at boot and after a firmware update; a tampered
bundle and a signed-but-unusable bundle after a good one; backward and forward clock jumps of up to an
hour (while asleep and while sampling); IMU dropouts and rate changes; NaN / inf bursts; duplicate and
out-of-order stamps; a corrupt model file; a hung engine call; a full disk under the event log; process
restarts mid-cycle with an alarm latched before them. A "before" robot runs the story's broken loop
(always awake, an unbounded FIFO replayed in order) on the same engine and frames, for comparison.

The soak measures; it never corrects. Where the runtime mishandles a fault the figures say so
(``mishandled``), so the same command proves the fixes as they land.

Speed (50 robots x 24 h in a few minutes on two cores) comes from the simulation only, never from the
runtime's logic: frames are stamped per window onto a small pool of pre-generated windows per machine
model; the frontend's features are memoised by the batch's bytes (identical windows give identical
features); ONNX Runtime sessions are pooled (a robot's ``wake`` takes a session from the pool, its
``sleep`` gives it back: its residency, and so its power, stays its own); calibration is commissioned
once per machine model and shared. The engine still runs every inference.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from vibration_anomaly.core.events import (
    ALARM,
    CLOCK_JUMP,
    DROP,
    DROP_BEFORE_WINDOW,
    DROP_KEEP_LAST,
    ERROR,
    INFER,
    SLEEP,
    STORAGE,
    Event,
)
from vibration_anomaly.core.health import LEVEL_NAMES, OK
from vibration_anomaly.core.imu_buffer import ImuSampler, qos_depth
from vibration_anomaly.core.scheduler import SampleWindow
from vibration_anomaly.core.window import Windower, batch_samples
from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
from vibration_anomaly.errors import InputError
from vibration_anomaly.sim.robot import FaultSpec, RobotConfig, SimulatedRobot

RATE_HZ = 1000.0
POOL_WINDOWS = 6  # pre-generated windows per machine model and condition
COMMISSIONING_WINDOWS = 30
PUSH_INTERVAL_S = 2.0  # wall seconds between pushes (the fleet runs ~300x faster than real time)
HUNG_CALL_BOUND_S = 1.0  # the hung robot's engine-call bound, in wall seconds (the runtime's is 30 s)
RETRY_PERIODS = (
    5  # a robot that failed to configure is retried every 5 duty periods (the supervisor's back-off)
)
STALE_TOLERANCE_S = 1e-3
log = logging.getLogger("vibration_anomaly.soak")

# Faults every robot gets (cheap, data-level) and the structural ones dealt round-robin.
DATA_FAULTS = ("hiccup_burst", "nan_inf_burst", "nan_inf_sparse", "duplicate_stamps", "out_of_order_stamps")
STRUCTURAL_FAULTS = (
    "restart_with_alarm",
    "clock_jump_back_asleep",
    "clock_jump_back_sampling",
    "clock_jump_forward",
    "wake_without_sleep",
    "bundle_refused_after_good",
    "bundle_unusable_after_good",
    "firmware_update_disagreement",
    "corrupt_model",
    "hung_engine_call",
    "full_disk",
    "imu_dropout",
    "imu_rate_change",
    "boot_disagreement",
)
FLEET_FAULTS = ("pushgateway_down",)
FAULT_KINDS = DATA_FAULTS + STRUCTURAL_FAULTS + FLEET_FAULTS
# Which health task should show each fault (``runtime.board``), when one should.
HEALTH_FOR = {
    "hiccup_burst": ("backlog",),
    "nan_inf_burst": ("backlog", "sensor"),
    "nan_inf_sparse": ("backlog", "sensor"),
    "duplicate_stamps": ("backlog",),
    "out_of_order_stamps": ("backlog",),
    "restart_with_alarm": (),
    "clock_jump_back_asleep": ("duty cycle",),
    "clock_jump_back_sampling": ("duty cycle",),
    "clock_jump_forward": ("duty cycle",),
    "wake_without_sleep": ("power", "duty cycle", "model"),
    "bundle_refused_after_good": ("bundle",),
    "bundle_unusable_after_good": ("bundle", "model"),
    "firmware_update_disagreement": ("bundle",),
    "corrupt_model": ("bundle", "model"),
    "hung_engine_call": ("model", "power", "duty cycle"),
    "full_disk": ("storage",),
    "imu_dropout": ("sensor", "backlog", "duty cycle"),
    "imu_rate_change": ("sensor", "backlog"),
    "boot_disagreement": ("bundle",),
    "pushgateway_down": (),
}
# Faults during which inference is legitimately impossible: their hours are left out of the 60 +/- 1 check.
OUTAGE_FAULTS = frozenset(
    (
        "restart_with_alarm",
        "firmware_update_disagreement",
        "corrupt_model",
        "hung_engine_call",
        "imu_dropout",
        "imu_rate_change",
        "boot_disagreement",
        "nan_inf_burst",
    )
)


@dataclass
class SoakOptions:
    robots: int = 50
    hours: float = 24.0
    seed: int = 0
    pushgateway: str | None = (
        None  # a gateway's URL; None: start one on loopback if installed (see telemetry)
    )
    telemetry: bool = True  # False: no telemetry at all
    machine_models: int = 4
    workdir: Path | None = None  # None: a temp folder (on /dev/shm when there is one), removed at the end


class SimClock:
    """A robot's clock (ROS time): the fleet's true time plus this robot's offset, moved by injected jumps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------------------------------ accelerations


class _SessionPool:
    """ONNX Runtime sessions shared by all robots: creating one per wake would cost more than the inference."""

    def __init__(self) -> None:
        self._free: dict[str, list[Any]] = {}
        self._lock = threading.Lock()
        self.created = 0

    def take(self, key: str, make: Any) -> Any:
        with self._lock:
            free = self._free.get(key)
            if free:
                return free.pop()
        self.created += 1
        return make()

    def give(self, key: str, session: Any) -> None:
        with self._lock:
            self._free.setdefault(key, []).append(session)


class _PooledOnnxEngine(OnnxRuntimeEngine):
    """The ONNX Runtime engine with its wake served from a session pool; everything else unchanged.

    The residency stays per robot (``_session`` is set while awake, None while asleep), so the power
    model, the health board and ``held_resources`` see exactly what they would see without the pool.
    """

    soak_pool: _SessionPool
    soak_key: str
    soak_before_infer: Any = None

    def wake(self) -> None:
        from vibration_anomaly.engine.base import EngineState
        from vibration_anomaly.errors import EngineStateError

        if self._state is EngineState.AWAKE:
            return
        if self._state is EngineState.UNLOADED or self._optimized is None:
            raise EngineStateError(f"{self.name}: wake() before load()")
        optimized = self._optimized

        def make() -> Any:
            import onnxruntime as ort

            return ort.InferenceSession(
                optimized, sess_options=self._options(optimize=False), providers=["CPUExecutionProvider"]
            )

        self._session = self.soak_pool.take(self.soak_key, make)
        self._state = EngineState.AWAKE

    def infer(self, features: np.ndarray) -> np.ndarray:
        hook = self.soak_before_infer
        if hook is not None:
            hook()
        return super().infer(features)

    def sleep(self) -> None:
        from vibration_anomaly.engine.base import EngineState

        if self._session is not None:
            self.soak_pool.give(self.soak_key, self._session)
        self._session = None
        if self._state is EngineState.AWAKE:
            self._state = EngineState.LOADED


class _MemoFrontend:
    """The model's frontend, memoised by the window's bytes: pooled windows repeat, their features too."""

    def __init__(self, frontend: Any, cache: OrderedDict[bytes, np.ndarray], limit: int = 512) -> None:
        self.frontend, self.cache, self.limit = frontend, cache, limit
        self.config = getattr(frontend, "config", None)

    def __call__(self, window: Any, fs_hz: Any, source: str = "window") -> np.ndarray:
        w = np.ascontiguousarray(window)
        key = hashlib.blake2b(w.data, digest_size=16, person=b"%d" % int(fs_hz)).digest()
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        out = self.frontend(window, fs_hz, source)
        self.cache[key] = out
        if len(self.cache) > self.limit:
            self.cache.popitem(last=False)
        return out


# ------------------------------------------------------------------------------------------ the fleet's files


def _shm_dir() -> str | None:
    d = "/dev/shm"
    return d if os.path.isdir(d) and os.access(d, os.W_OK) else None


class _Fleet:
    """What robots share: the signing key and bundles, model folders, calibrations, frame pools, caches."""

    def __init__(self, opts: SoakOptions, root: Path, gateway_url: str | None) -> None:
        from vibration_anomaly.bundle import example_payload, sign_payload
        from vibration_anomaly.bundle.trust import generate_private_key, key_id_of, public_key_pem
        from vibration_anomaly.model import load_default_model

        self.opts, self.root = opts, root
        self.model = load_default_model()
        self.sessions = _SessionPool()
        self.features: OrderedDict[bytes, np.ndarray] = OrderedDict()
        key = generate_private_key()
        self.trust = root / "trust"
        self.trust.mkdir(parents=True)
        key_id = key_id_of(key.public_key())
        (self.trust / f"{key_id}.pub").write_bytes(public_key_pem(key.public_key()))
        base = example_payload()
        base.update(key_id=key_id, expires_at=None)
        base["telemetry"] = {
            **base.get("telemetry", {}),
            "pushgateway_url": gateway_url,
            "job": "vibration_anomaly_soak",
            "push_interval_s": PUSH_INTERVAL_S,
        }
        self.payload = base
        dc = base["duty_cycle"]
        self.sample_s, self.period_s = float(dc["sample_s"]), float(dc["period_s"])
        self.awake_fraction_limit = float(base.get("health", {}).get("awake_fraction_max") or 0.125)

        def sign(name: str, **changes: Any) -> Path:
            import yaml

            payload = {**base, **changes}
            for k, v in changes.items():
                if isinstance(v, dict) and isinstance(base.get(k), dict):
                    payload[k] = {**base[k], **v}
            path = root / "bundles" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(sign_payload(yaml.safe_dump(payload, sort_keys=False).encode(), key))
            return path

        self.good = sign("good_v10.yaml", version=10)
        good_v11 = sign("good_v11.yaml", version=11)
        data = bytearray(good_v11.read_bytes())
        data[data.rindex(b"version: 11")] ^= 0x01  # one flipped payload byte: the signature no longer matches
        self.tampered = root / "bundles" / "tampered_v11.yaml"
        self.tampered.write_bytes(bytes(data))
        # Validly signed and newer, but it cannot run: the failure comes after verification, in configure.
        self.unusable = sign("unusable_v12.yaml", version=12, duty_cycle={"sample_s": 0.001, "period_s": 60})
        self.firmware_ok = (
            json.dumps({"duty_cycle": {"sample_s": dc["sample_s"], "period_s": dc["period_s"]}}) + "\n"
        )
        self.firmware_unusable = (
            json.dumps({"duty_cycle": {"sample_s": 0.001, "period_s": dc["period_s"]}}) + "\n"
        )
        self.firmware_bad = (
            json.dumps({"duty_cycle": {"sample_s": dc["sample_s"], "period_s": dc["period_s"] + 40}}) + "\n"
        )
        # A corrupt copy of the shipped model (one byte flipped mid-file), with its model.json.
        self.corrupt_model = root / "corrupt_model"
        self.corrupt_model.mkdir()
        shutil.copy2(self.model.directory / "model.json", self.corrupt_model / "model.json")
        blob = bytearray(self.model.onnx.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        (self.corrupt_model / "model.onnx").write_bytes(bytes(blob))
        self.calibrations: dict[int, Path] = {}
        self.pools: dict[tuple[int, bool], list[np.ndarray]] = {}
        self._commission()

    def _commission(self) -> None:
        """Once per machine model: healthy commissioning windows -> calibration file; frame pools."""
        engine = OnnxRuntimeEngine(intra_op_threads=1)
        engine.load(self.model.onnx)
        engine.wake()
        n = max(1, min(self.opts.machine_models, self.opts.robots))
        s, p = self.sample_s, self.period_s
        for m in range(n):
            seed = self.opts.seed * 1000 + m
            healthy = SimulatedRobot(RobotConfig(rate_hz=RATE_HZ, seed=seed))
            windows = [
                healthy.frames(k * p + s + 20.0, k * p + 2 * s + 20.0)[1]
                for k in range(COMMISSIONING_WINDOWS)
            ]
            cal = self.model.calibrate(engine, windows, RATE_HZ, machine=f"soak-machine-{m}")
            path = self.root / f"calibration_m{m}.json"
            cal.save(path)
            self.calibrations[m] = path
            self.pools[(m, False)] = [
                healthy.frames(k * p, k * p + s)[1]
                for k in range(COMMISSIONING_WINDOWS, COMMISSIONING_WINDOWS + POOL_WINDOWS)
            ]
            faulty = SimulatedRobot(
                RobotConfig(rate_hz=RATE_HZ, seed=seed, fault=FaultSpec(start_s=0.0, growth_s=1.0))
            )
            self.pools[(m, True)] = [faulty.frames(k * p, k * p + s)[1] for k in range(10, 10 + POOL_WINDOWS)]
        engine.sleep()
        engine.unload()

    def factory(self, bundle: Any, p: dict[str, Any]) -> Any:
        """``runtime.build_pipeline`` as the node runs it, then the soak's accelerations on its engine and frontend."""
        from vibration_anomaly.runtime import build_pipeline

        pipeline = build_pipeline(bundle, p)
        engine = pipeline.engine
        if type(engine) is OnnxRuntimeEngine:
            engine.__class__ = _PooledOnnxEngine
            engine.soak_pool = self.sessions  # type: ignore[attr-defined]
            engine.soak_key = str(p.get("model") or "default")  # type: ignore[attr-defined]
        scorer = pipeline.scorer
        if hasattr(scorer, "frontend"):
            scorer.frontend = _MemoFrontend(scorer.frontend, self.features)
        return pipeline


# ------------------------------------------------------------------------------------------ one robot


@dataclass
class FaultRecord:
    """What one injection did: when, to whom, what the runtime emitted and showed meanwhile."""

    kind: str
    robot: int
    t0: float  # true fleet seconds
    t1: float
    events: Counter[str] = field(default_factory=Counter)
    health: dict[str, set[str]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    health_samples: int = 0

    def observe(self, ev: Event) -> None:
        name = ev["event"]
        reason = ev.get("reason")
        self.events[f"{name}:{reason}" if reason else name] += 1


@dataclass
class _Action:
    t: float  # true seconds
    kind: str
    args: dict[str, Any] = field(default_factory=dict)


class _Hooks:
    """``core.driver.DriverHooks`` for a soak robot: the node's sequence on simulated frames."""

    def __init__(self, robot: _Robot) -> None:
        self.robot = robot

    def open_sampling(self, window: SampleWindow) -> None:
        r = self.robot
        r.windower.open_window(window.start)
        r.awake_since = r.true_now()

    def close_sampling(self, window: SampleWindow) -> None:
        r = self.robot
        rt = r.rt
        queue = rt.queue
        w = r.windower
        before0 = w.rejected[DROP_BEFORE_WINDOW]
        lost, chunks = r.deliver(window)
        if lost:
            rt.emit(DROP, frames=lost, reason=DROP_KEEP_LAST)
        for t, x in chunks:
            for b in w.push_many(t, x):
                if queue is not None:
                    queue.put(b)
        w.close_window()
        stale = w.rejected[DROP_BEFORE_WINDOW] - before0
        if stale:
            rt.emit(DROP, frames=stale, reason=DROP_BEFORE_WINDOW)
        rt.report_rejects()

    def infer_once(self, window: SampleWindow) -> None:
        r = self.robot
        rt = r.rt
        t0 = time.perf_counter()
        rt.activate()
        try:
            rt.infer_now(window.start)
        finally:
            if r.skip_deactivate:
                r.skip_deactivate = False  # the deactivate that never came
                r.stray_wakes += 1
            else:
                rt.deactivate()
            r.clock.now += time.perf_counter() - t0

    def held_resources(self) -> tuple[str, ...]:
        return self.robot.rt.held_resources()


class _Robot:
    def __init__(self, fleet: _Fleet, index: int, quiet: logging.Logger) -> None:
        self.fleet, self.index, self.quiet = fleet, index, quiet
        self.machine = index % max(1, min(fleet.opts.machine_models, fleet.opts.robots))
        self.dir = fleet.root / f"robot-{index:03d}"
        (self.dir / "state").mkdir(parents=True)
        (self.dir / "log").mkdir()
        self.firmware = self.dir / "firmware.json"
        self.firmware.write_text(fleet.firmware_ok)
        self.params_base: dict[str, Any] = dict(
            robot_id=f"soak-robot-{index:03d}",
            bundle=str(fleet.good),
            trust_dir=str(fleet.trust),
            firmware=str(self.firmware),
            require_firmware=True,
            rollback_state=str(self.dir / "state" / "rollback.json"),
            calibration=str(fleet.calibrations[self.machine]),
            backend="onnx",
            event_log=str(self.dir / "log" / "events.jsonl"),
            power_source="modelled",
        )
        self.clock = SimClock()
        self.offset = 0.0  # robot clock - true time
        self.hooks = _Hooks(self)
        self.depth = qos_depth(RATE_HZ, fleet.sample_s)
        self.batch_n = batch_samples(RATE_HZ, fleet.sample_s)
        self.rt: Any = None
        self.windower = Windower(self.batch_n, channels=3, fs_hz=RATE_HZ, source="imu")
        self.due: float | None = None  # robot-clock time of the driver's next step; None while down
        self.down_since: float | None = None
        self.retry_at = 0.0
        self.actions: list[_Action] = []
        self.faults: list[FaultRecord] = []
        self.active_faults: list[FaultRecord] = []
        self.health_watch: list[FaultRecord] = []
        self.outages: list[tuple[float, float]] = []
        self.window_faults: dict[str, list[tuple[float, float]]] = {}
        self.bearing_from: float | None = None
        self.skip_deactivate = False
        self.stray_wakes = 0
        self.hang_rt: Any = None
        self.inline_worker: Any = (
            None  # the runtime's own (inline) engine worker while a threaded one stands in
        )
        self.jump_generation = 0
        self.inferred_windows: set[tuple[int, int]] = set()
        self.hang_gate = threading.Event()
        self.hang_armed = False
        self.hang_until: float | None = None
        self.restart_after_alarm: list[str] = []
        self.next_restart_t = 0.0
        self.restart_gap_s = 3600.0
        self.configured_at_end = False
        self.infers_since_start = 0
        self.hiccups: list[tuple[float, float]] = []
        self.pending_boot_fault = False
        self.infer_true_t: list[float] = []
        self.restarts: list[dict[str, Any]] = []
        self.configures = Counter[str]()
        self.refusals = Counter[str]()
        # Measurements.
        self.awake_since: float | None = None
        self.awake_s = 0.0
        self.resident_since: float | None = None
        self.resident_s = 0.0
        self.infer_hours: Counter[int] = Counter()
        self.events = Counter[str]()
        self.stale_old = 0
        self.stale_future = 0
        self.multi_infer_periods = 0
        self.alarm_true_t: list[float] = []
        self.period_events: dict[str, Any] = {}
        self.sleep_awake_s: list[float] = []
        self.sampling_open_max_s = 0.0

    # -- time ------------------------------------------------------------------------------------
    def true_now(self) -> float:
        return self.clock.now - self.offset

    def set_true(self, t: float) -> None:
        self.clock.now = max(self.clock.now, t + self.offset)

    # -- events ----------------------------------------------------------------------------------
    def sink(self, ev: Event) -> None:
        name = ev["event"]
        self.events[name] += 1
        for f in self.active_faults:
            f.observe(ev)
        if name == INFER:
            self.infers_since_start += 1
            now = self.true_now()
            self.infer_hours[int(now // 3600)] += 1
            self.infer_true_t.append(now)
            age = float(ev["t"]) - float(ev["batch_t1"])
            if age > self.fleet.period_s + STALE_TOLERANCE_S:
                self.stale_old += 1
            elif age < -0.5:
                self.stale_future += 1
            # One inference per window: the window is known from the batch's stamps (and the clock's era).
            key = (self.jump_generation, math.floor(float(ev["batch_t1"]) / self.fleet.period_s))
            if key in self.inferred_windows:
                self.multi_infer_periods += 1
            self.inferred_windows.add(key)
        elif name == SLEEP:
            if self.awake_since is not None:
                awake = max(0.0, self.true_now() - self.awake_since)
                self.awake_s += awake
                self.sampling_open_max_s = max(self.sampling_open_max_s, awake)
                self.awake_since = None
        elif name == ALARM:
            self.alarm_true_t.append(self.true_now())

    # -- the runtime -----------------------------------------------------------------------------
    def params(self, **changes: Any) -> Any:
        from vibration_anomaly.runtime import RuntimeParams

        return RuntimeParams(**{**self.params_base, **changes})

    def new_runtime(self) -> None:
        from vibration_anomaly.runtime import DetectorRuntime

        self.infers_since_start = 0

        self.rt = DetectorRuntime(
            self.clock,
            pipeline_factory=self.fleet.factory,
            name=f"soak-{self.index}",
            threaded=False,
            logger=self.quiet,
        )
        self.rt.sinks.append(self.sink)

    def configure(self, why: str) -> bool:
        """Configure (verify bundle + firmware, load, wire); True when it runs. A refusal leaves the robot down."""
        if self.rt is None:
            self.new_runtime()

        def attach(queue: Any, sample_s: float) -> ImuSampler:
            # The window follows the bundle that is being configured (a bad one must fail here, as on a robot).
            self.windower = Windower(
                batch_samples(RATE_HZ, sample_s), channels=3, fs_hz=RATE_HZ, source="imu"
            )
            return ImuSampler(self.windower, queue, capacity=qos_depth(RATE_HZ, sample_s))

        try:
            self.rt.configure(self.params(), attach=attach, hooks=self.hooks)
        except Exception as exc:  # noqa: BLE001 - ConfigureFailed, or anything else: the robot stays down
            refused = getattr(exc, "refused", None)
            reason = refused.reason if refused is not None else getattr(exc, "what", type(exc).__name__)
            self.refusals[str(reason)] += 1
            self.configures[f"failed ({why})"] += 1
            for f in self.active_faults:
                f.events[f"configure_failed:{reason}"] += 1
                if f.health_samples < 6:
                    self.sample_health(f)
            self.go_down()
            return False
        self.configures[why] += 1
        driver = self.rt.driver
        if driver is None:
            raise RuntimeError("DetectorRuntime.configure built no duty-cycle driver from the soak's hooks")
        self.due = driver.start(self.clock())
        if self.down_since is not None:
            self.outages.append((self.down_since, self.true_now()))
            self.down_since = None
        return True

    def go_down(self) -> None:
        self.due = None
        if self.down_since is None:
            self.down_since = self.true_now()
        self.retry_at = self.true_now() + RETRY_PERIODS * self.fleet.period_s

    def crash(self) -> None:
        """The process dies: no final push, no orderly sleep; the OS closes the files."""
        rt = self.rt
        if rt is None:
            return
        if rt.pusher is not None:
            rt.pusher.stop(final_push=False, timeout_s=0.5)
            rt.pusher = None
        with contextlib.suppress(Exception):
            rt.teardown()
        if rt.event_log is not None:
            rt.event_log.close()
        self.rt = None
        self.due = None
        self.awake_since = None

    def latched(self) -> bool | None:
        d = self.rt.detector if self.rt is not None else None
        return None if d is None else bool(d.voter.latched)

    # -- frames ----------------------------------------------------------------------------------
    def _active(self, kind: str, t: float) -> bool:
        return any(a <= t < b for a, b in self.window_faults.get(kind, ()))

    def deliver(self, window: SampleWindow) -> tuple[int, list[tuple[np.ndarray, np.ndarray]]]:
        """Frames the subscription receives in this window (robot-clock stamps) and what keep-last lost."""
        t_true = window.start - self.offset
        fault = self.bearing_from is not None and t_true >= self.bearing_from
        pool = self.fleet.pools[(self.machine, fault)]
        x = pool[window.period % len(pool)]
        n = x.shape[0]
        if self._active("imu_dropout", t_true):
            return 0, []
        for a, b in self.hiccups:
            if a <= t_true and t_true + self.fleet.sample_s <= b:
                return 0, []  # the link is down for the whole window
        if self._active("imu_rate_change", t_true):
            rate = 800.0 if self.index % 2 == 0 else 2000.0
            m = int(self.fleet.sample_s * rate)
            xs = np.resize(x, (m, 3))
            return 0, [(window.start + np.arange(m) / rate, xs)]
        t = window.start + np.arange(n) / RATE_HZ
        chunks: list[tuple[np.ndarray, np.ndarray]] = []
        lost = 0
        for a, b in self.hiccups:
            if a < t_true < b <= t_true + self.fleet.sample_s:
                # The link came back inside the window: the firmware releases everything it buffered since
                # the hiccup began, and the keep-last queue keeps the newest ``depth`` frames of it.
                back = window.start + (b - t_true)
                n_buf = int(round((b - a) * RATE_HZ))
                keep = min(n_buf, self.depth)
                lost = n_buf - keep
                bt = back - (np.arange(keep)[::-1] + 1) / RATE_HZ
                bx = np.resize(x, (keep, 3))
                i = int(round((b - t_true) * RATE_HZ))
                chunks.append((bt, bx))
                chunks.append((t[i:], x[i:]))
                return lost, chunks
        if self._active("nan_inf_burst", t_true):
            x = x.copy()
            x[1000:1300] = np.nan
            x[1300:1400, 1] = np.inf
        elif self._active("nan_inf_sparse", t_true):
            x = x.copy()
            x[500:4500:400, 0] = np.nan
            x[700:4500:800, 2] = -np.inf
        elif self._active("duplicate_stamps", t_true):
            idx = np.concatenate([np.arange(0, 2000), np.arange(1950, 2000), np.arange(2000, n)])
            t, x = t[idx], x[idx]
        elif self._active("out_of_order_stamps", t_true):
            idx = np.arange(n)
            sw = np.arange(1001, 3001, 40)
            idx[sw], idx[sw + 1] = sw + 1, sw
            t, x = t[idx], x[idx]
        return 0, [(t, x)]

    # -- stepping --------------------------------------------------------------------------------
    def advance(self, target: float) -> None:
        """Run this robot until fleet time ``target`` (true seconds)."""
        while True:
            self._accrue_resident()
            nxt_action = self.actions[0].t if self.actions else math.inf
            if self.hang_until is not None and self.true_now() >= self.hang_until:
                self.hang_until = None
                self.hang_gate.set()
            if self.due is None:  # down: a supervisor retries configure once a period
                when = min(self.retry_at, nxt_action)
                if when >= target:
                    self.set_true(target)
                    return
                self.set_true(when)
                if nxt_action <= self.retry_at:
                    self._do(self.actions.pop(0))
                else:
                    self.configure("retry")
                continue
            due_true = self.due - self.offset
            if nxt_action <= due_true and nxt_action < target:
                self.set_true(nxt_action)
                self._do(self.actions.pop(0))
                continue
            if due_true >= target:
                self.set_true(target)
                return
            self.clock.now = max(self.clock.now, self.due)
            driver = self.rt.driver
            was_sampling = driver.state.value == "sampling"
            self.due = driver.step()
            self._after_step(was_sampling)

    def _after_step(self, was_sampling: bool) -> None:
        rt = self.rt
        if rt is None or rt.driver is None:
            return
        sampling = rt.driver.state.value == "sampling"
        # Engine resident while the duty cycle sleeps: the GPU kept hot (wake without sleep, a hung call).
        if not sampling and self.resident_since is None and rt.detector is not None and rt.detector.awake:
            self.resident_since = self.true_now()
        for f in self.health_watch:
            if f.health_samples < 6 and (was_sampling and not sampling):
                self.sample_health(f)
        self.health_watch = [f for f in self.health_watch if f.health_samples < 6]
        if sampling and not was_sampling and self.restart_after_alarm and self.alarm_true_t:
            now = self.true_now()
            if now - self.alarm_true_t[0] >= 2 * self.fleet.period_s and now >= self.next_restart_t:
                self.next_restart_t = now + self.restart_gap_s
                self.restart(self.restart_after_alarm.pop(0))

    def _accrue_resident(self) -> None:
        if self.resident_since is None:
            return
        rt = self.rt
        still = (
            rt is not None
            and rt.detector is not None
            and rt.detector.awake
            and not (rt.driver is not None and rt.driver.state.value == "sampling")
        )
        if not still:
            self.resident_s += max(0.0, self.true_now() - self.resident_since)
            self.resident_since = None

    def sample_health(self, f: FaultRecord) -> None:
        f.health_samples += 1
        if self.rt is None:
            return
        for task in self.rt.health_tasks():
            try:
                h = task.check()
            except Exception as exc:  # noqa: BLE001 - a broken check is itself a finding
                f.health.setdefault(task.name, set()).add(f"check failed: {type(exc).__name__}")
                continue
            if h.level != OK:
                f.health.setdefault(task.name, set()).add(LEVEL_NAMES.get(h.level, str(h.level)))

    def restart(self, why: str) -> None:
        """A process restart mid-cycle: crash, then rebuild the runtime from the same state files."""
        before = self.latched()
        now = self.true_now()
        f = self._fault("restart_with_alarm", now + 2 * self.fleet.period_s)
        self._schedule(f.t1, "end", kind="restart_with_alarm")
        self.crash()
        self.configure(f"restart ({why})")
        after = self.latched()
        x = {
            "robot": self.index,
            "t_h": round(now / 3600, 3),
            "why": why,
            "latched_before": before,
            "latched_after": after,
        }
        f.details.update(x)
        self.restarts.append(x)
        self.outages.append((now, now + self.fleet.period_s))

    def _do(self, a: _Action) -> None:
        fn = getattr(self, f"_act_{a.kind}")
        fn(**a.args)

    # -- actions (each begins or ends a fault) ------------------------------------------------------
    def _fault(self, kind: str, t1: float, **details: Any) -> FaultRecord:
        f = FaultRecord(kind, self.index, self.true_now(), t1, details=dict(details))
        self.faults.append(f)
        self.active_faults.append(f)
        self.health_watch.append(f)
        return f

    def _act_end(self, kind: str) -> None:
        if kind == "hung_engine_call" and self.inline_worker is not None:
            rt = self.rt
            if rt is not None and rt.worker is not None and rt.worker.busy:
                self._schedule(
                    self.true_now() + self.fleet.period_s, "end", kind=kind
                )  # still inside the call
                return
            if (
                rt is self.hang_rt
                and rt.worker is not None
                and rt.worker is not self.inline_worker
                and rt.bundle is not None
            ):
                rt.worker.stop()
                rt.worker = self.inline_worker
            self.inline_worker = None
        for f in [f for f in self.active_faults if f.kind == kind]:
            self.active_faults.remove(f)
            f.t1 = self.true_now()

    def _act_window_fault(self, kind: str, duration: float) -> None:
        t0 = self.true_now()
        self.window_faults.setdefault(kind, []).append((t0, t0 + duration))
        self._fault(kind, t0 + duration)
        self._schedule(t0 + duration + self.fleet.period_s, "end", kind=kind)
        if kind in OUTAGE_FAULTS:
            self.outages.append((t0, t0 + duration + self.fleet.period_s))

    def _defer(self, action: str, want: str, delay: float, **args: Any) -> bool:
        """Re-schedule an action meant for a phase (``sampling`` / ``asleep``) the robot is not in now."""
        drv = self.rt.driver if self.rt is not None else None
        if drv is None or self.due is None:
            return False
        state = drv.state.value
        if (want == "sampling") == (state == "sampling"):
            return False
        self._schedule(self.due - self.offset + delay, action, **args)
        return True

    def _act_clock_jump(self, kind: str, delta: float) -> None:
        want = "sampling" if kind.endswith("sampling") else "asleep"
        if self._defer("clock_jump", want, 2.0 if want == "sampling" else 20.0, kind=kind, delta=delta):
            return
        f = self._fault(kind, self.true_now() + 3600.0, delta_s=round(delta, 3))
        f.details["state_at_jump"] = (
            self.rt.driver.state.value if self.rt is not None and self.rt.driver else "down"
        )
        t = self.true_now()
        self.offset += delta
        self.clock.now = t + self.offset
        self.jump_generation += 1
        if self.rt is not None and self.rt.driver is not None and self.due is not None:
            # The node's steady-time clock watch steps the driver within a second of a jump.
            self.clock.now += 1.0
            was_sampling = self.rt.driver.state.value == "sampling"
            self.due = self.rt.driver.step()
            self._after_step(was_sampling)
        self._schedule(f.t1, "end", kind=kind)

    def _act_wake_without_sleep(self) -> None:
        self.skip_deactivate = True
        self._fault("wake_without_sleep", self.true_now() + 2 * self.fleet.period_s)
        self._schedule(self.true_now() + 3 * self.fleet.period_s, "end", kind="wake_without_sleep")

    def _act_hang(self, duration: float) -> None:
        """One inference hangs for ``duration`` simulated seconds, on a real engine thread with a real bound.

        The fleet runs its engine calls inline (one thread, no hand-offs: fast); for the hang this robot's
        runtime gets a threaded ``EngineWorker`` bounded at ``HUNG_CALL_BOUND_S`` wall seconds, so the
        runtime's own timeout, busy-engine and queued-sleep paths run for real. The hung call returns when
        the robot's simulated clock reaches the hang's end; the inline worker is put back afterwards.
        """
        from vibration_anomaly.runtime.worker import EngineWorker

        if self.rt is None or self.rt.worker is None or self.due is None:
            self._fault("hung_engine_call", self.true_now(), skipped="robot down at the time")
            return
        self.inline_worker, self.hang_rt = self.rt.worker, self.rt
        self.rt.worker = EngineWorker(self.rt.name, HUNG_CALL_BOUND_S, threaded=True)
        self.hang_armed = True
        self.hang_gate.clear()
        f = self._fault("hung_engine_call", self.true_now() + duration, hang_s=duration)

        def before_infer() -> None:
            if self.hang_armed:
                self.hang_armed = False
                self.hang_until = self.true_now() + duration
                if not self.hang_gate.wait(timeout=120.0):
                    f.details["released_by_safety_timeout"] = True

        engine = self.rt.pipeline.engine if self.rt is not None and self.rt.pipeline is not None else None
        if engine is not None:
            engine.soak_before_infer = before_infer
        self.outages.append((self.true_now(), self.true_now() + duration + 2 * self.fleet.period_s))
        self._schedule(self.true_now() + duration + 3 * self.fleet.period_s, "end", kind="hung_engine_call")

    def _act_reconfigure(self, kind: str, bundle: str) -> None:
        """A new bundle arrives during sleep: the supervisor deactivates, cleans up and configures with it."""
        if self._defer("reconfigure", "asleep", 20.0, kind=kind, bundle=bundle):
            return
        if self.rt is None or self.due is None:
            self._fault(kind, self.true_now(), skipped="robot down at the time")
            return
        f = self._fault(kind, self.true_now() + 2 * self.fleet.period_s, bundle=Path(bundle).name)
        self.rt.teardown()
        self.params_base["bundle"] = bundle
        if kind == "bundle_unusable_after_good":
            # Its firmware statement ships with it (they agree), so the bundle passes every check of the loader
            # and fails later, in configure: the case that must not raise the rollback floor.
            self.firmware.write_text(self.fleet.firmware_unusable)
        ok = self.configure(kind)
        f.details["new_bundle_accepted"] = ok
        f.details["refused_as"] = dict(self.refusals)
        if not ok:
            self.sample_health(f)
            # The supervisor goes back to the last good bundle (and its firmware statement).
            self.firmware.write_text(self.fleet.firmware_ok)
            self.params_base["bundle"] = str(self.fleet.good)
            back = self.configure(f"{kind}: back to the good bundle")
            f.details["back_on_good_bundle"] = back
            if not back:
                f.details["robot_blind_from_h"] = round(self.true_now() / 3600, 3)
        self._schedule(f.t1, "end", kind=kind)

    def _act_restart_fault(self, kind: str, duration: float) -> None:
        """Restart into a broken condition (firmware update, corrupt model, full disk) fixed ``duration`` later."""
        if self._defer("restart_fault", "sampling", 2.0, kind=kind, duration=duration):
            return
        f = self._fault(kind, self.true_now() + duration)
        if kind == "firmware_update_disagreement":
            self.firmware.write_text(self.fleet.firmware_bad)
        elif kind == "corrupt_model":
            self.params_base["model"] = str(self.fleet.corrupt_model)
        elif kind == "full_disk":
            blocker = self.dir / "full"
            blocker.write_text("a regular file where the log folder should be: every write fails\n")
            self.params_base["event_log"] = str(blocker / "events.jsonl")
        now = self.true_now()
        self.crash()
        ok = self.configure(f"restart into {kind}")
        f.details["configured"] = ok
        if kind != "full_disk":
            self.outages.append((now, now + duration + self.fleet.period_s))
        else:
            self.outages.append((now, now + self.fleet.period_s))
        self._schedule(now + duration, "fix", kind=kind)

    def _act_fix(self, kind: str) -> None:
        if kind in ("firmware_update_disagreement", "boot_disagreement"):
            self.firmware.write_text(self.fleet.firmware_ok)
        elif kind == "corrupt_model":
            self.params_base["model"] = ""
        elif kind == "full_disk":
            blocker = self.dir / "full"
            blocker.unlink()
            blocker.mkdir()  # space again: the log's next write reopens it
        for f in self.faults:
            if f.kind == kind:
                f.details["fixed_at_h"] = round(self.true_now() / 3600, 3)
        self._schedule(self.true_now() + 2 * self.fleet.period_s, "end", kind=kind)

    def _schedule(self, t: float, action: str, **args: Any) -> None:
        self.actions.append(_Action(t, action, args))
        self.actions.sort(key=lambda a: a.t)

    def close(self) -> None:
        self.configured_at_end = self.rt is not None and self.rt.bundle is not None
        self._accrue_resident()
        if self.resident_since is not None:
            self.resident_s += max(0.0, self.true_now() - self.resident_since)
            self.resident_since = None
        self.hang_gate.set()
        if self.rt is not None:
            with contextlib.suppress(Exception):
                if self.rt.driver is not None:
                    self.rt.driver.stop()
            with contextlib.suppress(Exception):
                self.rt.close()


# ------------------------------------------------------------------------------------------ the schedule


def _plan(robot: _Robot, kinds: list[str], hours: float, rng: random.Random) -> None:
    """Place this robot's faults in separate slots of its run, seeded; long faults last ``unit`` (an hour)."""
    fleet = robot.fleet
    p, s = fleet.period_s, fleet.sample_s
    total = hours * 3600.0
    structural = [k for k in kinds if k != "boot_disagreement"]
    order = list(structural) + list(DATA_FAULTS)
    rng.shuffle(order)
    slot = total / (len(order) + 1)
    unit = max(2 * p, min(3600.0, 0.8 * slot))  # an hour, shorter in short runs
    robot.restart_gap_s = unit
    if "boot_disagreement" in kinds:
        robot.firmware.write_text(fleet.firmware_bad)
        robot._schedule(min(unit, total / 4), "fix", kind="boot_disagreement")
        robot.pending_boot_fault = True
    for i, kind in enumerate(order):
        base = (i + 1) * slot
        k = int(base // p) + rng.randint(1, max(1, int(slot // p) // 4))
        asleep_t = k * p + s + rng.uniform(10.0, p - s - 15.0)  # mid-sleep
        sampling_t = k * p + rng.uniform(0.5, s - 0.5)  # mid-window
        window_t = k * p - 10.0  # just before a window
        if kind == "hiccup_burst":
            for j in range(3):
                kk = k + 3 * j
                long = j == 2  # the third one lasts several periods: whole windows without a link
                start = kk * p - (4 * p + 30.0 if long else 40.0)
                end = kk * p + rng.uniform(0.5, 2.0)
                robot.hiccups.append((start, end))
                robot._schedule(start - 1.0, "window_fault", kind="hiccup_burst", duration=end - start + 1.0)
        elif kind in ("nan_inf_burst", "nan_inf_sparse", "duplicate_stamps", "out_of_order_stamps"):
            robot._schedule(window_t, "window_fault", kind=kind, duration=3 * p)
        elif kind == "imu_dropout":
            robot._schedule(window_t, "window_fault", kind=kind, duration=min(600.0, unit))
        elif kind == "imu_rate_change":
            robot._schedule(window_t, "window_fault", kind=kind, duration=min(1800.0, unit))
        elif kind in ("clock_jump_back_asleep", "clock_jump_back_sampling"):
            t = asleep_t if kind.endswith("asleep") else sampling_t
            robot._schedule(t, "clock_jump", kind=kind, delta=-rng.uniform(0.5, 1.0) * unit)
        elif kind == "clock_jump_forward":
            robot._schedule(asleep_t, "clock_jump", kind=kind, delta=rng.uniform(0.5, 1.0) * unit)
        elif kind == "wake_without_sleep":
            robot._schedule(window_t, "wake_without_sleep")
        elif kind == "bundle_refused_after_good":
            robot._schedule(asleep_t, "reconfigure", kind=kind, bundle=str(fleet.tampered))
        elif kind == "bundle_unusable_after_good":
            robot._schedule(asleep_t, "reconfigure", kind=kind, bundle=str(fleet.unusable))
        elif kind in ("firmware_update_disagreement", "corrupt_model"):
            robot._schedule(sampling_t, "restart_fault", kind=kind, duration=min(1800.0, unit))
        elif kind == "full_disk":
            robot._schedule(sampling_t, "restart_fault", kind=kind, duration=unit)
        elif kind == "hung_engine_call":
            robot._schedule(window_t, "hang", duration=2.5 * p)
        elif kind == "restart_with_alarm":
            robot.bearing_from = max(p, base - 10 * p)
            robot.restart_after_alarm = ["mid-cycle, alarm latched", "mid-cycle again, alarm latched"]


def _hiccup_outages(robot: _Robot) -> None:
    """Whole windows inside a long hiccup get no frames at all (the link is down): an injected outage."""
    p, s = robot.fleet.period_s, robot.fleet.sample_s
    for a, b in robot.hiccups:
        for kk in range(math.ceil(a / p), math.floor(b / p) + 1):
            if a <= kk * p and kk * p + s <= b:
                robot.outages.append((kk * p, (kk + 1) * p))


# ------------------------------------------------------------------------------------------ the "before" robot


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


# ------------------------------------------------------------------------------------------ telemetry


class _Telemetry:
    """Where the fleet pushes: a given URL, a Pushgateway started on loopback, or nowhere (said why)."""

    def __init__(self, opts: SoakOptions) -> None:
        self.gateway: Any = None
        self.url: str | None = None
        self.mode = "off"
        self.why = ""
        self.outages: list[dict[str, Any]] = []
        if not opts.telemetry:
            self.why = "--no-telemetry"
            return
        if opts.pushgateway:
            self.url, self.mode, self.why = opts.pushgateway.rstrip("/"), "given", "--pushgateway"
            return
        from vibration_anomaly.telemetry.localservers import PUSHGATEWAY_BINARIES, Pushgateway, find_binary

        if find_binary(PUSHGATEWAY_BINARIES) is None:
            self.why = "prometheus-pushgateway is not installed (apt-get install prometheus-pushgateway); telemetry off"
            return
        try:
            self.gateway = Pushgateway().start()
        except Exception as exc:  # noqa: BLE001 - the soak runs without telemetry, and says so
            self.why = f"could not start a local Pushgateway ({type(exc).__name__}: {exc}); telemetry off"
            return
        self.url, self.mode, self.why = (
            self.gateway.url,
            "local",
            "started prometheus-pushgateway on 127.0.0.1",
        )

    @property
    def can_stop(self) -> bool:
        return self.gateway is not None

    def down(self, t_h: float) -> None:
        if self.gateway is not None:
            self.gateway.stop()
            self.outages.append({"down_at_h": round(t_h, 3)})

    def up(self, t_h: float) -> None:
        if self.gateway is not None:
            self.gateway.workdir = Path(tempfile.mkdtemp(prefix="va-pushgateway-"))
            self.gateway.start()
            if self.outages:
                self.outages[-1]["up_at_h"] = round(t_h, 3)

    def groups(self) -> dict[str, dict[str, float]]:
        """robot_id -> {metric name: value} as the gateway holds it now."""
        from vibration_anomaly.telemetry.localservers import http_get

        if self.url is None:
            return {}
        text = http_get(self.url + "/metrics", timeout=30).decode()
        out: dict[str, dict[str, float]] = {}
        for line in text.splitlines():
            if line.startswith("#") or 'robot_id="' not in line:
                continue
            name = line.split("{", 1)[0]
            rid = line.split('robot_id="', 1)[1].split('"', 1)[0]
            with contextlib.suppress(ValueError):
                value = float(line.rsplit(" ", 1)[1])
                if "{" in line and "reason=" in line:
                    reason = line.split('reason="', 1)[1].split('"', 1)[0]
                    name = f"{name}[{reason}]"
                out.setdefault(rid, {})[name] = out.get(rid, {}).get(name, 0.0) + value
        return out

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()


# ------------------------------------------------------------------------------------------ the run


def _deal(robots: int, rng: random.Random) -> list[list[str]]:
    """Structural faults dealt round-robin so that each kind lands on at least one robot (several when N allows)."""
    per = min(len(STRUCTURAL_FAULTS), max(3, math.ceil(len(STRUCTURAL_FAULTS) / max(1, robots))))
    kinds = list(STRUCTURAL_FAULTS)
    out: list[list[str]] = [[] for _ in range(robots)]
    i = 0
    for r in range(robots):
        while len(out[r]) < per:
            k = kinds[i % len(kinds)]
            i += 1
            if k not in out[r]:
                out[r].append(k)
            if i > 10 * len(kinds) * robots:
                break
    rng.shuffle(out)
    return out


def run_soak(opts: SoakOptions, progress: TextIO | None = None) -> dict[str, Any]:
    if opts.robots < 1:
        raise InputError("--robots", str(opts.robots), "expected at least 1 robot")
    period = 60.0
    n_periods = int(round(opts.hours * 3600 / period))
    if n_periods < 60:
        raise InputError("--hours", f"{opts.hours:g}", "expected at least 1 simulated hour (60 duty periods)")
    root_parent = opts.workdir or Path(tempfile.mkdtemp(prefix="va-soak-", dir=_shm_dir()))
    root = Path(root_parent) / "fleet"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    wall0 = time.perf_counter()
    tel = _Telemetry(opts)
    quiet = logging.getLogger("vibration_anomaly.soak.runtime")
    quiet.setLevel(logging.CRITICAL)
    quiet.propagate = False
    pkg = logging.getLogger("vibration_anomaly")
    old_level = pkg.level
    pkg.setLevel(logging.CRITICAL)  # loader, pusher and runtime warnings are counted in the report instead
    robots: list[_Robot] = []
    before: _BeforeRobot | None = None
    try:
        fleet = _Fleet(opts, root, tel.url)
        period = fleet.period_s
        hours = n_periods * period / 3600
        rng = random.Random(opts.seed)
        dealt = _deal(opts.robots, rng)
        for i in range(opts.robots):
            r = _Robot(fleet, i, quiet)
            _plan(r, dealt[i], hours, random.Random(opts.seed * 7919 + i))
            _hiccup_outages(r)
            robots.append(r)
        for r in robots:
            if r.pending_boot_fault:
                f = r._fault("boot_disagreement", 0.0)
                f.details["firmware_period_s"] = period + 40
            r.configure("boot")
        before = _BeforeRobot(fleet, list(robots[0].hiccups))
        gw_down = None
        if tel.can_stop:
            down_at = round(0.4 * n_periods) * period
            gw_down = (down_at, down_at + min(3600.0, n_periods * period / 4))
        gw_state = "up"
        fleet_fault: FaultRecord | None = None
        push_fail_before = 0
        last_progress = 0.0
        for k in range(n_periods):
            target = (k + 1) * period
            if gw_down is not None:
                if gw_state == "up" and target > gw_down[0]:
                    push_fail_before = _push_failures(robots)
                    tel.down(target / 3600)
                    gw_state = "down"
                    fleet_fault = FaultRecord("pushgateway_down", -1, target, gw_down[1])
                    for r in robots:
                        r.active_faults.append(fleet_fault)
                elif gw_state == "down" and target > gw_down[1]:
                    tel.up(target / 3600)
                    gw_state = "after"
                    assert fleet_fault is not None
                    fleet_fault.details["push_failures_during"] = _push_failures(robots) - push_fail_before
                    for r in robots:
                        with contextlib.suppress(ValueError):
                            r.active_faults.remove(fleet_fault)
            for r in robots:
                r.advance(target)
            before.advance(target)
            if progress is not None and (time.perf_counter() - last_progress > 1.0 or k == n_periods - 1):
                last_progress = time.perf_counter()
                progress.write(
                    f"\rsoak: {target / 3600:6.2f} h of {hours:g} h, {opts.robots} robots "
                    f"({(k + 1) / n_periods:4.0%}, {time.perf_counter() - wall0:5.0f} s)"
                )
                progress.flush()
        if progress is not None:
            progress.write("\n")
        for r in robots:
            r.close()
        before_report = before.report(hours)
        gateway = {}
        if tel.url is not None:
            try:
                gateway = tel.groups()
            except Exception as exc:  # noqa: BLE001
                gateway = {"error": {"message": 0.0}}
                log.warning(f"gateway read failed: {exc}")
        report = _report(
            opts, fleet, robots, hours, before_report, tel, gateway, fleet_fault, time.perf_counter() - wall0
        )
    finally:
        for r in robots:
            r.hang_gate.set()
        pkg.setLevel(old_level)
        tel.stop()
        if opts.workdir is None:
            shutil.rmtree(root_parent, ignore_errors=True)
    return report


def _push_failures(robots: list[_Robot]) -> int:
    n = 0
    for r in robots:
        if r.rt is not None and r.rt.pusher is not None:
            n += r.rt.pusher.stats.failures
    return n


# ------------------------------------------------------------------------------------------ the report


def _clean_hours(r: _Robot, hours: float) -> list[int]:
    out = []
    for h in range(int(hours)):
        a, b = h * 3600.0, (h + 1) * 3600.0
        if any(x0 < b and x1 > a for x0, x1 in r.outages):
            continue
        out.append(h)
    return out


def _report(
    opts: SoakOptions,
    fleet: _Fleet,
    robots: list[_Robot],
    hours: float,
    before: dict[str, Any],
    tel: _Telemetry,
    gateway: dict[str, dict[str, float]],
    fleet_fault: FaultRecord | None,
    wall_s: float,
) -> dict[str, Any]:
    from vibration_anomaly.power.modelled import DEFAULT_PLATFORM, PLATFORM_MODELS

    total_s = hours * 3600.0
    watts = PLATFORM_MODELS[DEFAULT_PLATFORM]
    per_clean: list[int] = []
    per_all: list[int] = []
    off: list[dict[str, Any]] = []
    awake: list[float] = []
    energy: list[float] = []
    for r in robots:
        for h in range(int(hours)):
            per_all.append(r.infer_hours.get(h, 0))
        for h in _clean_hours(r, hours):
            n = r.infer_hours.get(h, 0)
            per_clean.append(n)
            if abs(n - 60) > 1 and len(off) < 20:
                off.append({"robot": r.index, "hour": h, "inferences": n})
        frac = (r.awake_s + r.resident_s) / total_s
        awake.append(frac)
        energy.append(watts.asleep_w + (watts.awake_w - watts.asleep_w) * frac)
    stale_old = sum(r.stale_old for r in robots)
    stale_future = sum(r.stale_future for r in robots)
    restarts = [x for r in robots for x in r.restarts]
    lost = sum(1 for x in restarts if x["latched_before"] and not x["latched_after"])
    faults = _faults(robots, fleet_fault, gateway, tel)
    false_alarms = sum(len(r.alarm_true_t) for r in robots if r.bearing_from is None)
    n_off = sum(1 for r in robots for h in _clean_hours(r, hours) if abs(r.infer_hours.get(h, 0) - 60) > 1)
    report: dict[str, Any] = {
        "robots": opts.robots,
        "hours": round(hours, 6),
        "seed": opts.seed,
        "wall_s": round(wall_s, 2),
        "backend": "onnxruntime",
        "model": fleet.model.model_id,
        "machine_models": len(fleet.calibrations),
        "duty_cycle": {"sample_s": fleet.sample_s, "period_s": fleet.period_s},
        "stale_inferences": stale_old + stale_future,
        "stale_detail": {"older_than_period": stale_old, "stamped_after_inference_time": stale_future},
        "alarms_lost": lost,
        "restarts_with_alarm_latched": sum(1 for x in restarts if x["latched_before"]),
        "inferences_per_robot_hour": {
            "min": min(per_clean) if per_clean else None,
            "max": max(per_clean) if per_clean else None,
            "robot_hours": len(per_clean),
            "outside_60_pm_1": n_off,
            "examples_outside": off,
            "what": "robot-hours without an injected outage (refused boot, restart, dropout, rate change, "
            "NaN burst, hung call); clock jumps, hiccups, bursts, disk and gateway faults are included",
        },
        "inferences_per_robot_hour_all": {
            "min": min(per_all) if per_all else None,
            "max": max(per_all) if per_all else None,
        },
        "multiple_inferences_in_one_period": sum(r.multi_infer_periods for r in robots),
        "awake_fraction_max": round(max(awake), 6),
        "awake_fraction_mean": round(sum(awake) / len(awake), 6),
        "awake_fraction_limit": fleet.awake_fraction_limit,
        "energy_wh_per_robot_hour": {
            "mean": round(sum(energy) / len(energy), 4),
            "max": round(max(energy), 4),
            "asleep_w": watts.asleep_w,
            "awake_w": watts.awake_w,
            "source": f"modelled {watts.platform} (power/modelled.py)",
        },
        "false_alarms": false_alarms,
        "events": dict(sum((r.events for r in robots), Counter())),
        "configures": dict(sum((r.configures for r in robots), Counter())),
        "refusals": dict(sum((r.refusals for r in robots), Counter())),
        "restarts": restarts,
        "telemetry": {
            "mode": tel.mode,
            "url": tel.url,
            "why": tel.why,
            "outages": tel.outages,
            "robots_at_gateway": len([k for k in gateway if k.startswith("soak-robot-")]),
        },
        "faults": faults,
        "per_robot": [
            {
                "robot": r.index,
                "faults": sorted({f.kind for f in r.faults}),
                "inferences": r.events.get(INFER, 0),
                "awake_fraction": round(a, 5),
                "engine_resident_while_asleep_s": round(r.resident_s, 3),
                "subscription_open_max_s": round(r.sampling_open_max_s, 3),
                "alarms": len(r.alarm_true_t),
                "bearing_fault_from_h": None if r.bearing_from is None else round(r.bearing_from / 3600, 3),
                "configured_at_end": r.configured_at_end,
                "refusals": dict(r.refusals),
            }
            for r, a in zip(robots, awake, strict=True)
        ],
        "before": before,
        "sessions_created": fleet.sessions.created,
    }
    report["comparison"] = {
        "energy_ratio_before_over_after": round(
            before["energy_wh_per_robot_hour"]["mean"] / report["energy_wh_per_robot_hour"]["mean"], 3
        ),
        "stale_inferences": {"after": report["stale_inferences"], "before": before["stale_inferences"]},
        "awake_fraction_max": {"after": report["awake_fraction_max"], "before": before["awake_fraction_max"]},
    }
    report["mishandled"] = _mishandled(report)
    return report


def _faults(
    robots: list[_Robot],
    fleet_fault: FaultRecord | None,
    gateway: dict[str, dict[str, float]],
    tel: _Telemetry,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    by_kind: dict[str, list[FaultRecord]] = {}
    for r in robots:
        for f in r.faults:
            by_kind.setdefault(f.kind, []).append(f)
    for kind in DATA_FAULTS + STRUCTURAL_FAULTS:
        recs = by_kind.get(kind, [])
        events: Counter[str] = Counter()
        health: dict[str, set[str]] = {}
        for f in recs:
            events.update(f.events)
            for task, levels in f.health.items():
                health.setdefault(task, set()).update(levels)
        relevant = HEALTH_FOR.get(kind, ())
        entry: dict[str, Any] = {
            "injected": len(recs),
            "robots": sorted({f.robot for f in recs}),
            "events": dict(sorted(events.items())),
            "health_not_ok": {k: sorted(v) for k, v in sorted(health.items())},
            "health_showed_it": (any(t in health for t in relevant) if relevant else None),
            "health_expected_in": list(relevant),
        }
        details = [f.details for f in recs if f.details]
        if details:
            entry["details"] = details
        out[kind] = entry
    _fault_figures(out, robots)
    if fleet_fault is not None:
        reporting = [k for k in gateway if k.startswith("soak-robot-")]
        inf_ok = 0
        for r in robots:
            g = gateway.get(f"soak-robot-{r.index:03d}", {})
            # The registry lives as long as the process: after a restart it counts from zero again.
            since = r.infers_since_start if r.restarts or r.refusals else r.events.get(INFER, 0)
            if g and int(g.get("vibration_anomaly_inferences_total", -1)) == since:
                inf_ok += 1
        h0 = int(fleet_fault.t0 // 3600)
        during = [
            r.infer_hours.get(h0, 0)
            for r in robots
            if not any(x0 < (h0 + 1) * 3600 and x1 > h0 * 3600 for x0, x1 in r.outages)
        ]
        out["pushgateway_down"] = {
            "injected": 1,
            "down_h": [round(fleet_fault.t0 / 3600, 3), round(fleet_fault.t1 / 3600, 3)],
            "events": dict(fleet_fault.events),
            "push_failures_during": fleet_fault.details.get("push_failures_during"),
            "robots_at_gateway_after": len(reporting),
            "robots_whose_inference_count_matches_at_gateway": inf_ok,
            "inferences_in_the_down_hour": {
                "min": min(during) if during else None,
                "max": max(during) if during else None,
            },
        }
    else:
        out["pushgateway_down"] = {
            "injected": 0,
            "why": tel.why
            if tel.url is None
            else "the gateway was given (--pushgateway): the soak stops only one it started; "
            "or the run is shorter than 3 h",
        }
    return out


def _fault_figures(out: dict[str, Any], robots: list[_Robot]) -> None:
    """Fault-specific figures: what inference did in the hour after a clock jump, latch after restarts, ..."""
    p = 60.0
    for r in robots:
        for f in r.faults:
            e = out[f.kind]
            if f.kind.startswith("clock_jump"):
                n = sum(1 for t in r.infer_true_t if f.t0 <= t < f.t0 + 3600.0)
                e.setdefault("inferences_in_hour_after", []).append(n)
                gap = _longest_gap(r.infer_true_t, f.t0)
                e.setdefault("longest_gap_after_s", []).append(round(gap, 1))
                e.setdefault("first_inference_after_s", []).append(_first_after(r.infer_true_t, f.t0))
                e.setdefault("subscription_open_max_s", []).append(round(r.sampling_open_max_s, 3))
                e.setdefault("clock_jump_events", 0)
                e["clock_jump_events"] += f.events.get(CLOCK_JUMP, 0)
            elif f.kind == "wake_without_sleep":
                e["engine_resident_while_asleep_s"] = round(
                    sum(x.resident_s for x in robots if any(g.kind == f.kind for g in x.faults)), 3
                )
            elif f.kind == "hung_engine_call":
                t_end = f.t0 + f.details.get("hang_s", 0.0)
                e.setdefault("after", []).append(
                    {
                        "robot": r.index,
                        "error_events": f.events.get(ERROR, 0),
                        "inferences_in_hour_after_release": sum(
                            1 for t in r.infer_true_t if t_end + p <= t < t_end + 3600 + p
                        ),
                        "longest_gap_after_s": round(_longest_gap(r.infer_true_t, f.t0), 1),
                        "first_inference_after_release_s": _first_after(r.infer_true_t, t_end),
                        "engine_resident_s": round(r.resident_s, 3),
                        "configured_at_end": r.configured_at_end,
                        "released_by_safety_timeout": bool(f.details.get("released_by_safety_timeout")),
                    }
                )
            elif f.kind == "full_disk":
                e.setdefault("storage_events", 0)
                e["storage_events"] += f.events.get(f"{STORAGE}", 0) + sum(
                    v for k, v in f.events.items() if k.startswith(STORAGE)
                )
    for kind in (
        "imu_dropout",
        "imu_rate_change",
        "nan_inf_burst",
        "nan_inf_sparse",
        "duplicate_stamps",
        "out_of_order_stamps",
        "hiccup_burst",
    ):
        e = out.get(kind)
        if e is None:
            continue
        e["skips"] = sum(v for k, v in e["events"].items() if k.startswith("skip"))
        e["inferences"] = e["events"].get(INFER, 0)


def _first_after(times: list[float], t0: float) -> float | None:
    """Seconds from ``t0`` to the first inference after it (None: none before the run ended)."""
    later = [t for t in times if t >= t0]
    return round(min(later) - t0, 1) if later else None


def _longest_gap(times: list[float], t0: float) -> float:
    """Longest stretch without an inference in the hour from ``t0`` (true seconds)."""
    ts = [t0] + [t for t in times if t0 <= t < t0 + 3600.0] + [t0 + 3600.0]
    return max(b - a for a, b in zip(ts, ts[1:], strict=False))


def _mishandled(rep: dict[str, Any]) -> list[str]:
    """Plain statements of what the runtime got wrong in this run, from the figures above (empty: none seen)."""
    out: list[str] = []
    f = rep["faults"]
    if rep["stale_inferences"]:
        out.append(f"stale inferences: {rep['stale_inferences']} ({rep['stale_detail']})")
    if rep["alarms_lost"]:
        out.append(
            f"restart forgot the latched alarm: {rep['alarms_lost']} of "
            f"{rep['restarts_with_alarm_latched']} restarts with an alarm latched"
        )
    ipr = rep["inferences_per_robot_hour"]
    if ipr["outside_60_pm_1"]:
        out.append(
            f"inferences per robot-hour outside 60 +/- 1 in {ipr['outside_60_pm_1']} robot-hours without an "
            f"injected outage (min {ipr['min']}, max {ipr['max']})"
        )
    if rep["awake_fraction_max"] > rep["awake_fraction_limit"]:
        out.append(
            f"awake fraction {rep['awake_fraction_max']:.3f} above the bundle's limit "
            f"{rep['awake_fraction_limit']}"
        )
    for kind in ("clock_jump_back_asleep", "clock_jump_back_sampling", "clock_jump_forward"):
        e = f[kind]
        if not e["injected"]:
            continue
        limit = 2 * rep["duty_cycle"]["period_s"]
        slow = [x for x in e.get("first_inference_after_s", []) if x is None or x > limit]
        if slow:
            out.append(
                f"{kind}: inference stalled after the jump (seconds to the first inference after it: "
                f"{e.get('first_inference_after_s')}; more than {limit:g} s in {len(slow)} of {e['injected']})"
            )
        if not e.get("clock_jump_events"):
            out.append(f"{kind}: no clock_jump event")
        if e["health_showed_it"] is False:
            out.append(f"{kind}: duty-cycle health never left OK")
    for kind, e in f.items():
        if kind.startswith("clock_jump") or not e.get("injected"):
            continue
        if e.get("health_showed_it") is False:
            out.append(f"{kind}: health never showed it (expected in {', '.join(e['health_expected_in'])})")
    for d in f["bundle_unusable_after_good"].get("details", []) + f["bundle_refused_after_good"].get(
        "details", []
    ):
        if d.get("back_on_good_bundle") is False:
            out.append(
                f"after refusing {d.get('bundle')}, the previous good bundle was refused too: robot blind "
                f"from {d.get('robot_blind_from_h')} h"
            )
    w = f["wake_without_sleep"]
    if (
        w["injected"]
        and w.get("engine_resident_while_asleep_s", 0) > 1.5 * rep["duty_cycle"]["period_s"] * w["injected"]
    ):
        out.append(
            f"wake without sleep: engine resident while asleep {w['engine_resident_while_asleep_s']} s"
        )
    for a in f["hung_engine_call"].get("after", []):
        if not a["configured_at_end"]:
            out.append(f"hung engine call: robot {a['robot']} not configured at the end")
    fd = f["full_disk"]
    if fd["injected"] and not fd.get("storage_events"):
        out.append("full disk: no storage event")
    return out


# ------------------------------------------------------------------------------------------ the command


def format_summary(rep: dict[str, Any]) -> str:
    ipr, b = rep["inferences_per_robot_hour"], rep["before"]
    lines = [
        f"Soak: {rep['robots']} robots x {rep['hours']:g} h in {rep['wall_s']:.0f} s wall (ONNX Runtime, model "
        f"{rep['model']}, {rep['machine_models']} machine models); telemetry: {rep['telemetry']['mode']} "
        f"({rep['telemetry']['why']})",
        f"  stale inferences {rep['stale_inferences']} (before robot: {b['stale_inferences']})",
        f"  alarms lost over restarts {rep['alarms_lost']} of {rep['restarts_with_alarm_latched']} restarts with "
        "an alarm latched",
        f"  inferences per robot-hour {ipr['min']}..{ipr['max']} over {ipr['robot_hours']} robot-hours without an "
        f"outage ({ipr['outside_60_pm_1']} outside 60 +/- 1); before robot {b['inferences_per_robot_hour']['min']}.."
        f"{b['inferences_per_robot_hour']['max']}",
        f"  awake fraction max {rep['awake_fraction_max']:.4f} (limit {rep['awake_fraction_limit']}), before 1.0",
        f"  energy {rep['energy_wh_per_robot_hour']['mean']:.3f} Wh per robot-hour (before "
        f"{b['energy_wh_per_robot_hour']['mean']:.3f}; {rep['energy_wh_per_robot_hour']['source']})",
        "Faults (injected; health showed it):",
    ]
    for kind, e in rep["faults"].items():
        lines.append(f"  {kind:30s} {e.get('injected', 0):3d}  {e.get('health_showed_it')}")
    lines.append(
        "Mishandled by the runtime in this run:" if rep["mishandled"] else "Mishandled: nothing seen."
    )
    lines.extend(f"  - {m}" for m in rep["mishandled"])
    return "\n".join(lines)


def main(opts: SoakOptions, as_json: bool = False) -> int:
    show = _isatty(sys.stderr)
    rep = run_soak(opts, progress=sys.stderr if show else None)
    if rep["telemetry"]["mode"] == "off":
        print(f"note: telemetry off: {rep['telemetry']['why']}", file=sys.stderr)
    print(json.dumps(rep, indent=2, default=str) if as_json else format_summary(rep))
    return 0


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


__all__ = ["FAULT_KINDS", "SoakOptions", "format_summary", "main", "run_soak", "replace"]
