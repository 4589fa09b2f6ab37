"""Diagnostic levels on the wire: ``bytes`` as ``diagnostic_msgs/DiagnosticStatus`` defines them, on both paths.

The core speaks ``int`` levels; an ``int`` handed to the message went out as a random byte on a full
ROS 2 install (rqt showed every group as ERROR). These run on the real message classes with
``ROS_PYTHON_CHECK_FIELDS=1`` (test/conftest.py), which makes rclpy refuse a wrongly typed field at once.
"""

from __future__ import annotations

import importlib.util
import time
from typing import Any

import pytest

from vibration_anomaly.core.health import ERROR, OK, STALE, WARN, Health, HealthTask

NO_ROS = (
    ""
    if importlib.util.find_spec("rclpy")
    else "needs the real rclpy (ros-jazzy-* wheels or a ROS 2 install)"
)
pytestmark = [pytest.mark.ros, pytest.mark.skipif(bool(NO_ROS), reason=NO_ROS or "-")]
WIRE_LEVELS = {b"\x00", b"\x01", b"\x02", b"\x03"}


def test_message_field_checks_are_on() -> None:
    from diagnostic_msgs.msg import DiagnosticStatus

    with pytest.raises(AssertionError, match="level"):
        DiagnosticStatus().level = WARN  # type: ignore[assignment]


@pytest.mark.parametrize("level", [OK, WARN, ERROR, STALE])
def test_the_adapter_writes_each_core_level_as_the_messages_byte(level: int) -> None:
    from diagnostic_msgs.msg import DiagnosticStatus

    from vibration_anomaly.nodes.diagnostics import CoreTaskAdapter

    task = HealthTask("power", lambda: Health(level, "why", {"asleep_w": 4.25, "source": "modelled"}))
    stat = CoreTaskAdapter(task).run(DiagnosticStatus(name="diagnostics: power"))
    assert stat.level == bytes([level]) and stat.message == "why"
    assert [(kv.key, kv.value) for kv in stat.values] == [("asleep_w", "4.25"), ("source", "modelled")]


def test_a_level_outside_the_message_range_is_error_not_a_random_byte() -> None:
    from diagnostic_msgs.msg import DiagnosticStatus

    from vibration_anomaly.nodes.diagnostics import CoreTaskAdapter

    stat = CoreTaskAdapter(HealthTask("x", lambda: Health(165, "odd"))).run(DiagnosticStatus())
    assert stat.level == DiagnosticStatus.ERROR


def test_fallback_publisher_puts_message_levels_on_the_wire() -> None:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from vibration_anomaly.nodes.diagnostics import DiagnosticsNode

    levels = {"ok": OK, "warn": WARN, "error": ERROR, "stale": STALE}
    tasks = [HealthTask(name, lambda lv=lv, n=name: Health(lv, n)) for name, lv in levels.items()]  # type: ignore[misc]
    ctx = Context()
    rclpy.init(context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    try:
        diag = DiagnosticsNode(tasks, context=ctx, use_updater=False)
        listener = Node("listener", context=ctx)
        got: list[Any] = []
        listener.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
        ex.add_node(diag)
        ex.add_node(listener)
        deadline = time.monotonic() + 20.0
        while not got and time.monotonic() < deadline:
            diag.publish_once()
            ex.spin_once(timeout_sec=0.1)
        assert got, "no /diagnostics received"
        status = {s.name: s.level for s in got[-1].status}
        assert status == {f"diagnostics: {n}": bytes([lv]) for n, lv in levels.items()}
        assert set(status.values()) <= WIRE_LEVELS
        for n in (diag, listener):
            n.destroy_node()
    finally:
        ex.shutdown()
        rclpy.shutdown(context=ctx)
