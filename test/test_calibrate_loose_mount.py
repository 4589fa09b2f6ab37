"""Re-commissioning on a sensor that came loose is refused, not learned as the machine's health (issue 15).

A dead or clipped channel is refused by ``calibrate`` from the recording alone (test_bad_input.py); a
loose mount is only visible against this machine's earlier level, so ``--reference`` names the earlier
calibration. Real files, the real command, in-process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vibration_anomaly.cli import main

FS = 1000.0


def _npz(path: Path, x: np.ndarray) -> Path:
    np.savez(path, **{k: x[:, i].astype(np.float32) for i, k in enumerate("xyz")}, fs=np.float64(FS))
    return path


def _machine(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FS
    x = rng.normal(0.0, 0.3, (n, 3))
    for c in range(3):
        x[:, c] += 0.5 * np.sin(2 * np.pi * (37 + 11 * c) * t) + 0.2 * np.sin(2 * np.pi * 121 * t)
    return x


def test_a_loose_mount_recording_is_refused_against_the_machines_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _npz(tmp_path / "commissioning.npz", _machine(30_000, 0))
    ref = tmp_path / "cal.json"
    assert main(["calibrate", "--input", str(first), "--out", str(ref), "--window-s", "1"]) == 0
    # A year later the sensor hangs by one screw: the same machine, a twentieth of the vibration.
    loose = _npz(tmp_path / "recommission.npz", 0.05 * _machine(30_000, 1))
    out = tmp_path / "cal2.json"
    capsys.readouterr()
    rc = main(
        ["calibrate", "--input", str(loose), "--out", str(out), "--window-s", "1", "--reference", str(ref)]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "loose_mount" in err and "loose mount" in err and len(err.splitlines()) == 1, err
    assert not out.exists()
    # The same machine, well mounted, re-commissions against the same reference.
    good = _npz(tmp_path / "good.npz", _machine(30_000, 2))
    rc = main(
        ["calibrate", "--input", str(good), "--out", str(out), "--window-s", "1", "--reference", str(ref)]
    )
    assert rc == 0 and out.exists()
