"""Order tracking (core.order_track, ShaftSpeed.track): a window resampled to constant shaft speed."""

from __future__ import annotations

import numpy as np
import pytest

from vibration_anomaly.bundle.bearing import orders_from_geometry
from vibration_anomaly.core.diagnosis import Diagnoser
from vibration_anomaly.core.order_track import _cubic, speed_at_samples, track, track_window
from vibration_anomaly.core.speed import ShaftSpeed
from vibration_anomaly.model.synth import impact_train

ORDERS = orders_from_geometry(9, 0.3126, 1.537)  # SKF 6205
FS = 3200.0
N = int(4.9 * FS)


def ramp(t: np.ndarray, lo: float = 20.0, hi: float = 24.0) -> np.ndarray:
    return lo + (hi - lo) * t / (N / FS)


def turns(f: np.ndarray) -> np.ndarray:
    return np.concatenate(([0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) / FS)))


def line_share(x: np.ndarray, f_hz: float) -> float:
    """The share of the spectrum's magnitude in the 3 bins around ``f_hz`` (a line: most of it)."""
    s = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(round(f_hz * len(x) / FS))
    return float(s[k - 1 : k + 2].sum() / s.sum())


def test_a_tone_locked_to_a_speeding_shaft_is_one_line_after_tracking() -> None:
    t = np.arange(N) / FS
    order = 5.4
    x = np.stack(
        [np.sin(2 * np.pi * order * turns(ramp(t))), np.sin(2 * np.pi * 6 * order * turns(ramp(t)))], 1
    )
    stamps = np.arange(-0.05, 5.0, 0.01)  # a 100 Hz JointState, out of order: the order is not trusted
    shuffled = np.random.default_rng(0).permutation(len(stamps))
    got = track(x, FS, 0.0, stamps[shuffled], ramp(stamps)[shuffled])
    assert got.resampled and got.spread == pytest.approx(4 / 22, rel=0.02)
    assert got.shaft_hz == pytest.approx(22.0, rel=1e-3)  # the mean speed over the window
    for c, h in enumerate((1, 6)):
        f = h * order * got.shaft_hz
        raw, tracked = line_share(x[:, c], f), line_share(got.window[:, c], f)
        assert tracked > 0.3 and tracked > 10 * raw, (h, raw, tracked)


def test_a_steady_speed_returns_the_window_itself() -> None:
    x = np.random.default_rng(1).standard_normal((N, 3)).astype(np.float32)
    got = track(x, FS, 10.0, np.array([9.0, 12.0, 15.0]), np.array([24.0, 24.0, 24.0]))
    assert got.window is x and not got.resampled and got.shaft_hz == 24.0 and got.spread == 0.0


def test_the_resampling_keeps_a_tone_near_nyquist() -> None:
    """Read between samples from the 2x FFT-upsampled window: cubic convolution alone loses most of it."""
    t = np.arange(N) / FS
    f = ramp(t, 23.0, 25.0)
    x = np.sin(2 * np.pi * 60.0 * turns(f))[:, None]  # 60 orders: 1.38-1.5 kHz, up to 0.47 x the rate
    got = track(x, FS, 0.0, np.array([0.0, N / FS]), np.array([23.0, 25.0]))
    inner = slice(200, N - 200)  # the FFT's periodic ends aside
    rms = float(np.sqrt(np.mean(got.window[inner, 0] ** 2)))
    assert 0.95 * np.sqrt(0.5) < rms < 1.01 * np.sqrt(0.5)
    half = np.arange(100, 1900) + 0.5
    plain = _cubic(np.sin(2 * np.pi * 0.45 * np.arange(2000))[:, None], half)
    assert float(np.sqrt(np.mean(plain**2))) < 0.3 * np.sqrt(0.5)


def test_shaft_speed_tracks_through_the_window_from_its_readings() -> None:
    x = np.random.default_rng(2).standard_normal((N, 2))
    speed = ShaftSpeed(fixed_hz=24.0, topic="/joint_states")
    got, source = speed.track(x, FS, 100.0, 104.9)  # nothing received: the fixed speed, as it is
    assert got is not None and got.window is x and got.shaft_hz == 24.0 and source.startswith("shaft_hz")
    for s in np.arange(99.9, 105.0, 0.02):
        speed.report(20.0 + float(s - 100.0), float(s))
    got, source = speed.track(x, FS, 100.0, 104.9)
    assert got is not None and got.resampled and source == "/joint_states"
    assert got.shaft_hz == pytest.approx(22.45, rel=1e-3) and got.spread == pytest.approx(
        4.9 / 22.45, rel=0.02
    )
    assert speed.at(100.0, 104.9)[0] == pytest.approx(24.98)  # the latest reading, as before
    # A standstill during the window: no one speed describes it, said why.
    speed.report(0.0, 105.5)
    speed.report(22.0, 105.6)
    got, why = speed.track(x, FS, 105.0, 109.9)
    assert got is None and "unknown during the window" in why and "standstill" in why
    # One reading: the window as it is, at that speed.
    one = ShaftSpeed(topic="/js")
    one.report(23.0, 201.0)
    got, _ = one.track(x, FS, 200.0, 204.9)
    assert got is not None and got.window is x and got.shaft_hz == 23.0


def test_the_diagnosis_names_the_race_of_a_defect_on_a_speeding_shaft() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(N) / FS
    f = ramp(t, 20.0, 26.0)
    passes = turns(f) * ORDERS["bpfo"]
    times = np.interp(np.arange(1, int(passes[-1])), passes, t)
    x = rng.standard_normal((N, 2)) * 0.5
    x[:, 0] += impact_train(rng, FS, N, times.tolist(), 1200.0, 3.0)
    latest = ShaftSpeed(fixed_hz=26.0)  # the speed at the window's end: what one reading would say
    assert Diagnoser(ORDERS, latest).diagnose(50.0, x, FS, 0.0, N / FS, channel=0).location != "outer_race"
    speed = ShaftSpeed(topic="/joint_states")
    for s in np.arange(0.0, 5.0, 0.01):
        speed.report(float(ramp(np.array(s), 20.0, 26.0)), float(s))
    d = Diagnoser(ORDERS, speed).diagnose(50.0, x, FS, 0.0, (N - 1) / FS, channel=0)
    assert d.location == "outer_race", d
    assert (
        "order-tracked at its velocity through a 2" in d.speed_source
    )  # a 6 Hz change over a 23 Hz mean: 26 %
    assert d.shaft_hz == pytest.approx(23.0, rel=0.01)


def test_jittery_readings_are_smoothed_and_a_sudden_change_is_followed() -> None:
    """Encoder velocities jitter from one message to the next; the angle integrated from them would drift
    by the sum of it. A cubic through the readings stands for a smooth speed change; a sudden one (a
    cubic cannot follow it) is interpolated reading to reading."""
    t = np.arange(N) / FS
    stamps = np.arange(-0.05, 4.95, 0.02)  # a 50 Hz JointState
    rng = np.random.default_rng(4)
    smooth = 22.0 + 2.0 * np.sin(2 * np.pi * t / 23.0)
    x = np.sin(2 * np.pi * 3 * 5.4 * turns(smooth))[:, None]  # the 3rd harmonic of a 5.4-order line
    noisy = (22.0 + 2.0 * np.sin(2 * np.pi * stamps / 23.0)) * (1 + 0.01 * rng.standard_normal(len(stamps)))
    got = track(x, FS, 0.0, stamps, noisy)
    f = 3 * 5.4 * got.shaft_hz
    plain = np.interp(t, stamps, noisy)  # what reading-to-reading interpolation would integrate
    u = np.interp(np.arange(N) * got.shaft_hz / FS, turns(plain), np.arange(N, dtype=float))
    interpolated = np.interp(u, np.arange(N), x[:, 0])
    assert line_share(got.window[:, 0], f) > max(0.25, 3 * line_share(interpolated, f))

    step = np.where(stamps < 2.4, 20.0, np.where(stamps > 2.9, 26.0, 20.0 + 12.0 * (stamps - 2.4)))
    true = np.interp(t, stamps, step)
    x = np.sin(2 * np.pi * 6 * 5.4 * turns(true))[:, None]
    assert np.abs(speed_at_samples(N, FS, 0.0, stamps, step) - true).max() < 0.01  # reading to reading
    got = track(x, FS, 0.0, stamps, step)
    assert line_share(got.window[:, 0], 6 * 5.4 * got.shaft_hz) > 0.25


def test_the_joints_position_gives_the_angle_where_its_velocity_jitters() -> None:
    """3 % of jitter on each velocity reading: the angle integrated from them drifts, the joint's position
    (an encoder of 4096 counts per turn) does not; a position that is not the shaft's angle is not used."""
    t = np.arange(N) / FS
    stamps = np.arange(-0.05, 5.0, 0.02)  # a 50 Hz JointState

    def angle(s: np.ndarray) -> np.ndarray:  # turns of a shaft at 22 +- 2 Hz over 23 s (integrated exactly)
        return 22.0 * s + 2.0 * 23.0 / (2 * np.pi) * (1 - np.cos(2 * np.pi * s / 23.0))

    x = np.sin(2 * np.pi * 3 * 5.4 * angle(t))[:, None]  # the 3rd harmonic of a 5.4-order line
    speed = (22.0 + 2.0 * np.sin(2 * np.pi * stamps / 23.0)) * (
        1 + 0.03 * np.random.default_rng(7).standard_normal(len(stamps))
    )
    counts = np.floor(angle(stamps) * 4096) / 4096
    t1 = float(t[-1])
    by_velocity = track_window(x, FS, 0.0, t1, stamps, speed)
    by_position = track_window(x, FS, 0.0, t1, stamps, speed, counts)
    backwards = track_window(x, FS, 0.0, t1, stamps, speed, -counts)  # a wheel turning the other way
    assert by_velocity is not None and by_position is not None and backwards is not None
    assert (by_velocity.by, by_position.by, backwards.by) == ("velocity", "position", "position")
    assert by_position.shaft_hz == pytest.approx(float(angle(np.array([t1]))[0]) / t1, rel=1e-3)
    share = {
        how: line_share(got.window[:, 0], 3 * 5.4 * got.shaft_hz)
        for how, got in (("velocity", by_velocity), ("position", by_position), ("backwards", backwards))
    }
    assert share["position"] > max(0.3, 1.5 * share["velocity"]) and share["backwards"] == share["position"]
    for label, position in (
        ("wrapped to [-pi, pi)", ((counts + 0.5) % 1.0) - 0.5),
        ("in degrees", counts * 360.0 / (2 * np.pi)),
        ("another joint's", counts * 1.1),
        ("for half the window", np.where(stamps < 2.4, counts, np.nan)),
        ("never moving (a driver that leaves it 0)", np.zeros_like(counts)),
    ):
        got = track_window(x, FS, 0.0, t1, stamps, speed, position)
        assert got is not None and got.by == "velocity", label
        assert got.shaft_hz == by_velocity.shaft_hz, label  # exactly the velocity's tracking


def test_positions_read_twice_a_second_follow_a_ramp() -> None:
    """Sparse readings (a 2 Hz JointState): between them the angle is a cubic at the rates the neighbouring
    positions give, exact for a constant acceleration, so the 6th harmonic of a line is one line again."""
    t = np.arange(N) / FS
    x = np.sin(2 * np.pi * 6 * 5.4 * turns(ramp(t)))[:, None]
    stamps = np.arange(-0.5, 5.5, 0.5)
    slope = 4.0 / (N / FS)  # Hz per s
    angle = 20.0 * stamps + 0.5 * slope * stamps**2  # the ramp's turns, from t = 0
    got = track_window(x, FS, 0.0, float(t[-1]), stamps, ramp(stamps), angle)
    assert got is not None and got.by == "position" and got.spread == pytest.approx(4 / 22, rel=0.01)
    assert line_share(got.window[:, 0], 6 * 5.4 * got.shaft_hz) > 0.5
