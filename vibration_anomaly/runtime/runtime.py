"""``DetectorRuntime``: the detector's whole runtime without ROS, built once per configure.

The composition root above ``core/``: the configure sequence (verify the signed bundle, check the
test-only time scale, build the pipeline on the engine thread, record the rollback floor only after
all of that worked), the engine thread, the event bus and its sinks (duty-cycle monitor, event log,
metrics), the latest-batch queue and ``core.detector.Detector``, the inference worker of supervisor
mode, power and telemetry wiring, and the health board (``runtime.board``). The ROS lifecycle node is
an adapter over it (``nodes/detector.py``); the demo and the soak build the same object.

The time scale (``duty_cycle_time_scale``) is applied here and nowhere else: ``sample_s`` and
``period_s`` are the bundle's numbers times the scale, refused outside bench mode.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from vibration_anomaly.bundle import (
    BundleRefused,
    VerifiedBundle,
    commit_accepted,
    load_verified_bundle,
)
from vibration_anomaly.core.detector import Detector, Verdict
from vibration_anomaly.core.driver import DriverHooks, DutyCycleDriver
from vibration_anomaly.core.events import (
    ALARM_RESET,
    DROP,
    ERROR,
    SLEEP,
    STORAGE,
    WAKE,
    Event,
    EventBus,
    EventSink,
    JsonlEventLog,
    RejectReporter,
)
from vibration_anomaly.core.health import BacklogHealth, DutyCycleMonitor, HealthTask
from vibration_anomaly.core.imu_buffer import ImuSampler
from vibration_anomaly.core.latch import AlarmLatch
from vibration_anomaly.core.queue import LatestBatchQueue
from vibration_anomaly.core.scheduler import DutyCycleScheduler
from vibration_anomaly.core.sensor_health import SensorLimits, SensorWatch, baseline_rms_from
from vibration_anomaly.errors import VibrationAnomalyError
from vibration_anomaly.runtime.params import RuntimeParams
from vibration_anomaly.runtime.pipeline import Pipeline, PipelineFactory, build_pipeline
from vibration_anomaly.runtime.worker import EngineWorker

ENGINE_TIMEOUT_S = 60.0
log = logging.getLogger("vibration_anomaly.runtime")


class ConfigureFailed(VibrationAnomalyError):
    """Configure did not complete; nothing stays loaded. ``refused`` is set when the bundle was refused."""

    def __init__(self, what: str, detail: str, refused: BundleRefused | None = None) -> None:
        self.what, self.detail, self.refused = what, detail, refused
        super().__init__(f"{what}: {detail}")


class EngineBusy(VibrationAnomalyError):
    """The engine thread is still inside a call that overran its bound; try again once it returned."""


class DetectorRuntime:
    """One robot's detector, ROS-free. ``clock`` is the node clock (ROS time) or a simulated one."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        pipeline_factory: PipelineFactory = build_pipeline,
        name: str = "detector",
        threaded: bool = True,
        logger: Any = None,
        lifecycle_label: Callable[[], str] = lambda: "n/a",
    ) -> None:
        self.clock = clock
        self.pipeline_factory = pipeline_factory
        self.name = name
        self.threaded = threaded
        self.log = logger or log
        self.lifecycle_label = lifecycle_label
        self.params = RuntimeParams()
        self.sinks: list[EventSink] = []  # extra event consumers (publishers, metrics, tests); bound at configure
        self.bus = EventBus(self._on_event)
        self.bundle: VerifiedBundle | None = None
        self.refused: BundleRefused | None = None
        self.pipeline: Pipeline | None = None
        self.detector: Detector | None = None
        self.queue: LatestBatchQueue | None = None
        self.monitor: DutyCycleMonitor | None = None
        self.sampler: ImuSampler | None = None  # set by whoever feeds frames (attach_sampler)
        self.rejects: RejectReporter | None = None
        self.backlog = BacklogHealth()
        self.verdicts: list[Verdict] = []  # the latest few, for tests and logs
        self.last_error: str | None = None
        self.driver_enabled = False
        self.active = False
        self.activated_at: float | None = None
        self.worker: EngineWorker | None = None
        self.event_log: JsonlEventLog | None = None
        self.power: Any = None
        self.metrics: Any = None
        self.pusher: Any = None
        self.watts: dict[str, float] = {}
        self.driver: DutyCycleDriver | None = None
        self.stuck: str | None = None  # why the engine thread is still inside an overrun call
        self.storage_errors: dict[str, str] = {}  # what -> why, while writes fail
        self._infer_lock = threading.Lock()
        self._infer_pending: Any = None
        self._want_infer = threading.Event()

    # -- numbers ---------------------------------------------------------------------------------
    @property
    def scale(self) -> float:
        return self.params.duty_cycle_time_scale

    @property
    def sample_s(self) -> float:
        assert self.bundle is not None
        return self.bundle.duty_cycle.sample_s * self.scale

    @property
    def period_s(self) -> float:
        assert self.bundle is not None
        return self.bundle.duty_cycle.period_s * self.scale

    def now(self) -> float:
        return self.clock()

    # -- events ----------------------------------------------------------------------------------
    def _on_event(self, ev: Event) -> None:
        if ev["event"] == "error":
            self.last_error = str(ev.get("message"))
            self.log.error(f"{ev.get('message')}\n{ev.get('traceback', '')}".rstrip())
        elif ev["event"] == "alarm":
            self.log.warning(f"ALARM: score {ev.get('score')} over threshold {ev.get('threshold')}")
        elif ev["event"] == SLEEP and self.metrics is not None:
            from vibration_anomaly.runtime.wiring import recheck_expiry

            recheck_expiry(self)

    def emit(self, event: str, **fields: Any) -> None:
        self.bus.emit(self.now(), event, **fields)

    # -- configure -------------------------------------------------------------------------------
    def configure(
        self,
        params: RuntimeParams,
        bundle: VerifiedBundle | None = None,
        *,
        attach: Callable[[LatestBatchQueue, float], ImuSampler] | None = None,
        hooks: DriverHooks | None = None,
    ) -> None:
        """Verify, load and wire everything; on any failure unload again and raise :class:`ConfigureFailed`.

        ``bundle``: an already verified bundle (the demo's example bundle); otherwise the one at
        ``params.bundle`` is verified against ``params.trust_dir`` and the firmware statement.
        ``attach(queue, sample_s)`` builds the IMU sampler; ``hooks`` (with ``use_duty_cycle_driver``)
        get the duty-cycle driver. The bundle's version becomes the rollback floor only after ALL of
        this worked: a bundle that cannot run here must never lock the robot out of the previous one.
        """
        self.params, self.refused = params, None
        if bundle is None:
            try:
                bundle = load_verified_bundle(
                    params.bundle, params.trust_dir, firmware_path=params.firmware or None,
                    require_firmware=params.require_firmware, state_path=params.rollback_state or None, record=False,
                )
            except BundleRefused as exc:
                self.refused = exc
                self.report_refusal(exc)
                raise ConfigureFailed("configure refused", str(exc), exc) from exc
            except Exception as exc:  # noqa: BLE001 - a transition never fails silently
                raise ConfigureFailed("configure (bundle)", f"{type(exc).__name__}: {exc}") from exc
        if self.scale != 1.0 and params.require_firmware and not bundle.signed_with_dev_key:
            # The scale rescales the signed contract; on a robot that would bring back a second source
            # of truth for the duty cycle, so it is allowed only in bench mode.
            raise ConfigureFailed("configure", f"duty_cycle_time_scale {self.scale:g}: only for tests and benches "
                                  "(require_firmware:=false or a development-key bundle); a robot runs the signed "
                                  "duty cycle unscaled")
        self._retire_worker()
        timeout = max(1.0, min(ENGINE_TIMEOUT_S, 0.5 * bundle.duty_cycle.period_s * self.scale))
        self.worker = EngineWorker(self.name, timeout, threaded=self.threaded)
        try:
            # Loading may take longer than one inference may: bounded by the configure limit, not the call's.
            pipeline = self.worker.call(self.pipeline_factory, bundle, params.as_dict(), timeout_s=ENGINE_TIMEOUT_S)
        except BundleRefused as exc:  # the model file is not the bundle's
            self.refused = exc
            self._retire_worker()
            self.report_refusal(exc)
            raise ConfigureFailed("configure refused", str(exc), exc) from exc
        except Exception as exc:  # noqa: BLE001
            self._retire_worker()
            raise ConfigureFailed("configure (model)", _describe(exc)) from exc
        try:
            self._wire(bundle, pipeline)
            if attach is not None:
                assert self.queue is not None
                self.attach_sampler(attach(self.queue, self.sample_s))
            if params.use_duty_cycle_driver and hooks is not None:
                sched = DutyCycleScheduler(self.sample_s, self.period_s, clock=self.clock, epoch=0.0)
                self.driver = DutyCycleDriver(sched, hooks, self.bus, lead_s=params.sample_lead_s,
                                              tail_s=params.sample_tail_s)
                queue = self.queue
                # Batches queued before a jump carry the old time: against the new one they could pass as fresh.
                self.driver.on_clock_jump = lambda _delta: queue.clear() if queue is not None else None
            # Last: only a bundle that is now running becomes the rollback floor.
            commit_accepted(bundle, params.rollback_state or None)
        except Exception as exc:  # noqa: BLE001 - BundleRefused (a newer version won meanwhile), I/O, bad values
            if isinstance(exc, BundleRefused):
                self.refused = exc
            try:
                if self.detector is None and self.worker is not None:
                    self.worker.call(pipeline.engine.unload)  # loaded, but not yet owned by a Detector
                self.teardown()
            except Exception as inner:  # noqa: BLE001
                self.log.error(f"configure: teardown after failure also failed: {inner!r}")
            raise ConfigureFailed("configure", _describe(exc), self.refused) from exc
        self.telemetry_accepted(bundle)

    def _wire(self, bundle: VerifiedBundle, pipeline: Pipeline) -> None:
        """Everything after the model is loaded: bus, queue, detector (with the durable latch), power, telemetry."""
        self.bundle, self.pipeline = bundle, pipeline
        self.backlog = BacklogHealth()  # counters restart with the new queue and sampler
        self.monitor = DutyCycleMonitor(self.period_s)
        self._open_event_log()
        from vibration_anomaly.runtime.wiring import open_power, open_telemetry

        open_telemetry(self, bundle)
        self.bus = EventBus(self._on_event, self.monitor, *self.sinks, *([self.event_log] if self.event_log else []))
        self.queue = LatestBatchQueue(
            bundle.max_queued_batches,
            on_drop=lambda reason, b: self.emit(DROP, frames=b.n_samples, reason=reason),
        )
        latch = AlarmLatch(self.params.alarm_state_path())
        if latch.load_error:
            self.storage_failed("alarm latch", f"unreadable, kept raised: {latch.load_error}")
        self.detector = Detector(pipeline.engine, pipeline.scorer, pipeline.voter, self.queue, self.bus,
                                 self.now, bundle.alarm.score_threshold, sensor=self._sensor_watch(pipeline),
                                 latch=latch)
        open_power(self)
        self.driver_enabled = self.params.use_duty_cycle_driver

    # -- storage ---------------------------------------------------------------------------------
    def _open_event_log(self) -> None:
        path = self.params.event_log_path()
        if self.event_log is not None and (path is None or self.event_log.path != path):
            self.event_log.close()
            self.event_log = None
        if path is not None and self.event_log is None:
            self.event_log = JsonlEventLog(path, on_state=lambda ok, msg: self._storage_state("event log", ok, msg))

    def _storage_state(self, what: str, ok: bool, message: str) -> None:
        if ok:
            self.storage_errors.pop(what, None)
            self.log.info(message)
        else:
            self.storage_errors[what] = message
            self.log.error(f"{message} (the detector keeps running)")
        self.emit(STORAGE, ok=ok, what=what, message=message)

    def storage_failed(self, what: str, message: str) -> None:
        self._storage_state(what, False, message)

    # -- fleet telemetry of a bundle's life --------------------------------------------------------
    def telemetry_accepted(self, bundle: VerifiedBundle) -> None:
        from vibration_anomaly.runtime.wiring import bundle_accepted

        bundle_accepted(self, bundle)

    def report_refusal(self, exc: BundleRefused) -> None:
        from vibration_anomaly.runtime.wiring import bundle_refused

        bundle_refused(self, exc)

    def attach_sampler(self, sampler: ImuSampler) -> None:
        """The IMU sampler feeding the queue: its bad-frame counters become ``reject`` events and health."""
        self.sampler = sampler
        self.rejects = RejectReporter(lambda: {**sampler.windower.rejected, **sampler.rejected},
                                      lambda *a, **kw: self.bus.emit(*a, **kw))

    def report_rejects(self) -> None:
        if self.rejects is not None:
            self.rejects.report(self.now())

    def _sensor_watch(self, pipeline: Pipeline) -> SensorWatch:
        """Sensor checks with this machine's healthy level (stored by calibration) for the loose-mount check."""
        cal = getattr(pipeline.scorer, "calibration", None)
        full_scale = self.params.sensor_full_scale
        return SensorWatch(SensorLimits(full_scale=full_scale if full_scale > 0 else None),
                           baseline_rms_from(getattr(cal, "extra", None)))

    def describe(self) -> str:
        assert self.bundle is not None and self.pipeline is not None
        dc, pl = self.bundle.duty_cycle, self.pipeline
        return (f"bundle v{self.bundle.version} (key {self.bundle.key_id}), duty {dc.sample_s:g}/{dc.period_s:g} s"
                f"{'' if self.scale == 1 else f' x{self.scale:g} (TEST TIME SCALE)'}, model {pl.model}, "
                f"backend {pl.engine.name} ({pl.backend_reason}), "
                f"{'duty-cycle driver' if self.driver_enabled else 'supervisor drives'}")

    # -- wake / sleep ----------------------------------------------------------------------------
    def activate(self, by_supervisor: bool = False) -> float:
        """Wake the engine on its thread; returns the seconds it took.

        Refused (:class:`EngineBusy`, the node answers FAILURE and stays inactive, recoverable) while
        the engine thread is still inside an overrun call: waking behind it would hang this caller too.
        """
        assert self.detector is not None and self.worker is not None
        if self.worker.busy:
            raise EngineBusy(f"engine still inside an overrun call ({self.stuck or 'busy'}); "
                             "it sleeps as soon as that call returns")
        self.activated_at = self.now()
        wake_s = self.worker.call(self.detector.activate)
        self.read_power("awake")
        self.active = True
        if by_supervisor:
            self.emit(WAKE, what="activated by the supervisor", wake_ms=round(wake_s * 1e3, 3))
        return wake_s

    def deactivate(self, by_supervisor: bool = False) -> None:
        """Sleep: synchronize and free; raises if anything is still held.

        If the engine thread is inside a call that overran its bound (a hung kernel), the sleep is
        queued behind that call (it runs the moment the call returns) and reported; the node goes
        inactive and stays recoverable instead of ending in ERROR / finalized.
        """
        assert self.detector is not None and self.worker is not None
        self.active = False
        if self.worker.busy:
            self._sleep_when_free("deactivate")
        else:
            self.worker.call(self.detector.deactivate)
        held = () if self.stuck else self.detector.residency().awake_resources()
        if by_supervisor:
            awake_s = self.now() - self.activated_at if self.activated_at is not None else 0.0
            self.emit(SLEEP, awake_s=round(awake_s, 6), held=list(held), what="deactivated by the supervisor")
        self.activated_at = None
        if held:
            raise RuntimeError(f"engine still holds {', '.join(held)} after sleep")
        self.read_power("asleep")

    def _sleep_when_free(self, why: str) -> None:
        assert self.detector is not None and self.worker is not None
        if self.stuck:
            return
        self.stuck = f"{why}: engine call overran {self.worker.timeout_s:g} s"
        detector = self.detector

        def sleep_then_clear() -> None:
            detector.deactivate()
            self.stuck = None
            self.emit(SLEEP, what="queued sleep ran after the overrun engine call returned",
                      held=list(detector.residency().awake_resources()))

        self.worker.submit(sleep_then_clear)
        self.emit(ERROR, message=f"{self.stuck}; sleep queued behind it, the node stays recoverable",
                  what="engine")

    def held_resources(self) -> tuple[str, ...]:
        if self.detector is None or self.stuck:
            return ()
        return self.detector.residency().awake_resources()

    def teardown(self) -> None:
        """Sleep and unload on the engine thread, stop that thread, forget the bundle."""
        self.active = False
        self.driver = None
        if self.detector is not None and self.worker is not None:
            if self.worker.busy:
                # Unload when the overrun call returns; a new configure gets a fresh thread and engine.
                self.worker.submit(self.detector.cleanup)
                self.emit(ERROR, message="teardown: engine call still running; unload queued behind it",
                          what="engine")
            else:
                self.worker.call(self.detector.cleanup, timeout_s=ENGINE_TIMEOUT_S)
        self._retire_worker()
        self.monitor = None
        self.detector = None
        self.pipeline = None
        self.bundle = None
        self.sampler = None
        self.rejects = None

    def _retire_worker(self) -> None:
        if self.worker is not None:
            if self.worker.busy:
                self.worker.abandon()
            else:
                self.worker.stop()
            self.worker = None
        self.stuck = None

    def close(self) -> None:
        """At process end: teardown, then close the event log and make the last push."""
        try:
            self.teardown()
        finally:
            if self.event_log is not None:
                self.event_log.close()
                self.event_log = None
            if self.pusher is not None:
                self.pusher.stop(final_push=True, timeout_s=2.0)
                self.pusher = None

    def reset_alarm(self, who: str, why: str) -> bool:
        """Clear the latched alarm (service / CLI); logged as an ``alarm_reset`` event."""
        if self.detector is None:
            latch = AlarmLatch(self.params.alarm_state_path())
            was = latch.latched
            latch.reset(self.now(), who, why)
            self.emit(ALARM_RESET, was_latched=was, who=who, why=why)
            return was
        return self.detector.reset_alarm(who, why)

    # -- inference -------------------------------------------------------------------------------
    def infer_now(self, fresh_after: float) -> None:
        """Driver mode: infer the newest batch of this window on the engine thread, waiting a bounded time."""
        assert self.worker is not None
        if self.worker.busy:
            raise EngineBusy(f"engine still inside an overrun call ({self.stuck or 'busy'})")
        self.worker.call(self._infer_job, fresh_after)

    def _infer_job(self, fresh_after: float) -> None:
        """On the engine thread: infer the newest batch while there is demand."""
        assert self.detector is not None
        while True:
            self._want_infer.clear()
            if self.active and not self.detector.awake:
                # The engine's watchdog put it to sleep (no batch for a whole period while active,
                # e.g. the IMU stalled): wake it again rather than fail every later batch.
                self.detector.activate()
                self.emit("wake", what="re-woken after the engine watchdog forced sleep")
            v = self.detector.infer_latest(fresh_after)
            if v is not None:
                self.verdicts = [*self.verdicts[-99:], v]
            # Decide to stop under the lock on_batch takes: a batch that lands between this check
            # and the return would otherwise find a job "still running" and wait for the next one.
            with self._infer_lock:
                if not (self.active and self._want_infer.is_set()):
                    self._infer_pending = None
                    return

    def on_batch(self, fresh_after: float) -> None:
        """Supervisor mode: a batch completed while active -> make sure an inference follows."""
        if self.driver_enabled or not self.active or self.worker is None:
            return
        self._want_infer.set()
        with self._infer_lock:
            if self._infer_pending is None:
                fut = self.worker.submit(self._infer_job, fresh_after)
                fut.add_done_callback(self._job_done)
                self._infer_pending = fut

    def _job_done(self, fut: Any) -> None:
        if fut.cancelled() or fut.exception() is None:
            return
        with self._infer_lock:
            if self._infer_pending is fut:
                self._infer_pending = None
        exc = fut.exception()
        self.emit("error", message=f"inference job: {type(exc).__name__}: {exc}",
                  traceback="".join(traceback.format_exception(exc)))

    # -- power -----------------------------------------------------------------------------------
    def read_power(self, state: str) -> None:
        if self.power is None:
            return
        try:
            reading = self.power.read()
            self.watts[state] = float(reading.watts)
            if self.metrics is not None:
                self.metrics.set_power(reading.watts, state=state, source=reading.source, modelled=reading.modelled)
        except Exception as exc:  # noqa: BLE001
            self.log.warning(f"power read failed: {exc}")

    # -- health ----------------------------------------------------------------------------------
    def health_tasks(self) -> list[HealthTask]:
        from vibration_anomaly.runtime.board import health_tasks

        return health_tasks(self)

    def expired(self) -> bool:
        return self.bundle is not None and self.bundle.is_expired(time.time())


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
