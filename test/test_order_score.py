"""The order score (core.order_score): defect orders at the known shaft speed in the envelope spectrum.

Synthetic windows from model.synth.physical_defect (impacts at a known defect frequency ringing a
resonance), white noise beside them; the FEMTO bearing's defect orders.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from vibration_anomaly.core.order_score import defect_lines_hz, order_score, order_strengths
from vibration_anomaly.model.data import BEARING_PRESETS
from vibration_anomaly.model.synth import physical_defect

ORDERS = BEARING_PRESETS["femto"]
SHAFT, FS, N = 30.0, 25600.0, 5120  # 1800 rpm, FEMTO's rate, 0.2 s


def _window(rng: np.random.Generator, defect_hz: float | None, amp: float, channels: int = 2) -> np.ndarray:
    w = rng.standard_normal((N, channels))
    if defect_hz is not None:
        w[:, 0] += physical_defect(rng, FS, N, defect_hz, amp)[0]
    return w


@pytest.fixture(scope="module")
def noise_max() -> float:
    rng = np.random.default_rng(0)
    s = np.stack([order_score(_window(rng, None, 0.0), FS, SHAFT, ORDERS) for _ in range(12)])
    assert s.shape == (12, 2) and np.isfinite(s).all()
    assert 1.0 < float(np.median(s)) < 8.0  # a ratio over the spectrum's median: a few for noise
    return float(s.max())


def test_the_outer_race_order_stands_out_and_noise_does_not(noise_max: float) -> None:
    rng = np.random.default_rng(1)
    for amp in (2.0, 3.0):  # impact peak / noise RMS
        s = order_score(_window(rng, ORDERS["bpfo"] * SHAFT, amp), FS, SHAFT, ORDERS)
        assert s is not None and s.shape == (2,)
        assert s[0] > 3 * noise_max, (amp, s, noise_max)  # the injected channel
        assert s[1] <= 1.5 * noise_max  # the clean channel beside it stays a noise channel


def test_a_wrong_speed_scores_lower_and_only_the_stated_orders_count(noise_max: float) -> None:
    rng = np.random.default_rng(2)
    w = _window(rng, ORDERS["bpfo"] * SHAFT, 2.0, channels=1)
    right = order_score(w, FS, SHAFT, ORDERS)
    assert right is not None and right[0] > 3 * noise_max
    for wrong in (1.3 * SHAFT, 0.7 * SHAFT):
        s = order_score(w, FS, wrong, ORDERS)
        assert s is not None and s[0] < right[0] / 2, (wrong, s, right)
    inner = _window(rng, ORDERS["bpfi"] * SHAFT, 2.0, channels=1)
    full = order_score(inner, FS, SHAFT, ORDERS)
    outer_only = order_score(inner, FS, SHAFT, {"bpfo": ORDERS["bpfo"]})
    assert full is not None and outer_only is not None
    assert full[0] > 3 * noise_max and outer_only[0] <= 1.5 * noise_max


def test_no_speed_or_no_orders_is_none_and_a_too_slow_sensor_is_nan() -> None:
    w = np.random.default_rng(3).standard_normal((N, 2))
    for shaft, orders in ((None, ORDERS), (0.0, ORDERS), (math.nan, ORDERS), (SHAFT, None), (SHAFT, {})):
        assert order_score(w, FS, shaft, orders) is None, (shaft, orders)
    assert order_score(w, FS, SHAFT, {"ftf": ORDERS["ftf"]}) is None  # the cage alone: not scored
    assert defect_lines_hz(SHAFT, ORDERS) == pytest.approx(
        {"bpfo": 168.33, "bpfi": 221.67, "bsf": 430.68}, rel=1e-3
    )
    s = order_score(w[:1000], 1000.0, 200.0, ORDERS)  # 2.2 x BPFI at 200 Hz is beyond a 1 kHz band
    assert s is not None and s.shape == (2,) and np.isnan(s).all()


def test_per_line_strengths_name_the_injected_line(noise_max: float) -> None:
    rng = np.random.default_rng(4)
    for name in ("bpfo", "bpfi"):
        got = order_strengths(_window(rng, ORDERS[name] * SHAFT, 3.0), FS, SHAFT, ORDERS)
        assert got is not None
        names, s = got
        assert names == ["bpfo", "bpfi", "bsf"] and s.shape == (2, 3)
        assert names[int(np.argmax(s[0]))] == name and s[0].max() > 3 * noise_max
        assert s[1].max() <= 1.5 * noise_max  # the clean channel
    assert order_strengths(np.zeros((N, 1)), FS, None, ORDERS) is None


def _full_length_envelope_power(x: np.ndarray, fs: float, band: tuple[float, float]) -> np.ndarray:
    """The textbook computation, written out here: analytic band signal at full length, |z|^2, Hann, power."""
    n = len(x)
    spec, freqs = np.fft.rfft(x - x.mean()), np.fft.rfftfreq(n, 1 / fs)
    full = np.zeros(n, dtype=complex)
    keep = (freqs >= band[0]) & (freqs < band[1])
    full[: len(spec)][keep] = 2 * spec[keep]
    env = np.abs(np.fft.ifft(full)) ** 2
    env = (env - env.mean()) * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n))
    return np.abs(np.fft.rfft(env)) ** 2


@pytest.mark.parametrize("fs, seconds", [(3200.0, 4.9), (1000.0, 4.9), (25600.0, 0.2)])
def test_the_base_band_envelope_spectrum_equals_the_full_length_one(fs: float, seconds: float) -> None:
    from vibration_anomaly.core.diagnosis import band_envelope_spectrum, bands

    rng = np.random.default_rng(3)
    n = int(fs * seconds)
    x = rng.standard_normal(n) + physical_defect(rng, fs, n, 3.57 * SHAFT, 3.0)[0]
    spec = np.fft.rfft(x - x.mean())
    for band in bands(fs, 3):
        ref = _full_length_envelope_power(x, fs, band)
        for max_hz in (None, 0.2 * fs):
            freqs, power = band_envelope_spectrum(spec, n, fs, band, max_hz)
            assert np.allclose(freqs, np.arange(len(freqs)) * fs / n)
            if max_hz is not None:
                assert freqs[-1] >= max_hz and len(freqs) < len(ref)
            np.testing.assert_allclose(power, ref[: len(power)], rtol=0, atol=1e-9 * ref.max())


def test_the_raw_spectrum_reads_a_low_mode_rung_at_the_defect_rate_on_a_long_window() -> None:
    """Through a 3.2 kHz sensor the kHz resonance is gone; the low mode rung at BPFO is a comb of lines."""
    from vibration_anomaly.core.order_calibration import parts_for
    from vibration_anomaly.core.order_score import spectrum_resolves, spectrum_strengths

    fs, n = 3200.0, int(4.9 * 3200)
    lines = defect_lines_hz(SHAFT, ORDERS)
    assert spectrum_resolves(n, fs, lines) and parts_for(n, fs, SHAFT, ORDERS) == ("envelope", "spectrum")
    assert not spectrum_resolves(N, FS, lines) and parts_for(N, FS, SHAFT, ORDERS) == ("envelope",)
    rng = np.random.default_rng(0)
    noise = [spectrum_strengths(rng.standard_normal((n, 1)), fs, SHAFT, ORDERS)[1][0] for _ in range(6)]
    faulty = []
    for _ in range(6):
        w = rng.standard_normal((n, 1))
        x, f_res, f_mode = physical_defect(rng, fs, n, lines["bpfo"], 8.0)
        assert f_res is None and f_mode is not None  # only the low mode is inside the band
        w[:, 0] += x
        faulty.append(spectrum_strengths(w, fs, SHAFT, ORDERS)[1][0])
    noise_max = float(np.max(noise))
    assert 3.0 < float(np.median(noise)) < noise_max < 12.0
    bpfo = list(lines).index("bpfo")
    assert min(f[bpfo] for f in faulty) > noise_max
    assert sum(int(np.argmax(f)) == bpfo for f in faulty) >= 5  # one tie with 2 x BSF's line in seed 0


def test_channels_scored_together_are_each_channel_scored_alone() -> None:
    """order_strengths and spectrum_strengths take every channel's spectra in one call; a channel's strengths
    must not depend on the others beside it (a defect on axis 0, noise on axes 1 and 2)."""
    from vibration_anomaly.core.order_score import line_strengths, spectrum_line_strengths, spectrum_strengths

    rng = np.random.default_rng(7)
    w = _window(rng, SHAFT * ORDERS["bpfo"], 3.0, channels=3)
    lines = defect_lines_hz(SHAFT, ORDERS)
    for together, alone in ((order_strengths, line_strengths), (spectrum_strengths, spectrum_line_strengths)):
        got = together(w, FS, SHAFT, ORDERS)
        assert got is not None
        names, s = got
        each = np.array([[alone(w[:, c], FS, lines)[k] for k in names] for c in range(3)])
        np.testing.assert_array_equal(s, each)
        assert s.shape == (3, len(lines)) and np.isfinite(s[0]).any()
    assert (
        order_strengths(w, FS, SHAFT, ORDERS)[1][0, names.index("bpfo")]
        > 3 * order_strengths(w, FS, SHAFT, ORDERS)[1][1:, names.index("bpfo")].max()
    )


def test_a_stated_resonance_reads_only_the_bands_that_hold_it() -> None:
    from vibration_anomaly.core.diagnosis import bands
    from vibration_anomaly.core.order_score import envelope_bands

    assert envelope_bands(FS) == bands(FS)  # not stated: every band, as before
    chosen = envelope_bands(FS, (2500.0, 4500.0))
    assert chosen and all(lo < 4500.0 and hi > 2500.0 for lo, hi in chosen)
    assert len(chosen) < len(bands(FS)) and (6656.0, 12800.0) not in chosen
    # A 3.2 kHz sensor passes nothing of a 2.5-4.5 kHz resonance: no band, so no envelope line.
    assert envelope_bands(3200.0, (2500.0, 4500.0)) == []
    rng = np.random.default_rng(5)
    w = rng.standard_normal((640, 2))
    names, s = order_strengths(w, 3200.0, SHAFT, ORDERS, (2500.0, 4500.0)) or ([], np.zeros(0))
    assert names and s.shape == (2, len(names)) and np.isnan(s).all()
    names, s = order_strengths(w, 3200.0, SHAFT, ORDERS) or ([], np.zeros(0))
    assert np.isfinite(s).all()  # not stated: the whole band is read


def test_a_stated_resonance_lowers_the_noise_floor_and_keeps_the_defect() -> None:
    """Fewer bands read, so the largest over them of noise is lower; impacts ringing in the stated
    resonance are read as strongly as before (their best band holds it)."""
    res = (2500.0, 4500.0)
    rng = np.random.default_rng(6)
    noise = [rng.standard_normal((N, 1)) for _ in range(12)]
    floor_every = np.median([order_strengths(w, FS, SHAFT, ORDERS)[1] for w in noise])  # type: ignore[index]
    floor_stated = np.median([order_strengths(w, FS, SHAFT, ORDERS, res)[1] for w in noise])  # type: ignore[index]
    assert floor_stated < floor_every, (floor_stated, floor_every)
    w = rng.standard_normal((N, 1))
    w[:, 0] += physical_defect(rng, FS, N, ORDERS["bpfo"] * SHAFT, 3.0)[0]  # rings 2.5-4.5 kHz
    names, every = order_strengths(w, FS, SHAFT, ORDERS) or ([], np.zeros(0))
    stated = order_strengths(w, FS, SHAFT, ORDERS, res)
    assert stated is not None
    i = names.index("bpfo")
    assert stated[1][0, i] > 5 * floor_stated and stated[1][0, i] >= 0.8 * every[0, i], (stated, every)
