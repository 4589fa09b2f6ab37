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
        teardown(rclpy, ex, nodes)
    return rc


def teardown(rclpy: Any, ex: Any, nodes: tuple[Any, ...]) -> None:
    """Tear down in order, each step on its own: a second signal or an invalid context must not skip the rest.

    Every process of this package that spins nodes ends through here (this one, ``imu_subscriber``).
    """
    import gc

    from rclpy.executors import ExternalShutdownException

    _quiesce_signals()
    # No garbage collection while the nodes come apart: a collection running on the engine thread
    # (which is still unloading the model) could finalize an rclpy handle there after the context
    # is gone. Collected here, on this thread, at the end. (Added for a segfault on Ctrl-C, 0 in 24
    # after; the one CI met later was rclpy's signal thread, which _quiesce_signals now waits for.)
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


def _quiesce_signals() -> None:
    """Let rclpy's signal thread finish before anything is torn down; later signals wait for the teardown.

    rclpy's SIGINT/SIGTERM handler wakes a C++ thread of its own, which triggers every executor's
    signal guard condition and then shuts every context down (``rcl_shutdown``), while this thread,
    woken by that very trigger, already tears down: ``ex.shutdown`` unregisters and frees that guard
    condition (and rclpy's list of them), then the nodes' services go. When the signal thread lost
    the CPU between the two, it went on with freed memory: the process ended in a segfault (exit -11)
    instead of 0, seen in CI on two Ctrl-Cs out of six, and in 12 of 17 runs with that thread held
    for a second (docs/ROS.md "Exit status"). ``uninstall_signal_handlers`` joins that thread,
    which first finishes the signal in hand, so the teardown below runs alone.

    Python's handlers go in first, so no signal meets a default action meanwhile: a second Ctrl-C, or
    the SIGTERM ``ros2 launch`` sends 5 s after its SIGINT, would otherwise kill the process halfway
    (SIGTERM's default) or abandon a step (KeyboardInterrupt). Every step is bounded (engine calls,
    the last push), so they wait instead, and one line says so; SIGKILL still ends it at once.
    """
    import signal
    import threading

    from rclpy.signals import uninstall_signal_handlers

    def wait_for_teardown(signum: int, frame: object) -> None:
        print(
            f"vibration_anomaly: {signal.Signals(signum).name} during shutdown: finishing the teardown "
            "first (every step bounded; the engine sleeps and unloads); SIGKILL ends it now",
            file=sys.stderr,
        )

    if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, wait_for_teardown)
    uninstall_signal_handlers()


if __name__ == "__main__":
    sys.exit(main())
