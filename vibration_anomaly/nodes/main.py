"""One process, three nodes, one SingleThreadedExecutor (plus the detector's engine thread).

Why one process: a batch is 5 s x 1 kHz x 3 axes; sending it between
processes would need a custom message and cost the very CPU the duty cycle
saves. So the IMU subscriber hands batches to the detector's latest-batch
queue in memory, and the diagnostics node reads the detector's state in
memory. A SingleThreadedExecutor, because with these wheels a
MultiThreadedExecutor racing lifecycle transitions ended in "context is not
valid", and because one thread is all the node work needs (the engine runs
on its own thread).

``autostart: true`` (detector parameter) configures at start, and activates
too when the supervisor drives (``use_duty_cycle_driver: false``). The exit
status says how the process ended: 0 a clean shutdown (Ctrl-C, SIGTERM, an
external ``rclpy.shutdown``), 1 an autostart transition that failed (the node
still ran, unconfigured, until shut down, so the supervisor and the
diagnostics could see why).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vibration_anomaly.nodes.detector import DetectorNode
    from vibration_anomaly.nodes.diagnostics import DiagnosticsNode
    from vibration_anomaly.nodes.imu_subscriber import ImuSubscriberNode


def build(**node_kwargs: object) -> tuple[ImuSubscriberNode, DetectorNode, DiagnosticsNode]:
    from vibration_anomaly.nodes.detector import DetectorNode
    from vibration_anomaly.nodes.diagnostics import DiagnosticsNode
    from vibration_anomaly.nodes.imu_subscriber import ImuSubscriberNode

    imu = ImuSubscriberNode(**node_kwargs)  # type: ignore[arg-type]
    det = DetectorNode(imu, **node_kwargs)  # type: ignore[arg-type]
    diag = DiagnosticsNode(det.health_tasks(), **node_kwargs)  # type: ignore[arg-type]
    return imu, det, diag


def autostart(det: DetectorNode) -> bool:
    """configure (and activate when the supervisor drives); True when every transition succeeded.

    The transitions return ``TransitionCallbackReturn``: compared as the enum, never by label
    (the label is ``transition_success``, and comparing it with ``"success"`` failed every start).
    """
    from rclpy.lifecycle import TransitionCallbackReturn

    SUCCESS = TransitionCallbackReturn.SUCCESS
    if det.trigger_configure() != SUCCESS:
        det.get_logger().error(
            "autostart: configure failed; staying unconfigured (see the log above and the "
            "bundle and model diagnostics)"
        )
        return False
    if det.get_parameter("use_duty_cycle_driver").value:
        return True
    if det.trigger_activate() != SUCCESS:
        det.get_logger().error("autostart: activate failed; staying inactive (see the log above)")
        return False
    det.get_logger().info("autostart: configured and active (the supervisor drives from here)")
    return True


def main(args: list[str] | None = None) -> int:
    try:
        # The imports are here, not at the top, so a Ctrl-C while they load (seconds on a Jetson) is
        # a quiet exit like any other Ctrl-C rather than a traceback from deep inside an import.
        import rclpy

        from vibration_anomaly.nodes.detector import DetectorNode  # noqa: F401 - loaded before rclpy.init
    except KeyboardInterrupt:
        return 0
    try:
        rclpy.init(args=args)
    except KeyboardInterrupt:
        return 0
    return _run(rclpy)


def _run(rclpy: Any) -> int:
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    ex = SingleThreadedExecutor()
    nodes: tuple[Any, ...] = ()
    rc = 0
    try:
        imu, det, diag = build()
        nodes = (diag, det, imu)
        if not det.has_parameter("autostart"):
            det.declare_parameter("autostart", False)
        for n in (imu, det, diag):
            ex.add_node(n)
        if det.get_parameter("autostart").value and rclpy.ok() and not autostart(det):
            rc = 1
        ex.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # Ctrl-C can race the executor: rclpy's signal handler invalidates the context while the
        # executor builds its wait set ("failed to initialize wait set: the given context is not
        # valid"). That is a shutdown, not a failure; anything raised while the context is still
        # valid is a real error.
        if rclpy.ok():
            raise
    finally:
        _shutdown(rclpy, ex, nodes)
    return rc


def _shutdown(rclpy: Any, ex: Any, nodes: tuple[Any, ...]) -> None:
    """Tear down in order, each step on its own: a second Ctrl-C or an invalid context must not skip the rest."""
    import gc

    from rclpy.executors import ExternalShutdownException

    # No garbage collection while the nodes come apart: a collection running on the engine thread
    # (which is still unloading the model) could finalize an rclpy handle there after the context
    # is gone; seen as a segfault on about one Ctrl-C in four. Collected here, on this thread, at the end.
    gc.disable()
    for step in [ex.shutdown, *(n.destroy_node for n in nodes), rclpy.try_shutdown]:
        try:
            step()
        except (KeyboardInterrupt, ExternalShutdownException):
            continue
        except Exception as exc:  # noqa: BLE001 - destroy_node put the engine to sleep and unloaded it first
            if rclpy.ok():
                raise
            print(f"vibration_anomaly: during shutdown: {type(exc).__name__}: {exc}", file=sys.stderr)
    gc.enable()
    gc.collect()


if __name__ == "__main__":
    sys.exit(main())
