"""Commissioning a robot off-line: record healthy IMU to a rosbag2, `vibration-anomaly calibrate` it,
and the detector's own batches (core.window.batch_samples) score against that calibration."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from eval_testkit import imu_cdr

from vibration_anomaly.core.calibration import Calibration
from vibration_anomaly.core.scoring import Scorer
from vibration_anomaly.core.window import batch_samples
from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine
from vibration_anomaly.model import load_default_model
from vibration_anomaly.sim.robot import FaultSpec, RobotConfig, SimulatedRobot

# A skip mark, never a module-level importorskip: launch_testing's pytest plugin (loaded whenever ROS is
# sourced) imports every test module while collecting, and a Skipped raised there skips the whole folder.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("rosbags") is None,
    reason="writing rosbag2 needs the rosbags package ([eval] extra)",
)


def _write_imu_bag(path: Path, t: np.ndarray, x: np.ndarray) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    with Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as w:
        conn = w.add_connection("/imu/data", "sensor_msgs/msg/Imu", typestore=ts)
        for ti, xi in zip(t, x, strict=True):
            sec = int(ti)
            raw = imu_cdr(ts, sec, int(round((ti - sec) * 1e9)), xi, "imu_link")
            w.write(conn, int(ti * 1e9), raw)


def test_bag_calibration_fits_the_detector_batches(tmp_path: Path) -> None:
    robot = SimulatedRobot(RobotConfig(seed=11, fault=FaultSpec(start_s=400.0, growth_s=60.0)))
    t, x = robot.frames(100.0, 160.0)  # one healthy minute at commissioning
    bag = tmp_path / "commissioning"
    _write_imu_bag(bag, t, x)
    cal_path = tmp_path / "calibration.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vibration_anomaly",
            "calibrate",
            "--input",
            str(bag),
            "--out",
            str(cal_path),
            "--machine",
            "robot-11",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    cal = Calibration.load(cal_path)
    model = load_default_model()
    engine = OnnxRuntimeEngine()
    engine.load(model.onnx)
    engine.wake()
    try:
        scorer = Scorer(engine, model.frontend(), cal)
        n = batch_samples(1000.0, 5.0)
        healthy = [
            scorer.score_window(robot.frames(s, s + n / 1000)[1], 1000.0) for s in (200.0, 260.0, 320.0)
        ]
        faulty = [scorer.score_window(robot.frames(s, s + n / 1000)[1], 1000.0) for s in (500.0, 560.0)]
    finally:
        engine.unload()
    assert not any(v.above for v in healthy), [v.ratio for v in healthy]
    assert all(v.above for v in faulty), [v.ratio for v in faulty]


def test_calibrate_names_a_missing_recording(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vibration_anomaly",
            "calibrate",
            "--input",
            str(tmp_path / "nope.db3"),
            "--out",
            str(tmp_path / "c.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "nope.db3" in proc.stderr
