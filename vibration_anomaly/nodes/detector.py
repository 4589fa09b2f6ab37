"""``detector``: the lifecycle node over ``runtime.DetectorRuntime`` (configure sequence, engine thread,
queue, detector, health board and wiring all live there, ROS-free).

Transitions are the engine's power states: configure = verify the signed bundle (firmware agreement,
model hash) and load (a refused bundle returns FAILURE, its reason in the log and the ``bundle``
diagnostic); activate = wake; deactivate = sleep (synchronize and free; ERROR if anything is still
held); cleanup = unload; shutdown / on_error: sleep and unload, nothing left on the GPU.

``use_duty_cycle_driver: true`` (default): ``core.driver.DutyCycleDriver`` on the node clock opens the
IMU window and at its end runs activate -> infer once -> deactivate through this node's own lifecycle;
it starts with the clock (on sim time at the first /clock message, not at 0). ``false``: the supervisor
drives; while active the subscription is open and the newest completed batch is inferred.

``score`` (Float32) and ``alarm`` (Bool, latched: transient local, depth 1) are published from the
event bus, as the log, metrics and health read it. The IMU subscriber runs in this process; the shaft
speed for the alarm's diagnosis comes from ``speed_topic`` (``nodes.speed``) or the fixed ``shaft_hz``.
"""

from __future__ import annotations

import time
import traceback
from types import SimpleNamespace
from typing import Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool, Float32
from std_srvs.srv import Trigger

from vibration_anomaly.core.events import ALARM_RESET, INFER, Event
from vibration_anomaly.core.health import HealthTask
from vibration_anomaly.core.scheduler import SampleWindow
from vibration_anomaly.nodes.driver_timer import DriverTimer
from vibration_anomaly.nodes.imu_subscriber import ImuSubscriberNode
from vibration_anomaly.nodes.speed import SpeedSubscription
from vibration_anomaly.runtime import (
    DEFAULTS,
    ConfigureFailed,
    DetectorRuntime,
    PipelineFactory,
    RuntimeParams,
)
from vibration_anomaly.runtime.pipeline import build_pipeline

SUCCESS, FAILURE, ERROR = (
    TransitionCallbackReturn.SUCCESS,
    TransitionCallbackReturn.FAILURE,
    TransitionCallbackReturn.ERROR,
)


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
        for name, default in DEFAULTS.items():
            self.declare_parameter(name, default)
        self.imu = imu
        lg = self.get_logger()
        self.runtime = DetectorRuntime(
            self.now_s,
            pipeline_factory=pipeline_factory,
            name=self.get_name(),
            logger=SimpleNamespace(info=lg.info, warning=lg.warn, error=lg.error),
            lifecycle_label=self.lifecycle_label,
        )
        self.runtime.sinks.append(self._publish_verdict)
        self.speed = SpeedSubscription(self, self.runtime)  # speed_topic: open while sampling, like the IMU
        self._driver_transition = False
        self.timer = DriverTimer(self, lambda: self.runtime.driver, self.now_s)
        self._reset_srv = self.create_service(Trigger, "~/reset_alarm", self._reset_alarm)
        self.score_pub = self.create_lifecycle_publisher(Float32, "score", 10)
        latched = QoSProfile(
            depth=1,
            history=HistoryPolicy.KEEP_LAST,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        self.alarm_pub = self.create_lifecycle_publisher(Bool, "alarm", latched)

    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def lifecycle_label(self) -> str:
        return str(self._state_machine.current_state[1])

    def health_tasks(self) -> list[HealthTask]:
        return self.runtime.health_tasks()

    def _publish_verdict(self, ev: Event) -> None:
        if ev["event"] == INFER:
            self.score_pub.publish(Float32(data=float(ev["score"])))
            self.alarm_pub.publish(Bool(data=bool(ev["alarm"])))
        elif ev["event"] == ALARM_RESET and self.alarm_pub.is_activated:
            self.alarm_pub.publish(Bool(data=False))  # inactive: the next inference publishes it

    def _reset_alarm(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """``~/reset_alarm`` (std_srvs/Trigger): the only way a latched alarm clears while running."""
        try:
            was = self.runtime.reset_alarm("service ~/reset_alarm", "operator reset")
            response.success, response.message = True, "alarm reset" if was else "no alarm was latched"
        except Exception as exc:  # noqa: BLE001 - answer the caller, never crash the node
            response.success, response.message = False, f"reset failed: {type(exc).__name__}: {exc}"
        self.get_logger().warn(f"reset_alarm: {response.message}")
        return response

    def _fail(self, what: str, exc: BaseException, ret: TransitionCallbackReturn) -> TransitionCallbackReturn:
        self.runtime.last_error = f"{what}: {type(exc).__name__}: {exc}"
        self.get_logger().error(
            f"{what} failed -> {ret.to_label()}:\n{''.join(traceback.format_exception(exc))}"
        )
        return ret

    # -- lifecycle -----------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        rt = self.runtime
        attach = None
        if self.imu is not None:
            imu = self.imu
            attach = lambda queue, sample_s: imu.attach(queue, sample_s, on_batch=self._on_batch)  # noqa: E731
        try:
            params = RuntimeParams.from_mapping({n: self.get_parameter(n).value for n in DEFAULTS})
            sim = bool(self.get_parameter("use_sim_time").value)
            rt.configure(params, attach=attach, hooks=self, steady=None if sim else time.monotonic)
        except ConfigureFailed as exc:
            if exc.refused is not None and exc.what == "configure refused":
                self.get_logger().error(f"configure refused: {exc.refused}")
                return FAILURE
            return self._fail(exc.what, exc.__cause__ or exc, FAILURE)
        except Exception as exc:  # noqa: BLE001 - bad parameters: a transition never fails silently
            return self._fail("configure", exc, FAILURE)
        if rt.driver is not None:
            self.timer.start()
        self.get_logger().info(f"configured: {rt.describe()}")
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.runtime.driver is not None and not self._driver_transition:
            self.get_logger().error(
                "activate refused: the built-in duty-cycle driver owns activate/deactivate "
                "(launch with use_duty_cycle_driver:=false to let a supervisor drive)"
            )
            return FAILURE
        try:
            supervised = self.runtime.driver is None
            self.runtime.activate(by_supervisor=supervised and self.imu is not None)
            ret = super().on_activate(state)  # activates the lifecycle publishers
            if supervised and self.imu is not None:
                self.imu.start_sampling(self.now_s(), continuous=True)
                self.speed.open()
            return ret
        except Exception as exc:  # noqa: BLE001
            return self._fail("activate", exc, ERROR)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            supervised = self.runtime.driver is None
            if supervised and self.imu is not None:
                self.imu.stop_sampling()
                self.speed.close()
            self.runtime.deactivate(by_supervisor=supervised)
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
        """Stop the driver and sampling, then the runtime sleeps and unloads on its engine thread."""
        self.timer.stop()
        if self.runtime.driver is not None:
            self.runtime.driver.stop()
        if self.imu is not None:
            self.imu.stop_sampling()
        self.speed.close()
        self.runtime.teardown()

    # -- supervisor mode -------------------------------------------------------------------------
    def _on_batch(self, batch: Any) -> None:
        if self.runtime.driver is not None or self.imu is None:
            return
        start = self.imu.sampler.window_start if self.imu.sampler else None
        self.runtime.report_rejects()
        self.runtime.on_batch(-float("inf") if start is None else start)

    # -- duty-cycle driver hooks (core.driver.DriverHooks) ----------------------------------------
    def open_sampling(self, window: SampleWindow) -> None:
        if self.imu is not None:
            self.imu.start_sampling(window.start)
            self.speed.open()

    def close_sampling(self, window: SampleWindow) -> None:
        if self.imu is not None:
            self.imu.stop_sampling()
            self.speed.close()
            self.runtime.report_rejects()  # bad frames as reject events, stale ones as a before_window drop

    def infer_once(self, window: SampleWindow) -> None:
        """activate -> infer the newest batch of this window -> deactivate, as real lifecycle transitions."""
        self._driver_transition = True
        try:
            if self.trigger_activate() != SUCCESS:
                raise RuntimeError("duty cycle: activate failed")
            try:
                self.runtime.infer_now(window.start)
            finally:
                if self.trigger_deactivate() != SUCCESS:
                    raise RuntimeError("duty cycle: deactivate failed")
        finally:
            self._driver_transition = False

    def held_resources(self) -> tuple[str, ...]:
        return self.runtime.held_resources()

    def destroy_node(self) -> None:
        try:
            self._teardown()
        finally:
            self.runtime.close()
            super().destroy_node()
