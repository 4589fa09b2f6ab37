"""``diagnostics``: the health tasks of ``core.health`` on /diagnostics, for rqt_robot_monitor.

One ``diagnostic_updater.Updater`` for the node, made once (not per
configure), hardware id = ``robot_id``; each task is a ``core.health.HealthTask``
(its logic is tested without ROS). Where diagnostic_updater is not installed
(the PyPI wheels have no such package), the same tasks are published as a
``diagnostic_msgs/DiagnosticArray`` by a small timer, with the names the
updater would give them (``<node name>: <task name>``), so
``config/diagnostic_aggregator.yaml`` groups either the same way.

Levels leave the core here and only here: the core speaks ``int`` 0..3, the
message field is ``bytes`` of length 1. :func:`fill_status` converts, and both
paths (the updater's ``DiagnosticStatusWrapper``, a subclass of the message,
and the fallback's plain message) go through it, so an ``int`` can never reach
the wire as a random byte (what rqt showed as ERROR everywhere).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from vibration_anomaly.core.health import ERROR, OK, STALE, WARN, HealthTask, StatusRecord

MSG_LEVELS: dict[int, bytes] = {
    OK: DiagnosticStatus.OK,
    WARN: DiagnosticStatus.WARN,
    ERROR: DiagnosticStatus.ERROR,
    STALE: DiagnosticStatus.STALE,
}


def msg_level(level: int) -> bytes:
    """The message's ``level`` for a core level; anything unknown is ERROR (never an arbitrary byte)."""
    return MSG_LEVELS.get(level, DiagnosticStatus.ERROR)


def fill_status(stat: DiagnosticStatus, rec: StatusRecord) -> DiagnosticStatus:
    """Copy a core task's result into a message (or the updater's wrapper of one), typed as the message wants."""
    stat.level = msg_level(rec.level)
    stat.message = rec.message
    stat.values = [*stat.values, *(KeyValue(key=k, value=v) for k, v in rec.values)]
    return stat


class CoreTaskAdapter:
    """``run(stat)`` in the updater's shape: the core task fills a record, the record fills the message."""

    def __init__(self, task: HealthTask) -> None:
        self.task = task

    def run(self, stat: DiagnosticStatus) -> DiagnosticStatus:
        rec = self.task.run(StatusRecord())
        assert isinstance(rec, StatusRecord)
        return fill_status(stat, rec)


def _updater_module() -> Any:
    try:
        import diagnostic_updater
    except ImportError:
        return None
    return diagnostic_updater


def wrap_task(du: Any, task: HealthTask) -> Any:
    """A ``diagnostic_updater.DiagnosticTask`` whose ``run`` is :class:`CoreTaskAdapter`'s."""
    adapter = CoreTaskAdapter(task)

    class _Task(du.DiagnosticTask):
        def __init__(self) -> None:
            super().__init__(task.name)

        def run(self, stat: Any) -> Any:
            return adapter.run(stat)

    return _Task()


class DiagnosticsNode(Node):
    def __init__(
        self,
        tasks: Sequence[HealthTask],
        *,
        node_name: str = "diagnostics",
        use_updater: bool | None = None,
        **kwargs: Any,
    ) -> None:
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
        return [
            CoreTaskAdapter(t).run(
                DiagnosticStatus(name=f"{self.get_name()}: {t.name}", hardware_id=self.hardware_id)
            )
            for t in self.tasks
        ]

    def publish_once(self) -> None:
        if self.updater is not None:
            self.updater.force_update()
            return
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = self.statuses()
        self._pub.publish(msg)
