"""One simulated robot driving a ``runtime.DetectorRuntime``: configure, duty cycle, events, restarts."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections import Counter
from typing import Any

from vibration_anomaly.core.events import ALARM, INFER, SLEEP, Event
from vibration_anomaly.core.health import LEVEL_NAMES, OK
from vibration_anomaly.core.imu_buffer import ImuSampler, qos_depth
from vibration_anomaly.core.window import Windower, batch_samples
from vibration_anomaly.sim.soak.faults import FaultRecord, _Action
from vibration_anomaly.sim.soak.fleet import _Fleet
from vibration_anomaly.sim.soak.frames import _Hooks
from vibration_anomaly.sim.soak.options import RATE_HZ, RETRY_PERIODS, STALE_TOLERANCE_S, SimClock


class _Robot:
    """One simulated robot: its files, its ``DetectorRuntime`` on its own clock, what it measured.

    The fault actions (``_act_*``, dispatched by ``_do``) are in ``injections._InjectedRobot``, the class
    the run builds; this one steps the runtime, restarts it and records what it saw.
    """

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

    # -- faults (the actions themselves are in ``injections``) ----------------------------------------
    def _fault(self, kind: str, t1: float, **details: Any) -> FaultRecord:
        f = FaultRecord(kind, self.index, self.true_now(), t1, details=dict(details))
        self.faults.append(f)
        self.active_faults.append(f)
        self.health_watch.append(f)
        return f

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
