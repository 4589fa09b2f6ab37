"""``detector``: the lifecycle node over ``core.detector.Detector``.

Transitions map onto the engine's power states (the core owns the sequence and builds the
pipeline: `core.detector`, `core.pipeline`):

* configure: verify the signed bundle (firmware agreement included) and the
  model file's hash, load the model on the engine thread. A refused bundle
  returns FAILURE (the node stays unconfigured); the reason is logged and
  shown by the ``bundle`` diagnostic.
* activate: wake (ONNX Runtime session; TensorRT context, buffers, stream).
* deactivate: sleep (synchronize and free everything); ERROR if anything is still held.
* cleanup: unload. shutdown / on_error: sleep and unload, nothing left on the GPU.

One worker thread owns the engine (a CUDA context is current there only).
Inference only happens while active, on the newest fresh batch. Two drivers:

* ``use_duty_cycle_driver: true`` (default): ``core.driver.DutyCycleDriver``
  on the node clock opens the IMU window, and at its end runs
  activate -> infer once -> deactivate through this node's own lifecycle.
* ``false``: the supervisor drives. While active the IMU subscription is open
  and every completed batch is inferred (the newest one, if several came).

Score: ``score`` (std_msgs/Float32). Alarm: ``alarm`` (std_msgs/Bool, latched:
transient local, depth 1). The IMU subscriber runs in this process (see
docs/ROS.md: batches never cross the middleware).
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.timer import Timer
from std_msgs.msg import Bool, Float32

from vibration_anomaly.config.bundle import (
    BundleRefused,
    VerifiedBundle,
    commit_accepted,
    load_verified_bundle,
)
from vibration_anomaly.core.detector import Detector, Verdict
from vibration_anomaly.core.driver import DutyCycleDriver
from vibration_anomaly.core.events import Event, EventBus, EventSink, JsonlEventLog
from vibration_anomaly.core.health import (
    STALE,
    WARN,
    BacklogCounts,
    BacklogHealth,
    DutyCycleMonitor,
    Health,
    HealthTask,
    bundle_health,
    duty_cycle_health,
    model_health,
    power_health,
)
from vibration_anomaly.core.pipeline import Pipeline, PipelineFactory, build_pipeline
from vibration_anomaly.core.queue import LatestBatchQueue
from vibration_anomaly.core.scheduler import DutyCycleScheduler, Window
from vibration_anomaly.core.window import REJECT_BEFORE_WINDOW, Batch
from vibration_anomaly.nodes.imu_subscriber import ImuSubscriberNode

SUCCESS, FAILURE, ERROR = (TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE,
                           TransitionCallbackReturn.ERROR)
ENGINE_TIMEOUT_S = 60.0


PARAMS: dict[str, Any] = {
    "robot_id": "robot",
    "bundle": "",
    "trust_dir": "",
    "firmware": "",
    "require_firmware": True,
    "rollback_state": "",
    "model": "",
    "engine": "",
    "calibration": "",
    "backend": "auto",
    "use_duty_cycle_driver": True,
    "sample_lead_s": 0.1,
    "sample_tail_s": 0.05,
    "duty_cycle_time_scale": 1.0,  # tests and benchmarks only: < 1 runs the bundle's cycle faster
    "event_log": "",
    "power_source": "modelled",
}


class DetectorNode(LifecycleNode):
    def __init__(
        self,
        imu: ImuSubscriberNode | None = None,
        *,
        pipeline_factory: PipelineFactory = build_pipeline,
        node_name: str = "detector",
        **kwargs: Any,
    ) -> None:
        super().__init__(node_name, **kwargs)
        for name, default in PARAMS.items():
            self.declare_parameter(name, default)
        self.imu = imu
        self.pipeline_factory = pipeline_factory
        self.sinks: list[EventSink] = []  # extra event consumers (metrics, tests); bound at each configure
        self.bus = EventBus(self._on_event)
        self.bundle: VerifiedBundle | None = None
        self.refused: BundleRefused | None = None
        self.detector: Detector | None = None
        self.queue: LatestBatchQueue | None = None
        self.pipeline: Pipeline | None = None
        self.driver: DutyCycleDriver | None = None
        self.monitor: DutyCycleMonitor | None = None
        self.verdicts: list[Verdict] = []  # the latest few, for tests and logs
        self.last_error: str | None = None
        self._worker: cf.ThreadPoolExecutor | None = None
        self._timer: Timer | None = None
        self._log: JsonlEventLog | None = None
        self._infer_lock = threading.Lock()
        self._infer_pending: cf.Future[None] | None = None
        self._want_infer = threading.Event()
        self._active = False
        self._driver_transition = False
        self._driver_started = False
        self._activated_at: float | None = None
        self._power: Any = None
        self._pusher: Any = None
        self._metrics: Any = None
        self._watts: dict[str, float] = {}
        self._backlog = BacklogHealth()
        self.score_pub = self.create_lifecycle_publisher(Float32, "score", 10)
        latched = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.alarm_pub = self.create_lifecycle_publisher(Bool, "alarm", latched)

    # -- helpers ---------------------------------------------------------------------------------
    def p(self, name: str) -> Any:
        return self.get_parameter(name).value

    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_event(self, ev: Event) -> None:
        if ev["event"] == "error":
            self.last_error = str(ev.get("message"))
            self.get_logger().error(f"{ev.get('message')}\n{ev.get('traceback', '')}".rstrip())
        elif ev["event"] == "alarm":
            self.get_logger().warn(f"ALARM: score {ev.get('score')} over threshold {ev.get('threshold')}")

    def _on_engine(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run on the thread that owns the engine and wait for it."""
        if self._worker is None:
            raise RuntimeError("no engine thread (not configured)")
        return self._worker.submit(fn, *args).result(timeout=ENGINE_TIMEOUT_S)

    def _fail(self, what: str, exc: BaseException, ret: TransitionCallbackReturn) -> TransitionCallbackReturn:
        self.last_error = f"{what}: {type(exc).__name__}: {exc}"
        self.get_logger().error(f"{what} failed -> {ret.to_label()}:\n{''.join(traceback.format_exception(exc))}")
        return ret

    # -- lifecycle -----------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.refused = None
            bundle = load_verified_bundle(
                self.p("bundle"), self.p("trust_dir"),
                firmware_path=self.p("firmware") or None, require_firmware=bool(self.p("require_firmware")),
                state_path=self.p("rollback_state") or None, record=False,
            )
        except BundleRefused as exc:
            self.refused = exc
            self.get_logger().error(f"configure refused: {exc}")
            return FAILURE
        except Exception as exc:  # noqa: BLE001 - a transition never fails silently
            return self._fail("configure (bundle)", exc, FAILURE)
        scale = float(self.p("duty_cycle_time_scale"))
        if scale != 1.0 and bool(self.p("require_firmware")) and not bundle.signed_with_dev_key:
            # The scale rescales the signed contract; on a robot that would bring back a second
            # source of truth for the duty cycle, so it is allowed only in bench mode.
            return self._fail("configure", ValueError(
                f"duty_cycle_time_scale {scale:g}: only for tests and benches (require_firmware:=false or a "
                "development-key bundle); a robot runs the signed duty cycle unscaled"), FAILURE)
        try:
            self._worker = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.get_name()}-engine")
            params = {name: self.p(name) for name in PARAMS}
            pipeline = self._on_engine(self.pipeline_factory, bundle, params)
        except BundleRefused as exc:  # the model file is not the bundle's
            self.refused = exc
            self._stop_worker()
            self.get_logger().error(f"configure refused: {exc}")
            return FAILURE
        except Exception as exc:  # noqa: BLE001
            self._stop_worker()
            return self._fail("configure (model)", exc, FAILURE)
        try:
            # Only now that the model (and engine) check passed is this version remembered, so a
            # bundle whose model failed to deploy cannot lock the robot out of the previous one.
            commit_accepted(bundle, self.p("rollback_state") or None)
        except Exception as exc:  # noqa: BLE001 - BundleRefused (a newer version won meanwhile) or I/O
            if isinstance(exc, BundleRefused):
                self.refused = exc
            self._on_engine(pipeline.engine.unload)
            self._stop_worker()
            return self._fail("configure (rollback state)", exc, FAILURE)
        try:
            self._finish_configure(bundle, pipeline, scale)
        except Exception as exc:  # noqa: BLE001 - rclpy would turn it into ERROR without a word
            try:
                if self.detector is None and self._worker is not None:
                    self._on_engine(pipeline.engine.unload)  # loaded, but not yet owned by a Detector
                self._teardown()
            except Exception as inner:  # noqa: BLE001
                self.get_logger().error(f"configure: teardown after failure also failed: {inner!r}")
            return self._fail("configure", exc, FAILURE)
        return SUCCESS

    def _finish_configure(self, bundle: VerifiedBundle, pipeline: Pipeline, scale: float) -> None:
        """Everything after the model is loaded; any failure here unloads it again (see on_configure)."""
        self.bundle, self.pipeline = bundle, pipeline
        self._backlog = BacklogHealth()  # counters restart with the new queue and sampler
        dc = bundle.duty_cycle
        self.monitor = DutyCycleMonitor(dc.period_s * scale)
        if self.p("event_log") and self._log is None:
            self._log = JsonlEventLog(self.p("event_log"))
        self._open_telemetry(bundle)
        self.bus = EventBus(self._on_event, self.monitor, *self.sinks, *([self._log] if self._log else []))
        self.queue = LatestBatchQueue(
            bundle.max_queued_batches,
            on_drop=lambda reason, b: self.bus.emit(self.now_s(), "drop", frames=b.n_samples, reason=reason),
        )
        self.detector = Detector(pipeline.engine, pipeline.scorer, pipeline.voter, self.queue, self.bus,
                                 self.now_s, bundle.alarm.score_threshold)
        self._open_power()
        if self.imu is not None:
            self.imu.attach(self.queue, dc.sample_s * scale, on_batch=self._on_batch)
        if self.p("use_duty_cycle_driver"):
            sched = DutyCycleScheduler(dc.sample_s * scale, dc.period_s * scale, clock=self.now_s, epoch=0.0)
            self.driver = DutyCycleDriver(sched, self, self.bus, lead_s=float(self.p("sample_lead_s")),
                                          tail_s=float(self.p("sample_tail_s")))
            self._driver_started = False
            self._tick()
        self.get_logger().info(
            f"configured: bundle v{bundle.version} (key {bundle.key_id}), duty {dc.sample_s:g}/{dc.period_s:g} s"
            f"{'' if scale == 1 else f' x{scale:g} (TEST TIME SCALE)'}, model {pipeline.model}, "
            f"backend {pipeline.engine.name} ({pipeline.backend_reason}), "
            f"{'duty-cycle driver' if self.driver else 'supervisor drives'}"
        )

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.driver is not None and not self._driver_transition:
            self.get_logger().error(
                "activate refused: the built-in duty-cycle driver owns activate/deactivate "
                "(launch with use_duty_cycle_driver:=false to let a supervisor drive)"
            )
            return FAILURE
        try:
            assert self.detector is not None
            self._activated_at = self.now_s()
            wake_s = self._on_engine(self.detector.activate)
            self._read_power("awake")
            ret = super().on_activate(state)  # activates the lifecycle publishers
            self._active = True
            if self.driver is None and self.imu is not None:
                self.bus.emit(self.now_s(), "wake", what="activated by the supervisor", wake_ms=round(wake_s * 1e3, 3))
                self.imu.start_sampling(self.now_s(), continuous=True)
            return ret
        except Exception as exc:  # noqa: BLE001
            return self._fail("activate", exc, ERROR)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            assert self.detector is not None
            self._active = False
            if self.driver is None and self.imu is not None:
                self.imu.stop_sampling()
            pending = self._infer_pending
            if pending is not None:
                pending.result(timeout=ENGINE_TIMEOUT_S)
            self._on_engine(self.detector.deactivate)
            held = self.detector.residency().awake_resources()
            if self.driver is None:
                awake_s = self.now_s() - self._activated_at if self._activated_at is not None else 0.0
                self.bus.emit(self.now_s(), "sleep", awake_s=round(awake_s, 6), held=list(held),
                              what="deactivated by the supervisor")
            self._activated_at = None
            if held:
                raise RuntimeError(f"engine still holds {', '.join(held)} after sleep")
            self._read_power("asleep")
            return super().on_deactivate(state)
        except Exception as exc:  # noqa: BLE001
            return self._fail("deactivate", exc, ERROR)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._teardown()
            return super().on_cleanup(state)
        except Exception as exc:  # noqa: BLE001
            return self._fail("cleanup", exc, ERROR)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._teardown()
            return super().on_shutdown(state)
        except Exception as exc:  # noqa: BLE001
            return self._fail("shutdown", exc, ERROR)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error processing (from {state.label}): unloading everything")
        try:
            self._teardown()
        except Exception as exc:  # noqa: BLE001
            return self._fail("error processing", exc, FAILURE)
        return SUCCESS

    def _teardown(self) -> None:
        """Stop the driver and sampling, sleep and unload on the engine thread, stop that thread."""
        self._active = False
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        if self.driver is not None:
            self.driver.stop()
            self.driver = None
        if self.imu is not None:
            self.imu.stop_sampling()
        if self.detector is not None and self._worker is not None:
            self._on_engine(self.detector.cleanup)
        self._stop_worker()
        if self.monitor is not None:
            self.monitor = None
        self.detector = None
        self.pipeline = None
        self.bundle = None

    def _stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None

    # -- inference -----------------------------------------------------------------------------
    def _infer_job(self, fresh_after: float) -> None:
        """On the engine thread: infer the newest batch while there is demand, publish each verdict."""
        assert self.detector is not None
        while True:
            self._want_infer.clear()
            if self._active and not self.detector.awake:
                # The engine's watchdog put it to sleep (no batch for a whole period while active,
                # e.g. the IMU stalled): wake it again rather than fail every later batch.
                self.detector.activate()
                self.bus.emit(self.now_s(), "wake", what="re-woken after the engine watchdog forced sleep")
            v = self.detector.infer_latest(fresh_after)
            if v is not None:
                self.verdicts = [*self.verdicts[-99:], v]
                self.score_pub.publish(Float32(data=float(v.score)))
                self.alarm_pub.publish(Bool(data=bool(v.alarm)))
            # Decide to stop under the lock _on_batch takes: a batch that lands between this check
            # and the return would otherwise find a job "still running" and wait for the next one.
            with self._infer_lock:
                if not (self._active and self._want_infer.is_set()):
                    self._infer_pending = None
                    return

    def _on_batch(self, batch: Batch) -> None:
        """Supervisor mode: a batch completed while active -> make sure an inference follows."""
        if self.driver is not None or not self._active or self._worker is None or self.imu is None:
            return
        self._want_infer.set()
        with self._infer_lock:
            if self._infer_pending is None:
                start = self.imu.sampler.window_start if self.imu.sampler else None
                fut = self._worker.submit(self._infer_job, -math.inf if start is None else start)
                fut.add_done_callback(self._job_done)
                self._infer_pending = fut

    def _job_done(self, fut: cf.Future[None]) -> None:
        if fut.cancelled() or fut.exception() is None:
            return
        with self._infer_lock:
            if self._infer_pending is fut:
                self._infer_pending = None
        exc = fut.exception()
        assert exc is not None
        self.bus.emit(self.now_s(), "error", message=f"inference job: {type(exc).__name__}: {exc}",
                      traceback="".join(traceback.format_exception(exc)))

    # -- duty-cycle driver hooks (core.driver.DriverHooks) ----------------------------------------
    def open_sampling(self, window: Window) -> None:
        if self.imu is not None:
            self.imu.start_sampling(window.start)

    def close_sampling(self, window: Window) -> None:
        if self.imu is not None and self.imu.sampler is not None:
            w = self.imu.sampler.windower
            before = w.rejected[REJECT_BEFORE_WINDOW]
            self.imu.stop_sampling()
            n = w.rejected[REJECT_BEFORE_WINDOW] - before
            if n:
                self.bus.emit(self.now_s(), "drop", frames=n, reason="before_window")

    def infer_once(self, window: Window) -> None:
        """activate -> infer the newest batch of this window -> deactivate, as real lifecycle transitions."""
        self._driver_transition = True
        try:
            if self.trigger_activate() != SUCCESS:
                raise RuntimeError("duty cycle: activate failed")
            try:
                self._on_engine(self._infer_job, window.start)
            finally:
                if self.trigger_deactivate() != SUCCESS:
                    raise RuntimeError("duty cycle: deactivate failed")
        finally:
            self._driver_transition = False

    def held_resources(self) -> tuple[str, ...]:
        return self.detector.residency().awake_resources() if self.detector is not None else ()

    def _arm(self, deadline: float | None) -> None:
        """One-shot timer on the node clock (ROS time: sim time works) for the driver's next step."""
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        if deadline is None or self.driver is None:
            return
        delay = max(1e-3, deadline - self.now_s())
        self._timer = self.create_timer(delay, self._tick)

    def _tick(self) -> None:
        if self.driver is None:
            return
        if not self._driver_started:
            if self.now_s() == 0.0:
                # Sim time before the first /clock message: the clock has not started yet, and a grid
                # anchored here would call the jump to the recording's time a missed window. A timer on
                # the node clock fires once the clock moves.
                self._timer = self._timer or self.create_timer(1e-3, self._tick)
                return
            self._driver_started = True
            self._arm(self.driver.start())
            return
        nxt = self.driver.step()
        if self.driver is not None:
            self._arm(nxt)

    # -- power (optional hook: vibration_anomaly.power) ----------------------------------------
    def _open_power(self) -> None:
        if self._power is not None:
            return
        try:
            from vibration_anomaly.power import open_power_source

            self._power, why = open_power_source(
                str(self.p("power_source")),
                is_awake=lambda: self.detector is not None and not self.detector.residency().asleep,
            )
            self.get_logger().info(f"power source: {why}")
        except Exception as exc:  # noqa: BLE001 - power figures are optional, never a reason not to run
            self.get_logger().warn(f"no power source: {exc}")
            self._power = None

    def _open_telemetry(self, bundle: VerifiedBundle) -> None:
        """Optional hook: push the event stream's metrics when the bundle names a Pushgateway."""
        if self._pusher is not None or bundle.telemetry.pushgateway_url is None:
            return
        try:
            from prometheus_client import CollectorRegistry

            from vibration_anomaly.telemetry.metrics import RobotMetrics
            from vibration_anomaly.telemetry.pusher import pusher_from_settings

            metrics = RobotMetrics(CollectorRegistry())
            dc = bundle.duty_cycle
            metrics.set_contract(dc.period_s, dc.sample_s)
            metrics.set_bundle(str(bundle.version), expired=bundle.is_expired())
            if self.pipeline is not None:
                from vibration_anomaly.engine.select import reason_code

                metrics.set_backend(self.pipeline.engine.name, reason_code(self.pipeline.backend_reason))
            self._metrics = metrics
            self._pusher = pusher_from_settings(metrics, bundle.telemetry, str(self.p("robot_id")))
            self._pusher.start()
            self.sinks.append(metrics.observe_event)
        except Exception as exc:  # noqa: BLE001 - telemetry is optional, never a reason not to run
            self.get_logger().warn(f"telemetry disabled: {type(exc).__name__}: {exc}")

    def _read_power(self, state: str) -> None:
        if self._power is None:
            return
        try:
            reading = self._power.read()
            self._watts[state] = float(reading.watts)
            if self._metrics is not None:
                self._metrics.set_power(reading.watts, state=state, source=reading.source, modelled=reading.modelled)
        except Exception as exc:  # noqa: BLE001
            self.get_logger().warn(f"power read failed: {exc}", throttle_duration_sec=60.0)

    # -- health (diagnostics node registers these) ------------------------------------------------
    def lifecycle_label(self) -> str:
        return str(self._state_machine.current_state[1])

    def health_tasks(self) -> list[HealthTask]:
        return [
            HealthTask("duty cycle", self._duty_health),
            HealthTask("power", self._power_health),
            HealthTask("backlog", self._backlog_health),
            HealthTask("model", self._model_health),
            HealthTask("bundle", self._bundle_health),
        ]

    def _duty_health(self) -> Health:
        b, m = self.bundle, self.monitor
        if b is None or m is None:
            return Health(STALE, f"not configured (lifecycle {self.lifecycle_label()})")
        scale = float(self.p("duty_cycle_time_scale"))
        h = b.health
        return duty_cycle_health(
            m.snapshot(), sample_s=b.duty_cycle.sample_s * scale, period_s=b.duty_cycle.period_s * scale,
            period_tolerance_s=h.period_tolerance_s * scale, awake_fraction_max=h.awake_fraction_max,
            now=self.now_s(), driver_enabled=self.driver is not None,
        )

    def _power_health(self) -> Health:
        if self._power is None:
            return Health(WARN, "no power source (vibration_anomaly.power unavailable)")
        asleep = self.detector is None or self.detector.residency().asleep
        if asleep:
            self._read_power("asleep")
        held = () if self._active or self.detector is None else self.detector.residency().awake_resources()
        return power_health(
            source=str(getattr(self._power, "source", getattr(self._power, "name", "?"))),
            modelled=bool(getattr(self._power, "modelled", True)),
            asleep_w=self._watts.get("asleep"), awake_w=self._watts.get("awake"),
            asleep_power_max_w=self.bundle.health.asleep_power_max_w if self.bundle else None,
            held_while_asleep=tuple(held),
        )

    def _backlog_health(self) -> Health:
        q = self.queue
        if q is None:
            return Health(STALE, "not configured")
        rejected: dict[str, int] = {}
        s = self.imu.sampler if self.imu is not None else None
        if s is not None:
            rejected = {**dict(s.windower.rejected), **dict(s.rejected)}
        st = q.stats
        return self._backlog(BacklogCounts(
            queue_bound=q.bound, queue_depth=len(q), queue_max_depth=st.max_depth, dropped_frames=st.dropped_frames,
            dropped_overflow=st.dropped_overflow, refused_stale=st.refused_stale, rejected=rejected,
            before_window=rejected.get(REJECT_BEFORE_WINDOW, 0),
        ))

    def _model_health(self) -> Health:
        d, pl = self.detector, self.pipeline
        res = d.residency() if d is not None else None
        return model_health(
            lifecycle_state=self.lifecycle_label(), backend=pl.engine.name if pl else None,
            model=pl.model if pl else None, engine_state=res.state.value if res else None,
            held=res.held if res else (), inferences=d.inferences if d else 0, errors=d.errors if d else 0,
            last_error=self.last_error, backend_reason=pl.backend_reason if pl else None,
        )

    def _bundle_health(self) -> Health:
        b, r = self.bundle, self.refused
        return bundle_health(
            version=b.version if b else None, key_id=b.key_id if b else None,
            source=b.source_path if b else (r.source if r else None),
            refused_reason=r.reason if r else None, refused_detail=r.detail if r else None,
            expired=b.is_expired(time.time()) if b else False, dev_key=b.signed_with_dev_key if b else False,
        )

    def destroy_node(self) -> None:
        try:
            self._teardown()
        finally:
            if self._log is not None:
                self._log.close()
            if self._pusher is not None:
                self._pusher.stop(final_push=True, timeout_s=2.0)
            super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """``ros2 run vibration_anomaly detector``: the detector with its in-process IMU subscriber and diagnostics."""
    from vibration_anomaly.nodes.main import main as run_all

    return run_all(args)
