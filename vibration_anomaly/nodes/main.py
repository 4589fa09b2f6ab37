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
too when the supervisor drives (``use_duty_cycle_driver: false``).
"""

from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

from vibration_anomaly.nodes.detector import DetectorNode
from vibration_anomaly.nodes.diagnostics import DiagnosticsNode
from vibration_anomaly.nodes.imu_subscriber import ImuSubscriberNode


def build(**node_kwargs: object) -> tuple[ImuSubscriberNode, DetectorNode, DiagnosticsNode]:
    imu = ImuSubscriberNode(**node_kwargs)  # type: ignore[arg-type]
    det = DetectorNode(imu, **node_kwargs)  # type: ignore[arg-type]
    diag = DiagnosticsNode(det.health_tasks(), **node_kwargs)  # type: ignore[arg-type]
    return imu, det, diag


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    imu, det, diag = build()
    if not det.has_parameter("autostart"):
        det.declare_parameter("autostart", False)
    ex = SingleThreadedExecutor()
    for n in (imu, det, diag):
        ex.add_node(n)
    rc = 0
    try:
        if det.get_parameter("autostart").value:
            if det.trigger_configure().to_label() != "success":
                det.get_logger().error("autostart: configure failed; staying unconfigured (see the log and the bundle and model diagnostics)")
                rc = 1
            elif not det.get_parameter("use_duty_cycle_driver").value:
                det.trigger_activate()
        ex.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        ex.shutdown()
        for n in (diag, det, imu):
            n.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return rc


if __name__ == "__main__":
    sys.exit(main())
