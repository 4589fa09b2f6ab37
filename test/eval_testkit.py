"""Shared pieces of the evaluate and model tests: the model commands run in-process, small real FEMTO
subsets, scores of an ONNX model as the robot's CPU backend gives them."""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vibration_anomaly.model.cli import register

FEMTO = Path(__file__).resolve().parents[2] / "shared" / "data" / "femto"


def run_cli(argv: list[str]) -> int:
    """One model subcommand (``evaluate``, ``calibrate``, ...) as ``vibration-anomaly`` parses it; its exit code."""
    p = argparse.ArgumentParser()
    register(p.add_subparsers(dest="cmd"))
    args = p.parse_args(argv)
    return int(args.func(args))


def femto_subset(directory: Path, bearings: Sequence[str], blank: Sequence[str] = ()) -> Path:
    """A manifest folder holding only these FEMTO bearings' records (linked, not copied).

    ``blank`` names manifest columns to empty (e.g. ``rpm``: a machine whose speed is unknown).
    Skips the test where ../shared/data/femto is absent.
    """
    if not (FEMTO / "manifest.csv").is_file():
        pytest.skip("../shared/data/femto not present")
    with (FEMTO / "manifest.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    keep = [list(r) for r in rows[1:] if r[0].split("_", 1)[1].removesuffix(".npz") in bearings]
    assert {r[0].split("_", 1)[1].removesuffix(".npz") for r in keep} == set(bearings), keep
    for r in keep:
        for column in blank:
            r[header.index(column)] = ""
    directory.mkdir(parents=True, exist_ok=True)
    for r in keep:
        (directory / r[0]).symlink_to(FEMTO / r[0])
    with (directory / "manifest.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([header, *keep])
    return directory


def imu_cdr(ts: Any, sec: int, nanosec: int, accel: Sequence[float], frame: str = "imu") -> bytes:
    """One ``sensor_msgs/Imu`` as a rosbag2 stores it (``ts``: a rosbags typestore): stamped, with
    ``accel`` as its linear acceleration, the identity orientation and everything else zero."""
    types = ts.types
    imu, vec = types["sensor_msgs/msg/Imu"], types["geometry_msgs/msg/Vector3"]
    stamp = types["builtin_interfaces/msg/Time"](sec=int(sec), nanosec=int(nanosec))
    cov = np.zeros(9)
    msg = imu(
        types["std_msgs/msg/Header"](stamp, frame),
        types["geometry_msgs/msg/Quaternion"](0.0, 0.0, 0.0, 1.0),
        cov,
        vec(0.0, 0.0, 0.0),
        cov,
        vec(*map(float, accel)),
        cov,
    )
    return bytes(ts.serialize_cdr(msg, imu.__msgtype__))


def onnx_scores(model: Path | bytes, x: np.ndarray) -> np.ndarray:
    """``x`` (B, T, F) scored by ``model`` (a file or its bytes) on the ONNX Runtime backend, one thread."""
    from vibration_anomaly.engine.onnx_backend import OnnxRuntimeEngine

    eng = OnnxRuntimeEngine(intra_op_threads=1)
    if isinstance(model, bytes):
        eng.load_bytes(model)
    else:
        eng.load(model)
    eng.wake()
    try:
        return eng.infer(x)
    finally:
        eng.unload()
