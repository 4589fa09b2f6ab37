"""Energy per inference and per idle minute from power samples."""

from __future__ import annotations

import argparse

import pytest

from vibration_anomaly.errors import InputError
from vibration_anomaly.power.base import PowerReading
from vibration_anomaly.power.energy import EnergyIntegrator


def r(t: float, w: float, modelled: bool = False) -> PowerReading:
    return PowerReading(w, {"VDD_IN": w}, "test", modelled, t)


def test_duty_cycle_joules_per_inference_and_idle_minute() -> None:
    e = EnergyIntegrator(max_gap_s=10)
    # Two duty periods: 1 s of inference at 11 W, 59 s idle at 4 W, sampled every second.
    t = 0.0
    for _ in range(2):
        e.set_phase("infer", r(t, 11.0))
        t += 1.0
        e.set_phase("idle", r(t, 11.0))
        for _ in range(59):
            t += 1.0
            e.add(r(t, 4.0))
    s = e.summary()
    assert s.inferences == 2 and s.infer_seconds == pytest.approx(2.0)
    assert s.joules_per_inference == pytest.approx(11.0)
    # Idle: the first idle second ramps 11 -> 4 W (trapezoid 7.5 J) on each period, and the
    # 4 W at the end of period 1 carries over into period 2's start.
    expected_idle = 2 * (7.5 + 58 * 4.0)
    assert s.idle_seconds == pytest.approx(118.0)
    assert s.joules_per_idle_minute == pytest.approx(expected_idle / (118.0 / 60))
    assert not s.modelled


def test_gaps_are_not_filled_and_modelled_is_contagious() -> None:
    e = EnergyIntegrator(max_gap_s=5)
    e.add(r(0, 4))
    e.add(r(1, 4))
    e.add(r(100, 4, modelled=True))  # sensor silent for 99 s
    s = e.summary()
    assert s.idle_seconds == 1 and s.gap_seconds == 99 and s.modelled
    assert s.joules_per_inference is None


def test_bad_samples_are_input_errors() -> None:
    e = EnergyIntegrator()
    e.add(r(5, 4))
    with pytest.raises(InputError, match="backwards"):
        e.add(r(4, 4))
    with pytest.raises(InputError, match="non-negative"):
        e.add(r(6, float("nan")))
    with pytest.raises(InputError, match="phase"):
        e.set_phase("busy")


def test_power_cli_prints_modelled_readings(capsys: pytest.CaptureFixture[str]) -> None:
    from vibration_anomaly.power import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(
        ["power", "--source", "modelled", "--count", "2", "--interval", "0.01", "--json"]
    )
    assert args.func(args) == 0
    out = capsys.readouterr()
    lines = [ln for ln in out.out.splitlines() if ln.strip()]
    assert len(lines) == 2 and all('"modelled": true' in ln for ln in lines)
    assert "modelled as asked" in out.err
    bad = parser.parse_args(["power", "--source", "nvml", "--count", "1"])
    if bad.func(bad) == 1:  # no NVIDIA driver here
        assert "NVML" in capsys.readouterr().err
