"""``calibrate --speed-joint``: commissioning speed-aware scoring on a rosbag2 in which the speed changes.

The simulated robot at 1 kHz, its shaft swinging +-10 % around 24 Hz over 23 s, recorded as a real
bag (sensor_msgs/Imu and sensor_msgs/JointState, rosbags' writer). The order part is calibrated on
the windows resampled to their mean speed and then, on the same swinging robot, sees an outer-race
defect through the speed readings and stays under its threshold on healthy windows.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from eval_testkit import imu_cdr

from vibration_anomaly.cli import main
from vibration_anomaly.core.calibration import Calibration
from vibration_anomaly.core.order_calibration import EXTRA_KEY, OrderCalibration
from vibration_anomaly.core.order_check import OrderCheck
from vibration_anomaly.core.speed import ShaftSpeed
from vibration_anomaly.core.window import batch_samples
from vibration_anomaly.sim.robot import FaultSpec, RobotConfig, SimulatedRobot

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("rosbags") is None,
    reason="reading and writing rosbag2 needs the rosbags package ([eval] extra)",
)

RATE = 1000.0
STANDSTILL_AT = 127.0  # one JointState at a standstill, inside the third 5 s window


def _robot() -> SimulatedRobot:
    fault = FaultSpec(start_s=2000.0, initial_peak=0.3, final_peak=0.3, growth_s=1.0)
    return SimulatedRobot(RobotConfig(rate_hz=RATE, seed=5, fault=fault, speed_swing=0.1, speed_swing_s=23.0))


def _write_bag(path: Path, robot: SimulatedRobot, t0: float, t1: float, speed_clock: float = 0.0) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    joint_t = ts.types["sensor_msgs/msg/JointState"]
    header, time_t = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]

    def sec_ns(t: float) -> tuple[int, int]:
        return int(t), int(round((t - int(t)) * 1e9))

    def stamp(t: float) -> object:
        sec, ns = sec_ns(t)
        return time_t(sec=sec, nanosec=ns)

    t, x = robot.frames(t0, t1)
    speeds = np.arange(t0, t1, 0.02)  # a 50 Hz JointState
    msgs: list[tuple[float, str, bytes]] = []
    for ti, xi in zip(t, x, strict=True):
        msgs.append((float(ti), "imu", imu_cdr(ts, *sec_ns(float(ti)), xi)))
    for s in speeds:
        v = 0.0 if abs(s - STANDSTILL_AT) < 0.01 else 2 * math.pi * float(robot.shaft_hz_at(s))
        angle = 2 * math.pi * float(robot.shaft_turns(np.float64(s)))  # the wheel's encoder, unwrapped
        m = joint_t(
            header(stamp(s), "base"),
            ["left", "wheel"],
            np.array([0.0, angle]),
            np.array([0.3, v]),
            np.zeros(0),
        )
        if speed_clock:  # the speed stamped by another clock
            m.header.stamp = stamp(s + speed_clock)
        msgs.append((float(s), "js", ts.serialize_cdr(m, joint_t.__msgtype__)))
    with Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as w:
        conns = {
            "imu": w.add_connection("/imu/data", "sensor_msgs/msg/Imu", typestore=ts),
            "js": w.add_connection("/joint_states", joint_t.__msgtype__, typestore=ts),
        }
        for ti, which, raw in sorted(msgs, key=lambda m: m[0]):
            w.write(conns[which], int(ti * 1e9), raw)


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bag") / "commissioning"
    _write_bag(path, _robot(), 110.0, 170.0)  # a healthy minute, driving
    return path


def _calibrate(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "vibration_anomaly", "calibrate", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_a_recording_that_changes_speed_commissions_the_order_part(bag: Path, tmp_path: Path) -> None:
    out = tmp_path / "cal.json"
    proc = _calibrate(
        "--input", str(bag), "--out", str(out), "--bearing", "cwru-6205", "--speed-joint", "wheel"
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)["speed_aware"]
    speed = summary["speed"]
    assert speed["topic"] == "/joint_states" and speed["joint"] == "wheel"
    assert speed["windows_with_speed"] == 11 and speed["windows_left_out"] == 1, speed  # the standstill's
    assert "standstill" in speed["unknown_because"] and "1 of 12 windows left out" in proc.stderr
    assert 21.0 < speed["min_hz"] < speed["max_hz"] < 27.0 and speed["largest_change_in_a_window"] > 0.05
    assert speed["resampled_at_the_joint_position"] == 11  # every window: the position is the shaft's angle
    oc = OrderCalibration.from_dict(Calibration.load(out).extra[EXTRA_KEY])
    assert oc.shaft_hz == pytest.approx(summary["shaft_hz"]) and 21.6 < oc.shaft_hz < 26.4
    assert oc.parts == ("envelope", "spectrum")

    robot, n = _robot(), batch_samples(RATE, 5.0)

    def ratio(t0: float) -> float:
        t, x = robot.frames(t0, t0 + n / RATE)
        topic = ShaftSpeed(topic="/joint_states")
        for s in np.arange(t[0] - 0.05, t[-1] + 0.05, 0.02):
            topic.report(float(robot.shaft_hz_at(s)), float(s))
        r = OrderCheck(oc, topic).read(x, RATE, float(t[0]), float(t[-1]))
        assert r.ratio is not None and r.speed_spread > 0.01, r
        return r.ratio

    healthy = [ratio(400.0 + 37 * k) for k in range(8)]
    faulty = [ratio(2100.0 + 37 * k) for k in range(8)]
    assert max(healthy) < 1.0, healthy
    assert sum(r > 1.0 for r in faulty) >= 6, faulty


def test_a_recording_across_speeds_records_them_without_a_bearing(bag: Path, tmp_path: Path) -> None:
    """``--speed-joint`` alone: no order part, only the speeds the calibration was made at (the speed guard's
    ``extra.speed_hz``, docs/MODEL.md "Speeds the calibration never saw"): the swing's, standstill left out."""
    out = tmp_path / "cal.json"
    proc = _calibrate("--input", str(bag), "--out", str(out), "--speed-joint", "wheel")
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed["speed_aware"] is None
    lo, hi = Calibration.load(out).extra["speed_hz"]
    assert printed["speeds_hz"] == [lo, hi] and 21.0 < lo < 23.5 < hi < 27.0  # the robot swings +-10 %
    assert EXTRA_KEY not in Calibration.load(out).extra


def test_speed_joint_refusals_name_what_is_wrong(
    bag: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "c.json")

    def refused(recording: Path, *extra: str) -> str:
        """What ``calibrate`` said refusing ``recording`` with ``extra``; exit 2 and nothing written."""
        args = ["calibrate", "--input", str(recording), "--out", out, "--bearing", "cwru-6205", *extra]
        assert main(args) == 2, extra
        assert not Path(out).exists()
        return capsys.readouterr().err

    cases = [
        (["--speed-joint", "nope"], "'nope' not in the JointState (has left, wheel)"),
        (["--speed-joint", "wheel", "--speed-topic", "/odom"], "/odom: no such"),
        (["--speed-joint", "wheel", "--shaft-hz", "24"], "not both"),
        (["--speed-topic", "/joint_states", "--shaft-hz", "24"], "needs --speed-joint"),
    ]
    for extra, said in cases:
        err = refused(bag, *extra)
        assert said in err, (extra, err)
    npz = tmp_path / "rec.npz"
    t, x = _robot().frames(110.0, 140.0)
    np.savez(npz, data=x, fs=RATE)
    assert "needs a rosbag2 recording" in refused(npz, "--speed-joint", "wheel")
    csv = tmp_path / "rec.csv"  # stamped, but no JointState can be beside it
    np.savetxt(csv, np.column_stack([t, x]), delimiter=",", header="t,x,y,z", comments="")
    assert "is not one" in refused(csv, "--speed-joint", "wheel")
    other = tmp_path / "other_clock"
    _write_bag(other, _robot(), 110.0, 131.0, speed_clock=-100.0)
    err = refused(other, "--speed-joint", "wheel")
    assert "do not overlap the IMU's" in err and "another clock?" in err, err
