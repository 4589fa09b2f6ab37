"""The shaft speed recorded beside the IMU in a rosbag2: a ``sensor_msgs/JointState`` joint's velocity.

``vibration-anomaly calibrate --speed-joint`` commissions speed-aware scoring on a recording in which
the robot drove as it does (its speed changing), not only at one steady speed: each window is resampled
to its mean speed from these readings (``core.order_track``), as the detector does with ``speed_topic``.
Each message is translated as the node translates it (``core.speed.joint_speed_hz``, the magnitude in
Hz, and ``joint_angle_turns``, the position the window is resampled at where it is the shaft's angle); a
missing joint, a NaN, a standstill or an out-of-range value is an unknown reading (NaN), so a
window that holds one is left out of the order part's calibration (never out of the model's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vibration_anomaly.core.speed import joint_angle_turns, joint_speed_hz, usable_speed
from vibration_anomaly.errors import InputError
from vibration_anomaly.model.records import open_bag

JOINT_STATE = "sensor_msgs/msg/JointState"
MAX_READINGS = 10_000_000


@dataclass(frozen=True)
class SpeedReadings:
    """Stamps (s, increasing) and speeds (Hz; NaN: unknown) of one joint, from one topic."""

    topic: str
    joint: str
    stamps: np.ndarray
    hz: np.ndarray
    why_unknown: str  # the last reason a reading was unknown ("" when none was)
    turns: np.ndarray | None = None  # the joint's position at each reading, in turns (NaN: none)


def load_joint_speed(path: Path, joint: str, topic: str | None = None) -> SpeedReadings:
    """``joint``'s speed from the bag at ``path`` (its folder, or a .db3 / .mcap in it), refused by name."""
    path = Path(path)
    src = str(path)
    rows: list[tuple[float, float, float]] = []
    why = ""
    with open_bag(path) as reader:
        conns = [c for c in reader.connections if c.msgtype == JOINT_STATE]
        topics = sorted({c.topic for c in conns})
        if topic is None:
            if len(topics) != 1:
                found = ", ".join(topics) if topics else "none"
                raise InputError(src, "--speed-topic", f"name the {JOINT_STATE} topic (the bag has: {found})")
            topic = topics[0]
        if topic not in topics:
            raise InputError(
                src,
                "--speed-topic",
                f"{topic}: no such {JOINT_STATE} topic (has: {', '.join(topics) or 'none'})",
            )
        conns = [c for c in conns if c.topic == topic]
        if sum(c.msgcount for c in conns) > MAX_READINGS:
            raise InputError(src, topic, f"more than {MAX_READINGS} messages; split the bag")
        for conn, ts, raw in reader.messages(connections=conns):
            m: Any = reader.deserialize(raw, conn.msgtype)
            stamp = m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 or ts * 1e-9
            hz, reason = joint_speed_hz(list(m.name), list(m.velocity), joint)
            if hz is not None:
                hz, reason = usable_speed(hz)
            if hz is None:
                why = reason
            turns = joint_angle_turns(list(m.name), list(m.position), joint)
            rows.append((float(stamp), math.nan if hz is None else float(hz), turns))
    if not rows:
        raise InputError(src, topic or "--speed-topic", "no JointState messages")
    arr = np.array(rows)
    arr = arr[np.argsort(arr[:, 0], kind="stable")]
    if not np.isfinite(arr[:, 1]).any():
        raise InputError(src, "--speed-joint", f"{joint}: no known speed in {len(arr)} messages ({why})")
    return SpeedReadings(topic, joint, arr[:, 0], arr[:, 1], why, arr[:, 2])


@dataclass(frozen=True)
class TrackedWindows:
    """The recording's windows with a known speed, each resampled to constant speed, and those speeds."""

    windows: np.ndarray  # (M, n, C)
    speeds_hz: list[float]
    changes: list[float]  # each window's relative speed change (0: steady)
    left_out: int  # windows whose speed was unknown for part of them (or throughout)
    by_position: int = 0  # resampled at the joint's position (the other resampled ones: its velocity)

    def summary(self, readings: SpeedReadings) -> dict[str, Any]:
        """What ``calibrate`` prints about the speed it commissioned with."""
        out: dict[str, Any] = {
            "topic": readings.topic,
            "joint": readings.joint,
            "windows_with_speed": len(self.speeds_hz),
            "windows_left_out": self.left_out,
            "min_hz": round(min(self.speeds_hz), 3),
            "max_hz": round(max(self.speeds_hz), 3),
            "largest_change_in_a_window": round(max(self.changes), 4),
            "resampled_at_the_joint_position": self.by_position,
        }
        if self.left_out and readings.why_unknown:
            out["unknown_because"] = readings.why_unknown
        return out


def track_windows(
    windows: np.ndarray, starts: np.ndarray, fs_hz: float, readings: SpeedReadings
) -> TrackedWindows:
    """Each window (N, n, C), its first sample stamped ``starts[i]``, at constant speed (``track_window``)."""
    from vibration_anomaly.core.order_track import track_window

    kept, speeds, changes, by_position = [], [], [], 0
    n = windows.shape[1]
    for w, t0 in zip(windows, starts, strict=True):
        t1 = float(t0) + (n - 1) / fs_hz
        got = track_window(w, fs_hz, float(t0), t1, readings.stamps, readings.hz, readings.turns)
        if got is not None:
            kept.append(got.window)
            speeds.append(got.shaft_hz)
            changes.append(got.spread)
            by_position += int(got.resampled and got.by == "position")
    stacked = np.stack(kept) if kept else np.zeros((0, *windows.shape[1:]))
    return TrackedWindows(stacked, speeds, changes, len(windows) - len(kept), by_position)
