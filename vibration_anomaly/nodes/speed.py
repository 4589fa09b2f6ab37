"""The shaft speed from a ``sensor_msgs/JointState`` topic (``speed_topic``, joint ``speed_joint``).

Open only while IMU frames are sampled (the duty-cycle window, or while a supervisor holds the node
active), like the IMU subscription: a Python subscriber costs CPU for every message. Each message is
translated by ``core.speed.joint_speed_hz`` (and its position, where it has one, by
``joint_angle_turns``: the shaft's angle for order tracking) and handed, with its stamp (the receive
time when the header has none), to the runtime's ``ShaftSpeed``; a change between known and unknown (NaN, a missing
joint, a standstill) is logged once, never raised.
"""

from __future__ import annotations

from typing import Any

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState

from vibration_anomaly.core.speed import joint_angle_turns, joint_speed_hz


class SpeedSubscription:
    def __init__(self, node: Any, runtime: Any) -> None:
        self.node, self.runtime = node, runtime
        self.sub: Any = None
        self.received = 0

    def open(self) -> None:
        topic = self.runtime.params.speed_topic
        if self.sub is not None or not topic:
            return
        qos = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.sub = self.node.create_subscription(JointState, topic, self._on_msg, qos)

    def close(self) -> None:
        if self.sub is not None:
            self.node.destroy_subscription(self.sub)
            self.sub = None

    def _on_msg(self, msg: JointState) -> None:
        self.received += 1
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9 or self.node.now_s()
        try:
            names, joint = list(msg.name), self.runtime.params.speed_joint
            hz, why = joint_speed_hz(names, list(msg.velocity), joint)
            line = self.runtime.speed.report(
                hz, stamp, why, joint_angle_turns(names, list(msg.position), joint)
            )
        except Exception as exc:  # noqa: BLE001 - a bad message never takes the node down
            line = (
                f"speed on {self.runtime.params.speed_topic}: dropped a message ({type(exc).__name__}: {exc})"
            )
        if line:
            self.node.get_logger().info(line)
