"""The alarm's diagnosis on synthetic windows: the location is named from the defect order that stands out."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vibration_anomaly.bundle.bearing import orders_from_geometry
from vibration_anomaly.core.diagnosis import Diagnoser, ScoreTrend, locate
from vibration_anomaly.core.speed import ShaftSpeed, joint_speed_hz
from vibration_anomaly.model.synth import defect_impacts, impact_train

ORDERS = orders_from_geometry(9, 0.3126, 1.537)  # SKF 6205, the CWRU drive-end bearing


def inner_race(
    rng: np.random.Generator, fs: float, n: int, shaft: float, f_res: float, peak: float
) -> np.ndarray:
    """Impacts at BPFI whose size follows the shaft: the defect turns through the load zone once per turn."""
    period, t, x = 1 / (ORDERS["bpfi"] * shaft), 0.0, np.zeros(n)
    t = float(rng.uniform(0, period))
    while t < n / fs:
        x += impact_train(rng, fs, n, [t], f_res, peak * 0.5 * (1 + math.cos(2 * math.pi * shaft * t)))
        t += period * (1 + 0.015 * rng.standard_normal())
    return x


@pytest.mark.parametrize(("fs", "f_res"), [(1000.0, 310.0), (12000.0, 3000.0)])
def test_outer_race_impacts_at_bpfo_are_named_outer_race(fs: float, f_res: float) -> None:
    for seed in range(3):
        rng = np.random.default_rng(seed)
        shaft, n = 24.0 + 2 * seed, int(5 * fs)
        x = rng.standard_normal(n) + defect_impacts(rng, fs, n, ORDERS["bpfo"] * shaft, f_res, 2.0)
        d = locate(x, fs, shaft, ORDERS)
        assert d.location == "outer_race", (seed, d)
        assert d.frequency_hz == pytest.approx(ORDERS["bpfo"] * shaft, rel=0.02)
        assert d.order == pytest.approx(ORDERS["bpfo"], rel=0.02)


def test_inner_race_impacts_modulated_by_the_shaft_are_named_inner_race() -> None:
    fs = 12000.0
    for seed in range(3):
        rng = np.random.default_rng(seed)
        shaft, n = 25.0 + seed, int(5 * fs)
        x = rng.standard_normal(n) + inner_race(rng, fs, n, shaft, 3000.0, 3.0)
        d = locate(x, fs, shaft, ORDERS)
        assert d.location == "inner_race", (seed, d)
        assert d.frequency_hz == pytest.approx(ORDERS["bpfi"] * shaft, rel=0.02)


def test_ball_defects_are_found_at_twice_the_ball_spin() -> None:
    fs, shaft = 12000.0, 28.0
    rng = np.random.default_rng(4)
    n = int(5 * fs)
    x = rng.standard_normal(n) + defect_impacts(rng, fs, n, 2 * ORDERS["bsf"] * shaft, 3000.0, 2.0)
    d = locate(x, fs, shaft, ORDERS)
    assert d.location == "ball" and d.frequency_hz == pytest.approx(2 * ORDERS["bsf"] * shaft, rel=0.02)


def test_noise_and_a_knock_are_not_given_a_location() -> None:
    for seed in range(6):
        rng = np.random.default_rng(100 + seed)
        fs = (1000.0, 12000.0)[seed % 2]
        n = int(5 * fs)
        x = rng.standard_normal(n)
        if seed >= 4:  # one knock: a big transient, but no repetition
            x = x + impact_train(rng, fs, n, [1.7], 0.3 * fs, 30.0)
        d = locate(x, fs, 20.0 + 3 * seed, ORDERS)
        assert d.location == "unknown" and d.frequency_hz is None, (seed, d)
        assert "stands out" in d.note


def test_without_speed_or_geometry_the_location_is_unknown() -> None:
    fs, shaft = 12000.0, 26.0
    rng = np.random.default_rng(7)
    n = int(5 * fs)
    x = rng.standard_normal(n) + defect_impacts(rng, fs, n, ORDERS["bpfo"] * shaft, 3000.0, 3.0)
    assert locate(x, fs, shaft, ORDERS).location == "outer_race"
    no_speed = locate(x, fs, None, ORDERS)
    assert no_speed.location == "unknown" and "speed" in no_speed.note
    # The envelope still shows the line a technician can look up by hand.
    assert no_speed.envelope_peak_hz is not None
    assert min(abs(no_speed.envelope_peak_hz - h * ORDERS["bpfo"] * shaft) for h in (1, 2, 3)) < 2.0
    no_bearing = locate(x, fs, shaft, None)
    assert no_bearing.location == "unknown" and "geometry" in no_bearing.note
    # Told a wrong speed, nothing lines up. (Not any wrong speed: at 1.3x, BPFI falls on 2 x BPFO and
    # the outer race's harmonics read as an inner race; the speed has to be the shaft's.)
    assert locate(x, fs, shaft * 1.15, ORDERS).location == "unknown"


def test_the_diagnoser_uses_only_a_fresh_speed_and_says_why_not() -> None:
    fs, shaft = 12000.0, 26.0
    rng = np.random.default_rng(8)
    n = int(5 * fs)
    x = rng.standard_normal((n, 3)) * 0.5
    x[:, 1] += defect_impacts(rng, fs, n, ORDERS["bpfo"] * shaft, 3000.0, 3.0)
    speed = ShaftSpeed(topic="/joint_states")
    diag = Diagnoser(ORDERS, speed)
    d = diag.diagnose(100.0, x, fs, 90.0, 95.0)
    assert d.location == "unknown" and "no speed received" in d.note
    speed.report(shaft, stamp=60.0)  # half a minute before the window: stale
    d = diag.diagnose(100.0, x, fs, 90.0, 95.0)
    assert d.location == "unknown" and "stale" in d.note
    assert speed.report(shaft, stamp=93.0) is None  # the same state (known) again: no new log line
    d = diag.diagnose(100.0, x, fs, 90.0, 95.0)
    assert d.location == "outer_race" and d.channel == 1 and d.speed_source == "/joint_states"
    fields = d.fields()
    assert fields["location"] == "outer_race" and fields["shaft_hz"] == shaft
    assert fields["frequency_hz"] == pytest.approx(ORDERS["bpfo"] * shaft, rel=0.02)
    line = speed.report(None, stamp=94.0, why="joint 'wheel' velocity is nan (not a number)")
    assert line is not None and "unknown" in line and "nan" in line
    d = diag.diagnose(100.0, x, fs, 90.0, 95.0)
    assert d.location == "unknown" and "nan" in d.note
    fixed = Diagnoser(ORDERS, ShaftSpeed(fixed_hz=shaft))
    assert fixed.diagnose(100.0, x, fs, 90.0, 95.0).location == "outer_race"


def test_joint_state_speed_and_its_refusals() -> None:
    assert joint_speed_hz(["a", "wheel"], [0.0, -2 * math.pi * 25], "wheel") == (25.0, "")
    hz, why = joint_speed_hz(["a"], [1.0], "wheel")
    assert hz is None and "'wheel' not in" in why
    hz, why = joint_speed_hz(["wheel"], [], "wheel")
    assert hz is None and "no velocity" in why
    hz, why = joint_speed_hz(["wheel"], [float("nan")], "wheel")
    assert hz is None and "nan" in why
    s = ShaftSpeed(topic="/js")
    assert (
        s.report(0.1, 10.0) is not None and s.at(9.0, 10.0)[0] is None and "standstill" in s.at(9.0, 10.0)[1]
    )
    with pytest.raises(ValueError, match="shaft_hz"):
        ShaftSpeed(fixed_hz=-3.0)


def test_the_trend_is_the_slope_per_hour_and_the_change_over_the_kept_inferences() -> None:
    trend = ScoreTrend(n=5)
    assert trend.summary()["trend_slope_per_h"] is None
    for k in range(8):  # one inference a minute, the ratio growing by 0.05 a minute = 3 per hour
        trend.add(60.0 * k, 1.0 + 0.05 * k)
    s = trend.summary()
    assert s["trend_inferences"] == 5
    assert s["trend_slope_per_h"] == pytest.approx(3.0)
    assert s["trend_change"] == pytest.approx(1.35 / 1.15, abs=1e-3)
    trend.add(float("nan"), 2.0)  # ignored
    assert trend.summary()["trend_inferences"] == 5
