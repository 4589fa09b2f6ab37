"""The shaft speed from a real ``sensor_msgs/JointState`` topic reaches the runtime (real rclpy, Fast DDS).

The subscription exists only while the node samples (here: a supervisor holds it active); a NaN
velocity or a message without the configured joint is *unknown* with a log line, never a crash.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
from test_nodes_ros import NO_ROS, Ros, stack, wait_for

try:
    from lifecycle_msgs.msg import Transition
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
except ImportError:  # pragma: no cover - where the wheels are absent (NO_ROS says why)
    pass

pytestmark = [pytest.mark.ros, pytest.mark.skipif(bool(NO_ROS), reason=NO_ROS or "-")]


def _joint_state(
    names: list[str], velocities: list[float], stamp: float, positions: list[float] | None = None
) -> JointState:
    m = JointState()
    m.header.stamp.sec, m.header.stamp.nanosec = int(stamp), int((stamp % 1) * 1e9)
    m.name = names
    m.velocity = velocities
    m.position = positions or []
    return m


def test_a_joint_state_on_the_speed_topic_reaches_the_runtime(
    ros: Ros, tmp_path: Path, score_model: Path
) -> None:
    _, det, _ = stack(
        ros, tmp_path, score_model, extra={"speed_topic": "wheel_states", "speed_joint": "wheel"}
    )
    assert ros.change("detector", Transition.TRANSITION_CONFIGURE)
    assert det.speed.sub is None, "no subscription before the node samples"
    assert ros.change("detector", Transition.TRANSITION_ACTIVATE)
    driver = ros.add(Node("motor_driver", context=ros.context))
    pub = driver.create_publisher(JointState, "wheel_states", 10)
    wait_for(lambda: pub.get_subscription_count() == 1, 5.0, "the speed subscription to match")

    def speed_now() -> tuple[float | None, str]:
        now = det.now_s()
        return det.runtime.speed.at(now - 1.0, now)

    pub.publish(_joint_state(["left", "wheel"], [0.3, -2 * math.pi * 24.0], det.now_s()))
    wait_for(lambda: speed_now()[0] is not None, 5.0, "the speed to reach the runtime")
    hz, source = speed_now()
    assert hz == pytest.approx(24.0) and source == "wheel_states"

    pub.publish(_joint_state(["left", "wheel"], [0.3, float("nan")], det.now_s()))
    wait_for(lambda: speed_now()[0] is None, 5.0, "a NaN velocity to make the speed unknown")
    assert "nan" in speed_now()[1]
    pub.publish(_joint_state(["left"], [0.3], det.now_s()))
    wait_for(lambda: "'wheel' not in" in speed_now()[1], 5.0, "a missing joint to be reported")
    assert det.speed.received == 3

    # A speed stamped a minute ago is stale: unknown, said so.
    pub.publish(_joint_state(["wheel"], [2 * math.pi * 24.0], det.now_s() - 60.0))
    wait_for(lambda: "stale" in speed_now()[1], 5.0, "an old stamp to count as stale")
    assert speed_now()[0] is None

    # A shaft speeding up while the node samples: the readings are kept, and the window is followed
    # through them (ShaftSpeed.track: resampled to the mean speed, core.order_track), at the joint's
    # position where the message has one that turns with the velocity (here: 20 s + s^2 turns, from 3).
    t1 = det.now_s() + 10.0  # a window clear of the unknown readings above (those would void it)
    for k in range(5):
        sent = det.speed.received
        s = 0.5 * k  # seconds into the ramp
        msg = _joint_state(
            ["left", "wheel"],
            [0.0, 2 * math.pi * (20.0 + k)],
            t1 - 2.0 + s,
            [0.0, 2 * math.pi * (3 + 20 * s + s * s)],
        )
        pub.publish(msg)
        wait_for(lambda sent=sent: det.speed.received > sent, 5.0, "each reading of the ramp to arrive")
    x = np.random.default_rng(0).standard_normal((2001, 3))
    tracked, source = det.runtime.speed.track(x, 1000.0, t1 - 2.0, t1)
    assert source == "wheel_states" and tracked is not None and tracked.resampled
    assert tracked.by == "position"
    assert tracked.shaft_hz == pytest.approx(22.0, rel=1e-3) and tracked.spread == pytest.approx(
        4 / 22, rel=0.01
    )

    assert ros.change("detector", Transition.TRANSITION_DEACTIVATE)
    assert det.speed.sub is None
    deadline = time.monotonic() + 5.0
    while pub.get_subscription_count() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pub.get_subscription_count() == 0, "the speed subscription outlived the sample window"


def test_in_duty_cycle_mode_the_speed_subscription_lives_only_in_the_sample_window(
    ros: Ros, tmp_path: Path, score_model: Path
) -> None:
    _, det, _ = stack(
        ros,
        tmp_path,
        score_model,
        sample_s=0.5,
        period_s=2.0,
        driver=True,
        extra={"speed_topic": "wheel_states", "speed_joint": "wheel"},
    )
    assert ros.change("detector", Transition.TRANSITION_CONFIGURE)
    seen: list[bool] = []
    deadline = time.monotonic() + 4.2  # two periods and a bit: at most three windows of 0.65 s
    while time.monotonic() < deadline:
        seen.append(det.speed.sub is not None)
        time.sleep(0.02)
    opened = seen.count(True) / len(seen)
    assert True in seen, "the speed subscription never opened with the sample window"
    assert False in seen and opened < 0.6, f"open {opened:.0%} of the time: it should sleep with the IMU"
