"""core.sensor_health: failures that only remove vibration are found, and a healthy sensor is left alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vibration_anomaly.core import sensor_health as sh

FS = 1000.0
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def healthy(n: int = 5000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FS
    return rng.normal(0, 0.2, (n, 3)) + 0.4 * np.sin(2 * np.pi * 47 * t)[:, None]


def kinds(findings: list[sh.Finding]) -> set[str]:
    return {f.kind for f in findings}


def test_healthy_batch_has_no_findings() -> None:
    x = healthy()
    assert sh.check_batch(x, FS, timestamps=np.arange(len(x)) / FS, baseline_rms=sh.baseline(x)["rms"]) == []
    assert sh.report([]).ok and sh.report([]).message == "sensor OK"


def test_coarsely_quantized_quiet_sensor_is_not_called_clipped() -> None:
    """A 12-bit IMU at rest toggles between a few counts: its extremes repeat without any clipping."""
    x = np.round(healthy() * 4) / 4
    assert sh.CLIPPING not in kinds(sh.check_batch(x, FS))


def test_dead_and_constant_channels_are_errors() -> None:
    x = healthy()
    x[:, 0] = 0.0
    x[:, 2] = 1e-9 * np.random.default_rng(1).normal(size=len(x))
    f = sh.check_batch(x, FS, channel_names=("x", "y", "z"))
    dead = [g for g in f if g.kind == sh.DEAD]
    assert [g.channel for g in dead] == [0, 2] and all(g.level == sh.ERROR for g in dead)
    assert "channel 0 (x): dead (constant at 0" in dead[0].message
    assert sh.report(f).level == sh.ERROR


def test_stuck_value_warns_then_errors() -> None:
    x = healthy()
    x[1000:1100, 1] = x[1000, 1]  # 0.1 s stuck: a hiccup
    f = [g for g in sh.check_batch(x, FS) if g.kind == sh.STUCK]
    assert len(f) == 1 and f[0].level == sh.WARN and f[0].channel == 1 and f[0].value == 100
    x[1000:, 1] = x[1000, 1]  # stuck for most of the batch
    f = [g for g in sh.check_batch(x, FS) if g.kind == sh.STUCK]
    assert f[0].level == sh.ERROR


def test_clipping_with_and_without_a_known_full_scale() -> None:
    x = np.clip(healthy() * 5, -2.0, 2.0)
    inferred = [g for g in sh.check_batch(x, FS) if g.kind == sh.CLIPPING]
    assert inferred and inferred[0].level == sh.ERROR
    known = [
        g for g in sh.check_batch(x, FS, limits=sh.SensorLimits(full_scale=2.0)) if g.kind == sh.CLIPPING
    ]
    assert len(known) == 3 and "full scale" in known[0].message
    assert sh.CLIPPING not in kinds(sh.check_batch(healthy(), FS, limits=sh.SensorLimits(full_scale=16.0)))


def test_rate_far_from_configured_gaps_and_order() -> None:
    x = healthy()
    t = np.arange(len(x)) / 800.0  # the sensor runs at 800 Hz, configured 1 kHz
    rate = [g for g in sh.check_batch(x, FS, timestamps=t) if g.kind == sh.RATE]
    assert rate and rate[0].level == sh.ERROR and rate[0].value == pytest.approx(800.0)
    t = np.arange(len(x)) / FS
    t[2500:] += 0.5  # half a second missing
    gap = [g for g in sh.check_batch(x, FS, timestamps=t) if g.kind == sh.GAP]
    assert gap and gap[0].level == sh.WARN and gap[0].value == pytest.approx(0.501)
    t = np.arange(len(x)) / FS
    t[[10, 11]] = t[[11, 10]]
    assert sh.ORDER in kinds(sh.check_batch(x, FS, timestamps=t))


def test_nan_bursts() -> None:
    x = healthy()
    x[100:150, 0] = np.nan
    f = [g for g in sh.check_batch(x, FS) if g.kind == sh.NONFINITE]
    assert f[0].level == sh.WARN and "longest burst 50 samples" in f[0].message
    x[:, 0] = np.nan
    f = sh.check_batch(x, FS)
    assert {(g.kind, g.level) for g in f if g.channel == 0} == {(sh.NONFINITE, sh.ERROR), (sh.DEAD, sh.ERROR)}


def test_loose_mount_is_a_level_far_below_the_calibration() -> None:
    cal = sh.baseline(healthy(seed=3))
    assert sh.baseline_rms_from({"sensor": cal}) == cal["rms"]
    quiet = healthy(seed=4) * 0.1
    f = sh.check_batch(quiet, FS, baseline_rms=cal["rms"])
    assert kinds(f) == {sh.LOOSE_MOUNT} and all(g.level == sh.WARN for g in f)
    assert sh.report(f).level == sh.WARN and "(+2 more)" in sh.report(f).message
    assert sh.baseline_rms_from({}) is None and sh.baseline_rms_from({"sensor": {"rms": [0.0]}}) is None


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="loose_ratio"):
        sh.SensorLimits(loose_ratio=float("nan"))
    with pytest.raises(ValueError, match="full_scale"):
        sh.SensorLimits(full_scale=-1.0)


def test_report_as_dict_is_event_ready() -> None:
    x = healthy()
    x[:, 1] = 0.0
    d = sh.report(sh.check_batch(x, FS)).as_dict()
    assert d["level"] == "ERROR" and d["findings"][0]["kind"] == sh.DEAD and d["findings"][0]["channel"] == 1


@pytest.mark.skipif(not (DATA / "femto" / "manifest.csv").is_file(), reason="shared bearing data absent")
def test_real_healthy_recordings_raise_nothing() -> None:
    from vibration_anomaly.model.records import load_signal

    for f in sorted(DATA.glob("*/normal_*.npz")):
        x, fs = load_signal(f)
        assert fs is not None
        assert sh.check_batch(x, fs) == [], f.name
