"""``diagnostics``: the health tasks of ``core.health`` on /diagnostics, for rqt_robot_monitor.

One ``diagnostic_updater.Updater`` for the node, made once (not per
configure), hardware id = ``robot_id``; each task is a ``core.health.HealthTask``
(its logic is tested without ROS). Where diagnostic_updater is not installed
(the PyPI wheels have no such package), the same tasks are published as a
``diagnostic_msgs/DiagnosticArray`` by a small timer, with the names the
updater would give them (``<node name>: <task name>``), so
``config/diagnostic_aggregator.yaml`` groups either the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from vibration_anomaly.core.health import HealthTask, StatusRecord


def _updater_module() -> Any:
    try:
        import diagnostic_updater
    except ImportError:
        return None
    return diagnostic_updater


def wrap_task(du: Any, task: HealthTask) -> Any:
    """A ``diagnostic_updater.DiagnosticTask`` whose ``run`` is the core task's."""

    class _Task(du.DiagnosticTask):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__(task.name)

        def run(self, stat: Any) -> Any:
            return task.run(stat)

    return _Task()


class DiagnosticsNode(Node):
    def __init__(self, tasks: Sequence[HealthTask], *, node_name: str = "diagnostics",
                 use_updater: bool | None = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.hardware_id = str(self.declare_parameter("robot_id", "robot").value)
        self.period_s = float(self.declare_parameter("diagnostic_period", 1.0).value)
        self.tasks = list(tasks)
        du = _updater_module() if use_updater in (None, True) else None
        if use_updater and du is None:
            raise ImportError("diagnostic_updater is not installed")
        self.updater: Any = None
        if du is not None:
            self.updater = du.Updater(self, period=self.period_s)
            self.updater.setHardwareID(self.hardware_id)
            for t in self.tasks:
                self.updater.add(wrap_task(du, t))
        else:
            self._pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self._timer = self.create_timer(self.period_s, self.publish_once)

    def statuses(self) -> list[DiagnosticStatus]:
        out = []
        for t in self.tasks:
            rec = t.run(StatusRecord())
            assert isinstance(rec, StatusRecord)
            out.append(DiagnosticStatus(
                level=bytes([rec.level]), name=f"{self.get_name()}: {t.name}", message=rec.message,
                hardware_id=self.hardware_id, values=[KeyValue(key=k, value=v) for k, v in rec.values],
            ))
        return out

    def publish_once(self) -> None:
        if self.updater is not None:
            self.updater.force_update()
            return
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = self.statuses()
        self._pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    """``ros2 run vibration_anomaly diagnostics``: the tasks read the detector in-process, so run them together."""
    from vibration_anomaly.nodes.main import main as run_all

    return run_all(args)
