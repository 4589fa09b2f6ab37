"""The runtime's settings that are not in the signed bundle: where files are, which backend, bench knobs.

One definition: the ROS node declares its parameters from :data:`DEFAULTS` and hands their values to
:meth:`RuntimeParams.from_mapping`; the demo and the soak build a ``RuntimeParams`` directly. The duty
cycle, vote and thresholds are NOT here: they come from the verified bundle only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from vibration_anomaly.errors import InputError


@dataclass(frozen=True)
class RuntimeParams:
    robot_id: str = "robot"
    bundle: str = ""
    trust_dir: str = ""
    firmware: str = ""
    require_firmware: bool = True
    rollback_state: str = ""
    model: str = ""
    engine: str = ""
    calibration: str = ""
    backend: str = "auto"
    use_duty_cycle_driver: bool = True
    sample_lead_s: float = 0.1
    sample_tail_s: float = 0.05
    duty_cycle_time_scale: float = 1.0  # tests and benchmarks only: < 1 runs the bundle's cycle faster
    event_log: str = "auto"  # "auto": $ROS_LOG_DIR or ~/.ros/log /vibration_anomaly/events.jsonl; "": off
    alarm_state: str = ""  # "": alarm_state.json beside rollback_state (no file without either)
    power_source: str = "modelled"
    sensor_full_scale: float = 0.0  # the IMU's range in m/s^2 (16 g = 156.9); 0: infer clipping from the data
    shaft_hz: float = 0.0  # the bearing's shaft speed for the alarm's diagnosis; 0: unknown (or the topic's)
    speed_topic: str = ""  # sensor_msgs/JointState with the shaft's speed; "": no subscription
    speed_joint: str = ""  # the joint in it whose velocity (rad/s) is the shaft's

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "detector parameters") -> RuntimeParams:
        known = {f.name: f.type for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for name, value in values.items():
            if name not in known:
                continue
            default = getattr(cls, name)
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise InputError(source, name, f"expected true or false, got {value!r}")
            elif isinstance(default, float):
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                    raise InputError(source, name, f"expected a finite number, got {value!r}")
                value = float(value)
            else:
                value = str(value)
            kwargs[name] = value
        p = cls(**kwargs)
        if not p.duty_cycle_time_scale > 0:
            raise InputError(
                source, "duty_cycle_time_scale", f"expected > 0, got {p.duty_cycle_time_scale!r}"
            )
        if p.shaft_hz < 0:
            raise InputError(source, "shaft_hz", f"expected >= 0 (0 = unknown), got {p.shaft_hz!r}")
        if p.speed_topic and not p.speed_joint:
            raise InputError(
                source, "speed_joint", f"expected the joint of {p.speed_topic} whose velocity is the shaft's"
            )
        if p.backend not in ("auto", "tensorrt", "onnx"):
            raise InputError(source, "backend", f"expected auto, tensorrt or onnx, got {p.backend!r}")
        return p

    def event_log_path(self) -> Path | None:
        """Where the event log goes: on by default, beside ROS's own logs; off only when set to ""."""
        if not self.event_log:
            return None
        if self.event_log != "auto":
            return Path(self.event_log)
        root = os.environ.get("ROS_LOG_DIR") or str(
            Path(os.environ.get("ROS_HOME") or Path.home() / ".ros") / "log"
        )
        return Path(root) / "vibration_anomaly" / "events.jsonl"

    def alarm_state_path(self) -> Path | None:
        """The durable alarm latch: ``alarm_state``, else beside the rollback state, else none (tests, demo)."""
        if self.alarm_state:
            return Path(self.alarm_state)
        if self.rollback_state:
            return Path(self.rollback_state).with_name("alarm_state.json")
        return None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULTS: dict[str, Any] = RuntimeParams().as_dict()
