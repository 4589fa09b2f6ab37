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
from collections.abc import Callable
from typing import Any

from vibration_anomaly.bundle import (
    BundleRefused,
    VerifiedBundle,
    commit_accepted,
    load_verified_bundle,
)
from vibration_anomaly.core.detector import Detector, Verdict
from vibration_anomaly.core.diagnosis import alarm_line
from vibration_anomaly.core.driver import DriverHooks, DutyCycleDriver
from vibration_anomaly.core.events import (
    ALARM_RESET,
    DROP,
    SLEEP,
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
from vibration_anomaly.core.sensor_watch import SensorWatch
from vibration_anomaly.core.speed import ShaftSpeed
from vibration_anomaly.errors import VibrationAnomalyError
from vibration_anomaly.runtime import awake
from vibration_anomaly.runtime.awake import ENGINE_TIMEOUT_S, EngineBusy  # noqa: F401 - EngineBusy re-exported
from vibration_anomaly.runtime.inference import InferenceLoop
from vibration_anomaly.runtime.params import RuntimeParams
from vibration_anomaly.runtime.pipeline import Pipeline, PipelineFactory, build_pipeline
from vibration_anomaly.runtime.worker import EngineWorker

log = logging.getLogger("vibration_anomaly.runtime")


class ConfigureFailed(VibrationAnomalyError):
    """Configure did not complete; nothing stays loaded. ``refused`` is set when the bundle was refused."""

    def __init__(self, what: str, detail: str, refused: BundleRefused | None = None) -> None:
        self.what, self.detail, self.refused = what, detail, refused
        super().__init__(f"{what}: {detail}")


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
        self.sinks: list[EventSink] = []  # extra event consumers (publishers, metrics, tests)
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
        self.speed = ShaftSpeed()  # for the alarm's diagnosis: set at configure, fed by the node's topic
        self.inference = InferenceLoop(self)

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
            self.log.warning(alarm_line(ev))
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
        steady: Callable[[], float] | None = None,
    ) -> None:
        """Verify, load and wire everything; on any failure unload again and raise :class:`ConfigureFailed`.

        ``bundle``: an already verified bundle (the demo's example bundle); otherwise the one at
        ``params.bundle`` is verified against ``params.trust_dir`` and the firmware statement.
        ``attach(queue, sample_s)`` builds the IMU sampler; ``hooks`` (with ``use_duty_cycle_driver``)
        get the duty-cycle driver; ``steady`` (a monotonic clock, when ``clock`` is the wall clock and not
        sim time) bounds each sample window by real time too. The bundle's version becomes the rollback floor only after ALL of
        this worked: a bundle that cannot run here must never lock the robot out of the previous one.
        """
        self.params, self.refused = params, None
        if bundle is None:
            try:
                bundle = load_verified_bundle(
                    params.bundle,
                    params.trust_dir,
                    firmware_path=params.firmware or None,
                    require_firmware=params.require_firmware,
                    state_path=params.rollback_state or None,
                    record=False,
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
            raise ConfigureFailed(
                "configure",
                f"duty_cycle_time_scale {self.scale:g}: only for tests and benches "
                "(require_firmware:=false or a development-key bundle); a robot runs the signed "
                "duty cycle unscaled",
            )
        self._retire_worker()
        timeout = max(1.0, min(ENGINE_TIMEOUT_S, 0.5 * bundle.duty_cycle.period_s * self.scale))
        self.worker = EngineWorker(self.name, timeout, threaded=self.threaded)
        try:
            # Loading may take longer than one inference may: bounded by the configure limit, not the call's.
            pipeline = self.worker.call(
                self.pipeline_factory, bundle, params.as_dict(), timeout_s=ENGINE_TIMEOUT_S
            )
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
                self.driver = DutyCycleDriver(
                    sched,
                    hooks,
                    self.bus,
                    lead_s=params.sample_lead_s,
                    tail_s=params.sample_tail_s,
                    steady=steady,
                )
                queue = self.queue

                def drop_old_time(_delta: float) -> None:
                    # Batches queued before a jump carry the old time: against the new one they could pass as fresh.
                    if queue is not None:
                        queue.clear()

                self.driver.on_clock_jump = drop_old_time
                self.driver.force_sleep = self._force_sleep
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
        from vibration_anomaly.runtime.wiring import detector_aids, open_power, open_telemetry

        open_telemetry(self, bundle)
        self.bus = EventBus(
            self._on_event, self.monitor, *self.sinks, *([self.event_log] if self.event_log else [])
        )
        self.queue = LatestBatchQueue(
            bundle.max_queued_batches,
            on_drop=lambda reason, b: self.emit(DROP, frames=b.n_samples, reason=reason),
        )
        latch = AlarmLatch(self.params.alarm_state_path())
        if latch.load_error:
            self.storage_failed("alarm latch", f"unreadable, kept raised: {latch.load_error}")
        self.detector = Detector(
            pipeline.engine,
            pipeline.scorer,
            pipeline.voter,
            self.queue,
            self.bus,
            self.now,
            bundle.alarm.score_threshold,
            sensor=self._sensor_watch(pipeline),
            latch=latch,
            **detector_aids(self, bundle, pipeline),  # the alarm's diagnosis, speed-aware scoring
        )
        open_power(self)
        self.driver_enabled = self.params.use_duty_cycle_driver

    # -- storage (runtime.wiring) ------------------------------------------------------------------
    def _open_event_log(self) -> None:
        from vibration_anomaly.runtime.wiring import open_event_log

        open_event_log(self)

    def storage_failed(self, what: str, message: str) -> None:
        """A write the robot depends on fails: an ERROR ``storage`` health, a log line, a ``storage`` event."""
        from vibration_anomaly.runtime.wiring import storage_state

        storage_state(self, what, False, message)

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
        self.rejects = RejectReporter(
            lambda: {**sampler.windower.rejected, **sampler.rejected},
            lambda *a, **kw: self.bus.emit(*a, **kw),
        )

    def report_rejects(self) -> None:
        if self.rejects is not None:
            self.rejects.report(self.now())

    def _sensor_watch(self, pipeline: Pipeline) -> SensorWatch:
        from vibration_anomaly.runtime.wiring import sensor_watch

        return sensor_watch(self, pipeline)

    def describe(self) -> str:
        from vibration_anomaly.runtime.wiring import describe

        return describe(self)

    # -- wake / sleep (runtime.awake) ---------------------------------------------------------------
    def activate(self, by_supervisor: bool = False) -> float:
        """Wake the engine on its thread; returns the seconds it took (refused while a call overran)."""
        return awake.activate(self, by_supervisor)

    def deactivate(self, by_supervisor: bool = False) -> None:
        """Sleep: synchronize and free (queued behind an overrun call); raises if anything is still held."""
        awake.deactivate(self, by_supervisor)

    def held_resources(self) -> tuple[str, ...]:
        return awake.held_resources(self)

    def teardown(self) -> None:
        """Sleep and unload on the engine thread, stop that thread, forget the bundle."""
        awake.teardown(self)

    def _force_sleep(self) -> None:
        awake.force_sleep(self)

    def _retire_worker(self) -> None:
        awake.retire_worker(self)

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

    # -- inference (runtime.inference) ------------------------------------------------------------
    def infer_now(self, fresh_after: float) -> None:
        """Driver mode: infer the newest batch of this window on the engine thread, waiting a bounded time."""
        self.inference.infer_now(fresh_after)

    def on_batch(self, fresh_after: float) -> None:
        """Supervisor mode: a batch completed while active -> make sure an inference follows."""
        self.inference.on_batch(fresh_after)

    # -- power -----------------------------------------------------------------------------------
    def read_power(self, state: str) -> None:
        if self.power is None:
            return
        try:
            reading = self.power.read()
            self.watts[state] = float(reading.watts)
            if self.metrics is not None:
                self.metrics.set_power(
                    reading.watts, state=state, source=reading.source, modelled=reading.modelled
                )
        except Exception as exc:  # noqa: BLE001
            self.log.warning(f"power read failed: {exc}")

    # -- health ----------------------------------------------------------------------------------
    def health_tasks(self) -> list[HealthTask]:
        from vibration_anomaly.runtime.board import health_tasks

        return health_tasks(self)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
