"""evaluate / calibrate CLI on a generated dataset dir: npz, CSV and rosbag2 (sqlite3 and mcap) records."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from eval_testkit import imu_cdr, run_cli

from vibration_anomaly.model.synth import defect_impacts, healthy_signal, random_machine

FS = 1000.0
RPM = 600.0
BPFO = 3.5


def _bag(path: Path, x: np.ndarray, plugin: str) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    with Writer(path, version=9, storage_plugin=getattr(StoragePlugin, plugin)) as w:
        conn = w.add_connection("/imu", "sensor_msgs/msg/Imu", typestore=ts)
        for i, row in enumerate(x):
            ns = 1_000_000_000 + i * 1_000_000
            w.write(conn, ns, imu_cdr(ts, ns // 10**9, ns % 10**9, row))


def _faulty(rng: np.random.Generator, spec: object, n: int, peak: float) -> np.ndarray:
    x = healthy_signal(rng, spec, n)
    for c in range(3):
        x[:, c] += defect_impacts(rng, FS, n, BPFO * RPM / 60, 310.0, peak * x[:, c].std())
    return x


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ds")
    rng = np.random.default_rng(11)
    rows = []
    for m in ("robot_a", "robot_b"):
        spec = random_machine(rng, FS, 3)
        h = healthy_signal(rng, spec, 24000)
        if m == "robot_a":
            np.savez_compressed(d / "a_normal.npz", x=h[:, 0], y=h[:, 1], z=h[:, 2], fs=FS)
            rows.append(["a_normal.npz", "normal", m])
            f = _faulty(rng, spec, 5000, 4.0)
            np.savetxt(
                d / "a_outer.csv",
                np.c_[np.arange(len(f)) / FS, f],
                delimiter=",",
                header="t,x,y,z",
                comments="",
            )
            rows.append(["a_outer.csv", "outer_race", m])
        else:
            np.savetxt(
                d / "b_normal.csv",
                np.c_[np.arange(len(h)) / FS, h],
                delimiter=",",
                header="t,x,y,z",
                comments="",
            )
            rows.append(["b_normal.csv", "normal", m])
            _bag(d / "b_outer_mcap", _faulty(rng, spec, 4000, 4.0), "MCAP")
            rows.append(["b_outer_mcap", "outer_race", m])
            _bag(d / "b_outer_sqlite", _faulty(rng, spec, 4000, 4.0), "SQLITE3")
            rows.append(["b_outer_sqlite", "outer_race", m])
    with (d / "manifest.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "condition", "machine", "fs_hz", "rpm", "bpfo"])
        for r in rows:
            w.writerow([*r, FS, RPM, BPFO])
    return d


def test_evaluate_json_report_and_sensitivity(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "r.png"
    rc = run_cli(
        [
            "evaluate",
            "--data",
            str(dataset),
            "--window-s",
            "0.5",
            "--json",
            "--report",
            str(png),
            "--sensitivity",
            "--amplitudes",
            "1,4",
            # The injection is physical (in Hz): a 1 kHz recording cannot carry the default 2.5-4.5 kHz
            # resonance, so these generated robots are given one their own sensor band can carry.
            "--resonance-hz",
            "250,400",
        ]
    )
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["baselines"]) == {"rms", "kurtosis", "band_kurtosis", "envelope", "isoforest"}
    assert res["auroc"] >= 0.95
    assert abs(res["int8_minus_fp32_auroc"]) <= 0.02
    assert res["per_condition"]["outer_race"]["recall"] > 0.8
    assert res["setup"]["machines"] == ["robot_a", "robot_b"]
    assert res["setup"]["faulty_windows"]["outer_race"] == 10 + 8 + 8
    lad = res["sensitivity"]["methods"]["model"]["ladder"]
    assert lad["4"]["auroc"] >= lad["1"]["auroc"] and lad["4"]["auroc"] >= 0.9
    assert "false_alarms_per_month_clean" in res["sensitivity"]["methods"]["model"]
    assert res["sensitivity"]["setup"]["injection"]["resonance_hz"] == [250, 400]
    assert png.stat().st_size > 10_000


def test_calibrate_writes_json(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "cal.json"
    assert (
        run_cli(["calibrate", "--input", str(dataset / "b_normal.csv"), "--out", str(out), "--window-s", "2"])
        == 0
    )
    cal = json.loads(out.read_text())
    # Windows are the detector's batches: 98 % of the 2 s sample window (core.window.batch_samples).
    assert cal["fs_hz"] == pytest.approx(FS) and cal["window_samples"] == 1960 and cal["n_windows"] == 12
    assert run_cli(["calibrate", "--input", str(dataset / "missing.npz"), "--out", str(out)]) == 2


def test_missing_manifest_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["evaluate", "--data", str(tmp_path)]) == 2
    assert "manifest.csv" in capsys.readouterr().err
